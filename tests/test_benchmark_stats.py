"""Benchmark statistics against values computed by hand, and the bootstrap interval's coverage on a synthetic case."""

from __future__ import annotations

import numpy as np
import pytest

from sb3_regnorm.benchmark import stats


def test_iqm_by_hand() -> None:
    # n=8: int(0.25*8)=2 cut from each end -> mean(3, 4, 5, 6)
    assert stats.iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)
    # n=10: 2 cut from each end of 0..9 plus an outlier that IQM ignores -> mean(2..7)
    assert stats.iqm([0, 1, 2, 3, 4, 5, 6, 7, 8, 1000]) == pytest.approx(4.5)
    # n=4: 1 cut from each end -> mean of the middle two
    assert stats.iqm([10.0, -5.0, 1.0, 3.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        stats.iqm([])


def test_non_finite_scores_are_refused_not_trimmed() -> None:
    """A NaN (a failed run) would sort to the top and be trimmed by IQM, and lose every P(X > Y) comparison."""
    for bad in ([1.0, 2.0, 3.0, float("nan")], [1.0, float("inf")]):
        with pytest.raises(ValueError, match="non-finite"):
            stats.iqm(bad)
        with pytest.raises(ValueError, match="non-finite"):
            stats.stratified_bootstrap_ci({"t": bad})
        with pytest.raises(ValueError, match="non-finite"):
            stats.probability_of_improvement_ci({"t": bad}, {"t": [1.0, 2.0]})
        with pytest.raises(ValueError, match="non-finite"):
            stats.describe(bad)


def test_iqm_matches_scipy_trim_mean() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 5, 7, 10, 20, 33):
        x = rng.normal(size=n)
        assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))
    table = rng.normal(size=(9, 4))
    assert stats.trimmed_iqm(table, axis=0) == pytest.approx(scipy_stats.trim_mean(table, 0.25, axis=0))


def test_probability_of_improvement_by_hand() -> None:
    # pairs (x, y): 3>1, 3>2, 3=3 -> 0.5, 1=1 -> 0.5, 1<2, 1<3: (1+1+0.5+0.5+0+0)/6
    assert stats.probability_of_improvement({"t": [3, 1]}, {"t": [1, 2, 3]}) == pytest.approx(3 / 6)
    assert stats.probability_of_improvement({"t": [5, 6]}, {"t": [1, 2]}) == 1.0
    # averaged over tasks: task a 1.0, task b 0.0
    assert stats.probability_of_improvement({"a": [2], "b": [0]}, {"a": [1], "b": [1]}) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="share no task"):
        stats.probability_of_improvement({"a": [1]}, {"b": [1]})


def test_poi_interval_separates_clear_cases() -> None:
    p, lo, hi = stats.probability_of_improvement_ci({"t": [10, 11, 12, 13, 14]}, {"t": [0, 1, 2, 3, 4]}, reps=500)
    assert p == lo == hi == 1.0
    rng = np.random.default_rng(1)
    same = rng.normal(size=10)
    p, lo, hi = stats.probability_of_improvement_ci({"t": same}, {"t": same[::-1]}, reps=500)
    assert p == pytest.approx(0.5) and lo < 0.5 < hi


def test_stratified_bootstrap_keeps_strata() -> None:
    # Task a is always 0 and task b always 100: a pooled resample within strata keeps 2 zeros and 2 hundreds, so the
    # IQM of every resample is 50 (an unstratified bootstrap would vary).
    point, lo, hi = stats.stratified_bootstrap_ci({"a": [0.0, 0.0], "b": [100.0, 100.0]}, reps=300)
    assert point == lo == hi == pytest.approx(50.0)


def test_bootstrap_ci_coverage_on_a_synthetic_case() -> None:
    # For N(mu, 1) the population IQM is mu (symmetry). 10 runs per experiment, 300 experiments: a 95% interval
    # should cover mu in about 95% of them (binomial sd ~1.3%; percentile intervals undercover a little at n=10).
    rng = np.random.default_rng(0)
    mu, hits, n_exp = 3.0, 0, 300
    for i in range(n_exp):
        _, lo, hi = stats.stratified_bootstrap_ci({"t": rng.normal(mu, 1.0, 10)}, reps=400, seed=i)
        hits += lo <= mu <= hi
    assert 0.87 <= hits / n_exp <= 0.99


def test_curve_band_and_describe() -> None:
    curves = np.array([[0, 1, 2], [0, 2, 4], [0, 3, 6], [0, 4, 8]], dtype=float)
    mid, lo, hi = stats.bootstrap_curve_band(curves, reps=200)
    assert mid == pytest.approx([0.0, 2.5, 5.0])  # IQM of 4 runs = mean of the middle two
    assert np.all(lo <= mid) and np.all(mid <= hi) and lo[0] == hi[0] == 0.0
    d = stats.describe([1.0, 2.0, 3.0])
    assert d["mean"] == 2.0 and d["sem"] == pytest.approx(1 / np.sqrt(3)) and d["n"] == 3
