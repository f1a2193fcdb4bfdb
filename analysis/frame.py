"""The run records as one pandas DataFrame: a row per (run, table cell it fills).

Why one frame: every table, the claims and a grid of one's own select the same runs by the same
facts (grid, profile, the cell's labels, seed, status, code version, set-up) and average the same
metrics; ShrinkBench's way, results as a function of the run folders, built once per `RunSet`
and then filtered and grouped with pandas, instead of each consumer looping over the runs again.

Columns (`COLUMNS`, then one per label and per metric):

- `experiment`, `cell_profile`, `labels`: the cell (`Run.cells()`): its grid, the profile it was
  expanded for (the run's when unsaid) and its labels as the dict the run carries (key order
  kept: a grid's axes are listed in it); `label.<key>` holds each label on its own;
- `profile`, `run_id`, `setting_id` (`Run.replica_key()`), `seed`, `method`, `model`,
  `flops_target`, `status`, `done`, `error`, `code_version`, `compute` (`Run.compute`): the run;
- `stale` (`core.version.staleness`, "" when current), `breaks` (`core.regime.breaks`, a tuple)
  and `achieved` (the FLOPs ratio its target constrained): what the footnote marks read, for
  finished runs only (a failed run's numbers are never shown);
- `metric.<name>`: each entry of the record's metrics, a float where it is a number (JSON records
  hold no NaN, `core.files.finite` writes null, so NaN here only ever means "no value");
- `position` (the run's index in `RunSet.runs`), `identity` (the position of the first run equal
  to it: a record listed twice fills its cell once) and `run`, the `Run`, for what needs the
  record itself (options, logs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.records import Run, RunSet
from core.regime import breaks  # standard library only, like core.version
from core.version import staleness  # standard library only

LABEL = "label."
METRIC = "metric."
COLUMNS = ("experiment", "cell_profile", "labels", "profile", "run_id", "setting_id", "seed", "method", "model",
           "flops_target", "status", "done", "error", "code_version", "compute", "stale", "breaks", "achieved",
           "position", "identity", "run")


def regime_breaks(run: Run) -> list[str]:
    """Why the run breaks the working-regime rule ([] when it keeps it; dense runs make no decision)."""
    return breaks(run.record)


def achieved_ratio(run: Run) -> float | None:
    """The FLOPs ratio the run's target constrained (`prune.flops_scope`)."""
    scope = run.option("prune.flops_scope", "network")
    return run.metric("flops_ratio_prunable" if scope == "prunable" else "flops_ratio")


@dataclass
class _Cache:
    """A RunSet's frame, the ids of the runs it was built from, and the grids' slices of it."""

    runs: tuple[int, ...]
    frame: pd.DataFrame
    grids: dict[str, pd.DataFrame] | None = None
    slices: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)


def _cache(runs: RunSet) -> _Cache:
    """Built on first use and kept on the RunSet (`RunSet.frame_cache`) until its list of runs changes."""
    ids = tuple(map(id, runs.runs))
    if not isinstance(runs.frame_cache, _Cache) or runs.frame_cache.runs != ids:
        runs.frame_cache = _Cache(ids, _build(runs.runs))
    return runs.frame_cache


def frame(runs: RunSet) -> pd.DataFrame:
    """The RunSet's frame (not to be changed in place: every table and claim shares it)."""
    return _cache(runs).frame


def cells_of(runs: RunSet, experiment: str, profile: str) -> pd.DataFrame:
    """The rows of every cell of `experiment`'s grid (expanded for `profile`) a run of `profile`
    fills, less the label and metric columns none of them has; kept, as the frame is, for every
    table and claim that reads the grid."""
    cache = _cache(runs)
    if (experiment, profile) not in cache.slices:
        if cache.grids is None:
            cache.grids = dict(iter(cache.frame.groupby("experiment", sort=False)))
        rows = cache.grids.get(experiment, cache.frame.iloc[0:0])
        rows = rows[(rows["profile"] == profile) & (rows["cell_profile"] == profile)]
        cache.slices[experiment, profile] = rows.drop(columns=[
            column for column in rows if column.startswith((LABEL, METRIC)) and rows[column].isna().all()])
    return cache.slices[experiment, profile]


def finished(rows: pd.DataFrame, done: bool = True) -> pd.DataFrame:
    """The rows of finished runs (of the others with `done=False`), whatever dtype a concat left."""
    return rows.loc[rows["done"].astype(bool) == done]


def label(rows: pd.DataFrame, key: str) -> pd.Series:
    """The label `key` of each row (missing where its cell has no such label)."""
    column = LABEL + key
    return rows[column] if column in rows else pd.Series(None, index=rows.index, dtype=object)


def metric(rows: pd.DataFrame, name: str) -> pd.Series:
    """The metric `name` of each row (NaN where the run has none)."""
    column = METRIC + name
    return rows[column] if column in rows else pd.Series(float("nan"), index=rows.index)


def option(rows: pd.DataFrame, dotted: str) -> pd.Series:
    """A config value of each row's run by its dotted key (`Run.option`: None where it has none)."""
    return rows["run"].map(lambda run: run.option(dotted)).astype(object)


def runs_of(rows: pd.DataFrame, by: str | None = None) -> list[Run]:
    """The rows' runs, each once, in the order first seen: by run id (the last of the records
    sharing one), a run without an id by itself; `by` names another column to tell them apart."""
    who = rows["run_id"].where(rows["run_id"] != "", rows["run"].map(id)) if by is None else rows[by]
    return rows["run"].groupby(who.astype(object), sort=False).last().tolist()


def profile_counts(runs: RunSet, experiment: str) -> dict[str, int]:
    """How many runs of each profile fill a cell of `experiment`'s grid (of any profile)."""
    rows = frame(runs)
    return rows.loc[rows["experiment"] == experiment].drop_duplicates("position")["profile"].value_counts().to_dict()


def _number(value: Any) -> Any:
    """A metric as `Run.metric` reads it (a float) where it is a number; anything else as it is."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _identities(runs: list[Run]) -> list[int]:
    """For each run, the position of the first run equal to it (its own when none is)."""
    seen: dict[tuple[str, str], list[int]] = {}
    out = []
    for position, run in enumerate(runs):
        bucket = seen.setdefault((run.run_id, str(run.path)), [])
        first = next((other for other in bucket if runs[other] == run), position)
        if first == position:
            bucket.append(position)
        out.append(first)
    return out


def _build(runs: list[Run]) -> pd.DataFrame:
    """One dict per (run, cell), then one DataFrame: the only loop over the runs."""
    rows = []
    for position, (run, identity) in enumerate(zip(runs, _identities(runs))):
        cells = run.cells()
        if not cells:
            continue
        facts = {"profile": run.profile, "run_id": run.run_id, "setting_id": run.replica_key(), "seed": run.seed,
                 "method": run.method, "model": run.model, "flops_target": run.flops_target, "status": run.status,
                 "done": run.done, "error": run.error, "code_version": (run.record.get("code") or {}).get("version"),
                 "compute": run.compute, "stale": staleness(run.record) if run.done else None,
                 "breaks": tuple(regime_breaks(run)) if run.done else None,
                 "achieved": achieved_ratio(run) if run.done else None, "position": position, "identity": identity,
                 "run": run, **{METRIC + name: _number(value) for name, value in run.metrics.items()}}
        for cell in cells:
            labels = dict(cell.get("labels") or {})
            rows.append({"experiment": cell.get("experiment"), "cell_profile": cell.get("profile", run.profile),
                         "labels": labels, **facts, **{LABEL + key: value for key, value in labels.items()}})
    built = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(COLUMNS))
    return built.astype({"done": bool, "position": int, "identity": int})
