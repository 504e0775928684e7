"""Acquisition functions and batch selection for pool-based active learning.

Given a model's prediction μᵢ and standard deviation σᵢ for each unlabelled record, an
acquisition function scores how much labelling record i is worth (higher is better):

* ``random``: a uniform random number (the baseline every strategy is measured against);
* ``max_std``: σᵢ, to improve the model where it is least sure (uncertainty sampling);
* ``ei``: expected improvement over the best label found so far f*, for discovery. To
  minimise (``goal="min"``, e.g. the most negative ΔHf), with z = (f* − μ)/σ,

      EI = (f* − μ) Φ(z) + σ φ(z)  = E[max(0, f* − y)],  y ~ N(μ, σ²);

  to maximise, the mirror image; to hit a target value t (a number as ``goal``), the
  improvement of the distance d* = min |yⱼ − t| found so far, E[max(0, d* − |y − t|)],
  whose closed form integrates the Gaussian over the band |y − t| < d* (:func:`_band_ei`);
* ``ucb``: the optimistic bound μ + κσ when maximising, −(μ − κσ) when minimising (the
  lower confidence bound), −|μ − t| + κσ for a target.

:func:`select` turns scores into a batch: the ``k`` best, or with ``diverse`` the best of
each of ``k`` k-means clusters of the ``candidates · k`` best records in the model's
feature space (standardised), so that one batch does not spend its labels on ``k``
near-copies of one promising record.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import stats

from deepmat.errors import ConfigError, DataError

ACQUISITIONS = ("random", "max_std", "ei", "ucb")
#: what a discovery acquisition looks for: the smallest, the largest or a target value
Goal = Literal["min", "max"] | float
#: the smallest σ the acquisition functions divide by
MIN_STD = 1e-12


def check_acquisition(name: str) -> str:
    """``name`` if it is one of :data:`ACQUISITIONS`; a ConfigError listing them if not."""
    if name not in ACQUISITIONS:
        raise ConfigError(
            f"unknown acquisition function {name!r}; choose from {', '.join(ACQUISITIONS)}"
        )
    return name


def check_goal(goal: Goal | str) -> Goal:
    """``goal`` as "min", "max" or a finite target value (a number, or text holding one)."""
    if goal in ("min", "max"):
        return goal
    try:
        value = float(goal)
    except (TypeError, ValueError):
        raise ConfigError(f"goal {goal!r} is not 'min', 'max' or a target value") from None
    if not np.isfinite(value):
        raise ConfigError(f"goal {goal!r}: a target value must be finite")
    return value


def best_label(labels: np.ndarray, goal: Goal) -> float:
    """The best label found so far: the smallest, the largest, or the closest to the target
    (then as its distance from the target)."""
    labels = np.asarray(labels, dtype=np.float64)
    if goal == "min":
        return float(labels.min())
    if goal == "max":
        return float(labels.max())
    return float(np.abs(labels - goal).min())


def _band_ei(mean: np.ndarray, std: np.ndarray, target: float, radius: float) -> np.ndarray:
    """E[max(0, r − |y − t|)] for y ~ N(μ, σ²): ∫ over [t − r, t] of (r − t + y) and over
    [t, t + r] of (r + t − y), each ∫ₐᵇ (c + k·y) N(y) dy = c·ΔΦ + k·(μ·ΔΦ − σ·Δφ)."""

    def piece(a: float, b: float, c: float, k: float) -> np.ndarray:
        alpha, beta = (a - mean) / std, (b - mean) / std
        d_cdf = stats.norm.cdf(beta) - stats.norm.cdf(alpha)
        d_pdf = stats.norm.pdf(beta) - stats.norm.pdf(alpha)
        return c * d_cdf + k * (mean * d_cdf - std * d_pdf)

    return piece(target - radius, target, radius - target, 1.0) + piece(
        target, target + radius, radius + target, -1.0
    )


def acquisition_scores(
    name: str,
    mean: np.ndarray,
    std: np.ndarray,
    best: float,
    goal: Goal = "min",
    kappa: float = 2.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Scores (higher is better) of the acquisition function ``name`` (module docstring)
    for predictions ``mean`` ± ``std``; ``best`` is :func:`best_label` of the labels so far."""
    check_acquisition(name)
    mean = np.asarray(mean, dtype=np.float64)
    if name == "random":
        return (rng or np.random.default_rng()).random(len(mean))
    std = np.asarray(std, dtype=np.float64)
    if std.shape != mean.shape or not np.all(np.isfinite(std)) or np.any(std < 0):
        raise DataError(
            f"{name} needs one finite, non-negative standard deviation per prediction; "
            f"got shape {std.shape} for {mean.shape} predictions"
        )
    if name == "max_std":
        return std
    std = np.maximum(std, MIN_STD)
    if name == "ucb":
        if goal == "min":
            return -(mean - kappa * std)
        if goal == "max":
            return mean + kappa * std
        return -np.abs(mean - goal) + kappa * std
    if goal in ("min", "max"):
        gain = best - mean if goal == "min" else mean - best
        z = gain / std
        return gain * stats.norm.cdf(z) + std * stats.norm.pdf(z)
    return _band_ei(mean, std, goal, best)


def select(
    scores: np.ndarray,
    k: int,
    features: np.ndarray | None = None,
    candidates: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Indices of the batch of ``k`` records: the ``k`` best scores, or, given ``features``
    (one row per score), the best-scored record of each of ``k`` k-means clusters of the
    ``candidates · k`` best (features standardised over those candidates)."""
    scores = np.asarray(scores, dtype=np.float64)
    k = min(k, len(scores))
    order = np.argsort(-scores, kind="stable")
    if features is None or k <= 1:
        return order[:k]
    from sklearn.cluster import KMeans

    if len(features) != len(scores):
        raise DataError(f"{len(features)} feature rows for {len(scores)} scores")
    chosen = order[: min(len(scores), max(k, candidates * k))]
    x = np.asarray(features, dtype=np.float64).reshape(len(scores), -1)[chosen]
    spread = x.std(0)
    x = (x - x.mean(0)) / np.where(spread > 0, spread, 1.0)
    clusters = KMeans(k, n_init=1, max_iter=50, random_state=seed).fit_predict(x)
    picked = [chosen[clusters == c][0] for c in range(k) if np.any(clusters == c)]
    if len(picked) < k:  # empty clusters (identical records): fill with the best left
        rest = [i for i in chosen if i not in set(picked)]
        picked += rest[: k - len(picked)]
    return np.array(picked)
