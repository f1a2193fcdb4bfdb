"""The paper's own numbers (`results/paper/tableN.csv`): the reference column, never ours.

The CSVs are transcribed from the paper's text and checked against it by
`tests/analysis/test_paper_numbers.py`; see `results/paper/README.md` for their columns.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

PAPER_DIR = Path(__file__).resolve().parents[1] / "results" / "paper"


@lru_cache(maxsize=None)
def _rows(table: int) -> tuple[dict[str, str], ...]:
    with open(PAPER_DIR / f"table{table}.csv", newline="") as handle:
        return tuple(csv.DictReader(handle))


def rows(table: int) -> list[dict[str, str]]:
    """Table `table`'s rows as strings, in the paper's order."""
    return [dict(row) for row in _rows(table)]


def number(text: str | None) -> float | None:
    """A CSV cell as a float; empty (the paper's "-") is None."""
    return None if text is None or text == "" else float(text)


def lookup(table: int, value: str, **where: str) -> float | None:
    """`value` of the one row of `table` whose columns equal `where` (None if no such row)."""
    for row in _rows(table):
        if all(row.get(key) == expected for key, expected in where.items()):
            return number(row.get(value))
    return None
