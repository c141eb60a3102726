"""Aggregate statistics for few-run RL comparisons (Agarwal et al., NeurIPS 2021), with numpy and scipy only.

* :func:`iqm`: interquartile mean, the same value as ``scipy.stats.trim_mean(x, 0.25)`` over all runs (rliable's
  ``aggregate_iqm``), computed by sorting so thousands of bootstrap resamples take one vectorised call.
* :func:`stratified_bootstrap_ci`: percentile CI of any aggregate, resampling runs with replacement *within* each
  task (stratum), so every resample keeps the number of runs per task.
* :func:`probability_of_improvement`: P(X > Y) averaged over tasks, each task's value the Mann-Whitney U statistic
  divided by ``m * n`` (ties count one half), with its stratified bootstrap CI (X and Y resampled independently).

Why not rliable: it pulls in about two dozen packages (arch, statsmodels...) for these few lines; and scipy's
``trim_mean`` costs milliseconds per call, too slow for a loop over resamples (the tests check equality with it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "bootstrap_curve_band",
    "describe",
    "iqm",
    "probability_of_improvement",
    "probability_of_improvement_ci",
    "stratified_bootstrap_ci",
    "trimmed_iqm",
]

Scores = Mapping[str, Sequence[float] | np.ndarray]
"""Scores of one arm: task name -> the per-run scores on that task."""


def _as_arrays(scores: Scores) -> dict[str, np.ndarray]:
    out = {task: np.asarray(values, dtype=float).ravel() for task, values in scores.items()}
    if not out or any(v.size == 0 for v in out.values()):
        raise ValueError("every task needs at least one run score")
    for task, values in out.items():
        _check_finite(values, f"scores of task {task!r}")
    return out


def _check_finite(x: np.ndarray, what: str) -> None:
    """NaN would sort to the top and be trimmed (IQM) or lose every comparison (P(X > Y)) without a word: refuse it.
    A run that failed must be scored explicitly first (the report counts it as its task's worst run)."""
    if not np.isfinite(x).all():
        raise ValueError(f"{what} hold non-finite values {x[~np.isfinite(x)].tolist()}: score failed runs explicitly first")


def trimmed_iqm(data: np.ndarray, axis: int = -1) -> np.ndarray:
    """IQM along ``axis``: sort, cut ``int(0.25 n)`` values from each end, average the rest (scipy's trim_mean rule)."""
    x = np.sort(np.asarray(data, dtype=float), axis=axis)
    n = x.shape[axis]
    cut = int(0.25 * n)
    return np.asarray(np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis))


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (``int(0.25 n)`` runs cut from each end, as scipy does)."""
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("iqm of no values")
    _check_finite(x, "iqm values")
    return float(trimmed_iqm(x))


def _pooled_iqm(scores: Mapping[str, np.ndarray]) -> float:
    return iqm(np.concatenate(list(scores.values())))


def stratified_bootstrap_ci(
    scores: Scores,
    statistic: Callable[[Mapping[str, np.ndarray]], float] | None = None,
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(point estimate, lower, upper): the statistic and its ``1 - alpha`` percentile bootstrap interval.

    ``statistic`` takes task -> runs; the default, IQM over all runs pooled (rliable's aggregate IQM), is vectorised.
    """
    data = _as_arrays(scores)
    rng = np.random.default_rng(seed)
    if statistic is None:
        point = _pooled_iqm(data)
        resampled = [v[rng.integers(0, v.size, (reps, v.size))] for v in data.values()]
        draws = trimmed_iqm(np.concatenate(resampled, axis=1), axis=1)
    else:
        point = statistic(data)
        draws = np.empty(reps)
        for i in range(reps):
            draws[i] = statistic({t: v[rng.integers(0, v.size, v.size)] for t, v in data.items()})
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return float(point), float(lo), float(hi)


def _poi_task(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + 0.5 P(X = Y) over all run pairs of one task; leading axes (resamples) are kept."""
    diff = x[..., :, None] - y[..., None, :]
    return np.asarray((diff > 0).mean(axis=(-2, -1)) + 0.5 * (diff == 0).mean(axis=(-2, -1)))


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """The probability that a run of X beats a run of Y on the same task, averaged over the tasks both have."""
    xa, ya = _as_arrays(x), _as_arrays(y)
    tasks = sorted(set(xa) & set(ya))
    if not tasks:
        raise ValueError("X and Y share no task")
    return float(np.mean([float(_poi_task(xa[t], ya[t])) for t in tasks]))


def probability_of_improvement_ci(
    x: Scores, y: Scores, reps: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """(P(X > Y), lower, upper) with a stratified bootstrap interval (runs of X and of Y resampled per task)."""
    xa, ya = _as_arrays(x), _as_arrays(y)
    tasks = sorted(set(xa) & set(ya))
    if not tasks:
        raise ValueError("X and Y share no task")
    rng = np.random.default_rng(seed)
    point = probability_of_improvement(xa, ya)
    per_task = []
    for t in tasks:
        xs = xa[t][rng.integers(0, xa[t].size, (reps, xa[t].size))]
        ys = ya[t][rng.integers(0, ya[t].size, (reps, ya[t].size))]
        per_task.append(_poi_task(xs, ys))
    draws = np.mean(per_task, axis=0)
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return point, float(lo), float(hi)


def bootstrap_curve_band(
    curves: np.ndarray | Sequence[Sequence[float]], reps: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IQM, lower, upper) at each evaluation point of ``curves`` (runs x points), resampling whole runs."""
    data = np.asarray(curves, dtype=float)
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"curves must be a (runs, points) array, got shape {data.shape}")
    rng = np.random.default_rng(seed)
    point = trimmed_iqm(data, axis=0)
    idx = rng.integers(0, data.shape[0], (reps, data.shape[0]))
    draws = trimmed_iqm(data[idx], axis=1)  # (reps, points)
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2], axis=0)
    return np.asarray(point), lo, hi


def describe(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """n, mean, SEM, median, min, max of one arm's scores (SEM with ddof=1; 0 for a single run)."""
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("describe of no values")
    _check_finite(x, "values")
    sem = float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else 0.0
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "sem": sem,
        "median": float(np.median(x)),
        "min": float(x.min()),
        "max": float(x.max()),
    }
