"""Table cells and the runs that fill them: the builder every table of `analysis.tables` shares.

A table keys the rows of the run frame (`analysis.frame`) of its grid by cell (`Builder`: a key
function of those rows, then one pandas groupby); the rows of one key are the seeds of one cell
(a `seed` label never splits a cell, except in Table 9, whose columns are seeds) and are
averaged. Each cell carries the marks its runs earn: † a FLOPs target missed, § another code
version, ‡ another set-up than most of the table's, ¶ the working-regime rule broken
(`core.regime`); the footer's explanations are the same filters over every cell's rows at once.
`Finder` hands the claims the runs of a cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from string import Formatter
from typing import Callable, Hashable

import pandas as pd

from analysis.frame import cells_of, finished, label, metric, runs_of
from analysis.grid import Comparison, Grid, Group, Row, Stat
from analysis.records import Run, RunSet

FLOPS_TOLERANCE = 0.02  # a cell is marked † when a run's achieved FLOPs ratio misses its target by more
SEED_LABEL = "seed"  # a cell's replicas over seeds: one table cell (Table 9's seeds are its columns)
REGIME_MARK = "¶"  # a run that breaks the working-regime rule (core.regime)
REGIME_RULE = ("the working-regime rule (core/regime.py: a pruning decision on a train loss above half of "
               "chance's, too short a tail after the last decision or a final train loss above that bound, "
               "OTOv2's deadline fallback zeroing, or no decision record)")

Key = Callable[[pd.DataFrame], pd.Series]  # a grid's rows -> each row's cell key (missing: in no cell of the table)
Value = str | Callable[[pd.DataFrame], pd.Series]  # a metric's name, or finished rows -> one number each


def tuples(rows: pd.DataFrame, *parts: pd.Series | str) -> pd.Series:
    """Cell keys as tuples, one per row, of columns and constants (a NaN part reads as None)."""
    columns = [part.tolist() if isinstance(part, pd.Series) else [part] * len(rows) for part in parts]
    keys = [tuple(None if isinstance(v, float) and v != v else v for v in key) for key in zip(*columns)]
    return pd.Series(keys, index=rows.index, dtype=object)


# Which finished rows earn each footnote mark; one mask each, read per cell and for the footer.

def misses(done: pd.DataFrame, target: float | pd.Series) -> pd.Series:
    """† rows: the achieved FLOPs ratio more than the tolerance from the cell's target (NaN: none)."""
    return (done["achieved"] - target).abs() > FLOPS_TOLERANCE


def is_stale(done: pd.DataFrame) -> pd.Series:
    """§ rows: numbers from another code version than this checkout's (`core.version`)."""
    return done["stale"].fillna("") != ""


def breaks_regime(done: pd.DataFrame) -> pd.Series:
    """¶ rows: runs that break the working-regime rule (`core.regime.breaks`)."""
    return done["breaks"].map(lambda why: isinstance(why, tuple) and bool(why)).astype(bool)


@dataclass
class Slot:
    """One expected cell of a table (all its seeds): its finished and failed rows of the frame,
    and which footnote marks its finished ones earn."""

    description: str
    done: pd.DataFrame
    failed: pd.DataFrame
    target: float | None = None
    marks: dict[str, bool] = field(default_factory=dict)

    def stat(self, value: Value) -> Stat:
        """The seeds' values of a metric (or of a function of the finished rows), those it has."""
        if self.done.empty:
            return Stat()
        values = metric(self.done, value) if isinstance(value, str) else value(self.done)
        return Stat(tuple(float(v) for v in values.dropna()))


class Builder:
    """Keys one table's rows by cell once, then hands out cells and the footer's facts."""

    def __init__(self, number: int, runs: RunSet, profile: str, key: Key, experiment: str | None = None) -> None:
        self.number, self.profile = number, profile
        self.experiment = experiment or f"table{number}"
        rows = cells_of(runs, self.experiment, profile)
        rows = rows.assign(key=key(rows).astype(object))
        rows = rows[rows["key"].notna()].drop_duplicates(["key", "identity"])  # a run once per cell
        self.index: dict[Hashable, pd.DataFrame] = dict(iter(rows.groupby("key", sort=False)))  # every run of a cell
        done = finished(rows)
        # The compute set-up most of the table's finished runs share (`Run.compute`); a cell with
        # a run made elsewhere is marked, since across set-ups a short CPU run differs by more
        # than its seeds do. Ties go to the first set-up in sorted order, so the marks are stable.
        setups = done.drop_duplicates("position")["compute"].value_counts().sort_index()
        self.usual: str | None = setups.idxmax() if len(setups) > 1 else None
        self.usual_count = int(setups[self.usual]) if self.usual else 0
        done = done.assign(**{"§": is_stale(done), "‡": self.moved(done), REGIME_MARK: breaks_regime(done)})
        self.done: dict[Hashable, pd.DataFrame] = dict(iter(done.groupby("key", sort=False)))
        self.failed: dict[Hashable, pd.DataFrame] = dict(iter(finished(rows, done=False).groupby("key", sort=False)))
        self.empty = done.iloc[0:0]
        self.slots: dict[Hashable, Slot] = {}
        # records that do not parse, of this grid's runs (by their folder or their cells.jsonl)
        self.unreadable = [(folder, why) for folder, why in runs.unreadable
                           if folder.parent.name == self.experiment
                           or any(c.get("experiment") == self.experiment for c in Run({}, folder).cells())]

    def moved(self, done: pd.DataFrame) -> pd.Series:
        """‡ rows: finished runs made on another set-up than most of the table's."""
        return done["compute"] != self.usual if self.usual is not None else pd.Series(False, index=done.index)

    def slot(self, key: Hashable, description: str, target: float | None = None) -> Slot:
        if key not in self.slots:
            done, failed = self.done.get(key, self.empty), self.failed.get(key, self.empty)
            marks = {"†": target is not None and bool(misses(done, target).any()),
                     **{mark: bool(done[mark].any()) for mark in ("§", "‡", REGIME_MARK)}}
            self.slots[key] = Slot(description, done, failed, target, marks)
        return self.slots[key]

    def entry(self, slot: Slot, value: Value, paper_value: float | None, decimals: int = 2, scientific: bool = False,
              flops_mark: bool = False) -> Comparison:
        marks = "".join(mark for mark, found in slot.marks.items() if found and (flops_mark or mark != "†"))
        failed = len(slot.failed) if slot.done.empty else 0
        return Comparison(slot.stat(value), paper_value, decimals, scientific, failed=failed, marks=marks)

    def _stack(self, rows: dict[int, pd.DataFrame]) -> pd.DataFrame:
        """The rows of several cells (by their number in `slots`) as one frame, each row with its
        cell's number (`slot`), `description` and target (`cell_target`, NaN for none)."""
        slots = list(self.slots.values())
        stacked = pd.concat([found.assign(slot=n) for n, found in rows.items()]) if rows else self.empty.assign(slot=0)
        return stacked.assign(description=stacked["slot"].map(lambda n: slots[n].description),
                              cell_target=stacked["slot"].map(lambda n: slots[n].target).astype(float))

    def grid(self, title: str, label_columns: list[str], columns: list[str], rows: list[Row],
             groups: list[Group] | None = None, notes: list[str] | None = None) -> Grid:
        grid = Grid(self.number, title, self.profile, label_columns, columns, rows, groups or [], list(notes or []))
        slots = list(self.slots.values())
        grid.expected_runs = len(slots)
        grid.missing = [slot.description for slot in slots if slot.done.empty and slot.failed.empty]
        done = self._stack({n: slot.done for n, slot in enumerate(slots) if not slot.done.empty})
        failed = self._stack({n: slot.failed for n, slot in enumerate(slots) if slot.done.empty and not slot.failed.empty})
        grid.failed = _lines(failed.assign(why=failed["error"].map(_reason)), "{description} (seed {seed}): {why}")
        off = _lines(done[misses(done, done["cell_target"])], "{description} seed {seed}: {achieved:.3f}")
        old = done[done["§"]]
        stale = _lines(old.assign(why=old["stale"].map(lambda why: why.removeprefix("stale: "))),
                       "{description} seed {seed} ({why})")
        moved = _lines(done[done["‡"]], "{description} seed {seed} ({compute})")
        broken = done[done[REGIME_MARK]]
        regime = _lines(broken.assign(why=broken["breaks"].map("; ".join)), "{description} seed {seed} ({why})")
        cells = done.groupby("slot", sort=False)
        versions = [slots[n].description for n, count in cells["code_version"].nunique(dropna=False).items() if count > 1]
        mixed = [f"{slots[n].description}: runs {', '.join(cell['run_id'])}" for n, cell in cells
                 if cell["setting_id"].nunique() > 1]
        if off:
            grid.notes.append(f"†: achieved FLOPs ratio more than {FLOPS_TOLERANCE:.2f} from the target: " + "; ".join(off))
        if stale:
            grid.notes.append(f"§: runs from another code version than this checkout's (`python -m experiments run "
                              f"{self.experiment} --rerun stale` reruns them): " + "; ".join(stale))
        if moved:
            grid.notes.append(f"‡: runs made on another set-up than most of this table's ({self.usual}: "
                              f"{self.usual_count} runs); a short CPU run's top-1 can move by more than its seed "
                              "spread with the torch version, threads or kernels (analysis/README.md, \"The paper's claims\"): "
                              + "; ".join(moved))
        if regime:
            grid.notes.append(f"{REGIME_MARK}: runs that break {REGIME_RULE}: " + "; ".join(regime))
        if self.unreadable:
            grid.notes.append("Unreadable records (their cells count as missing; `python -m experiments run "
                              f"{self.experiment} --rerun failed` runs them afresh): "
                              + "; ".join(f"{folder} ({why[:120]})" for folder, why in self.unreadable))
        if versions:
            grid.notes.append("Cells averaging runs of different code versions: " + "; ".join(versions))
        if mixed:
            grid.notes.append("Averaged runs whose configs differ beyond the seed (check the overrides): " + "; ".join(mixed))
        if any(e.ours.n > 1 for _, _, e in grid.entries()):
            grid.notes.append("a ± b [n=k]: mean and sample standard deviation over k seeds.")
        return grid


def _reason(error: str) -> str:
    """A failed run's error as the footer names it: its first line, cut short."""
    return (error.splitlines()[0] if error else "no reason recorded")[:160]


def _lines(rows: pd.DataFrame, template: str) -> list[str]:
    """One footer item per row, `template` filled from its columns."""
    names = [name for _, name, _, _ in Formatter().parse(template) if name]
    return [template.format_map(dict(zip(names, values))) for values in zip(*(rows[name] for name in names))]


class Finder:
    """The finished runs of one profile by experiment and labels (labels compared as text): what
    `analysis.claims` compares, every seed of a cell unless a `seed` label is asked for."""

    def __init__(self, runs: RunSet, profile: str) -> None:
        self.runs, self.profile = runs, profile
        self._cache: dict[str, pd.DataFrame] = {}

    def rows(self, experiment: str) -> pd.DataFrame:
        """The frame rows of every finished run filling a cell of `experiment`'s grid."""
        if experiment not in self._cache:
            found = cells_of(self.runs, experiment, self.profile)
            self._cache[experiment] = finished(found)
        return self._cache[experiment]

    def find(self, experiment: str, **labels: object) -> list[Run]:
        """Every run whose cell labels match (`prune__flops_target=0.15` for the label
        `prune.flops_target`): without a `seed`, all the seeds of the cell, each run once."""
        rows = self.rows(experiment)
        for key, wanted in labels.items():
            rows = rows[matches(label(rows, key.replace("__", ".")), wanted)]
        return runs_of(rows)


def matches(labels: pd.Series, wanted: object) -> pd.Series:
    """Which labels equal `wanted`: switches as True/False in any case, numbers within 1e-9, else as text."""
    if isinstance(wanted, bool):  # grids label switches True/False
        return labels.map(lambda text: isinstance(text, str) and text.strip().lower() == str(wanted).lower()).astype(bool)
    if isinstance(wanted, float):
        return labels.map(_float).sub(wanted).abs() < 1e-9
    return labels == str(wanted)


def _float(text: object) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
