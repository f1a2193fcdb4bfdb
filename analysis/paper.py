"""The paper's own numbers (`results/paper/tableN.csv`): the reference column, never ours.

The CSVs are transcribed from the paper's text and checked against it by
`tests/analysis/test_paper_numbers.py`; see `results/paper/README.md` for their columns. Each is
read once into a DataFrame of text (a number is parsed where it is shown, so "0.15" keys a cell
as the paper writes it), and a table joins it onto its own layout (`join`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

PAPER_DIR = Path(__file__).resolve().parents[1] / "results" / "paper"


@lru_cache(maxsize=None)
def frame(table: int) -> pd.DataFrame:
    """Table `table`'s rows, every cell as text ("" where the paper prints "-"), in the paper's order."""
    return pd.read_csv(PAPER_DIR / f"table{table}.csv", dtype=str, keep_default_na=False)


def rows(table: int) -> list[dict[str, str]]:
    """Table `table`'s rows as strings, in the paper's order."""
    return frame(table).to_dict("records")


def number(text: str | float | None) -> float | None:
    """A CSV cell as a float; empty (the paper's "-") or absent (no such row: NaN) is None."""
    return None if text is None or text == "" or pd.isna(text) else float(text)


def join(cells: pd.DataFrame, table: int, value: str) -> list[float | None]:
    """The paper's `value` for each row of `cells`, matched on all its columns (text, as the CSV
    writes them; the first row where several match), None where the paper has no such row."""
    on = list(cells.columns)
    reference = frame(table).drop_duplicates(on)[[*on, value]]
    return [number(v) for v in cells.merge(reference, how="left", on=on)[value]]


def lookup(table: int, value: str, **where: str) -> float | None:
    """`value` of the first row of `table` whose columns equal `where` (None if no such row)."""
    if value not in frame(table) or not set(where) <= set(frame(table)):
        return None
    return join(pd.DataFrame([where]), table, value)[0]
