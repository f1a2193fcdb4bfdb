"""Real inference speed and memory of slimmed networks against their dense one (FLOPs do not promise speed).

A network to measure is named by a subject string:

- `dense`: CIFAR ResNet-50 (100 classes, 32 px, full width: the paper's), randomly initialised;
- `uniform:0.15`: that network slimmed physically by the suite (`core.groups.slim`) to the same
  keep fraction in every channel group, the fraction found by bisection on the exact FLOPs
  counter so that the whole network keeps 15 % of its FLOPs;
- `run:<folder>`: a finished run's exported `pruned.pt`;
- `dense:<folder>`: the dense network of that run's config, the reference its ratios are taken to.

`measure_network` measures one subject: the peak memory of a forward pass at batch 64, its
own tensors included (`inference_memory_mb`), then the median latency of a forward pass (no
grad, eval mode, CUDA synchronised) after warm-up at batch 1 and batch 64. `python -m bench` measures every subject in a fresh process (`python -m
bench.inference SUBJECT` prints one JSON line), since on a CPU the resident set keeps what an
earlier network freed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from core.config import RunConfig
from core.resolve import load
from core.data import dataset_spec
from core.engine import resolve_device
from core.export import load_pruned
from core.groups import FlopsModel, groups_for_run, prefix_mask, slim
from core.measure import MemoryPeak, count_flops, count_params, memory_kind, tensor_mb, synchronize
from core.models import build_model
from core.records import RunDir

TARGETS = (0.15, 0.35, 0.55)
BATCHES = (1, 64)
MEMORY_BATCH = 64
REPEATS = {1: 30, 64: 10}  # timed passes per batch size, after the warm-up ones


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


def _resnet50_config(width: float) -> RunConfig:
    return load(["model.name=resnet50", f"model.width={width}", "data.name=synthetic", "data.options.num_classes=100",
                 "data.options.image_size=32"])


def networks(targets: tuple[float, ...] = TARGETS, width: float = 1.0) -> dict[str, nn.Module]:
    """The dense CIFAR ResNet-50 and its uniformly slimmed copies, by name (`dense`, `uniform_15`, ...)."""
    cfg = _resnet50_config(width)
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


def recorded_config(folder: str | Path) -> RunConfig:
    """The resolved config a run recorded, its references resolved beside the folder (see `RunDir.load_config`)."""
    return RunDir(Path(folder)).load_config()


def run_shape(cfg: RunConfig) -> tuple[int, int]:
    """(classes, image size) of a run's data, read from the dataset's spec (no file is opened)."""
    info = dataset_spec(cfg.data).info
    return info.num_classes, cfg.data.image_size or info.image_size


def subject_network(subject: str, width: float = 1.0) -> tuple[nn.Module, int]:
    """The network a subject names (see the module docstring) and its input resolution."""
    kind, _, arg = subject.partition(":")
    if kind == "dense" and not arg:
        return networks((), width)["dense"], 32
    if kind == "uniform" and arg:
        target = float(arg)
        return networks((target,), width)[f"uniform_{round(target * 100)}"], 32
    if kind in ("run", "dense") and arg:
        cfg = recorded_config(arg)
        classes, image_size = run_shape(cfg)
        if kind == "dense":
            torch.manual_seed(0)
            return build_model(cfg.model, classes, image_size), image_size
        return load_pruned(Path(arg) / "pruned.pt"), image_size
    raise ValueError(f"unknown subject {subject!r}: dense, uniform:<ratio>, run:<folder> or dense:<folder>")


def inference_memory_mb(network: nn.Module, image_size: int, device: torch.device) -> tuple[float, str]:
    """Peak memory of one forward pass at batch 64, the network's own tensors included, and its kind.

    On a GPU: the CUDA allocator's peak (the paper's measure). On a CPU the resident set is no
    such measure (the C allocator keeps and reuses freed memory unseen), so the figure is the
    peak of the live tensors (weights, buffers, input and activations) that torch's `MemTracker`
    dispatch mode follows.
    """
    images = torch.randn(MEMORY_BATCH, 3, image_size, image_size, device=device)
    if device.type == "cuda":
        with torch.no_grad(), MemoryPeak(device) as peak:
            network(images)
            synchronize(device)
        return peak.extra_mb + tensor_mb(network), memory_kind(device)
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    tracker.track_external(network, images)
    with torch.no_grad(), tracker:
        network(images)
    (peak,) = tracker.get_tracker_snapshot("peak").values()
    return peak["Total"] / 2**20, "cpu_tensor_peak"


def latency_s(network: nn.Module, batch: int, image_size: int, device: torch.device, warmup: int = 2,
              repeats: int = 5) -> float:
    images = torch.randn(batch, 3, image_size, image_size, device=device)
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


def measure_network(subject: str, device: torch.device, warmup: int = 2, width: float = 1.0) -> dict[str, Any]:
    """FLOPs, parameters, inference memory at batch 64 and latency at batch 1 and 64 of one subject."""
    network, image_size = subject_network(subject, width)
    network = network.to(device).eval()
    memory_mb, kind = inference_memory_mb(network, image_size, device)
    row: dict[str, Any] = {
        "network": subject, "image_size": image_size, "flops": count_flops(network, image_size),
        "params": count_params(network), "peak_mem_mb_infer": memory_mb, "memory_batch": MEMORY_BATCH,
        "memory_kind": kind,
    }
    for batch in BATCHES:
        row[f"latency_ms_b{batch}"] = 1000 * latency_s(network, batch, image_size, device, warmup, REPEATS[batch])
    return row


def relative_to(row: dict[str, Any], dense: dict[str, Any]) -> dict[str, Any]:
    """`row` with its FLOPs ratio and speed-ups over `dense` (the same fields, measured alike).

    A failed measurement on either side (an `error` field) leaves `row` as it is.
    """
    if "error" in row or "error" in dense:
        return row
    out = dict(row, flops_ratio=row["flops"] / dense["flops"], reference=dense["network"])
    for batch in BATCHES:
        out[f"speedup_b{batch}"] = dense[f"latency_ms_b{batch}"] / row[f"latency_ms_b{batch}"]
    return out


def main(argv: list[str] | None = None) -> int:
    """One subject's measurement, as JSON on the last line (see bench.cli)."""
    parser = argparse.ArgumentParser(prog="python -m bench.inference")
    parser.add_argument("subject", help="dense, uniform:<ratio>, run:<folder> or dense:<folder>")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--width", type=float, default=1.0, help="width of the CIFAR ResNet-50 of dense/uniform")
    args = parser.parse_args(argv)
    from core.env import size_threads

    size_threads()  # the CPUs this process may use (its affinity, $S2H_THREADS)
    print(json.dumps(measure_network(args.subject, resolve_device(args.device), args.warmup, args.width)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
