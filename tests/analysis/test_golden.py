"""Tables 1-10, a grid of one's own and the claims, rendered from one fixed, varied record set,
against golden renders made by the code before the tables were built on a pandas frame.

Why: the analysis was rewritten to select and group its runs with pandas (`analysis/frame.py`,
issue 35), and "the rendered Tables 1-10 equal today's on the same records" is checked here to
the byte, on records that reach every footnote: several tables and profiles, seeds averaged,
failed runs (with and without an error), stale code versions (none recorded, resumed across
versions), mixed code versions and settings in one cell, off-target FLOPs (network and prunable
scope), a run that breaks the working regime, another set-up, duplicate records, unreadable
folders, Table 7's per-profile epochs and manifest, Table 9's seeds, Table 10 with and without a
benchmark, and a user grid.

The goldens under `tests/analysis/golden/` were written by the pre-pandas code at commit 925bf8b:

    CHECKOUT=$(pwd); git worktree add /tmp/head925 925bf8b
    cd /tmp/head925 && PYTHONPATH=. $CHECKOUT/.venv/bin/python $CHECKOUT/tests/analysis/test_golden.py --write
    cd $CHECKOUT && git worktree remove --force /tmp/head925

(the middle line runs this file against the old `analysis/` and `core/` and writes into this
checkout's `tests/analysis/golden/`). The records are deterministic: fresh runs carry the running
checkout's code version (computed when the test runs, so § never depends on the checkout) and
stale ones a reason that names no checkout hash (no version recorded; resumed across two fixed
versions). Their text does depend on `core.catalog` (method and model names) and `core.regime`
(the reasons a run breaks the regime), which a change there may rightly move. A deliberate change
of the output means regenerating them with the new code (`.venv/bin/python
tests/analysis/test_golden.py --write`), reviewing the diff, and naming the fix in the commit
that changes the goldens.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from analysis.claims import check, setups
from analysis.claims import render as render_claims
from analysis.records import Run, RunSet
from analysis.render import render
from analysis.tables import build, grid_table, table_numbers
from core.version import code_version

GOLDEN = Path(__file__).parent / "golden"
FORMATS = ("md", "csv", "tex")
CPU = {"python": "3.11.7", "torch": "2.x", "cuda": None, "device": "cpu (x86_64)", "threads": 1, "cpu_kernels": "AVX2"}
CLEAN = {"classes": 100, "steps": 400, "final_train_loss": 0.4,
         "decisions": [{"what": "partition", "step": 100, "train_loss": 0.9}]}
BROKEN = {"classes": 100, "steps": 400, "final_train_loss": 3.9,
          "decisions": [{"what": "partition", "step": 380, "train_loss": 4.2}]}


def fresh(method: str) -> dict:
    """The `code` of a run of `method` made by this checkout."""
    packages = ("core",) if method in ("dense",) else ("core", "method" if method in ("s2hpruner", "scratch")
                                                        else "baselines")
    return {"version": code_version(packages), "packages": list(packages)}


def rec(experiment: str, method: str, model: str = "resnet50", target: float | None = 0.15, seed: int = 0,
        top1: float | None = 70.0, *, profile: str = "paper", cells: list | None = None, status: str = "done",
        error: str | None = None, flops: float | None = None, metrics: dict | None = None, code: object = "fresh",
        env: dict | None = None, regime: object = "clean", setting: str | None = None, config: dict | None = None,
        tag: str = "") -> dict:
    """A record as the engine writes it, filling `cells` ([(experiment, labels)], its own grid's
    first); fixed values everywhere but `code="fresh"`, this checkout's version."""
    m = {"top1": top1, "flops_ratio": (target if target is not None else 1.0) if flops is None else flops,
         "params": 1.0e6 * (seed + 3), "epoch_time_s": 10.0 + seed, "peak_mem_mb_train": 900.0 + seed,
         "peak_mem_mb_infer": 120.0, "peak_mem_kind": "cpu_peak_rss"}
    m.update(metrics or {})
    m = {k: v for k, v in m.items() if v is not None}
    run_id = f"{experiment}-{method}-{model}-{target}-{seed}{tag}"
    cfg = {"seed": seed, "train": {"epochs": 200}, "prune": {"flops_scope": "network", "options": {"init_from": None}}}
    for dotted, value in (config or {}).items():
        node = cfg
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    out = {"run_id": run_id, "setting_id": setting or run_id.rsplit("-", 1)[0], "experiment": experiment,
           "profile": profile, "status": status, "method": method, "model": model, "dataset": "cifar100",
           "flops_target": target, "seed": seed, "metrics": m if status == "done" else {}, "config": cfg,
           "env": {**CPU, **(env or {})},
           "cells": [{"experiment": e, "profile": profile, "labels": lb} for e, lb in (cells or [(experiment, {})])]}
    if code == "fresh":
        out["code"] = fresh(method)
    elif code is not None:
        out["code"] = code
    if error is not None:
        out["error"] = error
    if regime == "clean" and method not in ("dense", "scratch"):
        out["regime"] = copy.deepcopy(CLEAN)
    elif isinstance(regime, dict):
        out["regime"] = copy.deepcopy(regime)
    return out


def bench_labels(model: str, method: str, target: float | None, seed: int | None = None) -> dict:
    labels = {"model.name": model} if method == "dense" else \
        {"model.name": model, "method": method, "prune.flops_target": str(target)}
    return labels if seed is None else {**labels, "seed": str(seed)}


def switches(*on: bool) -> dict:
    names = ("g_l_theta", "g_g_hard_theta", "g_g_soft_theta", "g_l_w", "g_g_w")
    return {f"prune.options.{n}": str(v) for n, v in zip(names, on)}


def paper_records() -> list[dict]:
    """The paper profile: most tables partly filled, with every kind of footnote."""
    s2h = [rec("table1", "s2hpruner", seed=s, top1=[79.1, 79.6, 78.9][s], flops=[0.151, 0.149, 0.152][s],
               metrics={"top1_soft": 80.0 + s / 10, "top1_original": 78.0, "gap_js": 0.19 + s / 100,
                        "gap_l2": 1.6e-4 + s * 1e-5, "epoch_time_s": 55.0 + s},
               cells=[("table1", bench_labels("resnet50", "s2hpruner", 0.15)),
                      ("table5", {**switches(True, True, False, True, True), "experiment": "table1"}),
                      ("table6", {"prune.options.formulation": "ours"}), ("table8", {"network": "ours"}),
                      *([("table9", {"seed": "0"})] if s == 0 else []),
                      ("table10", {"method": "s2hpruner", "schedule": "1x"})])
           for s in range(3)]
    out = [*s2h,
           rec("table1", "dense", target=None, seed=0, top1=78.0, cells=[("table1", bench_labels("resnet50", "dense", None))]),
           rec("table1", "dense", target=None, seed=1, top1=78.4, cells=[("table1", bench_labels("resnet50", "dense", None))]),
           rec("table1", "dense", "mobilenetv3", target=None, top1=77.5,
               cells=[("table1", bench_labels("mobilenetv3", "dense", None))]),
           rec("table1", "otov2", flops=0.19, top1=74.0,  # off target
               cells=[("table1", bench_labels("resnet50", "otov2", 0.15)), ("table10", {"method": "otov2", "schedule": "1x"})]),
           rec("table1", "refill", status="failed", error="RuntimeError: out of memory\nTraceback ...",
               cells=[("table1", bench_labels("resnet50", "refill", 0.15))]),
           rec("table1", "refill", seed=1, status="failed", cells=[("table1", bench_labels("resnet50", "refill", 0.15))]),
           rec("table1", "rst_s", top1=75.5, cells=[("table1", bench_labels("resnet50", "rst_s", 0.15)),
                                                   ("table10", {"method": "rst_s", "schedule": "1x"})]),
           rec("table1", "rst_s", seed=1, status="failed", error="ValueError: nan loss",
               cells=[("table1", bench_labels("resnet50", "rst_s", 0.15))]),
           rec("table1", "s2hpruner", target=0.35, top1=78.0, code=None,  # stale: no version recorded
               cells=[("table1", bench_labels("resnet50", "s2hpruner", 0.35))]),
           rec("table1", "otov2", target=0.35, top1=71.0, regime=BROKEN,
               cells=[("table1", bench_labels("resnet50", "otov2", 0.35))]),
           rec("table1", "otov2", target=0.35, seed=1, top1=72.5, metrics={"fallback_zero": 12},
               cells=[("table1", bench_labels("resnet50", "otov2", 0.35))]),
           rec("table1", "group_sl", target=0.35, top1=69.0, env={"threads": 8, "cpu_kernels": "AVX512"},
               cells=[("table1", bench_labels("resnet50", "group_sl", 0.35))]),
           rec("table1", "group_sl", target=0.55, top1=73.0, env={"cuda": "12.4", "device": "NVIDIA H100"},
               cells=[("table1", bench_labels("resnet50", "group_sl", 0.55))]),
           rec("table1", "s2hpruner", "wrn28_10", 0.55, seed=0, top1=81.0,
               code={"version": "0123456789ab", "started_with": "ba9876543210", "packages": ["core", "method"]},
               cells=[("table1", bench_labels("wrn28_10", "s2hpruner", 0.55))]),
           rec("table1", "s2hpruner", "wrn28_10", 0.55, seed=1, top1=81.6, setting="table1-other-setting",
               cells=[("table1", bench_labels("wrn28_10", "s2hpruner", 0.55))]),
           rec("table1", "refill", "mobilenetv3", 0.35, top1=70.2, flops=0.5,
               config={"prune.flops_scope": "prunable"}, metrics={"flops_ratio_prunable": 0.352},
               cells=[("table1", bench_labels("mobilenetv3", "refill", 0.35))]),
           rec("table1", "rst_s", "mobilenetv3", None, top1=60.0, cells=[("table1", {"model.name": "mobilenetv3"})]),
           rec("table1", "s2hpruner", "resnet18", 0.15, top1=50.0, cells=[("table1", bench_labels("resnet18", "s2hpruner", 0.15))]),
           rec("table2", "s2hpruner", target=0.35, top1=61.0, cells=[("table2", bench_labels("resnet50", "s2hpruner", 0.35))]),
           rec("table2", "dense", "wrn28_10", None, top1=64.0, cells=[("table2", bench_labels("wrn28_10", "dense", None))]),
           rec("table3", "dense", "vit", None, top1=85.0, cells=[("table3", bench_labels("vit", "dense", None))]),
           rec("table3", "s2hpruner", "swin", 0.15, top1=84.2, cells=[("table3", bench_labels("swin", "s2hpruner", 0.15))]),
           rec("table3", "rst_s", "vit", 0.55, status="failed", error="",
               cells=[("table3", bench_labels("vit", "rst_s", 0.55))]),
           rec("table4", "dense", target=None, top1=76.0),
           rec("table4", "s2hpruner", target=0.15, top1=72.9, flops=0.16, config={"train.epochs": 120}),
           rec("table4", "s2hpruner", target=0.15, seed=1, top1=73.5, flops=0.155, config={"train.epochs": 120}),
           rec("table4", "s2hpruner", target=0.55, top1=76.4, config={"prune.options.init_from": "run:x"}),
           rec("table4", "otov2", target=0.15, top1=70.0),
           rec("table5", "s2hpruner", top1=3.5, cells=[("table5", switches(True, False, False, True, True))]),
           rec("table5", "s2hpruner", seed=1, top1=4.5, cells=[("table5", switches(True, False, False, True, True))]),
           rec("table5", "s2hpruner", top1=65.0, flops=0.2, cells=[("table5", switches(True, True, True, True, True))]),
           rec("table5", "s2hpruner", top1=66.0, tag="-x", cells=[("table5", {"prune.options.g_l_theta": "True"})]),
           rec("table6", "s2hpruner", top1=77.0, metrics={"gap_js": 2.1, "gap_l2": 2.7e-3},
               cells=[("table6", {"prune.options.formulation": "alt1"})]),
           rec("table6", "s2hpruner", top1=77.7, metrics={"gap_js": 0.52, "gap_l2": 8.6e-4, "top1_original": 78.3},
               cells=[("table6", {"prune.options.formulation": "alt2"})]),
           rec("table7", "s2hpruner", top1=20.0, metrics={"top1_soft": 79.0},
               cells=[("table7", {"prune.options.formulation": "soft_only"})]),
           rec("table7", "s2hpruner", top1=76.0, metrics={"top1_soft": 79.8}, config={"train.epochs": 10},
               cells=[("table7", {"train.epochs": "10"})]),
           rec("table7", "s2hpruner", top1=78.5, metrics={"top1_soft": 80.1}, config={"train.epochs": 50},
               cells=[("table7", {"train.epochs": "paper:50/mini:2"})]),
           rec("table8", "scratch", top1=76.5, cells=[("table8", {"network": "rand1"})]),
           rec("table8", "scratch", seed=1, top1=76.9, cells=[("table8", {"network": "rand1"})]),
           rec("table8", "scratch", top1=76.1, cells=[("table8", {"network": "rand2"})]),
           rec("table9", "s2hpruner", seed=1, top1=79.7, flops=0.153, cells=[("table9", {"seed": "1"})]),
           rec("table9", "s2hpruner", seed=2, top1=79.9, flops=0.19, cells=[("table9", {"seed": "2"})]),
           rec("table10", "rst_s", top1=76.0, config={"train.epochs": 400},
               cells=[("table10", {"method": "rst_s", "schedule": "2x"})]),
           rec("table10", "otov2", top1=77.9, status="failed", error="KeyError: x",
               cells=[("table10", {"method": "otov2", "schedule": "2x"})]),
           rec("mygrid", "s2hpruner", seed=0, top1=71.0, cells=[("mygrid", {"train.lr": "0.1", "seed": "0"})]),
           rec("mygrid", "s2hpruner", seed=1, top1=72.0, cells=[("mygrid", {"train.lr": "0.1", "seed": "1"})]),
           rec("mygrid", "s2hpruner", target=0.35, top1=66.0, flops=0.4,
               cells=[("mygrid", {"model.width": "0.5", "train.lr": "0.2"})]),
           rec("mygrid", "rst_s", target=None, status="failed", error="OSError: disk",
               cells=[("mygrid", {"train.lr": "0.3"})]),
           ]
    return out


def mini_records() -> list[dict]:
    """The mini profile: seed-labelled replicas (as `make claims` runs them) and per-profile epochs."""
    out = []
    for s in range(3):
        for method, top1 in (("s2hpruner", 90.0), ("otov2", 88.0), ("rst_s", 85.0)):
            out.append(rec("table1", method, seed=s, top1=top1 + s * 0.5, profile="mini",
                           cells=[("table1", bench_labels("resnet50", method, 0.15, s)),
                                  *([("table5", {**switches(True, True, False, True, True), "experiment": "table1",
                                                 "seed": str(s)}), ("table9", {"seed": str(s)})]
                                    if method == "s2hpruner" else [])]))
        out.append(rec("table5", "s2hpruner", seed=s, top1=12.0 + s, profile="mini",
                       cells=[("table5", {**switches(False, True, False, True, True), "seed": str(s)})]))
    out.append(rec("table1", "dense", target=None, top1=93.0, profile="mini",
                   cells=[("table1", bench_labels("resnet50", "dense", None, 0))]))
    out.append(rec("table7", "s2hpruner", top1=80.0, profile="mini", metrics={"top1_soft": 84.0},
                   config={"train.epochs": 2}, cells=[("table7", {"train.epochs": "paper:50/mini:2"})]))
    out.append(rec("table1", "s2hpruner", seed=9, top1=10.0, profile="smoke",
                   cells=[("table1", bench_labels("resnet50", "s2hpruner", 0.15))]))
    return out


def runset() -> RunSet:
    """Every record once, one of them twice (the same record read from two lists), the folders
    that did not parse, and the manifests of Table 7 and the user grid."""
    records = paper_records() + mini_records()
    runs = RunSet([Run(r) for r in records] + [Run(records[3])])
    runs.unreadable = [(Path("results/runs/table1/torn"), "JSONDecodeError: Expecting value: line 1 column 1"),
                       (Path("results/runs/table9/empty"), "record.json is not a JSON object")]
    runs.manifests[("table7", "mini")] = [{"labels": {"prune.options.formulation": "soft_only"}},
                                          {"labels": {"train.epochs": "paper:10/mini:1"}},
                                          {"labels": {"train.epochs": "paper:50/mini:2"}}]
    runs.manifests[("mygrid", "paper")] = [{"labels": {"train.lr": "0.3"}}, {"labels": {"train.lr": "0.1", "seed": "0"}},
                                           {"labels": {"train.lr": "0.1", "seed": "1"}},
                                           {"labels": {"model.width": "0.5", "train.lr": "0.2"}}]
    return runs


BENCH = {"device": "cpu (x86_64)", "device_type": "cpu", "date": "2026-11-21T00:00:00+00:00",
         "training": [{"method": "dense", "epoch_s": 100.0, "step_s_median": 1.0, "peak_mem_mb_train": 1000.0,
                       "memory_kind": "cpu_peak_rss"},
                      {"method": "rst_s", "epoch_s": 40.0, "step_s_median": 0.4, "peak_mem_mb_train": 4000.0,
                       "memory_kind": "cpu_peak_rss"},
                      {"method": "s2hpruner", "masks": "target", "epoch_s": 140.0, "step_s_median": 1.4,
                       "peak_mem_mb_train": 1300.0, "step_over_soft_pass": 1.35},
                      {"method": "otov2", "error": "RuntimeError"}],
         "exported": [{"run_id": "table1-s2hpruner-resnet50-0.15-0", "peak_mem_mb_infer": 1200.0,
                       "memory_kind": "cpu_tensor_peak"}]}


def renders() -> dict[str, str]:
    """Every golden file's text, by name."""
    runs = runset()
    out: dict[str, str] = {}
    for profile in ("paper", "mini"):
        grids = [build(number, runs, profile) for number in table_numbers()]
        for fmt in FORMATS:
            out[f"tables-{profile}.{fmt}"] = "".join(render(grid, fmt) + "\n" for grid in grids)
    out["tables-default.md"] = "".join(render(build(number, runs), "md") + "\n" for number in table_numbers())
    benched = runset()
    benched.bench = [BENCH]
    out["table10-bench.md"] = render(build(10, benched, "paper"), "md") + render(build(10, benched, "mini"), "csv")
    grid = grid_table(runs, "mygrid", None, "my_grid.yaml")
    out["mygrid.md"] = "".join(render(grid, fmt) + "\n" for fmt in FORMATS)
    out["claims.md"] = "".join(render_claims(check(runs, p), p, made_on=setups(runs, p)) + "\n\n"
                               for p in ("paper", "mini"))
    return out


def test_renders_equal_the_pre_pandas_goldens() -> None:
    made = renders()
    assert sorted(made) == sorted(p.name for p in GOLDEN.iterdir())
    for name, text in made.items():
        assert text == (GOLDEN / name).read_text(), name


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python tests/analysis/test_golden.py --write  (rewrites the goldens)")
    GOLDEN.mkdir(exist_ok=True)
    for name, text in renders().items():
        (GOLDEN / name).write_text(text)
        print(f"wrote {GOLDEN / name}")
