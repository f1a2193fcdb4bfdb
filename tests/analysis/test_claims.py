"""The claims table: each verdict computed from records made here, whatever the outcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.claims import (CLAIM_EXPERIMENTS, NOT_REPRODUCED, NOT_RUN, REPRODUCED, check, render, setups,
                             trajectory)
from analysis.cli import main as analysis_main
from analysis.records import Run, RunSet, load_runs
from experiments.spec import expand

PROFILE = "mini"


def grid_labels(name: str) -> list[dict[str, str]]:
    """The labels of each cell of a paper grid, as `python -m experiments` writes them into records."""
    return [cell.labels for cell in expand(name, PROFILE, validate=False).cells]


def record(experiment: str, labels: dict, *, top1: float, method: str = "s2hpruner", model: str = "resnet50",
           target: float = 0.15, flops: float | None = None, seed: int = 0, config: dict | None = None,
           **metrics: float) -> dict:
    """A finished run's record as the engine writes it, filling one cell of `experiment`'s grid."""
    return {
        "run_id": f"{experiment}-{len(json.dumps(labels))}-{json.dumps(labels, sort_keys=True)}",
        "experiment": experiment, "profile": PROFILE, "status": "done", "method": method, "model": model,
        "dataset": "digits", "flops_target": target, "seed": seed, "config": config or {},
        "metrics": {"top1": top1, "flops_ratio": target if flops is None else flops, **metrics},
        "cells": [{"experiment": experiment, "profile": PROFILE, "labels": {k: str(v) for k, v in labels.items()}}],
    }


def runset(records: list[dict], tmp_path: Path | None = None, logs: dict[int, list[dict]] | None = None) -> RunSet:
    runs = []
    for i, rec in enumerate(records):
        path = None
        if tmp_path is not None and logs and i in logs:
            path = tmp_path / f"run{i}"
            path.mkdir(parents=True)
            (path / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in logs[i]))
        runs.append(Run(rec, path))
    return RunSet(runs)


def by_claim(claims, source: str, words: str):
    found = [c for c in claims if c.source == source and words in c.claim]
    assert len(found) == 1, [c.claim for c in claims if c.source == source]
    return found[0]


def table1_records(s2h: float, best: float, off: float = 0.0) -> list[dict]:
    out = []
    for labels in grid_labels("table1"):
        if "method" not in labels:  # the dense cells
            continue
        model, method, target = labels["model.name"], labels["method"], float(labels["prune.flops_target"])
        top1 = s2h if method == "s2hpruner" else (best if method == "otov2" else best - 5)
        flops = target + (off if (method, model, target) == ("refill", "wrn28_10", 0.55) else 0.0)
        out.append(record("table1", labels, top1=top1, method=method, model=model, target=target, flops=flops))
    assert len(out) == 45
    return out


def test_nothing_run_is_not_run_for_every_claim():
    claims = check(RunSet(), PROFILE)
    assert claims and {c.verdict for c in claims} == {NOT_RUN}
    sources = {c.source for c in claims}
    assert {"Table 1", "Table 2", "Table 3", "Table 5", "Table 6", "Table 7", "Table 8", "Table 9", "Fig. 3"} <= sources


def test_table1_targets_and_the_headline_either_way():
    claims = check(runset(table1_records(s2h=96.0, best=95.0)), PROFILE)
    assert by_claim(claims, "Table 1", "within 0.02").verdict == REPRODUCED
    head = by_claim(claims, "Table 1", "resnet50: S2HPruner")
    assert head.verdict == REPRODUCED and "otov2 95.00" in head.ours and "S2HPruner 79.77 vs otov2 77.04" == head.paper
    claims = check(runset(table1_records(s2h=60.0, best=95.0, off=0.03)), PROFILE)
    on_target = by_claim(claims, "Table 1", "within 0.02")
    assert on_target.verdict == NOT_REPRODUCED and "44 of 45" in on_target.ours and "refill wrn28_10 55%: 0.580" in on_target.ours
    assert by_claim(claims, "Table 1", "wrn28_10: S2HPruner").verdict == NOT_REPRODUCED
    assert by_claim(claims, "Table 2", "within 0.02").verdict == NOT_RUN


def table5_records(values: dict[int, float]) -> list[dict]:
    labels = grid_labels("table5")  # the paper's rows 1-7, in order
    return [record("table5", labels[n - 1], top1=values[n]) for n in values]


def test_table5_collapse_is_below_halfway_to_chance():
    # digits: chance 10 %; Ours 90 -> a collapse is below 50
    claims = check(runset(table5_records({1: 80.0, 2: 90.0, 3: 12.0, 4: 49.0, 5: 89.0, 6: 88.5, 7: 88.0})), PROFILE)
    assert by_claim(claims, "Table 5", "without g_{G->hard->theta}").verdict == REPRODUCED
    assert by_claim(claims, "Table 5", "without g_{L->soft->theta}").verdict == REPRODUCED
    assert by_claim(claims, "Table 5", "adding g_{G->soft->theta}").verdict == REPRODUCED
    assert by_claim(claims, "Table 5", "costs a little").verdict == REPRODUCED
    claims = check(runset(table5_records({1: 91.0, 2: 90.0, 3: 51.0, 4: 85.0, 5: 90.5, 6: 88.5, 7: 40.0})), PROFILE)
    assert by_claim(claims, "Table 5", "without g_{G->hard->theta}").verdict == NOT_REPRODUCED
    assert by_claim(claims, "Table 5", "adding g_{G->soft->theta}").verdict == NOT_REPRODUCED
    assert by_claim(claims, "Table 5", "costs a little").verdict == NOT_REPRODUCED  # 90.5 is not below; 40 collapsed
    claims = check(runset(table5_records({2: 90.0, 3: 12.0})), PROFILE)
    assert by_claim(claims, "Table 5", "without g_{L->soft->theta}").verdict == NOT_RUN


@pytest.mark.parametrize("order, verdicts", [
    ({"ours": (0.1, 1e-4, 90.0), "alt2": (0.5, 8e-4, 88.0), "alt1": (2.0, 3e-3, 85.0)}, (REPRODUCED,) * 3),
    ({"ours": (0.6, 1e-4, 84.0), "alt2": (0.5, 8e-4, 88.0), "alt1": (2.0, 3e-3, 85.0)},
     (NOT_REPRODUCED, REPRODUCED, NOT_REPRODUCED)),
])
def test_table6_orders(order, verdicts):
    labels = {lb["prune.options.formulation"]: lb for lb in grid_labels("table6")}
    records = [record("table6", labels[n], top1=t, gap_js=js, gap_l2=l2) for n, (js, l2, t) in order.items()]
    claims = check(runset(records), PROFILE)
    got = tuple(by_claim(claims, "Table 6", what).verdict for what in ("the JS gap", "the L2 gap", "hard top-1"))
    assert got == verdicts


def test_table7_rises_and_stays_below_ours():
    soft_only, *tuning = grid_labels("table7")
    epochs = dict(zip((1, 2, 3, 4, 6), (70.0, 75.0, 80.0, 82.0, 84.0)))
    assert [lb["train.epochs"].split("/")[1] for lb in tuning] == [f"mini:{e}" for e in epochs]
    records = [record("table7", lb, top1=v, config={"train": {"epochs": e}}) for lb, (e, v) in zip(tuning, epochs.items())]
    records.append(record("table7", soft_only, top1=30.0))
    ours = record("table1", {"model.name": "resnet50", "method": "s2hpruner", "prune.flops_target": 0.15}, top1=85.0)
    claims = check(runset([*records, ours]), PROFILE)
    rises = by_claim(claims, "Table 7", "raises")
    assert rises.verdict == REPRODUCED and "70.00 after 1 to 84.00 after 6" in rises.ours
    assert by_claim(claims, "Table 7", "stay below").verdict == REPRODUCED
    ours["metrics"]["top1"] = 83.0
    assert by_claim(check(runset([*records, ours]), PROFILE), "Table 7", "stay below").verdict == NOT_REPRODUCED


def test_table8_and_table9():
    nets = {"ours": 90.0, "rand1": 89.0, "rand2": 90.5, "rand3": 88.0}
    seeds = [record("table9", lb, top1=90.0 + 0.3 * s, flops=0.15 + 0.005 * s, seed=s)
             for s, lb in enumerate(grid_labels("table9"))]
    networks = [record("table8", lb, top1=nets[lb["network"]], method="scratch") for lb in grid_labels("table8")]
    claims = check(runset(networks + seeds), PROFILE)
    assert by_claim(claims, "Table 8", "beats random").verdict == NOT_REPRODUCED  # rand2 is better
    seeds9 = by_claim(claims, "Table 9", "seeds agree")
    assert seeds9.verdict == REPRODUCED and "span 0.90" in seeds9.ours and "FLOPs span 1.50" in seeds9.ours
    seeds[3]["metrics"]["top1"] = 92.0
    assert by_claim(check(runset(seeds), PROFILE), "Table 9", "seeds agree").verdict == NOT_REPRODUCED


def test_runs_from_several_setups_are_named_under_the_verdicts():
    seeds = [record("table9", lb, top1=90.0, seed=s) for s, lb in enumerate(grid_labels("table9"))]
    cpu = {"torch": "2.5.1", "cuda": None, "device": "cpu (x86_64)", "threads": 1}
    for s, rec in enumerate(seeds):
        rec["env"] = dict(cpu, cpu_kernels="AVX2" if s == 3 else "AVX512")
    other = record("table8", grid_labels("table8")[0], top1=80.0, method="scratch")  # another profile's run
    other["profile"] = other["cells"][0]["profile"] = "smoke"
    other["env"] = {"torch": "2.5.1", "cuda": "12.4", "device": "NVIDIA H200"}
    runs = runset(seeds + [other])
    made_on = setups(runs, PROFILE)
    assert made_on == [("torch 2.5.1, cuda none, cpu (x86_64), threads 1, AVX512 kernels", 3),
                       ("torch 2.5.1, cuda none, cpu (x86_64), threads 1, AVX2 kernels", 1)]
    text = render(check(runs, PROFILE), PROFILE, made_on=made_on)
    assert text.endswith("The runs these claims compare come from 2 set-ups: torch 2.5.1, cuda none, cpu (x86_64), "
                         "threads 1, AVX512 kernels (3 runs); torch 2.5.1, cuda none, cpu (x86_64), threads 1, AVX2 "
                         "kernels (1 runs). A verdict comparing runs of different set-ups may reflect the set-ups as "
                         "much as the methods.")
    for rec in seeds:  # one set-up: no such line
        rec["env"]["cpu_kernels"] = "AVX512"
    assert "set-ups" not in render(check(runset(seeds), PROFILE), PROFILE, made_on=setups(runset(seeds), PROFILE))


def test_fig3_trajectory_from_the_epoch_log(tmp_path):
    log = [{"epoch": 1, "flops_ratio": 0.30, "test_top1": 20.0}, {"epoch": 2, "flops_ratio": 0.16, "test_top1": 40.0},
           {"epoch": 3, "flops_ratio": 0.155, "test_top1": 60.0}, {"epoch": 4, "flops_ratio": 0.15, "test_top1": 70.0}]
    rec = record("table1", {"model.name": "resnet50", "method": "s2hpruner", "prune.flops_target": 0.15}, top1=70.0)
    claims = check(runset([rec], tmp_path / "a", {0: log}), PROFILE)
    fig = by_claim(claims, "Fig. 3", "resnet50")
    assert fig.verdict == REPRODUCED and "from epoch 2 of 4" in fig.ours
    assert trajectory(Run(rec, tmp_path / "a" / "run0"), 0.15) == (2, True, 40.0, 70.0)
    log[-1]["flops_ratio"] = 0.2  # leaves the target at the end
    claims = check(runset([rec], tmp_path / "b", {0: log}), PROFILE)
    assert by_claim(claims, "Fig. 3", "resnet50").verdict == NOT_REPRODUCED


def test_cli_prints_and_writes_the_table(tmp_path, capsys):
    folder = tmp_path / "runs" / "table9" / "x"
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(record("table9", {"seed": 1}, top1=90.0, seed=1)))
    assert analysis_main(["claims", "--results", str(tmp_path), "--profile", "mini"]) == 0
    out = capsys.readouterr().out
    assert "| Table 9 |" in out and "not run" in out and (tmp_path / "claims-mini.md").exists()
    assert render(check(load_runs(tmp_path), "mini"), "mini").count("\n| ") == len(check(RunSet(), "mini")) + 1
    assert CLAIM_EXPERIMENTS[0] == "table1"
