"""The statistics that decide the claims (`analysis.verdicts`), on synthetic numbers with known
answers: Welch's test, the n < 3 and zero-variance cases, the collapse line, orderings and
conjunctions, per-run facts and the chi-square interval of a seed spread."""

from __future__ import annotations

import math
import warnings

import pytest
from scipy import stats

from analysis import verdicts
from analysis.verdicts import (CONTRADICTED, INCONCLUSIVE, MIN_SEEDS, NOT_RUN, REPRODUCED, Outcome, all_of, collapses,
                               compare, halfway, ordered, per_run, span_threshold, spread_below, std_interval)

def spread(mean: float, d: float, n: int = 3) -> list[float]:
    """n values centred on `mean`, `d` apart: sample std d for n = 3."""
    return [mean + d * (i - (n - 1) / 2) for i in range(n)]


def test_two_cells_reproduced_contradicted_inconclusive():
    high, low = [10.0, 11.0, 12.0], [1.0, 2.0, 3.0]
    # t = 9 / sqrt(1/3 + 1/3) = 11.02 on 4 degrees of freedom (equal sizes and spreads): p = 3.85e-4
    test = compare(high, low, "greater")
    assert test.verdict == REPRODUCED and test.p == pytest.approx(2 * stats.t.sf(9 / math.sqrt(2 / 3), 4))
    assert test.p == pytest.approx(3.8507e-4, rel=1e-3) and test.text() == "p=0.00039"
    assert compare(high, low, "less").verdict == CONTRADICTED
    assert compare(low, high, "less").verdict == REPRODUCED
    noisy = compare([1.0, 5.0, 9.0], [2.0, 4.0, 6.0], "greater")  # means 5 and 4, spreads 4 and 2
    assert noisy.verdict == INCONCLUSIVE and noisy.p == pytest.approx(0.7249, abs=1e-3)
    with pytest.raises(ValueError):
        compare(high, low, "bigger")


def test_fewer_than_three_runs_or_none():
    assert MIN_SEEDS == 3
    few = compare([10.0, 11.0], [1.0, 2.0, 3.0], "greater")  # a clear difference, but n = 2
    assert few == Outcome(INCONCLUSIVE, None, "n < 3") and few.text() == "n < 3"
    assert compare([], [1.0, 2.0, 3.0]).verdict == NOT_RUN
    assert collapses([5.0, 6.0], [90.0, 91.0, 92.0], 10.0).verdict == INCONCLUSIVE


def test_zero_variance_the_difference_of_the_means_decides():
    with warnings.catch_warnings():  # scipy has no spread to divide by there
        warnings.simplefilter("ignore")
        assert math.isnan(stats.ttest_ind([5.0] * 3, [5.0] * 3, equal_var=False).pvalue)
    apart = compare([5.0] * 3, [4.0] * 3, "greater")
    assert apart == Outcome(REPRODUCED, 0.0, "zero variance") and apart.text() == "p=0 (zero variance)"
    assert compare([5.0] * 3, [4.0] * 3, "less").verdict == CONTRADICTED
    assert compare([5.0] * 3, [5.0] * 3, "greater") == Outcome(INCONCLUSIVE, 1.0, "zero variance")
    one_flat = compare([5.0] * 3, [1.0, 2.0, 3.0], "greater")  # one cell varies: Welch as usual
    assert one_flat.verdict == REPRODUCED and one_flat.p == pytest.approx(0.0351, abs=1e-3) and not one_flat.why


def test_collapse_line_from_each_ours_run():
    assert halfway(10.0, [90.0, 80.0]) == [50.0, 45.0]
    assert collapses([11.0, 12.0, 13.0], [89.0, 90.0, 91.0], 10.0).verdict == REPRODUCED
    assert collapses([55.0, 56.0, 57.0], [89.0, 90.0, 91.0], 10.0).verdict == CONTRADICTED  # above the line
    assert collapses([45.0, 50.0, 55.0], [89.0, 90.0, 91.0], 10.0).verdict == INCONCLUSIVE  # around it


def test_orderings_and_conjunctions():
    a, b, c = spread(1.0, 0.1), spread(2.0, 0.1), spread(3.0, 0.1)
    verdict, pairs = ordered([a, b, c], ascending=True)
    assert verdict.verdict == REPRODUCED and [p.verdict for p in pairs] == [REPRODUCED, REPRODUCED]
    assert ordered([c, b, a], ascending=False)[0].verdict == REPRODUCED
    assert ordered([a, c, b], ascending=True)[0].verdict == CONTRADICTED  # the second pair is reversed
    assert ordered([a, spread(2.0, 1.5), c], ascending=True)[0].verdict == INCONCLUSIVE  # the middle is noisy
    assert ordered([a, [], c])[0].verdict == NOT_RUN
    # precedence: a part contradicted decides, then one not run, then all reproduced
    r, x = Outcome(REPRODUCED, 0.01), Outcome(CONTRADICTED, 0.02)
    i, n = Outcome(INCONCLUSIVE, 0.5), Outcome(NOT_RUN)
    assert all_of([r, x, n]).verdict == CONTRADICTED and all_of([r, i, n]).verdict == NOT_RUN
    assert all_of([r, r]) == Outcome(REPRODUCED, 0.01) and all_of([r, i]).verdict == INCONCLUSIVE
    assert all_of([r, Outcome(INCONCLUSIVE, why="n < 3")]).why == "n < 3" and all_of([]).verdict == NOT_RUN


def test_per_run_facts():
    assert per_run([[True] * 3, [True] * 4]).verdict == REPRODUCED
    assert per_run([[True] * 3, [True, False, True]]).verdict == CONTRADICTED
    assert per_run([[False], []]).verdict == CONTRADICTED  # a run off target is a fact, whatever is missing
    assert per_run([[True] * 3, []]).verdict == NOT_RUN
    assert per_run([[True] * 3, [True, True]]).verdict == INCONCLUSIVE  # n < 3
    assert per_run([[True, False, True]], "most").verdict == INCONCLUSIVE  # one of three: not most
    assert per_run([[True, False, False]], "most").verdict == CONTRADICTED
    assert per_run([[True] * 3], "most").verdict == REPRODUCED
    assert per_run([[False, False]], "most").verdict == INCONCLUSIVE  # n < 3


def test_the_seed_spread_by_its_chi_square_interval():
    # s = 1.291 over four values; chi2(0.975, 3) = 9.348 and chi2(0.025, 3) = 0.2158
    s, low, high = std_interval([0.0, 1.0, 2.0, 3.0])
    assert s == pytest.approx(1.2910, abs=1e-4)
    assert low == pytest.approx(s * math.sqrt(3 / 9.3484), rel=1e-4) and high == pytest.approx(s * math.sqrt(3 / 0.21580),
                                                                                                rel=1e-4)
    assert (low, high) == (pytest.approx(0.7314, abs=1e-3), pytest.approx(4.8135, abs=1e-3))
    assert spread_below([0.0, 1.0, 2.0, 3.0], 5.0).test.verdict == REPRODUCED  # the whole interval below
    assert spread_below([0.0, 1.0, 2.0, 3.0], 0.5).test.verdict == CONTRADICTED  # the whole interval above
    assert spread_below([0.0, 1.0, 2.0, 3.0], 1.0).test.verdict == INCONCLUSIVE  # inside it
    assert spread_below([1.0, 1.0, 1.0, 1.0], 0.1).test.verdict == REPRODUCED  # no spread at all
    assert spread_below([1.0, 5.0], 0.1).test == Outcome(INCONCLUSIVE, why="n < 3") and not spread_below([], 1).std
    assert span_threshold(1.0) == pytest.approx(0.4857, abs=1e-4) and verdicts.D2_FOUR == 2.059
