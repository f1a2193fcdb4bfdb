"""The claims table: each verdict computed from records made here, whatever the outcome (the
statistics that decide them: test_verdicts.py)."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import pytest

from analysis.claims import CLAIM_EXPERIMENTS, Finder, check, render, setups, trajectory
from analysis.cli import main as analysis_main
from analysis.records import Run, RunSet, load_runs
from analysis.verdicts import CONTRADICTED, INCONCLUSIVE, NOT_RUN, REPRODUCED, RULE
from experiments.spec import expand

PROFILE = "mini"
SEEDS = (0, 1, 2)
# a decision on a trained network (loss 0.5 < ln(10) / 2 = 1.15), most of the run after it
CLEAN_REGIME = {"classes": 10, "steps": 270, "final_train_loss": 0.3,
                "decisions": [{"what": "partition", "step": 81, "train_loss": 0.5}]}
KEEP = object()


def grid_labels(name: str) -> list[dict[str, str]]:
    """The labels of each cell of a paper grid, as `python -m experiments` writes them into records,
    each cell once (its seed replicas, where the grid has them, folded: the tests add their own)."""
    cells = [{k: v for k, v in cell.labels.items() if k != "seed" or name == "table9"}
             for cell in expand(name, PROFILE, validate=False).cells]
    return list({json.dumps(c, sort_keys=True): c for c in cells}.values())


def record(experiment: str, labels: dict, *, top1: float, method: str = "s2hpruner", model: str = "resnet50",
           target: float = 0.15, flops: float | None = None, seed: int = 0, config: dict | None = None,
           regime: object = KEEP, **metrics: float) -> dict:
    """A finished run's record as the engine writes it, filling one cell of `experiment`'s grid; a
    pruning method's run carries a clean decision record unless `regime` says otherwise."""
    out = {
        "run_id": f"{experiment}-{len(json.dumps(labels))}-{json.dumps(labels, sort_keys=True)}",
        "experiment": experiment, "profile": PROFILE, "status": "done", "method": method, "model": model,
        "dataset": "digits", "flops_target": target, "seed": seed, "config": config or {},
        "metrics": {"top1": top1, "flops_ratio": target if flops is None else flops, **metrics},
        "cells": [{"experiment": experiment, "profile": PROFILE, "labels": {k: str(v) for k, v in labels.items()}}],
    }
    if regime is KEEP:
        regime = None if method in ("dense", "scratch") else copy.deepcopy(CLEAN_REGIME)
    if regime is not None:
        out["regime"] = regime
    return out


def seeded(experiment: str, labels: dict, top1s, **kw) -> list[dict]:
    """One record per value, the cell replicated over seeds 0, 1, ... as the mini profile runs it."""
    metric_lists = {k: v for k, v in kw.items() if isinstance(v, (list, tuple))}
    rest = {k: v for k, v in kw.items() if k not in metric_lists}
    return [record(experiment, {**labels, "seed": s}, top1=v, seed=s, **rest,
                   **{k: values[s] for k, values in metric_lists.items()}) for s, v in enumerate(top1s)]


def spread(mean: float, d: float, n: int = 3) -> list[float]:
    """n values centred on `mean`, `d` apart: sample std d for n = 3."""
    return [mean + d * (i - (n - 1) / 2) for i in range(n)]


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


# ----------------------------------------------------------------------------- the claims


def test_the_rule_is_stated_once_and_printed_under_the_table():
    assert RULE.startswith("Not run when a compared cell has no finished run. Two cells: Welch's t-test")
    assert "fewer than 3 runs" in RULE and "span / 2.059" in RULE and "\n" not in RULE
    text = render(check(RunSet(), PROFILE), PROFILE)
    assert f"Verdict rule (analysis/verdicts.py): {RULE}" in text
    assert "27 claims: 0 reproduced, 0 contradicted, 0 inconclusive, 27 not run" in text
    assert "not reproduced" not in text




def table1_records(s2h: list[float], best: list[float], off: float = 0.0, seeds: int = 3) -> list[dict]:
    out = []
    for labels in grid_labels("table1"):
        if "method" not in labels:  # the dense cells
            continue
        model, method, target = labels["model.name"], labels["method"], float(labels["prune.flops_target"])
        top1s = s2h if method == "s2hpruner" else (best if method == "otov2" else [v - 5 for v in best])
        for s in range(seeds):
            flops = target + (off if (method, model, target, s) == ("refill", "wrn28_10", 0.55, 1) else 0.0)
            out.append(record("table1", {**labels, "seed": s}, top1=top1s[s], method=method, model=model,
                              target=target, flops=flops, seed=s))
    assert len(out) == 45 * seeds
    return out


def test_nothing_run_is_not_run_for_every_claim():
    claims = check(RunSet(), PROFILE)
    assert claims and {c.verdict for c in claims} == {NOT_RUN}
    sources = {c.source for c in claims}
    assert {"Table 1", "Table 2", "Table 3", "Table 5", "Table 6", "Table 7", "Table 8", "Table 9", "Fig. 3"} <= sources


def test_find_without_a_seed_returns_every_seed_of_the_cell():
    runs = runset(table1_records(s2h=[96.0, 96.5, 97.0], best=[95.0, 95.0, 95.0]))
    found = Finder(runs, PROFILE).find("table1", model__name="resnet50", method="s2hpruner", prune__flops_target=0.15)
    assert sorted(run.seed for run in found) == [0, 1, 2]
    assert [r.seed for r in Finder(runs, PROFILE).find("table1", model__name="resnet50", method="s2hpruner",
                                                       prune__flops_target=0.15, seed=1)] == [1]


def test_table1_targets_and_the_headline_either_way():
    claims = check(runset(table1_records(s2h=spread(96.0, 0.2), best=spread(95.0, 0.1))), PROFILE)
    on_target = by_claim(claims, "Table 1", "within 0.02")
    assert on_target.verdict == REPRODUCED and on_target.ours == "135 of 135 runs within 0.02, 45 cells of n=3 runs"
    head = by_claim(claims, "Table 1", "resnet50: S2HPruner")
    assert head.verdict == REPRODUCED and "S2HPruner 79.77 vs otov2 77.04" == head.paper
    assert head.ours.startswith("S2HPruner 96.00 ± 0.20 (n=3) vs otov2 95.00 ± 0.10 (n=3), p=0.0")
    claims = check(runset(table1_records(s2h=spread(60.0, 1.0), best=spread(95.0, 0.1), off=0.03)), PROFILE)
    on_target = by_claim(claims, "Table 1", "within 0.02")
    assert on_target.verdict == CONTRADICTED and "134 of 135" in on_target.ours
    assert "refill wrn28_10 55% seed 1: 0.580" in on_target.ours
    assert by_claim(claims, "Table 1", "wrn28_10: S2HPruner").verdict == CONTRADICTED
    assert by_claim(claims, "Table 2", "within 0.02").verdict == NOT_RUN
    # inside the noise: S2HPruner's seeds spread over 9 points around a mean above the best
    noisy = check(runset(table1_records(s2h=[90.0, 97.0, 99.0], best=spread(95.0, 0.1))), PROFILE)
    head = by_claim(noisy, "Table 1", "resnet50: S2HPruner")
    assert head.verdict == INCONCLUSIVE and "S2HPruner 95.33 ± 4.73 (n=3)" in head.ours and ", p=0." in head.ours
    # one run per cell: every number is a single run, nothing decided either way
    single = check(runset(table1_records(s2h=[99.0], best=[95.0], seeds=1)), PROFILE)
    assert by_claim(single, "Table 1", "within 0.02").verdict == INCONCLUSIVE
    head = by_claim(single, "Table 1", "resnet50: S2HPruner")
    assert head.verdict == INCONCLUSIVE and head.ours == "S2HPruner 99.00 (n=1) vs otov2 95.00 (n=1), n < 3"


def table5_records(values: dict[int, list[float]]) -> list[dict]:
    labels = grid_labels("table5")  # the paper's rows 1-7, in order
    return [rec for n in values for rec in seeded("table5", labels[n - 1], values[n])]


def test_table5_collapse_is_below_halfway_to_chance():
    # digits: chance 10 %; Ours 90 -> a collapse is below 50
    ours = spread(90.0, 0.5)
    claims = check(runset(table5_records({1: spread(80.0, 0.5), 2: ours, 3: spread(12.0, 1.0), 4: spread(41.0, 1.0),
                                          5: spread(88.0, 0.2), 6: spread(87.5, 0.2), 7: spread(88.0, 0.2)})), PROFILE)
    collapse = by_claim(claims, "Table 5", "without g_{G->hard->theta}")
    assert collapse.verdict == REPRODUCED
    assert collapse.ours.startswith("12.00 ± 1.00 (n=3) vs Ours 90.00 ± 0.50 (n=3) (collapse: below 50.0")
    assert by_claim(claims, "Table 5", "without g_{L->soft->theta}").verdict == REPRODUCED
    assert by_claim(claims, "Table 5", "adding g_{G->soft->theta}").verdict == REPRODUCED
    costs = by_claim(claims, "Table 5", "costs a little")
    assert costs.verdict == REPRODUCED and "row 5 88.00 ± 0.20 (n=3)" in costs.ours
    assert "p below Ours 0.011/0.0064/0.011, above the collapse line 7.3e-09/" in costs.ours
    claims = check(runset(table5_records({1: spread(92.0, 0.5), 2: ours, 3: spread(56.0, 1.0), 4: spread(49.0, 1.0),
                                          5: spread(90.5, 0.2), 6: spread(88.0, 0.2), 7: spread(41.0, 1.0)})), PROFILE)
    assert by_claim(claims, "Table 5", "without g_{G->hard->theta}").verdict == CONTRADICTED  # above the line
    assert by_claim(claims, "Table 5", "without g_{L->soft->theta}").verdict == INCONCLUSIVE  # 49 vs 50: noise
    assert by_claim(claims, "Table 5", "adding g_{G->soft->theta}").verdict == CONTRADICTED
    assert by_claim(claims, "Table 5", "costs a little").verdict == CONTRADICTED  # 90.5 not below; 41 collapsed
    claims = check(runset(table5_records({2: ours, 3: spread(12.0, 1.0)})), PROFILE)
    assert by_claim(claims, "Table 5", "without g_{L->soft->theta}").verdict == NOT_RUN


@pytest.mark.parametrize("order, verdicts_", [
    ({"ours": (0.1, 1e-4, 90.0), "alt2": (0.5, 8e-4, 88.0), "alt1": (2.0, 3e-3, 85.0)}, (REPRODUCED,) * 3),
    ({"ours": (0.6, 1e-4, 84.0), "alt2": (0.5, 8e-4, 88.0), "alt1": (2.0, 3e-3, 85.0)},
     (CONTRADICTED, REPRODUCED, CONTRADICTED)),
    ({"ours": (0.1, 1e-4, 90.0), "alt2": (0.5, 8e-4, 88.0), "alt1": (0.52, 3e-3, 87.9)},
     (INCONCLUSIVE, REPRODUCED, INCONCLUSIVE)),
])
def test_table6_orders(order, verdicts_):
    labels = {lb["prune.options.formulation"]: lb for lb in grid_labels("table6")}
    records = [rec for n, (js, l2, t) in order.items()
               for rec in seeded("table6", labels[n], spread(t, 0.3), gap_js=spread(js, js / 50),
                                 gap_l2=spread(l2, l2 / 50))]
    claims = check(runset(records), PROFILE)
    got = tuple(by_claim(claims, "Table 6", what).verdict for what in ("the JS gap", "the L2 gap", "hard top-1"))
    assert got == verdicts_
    js = by_claim(claims, "Table 6", "the JS gap").ours
    assert js.startswith(f"ours {order['ours'][0]:.3g} ± {order['ours'][0] / 50:.3g} (n=3), alt2 ")
    assert "; p (ours-alt2, alt2-alt1) " in js
    assert by_claim(claims, "Table 6", "hard top-1").ours.startswith(f"ours {order['ours'][2]:.2f} ± 0.30 (n=3)")


def test_table7_rises_and_stays_below_ours():
    soft_only, *tuning = grid_labels("table7")
    epochs = dict(zip((1, 2, 3, 4, 6), (70.0, 75.0, 80.0, 82.0, 84.0)))
    assert [lb["train.epochs"].split("/")[1] for lb in tuning] == [f"mini:{e}" for e in epochs]
    records = [rec for lb, (e, v) in zip(tuning, epochs.items())
               for rec in seeded("table7", lb, spread(v, 0.3), config={"train": {"epochs": e}})]
    records += seeded("table7", soft_only, spread(30.0, 1.0))
    ours = seeded("table1", {"model.name": "resnet50", "method": "s2hpruner", "prune.flops_target": 0.15},
                  spread(85.0, 0.3))
    claims = check(runset([*records, *ours]), PROFILE)
    rises = by_claim(claims, "Table 7", "raises")
    assert rises.verdict == REPRODUCED and "70.00 ± 0.30 (n=3) after 1 to 84.00 ± 0.30 (n=3) after 6" in rises.ours
    below = by_claim(claims, "Table 7", "stay below")
    assert below.verdict == REPRODUCED and below.ours.startswith("best (6 epochs) 84.00 ± 0.30 (n=3) vs 85.00 ± 0.30")
    for rec in ours:
        rec["metrics"]["top1"] -= 2.0  # 83: the 6-epoch cell is above it
    assert by_claim(check(runset([*records, *ours]), PROFILE), "Table 7", "stay below").verdict == CONTRADICTED


def test_table8_ours_against_each_random_architecture():
    def claim(nets: dict[str, list[float]]):
        records = [rec for lb in grid_labels("table8")
                   for rec in seeded("table8", lb, nets[lb["network"]], method="scratch")]
        return by_claim(check(runset(records), PROFILE), "Table 8", "beats random")

    base = {"ours": spread(90.0, 0.2), "rand1": spread(89.0, 0.2), "rand2": spread(88.0, 0.2), "rand3": spread(87.0, 0.2)}
    assert claim(base).verdict == REPRODUCED and "ours 90.00 ± 0.20 (n=3) vs rand1 89.00 ± 0.20 (n=3), p=" in claim(base).ours
    assert claim({**base, "rand2": spread(90.5, 0.2)}).verdict == CONTRADICTED  # rand2 is better
    assert claim({**base, "rand2": spread(89.0, 3.0)}).verdict == INCONCLUSIVE  # rand2 inside the noise
    assert claim({**base, "rand3": base["rand3"][:2]}).verdict == INCONCLUSIVE  # n < 3


def table9_records(top1s: list[float], flops: list[float] | None = None) -> list[dict]:
    return [record("table9", lb, top1=top1s[s], flops=None if flops is None else flops[s], seed=s)
            for s, lb in enumerate(grid_labels("table9"))]


def test_table9_seed_spread_and_its_std():
    seeds9 = by_claim(check(runset(table9_records([90.0, 90.02, 90.04, 90.06], [0.15, 0.151, 0.152, 0.153])),
                            PROFILE), "Table 9", "seeds agree")
    assert seeds9.verdict == REPRODUCED and "seed std at most 0.49 and 0.97 points" in seeds9.claim
    assert seeds9.ours.startswith("S2HPruner's top-1 std over its seeds at 15 %: 0.03 points (n=4, mean 90.03; "
                                  "95 % CI [0.01, 0.10] vs at most 0.49; span 0.06); FLOPs (%) std: 0.13 points (n=4, "
                                  "mean 15.15; 95 % CI [0.07, 0.48] vs at most 0.97; span 0.30)")
    assert by_claim(check(runset(table9_records([80.0, 85.0, 90.0, 95.0])), PROFILE), "Table 9",
                    "seeds agree").verdict == CONTRADICTED  # std 6.45: its interval lies above 0.49
    wide = by_claim(check(runset(table9_records([90.0, 90.3, 90.6, 90.2])), PROFILE), "Table 9", "seeds agree")
    assert wide.verdict == INCONCLUSIVE and "at 15 %: 0.25 points" in wide.ours  # the interval contains 0.49
    assert by_claim(check(runset(table9_records([90.0, 90.0, 90.0, 90.0])[:3]), PROFILE), "Table 9",
                    "seeds agree").verdict == NOT_RUN


def test_runs_from_several_setups_are_named_under_the_verdicts():
    seeds = table9_records([90.0] * 4)
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


def test_a_claim_comparing_a_run_out_of_the_working_regime_is_marked():
    seeds = table9_records([90.0, 90.02, 90.04, 90.06])
    clean = check(runset(seeds), PROFILE)
    assert "¶" not in by_claim(clean, "Table 9", "seeds agree").ours and "¶" not in render(clean, PROFILE)
    seeds[2]["regime"]["decisions"] = [{"what": "zero", "step": 20, "last_step": 40, "count": 7, "train_loss": 2.1,
                                        "max_train_loss": 2.2}]
    del seeds[3]["regime"]  # a pruning run from before decision records
    claims = check(runset(seeds), PROFILE)
    marked = by_claim(claims, "Table 9", "seeds agree")
    assert marked.ours.endswith(" ¶") and marked.verdict == REPRODUCED  # the mark qualifies, it does not decide
    text = render(claims, PROFILE)
    line = next(line for line in text.splitlines() if line.startswith("¶: "))
    assert "break the working-regime rule (core/regime.py" in line
    assert f"table9/{seeds[2]['run_id']} (s2hpruner resnet50 15% seed 2): zero at step 20 on train loss 2.10 > 1.15" in line
    assert f"table9/{seeds[3]['run_id']} (s2hpruner resnet50 15% seed 3): no decision record" in line
    assert line.count(seeds[2]["run_id"]) == 1 and line.count(" (s2hpruner ") == 2  # each run once
    fallback = table9_records([90.0, 90.02, 90.04, 90.06])
    fallback[0]["metrics"]["fallback_zero"] = 12  # OTOv2's deadline zeroing: not DHSPG
    assert "fallback zeroed 12 units" in render(check(runset(fallback), PROFILE), PROFILE)


def fig3_log(end_flops: float = 0.15, end_top1: float = 70.0) -> list[dict]:
    return [{"epoch": 1, "flops_ratio": 0.30, "test_top1": 20.0}, {"epoch": 2, "flops_ratio": 0.16, "test_top1": 40.0},
            {"epoch": 3, "flops_ratio": 0.155, "test_top1": 60.0},
            {"epoch": 4, "flops_ratio": end_flops, "test_top1": end_top1}]


def test_fig3_trajectory_from_each_runs_epoch_log(tmp_path):
    labels = {"model.name": "resnet50", "method": "s2hpruner", "prune.flops_target": 0.15}
    recs = seeded("table1", labels, [70.0] * 3)

    def fig3(logs: list[list[dict]], folder: str):
        claims = check(runset(recs[:len(logs)], tmp_path / folder, dict(enumerate(logs))), PROFILE)
        return by_claim(claims, "Fig. 3", "resnet50")

    fig = fig3([fig3_log()] * 3, "a")
    assert fig.verdict == REPRODUCED and fig.ours.startswith("3 of 3 runs (n=3): seed 0: from epoch 2 of 4, top-1 40.00 then 70.00")
    assert trajectory(Run(recs[0], tmp_path / "a" / "run0"), 0.15) == (2, True, 40.0, 70.0)
    left = fig3_log(end_flops=0.2)  # leaves the target at the end
    assert fig3([fig3_log(), left, fig3_log()], "b").verdict == INCONCLUSIVE  # one of three
    worse = fig3([left, fig3_log(end_top1=30.0), fig3_log()], "c")  # two of three: most runs
    assert worse.verdict == CONTRADICTED and "seed 0: from epoch 2 of 4, leaves it later" in worse.ours
    assert fig3([fig3_log()], "d").verdict == INCONCLUSIVE  # n < 3


def test_cli_prints_and_writes_the_table(tmp_path, capsys):
    folder = tmp_path / "runs" / "table9" / "x"
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(record("table9", {"seed": 1}, top1=90.0, seed=1)))
    assert analysis_main(["claims", "--results", str(tmp_path), "--profile", "mini"]) == 0
    out = capsys.readouterr().out
    assert "| Table 9 |" in out and "not run" in out and (tmp_path / "claims-mini.md").exists()
    table = render(check(load_runs(tmp_path), "mini"), "mini")
    assert table.count("\n| ") == len(check(RunSet(), "mini")) + 1
    assert CLAIM_EXPERIMENTS[0] == "table1"


def test_claims_read_records_only():
    """The claims and their statistics never import training code (scipy and core's standard-library
    modules only)."""
    for module in ("claims", "verdicts", "cells", "tables", "table10", "frame", "records", "paper"):
        source = (Path(__file__).resolve().parents[2] / "analysis" / f"{module}.py").read_text()
        assert "import torch" not in source, module
        imports = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "core":
                imports |= {node.module} if node.module != "core" else {f"core.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                imports |= {a.name for a in node.names if a.name.split(".")[0] == "core"}
        assert set(imports) <= {"core.files", "core.version", "core.regime", "core.catalog", "core.errors"}, \
            (module, imports)
