"""`python -m bench`: training cost per method and real inference speed and memory, into results/bench/.

    python -m bench [--device auto|cpu|cuda] [--methods dense,s2hpruner] [--runs table10|all|none]
    python -m bench gpu-check [--dry-run] [--parts methods,training,inference,ddp,streams]

Every measurement runs in a fresh process: a process keeps the memory an earlier network freed
(on a CPU the training peak is the resident set's), and later networks would run in a warmed,
fragmented process, so networks measured one after another in one process would not be
comparable.

- Training (`bench.training`): each method's step on CIFAR ResNet-50 at batch 64. The dense
  step, the reference of every ratio, is measured first and again last (`training_plan`), and
  its figures pool both (`pool_dense`): a shared machine's speed drifts over the tens of minutes
  between them (the same dense step measured 6.1 s and 8.9 s on one CPU VM on one day), and a
  reference taken at one end alone moves every ratio with it.
- Inference (`bench.inference`): the dense network and uniform slims at 15/35/55 % FLOPs, then
  the exported `pruned.pt` of finished runs (`--runs`: by default those of Table 10's 1x column,
  i.e. Table 1's ResNet-50 runs at 15 %), each against the dense network of its own config.

The JSON (`results/bench/<device>.json`) holds the device, library versions, date and every
figure; `python -m analysis table 10` reads its time and memory rows from it. Only a run of every
method writes it: a narrowed one (`--methods`) writes `<out>/partial/<device>-<methods>.json`,
so it never replaces the measured rows Table 10 reads. Arguments are checked before any work
(exit status 2 and one line on a bad one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from core.engine import resolve_device
from core.env import environment, size_threads
from core.errors import ConfigError

RUN_CHOICES = ("table10", "all", "none")


def device_slug(env: dict[str, Any]) -> str:
    """`cpu-x86_64`, `nvidia-h100-80gb-hbm3`: the file name of a device's results."""
    return re.sub(r"[^a-z0-9]+", "-", str(env["device"]).lower()).strip("-")


def in_fresh_process(module: str, args: list[str]) -> dict[str, Any]:
    """`python -m module args`: the JSON on its last line, or {"error": its last line of stderr}."""
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def training_plan(methods: list[str]) -> list[tuple[str, str | None, str | None]]:
    """The training measurements in order: (method, S2HPruner's masks, its step_memory).

    S2HPruner is measured at initialisation and at the target (its default step), and at the
    target with step_memory=low (one graph at the peak). Dense is measured once more at the end
    when anything else is measured (see the module docstring).
    """
    s2h = [("init", None), ("target", None), ("target", "low")]
    plan = [(method, masks, memory) for method in methods
            for masks, memory in (s2h if method == "s2hpruner" else [(None, None)])]
    if "dense" in methods and len(plan) > 1:
        plan.append(("dense", None, None))
    return plan


def pool_dense(training: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training rows with dense's measurements merged into one row where the first was.

    The merged row's step figures are those of all its timed steps together, `step_s_median_each`
    keeps each measurement's median (the drift between them), and its peak memory is the larger.
    """
    dense = [row for row in training if row["method"] == "dense" and "error" not in row]
    if len(dense) < 2:
        return training
    from bench.training import CIFAR100_STEPS, summary

    merged = {**dense[0], **summary([t for row in dense for t in row["step_s"]])}
    merged["epoch_s"] = merged["step_s_median"] * CIFAR100_STEPS
    merged["measured_steps"] = sum(row["measured_steps"] for row in dense)
    merged["step_s_median_each"] = [row["step_s_median"] for row in dense]
    merged["peak_mem_mb_train"] = max(row["peak_mem_mb_train"] for row in dense)
    merged["step_s_basis"] = f"median of the steps of {len(dense)} measurements, the first and the last of the run"
    rows = [row for row in training if not any(row is d for d in dense)]
    rows.insert(next(i for i, row in enumerate(training) if row is dense[0]), merged)
    return rows


def exported_runs(results: str | Path, which: str) -> list[Any]:
    """The finished runs whose `pruned.pt` the benchmark measures (`--runs`)."""
    from analysis.records import load_runs
    from analysis.tables import table10_exports

    if which == "none":
        return []
    runs = load_runs(results)
    chosen = table10_exports(runs) if which == "table10" else [run for run in runs.runs if run.done]
    return [run for run in chosen if run.path is not None and (run.path / "pruned.pt").exists()]


def reference_key(folder: Path) -> str:
    """What a run's dense reference depends on (from its recorded config): the model and the data's shape."""
    from bench.inference import recorded_config, run_shape

    cfg = recorded_config(folder)
    return json.dumps([dataclasses.asdict(cfg.model), *run_shape(cfg)], sort_keys=True)


def measure_exports(runs: list[Any], device: str, progress: tqdm) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each run's exported network against the dense network of its config (measured once per config)."""
    from bench.inference import relative_to

    references: dict[str, dict[str, Any]] = {}
    dense_rows, rows = [], []
    for run in runs:
        key = reference_key(run.path)
        if key not in references:
            references[key] = in_fresh_process("bench.inference", [f"dense:{run.path}", "--device", device])
            dense_rows.append(references[key])
            progress.update()
        row = in_fresh_process("bench.inference", [f"run:{run.path}", "--device", device])
        progress.update()
        row.update(run_id=run.run_id, experiment=run.experiment, profile=run.profile, method=run.method,
                   model=run.model, flops_target=run.flops_target, flops_ratio_record=run.metric("flops_ratio"))
        rows.append(relative_to(row, references[key]))
    return dense_rows, rows


def measure_training_plan(methods: list[str], device: str, warmup: int, steps: int, target: float) -> list[dict[str, Any]]:
    """Every measurement of `training_plan(methods)`, each in a fresh process (`bench.training`),
    dense pooled (`pool_dense`) and every row's step as a ratio to dense's."""
    training = []
    for method, masks, memory in tqdm(training_plan(methods), desc="training steps", unit="measurement"):
        row = in_fresh_process("bench.training", [method, "--device", device, "--warmup", str(warmup),
                                                  "--steps", str(steps), "--target", str(target)]
                               + ([] if masks is None else ["--masks", masks])
                               + ([] if memory is None else ["--step-memory", memory]))
        training.append({"method": method, **({} if masks is None else {"masks": masks}), **row})
    training = pool_dense(training)
    dense = next((r for r in training if r["method"] == "dense" and "error" not in r), None)
    for row in training:
        if dense is not None and "error" not in row:
            row["step_ratio_vs_dense"] = row["step_s_median"] / dense["step_s_median"]
    return training


def check_arguments(args: argparse.Namespace, methods: list[str], known: tuple[str, ...] | list[str]) -> None:
    """The command line's values, before any measurement (a bad one would fail minutes later)."""
    unknown = sorted(set(methods) - set(known))
    if unknown or not methods:
        what = f"unknown method {unknown[0]!r}" if unknown else "no method named"
        raise ConfigError(f"--methods: {what}; choose from {', '.join(known)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: no CUDA device is available here; use cpu or auto")
    if args.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {args.steps}")
    if args.warmup < 0:
        raise ConfigError(f"--warmup must be 0 or more, got {args.warmup}")
    if not 0 < args.target < 1:
        raise ConfigError(f"--target must be in (0, 1): a pruning method's FLOPs target, got {args.target}")


def main(argv: list[str] | None = None) -> int:
    from bench.inference import TARGETS, relative_to
    from bench.training import methods as known_methods

    known = known_methods()

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu or cuda")
    parser.add_argument("--methods", default=",".join(known), help="comma-separated, from: " + ", ".join(known))
    parser.add_argument("--target", type=float, default=0.15, help="FLOPs target of the pruning methods")
    parser.add_argument("--warmup", type=int, default=2, help="training steps before timing")
    parser.add_argument("--steps", type=int, default=5, help="training steps timed (the median is kept)")
    parser.add_argument("--runs", default="table10", choices=RUN_CHOICES,
                        help="exported networks to measure: Table 10's 1x runs, every finished run, or none")
    parser.add_argument("--results", default="results", help="folder of the runs (results/runs/...)")
    parser.add_argument("--out", default="results/bench", help="folder of the JSON")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    try:
        check_arguments(args, methods, known)
        device = resolve_device(args.device)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size_threads()  # what each measuring process also sets: recorded as "threads"
    env = environment(device)
    started = time.perf_counter()

    training = measure_training_plan(methods, device.type, args.warmup, args.steps, args.target)

    runs = exported_runs(args.results, args.runs)
    subjects = ["dense"] + [f"uniform:{target}" for target in TARGETS]
    progress = tqdm(total=len(subjects) + 2 * len(runs), desc="inference", unit="network")
    measured = []
    for subject in subjects:
        measured.append(in_fresh_process("bench.inference", [subject, "--device", device.type]))
        progress.update()
    inference = [relative_to(row, measured[0]) for row in measured]
    exported_dense, exported = measure_exports(runs, device.type, progress)
    progress.close()

    result = {
        "device": env["device"], "device_type": device.type, "threads": torch.get_num_threads(),
        "env": env, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "setup": {"model": "resnet50 (CIFAR stem, width 1.0)", "classes": 100, "image_size": 32, "batch": 64,
                  "steps_per_epoch": 782, "recipe": "paper cifar100/resnet50", "flops_target": args.target,
                  "warmup_steps": args.warmup, "measured_steps": args.steps, "runs": args.runs},
        "training": training, "inference": inference, "exported_dense": exported_dense, "exported": exported,
        "wall_s": time.perf_counter() - started,
    }
    complete = methods == list(known)
    out = Path(args.out) / (f"{device_slug(env)}.json" if complete else f"partial/{device_slug(env)}-{'-'.join(methods)}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result, args.steps)
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    failed = [row for row in training + inference + exported_dense + exported if "error" in row]
    return 1 if failed else 0


def print_summary(result: dict[str, Any], steps: int) -> None:
    print(f"\n{result['device']}: training step at batch 64 (median of {steps}), one CIFAR-100 epoch = 782 steps")
    for row in result["training"]:
        if "error" in row:
            print(f"  {row['method']:<10} failed: {row['error']}")
            continue
        ratio = row.get("step_ratio_vs_dense")
        name = row["method"] + (f" ({row['masks']}{', low memory' if row.get('step_memory') == 'low' else ''})"
                                if "masks" in row else "")
        hard = f"  hard FLOPs {row['hard_flops_ratio']:.3f}" if "hard_flops_ratio" in row else ""
        if "step_over_soft_pass" in row:
            hard += f"  {row['step_over_soft_pass']:.2f}x its soft pass"
        print(f"  {name:<20} {row['step_s_median'] * 1000:8.1f} ms/step  {row['epoch_s']:8.1f} s/epoch  "
              f"{'' if ratio is None else f'{ratio:5.2f}x dense'}  peak {row['peak_mem_mb_train']:7.0f} MB "
              f"({row['memory_kind']}){hard}")
        if "step_s_median_each" in row:
            each = ", ".join(f"{seconds * 1000:.1f}" for seconds in row["step_s_median_each"])
            print(f"  {'':<20} measured first and last: {each} ms/step (medians), pooled above")
        for phase in row.get("phases", []):
            print(f"  {'':<20} {phase['phase']:<10} {phase['steps']:7d} steps  {phase['step_s_median'] * 1000:8.1f} ms/step"
                  + ("" if phase["timed_as"] == phase["phase"] else f" (timed as {phase['timed_as']})"))
        if row.get("phase_s_mean"):
            phases = row["phase_s_mean"]
            parts = [f"{name} {seconds * 1000:.0f}" for name, seconds in phases.items()]
            rest = row["step_s_mean"] - sum(phases.values())  # both means over the timed steps
            print(f"  {'':<10} phases (ms): {', '.join(parts)}, the rest (optimizers, hooks) {rest * 1000:.0f}")
    print("inference (median latency, speed-up over dense beside the FLOPs ratio; memory at batch 64)")
    for row in result["inference"] + result["exported"]:
        name = row["network"] if "run_id" not in row else f"{row['profile']} {row['method']} {row['run_id']}"
        if "error" in row:
            print(f"  {name} failed: {row['error']}")
            continue
        if "flops_ratio" not in row:
            print(f"  {name}: {row['peak_mem_mb_infer']:.0f} MB (its dense reference failed)")
            continue
        print(f"  {name:<14} FLOPs {row['flops_ratio']:6.3f}  batch 1: {row['latency_ms_b1']:7.2f} ms "
              f"({row['speedup_b1']:4.2f}x)  batch 64: {row['latency_ms_b64']:8.2f} ms ({row['speedup_b64']:4.2f}x)  "
              f"memory {row['peak_mem_mb_infer']:6.0f} MB")
