"""`python -m experiments`: commands that read write nothing, and a run of a subset touches only it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from experiments.cli import main


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with the hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_one_cell_run_makes_one_folder_and_status_and_dry_runs_write_nothing(tmp_path, capsys):
    results = tmp_path / "results"
    one = ["--where", "model.name=resnet50", "--where", "prune.method=dense", "--output-root", str(results)]
    assert main(["run", "table1", "--executor", "inline", *one, "progress=false"]) == 0
    folders = sorted(p.name for p in (results / "runs" / "table1").iterdir())
    assert len(folders) == 1  # not a folder of labels for each of the grid's 48 cells
    assert (results / "experiments" / "table1-smoke.json").exists()  # the manifest lists the whole grid
    before = _snapshot(results)
    assert main(["status", "table1", "--output-root", str(results)]) == 0
    assert main(["run", "table1", "--dry-run", "--output-root", str(results)]) == 0
    assert main(["run", "table5", "--dry-run", "--output-root", str(results)]) == 0
    assert main(["status", "table9", "--where", "seed=0", "--output-root", str(results)]) == 0
    assert _snapshot(results) == before
    capsys.readouterr()
