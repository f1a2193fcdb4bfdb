"""Benchmark: render all ten tables from 10,000 synthetic run records (goal: under 2 s).

    python -m analysis.render_bench [--records 10000] [--out results/bench/render_tables.json]

The records cover every cell of every table, labelled as the grids label them (so every cell is
filled), many seeds each, a few failed, in two profiles, with configs as large as the engine
writes. Two times are reported: building and rendering the ten
tables (markdown, CSV and LaTeX) from records in memory, and the same preceded by reading the
records from disk (`results/runs/*/*/record.json` in a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from analysis.records import in_memory, load_runs
from analysis.render import render
from analysis.tables import build, table_numbers
from core import catalog  # standard library only

GOAL_S = 2.0


def _config(experiment: str, profile: str, seed: int, model: str, method: str, target: float | None,
            options: dict[str, Any]) -> dict[str, Any]:
    prune_options = {"formulation": "ours", "mask_rule": "expected_width", "g_l_theta": True, "g_g_hard_theta": True,
                     "g_g_soft_theta": False, "g_l_w": True, "g_g_w": True, "init_from": None, "random": False,
                     "random_seed": 0, "mask_lr": 2.0, "coef_r": 5.0, "widths_every": 50}
    prune_options.update(options.pop("prune.options", {}))
    config = {
        "experiment": experiment, "profile": profile, "seed": seed,
        "model": {"name": model, "width": 1.0, "options": {"stem": "auto"}},
        "data": {"name": "cifar100", "root": "data", "download": False, "workers": 8, "augment": "cifar",
                 "options": {"num_classes": 100, "image_size": 32}},
        "train": {"epochs": options.pop("epochs", 200), "batch_size": 64, "optimizer": "sgd", "lr": 0.05,
                  "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine", "milestones": [], "gamma": 0.1,
                  "warmup_epochs": 0, "gpus": 1, "eval_batch_size": 256, "eval_every": 1, "device": "auto"},
        "prune": {"method": method, "flops_target": target, "flops_scope": "network", "include_stem": False,
                  "keep": [], "attention": "auto", "options": prune_options},
        "output_root": "results", "progress": True,
    }
    return config


Cell = tuple[str, str, float | None, str, dict[str, Any], dict[str, str]]
SWITCHES = {"g_l_theta": True, "g_g_hard_theta": True, "g_g_soft_theta": False, "g_l_w": True, "g_g_w": True}


def _switches(off: str | None = None) -> dict[str, str]:
    """Table 5's labels: the five gradient terms, Algorithm 1's defaults with `off` turned off."""
    return {f"prune.options.{name}": str(on and name != off) for name, on in SWITCHES.items()}


def _cells() -> list[Cell]:
    """(experiment, model, target, method, options, labels) of every table's cells, labelled as
    `python -m experiments run` labels them (the tables read their cells from the labels)."""
    cells: list[Cell] = []
    for experiment, models, methods in (("table1", catalog.models("cnn"), catalog.compared()),
                                        ("table2", catalog.models("cnn"), catalog.compared()),
                                        ("table3", catalog.models("transformer"), catalog.compared(transformers=True))):
        for model in models:
            cells.append((experiment, model, None, "dense", {}, {"model.name": model, "method": "dense"}))
            cells += [(experiment, model, t, m, {}, {"model.name": model, "method": m, "prune.flops_target": str(t)})
                      for m in methods for t in (0.15, 0.35, 0.55)]
    cells.append(("table4", "resnet50", None, "dense", {}, {"method": "dense"}))
    cells += [("table4", "resnet50", t, "s2hpruner", {}, {"method": "s2hpruner", "prune.flops_target": str(t)})
              for t in (0.15, 0.25, 0.35, 0.55, 0.75)]
    cells.append(("table5", "resnet50", 0.15, "s2hpruner", {}, _switches()))
    for switch in ("g_l_theta", "g_g_hard_theta", "g_l_w", "g_g_w"):
        cells.append(("table5", "resnet50", 0.15, "s2hpruner", {"prune.options": {switch: False}}, _switches(switch)))
    cells += [("table6", "resnet50", 0.15, "s2hpruner", {"prune.options": {"formulation": f}},
               {"prune.options.formulation": f}) for f in ("alt1", "alt2", "ours")]
    cells.append(("table7", "resnet50", 0.15, "s2hpruner", {"prune.options": {"formulation": "soft_only"}},
                  {"prune.options.formulation": "soft_only"}))
    cells += [("table7", "resnet50", 0.15, "s2hpruner", {"epochs": e, "prune.options": {"init_from": "runs/x"}},
               {"train.epochs": str(e)}) for e in (10, 50, 100, 250, 500)]
    cells += [("table8", "resnet50", 0.15, "scratch", {"prune.options": {"random": True, "random_seed": k}},
               {"network": f"rand{k}"}) for k in (1, 2, 3)]
    cells.append(("table8", "resnet50", 0.15, "scratch", {}, {"network": "ours"}))
    cells.append(("table9", "resnet50", 0.15, "s2hpruner", {}, {"seed": "0"}))  # each record's own seed, below
    cells += [("table10", "resnet50", 0.15, m, {"epochs": 400}, {"schedule": "2x", "method": m})
              for m in catalog.baselines()]
    cells += [("table10", "resnet50", 0.15, m, {}, {"schedule": "1x", "method": m}) for m in catalog.compared()]
    return cells


def synthetic_records(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` records spread over every table cell, both profiles, many seeds, 2 % failed."""
    rng = random.Random(seed)
    cells = _cells()
    records = []
    for index in range(count):
        experiment, model, target, method, options, labels = cells[index % len(cells)]
        profile = "paper" if (index // len(cells)) % 2 == 0 else "smoke"
        run_seed = index // (2 * len(cells))
        failed = rng.random() < 0.02
        config = _config(experiment, profile, run_seed, model, method, target, json.loads(json.dumps(options)))
        ratio = (target or 1.0) + rng.uniform(-0.01, 0.01)
        metrics = {} if failed else {
            "top1": rng.uniform(60, 80), "top1_soft": rng.uniform(60, 80), "top1_original": rng.uniform(60, 80),
            "flops_ratio": ratio, "flops_ratio_prunable": ratio, "gap_js": rng.uniform(0.1, 2), "gap_l2": 1e-4,
            "epoch_time_s": rng.uniform(40, 80), "peak_mem_mb_train": 4300.0, "peak_mem_mb_infer": 1300.0,
            "peak_mem_kind": "cuda_max_allocated", "params": 1_000_000, "flops": 1_000_000}
        records.append({
            "run_id": f"{index:012x}", "setting_id": f"{index % (2 * len(cells)):012x}",  # one per cell and profile
            "experiment": experiment, "profile": profile,
            "status": "failed" if failed else "done", "method": method, "model": model, "dataset": "cifar100",
            "flops_target": target, "seed": run_seed, "metrics": metrics, "config": config,
            "env": {"python": "3.11", "torch": "2.x", "cuda": "13.0", "device": "synthetic", "git_sha": "0" * 40,
                    "git_dirty": False, "hostname": "bench"},
            "cells": [{"experiment": experiment, "profile": profile,
                       "labels": {**labels, "seed": str(run_seed % 4)} if experiment == "table9" else labels}],
            **({"error": "RuntimeError: synthetic failure"} if failed else {}),
        })
    return records


def render_all(runs) -> int:
    """Build and render all ten tables in both profiles and three formats; returns characters written."""
    written = 0
    for number in table_numbers():
        for profile in ("paper", "smoke"):
            grid = build(number, runs, profile)
            for fmt in ("md", "csv", "tex"):
                written += len(render(grid, fmt))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.render_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--out", default="results/bench/render_tables.json")
    args = parser.parse_args(argv)
    records = synthetic_records(args.records)
    runs = in_memory(records)
    tick = time.perf_counter()
    written = render_all(runs)
    in_memory_s = time.perf_counter() - tick
    with tempfile.TemporaryDirectory() as tmp:
        for record in records:
            folder = Path(tmp) / "runs" / record["experiment"] / record["run_id"]
            folder.mkdir(parents=True)
            (folder / "record.json").write_text(json.dumps(record, indent=2))
        tick = time.perf_counter()
        loaded = load_runs(tmp)
        render_all(loaded)
        from_disk_s = time.perf_counter() - tick
    result = {
        "benchmark": "render all ten tables (both profiles; md, csv and tex) from synthetic records",
        "records": args.records, "render_s": round(in_memory_s, 3), "load_and_render_s": round(from_disk_s, 3),
        "goal_s": GOAL_S, "characters": written, "device": f"{platform.processor() or platform.machine()} CPU",
        "python": platform.python_version(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    print(f"{args.records} records: ten tables rendered in {in_memory_s:.2f} s from memory, {from_disk_s:.2f} s "
          f"reading the records from disk first (goal: under {GOAL_S:.0f} s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
