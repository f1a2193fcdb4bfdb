"""The time left for a queue of runs trained one after another (`make claims`, `make demo`).

A run's cost is taken to be proportional to its epochs; the seconds per epoch are learned from
the runs already finished in this queue, per (model, method) where one such run has finished,
else per method, else over all runs. Pruning methods differ more than models of one profile do
(S2HPruner trains two networks per step), which is why the method comes first in the fallback.
Nothing is guessed before the first run ends: the estimate is then `None`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def _keys(cell: Any) -> tuple[tuple[str, str], str]:
    cfg = cell.cfg
    return (cfg.model.name, cfg.prune.method), cfg.prune.method


class Eta:
    """Seconds per epoch of the finished runs, and the time the remaining ones should take."""

    def __init__(self) -> None:
        self._pair: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
        self._method: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self._all = [0.0, 0.0]

    def finished(self, cell: Any, seconds: float) -> None:
        """Record that `cell`'s run took `seconds` (its epochs from its config)."""
        pair, method = _keys(cell)
        epochs = float(max(1, cell.cfg.train.epochs))
        for total in (self._pair[pair], self._method[method], self._all):
            total[0] += seconds
            total[1] += epochs

    def _rate(self, cell: Any) -> float:
        pair, method = _keys(cell)
        for totals, key in ((self._pair, pair), (self._method, method)):
            if key in totals and totals[key][1]:
                return totals[key][0] / totals[key][1]
        return self._all[0] / self._all[1]

    def left(self, cells: list[Any]) -> float | None:
        """Estimated seconds for `cells`; None before any run has finished."""
        if not self._all[1]:
            return None
        return sum(self._rate(cell) * max(1, cell.cfg.train.epochs) for cell in cells)


def describe(seconds: float | None, runs: int) -> str:
    """`; 12 runs left, ~9 min` (or nothing when no estimate or no run is left)."""
    if not runs:
        return ""
    if seconds is None:
        return f"; {runs} runs left"
    amount = f"~{seconds / 60:.0f} min" if seconds >= 90 else f"~{seconds:.0f} s"
    return f"; {runs} run{'s' if runs > 1 else ''} left, {amount}"
