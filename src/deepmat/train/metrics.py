"""Metrics every regression model reports, the parity plot, and the localization MASE."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepmat.errors import DataError


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R² and the number of points."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    error = y_pred - y_true
    variance = np.sum((y_true - y_true.mean()) ** 2)
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": float(1 - np.sum(error**2) / variance) if variance > 0 else float("nan"),
        "n": len(y_true),
    }


def parity_plot(
    y_true: np.ndarray, y_pred: np.ndarray, path: str | Path, title: str = "", unit: str = ""
) -> Path:
    """Predicted against true values with the identity line and the metrics; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = regression_metrics(y_true, y_pred)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    if len(y_true) > 5000:
        ax.hexbin(y_true, y_pred, gridsize=120, bins="log", cmap="viridis", mincnt=1)
    else:
        ax.scatter(y_true, y_pred, s=6, alpha=0.5)
    low = float(min(np.min(y_true), np.min(y_pred)))
    high = float(max(np.max(y_true), np.max(y_pred)))
    ax.plot([low, high], [low, high], "k--", lw=1)
    label = f" ({unit})" if unit else ""
    ax.set(xlabel=f"true{label}", ylabel=f"predicted{label}", title=title)
    ax.text(
        0.04,
        0.96,
        f"MAE {metrics['mae']:.4g}\nRMSE {metrics['rmse']:.4g}\nR² {metrics['r2']:.4f}\n"
        f"n {metrics['n']}",
        transform=ax.transAxes,
        va="top",
        fontsize=9,
        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
    )
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Lay out ``fig``, write it to ``path`` (folders made as needed) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def mean_absolute_percentage_error(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean of |prediction − truth| / |truth| in percent (NaN if any truth is zero)."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if np.any(y_true == 0):
        return float("nan")
    return float(100 * np.mean(np.abs(y_pred - y_true) / np.abs(y_true)))


def mean_absolute_strain_error(
    truth: np.ndarray, prediction: np.ndarray, macro_strain: float
) -> float:
    """MASE (%): the mean over voxels of |ε_pred − ε_true| / |ε̄|, ε̄ the macroscopic strain.

    The localization error measure of Yang et al. (2019); with equally sized volume elements
    it is also the mean over elements of their own MASE.
    """
    truth = np.asarray(truth, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    if truth.shape != prediction.shape:
        raise DataError(f"shapes differ: truth {truth.shape}, prediction {prediction.shape}")
    if macro_strain == 0 or not np.isfinite(macro_strain):
        raise DataError(f"the macroscopic strain must be finite and non-zero, got {macro_strain}")
    return float(100 * np.mean(np.abs(prediction - truth)) / abs(macro_strain))
