"""Table cells and the runs that fill them: the builder every table of `analysis.tables` shares.

A table indexes its runs by a cell key it reads from their labels (`Builder`); the runs of one key
are the seeds of one cell (a `seed` label never splits a cell, except in Table 9, whose columns are
seeds) and are averaged. Each cell carries the marks its runs earn: † a FLOPs target missed, § another
code version, ‡ another set-up than most of the table's, ¶ the working-regime rule broken
(`core.regime`), each explained in the footer. `Finder` hands the claims the runs of a cell.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Hashable

from analysis.grid import Comparison, Grid, Group, Row, Stat
from analysis.records import Run, RunSet
from core.regime import breaks  # standard library only, like core.version
from core.version import staleness  # standard library only

FLOPS_TOLERANCE = 0.02  # a cell is marked † when a run's achieved FLOPs ratio misses its target by more
SEED_LABEL = "seed"  # a cell's replicas over seeds: one table cell (Table 9's seeds are its columns)
REGIME_MARK = "¶"  # a run that breaks the working-regime rule (core.regime)
REGIME_RULE = ("the working-regime rule (core/regime.py: a pruning decision on a train loss above half of "
               "chance's, too short a tail after the last decision or a final train loss above that bound, "
               "OTOv2's deadline fallback zeroing, or no decision record)")


def regime_breaks(run: Run) -> list[str]:
    """Why the run breaks the working-regime rule ([] when it keeps it; dense runs make no decision)."""
    return breaks(run.record)


def achieved_ratio(run: Run) -> float | None:
    """The FLOPs ratio the run's target constrained (`prune.flops_scope`)."""
    scope = run.option("prune.flops_scope", "network")
    return run.metric("flops_ratio_prunable" if scope == "prunable" else "flops_ratio")


@dataclass
class Slot:
    """One expected run of a table (all its seeds), as found among the records."""

    description: str
    done: list[Run] = field(default_factory=list)
    failed: list[Run] = field(default_factory=list)
    target: float | None = None

    def stat(self, value: str | Callable[[Run], float | None]) -> Stat:
        get = value if callable(value) else (lambda run: run.metric(value))
        return Stat(tuple(v for run in self.done if (v := get(run)) is not None))

    def stale(self) -> list[Run]:
        """Runs whose numbers come from another code version than this checkout's (`core.version`)."""
        return [run for run in self.done if staleness(run.record)]

    def mixed_versions(self) -> bool:
        """Seeds of one cell computed by different code versions."""
        return len({(run.record.get("code") or {}).get("version") for run in self.done}) > 1

    def out_of_regime(self) -> list[Run]:
        """Runs that break the working-regime rule (`core.regime.breaks`)."""
        return [run for run in self.done if regime_breaks(run)]

    def off_target(self) -> list[Run]:
        if self.target is None:
            return []
        return [run for run in self.done
                if (ratio := achieved_ratio(run)) is not None and abs(ratio - self.target) > FLOPS_TOLERANCE]


Key = Callable[[Run, dict[str, str]], Hashable | None]


def labelled(runs: RunSet, experiment: str, profile: str) -> list[tuple[Run, dict[str, str]]]:
    """(run, labels) for every cell of `experiment`'s grid that a run of `profile` fills."""
    return [(run, labels) for run in runs.runs if run.profile == profile for labels in run.labels_in(experiment)]


class Builder:
    """Indexes one table's runs by cell key once, then hands out cells and the footer's facts."""

    def __init__(self, number: int, runs: RunSet, profile: str, key: Key, experiment: str | None = None) -> None:
        self.number, self.profile = number, profile
        self.experiment = experiment or f"table{number}"
        self.index: dict[Hashable, list[Run]] = defaultdict(list)
        for run, labels in labelled(runs, self.experiment, profile):
            cell = key(run, labels)
            if cell is not None and run not in self.index[cell]:
                self.index[cell].append(run)
        self.slots: dict[Hashable, Slot] = {}
        # The compute set-up most of the table's finished runs share (`Run.compute`); a cell with
        # a run made elsewhere is marked, since across set-ups a short CPU run differs by more
        # than its seeds do. Ties go to the first set-up in sorted order, so the marks are stable.
        setups = Counter(run.compute for run in {id(r): r for found in self.index.values() for r in found}.values()
                         if run.done)
        self.usual = max(sorted(setups), key=setups.__getitem__) if len(setups) > 1 else None
        self.usual_count = setups[self.usual] if self.usual else 0
        # records that do not parse, of this grid's runs (by their folder or their cells.jsonl)
        self.unreadable = [(folder, why) for folder, why in runs.unreadable
                           if folder.parent.name == self.experiment
                           or any(c.get("experiment") == self.experiment for c in Run({}, folder).cells())]

    def elsewhere(self, slot: Slot) -> list[Run]:
        """The slot's finished runs made on another set-up than most of the table's."""
        return [run for run in slot.done if self.usual is not None and run.compute != self.usual]

    def slot(self, key: Hashable, description: str, target: float | None = None) -> Slot:
        if key not in self.slots:
            found = self.index.get(key, [])
            self.slots[key] = Slot(description, [r for r in found if r.done], [r for r in found if not r.done], target)
        return self.slots[key]

    def entry(self, slot: Slot, value: str | Callable[[Run], float | None], paper_value: float | None,
              decimals: int = 2, scientific: bool = False, flops_mark: bool = False) -> Comparison:
        marks = "†" if flops_mark and slot.off_target() else ""
        marks += "§" if slot.stale() else ""
        marks += "‡" if self.elsewhere(slot) else ""
        marks += REGIME_MARK if slot.out_of_regime() else ""
        return Comparison(slot.stat(value), paper_value, decimals, scientific, failed=len(slot.failed) if not slot.done else 0,
                     marks=marks)

    def grid(self, title: str, label_columns: list[str], columns: list[str], rows: list[Row],
             groups: list[Group] | None = None, notes: list[str] | None = None) -> Grid:
        grid = Grid(self.number, title, self.profile, label_columns, columns, rows, groups or [], list(notes or []))
        grid.expected_runs = len(self.slots)
        off, mixed, stale, versions, moved, regime = [], [], [], [], [], []
        for slot in self.slots.values():
            regime += [f"{slot.description} seed {run.seed} ({'; '.join(regime_breaks(run))})"
                       for run in slot.out_of_regime()]
            moved += [f"{slot.description} seed {run.seed} ({run.compute})" for run in self.elsewhere(slot)]
            stale += [f"{slot.description} seed {run.seed} ({staleness(run.record).removeprefix('stale: ')})"
                      for run in slot.stale()]
            if slot.mixed_versions():
                versions.append(slot.description)
            if not slot.done and not slot.failed:
                grid.missing.append(slot.description)
            for run in ([] if slot.done else slot.failed):
                reason = run.error.splitlines()[0] if run.error else "no reason recorded"
                grid.failed.append(f"{slot.description} (seed {run.seed}): {reason[:160]}")
            for run in slot.off_target():
                off.append(f"{slot.description} seed {run.seed}: {achieved_ratio(run):.3f}")
            if len({run.replica_key() for run in slot.done}) > 1:
                mixed.append(f"{slot.description}: runs {', '.join(r.run_id for r in slot.done)}")
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


class Finder:
    """The finished runs of one profile by experiment and labels (labels compared as text): what
    `analysis.claims` compares, every seed of a cell unless a `seed` label is asked for."""

    def __init__(self, runs: RunSet, profile: str) -> None:
        self.runs, self.profile = runs, profile
        self._cache: dict[str, list[tuple[Run, dict[str, str]]]] = {}

    def labelled(self, experiment: str) -> list[tuple[Run, dict[str, str]]]:
        """(run, labels) of every finished run filling a cell of `experiment`'s grid."""
        if experiment not in self._cache:
            self._cache[experiment] = [(r, lb) for r, lb in labelled(self.runs, experiment, self.profile) if r.done]
        return self._cache[experiment]

    def find(self, experiment: str, **labels: object) -> list[Run]:
        """Every run whose cell labels match (`prune__flops_target=0.15` for the label
        `prune.flops_target`): without a `seed`, all the seeds of the cell, each run once."""
        wanted = {key.replace("__", "."): value for key, value in labels.items()}
        found = [run for run, lb in self.labelled(experiment) if all(_same(lb.get(k), v) for k, v in wanted.items())]
        return list({run.run_id or id(run): run for run in found}.values())


def _same(label: str | None, wanted: object) -> bool:
    if label is None:
        return False
    if isinstance(wanted, bool):  # grids label switches True/False
        return label.strip().lower() == str(wanted).lower()
    if isinstance(wanted, float):
        try:
            return abs(float(label) - wanted) < 1e-9
        except ValueError:
            return False
    return label == str(wanted)
