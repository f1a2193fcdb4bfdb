"""A grid of one's own renders as a table from the labels its runs carry."""

from __future__ import annotations

import shutil
from pathlib import Path

from analysis.cli import main as analysis_main
from experiments.cli import main as experiments_main
from experiments.spec import expand
from tests.slurm.conftest import SHRINK

GRID = ("name: mine\n"
        "base: {data.name: cifar100, model.name: wrn28_10}\n"
        "bundles: {method: {dense: {prune.method: dense}, rst_s: {prune.method: rst_s, prune.flops_target: 0.5}}}\n"
        "blocks:\n  - product: {method: [dense, rst_s]}\n"
        "  - set: {prune.method: rst_s}\n    product: {prune.flops_target: [0.3]}\n")


def test_a_users_grid_renders_from_its_runs_labels(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text(GRID)
    root = str(tmp_path / "results")
    expansion = expand(str(path), "smoke", SHRINK, output_root=root)
    dense, rst, narrow = expansion.cells
    assert experiments_main(["run", str(path), "--executor", "inline", "--output-root", root, *SHRINK]) == 0
    for cell in expansion.cells:  # each run folder says which cell it fills; the engine's record knows no table
        assert cell.run_dir.cells() == [{"experiment": "mine", "profile": "smoke", "labels": cell.labels}]
        assert "cells" not in cell.run_dir.read_record()
    capsys.readouterr()

    assert analysis_main(["table", str(path), "--results", root]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert lines[0].split("|")[1:-1] == [" method ", " prune.flops_target ", " Top-1 (%) ", " FLOPs ratio ",
                                         " Params (M) "]
    top1 = {k: cell.run_dir.read_record()["metrics"]["top1"] for k, cell in
            (("dense", dense), ("rst_s", rst), ("narrow", narrow))}
    assert lines[2].startswith(f"| dense |  | {top1['dense']:.2f} | 1.000 |")
    assert lines[3].startswith(f"| rst_s |  | {top1['rst_s']:.2f}")
    assert lines[4].startswith(f"|  | 0.3 | {top1['narrow']:.2f}")
    assert "Profile: smoke" in out and "All 3 runs of this table have a record." in out

    # the run folders alone, copied elsewhere without the grid's manifest, render the same rows
    # (in the order the runs are read: the manifest's order is the grid's)
    copy = tmp_path / "copied"
    shutil.copytree(Path(root) / "runs", copy / "runs")
    assert analysis_main(["table", "mine", "--results", str(copy)]) == 0
    copied = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert copied[:2] == lines[:2] and sorted(copied[2:]) == sorted(lines[2:])

    # by name too, and a cell not run yet shows as missing with the command that makes it
    (narrow.run_dir.path / "record.json").unlink()
    assert analysis_main(["table", "mine", "--results", root]) == 0
    out = capsys.readouterr().out
    assert "Produce them with: python -m experiments run mine --profile smoke" in out
    assert "missing: mine prune.flops_target=0.3" in out
    assert analysis_main(["table", str(Path(tmp_path / "nope.yaml")), "--results", root]) == 2


def test_a_misspelled_or_malformed_grid_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "malformed.yaml").write_text("blocks: [\n")
    (tmp_path / "list.yaml").write_text("- product: {seed: [0, 1]}\n")
    for grid, needle in (("tabel1", "no runs or manifest of a grid named 'tabel1' in these results (did you mean "
                                    "'table1'?)"),
                         ("malformed.yaml", "malformed.yaml: not valid YAML"),
                         ("list.yaml", "list.yaml: a grid file holds a mapping")):
        assert analysis_main(["table", grid, "--results", str(tmp_path / "results")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.yaml", "malformed.yaml"]


def test_a_misspelled_method_prefix_is_refused_before_anything(tmp_path, capsys):
    assert experiments_main(["run", "table1", "s2hprunr:prune.options.mask_lr=1", "--dry-run",
                             "--output-root", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no cell of table1 has prune.method=s2hprunr (did you mean 's2hpruner'?)" in err[0]
    assert not (tmp_path / "results").exists()
