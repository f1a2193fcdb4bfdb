"""The shape every rendered table shares: rows of entries, each our statistic beside the paper's.

A table is built once as a `Grid` of numbers and rendered many ways (markdown, tidy CSV, LaTeX,
HTML) by `analysis.render`; numbers are formatted only there, so each format shows the same numbers.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

DASH = "–"
LISTED = 10  # missing runs named one by one in a footer; the rest are counted


@dataclass(frozen=True)
class Stat:
    """Our values of one quantity, one per finished run (seed) of a table cell."""

    values: tuple[float, ...] = ()

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds; None for fewer than two runs."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None


@dataclass(frozen=True)
class Comparison:
    """One numeric cell: our statistic, the paper's number, and how to print them."""

    ours: Stat = Stat()
    paper: float | None = None
    decimals: int = 2
    scientific: bool = False
    published: bool = False  # a number of another paper, never re-run (Table 4's literature rows)
    failed: int = 0  # runs of this cell that failed (and none finished)
    marks: str = ""  # footnote marks, e.g. "†" for a FLOPs target missed

    @property
    def diff(self) -> float | None:
        mean = self.ours.mean
        if mean is None or self.paper is None or self.scientific:
            return None
        return mean - self.paper

    def number(self, value: float | None) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return DASH
        return f"{value:.{self.decimals}e}" if self.scientific else f"{value:.{self.decimals}f}"

    def ours_text(self, pm: str = " ± ") -> str:
        if self.published:
            return ""
        if self.ours.mean is None:
            return "failed" if self.failed else DASH
        text = self.number(self.ours.mean)
        if self.ours.std is not None:
            text += f"{pm}{self.number(self.ours.std)} [n={self.ours.n}]"
        return text + self.marks

    def paper_text(self) -> str:
        return self.number(self.paper) if self.paper is not None else ""

    def diff_text(self) -> str:
        diff = self.diff
        if diff is None:
            return ""
        return f"{diff:+.{self.decimals}f}"

    def text(self, pm: str = " ± ") -> str:
        """`ours (paper, ours - paper)`; a published row shows the paper's number alone."""
        if self.published:
            return self.paper_text() or DASH
        ours = self.ours_text(pm)
        if self.paper is None:
            return ours
        diff = self.diff_text()
        return f"{ours} ({self.paper_text()}{', ' + diff if diff else ''})"


Cell = Comparison | str


@dataclass
class Group:
    """A header spanning `span` value columns, e.g. "ResNet-50 (Acc: ...)" over 15/35/55 %."""

    label: str
    span: int
    entry: Comparison | None = None  # the dense accuracy the paper prints in this header


@dataclass
class Row:
    labels: list[str]
    cells: list[Cell]


@dataclass
class Grid:
    """One table of the paper, filled with our runs' numbers."""

    number: int
    title: str
    profile: str
    label_columns: list[str]
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    expected_runs: int = 0
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    grid_file: str | None = None  # a grid of one's own (number 0): its YAML, for the commands the footer names

    @property
    def experiment(self) -> str:
        return self.grid_file or f"table{self.number}"

    @property
    def command(self) -> str:
        return f"python -m experiments run {self.experiment} --profile {self.profile}"

    @property
    def make_hint(self) -> str:
        return "" if self.grid_file else f"  (or: make table{self.number} PROFILE={self.profile})"

    def profile_line(self) -> str | None:
        """The label that keeps smoke numbers from passing for the paper's."""
        if self.profile == "paper":
            return None
        if self.profile == "smoke":
            return ("Profile: smoke (synthetic data, narrow networks, 2 epochs): these numbers test "
                    "the pipeline and are not comparable with the paper's.")
        if self.profile == "mini":
            return ("Profile: mini (real images, scikit-learn's digits at 16 px, narrow networks, short "
                    "schedules): the methods on real data at laptop scale, not comparable with the paper's numbers.")
        return f"Profile: {self.profile} (not the paper's recipe)."

    def footer(self) -> list[str]:
        lines = list(self.notes)
        found = self.expected_runs - len(self.missing)
        if self.missing:
            lines.append(f"Missing: {len(self.missing)} of {self.expected_runs} runs have no finished record "
                         f"(shown as {DASH}). Produce them with: {self.command}{self.make_hint}")
            lines.extend(f"  missing: {what}" for what in self.missing[:LISTED])
            if len(self.missing) > LISTED:
                lines.append(f"  and {len(self.missing) - LISTED} more: python -m experiments status "
                             f"{self.experiment} --profile {self.profile} lists every cell")
        else:
            lines.append(f"All {found} runs of this table have a record.")
        if self.failed:
            lines.append(f"Failed: {len(self.failed)} runs (shown as failed unless a replica finished):")
            lines.extend(f"  failed: {what}" for what in self.failed)
        return lines

    def entries(self) -> list[tuple[str, str, Comparison]]:
        """(row label, column label, entry) for every entry, headers' dense entries first."""
        out = [("dense", group.label, group.entry) for group in self.groups if group.entry is not None]
        for row in self.rows:
            label = " ".join(row.labels)
            for index, cell in enumerate(row.cells):
                if isinstance(cell, Comparison):
                    out.append((label, self.column_name(index), cell))
        return out

    def column_name(self, index: int) -> str:
        """A value column's full name, its group's label prefixed ("ResNet-50 15%")."""
        start = 0
        for group in self.groups:
            if start <= index < start + group.span:
                return f"{group.label} {self.columns[index]}"
            start += group.span
        return self.columns[index]
