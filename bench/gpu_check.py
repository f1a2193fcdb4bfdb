"""`python -m bench gpu-check` (`make gpu-check`): one short run that proves and measures the CUDA paths.

No GPU has run this suite's code yet, and GPU time comes in short windows (bench/README.md,
"GPU check"), so the check is prepared and tested here and takes one command there. Five parts,
each in a fresh process with its own time limit (a part that fails or overruns is recorded as
such, and the others still run), within 8 minutes in all:

- `methods`: every method (dense, S2HPruner under both hard rules, the four baselines) trains a
  few steps through the engine on CUDA, exports, and its `pruned.pt` reloads to a network with
  the record's FLOPs and the exported network's outputs;
- `training`: the training step (CUDA events, after warm-up) and its peak memory
  (`torch.cuda.max_memory_allocated`) of dense and of S2HPruner at initialisation and at the
  target, on full-width CIFAR ResNet-50 at batch 64 (Table 10's setting), dense measured first
  and last (`bench.training`);
- `inference`: latency of that network slimmed to 15 % of its FLOPs (`core.groups.slim`, the
  export's slimming) against the dense one, at batch 64 and batch 1 (`bench.inference`);
- `ddp`: a one-process NCCL group running the engine's data-parallel step (gradients averaged
  before every optimizer step, buffers broadcast after it: `core.distributed`), whose result
  must equal the plain step's;
- `streams`: Appendix F's two-stream step (`prune.options.streams=two`) against the sequential
  one: gradients within 1e-5, both timed.

The result goes to `results/bench/gpu-check/<gpu>.json` (`SCHEMA`), a folder of its own: Table
10 reads `results/bench/*.json`, the full benchmark of every method, and two methods' steps
must not stand in for it.
"""

from __future__ import annotations

import argparse
import copy
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from core import catalog
from core.errors import ConfigError

TOLERANCE = 1e-5  # relative: the two-stream and the data-parallel step against the plain one
BUDGET_S = 480  # the whole check's limit: the parts' limits add up to at most this


@dataclass(frozen=True)
class Part:
    name: str
    what: str
    estimate_s: int  # expected on one H100-class GPU (the CUDA start included), not yet measured there
    limit_s: int  # the part's process is stopped after this


PARTS = (
    Part("methods", "dense, S2HPruner (expected_width, mean_threshold), RST-S, Group-SL, OTOv2, IMP-Refill: "
         "2 epochs of 8 steps each through the engine, export, reload", 90, 170),
    Part("training", "step time and peak memory, CIFAR ResNet-50 at batch 64: dense, S2HPruner at init and at "
         "the target (and with step_memory=low), dense again", 100, 150),
    Part("inference", "latency of the 15 % network against dense at batch 64 and 1", 35, 60),
    Part("ddp", "one-process NCCL group: the data-parallel step equals the plain step", 25, 45),
    Part("streams", "two-stream step (Appendix F) against the sequential one: gradients within 1e-5, both timed", 40, 55),
)
PART_NAMES = tuple(part.name for part in PARTS)

# The JSON's fields and their types (`validate`); each part's row adds its own figures.
SCHEMA: dict[str, type | tuple[type, ...]] = {
    "kind": str, "device": str, "date": str, "env": dict, "parts": dict, "passed": bool, "wall_s": (int, float),
}
PART_SCHEMA: dict[str, type | tuple[type, ...]] = {"status": str, "wall_s": (int, float)}
PART_STATUSES = ("passed", "failed", "timed out", "skipped")


# ----------------------------------------------------------------------------- the parts

# A small network and batch for `methods`: every phase of every method in a few steps.
SMOKE = ["model.name=resnet50", "model.width=0.125", "data.name=synthetic", "data.options.image_size=32",
         "data.options.train_size=128", "data.options.test_size=64", "train.epochs=2", "train.batch_size=16",
         "train.eval_batch_size=64", "progress=false"]


def method_cells() -> tuple[tuple[str, list[str]], ...]:
    """Dense, S2HPruner under both hard rules, then every baseline (`core.catalog`)."""
    rules = [["prune.options.mask_rule=expected_width"], ["prune.options.mask_rule=mean_threshold"]]
    return (("dense", []), *((catalog.ours(), rule) for rule in rules), *((name, []) for name in catalog.baselines()))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| over max(|b|, 1e-12)."""
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-12)


def part_methods(device: torch.device, cells: tuple[tuple[str, list[str]], ...] | None = None) -> dict[str, Any]:
    """Each method's run through the engine on `device` (`method_cells` by default); its export
    reloaded and compared."""
    from core.resolve import load
    from core.engine import run
    from core.export import load_pruned
    from core.measure import count_flops
    from experiments.recipes import method_recipe

    rows = []
    with tempfile.TemporaryDirectory() as root:
        for method, options in cells or method_cells():
            smoke = [f"{key}={value}" for key, value in method_recipe("smoke", method).items()]
            target = [] if method == "dense" else ["prune.flops_target=0.35"]
            cfg = load([*SMOKE, f"prune.method={method}", f"train.device={device.type}", f"output_root={root}",
                        *target, *smoke, *options])
            tick = time.perf_counter()
            outcome = run(cfg, handle_signals=False)
            row: dict[str, Any] = {"method": method, "options": options, "status": outcome.status,
                                   "top1": outcome.record.get("metrics", {}).get("top1"),
                                   "flops_ratio": outcome.record.get("metrics", {}).get("flops_ratio"),
                                   "run_s": time.perf_counter() - tick}
            if outcome.status == "done" and outcome.network is not None:
                reloaded = load_pruned(outcome.run_dir.path / "pruned.pt").to(device).eval()
                exported = outcome.network.to(device).eval()
                x = torch.randn(8, 3, 32, 32, device=device)
                with torch.no_grad():
                    row["reload_error"] = relative_error(reloaded(x), exported(x))
                row["reload_flops_equal"] = count_flops(reloaded, 32) == outcome.record["metrics"]["flops"]
                row["passed"] = row["reload_error"] <= TOLERANCE and row["reload_flops_equal"]
            else:
                row["passed"] = False
                row["error"] = outcome.record.get("error")
            rows.append(row)
    return {"rows": rows, "passed": all(row["passed"] for row in rows)}


def part_training(device: torch.device, steps: int = 10, warmup: int = 3) -> dict[str, Any]:
    """`bench.training`'s measurements of dense and S2HPruner, each in a fresh process."""
    from bench.cli import measure_training_plan

    rows = measure_training_plan(["dense", "s2hpruner"], device.type, warmup, steps, 0.15)
    return {"rows": rows, "passed": all("error" not in row for row in rows)}


def part_inference(device: torch.device, width: float = 1.0) -> dict[str, Any]:
    """The 15 % network against dense, each in a fresh process (`bench.inference`)."""
    from bench.cli import in_fresh_process
    from bench.inference import relative_to

    args = ["--device", device.type, "--width", str(width)]
    dense = in_fresh_process("bench.inference", ["dense", *args])
    slim = relative_to(in_fresh_process("bench.inference", ["uniform:0.15", *args]), dense)
    return {"rows": [dense, slim], "passed": "error" not in dense and "error" not in slim}


def _batch(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed CIFAR-100-shaped batch of `bench.training.BATCH` on `device` (the DDP and stream parts')."""
    from bench.training import BATCH

    generator = torch.Generator().manual_seed(3)
    images = torch.randn(BATCH, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 100, (BATCH,), generator=generator)
    return images.to(device), labels.to(device)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tensors(pruner: Any) -> list[torch.Tensor]:
    return [t.detach() for module in pruner.replicated_modules() for t in (*module.parameters(), *module.buffers())]


def part_ddp(device: torch.device, width: float = 1.0, method: str = "s2hpruner") -> dict[str, Any]:
    """One step of `method` plain and one under the engine's data-parallel synchronisation in a
    process group of one (NCCL on a GPU, gloo on a CPU), from the same state: equal results."""
    import torch.distributed as dist

    from bench.training import bench_config, build_pruner
    from core import distributed

    class OneOfOne(distributed.Distributed):
        """A group of one that still synchronises (the engine skips it for a single process)."""

        @property
        def enabled(self) -> bool:
            return True

    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device.index or 0)  # NCCL's collectives run on the current device
    # the address in the call, not in MASTER_ADDR/MASTER_PORT: this process's environment is
    # left as it was (submitit refuses to start data-parallel workers where they are set)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        images, labels = _batch(device)
        cfg = bench_config(method, 0.15, device.type, width)
        plain, synced = build_pruner(cfg, device, images, labels), build_pruner(cfg, device, images, labels)
        place = OneOfOne()
        plain.train_step(images, labels, 0, 0)
        with distributed.GradientSync(place):
            synced.train_step(images, labels, 0, 0)
        distributed.broadcast_buffers(synced.replicated_modules(), place)
        errors = [relative_error(a, b) for a, b in zip(_tensors(synced), _tensors(plain)) if a.is_floating_point()]
        worst = max(errors)
    finally:
        dist.destroy_process_group()
    return {"backend": backend, "method": method, "tensors": len(errors), "max_relative_error": worst,
            "passed": worst <= TOLERANCE}


def part_streams(device: torch.device, width: float = 1.0, steps: int = 10, warmup: int = 3) -> dict[str, Any]:
    """S2HPruner's gradients with the hard pass on its own stream against the sequential step's,
    its masks at the target (`bench.training.masks_at_target`), and the step time of each."""
    from bench.training import bench_config, build_pruner, masks_at_target, time_calls

    images, labels = _batch(device)
    states = {}
    for streams in ("one", "two"):
        cfg = bench_config("s2hpruner", 0.15, device.type, width, (f"prune.options.streams={streams}",))
        state = build_pruner(cfg, device, images, labels).state  # type: ignore[attr-defined]
        masks_at_target(state, 0.15)
        states[streams] = state
    sequential, overlapped = states["one"], states["two"]
    overlapped.load_state_dict(copy.deepcopy(sequential.state_dict()))
    want, have = sequential.gradients(images, labels), overlapped.gradients(images, labels)
    pairs = [(h, w) for h, w in zip(have.theta + have.u, want.theta + want.u) if h is not None and w is not None]
    worst = max(relative_error(h, w) for h, w in pairs)
    row = {"max_relative_error": worst, "tensors": len(pairs), "logits_error": relative_error(have.logits, want.logits),
           "hard_flops_ratio": sequential.hard_flops_ratio()}
    for name, state in states.items():
        times = time_calls(lambda _, s=state: s.gradients(images, labels), device, warmup, steps)
        row[f"step_s_{name}_stream"] = statistics.median(times)
    row["speedup"] = row["step_s_one_stream"] / row["step_s_two_stream"]
    row["passed"] = worst <= TOLERANCE and row["logits_error"] <= TOLERANCE
    return row


RUNNERS: dict[str, Callable[[torch.device], dict[str, Any]]] = {
    "methods": part_methods, "training": part_training, "inference": part_inference, "ddp": part_ddp,
    "streams": part_streams,
}


# ----------------------------------------------------------------------------- the check


def plan_lines() -> list[str]:
    """What the check runs, part by part, with the time each is expected to take and its limit."""
    lines = [f"gpu-check: {len(PARTS)} parts, each in a fresh process, ~{sum(p.estimate_s for p in PARTS) / 60:.1f} min "
             f"expected on one H100-class GPU, {sum(p.limit_s for p in PARTS) / 60:.1f} min at most"]
    lines += [f"  {part.name:<10} ~{part.estimate_s:>3} s (limit {part.limit_s} s)  {part.what}" for part in PARTS]
    lines.append("  writes results/bench/gpu-check/<gpu>.json (estimates: not yet measured on a GPU)")
    return lines


def run_part_process(part: Part, device: str) -> dict[str, Any]:
    """One part in a fresh process: its JSON row, or a failed / timed out row."""
    tick = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--part", part.name, "--device", device],
                              capture_output=True, text=True, timeout=part.limit_s)
    except subprocess.TimeoutExpired:
        return {"status": "timed out", "wall_s": time.perf_counter() - tick, "error": f"over its {part.limit_s} s limit"}
    wall = time.perf_counter() - tick
    if done.returncode != 0:
        return {"status": "failed", "wall_s": wall, "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {**row, "status": "passed" if row.get("passed") else "failed", "wall_s": wall}


def passed(parts: dict[str, dict[str, Any]]) -> bool:
    """Every part that ran passed, and at least one ran (the others were left out by --parts)."""
    ran = [row for row in parts.values() if row.get("status") != "skipped"]
    return bool(ran) and all(row.get("status") == "passed" for row in ran)


def _type_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))


def validate(result: dict[str, Any]) -> list[str]:
    """Every way `result` departs from `SCHEMA` (empty when it conforms)."""
    problems = [f"{key}: missing" for key in SCHEMA if key not in result]
    problems += [f"{key}: {type(result[key]).__name__}, not {_type_name(kind)}"
                 for key, kind in SCHEMA.items() if key in result and not isinstance(result[key], kind)]
    if result.get("kind") not in (None, "gpu-check"):
        problems.append(f"kind: {result['kind']!r}, not 'gpu-check'")
    parts = result.get("parts") if isinstance(result.get("parts"), dict) else {}
    problems += [f"parts.{name}: missing" for name in PART_NAMES if name not in parts]
    problems += [f"parts.{name}: not a part" for name in parts if name not in PART_NAMES]
    for name, row in parts.items():
        problems += [f"parts.{name}.{key}: missing or not {_type_name(kind)}"
                     for key, kind in PART_SCHEMA.items() if not isinstance(row.get(key), kind)]
        if row.get("status") not in PART_STATUSES:
            problems.append(f"parts.{name}.status: {row.get('status')!r}")
    if isinstance(result.get("passed"), bool) and parts and result["passed"] != passed(parts):
        problems.append("passed: disagrees with the parts' statuses")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the time each part takes; run nothing")
    parser.add_argument("--parts", default=",".join(PART_NAMES), help="comma-separated, from: " + ", ".join(PART_NAMES))
    parser.add_argument("--out", default="results/bench/gpu-check", help="folder of the JSON")
    parser.add_argument("--part", choices=PART_NAMES, help=argparse.SUPPRESS)  # one part, in this process
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # with --part: cpu in the tests
    args = parser.parse_args(argv)
    if args.part is not None:
        from core.env import size_threads

        size_threads()
        print(json.dumps(RUNNERS[args.part](torch.device(args.device))))
        return 0
    chosen = [name for name in args.parts.split(",") if name]
    unknown = sorted(set(chosen) - set(PART_NAMES))
    try:
        if unknown or not chosen:
            raise ConfigError(f"--parts: {'unknown part ' + repr(unknown[0]) if unknown else 'no part named'}; "
                              f"choose from {', '.join(PART_NAMES)}")
        if args.dry_run:
            print("\n".join(plan_lines()))
            return 0
        if not torch.cuda.is_available():
            raise ConfigError(f"gpu-check needs a CUDA GPU; torch {torch.__version__} finds none here "
                              "(make gpu-check ARGS=--dry-run prints the plan)")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return check(chosen, Path(args.out))


def check(chosen: list[str], out: Path) -> int:
    """Run the chosen parts on the GPU, write the JSON, print one line per part."""
    from bench.cli import device_slug
    from core.env import environment

    env = environment(torch.device("cuda"))
    started = time.perf_counter()
    parts: dict[str, dict[str, Any]] = {}
    for part in PARTS:
        if part.name not in chosen:
            parts[part.name] = {"status": "skipped", "wall_s": 0.0}
            continue
        print(f"gpu-check: {part.name} (~{part.estimate_s} s) ...", flush=True)
        parts[part.name] = row = run_part_process(part, "cuda")
        print(f"  {row['status']} in {row['wall_s']:.0f} s" + (f": {row['error']}" if "error" in row else ""), flush=True)
    result = {"kind": "gpu-check", "device": str(env["device"]), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "env": env, "parts": parts, "passed": passed(parts),
              "wall_s": time.perf_counter() - started}
    path = out / f"{device_slug(env)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path} ({result['wall_s']:.0f} s): {'passed' if result['passed'] else 'FAILED'}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
