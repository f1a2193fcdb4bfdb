"""Experiment grids: run counts, reuse of runs, validation before submission (Appendix A: test_paper_profile.py)."""

from __future__ import annotations

import re

import pytest

from core.errors import ConfigError
from experiments.spec import HERE, expand, experiment_names, load_experiment

PAPER_COUNTS = {  # runs per experiment, counted from the paper's tables and figures
    "table1": 48, "table2": 48, "table3": 14, "table4": 6, "table5": 7, "table6": 3, "table7": 6,
    "table8": 4, "table9": 4, "table10": 9, "fig3": 5, "fig4": 5, "fig5": 1, "fig6": 1, "fig7": 1,
    "fig8": 1, "fig9": 1,
}


def test_all_seventeen_experiments_with_the_papers_run_counts():
    assert experiment_names() == list(PAPER_COUNTS)
    for name, count in PAPER_COUNTS.items():
        cells = expand(name, "paper", validate=False).cells
        assert len(cells) == count, name
        header = load_experiment(name).header
        stated = re.search(r"^Runs: (\d+)", header, re.M)
        assert stated and int(stated.group(1)) == count, f"{name}: header says {stated and stated.group(0)}"
        assert re.search(rf"^make {name}:", header, re.M) and "GPU-hours at the paper profile" in header


def test_table1_is_45_pruning_runs_and_3_dense():
    cells = expand("table1", "paper", validate=False).cells
    methods = [c.layers["prune.method"] for c in cells]
    assert methods.count("dense") == 3 and len(methods) - 3 == 45
    pruned = {(c.layers["model.name"], c.layers["prune.method"], c.layers["prune.flops_target"]) for c in cells if c.layers["prune.method"] != "dense"}
    assert len(pruned) == 45


@pytest.mark.parametrize("profile", ["paper", "smoke"])
def test_every_config_validates(profile):
    for name in PAPER_COUNTS:
        expansion = expand(name, profile)
        assert all(c.cfg is not None and c.cfg.profile == profile for c in expansion.all_cells)
        # The paper's networks at full width; smoke's narrow copies (make demo is table1's smoke grid).
        assert all(c.cfg.model.width == 1.0 if profile == "paper" else c.cfg.model.width <= 0.25
                   for c in expansion.all_cells), name


def test_smoke_profile_shrinks_the_same_grid():
    paper, smoke = expand("table1", "paper"), expand("table1", "smoke")
    assert [c.labels for c in paper.cells] == [c.labels for c in smoke.cells]
    for p, s in zip(paper.cells, smoke.cells):
        assert s.cfg.data.name == "synthetic" and s.cfg.data.options["num_classes"] == 100
        assert (s.cfg.prune.method, s.cfg.prune.flops_target, s.cfg.train.optimizer, s.cfg.train.schedule) == (
            p.cfg.prune.method, p.cfg.prune.flops_target, p.cfg.train.optimizer, p.cfg.train.schedule)
        assert s.cfg.train.epochs < p.cfg.train.epochs and s.run_dir.path != p.run_dir.path


def test_smoke_method_keys_reach_their_methods_cells_only(tmp_path):
    # unvalidated configs: the keys each cell was given, before the methods' defaults fill in
    smoke, paper = expand("table1", "smoke", validate=False).cells, expand("table1", "paper", validate=False).cells
    for cell in smoke:
        options = cell.cfg.prune.options
        if cell.cfg.prune.method == "s2hpruner":
            assert (options["mask_lr"], options["mask_momentum"]) == (60, 0.5)
        else:
            assert "mask_lr" not in options and "mask_momentum" not in options
        if cell.cfg.prune.method == "group_sl":
            assert options["max_prune_steps"] == 100
        assert cell.cfg.train.batch_size == 4
    for cell in paper:  # the official defaults: mask_lr 2, the weights' momentum, 400 pruning steps
        assert not {"mask_lr", "mask_momentum", "max_prune_steps"} & set(cell.cfg.prune.options)
    # an experiment's own value wins over the profile's method keys
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nbase: {data.name: cifar100, model.name: wrn28_10, prune.method: s2hpruner, "
                    "prune.flops_target: 0.3, prune.options.mask_lr: 7}\n")
    (cell,) = expand(str(path), "smoke").cells
    assert (cell.cfg.prune.options["mask_lr"], cell.cfg.prune.options["mask_momentum"]) == (7, 0.5)


def _cell(expansion, **labels):
    found = [c for c in expansion.all_cells if all(c.labels.get(k) == str(v) for k, v in labels.items())]
    assert len(found) == 1, labels
    return found[0]


def test_tables_and_figures_reuse_table_runs_by_run_id():
    t1 = expand("table1", "smoke")
    ours15 = _cell(t1, **{"model.name": "resnet50", "method": "s2hpruner", "prune.flops_target": 0.15})
    t9 = expand("table9", "smoke")
    assert _cell(t9, seed=0).run_dir == ours15.run_dir and _cell(t9, seed=0).reused
    assert len({c.run_dir for c in t9.cells}) == 4
    t5 = expand("table5", "smoke")
    assert [c.reused for c in t5.cells] == [False, True, False, False, False, False, False]
    assert t5.cells[1].run_dir == ours15.run_dir
    table_dirs = {c.run_dir for c in t1.cells} | {c.run_dir for c in expand("table3", "smoke").cells}
    for fig in ("fig3", "fig4", "fig5", "fig6", "fig7", "fig8", "fig9"):
        assert {c.run_dir for c in expand(fig, "smoke").cells} <= table_dirs, fig
    t10 = expand("table10", "smoke")
    one_x = [c for c in t10.cells if c.labels["schedule"] == "1x"]
    two_x = [c for c in t10.cells if c.labels["schedule"] == "2x"]
    assert {c.run_dir for c in one_x} <= {c.run_dir for c in t1.cells} and len(one_x) == 5
    assert all(c.cfg.train.epochs == 2 * ours15.cfg.train.epochs and not c.reused for c in two_x)


def test_run_references_point_at_source_runs():
    t7 = expand("table7", "smoke")
    soft = t7.cells[0]
    assert soft.cfg.prune.options["formulation"] == "soft_only"
    for cell, epochs in zip(t7.cells[1:], [1, 2, 3, 4, 5]):
        assert cell.cfg.prune.options["init_from"] == f"run:table7/{soft.run_dir.path.name}" and cell.needs == [soft]
        assert cell.cfg.train.epochs == epochs and cell.cfg.train.lr == pytest.approx(0.1 * soft.cfg.train.lr)
    assert [c.cfg.train.epochs for c in expand("table7", "paper").cells[1:]] == [10, 50, 100, 250, 500]
    t8 = expand("table8", "smoke")
    source = _cell(expand("table1", "smoke"), **{"model.name": "resnet50", "method": "s2hpruner", "prune.flops_target": 0.15})
    assert [c.run_dir for c in t8.extra] == [source.run_dir]
    assert all(c.cfg.prune.options["architecture_from"] == f"run:table1/{source.run_dir.path.name}" for c in t8.cells)


@pytest.mark.parametrize("name", ["table7", "table8"])
def test_cells_that_read_other_runs_have_the_same_run_ids_under_any_output_root(name, tmp_path):
    here, there = (expand(name, "smoke", output_root=str(tmp_path / root)) for root in ("a", "elsewhere/b"))
    assert [c.run_dir.path.name for c in here.all_cells] == [c.run_dir.path.name for c in there.all_cells]
    assert all(c.run_dir.path.is_relative_to(tmp_path / "elsewhere") for c in there.all_cells)


def test_misspelled_override_names_the_cell():
    with pytest.raises(ConfigError, match=r"table5 cell \[.*prune.options.g_l_theta=True.*\]: config key 'train.epoch'"):
        expand("table5", "smoke", ["train.epoch=3"])


def test_unknown_method_in_a_grid_names_the_cell(tmp_path):
    grid = tmp_path / "mine.yaml"
    grid.write_text("name: mine\nbase: {data.name: cifar100, model.name: resnet50}\n"
                    "blocks:\n  - product: {prune.method: [dense, s2hprunr]}\n")
    with pytest.raises(ConfigError, match=r"mine cell \[prune.method=s2hprunr\]: unknown pruner 's2hprunr' \(did you mean 's2hpruner'\?\)"):
        expand(str(grid), "smoke")


def test_sweeps_and_method_scoped_overrides():
    base = expand("table3", "smoke")
    swept = expand("table3", "smoke", ["s2hpruner:prune.options.mask_lr=1.5"], ["seed=1,2"])
    assert len(swept.cells) == 2 * len(base.cells)
    assert {c.cfg.seed for c in swept.cells} == {1, 2}
    for cell in swept.cells:
        if cell.cfg.prune.method == "s2hpruner":
            assert cell.cfg.prune.options["mask_lr"] == 1.5
        else:
            assert "mask_lr" not in cell.cfg.prune.options


def test_user_grid_with_zip_and_profile_values(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "name: grid\nbase: {data.name: cifar100, model.name: wrn28_10, prune.method: rst_s}\n"
        "blocks:\n  - zip: {prune.flops_target: [0.3, 0.6], train.epochs: [{paper: 9, smoke: 3}, {times: 2}]}\n"
    )
    cells = expand(str(grid), "smoke").cells
    assert [(c.cfg.prune.flops_target, c.cfg.train.epochs) for c in cells] == [(0.3, 3), (0.6, 4)]
    assert [c.cfg.train.epochs for c in expand(str(grid), "paper").cells] == [9, 400]


def test_bad_grid_files_fail_clearly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbase: {data.name: cifar100, model.name: resnet50}\nblocks:\n  - zip: {seed: [1, 2], train.epochs: [1]}\n")
    with pytest.raises(ConfigError, match="equal lengths"):
        expand(str(bad), "smoke")
    bad.write_text("name: bad\nbase: {data.name: cifar100, model.name: lenet}\n")
    with pytest.raises(ConfigError, match="no smoke recipe for data.name=cifar100 model.name=lenet"):
        expand(str(bad), "smoke")
    with pytest.raises(ConfigError, match="unknown experiment 'tabel1' \\(did you mean 'table1'\\?\\)"):
        expand("tabel1", "smoke")


def test_experiment_files_are_where_the_cli_finds_them():
    assert all((HERE / f"{name}.yaml").is_file() for name in PAPER_COUNTS)
