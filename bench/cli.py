"""`python -m bench`: training cost per method and real inference speed-up, into results/bench/.

    python -m bench [--device auto|cpu|cuda] [--steps 5] [--warmup 2] [--methods dense,s2hpruner]

Each method's training steps run in a fresh process: on a CPU the peak resident set is the
only memory figure, and a process keeps the memory an earlier method freed, so methods measured
one after another in one process would not be comparable. Inference latency runs in this
process. The JSON (`results/bench/<device>.json`) holds the device, library versions, date and
every figure; `python -m analysis table 10` reads its time and training-memory rows from it.
"""

from __future__ import annotations

import argparse
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
from core.env import environment


def device_slug(env: dict[str, Any]) -> str:
    """`cpu-x86_64`, `nvidia-h100-80gb-hbm3`: the file name of a device's results."""
    return re.sub(r"[^a-z0-9]+", "-", str(env["device"]).lower()).strip("-")


def _training(method: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.training", method, "--device", args.device, "--warmup", str(args.warmup),
               "--steps", str(args.steps), "--target", str(args.target)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"method": method, "error": tail}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    from bench.inference import measure_inference
    from bench.training import METHODS

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu or cuda")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from: " + ", ".join(METHODS))
    parser.add_argument("--target", type=float, default=0.15, help="FLOPs target of the pruning methods")
    parser.add_argument("--warmup", type=int, default=2, help="training steps before timing")
    parser.add_argument("--steps", type=int, default=5, help="training steps timed (the median is kept)")
    parser.add_argument("--out", default="results/bench", help="folder of the JSON")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        print(f"error: unknown method {unknown[0]!r}: choose from {', '.join(METHODS)}", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    env = environment(device)
    started = time.perf_counter()
    training = [_training(m, args) for m in tqdm(methods, desc="training steps", unit="method")]
    dense = next((r for r in training if r["method"] == "dense" and "error" not in r), None)
    for row in training:
        if dense is not None and "error" not in row:
            row["step_ratio_vs_dense"] = row["step_s_median"] / dense["step_s_median"]
    print("inference latency of dense and slimmed networks ...", flush=True)
    inference = measure_inference(device)
    result = {
        "device": env["device"], "device_type": device.type, "threads": torch.get_num_threads(),
        "env": env, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "setup": {"model": "resnet50 (CIFAR stem, width 1.0)", "classes": 100, "image_size": 32, "batch": 64,
                  "steps_per_epoch": 782, "recipe": "paper cifar100/resnet50", "flops_target": args.target,
                  "warmup_steps": args.warmup, "measured_steps": args.steps},
        "training": training, "inference": inference, "wall_s": time.perf_counter() - started,
    }
    out = Path(args.out) / f"{device_slug(env)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{env['device']}: training step at batch 64 (median of {args.steps}), one CIFAR-100 epoch = 782 steps")
    for row in training:
        if "error" in row:
            print(f"  {row['method']:<10} failed: {row['error']}")
            continue
        ratio = row.get("step_ratio_vs_dense")
        print(f"  {row['method']:<10} {row['step_s_median'] * 1000:8.1f} ms/step  {row['epoch_s']:8.1f} s/epoch  "
              f"{'' if ratio is None else f'{ratio:5.2f}x dense'}  peak {row['peak_mem_mb_train']:7.0f} MB "
              f"({row['memory_kind']})")
    print("inference (median latency; speed-up over dense beside the FLOPs ratio)")
    for row in inference:
        print(f"  {row['network']:<11} FLOPs {row['flops_ratio']:6.3f}  batch 1: {row['latency_ms_b1']:7.2f} ms "
              f"({row['speedup_b1']:4.2f}x)  batch 64: {row['latency_ms_b64']:8.2f} ms ({row['speedup_b64']:4.2f}x)")
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    return 1 if any("error" in row for row in training) else 0
