"""Add a table (docs/architecture.md), followed once: a grid YAML and a table function, the latter
registered with `analysis.tables.table(N)` in a temporary module named in `$S2H_PLUGINS`; no file
of the suite is edited, and `python -m analysis table N` renders the run's number."""

from __future__ import annotations

import json

from analysis import tables
from analysis.cli import main as analysis_main
from experiments.cli import main as experiments_main
from tests.slurm.conftest import SHRINK

TABLE = '''
"""Table 11: top-1 per model, dense only (a toy table of one's own)."""
from analysis.cells import Builder
from analysis.grid import Row
from analysis.tables import table


@table(11)
def table11(runs, profile):
    b = Builder(11, runs, profile, key=lambda rows: rows["model"])
    slot = b.slot("resnet50", "table11 resnet50 dense")
    return b.grid("Table 11: dense top-1", ["Model"], ["Top-1 (%)"], [Row(["ResNet-50"], [b.entry(slot, "top1", None)])])
'''

GRID = ("name: table11\n"
        "base: {data.name: cifar100, model.name: resnet50, prune.method: dense}\n"
        "blocks:\n  - product: {seed: [0]}\n")


def test_a_table_of_ones_own_is_its_grid_and_its_function(plugin, tmp_path, capsys):
    plugin("toy_table", TABLE, tables.TABLES)
    grid = tmp_path / "table11.yaml"
    grid.write_text(GRID)
    root = tmp_path / "results"
    assert experiments_main(["run", str(grid), "--profile", "smoke", "--executor", "inline", "--output-root", str(root),
                             *SHRINK]) == 0
    (record,) = [json.loads(p.read_text()) for p in (root / "runs" / "table11").glob("*/record.json")]
    capsys.readouterr()

    assert analysis_main(["table", "11", "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert "Table 11: dense top-1" in out and f"| ResNet-50 | {record['metrics']['top1']:.2f} |" in out
    assert "All 1 runs of this table have a record." in out
    assert analysis_main(["tables", "--results", str(root)]) == 0  # every table, the new one among them
    assert (root / "tables" / "table11-smoke.md").exists()
    assert 11 in tables.table_numbers()


def test_without_the_plugin_there_is_no_table_11(capsys):
    assert 11 not in tables.table_numbers()
    assert analysis_main(["table", "11"]) == 2 and "no table 11: the tables are 1, 2," in capsys.readouterr().err
