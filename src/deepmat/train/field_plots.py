"""Pictures of predicted strain fields: a slice of the structure beside true and predicted ε11.

One row per model: the phase map, the true field and the model's field on the same slice,
the two fields on one colour scale shared by every row (so a colour means the same strain
everywhere) and the model's MASE over the whole volume element in the row's title.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from deepmat.errors import DataError
from deepmat.train.metrics import mean_absolute_strain_error


def draw_field_comparison(
    figure,
    microstructure: np.ndarray,
    truth: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    macro_strain: float | None = None,
    index: int | None = None,
) -> None:
    """Draw into a matplotlib ``Figure`` or ``SubFigure``: slice ``index`` (the middle one
    when None) perpendicular to axis 1 of one (n1, n2, n3) structure and its fields.

    ``macro_strain`` (ε̄11, by default the mean of ``truth``) normalises the MASE.
    """
    structure = np.asarray(microstructure)
    truth = np.asarray(truth, dtype=np.float64)
    if structure.ndim != 3 or truth.shape != structure.shape:
        raise DataError(
            f"need one (n1, n2, n3) structure and its field, got {structure.shape} and "
            f"{truth.shape}"
        )
    if not predictions:
        raise DataError("no predictions to draw")
    for name, field in predictions.items():
        if np.shape(field) != structure.shape:
            raise DataError(
                f"prediction {name!r} has shape {np.shape(field)}, not {structure.shape}"
            )
    macro = float(truth.mean()) if macro_strain is None else float(macro_strain)
    index = structure.shape[0] // 2 if index is None else index
    fields = [truth[index]] + [np.asarray(f)[index] for f in predictions.values()]
    low, high = min(float(f.min()) for f in fields), max(float(f.max()) for f in fields)
    axes = figure.subplots(len(predictions), 3, squeeze=False)
    for row, (name, field) in zip(axes, predictions.items(), strict=True):
        mase = mean_absolute_strain_error(truth, field, macro)
        row[0].imshow(structure[index], cmap="gray_r", vmin=0, vmax=1)
        row[0].set_title(f"phases (black: 1), slice {index} ⊥ axis 1", fontsize=8)
        row[1].imshow(truth[index], cmap="viridis", vmin=low, vmax=high)
        row[1].set_title("ε11 from the FFT solver", fontsize=8)
        image = row[2].imshow(np.asarray(field)[index], cmap="viridis", vmin=low, vmax=high)
        row[2].set_title(f"{name}: MASE {mase:.2f} %", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    figure.colorbar(image, ax=axes[:, 1:].ravel().tolist(), shrink=0.8, label="ε11")


def field_comparison_plot(
    microstructure: np.ndarray,
    truth: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    path: str | Path,
    macro_strain: float | None = None,
    index: int | None = None,
    title: str = "",
) -> Path:
    """:func:`draw_field_comparison` on a figure of its own, written as a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(7.5, 2.3 * len(predictions) + 0.4), dpi=120)
    draw_field_comparison(fig, microstructure, truth, predictions, macro_strain, index)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
