"""The cost of one training step of each method (Table 10's time and memory rows).

Every method trains CIFAR ResNet-50 at CIFAR-100's shape (100 classes, 32 px) with the paper's
CIFAR recipe (`experiments/recipes.yaml`, batch 64) on synthetic batches, built exactly as the
engine builds a run (`core.engine` pieces, the pruner registry). A step is timed from the
pruner's `train_step` call to its return (CUDA synchronised); the figure kept is the median of
the measured steps after warm-up, and an epoch is that times CIFAR-100's 782 steps of 64.

The steps measured are the method's first ones, i.e. its first phase: for S2HPruner, RST-S,
OTOv2 and IMP-Refill that is the phase that runs the whole network, as most of their epochs do;
Group-SL's later fine-tuning phase trains an already slimmed network and would be cheaper.

For S2HPruner the row also splits a step into the phases of Algorithm 1 (`phase_s_mean`: the
soft and hard forward passes, the three backward passes, the gradients' combination; the rest
of the step is the optimizers), to show what its cost over dense is made of.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any

import torch

from core.config import RunConfig, load
from core.engine import resolve_device
from core.measure import MemoryPeak, memory_kind
from core.models import build_model
from core.pruner import PRUNERS, Pruner, TrainContext
from core.seeding import seed_everything
from method.algorithm import S2HState

CIFAR100_STEPS = 782  # ceil(50,000 / 64)
BATCH = 64
METHODS = ("dense", "rst_s", "group_sl", "otov2", "refill", "s2hpruner")
METHOD_OPTIONS = {"s2hpruner": ["prune.options.mask_rule=expected_width"]}


def bench_config(method: str, target: float, device: str, width: float = 1.0) -> RunConfig:
    """The paper's CIFAR-100 ResNet-50 recipe (the full-width network) on synthetic data of its shape."""
    from experiments.spec import recipes

    recipe = recipes()["paper"]["cifar100"]["resnet50"]
    overrides = [f"{key}={value}" for key, value in recipe.items() if not key.startswith("data.")]
    overrides += ["model.name=resnet50", f"model.width={width}", "data.name=synthetic", "data.options.num_classes=100",
                  "data.options.image_size=32", f"train.batch_size={BATCH}", f"train.device={device}",
                  f"prune.method={method}", "progress=false"]
    if method != "dense":
        overrides.append(f"prune.flops_target={target}")
    return load(overrides + METHOD_OPTIONS.get(method, []))


def build_pruner(cfg: RunConfig, device: torch.device, images: torch.Tensor, labels: torch.Tensor) -> Pruner:
    """The run's pruner as the engine builds it; its own batches (BN recalibration) are the timed batch."""
    seed_everything(cfg.seed)
    model = build_model(cfg.model, 100, 32)
    ctx = TrainContext(cfg, device, CIFAR100_STEPS, 100, 32, run_dir=None,
                       train_batches=lambda n: ((images, labels) for _ in range(n)), test_batches=None)
    return PRUNERS.get(cfg.prune.method).factory(model.to(device), ctx)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_training(method: str, target: float = 0.15, device_name: str = "auto", warmup: int = 2,
                     steps: int = 5, width: float = 1.0) -> dict[str, Any]:
    """Median step time, the epoch it extrapolates to, and the training peak memory above the baseline.

    Inference is measured on exported networks (`bench.inference`): a pruner's network in its
    first steps is not the one it will export.
    """
    device = resolve_device(device_name)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    cfg = bench_config(method, target, device.type, width)
    with MemoryPeak(device) as memory:
        images = torch.randn(BATCH, 3, 32, 32, device=device)
        labels = torch.randint(0, 100, (BATCH,), device=device)
        pruner = build_pruner(cfg, device, images, labels)
        state = getattr(pruner, "state", None)
        phased = state if isinstance(state, S2HState) else None
        if phased is not None and device.type == "cpu":  # timing phases costs nothing without CUDA to synchronise
            phased.phase_times = {}
        times = []
        for step in range(warmup + steps):
            if step == warmup and phased is not None and phased.phase_times is not None:
                phased.phase_times = {}  # the timed steps' phases only
            synchronize(device)
            tick = time.perf_counter()
            pruner.train_step(images, labels, 0, step)
            synchronize(device)
            if step >= warmup:
                times.append(time.perf_counter() - tick)
    step_s = statistics.median(times)
    row = {
        "method": method, "flops_target": None if method == "dense" else target, "batch": BATCH, "width": width,
        "warmup_steps": warmup, "measured_steps": steps, "step_s_median": step_s, "step_s_mean": statistics.fmean(times),
        "step_s_min": min(times), "step_s_max": max(times), "epoch_s": step_s * CIFAR100_STEPS,
        "peak_mem_mb_train": memory.extra_mb, "memory_kind": memory_kind(device),
    }
    if phased is not None:
        if phased.phase_times is None:  # on a GPU: more steps, synchronised between phases, apart from the timed ones
            phased.phase_times = {}
            for step in range(warmup + steps, warmup + 2 * steps):
                pruner.train_step(images, labels, 0, step)
            synchronize(device)
        row["phase_s_mean"] = {name: seconds / steps for name, seconds in phased.phase_times.items()}
    del pruner
    return row


def main(argv: list[str] | None = None) -> int:
    """One method's measurement in a process of its own, as JSON on the last line (see bench.cli)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.training")
    parser.add_argument("method", choices=METHODS)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--target", type=float, default=0.15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    from core.env import size_threads

    size_threads()  # the CPUs this process may use (its affinity, $S2H_THREADS)
    result = measure_training(args.method, args.target, args.device, args.warmup, args.steps)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
