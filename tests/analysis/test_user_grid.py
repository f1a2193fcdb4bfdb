"""A grid of one's own renders as a table from the labels its runs carry."""

from __future__ import annotations

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
    for cell in expansion.cells:  # each run knows the cell it fills, in the run folder and in its record
        assert cell.run_dir.cells() == [{"experiment": "mine", "profile": "smoke", "labels": cell.labels}]
        assert cell.run_dir.read_record()["cells"] == cell.run_dir.cells()
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

    # by name too, and a cell not run yet shows as missing with the command that makes it
    (narrow.run_dir.path / "record.json").unlink()
    assert analysis_main(["table", "mine", "--results", root]) == 0
    out = capsys.readouterr().out
    assert "Produce them with: python -m experiments run mine --profile smoke" in out
    assert "missing: mine prune.flops_target=0.3" in out
    assert analysis_main(["table", str(Path(tmp_path / "nope.yaml")), "--results", root]) == 2
