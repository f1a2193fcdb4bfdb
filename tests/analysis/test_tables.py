"""Tables 1-10 from hand-made records: layout, values, seeds, missing and failed runs, profiles."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import re
from pathlib import Path

import pytest

from analysis.grid import DASH, Comparison, Grid
from analysis.records import in_memory, load_runs
from analysis.render import latex, markdown, render, tex_document, tex_escape, tidy_csv
from analysis.tables import build, choose_profile, grid_table, table_numbers
from core.version import code_version

BASE_CONFIG = {
    "experiment": "table1", "profile": "paper", "seed": 0,
    "model": {"name": "resnet50", "width": 1.0},
    "data": {"name": "cifar100", "root": "data"},
    "train": {"epochs": 200, "lr": 0.05},
    "prune": {"method": "s2hpruner", "flops_target": 0.15, "flops_scope": "network",
              "options": {"formulation": "ours", "g_l_theta": True, "g_g_hard_theta": True, "g_g_soft_theta": False,
                          "g_l_w": True, "g_g_w": True, "init_from": None}},
    "output_root": "results", "progress": True,
}


# A pruning run that keeps the working-regime rule (core.regime): its one decision on a trained
# network (loss 0.5 < ln(10) / 2), most of the run after it, a low final loss.
CLEAN_REGIME = {"classes": 10, "steps": 270, "final_train_loss": 0.3,
                "decisions": [{"what": "partition", "step": 81, "train_loss": 0.5}]}
KEEP = object()  # `regime=KEEP`: the clean decision record a pruning method's run gets


def current_code(method: str) -> dict:
    """The `code` field a run of `method` gets from this checkout."""
    packages = ("core",) if method == "dense" else ("core", "method" if method == "s2hpruner" else "baselines")
    return {"version": code_version(packages), "packages": list(packages)}


def record(experiment: str = "table1", method: str = "s2hpruner", model: str = "resnet50", target: float | None = 0.15,
           seed: int = 0, top1: float = 70.0, flops_ratio: float | None = None, profile: str = "paper",
           status: str = "done", error: str | None = None, metrics: dict | None = None, labels: dict | None = None,
           also: tuple = (), regime: object = KEEP, **options) -> dict:
    """A record as the engine writes it; `options` are dotted config keys (e.g. prune.options.g_g_w=False).

    Its cell labels, as `python -m experiments run` gives them: `labels` in its own grid (by
    default, for Tables 1-3, the model, method and target axes), and `also` (grid, labels) pairs
    for the other grids that reuse it. A pruning run carries a clean decision record (`regime`; None
    leaves it out, as in records from before decision records were kept)."""
    config = copy.deepcopy(BASE_CONFIG)
    config.update(experiment=experiment, profile=profile, seed=seed)
    config["model"]["name"] = model
    config["prune"].update(method=method, flops_target=target)
    for dotted, value in options.items():
        node = config
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    m = {"top1": top1, "flops_ratio": target if flops_ratio is None and target else flops_ratio or 1.0}
    m.update(metrics or {})
    out = {"run_id": f"{experiment}-{method}-{model}-{target}-{seed}-{len(options)}", "experiment": experiment,
           "profile": profile, "status": status, "method": method, "model": model, "dataset": "cifar100",
           "flops_target": target, "seed": seed, "metrics": m if status == "done" else {}, "config": config,
           "env": {"python": "3.11.7", "torch": "2.x", "cuda": None, "device": "cpu (x86_64)", "git_sha": "abc",
                   "git_dirty": False}, "code": current_code(method)}
    if labels is None and experiment in ("table1", "table2", "table3"):
        labels = {"model.name": model} if method == "dense" else \
            {"model.name": model, "method": method, "prune.flops_target": str(target)}
    out["cells"] = [{"experiment": e, "profile": profile, "labels": lb}
                    for e, lb in [(experiment, labels or {}), *also]]
    if error:
        out["error"] = error
    if regime is KEEP:
        regime = None if method in ("dense", "scratch") else copy.deepcopy(CLEAN_REGIME)
    if regime is not None:
        out["regime"] = regime
    return out


def switches(*on: bool, home: str) -> dict:
    """Table 5's labels of a cell: its five switches and the experiment that owns the run."""
    names = ("g_l_theta", "g_g_hard_theta", "g_g_soft_theta", "g_l_w", "g_g_w")
    return {**{f"prune.options.{n}": str(v) for n, v in zip(names, on)}, "experiment": home}


def entries(grid: Grid) -> dict[tuple[str, str], Comparison]:
    return {(row, column): entry for row, column, entry in grid.entries()}


def md_rows(grid: Grid) -> list[list[str]]:
    lines = [line for line in markdown(grid).splitlines() if line.startswith("| ")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


# ----------------------------------------------------------------------------- Table 1


@pytest.fixture()
def table1_runs():
    records = [
        record(method="rst_s", target=0.35, seed=0, top1=70.0),
        record(method="rst_s", target=0.35, seed=1, top1=72.0),
        record(method="rst_s", target=0.35, seed=2, top1=74.0),
        record(method="dense", target=None, top1=78.0),
        record(method="s2hpruner", model="wrn28_10", target=0.55, top1=81.0, flops_ratio=0.60),
        record(method="otov2", model="mobilenetv3", target=0.15, status="failed", error="RuntimeError: out of memory\nmore"),
        record(method="refill", target=0.15, top1=60.0, profile="smoke"),  # another profile: never mixed in
        record(experiment="table2", method="refill", target=0.15, top1=50.0),  # another table
    ]
    return in_memory(records)


def test_table1_layout_and_values(table1_runs):
    grid = build(1, table1_runs, "paper")
    rows = md_rows(grid)
    assert [r[0] for r in rows[2:]] == ["RST-S [1]", "Group-SL [14]", "OTOv2 [6]", "Refill [5]", "Ours"]
    assert rows[0][1].startswith("ResNet-50 (Acc: 78.00 (78.14, -0.14)) 15%") and rows[0][2:4] == ["35%", "55%"]
    assert rows[0][4].startswith("MBV3") and rows[0][7].startswith("WRN28-10") and len(rows[0]) == 10
    cells = entries(grid)
    rst = cells[("RST-S [1]", "ResNet-50 35%")]
    assert rst.ours.values == (70.0, 72.0, 74.0) and rst.ours.mean == 72.0 and rst.ours.std == pytest.approx(2.0)
    assert rst.paper == 76.38 and rst.diff == pytest.approx(72.0 - 76.38)
    assert rows[2][2] == "72.00 ± 2.00 [n=3] (76.38, -4.38)"
    assert rows[6][9] == "81.00† (82.55, -1.55)"  # achieved 0.60 for a 0.55 target: marked
    assert rows[5][1] == f"{DASH} (75.12)"  # the smoke run and the Table 2 run stay out
    assert rows[4][4] == "failed (76.29)"


def test_table1_footer_counts_missing_and_failed(table1_runs):
    grid = build(1, table1_runs, "paper")
    assert grid.expected_runs == 48 and len(grid.missing) == 48 - 4
    footer = "\n".join(grid.footer())
    assert "Missing: 44 of 48 runs" in footer and "python -m experiments run table1 --profile paper" in footer
    assert "table1 mobilenetv3 otov2 15% (seed 0): RuntimeError: out of memory" in footer
    assert "†: achieved FLOPs ratio more than 0.02 from the target: table1 wrn28_10 s2hpruner 55% seed 0: 0.600" in footer
    assert "mean and sample standard deviation over k seeds" in footer
    assert footer.count("  missing: ") == 10 and "and 34 more" in footer


def test_stale_runs_and_cells_mixing_code_versions_are_flagged():
    old = record(method="rst_s", target=0.35, seed=0, top1=70.0)
    old["code"] = {"version": "0123456789ab", "packages": ["core", "baselines"]}
    unknown = record(method="refill", target=0.15, top1=60.0)
    del unknown["code"]  # a record from before code versions
    fresh = record(method="rst_s", target=0.35, seed=1, top1=72.0)
    grid = build(1, in_memory([old, fresh, unknown, record(method="otov2", target=0.55, top1=65.0)]), "paper")
    cells = entries(grid)
    assert cells[("RST-S [1]", "ResNet-50 35%")].marks == "§"
    assert cells[("Refill [5]", "ResNet-50 15%")].marks == "§"
    assert cells[("OTOv2 [6]", "ResNet-50 55%")].marks == ""
    footer = "\n".join(grid.footer())
    assert ("§: runs from another code version than this checkout's (`python -m experiments run table1 --rerun stale` "
            "reruns them)") in footer
    assert "table1 resnet50 rst_s 35% seed 0 (code 0123456789ab, this checkout" in footer
    assert "table1 resnet50 refill 15% seed 0 (no code version recorded)" in footer
    assert "Cells averaging runs of different code versions: table1 resnet50 rst_s 35%" in footer


def test_cells_computed_on_another_setup_than_the_tables_are_flagged():
    def on(rec: dict, **env) -> dict:
        rec["env"].update(env)
        return rec

    cpu = dict(threads=1, cpu_kernels="AVX512")
    runs = [on(record(method="rst_s", target=t, seed=s), **cpu) for t in (0.15, 0.35) for s in (0, 1)]
    runs.append(on(record(method="s2hpruner", target=0.15, seed=0), **cpu))
    runs.append(on(record(method="s2hpruner", target=0.15, seed=1), threads=1, cpu_kernels="AVX2"))  # one seed
    runs.append(on(record(method="otov2", target=0.55), cuda="12.4", device="NVIDIA H200"))  # threads ignored there
    grid = build(1, in_memory(runs), "paper")
    cells = entries(grid)
    assert cells[("Ours", "ResNet-50 15%")].marks == "‡" and cells[("OTOv2 [6]", "ResNet-50 55%")].marks == "‡"
    assert cells[("RST-S [1]", "ResNet-50 15%")].marks == "" and cells[("RST-S [1]", "ResNet-50 35%")].marks == ""
    footer = "\n".join(grid.footer())
    assert ("‡: runs made on another set-up than most of this table's (torch 2.x, cuda none, cpu (x86_64), threads 1, "
            "AVX512 kernels: 5 runs)") in footer
    assert "table1 resnet50 s2hpruner 15% seed 1 (torch 2.x, cuda none, cpu (x86_64), threads 1, AVX2 kernels)" in footer
    assert "table1 resnet50 otov2 55% seed 0 (torch 2.x, cuda 12.4, NVIDIA H200)" in footer
    assert "table1 resnet50 s2hpruner 15% seed 0 (" not in footer
    # one set-up for the whole table, whatever it is: nothing to flag
    same = build(1, in_memory([on(record(method=m), cuda="12.4", device="NVIDIA H200") for m in ("rst_s", "otov2")]),
                 "paper")
    assert "‡" not in "\n".join(same.footer()) and all(e.marks == "" for e in entries(same).values())


def test_profile_label_and_default_profile(table1_runs):
    paper_md, smoke_md = markdown(build(1, table1_runs, "paper")), markdown(build(1, table1_runs, "smoke"))
    assert "Profile:" not in paper_md
    assert "Profile: smoke" in smoke_md and "not comparable" in smoke_md
    assert "60.00 (75.12, -15.12)" in smoke_md and "60.00" not in paper_md
    assert choose_profile(table1_runs, 1) == "paper"  # 6 paper records against 1 smoke
    smoke_only = in_memory([record(profile="smoke"), record(profile="smoke", seed=1)])
    assert choose_profile(smoke_only, 1) == "smoke" and choose_profile(in_memory([]), 1) == "paper"
    for fmt in ("md", "tex", "html"):  # smoke numbers never appear without their label
        assert "Profile: smoke" in render(build(1, smoke_only, None), fmt)
    assert {row["profile"] for row in csv.DictReader(io.StringIO(tidy_csv(build(1, smoke_only, None))))} == {"smoke"}


def test_runs_out_of_the_working_regime_are_marked_and_named():
    loss_bound = 0.5 * math.log(10)  # core.regime: half of chance's loss on ten classes, 1.15
    early = record(method="otov2", target=0.15, seed=1)
    early["regime"]["decisions"] = [{"what": "partition", "step": 27, "train_loss": 1.74}]  # above the bound
    runs = [record(method="otov2", target=0.15, seed=0), early,
            record(method="rst_s", target=0.35),  # a clean decision record: no mark
            record(method="refill", target=0.55, regime=None),  # a pruning run with no decision record
            record(method="dense", target=None, regime=None),  # dense decides nothing: no mark
            record(method="group_sl", target=0.15, metrics={"fallback_zero": 0})]
    grid = build(1, in_memory(runs), "paper")
    cells = entries(grid)
    assert 1.74 > loss_bound and cells[("OTOv2 [6]", "ResNet-50 15%")].marks == "¶"
    assert cells[("RST-S [1]", "ResNet-50 35%")].marks == "" and cells[("Group-SL [14]", "ResNet-50 15%")].marks == ""
    assert cells[("Refill [5]", "ResNet-50 55%")].marks == "¶" and cells[("dense", "ResNet-50")].marks == ""
    rows = md_rows(grid)
    assert rows[4][1] == "70.00 ± 0.00 [n=2]¶ (77.04, -7.04)" and rows[0][1].startswith("ResNet-50 (Acc: 70.00 (78.14")
    footer = "\n".join(grid.footer())
    line = next(line for line in grid.footer() if line.startswith("¶: "))
    assert "break the working-regime rule (core/regime.py" in line
    assert "table1 resnet50 otov2 15% seed 1 (partition at step 27 on train loss 1.74 > 1.15)" in line
    assert "table1 resnet50 refill 55% seed 0 (no decision record (made before they were kept))" in line
    assert "otov2 15% seed 0" not in footer and "rst_s" not in line and "dense" not in line
    # OTOv2's zeros from its deadline fallback are not DHSPG's: marked too
    fallback = record(method="otov2", target=0.55, metrics={"fallback_zero": 1127})
    grid = build(1, in_memory([fallback]), "paper")
    assert entries(grid)[("OTOv2 [6]", "ResNet-50 55%")].marks == "¶"
    assert "fallback zeroed 1127 units" in "\n".join(grid.footer())
    clean = build(1, in_memory([record(method=m) for m in ("rst_s", "s2hpruner")] + [record(method="dense", target=None)]),
                  "paper")
    assert all(e.marks == "" for e in entries(clean).values()) and "¶" not in "\n".join(clean.footer())


def test_seed_labelled_runs_of_a_cell_are_one_cell():
    """The mini profile replicates a cell over seeds, each replica labelled with its seed: one
    table cell, mean ± std over them (Table 9's key alone splits by seed)."""
    labels = {"model.name": "resnet50", "method": "rst_s", "prune.flops_target": "0.35"}
    runs = in_memory([record(method="rst_s", target=0.35, seed=s, top1=70.0 + 2 * s, labels={**labels, "seed": str(s)},
                             also=[("table9", {"seed": str(s)})]) for s in range(3)])
    grid = build(1, runs, "paper")
    rst = entries(grid)[("RST-S [1]", "ResNet-50 35%")]
    assert rst.ours.n == 3 and md_rows(grid)[2][2] == "72.00 ± 2.00 [n=3] (76.38, -4.38)"
    assert grid.expected_runs == 48 and len(grid.missing) == 47
    nine = entries(build(9, runs, "paper"))  # Table 9's columns are seeds: one run each
    assert [nine[("Top-1 Acc (%)", f"#{k}")].ours.n for k in (1, 2, 3, 4)] == [1, 1, 1, 0]
    # a grid of one's own: its seeds fold into one row too, with no seed column
    own = in_memory([record("mine", method="rst_s", target=0.35, seed=s, top1=70.0 + 2 * s,
                            labels={"method": "rst_s", "seed": str(s)}) for s in range(3)])
    grid = grid_table(own, "mine", "paper")
    assert grid.label_columns == ["method"] and len(grid.rows) == 1 and grid.rows[0].cells[0].ours.n == 3


def test_marks_side_by_side_typeset_as_separate_superscripts():
    assert tex_escape("70.00†‡¶") == r"70.00${}^{\dagger}{}^{\ddagger}{}^{\P}$"  # never a double superscript
    assert tex_escape("70.00¶ (76.38)") == r"70.00${}^{\P}$ (76.38)"


def test_mixed_configs_in_one_cell_are_flagged():
    runs = in_memory([record(seed=0), record(seed=1, prune__options__mask_rule="mean")])
    footer = "\n".join(build(1, runs, "paper").footer())
    assert "configs differ beyond the seed" in footer and "table1 resnet50 s2hpruner 15%" in footer
    assert "configs differ" not in "\n".join(build(1, in_memory([record(seed=0), record(seed=1)]), "paper").footer())


# ----------------------------------------------------------------------------- Tables 4-10


def test_table4_published_rows_and_ours():
    runs = in_memory([record("table4", "dense", target=None, top1=76.0),
                      record("table4", "s2hpruner", target=0.15, top1=73.0, flops_ratio=0.152),
                      record("table4", "s2hpruner", target=0.15, seed=1, top1=72.0, flops_ratio=0.148)])
    grid = build(4, runs, "paper")
    rows = md_rows(grid)[2:]
    assert len(rows) == 46 and sum(r[0].endswith("(published)") for r in rows) == 41
    assert rows[0] == ["OTOv2 (published)", "76.10", "70.10", "6.00", "14.50", "120", "0"]
    assert rows[9][5] == DASH  # GReg-1's E_pr is "-" in the paper
    ours = rows[2]
    assert ours[0] == "Ours (15% target)" and ours[1] == "76.00 (76.15, -0.15)"
    assert ours[2].startswith("72.50 ± 0.71 [n=2] (73.23")
    assert ours[3].startswith("3.50 ± 0.71 [n=2] (2.92") and ours[4].startswith("15.00 ± 0.28 [n=2] (15.14")
    assert ours[5] == "200 ± 0 [n=2] (200, +0)" and ours[6] == "0 ± 0 [n=2] (0, +0)"
    assert grid.expected_runs == 6 and len(grid.missing) == 4


def test_table5_rows_by_gradient_switches():
    runs = in_memory([record("table1", top1=79.0,  # Table 1's run is row 2
                             also=[("table5", switches(True, True, False, True, True, home="table1"))]),
                      record("table1", model="mobilenetv3", top1=1.0),  # not the ablation's network
                      record("table5", top1=77.0, prune__options__g_g_w=False,
                             labels=switches(True, True, False, True, False, home="table5")),
                      record("table5", top1=5.0, prune__options__g_g_soft_theta=True,
                             labels=switches(True, True, True, True, True, home="table5"))])
    grid = build(5, runs, "paper")
    rows = md_rows(grid)
    assert rows[2][:5] == ["✓"] * 5 and rows[3][:6] == ["✓", "✓", "✗", "✓", "✓", "79.00 (79.77, -0.77)"]
    assert rows[2][5] == "5.00 (65.55, -60.55)" and rows[6][5] == "77.00 (78.30, -1.30)"
    assert [r[5].split(" ")[0] for r in rows[4:6] + rows[7:]] == [DASH] * 4
    assert grid.expected_runs == 7 and len(grid.missing) == 4


def test_table6_gaps_in_scientific_notation():
    runs = in_memory([record("table6", top1=77.0, prune__options__formulation="alt2",
                             metrics={"gap_js": 0.5, "gap_l2": 8e-4, "top1_original": 78.0, "top1_soft": 60.0},
                             labels={"prune.options.formulation": "alt2", "experiment": "table6"}),
                      record("table1", top1=79.0, metrics={"gap_js": 0.2, "gap_l2": 1.5e-4, "top1_soft": 80.0},
                             also=[("table6", {"prune.options.formulation": "ours", "experiment": "table1"})])])
    rows = md_rows(build(6, runs, "paper"))
    assert [r[0] for r in rows[2:]] == ["Alt 1", "Alt 2", "Ours"]
    assert rows[3][1:] == ["5.00e-01 (5.17e-01)", "8.00e-04 (8.58e-04)", "78.00 (78.35, -0.35)", "60.00",
                           "77.00 (77.78, -0.78)"]
    assert rows[4][1] == "2.00e-01 (1.93e-01)" and rows[4][4] == "80.00 (80.14, -0.14)"
    assert rows[2][1] == f"{DASH} (2.06e+00)"


def test_table7_columns_follow_the_profile():
    src = "run:table7/x"
    runs = in_memory([record("table7", top1=70.0, profile="smoke", prune__options__formulation="soft_only",
                             metrics={"top1_soft": 75.0}, labels={"prune.options.formulation": "soft_only"}),
                      record("table7", top1=71.0, profile="smoke", train__epochs=2, prune__options__init_from=src,
                             metrics={"top1_soft": 76.0}, labels={"train.epochs": "paper:50/smoke:2"})])
    # our epochs of the columns without a run yet: from the grid's manifest, when there is one
    assert md_rows(build(7, runs, "smoke"))[0] == ["Top-1 Acc (%)", "0 (soft-only)", "10", "50 (ours: 2)", "100",
                                                   "250", "500"]
    from experiments.spec import expand

    runs.manifests[("table7", "smoke")] = [{"labels": c.labels} for c in expand("table7", "smoke", validate=False).cells]
    grid = build(7, runs, "smoke")
    rows = md_rows(grid)
    assert rows[0] == ["Top-1 Acc (%)", "0 (soft-only)", "10 (ours: 1)", "50 (ours: 2)", "100 (ours: 3)",
                       "250 (ours: 4)", "500 (ours: 5)"]
    assert rows[2][1] == "75.00 (79.41, -4.41)" and rows[3][1] == "70.00"
    assert rows[2][3] == "76.00 (80.00, -4.00)" and rows[3][3] == "71.00 (78.89, -7.89)"
    assert md_rows(build(7, runs, "paper"))[0][2] == "10"
    assert grid.expected_runs == 6 and len(grid.missing) == 4


def test_table8_random_and_found_architectures():
    runs = in_memory([record("table8", "scratch", top1=60.0, prune__options__random=True, prune__options__random_seed=2,
                             labels={"network": "rand2"}),
                      record("table8", "scratch", top1=65.0, prune__options__random=False, labels={"network": "ours"})])
    rows = md_rows(build(8, runs, "paper"))
    assert rows[0] == ["Network", "Rand 1", "Rand 2", "Rand 3", "Ours"]
    assert rows[2][1:] == [f"{DASH} (76.46)", "60.00 (76.64, -16.64)", f"{DASH} (76.96)", "65.00 (77.65, -12.65)"]


def test_table9_seeds_and_their_mean():
    runs = in_memory([record("table1", seed=0, top1=79.0, flops_ratio=0.151,
                             also=[("table9", {"seed": "0", "experiment": "table1"})]),
                      record("table9", seed=1, top1=80.0, flops_ratio=0.152, labels={"seed": "1"}),
                      record("table9", seed=2, top1=81.0, flops_ratio=0.153, labels={"seed": "2"}),
                      record("table9", seed=7, top1=10.0, labels={"seed": "7"})])  # not one of the table's four seeds
    grid = build(9, runs, "paper")
    rows = md_rows(grid)
    assert rows[0] == ["Exp", "#1", "#2", "#3", "#4", "mean ± std"]
    assert rows[2][1] == "79.00 (79.77, -0.77)" and rows[2][4] == f"{DASH} (79.75)"
    assert rows[2][5] == "80.00 ± 1.00 [n=3] (79.75, +0.25)"
    assert rows[3][1] == "15.10 (15.36, -0.26)" and rows[3][5].startswith("15.20 ± 0.10 [n=3] (15.43")
    assert len(grid.missing) == 1


def test_table10_schedules_and_measurements():
    cost = {"epoch_time_s": 40.0, "peak_mem_mb_train": 4000.4, "peak_mem_mb_infer": 1200.0, "peak_mem_kind": "cuda"}
    runs = in_memory([record("table1", "rst_s", top1=75.0, metrics=cost,
                             also=[("table10", {"method": "rst_s", "schedule": "1x"})]),
                      record("table10", "rst_s", top1=76.0, train__epochs=400, labels={"method": "rst_s", "schedule": "2x"}),
                      record("table1", "s2hpruner", top1=79.0, metrics={**cost, "epoch_time_s": 50.0},
                             also=[("table10", {"method": "s2hpruner", "schedule": "1x"})]),
                      record("table1", "rst_s", model="vit", top1=1.0)])
    grid = build(10, runs, "paper")
    rows = md_rows(grid)
    assert rows[0] == ["", "RST-S", "Depgraph", "OTO v2", "IMP-Refill", "Ours"]
    assert rows[2][1] == "75.00 (75.02, -0.02)" and rows[3][1] == "76.00 (75.54, +0.46)"
    assert rows[3][5] == DASH  # the paper has no 2x run of its own method, nor do we expect one
    assert rows[4][1] == "40.00 (44.50, -4.50)" and rows[4][5] == "50.00 (50.13, -0.13)"
    assert rows[5][1] == "4000 (4329, -329)" and rows[6][1] == "1200 (1351, -151)"
    assert grid.expected_runs == 9 and len(grid.missing) == 6
    assert "cpu (x86_64), cuda (2 runs)" in "\n".join(grid.footer())


# ----------------------------------------------------------------------------- the paper's column, the grids


def test_every_table_renders_with_no_records():
    for number in table_numbers():
        grid = build(number, in_memory([]), None)
        assert grid.profile == "paper" and len(grid.missing) == grid.expected_runs > 0
        for fmt in ("md", "csv", "tex", "html"):
            assert render(grid, fmt)
    with pytest.raises(ValueError, match="no table 11"):
        build(11, in_memory([]))


PAPER_TEXT = Path(__file__).resolve().parents[3] / "shared" / "paper" / "s2hpruner-neurips2024.txt"


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", line.replace("e-00", "e+00"))]


def test_rendered_paper_column_equals_the_papers_text():
    """Read each table's printed rows from the paper and compare with the paper values we render, in order."""
    if not PAPER_TEXT.exists():
        pytest.skip(f"the paper's text is not at {PAPER_TEXT}")
    text = PAPER_TEXT.read_text().splitlines()

    def line_after(anchor: str, prefix: str) -> str:
        start = next(i for i, line in enumerate(text) if anchor in line)
        return next(line for line in text[start:] if line.startswith(prefix))

    def paper_column(number: int) -> dict[str, list[float]]:
        by_row: dict[str, list[float]] = {}
        for row, _, entry in build(number, in_memory([]), "paper").entries():
            if entry.paper is not None:
                by_row.setdefault(row, []).append(entry.paper)
        return by_row

    for number in (1, 2, 3):
        rendered = paper_column(number)
        header = line_after(f"Table {number}:", "MethodResNet" if number < 3 else "MethodViT")
        assert rendered.pop("dense") == _numbers(header)
        for name, values in rendered.items():
            assert values == _numbers(line_after(f"Table {number}:", name.split(" [")[0])), (number, name)
    start = next(i for i, line in enumerate(text) if line.startswith("Method Unpruned top-1"))
    t4 = build(4, in_memory([]), "paper")
    for row, line in zip(t4.rows, text[start + 1 : start + 47]):
        printed = [float(x) for x in line.split("]")[-1].split() if x != "-"] if "[" in line else \
            [float(x) for x in line.split()[1:] if x != "-"]
        assert [c.paper for c in row.cells if isinstance(c, Comparison) and c.paper is not None] == printed, line
    t5 = [line for line in text if re.match(r"^[✓x] [✓x] [✓x] [✓x] [✓x] \d", line)]
    assert [v[0] for v in paper_column(5).values()] == [float(line.split()[-1]) for line in t5]
    t6 = paper_column(6)
    for name, anchor in (("Alt 1", "Alt 1 2.06"), ("Alt 2", "Alt 2 5.17"), ("Ours", "Ours 1.93")):
        assert t6[name] == _numbers(next(line for line in text if line.startswith(anchor)))
    t7 = paper_column(7)
    assert t7["θ⊙w (soft)"] == [79.41] + _numbers(line_after("Table 7:", "Top-1 Acc (%)θ⊙w"))
    assert t7["θ⟨m̂⟩ (hard)"] == _numbers(line_after("Table 7:", "θ⟨ˆm⟩"))
    assert paper_column(8)["Top-1 Acc (%)"] == _numbers(line_after("Table 8:", "Top-1 Acc"))
    t9 = paper_column(9)
    assert t9["Top-1 Acc (%)"][:4] == _numbers(line_after("Table 9:", "Top-1 Acc"))
    assert t9["FLOPs (%)"][:4] == _numbers(line_after("Table 9:", "FLOPs (%)"))
    t10 = paper_column(10)
    prefixes = ["Top-1 Acc (%) (1x", "Top-1 Acc (%) (2x", "GPU time per epoch", "Peak GPU memory (MB) (training)",
                "Peak GPU memory (MB) (inference)"]
    for values, prefix in zip(t10.values(), prefixes):
        printed = line_after("Table 10:", prefix).split(")")[-1].split()
        assert values == [float(x) for x in printed if x != "-"], prefix


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_every_grid_cell_lands_on_one_table_cell(profile):
    """Expand each table's experiment YAML, turn each cell into a record, and check the table finds them all."""
    from core.config import to_dict
    from core.records import run_id
    from experiments.spec import expand

    for number in table_numbers():
        expansion = expand(f"table{number}", profile, validate=False)
        records = {}
        for cell in expansion.all_cells:
            cfg = cell.cfg
            if run_id(cfg) in records:
                continue
            records[run_id(cfg)] = {
                "run_id": run_id(cfg), "experiment": cfg.experiment, "profile": cfg.profile, "status": "done",
                "method": cfg.prune.method, "model": cfg.model.name, "dataset": cfg.data.name,
                "flops_target": cfg.prune.flops_target, "seed": cfg.seed, "config": to_dict(cfg),
                "code": current_code(cfg.prune.method),
                "metrics": {"top1": 50.0, "flops_ratio": cfg.prune.flops_target, "top1_soft": 50.0,
                            "gap_js": 0.1, "gap_l2": 0.1, "top1_original": 50.0, "epoch_time_s": 1.0,
                            "peak_mem_mb_train": 1.0, "peak_mem_mb_infer": 1.0},
                "cells": [{"experiment": c.owner, "profile": profile, "labels": c.labels}
                          for c in expansion.all_cells if run_id(c.cfg) == run_id(cfg)],
            }
        grid = build(number, in_memory(records.values()), profile)
        assert grid.missing == [], (number, grid.missing)
        sources = {r["experiment"] for r in records.values()}
        used = sum(e.ours.n for _, _, e in grid.entries() if e.ours.n)
        assert used > 0 and sources, number
        # each expected run is found exactly once: no cell averages two grid cells
        assert all(e.ours.n <= 1 for _, column, e in grid.entries() if "mean" not in column), number
        own = {run_id(cell.cfg) for cell in expansion.cells}  # referenced sources (Table 8's) are not cells
        assert grid.expected_runs == len(own), (number, grid.expected_runs, len(own))


# ----------------------------------------------------------------------------- rendering


def test_tidy_csv_and_latex(table1_runs):
    grid = build(1, table1_runs, "paper")
    rows = list(csv.DictReader(io.StringIO(tidy_csv(grid))))
    assert len(rows) == 3 + 45
    rst = next(r for r in rows if r["row"] == "RST-S [1]" and r["column"] == "ResNet-50 35%")
    assert (float(rst["ours"]), float(rst["std"]), rst["n"], float(rst["paper"])) == (72.0, 2.0, "3", 76.38)
    tex = latex(grid)
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"\cmidrule(lr){2-4}" in tex
    body = tex[tex.index(r"\midrule"):tex.index(r"\bottomrule")]
    assert all(line.count("&") == 9 for line in body.splitlines()[1:])
    assert r"72.00 $\pm{}$ 2.00 [n=3]\,{\scriptsize (76.38, -4.38)}" in tex


def test_latex_compiles(tmp_path):
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    marked = [record(method="rst_s", profile="smoke", flops_ratio=0.5),  # † off target,
              record(method="refill", profile="smoke"), record(method="group_sl", profile="smoke", regime=None),
              record(method="otov2", profile="smoke", metrics={"fallback_zero": 5})]
    marked[1]["code"] = {"version": "0123456789ab", "packages": ["core"]}  # § stale, ¶ out of the regime,
    marked[3]["env"].update(cuda="12.4", device="NVIDIA H200")  # ‡ elsewhere and ¶ side by side: each must typeset
    runs = in_memory([record(seed=s, top1=70.0 + s, profile="smoke") for s in range(3)] + marked)
    assert {e.marks for e in entries(build(1, runs, "smoke")).values()} >= {"†", "§", "¶", "‡¶"}
    document = tex_document([latex(build(n, runs, "smoke")) for n in table_numbers()])
    (tmp_path / "tables.tex").write_text(document)
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 10_000


def test_records_from_disk_and_cli(tmp_path, capsys):
    from analysis.cli import main

    folder = tmp_path / "runs" / "table9" / "abc"
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(record("table9", seed=1, top1=80.0, profile="smoke", labels={"seed": "1"})))
    (tmp_path / "runs" / "table9" / "queued").mkdir()
    runs = load_runs(tmp_path)
    assert len(runs.runs) == 1 and runs.runs[0].path == folder and len(runs.unfinished) == 1
    assert main(["table", "9", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Profile: smoke" in out and "80.00 (79.68, +0.32)" in out
    assert main(["table", "9", "--results", str(tmp_path), "--format", "csv", "--profile", "paper"]) == 0
    assert "80.0" not in capsys.readouterr().out
    assert main(["table", "12"]) == 2 and "no table 12" in capsys.readouterr().err
    assert main(["tables", "--results", str(tmp_path)]) == 0
    assert (tmp_path / "tables" / "table9-smoke.tex").exists() and (tmp_path / "tables" / "table1-paper.md").exists()


def test_an_unreadable_record_is_named_in_its_tables_footer(tmp_path):
    from analysis.render import render

    torn = tmp_path / "runs" / "table1" / "torn"
    torn.mkdir(parents=True)
    (torn / "record.json").write_text('{"status": "do')
    elsewhere = tmp_path / "runs" / "table5" / "reused"  # a run of another grid, labelled for Table 1 too
    elsewhere.mkdir(parents=True)
    (elsewhere / "record.json").write_text("[]")
    (elsewhere / "cells.jsonl").write_text(json.dumps({"experiment": "table1", "profile": "paper", "labels": {}}) + "\n")
    runs = load_runs(tmp_path)
    text = render(build(1, runs, "paper"), "md")
    assert "Unreadable records (their cells count as missing" in text
    assert f"{torn} (JSONDecodeError" in text and f"{elsewhere} (record.json is not a JSON object)" in text
    assert "Unreadable" not in render(build(9, runs, "paper"), "md")


def test_table10_time_and_memory_rows_from_the_benchmark():
    runs = in_memory([record("table1", "rst_s", top1=75.0, metrics={"epoch_time_s": 1.0, "peak_mem_mb_infer": 9.0},
                             also=[("table10", {"method": "rst_s", "schedule": "1x"})])])
    bench = {"device": "NVIDIA H100", "device_type": "cuda", "date": "2026-11-21T00:00:00+00:00",
             "training": [{"method": "rst_s", "epoch_s": 40.0, "peak_mem_mb_train": 4000.0, "memory_kind": "cuda"},
                          {"method": "s2hpruner", "error": "RuntimeError"}]}
    cpu = {**bench, "device": "cpu (x86_64)", "device_type": "cpu", "date": "2026-12-01T00:00:00+00:00"}
    runs.bench = [cpu, bench]  # the GPU's is preferred to a newer CPU one
    rows = md_rows(build(10, runs, "paper"))
    assert rows[4][0] == "Time per epoch (s) [bench: NVIDIA H100]" and rows[4][1] == "40.00 (44.50, -4.50)"
    assert rows[5][0] == "Peak memory (MB) (training) [bench: NVIDIA H100]" and rows[5][1] == "4000 (4329, -329)"
    assert rows[4][5] == f"{DASH} (50.13)" and rows[6][1] == "9 (1351, -1342)"  # inference memory: the run's
    assert "Rows marked [bench]: `python -m bench` on NVIDIA H100" in "\n".join(build(10, runs, "paper").footer())


def test_table10_takes_s2hpruners_step_at_the_target_and_names_the_one_at_initialisation():
    runs = in_memory([record("table1", "rst_s", top1=75.0, also=[("table10", {"method": "rst_s", "schedule": "1x"})])])
    row = {"memory_kind": "cpu_peak_rss", "peak_mem_mb_train": 1000.0}
    runs.bench = [{"device": "cpu (x86_64)", "device_type": "cpu", "date": "2026-12-02T00:00:00+00:00", "training": [
        {**row, "method": "dense", "epoch_s": 100.0, "step_s_median": 1.0},
        {**row, "method": "s2hpruner", "masks": "init", "epoch_s": 170.0, "step_s_median": 1.7},
        {**row, "method": "s2hpruner", "masks": "target", "epoch_s": 140.0, "step_s_median": 1.4,
         "peak_mem_mb_train": 1300.0, "step_over_soft_pass": 1.35}]}]
    grid = build(10, runs, "paper")
    assert md_rows(grid)[4][5] == "140.00 (50.13, +89.87)" and md_rows(grid)[5][5] == "1300 (4710, -3410)"
    footer = "\n".join(grid.footer())
    assert ("at the target (1.40x the dense step's 100 s per epoch, 1.35x its own soft forward and backward pass in "
            "the same steps, and 1.30x its 1000 MB") in footer
    assert "at initialisation 170 s per epoch, 1.70x the dense step's)" in footer  # no drift-free ratio in that row


def test_table10_inference_memory_from_the_benchmarked_exports():
    measured = record("table1", "rst_s", top1=75.0, metrics={"peak_mem_mb_infer": 9.0},
                      also=[("table10", {"method": "rst_s", "schedule": "1x"})])
    unmeasured = record("table1", "refill", top1=75.0, metrics={"peak_mem_mb_infer": 7.0},
                        also=[("table10", {"method": "refill", "schedule": "1x"})])
    runs = in_memory([measured, unmeasured])
    bench = {"device": "cpu (x86_64)", "device_type": "cpu", "date": "2026-11-21T00:00:00+00:00",
             "training": [{"method": "rst_s", "epoch_s": 40.0, "peak_mem_mb_train": 4000.0, "memory_kind": "cpu"}],
             "exported": [{"run_id": measured["run_id"], "peak_mem_mb_infer": 1200.0, "memory_kind": "cpu_tensor_peak"},
                          {"run_id": "another", "peak_mem_mb_infer": 5.0}]}
    runs.bench = [bench]
    grid = build(10, runs, "paper")
    rows = md_rows(grid)
    assert rows[6][0] == "Peak memory (MB) (inference) [bench: cpu (x86_64)]"
    assert rows[6][1] == "1200 (1351, -151)" and rows[6][4] == f"{DASH} (1329)"  # never the run's own 7 MB
    footer = "\n".join(grid.footer())
    assert "Inference memory [bench]: the peak of one forward pass at batch 64 of each 1x run's exported " \
           "pruned.pt, its own tensors included (cpu_tensor_peak)" in footer
    assert f"Not in the benchmark (run `make bench` again): table1 resnet50 refill 15% (1x schedule) {unmeasured['run_id']}" in footer
    assert "measured inside the 1x training runs" not in footer  # every row came from the benchmark
    runs.bench = [{**bench, "exported": []}]  # no export measured: the runs' own figure, said so
    rows = md_rows(build(10, runs, "paper"))
    assert rows[6][0] == "Peak memory (MB) (inference)" and rows[6][1] == "9 (1351, -1342)"
    assert "Inference memory: measured inside the 1x training runs" in "\n".join(build(10, runs, "paper").footer())
