"""Real inference speed of slimmed networks against the dense one (FLOPs do not promise speed).

The networks are CIFAR ResNet-50 (100 classes, 32 px) slimmed physically by the suite
(`core.groups.slim`) to the same keep fraction in every channel group, the fraction found by
bisection on the exact FLOPs counter so that the whole network keeps 15 / 35 / 55 % of its
FLOPs. Latency is the median wall time of a forward pass (no grad, eval mode, CUDA
synchronised) after warm-up, at batch 1 and batch 64.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn as nn

from core.config import load
from core.groups import FlopsModel, groups_for_run, prefix_mask, slim
from core.measure import count_flops
from bench.training import synchronize
from core.models import build_model

TARGETS = (0.15, 0.35, 0.55)
BATCHES = (1, 64)


def uniform_widths(flops: FlopsModel, sizes: list[int], target: float) -> list[int]:
    """Kept units per group, one fraction for all, with FLOPs as close to `target` as whole units allow."""

    def widths(fraction: float) -> list[int]:
        return [max(1, min(size, round(fraction * size))) for size in sizes]

    low, high = 0.0, 1.0
    for _ in range(50):
        mid = 0.5 * (low + high)
        if float(flops.ratio(widths(mid))) < target:
            low = mid
        else:
            high = mid
    return min((widths(low), widths(high)), key=lambda w: abs(float(flops.ratio(w)) - target))


def networks(targets: tuple[float, ...] = TARGETS, width: float = 1.0) -> dict[str, nn.Module]:
    """The dense CIFAR ResNet-50 (full width: the paper's) and its uniformly slimmed copies, by name."""
    cfg = load(["model.name=resnet50", f"model.width={width}", "data.name=synthetic", "data.options.num_classes=100",
                "data.options.image_size=32"])
    torch.manual_seed(0)
    dense = build_model(cfg.model, 100, 32).eval()
    groups = groups_for_run(dense, cfg.prune, 32)
    flops = FlopsModel(dense, groups)
    out: dict[str, nn.Module] = {"dense": dense}
    for target in targets:
        kept = uniform_widths(flops, groups.sizes, target)
        masks = [prefix_mask(torch.arange(g.size), k) for g, k in zip(groups, kept)]
        out[f"uniform_{round(target * 100)}"] = slim(dense, groups, masks).eval()
    return out


def latency_s(network: nn.Module, batch: int, device: torch.device, warmup: int = 3, repeats: int = 10) -> float:
    images = torch.randn(batch, 3, 32, 32, device=device)
    times = []
    with torch.no_grad():
        for index in range(warmup + repeats):
            synchronize(device)
            tick = time.perf_counter()
            network(images)
            synchronize(device)
            if index >= warmup:
                times.append(time.perf_counter() - tick)
    return statistics.median(times)


def measure_inference(device: torch.device, warmup: int = 3, repeats: int = 10) -> list[dict[str, Any]]:
    """Latency at batch 1 and 64 of the dense and slimmed networks, with FLOPs and speed-up ratios."""
    nets = networks()
    dense_flops = count_flops(nets["dense"], 32)
    rows = []
    dense_latency: dict[int, float] = {}
    for name, network in nets.items():
        network = network.to(device)
        flops = count_flops(network, 32)
        row: dict[str, Any] = {"network": name, "flops_ratio": flops / dense_flops,
                               "params": sum(p.numel() for p in network.parameters())}
        for batch in BATCHES:
            seconds = latency_s(network, batch, device, warmup, repeats)
            dense_latency.setdefault(batch, seconds)
            row[f"latency_ms_b{batch}"] = 1000 * seconds
            row[f"speedup_b{batch}"] = dense_latency[batch] / seconds
        rows.append(row)
    return rows
