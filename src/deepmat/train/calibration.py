"""Is a model's standard deviation right? Calibration metrics of Gaussian predictions.

A regressor that returns a mean μᵢ and a standard deviation σᵢ per record claims that the
central interval μᵢ ± z(p)·σᵢ, z(p) = Φ⁻¹((1 + p)/2), holds a share p of the truths. The
*calibration curve* is the share observed in those intervals against p, at ``bins`` values of
p evenly spaced on [0, 1]; a calibrated model lies on the diagonal. The metrics follow the
definitions of uncertainty-toolbox (Chung et al. 2021), against which a test checks them:

- ``miscalibration_area``: the area between the curve and the diagonal (0 is perfect, 0.5
  the worst);
- ``rms_calibration_error``: the root mean square of observed − expected over the bins;
- ``sharpness``: √(mean σᵢ²), how narrow the predictions are whatever their truth;
- ``nll``: the mean Gaussian negative log-likelihood of the truths, and ``median_nll`` its
  median: a few truths many σ off (a handful of gross errors in thousands of records)
  dominate the mean and leave the median alone;
- ``coverage_68`` and ``coverage_95``: the observed share in the 68 % and 95 % intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy import stats

from deepmat.errors import DataError

CALIBRATION_KEYS = (
    "miscalibration_area",
    "rms_calibration_error",
    "sharpness",
    "nll",
    "median_nll",
    "coverage_68",
    "coverage_95",
)


def _checked(truth, mean, std) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    truth, mean, std = (np.asarray(a, dtype=np.float64).ravel() for a in (truth, mean, std))
    if not len(truth) == len(mean) == len(std) or len(truth) == 0:
        raise DataError(
            f"calibration needs one mean and one standard deviation per truth, got "
            f"{len(truth)} truths, {len(mean)} means and {len(std)} standard deviations"
        )
    bad = ~(np.isfinite(std) & (std > 0))
    if bad.any():
        raise DataError(
            f"standard deviation {int(np.argmax(bad))} is {std[bad][0]}: each must be finite "
            f"and positive ({int(bad.sum())} are not)"
        )
    return truth, mean, std


def coverage(truth, mean, std, level: float) -> float:
    """The share of ``truth`` inside the central ``level`` interval of N(mean, std²)."""
    truth, mean, std = _checked(truth, mean, std)
    z = stats.norm.ppf(0.5 + level / 2)
    return float(np.mean(np.abs(truth - mean) <= z * std))


def calibration_curve(truth, mean, std, bins: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(expected, observed) shares of the truths in the central intervals (module
    docstring), at ``bins`` expected shares from 0 to 1."""
    truth, mean, std = _checked(truth, mean, std)
    expected = np.linspace(0, 1, bins)
    multiples = stats.norm.ppf(0.5 + expected / 2)
    deviations = np.sort(np.abs(truth - mean) / std)
    observed = np.searchsorted(deviations, multiples, side="right") / len(deviations)
    return expected, observed


def _area_between(x: np.ndarray, gap: np.ndarray) -> float:
    """∫|gap| dx for a piecewise-linear ``gap``, exact where it changes sign in a step."""
    left, right, width = gap[:-1], gap[1:], np.diff(x)
    same = left * right >= 0
    total = np.abs(left) + np.abs(right)
    crossing = np.divide(left**2 + right**2, total, out=np.zeros_like(total), where=total > 0)
    return float(np.sum(width * np.where(same, total, crossing) / 2))


def calibration_metrics(truth, mean, std, bins: int = 100) -> dict[str, float]:
    """The metrics of the module docstring for Gaussian predictions (``mean``, ``std``)."""
    truth, mean, std = _checked(truth, mean, std)
    expected, observed = calibration_curve(truth, mean, std, bins)
    nll = 0.5 * np.log(2 * np.pi * std**2) + (truth - mean) ** 2 / (2 * std**2)
    return {
        "miscalibration_area": _area_between(expected, observed - expected),
        "rms_calibration_error": float(np.sqrt(np.mean((observed - expected) ** 2))),
        "sharpness": float(np.sqrt(np.mean(std**2))),
        "nll": float(np.mean(nll)),
        "median_nll": float(np.median(nll)),
        "coverage_68": coverage(truth, mean, std, 0.68),
        "coverage_95": coverage(truth, mean, std, 0.95),
    }


#: how :func:`fit_std_scale` may choose the factor on the standard deviations
CRITERIA = ("nll", "miscalibration", "coverage")


def fit_std_scale(
    truth, mean, std, criterion: str = "nll", coverage: float = 0.95
) -> tuple[float, str]:
    """The factor s on ``std`` that calibrates it on held-out data, and how it was found:
    "nll" maximises the Gaussian likelihood (s² = mean(((y − μ)/σ)²)); "miscalibration"
    minimises the miscalibration area over s from 1/30 to 30 (a log-spaced search, refined
    around the best); "coverage" makes the 95 % interval hold at least ``coverage`` of the
    held-out truths, s = q/1.96 with q the ⌈coverage (n + 1)⌉-th smallest |y − μ|/σ (split
    conformal prediction with normalised scores: on exchangeable new data the interval covers
    at least that share, whatever the shape of the errors)."""
    truth, mean, std = _checked(truth, mean, std)
    z = (truth - mean) / std
    if criterion == "nll":
        return float(np.sqrt(np.mean(z**2))), "maximum likelihood: s² = mean(((y − μ)/σ)²)"
    if criterion == "coverage":
        if not 0 < coverage < 1:
            raise DataError(f"the coverage of the 95 % interval must lie in (0, 1), not {coverage}")
        rank = min(len(z), math.ceil(coverage * (len(z) + 1)))
        quantile = np.sort(np.abs(z))[rank - 1]
        return float(quantile / stats.norm.ppf(0.975)), (
            f"split conformal: the 95 % interval covers the ⌈{coverage:g} (n + 1)⌉-th "
            "smallest |y − μ|/σ"
        )
    if criterion != "miscalibration":
        raise DataError(f"recalibration criterion {criterion!r} is not one of {CRITERIA}")
    expected = np.linspace(0, 1, 100)
    multiples = stats.norm.ppf(0.5 + expected / 2)
    deviations = np.sort(np.abs(z))

    def area(scale: float) -> float:
        observed = np.searchsorted(deviations / scale, multiples, side="right") / len(z)
        return _area_between(expected, observed - expected)

    grid = np.geomspace(1 / 30, 30, 241)
    best = grid[np.argmin([area(s) for s in grid])]
    fine = np.geomspace(best / 1.03, best * 1.03, 61)
    scale = float(fine[np.argmin([area(s) for s in fine])])
    return scale, "the factor with the smallest miscalibration area (log-spaced search)"


def scaled_std(parts: Mapping[str, np.ndarray], scales: Mapping[str, float]) -> np.ndarray:
    """σ = √(Σ sₚ² vₚ): the parts vₚ of a variance, each with its factor sₚ."""
    return np.sqrt(sum(scales[name] ** 2 * np.asarray(v) for name, v in parts.items()))


def fit_component_scales(
    truth, mean, parts: dict[str, np.ndarray], criterion: str = "nll", coverage: float = 0.95
) -> tuple[dict[str, float], str]:
    """Factors on the parts of a predicted variance (an ensemble's aleatoric σ², the mean of
    its members' own, and epistemic σ², their spread) that calibrate σ² = Σ sₚ² vₚ on
    held-out data. One part: the factor of :func:`fit_std_scale`. Two parts a and b: for
    each mix σ² = cos²θ·a + sin²θ·b, θ from 0 to π/2, the factor of :func:`fit_std_scale`
    on it, and the mix whose calibrated σ has the smallest miscalibration area (the largest
    likelihood for ``criterion`` "nll"). Errors with heavier tails than a Gaussian's, which
    no one factor makes right at every level, are often those the members disagree on:
    weighing the spread more than the members' own σ then makes the 68 % and the 95 %
    intervals right together."""
    names = list(parts)
    if len(names) == 1:
        scale, method = fit_std_scale(truth, mean, np.sqrt(parts[names[0]]), criterion, coverage)
        return {names[0]: scale}, method
    if len(names) != 2:
        raise DataError(f"recalibration mixes one or two variance parts, not {names}")
    first, second = (np.asarray(parts[name], dtype=np.float64) for name in names)
    fits: dict[float, tuple[float, float, str]] = {}  # angle: (score, factor, method)

    def score(angle: float) -> float:
        std = np.sqrt(np.cos(angle) ** 2 * first + np.sin(angle) ** 2 * second)
        if not np.all(std > 0):
            return math.inf
        scale, method = fit_std_scale(truth, mean, std, criterion, coverage)
        metrics = calibration_metrics(truth, mean, scale * std)
        fits[angle] = metrics["nll" if criterion == "nll" else "miscalibration_area"], scale, method
        return fits[angle][0]

    coarse = min(np.linspace(0, np.pi / 2, 31), key=score)
    fine = np.clip(np.linspace(coarse - np.pi / 60, coarse + np.pi / 60, 21), 0, np.pi / 2)
    angle = float(min(fine, key=score))
    if angle not in fits:
        raise DataError(f"every mix of {names[0]} and {names[1]} variance has a σ of zero")
    _, scale, method = fits[angle]
    scales = {names[0]: scale * math.cos(angle), names[1]: scale * math.sin(angle)}
    best = "largest likelihood" if criterion == "nll" else "smallest miscalibration area"
    return scales, f"{method}, on the mix of {names[0]} and {names[1]} variance with the {best}"


def predict_with_spread(model, X, **options) -> tuple[np.ndarray, np.ndarray | None]:
    """``model``'s predictions for ``X`` and their standard deviations (None for a model
    that gives none); ``options`` (a field model's ε̄11) go to its ``predict``."""
    from deepmat.train.estimator import UncertaintyUnavailable

    try:
        return model.predict(X, return_std=True, **options)
    except UncertaintyUnavailable:
        return model.predict(X, **options), None


def calibration_report(truth, mean, std) -> dict:
    """:func:`calibration_metrics`, or a note saying why they could not be scored (a
    standard deviation of zero, say)."""
    try:
        return calibration_metrics(truth, mean, std)
    except DataError as exc:
        return {"calibration": f"not scored: {exc}"}


def uncertainty_plot_path(parity: Path) -> Path:
    """Where the uncertainty plot beside the parity plot ``parity`` goes."""
    path = parity.with_name(parity.name.replace("parity", "uncertainty", 1))
    return path if path != parity else parity.with_name(f"uncertainty_{parity.name}")


def uncertainty_plot(
    truth, mean, std, path: str | Path, title: str = "", unit: str = "", max_points: int = 2000
) -> Path:
    """Two panels: predictions against truths with ±σ error bars (at most ``max_points``
    records, drawn at random), and the calibration curve with its miscalibration area."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepmat.train.metrics import save_figure

    truth, mean, std = _checked(truth, mean, std)
    metrics = calibration_metrics(truth, mean, std)
    fig, (parity, curve) = plt.subplots(1, 2, figsize=(10, 4.8), dpi=120)
    shown = np.random.default_rng(0).permutation(len(truth))[:max_points]
    parity.errorbar(truth[shown], mean[shown], yerr=std[shown], fmt="o", ms=2, lw=0.5, alpha=0.4)
    low, high = float(min(truth.min(), mean.min())), float(max(truth.max(), mean.max()))
    parity.plot([low, high], [low, high], "k--", lw=1)
    label = f" ({unit})" if unit else ""
    parity.set(xlabel=f"true{label}", ylabel=f"predicted ± σ{label}", title=title)
    expected, observed = calibration_curve(truth, mean, std)
    curve.plot(expected, observed, lw=2, label="observed")
    curve.fill_between(expected, expected, observed, alpha=0.3, label="miscalibration area")
    curve.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    curve.set(
        xlabel="expected share in the central interval",
        ylabel="observed share",
        title=f"area {metrics['miscalibration_area']:.3f}, 95 % coverage "
        f"{metrics['coverage_95']:.3f}",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    curve.legend(fontsize=8)
    return save_figure(fig, path)
