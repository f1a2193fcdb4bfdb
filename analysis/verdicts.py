"""Verdicts of the paper's claims from the runs of each compared cell: pure statistics.

A claim compares cells (a method at a target, an ablation row, a seed of Table 9), each holding
the finished runs of its seeds, and gets one of four verdicts: `reproduced`, `contradicted` (the
opposite holds beyond the noise), `inconclusive` (the difference is inside the noise, or a
compared cell has fewer than `MIN_SEEDS` runs) or `not run` (a compared cell has no finished
run). The rule, as `make claims` prints it under its table (`RULE`, read from this paragraph):

    Not run when a compared cell has no finished run. Two cells: Welch's t-test (unequal
    variances, two-sided, 95 %: p < 0.05) on their runs; reproduced when significant in the
    claimed direction, contradicted when significant in the opposite one, inconclusive
    otherwise, and inconclusive ("n < 3") when a compared cell has fewer than 3 runs. When
    neither cell varies (every run of each equal), the difference of the means decides: any
    nonzero difference counts as significant (p = 0), none as p = 1. "Collapses" (below halfway
    between chance and Ours) is the same test of the cell's runs against (chance + v) / 2 for
    each Ours run v. A conjunction (an ordering's adjacent pairs, "below Ours and no collapse",
    beating each of several cells) is contradicted when any part is, otherwise not run when any
    part is, reproduced when every part is, and inconclusive otherwise. Per-run facts have no
    noise to test: FLOPs on target is contradicted by any run off it and reproduced when every
    run is on it with at least 3 runs per cell; Figure 3's trajectory is reproduced when every
    run (at least 3) shows it, contradicted when more than half do not. Table 9's spread: the 95
    % chi-square confidence interval of the seeds' sample standard deviation against the std the
    paper's span implies (span / 2.059, d2 for four seeds): reproduced when the interval lies
    below it, contradicted when above, inconclusive when it contains it.

Why each part:

- Welch's test does not assume the two cells share a variance (an S2HPruner cell of short
  runs spreads over tens of points where a baseline's moves by tenths). When neither cell
  varies, `scipy.stats.ttest_ind` has no spread to divide by (nan for equal means, an infinite t
  and a precision warning otherwise): the means then differ exactly or not at all, and the rule
  says which without calling it.
- "Collapses" is a claim about each cell against a line that is itself noisy (it moves with
  Ours' top-1): testing the cell against Ours' runs mapped onto the line keeps Ours' noise in
  the test (chance is a constant: the line's spread is half of Ours').
- Per-run facts: a run that misses its FLOPs target by more than the tolerance is a fact about
  that run and the method's budget control, whatever the seed, so one contradicts. Figure 3's
  trajectory also asks that top-1 rise after the target is reached, which one short run can
  miss by noise: it takes most runs to contradict it, and 3 to decide it either way.
- Table 9: the paper says its four seeds lie within 1 point of top-1 and 2 points of FLOPs of
  each other, i.e. their range. The expected range of four normal draws is d2 = 2.059 times
  their standard deviation (the range constant of quality control), so the claim implies a
  seed standard deviation of at most span / 2.059: 0.486 points of top-1 and 0.971 points of
  FLOPs. The interval for sigma from s over n runs is s * sqrt((n - 1) / chi2(0.975, n - 1)) to
  s * sqrt((n - 1) / chi2(0.025, n - 1)): with four seeds, 0.566 s to 3.73 s.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

from scipy import stats

REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_RUN = "reproduced", "contradicted", "inconclusive", "not run"
VERDICTS = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_RUN)
MIN_SEEDS = 3
ALPHA = 0.05  # two-sided: 95 %
D2_FOUR = 2.059  # expected range of four standard normal draws
TOO_FEW = f"n < {MIN_SEEDS}"


def _rule(doc: str | None) -> str:
    """The indented paragraph of the docstring above, as one line."""
    lines = (doc or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("    ")), len(lines))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return " ".join(" ".join(lines[start:end]).split())


RULE = _rule(__doc__)


@dataclass(frozen=True)
class Outcome:
    """One decided comparison: its verdict, the p-value when a test was made, and why not when not."""

    verdict: str
    p: float | None = None
    why: str = ""

    def text(self) -> str:
        """`p=0.012`, `p=0 (zero variance)`, `n < 3`, or '' when nothing was tested."""
        if self.p is None:
            return self.why
        return f"p={self.p:.2g}" + (f" ({self.why})" if self.why else "")


def _sign(diff: float, p: float, claimed: str) -> str:
    if not p < ALPHA or diff == 0:
        return INCONCLUSIVE
    return REPRODUCED if (diff > 0) == (claimed == "greater") else CONTRADICTED


def compare(a: Sequence[float], b: Sequence[float], claimed: str = "greater") -> Outcome:
    """Whether the mean of `a` is `claimed` ("greater" or "less") than the mean of `b`, by
    Welch's t-test at 95 % two-sided (the rule above)."""
    if claimed not in ("greater", "less"):
        raise ValueError(f"claimed must be 'greater' or 'less', not {claimed!r}")
    if not a or not b:
        return Outcome(NOT_RUN, why="no run")
    if len(a) < MIN_SEEDS or len(b) < MIN_SEEDS:
        return Outcome(INCONCLUSIVE, why=TOO_FEW)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if max(a) == min(a) and max(b) == min(b):  # scipy gives nan: the means decide
        p = 0.0 if diff != 0 else 1.0
        return Outcome(_sign(diff, p, claimed), p, "zero variance")
    with warnings.catch_warnings():
        if max(a) == min(a) or max(b) == min(b):  # one flat cell: Welch is well defined, scipy warns anyway
            warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(list(a), list(b), equal_var=False).pvalue)
    if math.isnan(p):
        return Outcome(INCONCLUSIVE, why="no test possible")
    return Outcome(_sign(diff, p, claimed), p)


def halfway(chance: float, ours: Iterable[float]) -> list[float]:
    """The collapse line of each Ours run: halfway between chance and its top-1."""
    return [(chance + v) / 2 for v in ours]


def collapses(cell: Sequence[float], ours: Sequence[float], chance: float) -> Outcome:
    """The cell's runs below halfway between chance and Ours."""
    return compare(cell, halfway(chance, ours), "less")


def all_of(tests: Iterable[Outcome]) -> Outcome:
    """A conjunction: contradicted when any part is, not run when any is, reproduced when every
    part is, inconclusive otherwise. Its p is the largest of its parts' (None if none tested)."""
    tests = list(tests)
    verdicts = {t.verdict for t in tests}
    ps = [t.p for t in tests if t.p is not None]
    p = max(ps) if ps else None
    if CONTRADICTED in verdicts:
        return Outcome(CONTRADICTED, p)
    if NOT_RUN in verdicts or not tests:
        return Outcome(NOT_RUN, why="no run")
    if verdicts == {REPRODUCED}:
        return Outcome(REPRODUCED, p)
    return Outcome(INCONCLUSIVE, p, TOO_FEW if any(t.why == TOO_FEW for t in tests) else "")


def ordered(cells: Sequence[Sequence[float]], ascending: bool = True) -> tuple[Outcome, list[Outcome]]:
    """cells[0] < cells[1] < ... (or > when not ascending): each adjacent pair tested, then
    combined by `all_of`. Returns the verdict and the pairs' tests."""
    pairs = [compare(cells[i], cells[i + 1], "less" if ascending else "greater") for i in range(len(cells) - 1)]
    return all_of(pairs), pairs


def per_run(cells: Sequence[Sequence[bool]], contradicted_by: str = "any") -> Outcome:
    """A fact checked on each run of each cell (True: the run shows it). `contradicted_by`
    "any": one failing run contradicts (any n); reproduced when every run holds and every cell
    has at least MIN_SEEDS runs. "most": contradicted when more than half of all runs fail and
    reproduced when none does, either with at least MIN_SEEDS runs per cell."""
    if contradicted_by not in ("any", "most"):
        raise ValueError(f"contradicted_by must be 'any' or 'most', not {contradicted_by!r}")
    runs = [held for cell in cells for held in cell]
    failed = runs.count(False)
    if contradicted_by == "any" and failed:
        return Outcome(CONTRADICTED, why=f"{failed} of {len(runs)} runs fail")
    if not cells or any(not cell for cell in cells):
        return Outcome(NOT_RUN, why="no run")
    if any(len(cell) < MIN_SEEDS for cell in cells):
        return Outcome(INCONCLUSIVE, why=TOO_FEW)
    if not failed:
        return Outcome(REPRODUCED, why=f"all {len(runs)} runs")
    if failed > len(runs) / 2:
        return Outcome(CONTRADICTED, why=f"{failed} of {len(runs)} runs fail")
    return Outcome(INCONCLUSIVE, why=f"{failed} of {len(runs)} runs fail")


@dataclass(frozen=True)
class Spread:
    """The sample standard deviation of a cell's runs with its 95 % chi-square interval, and
    the verdict of "the standard deviation is at most `threshold`"."""

    test: Outcome
    std: float | None
    low: float | None
    high: float | None
    threshold: float


def std_interval(values: Sequence[float], confidence: float = 1 - ALPHA) -> tuple[float, float, float]:
    """(s, low, high): the sample std and the two-sided chi-square interval for sigma."""
    n = len(values)
    if n < 2:
        raise ValueError("a standard deviation needs at least two values")
    s = statistics.stdev(values)
    tail = (1 - confidence) / 2
    low = s * math.sqrt((n - 1) / stats.chi2.ppf(1 - tail, n - 1))
    high = s * math.sqrt((n - 1) / stats.chi2.ppf(tail, n - 1))
    return s, low, high


def spread_below(values: Sequence[float], threshold: float) -> Spread:
    """Whether the runs' standard deviation is at most `threshold` (the rule above)."""
    if not values:
        return Spread(Outcome(NOT_RUN, why="no run"), None, None, None, threshold)
    if len(values) < MIN_SEEDS:
        s = statistics.stdev(values) if len(values) > 1 else None
        return Spread(Outcome(INCONCLUSIVE, why=TOO_FEW), s, None, None, threshold)
    s, low, high = std_interval(values)
    verdict = REPRODUCED if high <= threshold else CONTRADICTED if low > threshold else INCONCLUSIVE
    return Spread(Outcome(verdict), s, low, high, threshold)


def span_threshold(span: float) -> float:
    """The seed standard deviation a claimed span of four seeds implies: span / d2(4)."""
    return span / D2_FOUR
