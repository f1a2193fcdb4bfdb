"""The cost of one training step of each method (Table 10's time and memory rows).

Every method trains CIFAR ResNet-50 at CIFAR-100's shape (100 classes, 32 px) with the paper's
CIFAR recipe (`experiments/recipes.yaml`, batch 64) on synthetic batches, built exactly as the
engine builds a run (`core.engine` pieces, the pruner registry). A step is timed from the
pruner's `train_step` call to its return (CUDA synchronised); the figure kept is the median of
the measured steps after warm-up, and an epoch is that times CIFAR-100's 782 steps of 64.

What a step costs changes during a run, so each method is measured where its run spends it:

- S2HPruner (one phase): its step costs the soft network (full width, always) plus the hard
  network at its kept widths (`core.groups.sliced`), so it depends on the hard widths only.
  It is measured twice (`masks`): at initialisation (the mask logits at zero, half of every
  group kept) and with the masks at the target (every group's logits peaked on the bucket
  of one uniform width fraction whose FLOPs meet the target: where the masks sit for most of
  a 500-epoch run). Each row also splits the step into the phases of Algorithm 1
  (`phase_s_mean`: the two forward passes, the three backward passes, the gradients'
  combination; the rest of the step is the optimizers).
- The baselines (`baselines.phases`): every phase of the run is timed in turn, entered as the
  run enters it (its pruning, slimming or partition hook included, untimed), and the step
  figure is the mean over the phases weighted by their steps in a paper-profile run
  (`phases`: each phase's median and steps). Phases that repeat one step on one network shape
  (IMP-Refill's rounds: the dense network under weight masks) are timed once. IMP-Refill's
  rewind snapshot is taken at the start (`rewind_fraction=0`), so that round 1 can end without
  training to its rewind point; the step is the same.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from typing import Any, Callable

import torch

from bench.inference import uniform_widths
from core import catalog
from core.config import RunConfig
from core.resolve import load
from core.engine import resolve_device
from core.measure import MemoryPeak, memory_kind, synchronize
from core.models import build_model
from core.pruner import PRUNERS, Pruner, TrainContext
from core.seeding import seed_everything
from method.algorithm import S2HState
from method.options import STEP_MEMORIES
from method.prefix import bucket_ceil

CIFAR100_STEPS = 782  # ceil(50,000 / 64)
BATCH = 64


def methods() -> tuple[str, ...]:
    """What the benchmark measures: dense and every compared method (`core.catalog`)."""
    return ("dense", *catalog.compared())


METHOD_OPTIONS = {"s2hpruner": ["prune.options.mask_rule=expected_width"], "refill": ["prune.options.rewind_fraction=0"]}
MASKS = ("init", "target")
PEAK = 30.0  # a logit this far above the others holds all but e^-30 of a group's mass


def bench_config(method: str, target: float, device: str, width: float = 1.0, options: tuple[str, ...] = ()) -> RunConfig:
    """The paper's CIFAR-100 ResNet-50 recipe (the full-width network) on synthetic data of its shape."""
    from experiments.recipes import recipes

    recipe = recipes()["paper"]["cifar100"]["resnet50"]
    overrides = [f"{key}={value}" for key, value in recipe.items() if not key.startswith("data.")]
    overrides += ["model.name=resnet50", f"model.width={width}", "data.name=synthetic", "data.options.num_classes=100",
                  "data.options.image_size=32", f"train.batch_size={BATCH}", f"train.device={device}",
                  f"prune.method={method}", "progress=false"]
    if method != "dense":
        overrides.append(f"prune.flops_target={target}")
    return load(overrides + METHOD_OPTIONS.get(method, []) + list(options))


def build_pruner(cfg: RunConfig, device: torch.device, images: torch.Tensor, labels: torch.Tensor) -> Pruner:
    """The run's pruner as the engine builds it; its own batches (BN recalibration) are the timed batch."""
    seed_everything(cfg.seed)
    model = build_model(cfg.model, 100, 32)
    ctx = TrainContext(cfg, device, CIFAR100_STEPS, 100, 32, run_dir=None,
                       train_batches=lambda n: ((images, labels) for _ in range(n)), test_batches=None)
    return PRUNERS.get(cfg.prune.method).factory(model.to(device), ctx)


def masks_at_target(state: S2HState, target: float) -> float:
    """Mask logits peaked on one uniform width fraction whose FLOPs meet `target`; the hard
    network's FLOPs ratio that results."""
    kept = uniform_widths(state.flops, state.groups.sizes, target)
    with torch.no_grad():
        for logits, width, divisor, size in zip(state.masks.logits, kept, state.masks.divisors, state.groups.sizes):
            logits.zero_()
            logits[math.ceil(bucket_ceil(width, divisor, size) / divisor) - 1] = PEAK
    return state.hard_flops_ratio()


def timed(step: Callable[[], Any], device: torch.device) -> float:
    """Seconds `step()` takes: on a GPU between CUDA events recorded around it (the GPU's time,
    waited for at the end), on a CPU by the wall clock."""
    if device.type != "cuda":
        tick = time.perf_counter()
        step()
        return time.perf_counter() - tick
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    synchronize(device)
    start.record()
    step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000


def time_calls(step: Callable[[int], Any], device: torch.device, warmup: int, steps: int) -> list[float]:
    """Seconds of each of `steps` calls `step(k)` after `warmup` untimed ones (`k` counts every
    call from 0; each timed by `timed`)."""
    for k in range(warmup):
        step(k)
    return [timed(lambda k=k: step(k), device) for k in range(warmup, warmup + steps)]


def time_steps(pruner: Pruner, images: torch.Tensor, labels: torch.Tensor, device: torch.device, first: int,
               warmup: int, steps: int) -> list[float]:
    """Seconds of each of `steps` steps after `warmup` steps, the first step counted `first`."""
    return time_calls(lambda k: pruner.train_step(images, labels, 0, first + k), device, warmup, steps)


def summary(times: list[float]) -> dict[str, Any]:
    """The timed steps (`step_s`, in order) and their median, mean and extremes."""
    return {"step_s_median": statistics.median(times), "step_s_mean": statistics.fmean(times),
            "step_s_min": min(times), "step_s_max": max(times), "step_s": list(times)}


def measure_phases(pruner: Pruner, images: torch.Tensor, labels: torch.Tensor, device: torch.device, warmup: int,
                   steps: int) -> list[dict[str, Any]]:
    """Every phase of a phased baseline in turn: its name, its steps in the run and its step
    times (see the module docstring)."""
    phases = pruner.phases  # type: ignore[attr-defined]
    timed: dict[str, list[float]] = {}
    rows = []
    while True:
        name, start, end = phases.name, phases.start, phases.end
        kind = name.rstrip("0123456789") or name  # round1, round2, ...: one step, one network shape
        if kind not in timed:
            timed[kind] = time_steps(pruner, images, labels, device, start, warmup, steps)
        rows.append({"phase": name, "steps": end - start, "timed_as": kind, **summary(timed[kind])})
        if phases.index + 1 >= len(phases.phases):
            return rows
        phases.advance(end)


def weighted(phases: list[dict[str, Any]]) -> dict[str, float]:
    """A run's mean step from its phases' (weights: their steps)."""
    total = sum(p["steps"] for p in phases)
    return {"step_s_median": sum(p["steps"] * p["step_s_median"] for p in phases) / total,
            "step_s_mean": sum(p["steps"] * p["step_s_mean"] for p in phases) / total,
            "step_s_min": min(p["step_s_min"] for p in phases), "step_s_max": max(p["step_s_max"] for p in phases)}


def soft_pass_ratio(phases: dict[str, float]) -> float:
    """An S2HPruner step over its soft network's forward pass and L's backward pass, in the same
    steps: the work of a dense step, under the masks. Unlike the ratio to the dense step, which
    was measured minutes apart, the machine's drift cancels out of it."""
    return sum(phases.values()) / (phases["soft_forward"] + phases["backward_soft_loss"])


def measure_training(method: str, target: float = 0.15, device_name: str = "auto", warmup: int = 2,
                     steps: int = 5, width: float = 1.0, masks: str = "init", step_memory: str | None = None) -> dict[str, Any]:
    """Median step time (phase-weighted for the baselines), the epoch it extrapolates to, and
    the training peak memory above the baseline.

    Inference is measured on exported networks (`bench.inference`): a pruner's network in its
    first steps is not the one it will export.
    """
    if masks not in MASKS:
        raise ValueError(f"masks must be one of {', '.join(MASKS)}, got {masks!r}")
    device = resolve_device(device_name)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    cfg = bench_config(method, target, device.type, width,
                       () if step_memory is None else (f"prune.options.step_memory={step_memory}",))
    extra: dict[str, Any] = {}
    with MemoryPeak(device) as memory:
        images = torch.randn(BATCH, 3, 32, 32, device=device)
        labels = torch.randint(0, 100, (BATCH,), device=device)
        pruner = build_pruner(cfg, device, images, labels)
        state = getattr(pruner, "state", None)
        s2h = state if isinstance(state, S2HState) else None
        if s2h is not None:
            extra["masks"] = masks
            if masks == "target":
                extra["hard_flops_ratio_start"] = masks_at_target(s2h, target)
            extra["hard_pass"] = "sliced" if s2h.sliced is not None else "masked"
            extra["step_memory"] = s2h.options.step_memory
            if device.type == "cpu":  # timing phases costs nothing without CUDA to synchronise
                s2h.phase_times = {}
        if hasattr(pruner, "phases"):
            extra["phases"] = measure_phases(pruner, images, labels, device, warmup, steps)
            figures = weighted(extra["phases"])
            basis = "phases' figures weighted by their steps in a paper-profile run"
        else:
            time_steps(pruner, images, labels, device, 0, warmup, 0)
            if s2h is not None and s2h.phase_times is not None:
                s2h.phase_times = {}  # the timed steps' phases only
            figures = summary(time_steps(pruner, images, labels, device, warmup, 0, steps))
            basis = "median"
    row = {
        "method": method, "flops_target": None if method == "dense" else target, "batch": BATCH, "width": width,
        "warmup_steps": warmup, "measured_steps": steps, **figures, "step_s_basis": basis,
        "timer": "cuda_events" if device.type == "cuda" else "wall_clock",
        "epoch_s": figures["step_s_median"] * CIFAR100_STEPS,
        "peak_mem_mb_train": memory.extra_mb, "memory_kind": memory_kind(device), **extra,
    }
    if s2h is not None:
        if s2h.phase_times is None:  # on a GPU: more steps, synchronised between phases, apart from the timed ones
            s2h.phase_times = {}
            time_steps(pruner, images, labels, device, warmup + steps, 0, steps)
            synchronize(device)
        row["phase_s_mean"] = phases = {name: seconds / steps for name, seconds in s2h.phase_times.items()}
        row["step_over_soft_pass"] = soft_pass_ratio(phases)
        row["hard_flops_ratio"] = s2h.hard_flops_ratio()
    del pruner
    return row


def main(argv: list[str] | None = None) -> int:
    """One method's measurement in a process of its own, as JSON on the last line (see bench.cli)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.training")
    parser.add_argument("method", choices=methods())
    parser.add_argument("--device", default="auto")
    parser.add_argument("--target", type=float, default=0.15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--masks", default="init", choices=MASKS, help="S2HPruner's masks: at initialisation or at the target")
    parser.add_argument("--step-memory", default=None, choices=STEP_MEMORIES, help="S2HPruner's step_memory (default: its default)")
    args = parser.parse_args(argv)
    from core.env import size_threads

    size_threads()  # the CPUs this process may use (its affinity, $S2H_THREADS)
    result = measure_training(args.method, args.target, args.device, args.warmup, args.steps, masks=args.masks,
                              step_memory=args.step_memory)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
