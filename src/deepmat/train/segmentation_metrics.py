"""How well a segmentation matches its annotation: IoU per class, their mean, pixel accuracy.

All scores pool the pixels of every image of a set into one confusion matrix C (C[t, p]:
pixels of true class t predicted as p) before dividing, as the MetalDAM and EBC papers do,
so a small image counts by its pixels rather than as much as a large one:

- ``per_class_iou[k]`` = C[k, k] / (Σ_p C[k, p] + Σ_t C[t, k] − C[k, k]), None for a class
  neither annotated nor predicted;
- ``miou``: the mean of the per-class IoUs that are defined;
- ``pixel_accuracy`` = Σ_k C[k, k] / Σ C;
- ``pooled_iou``: NASA's notebooks' IoU (segmentation-models-pytorch's ``IoU`` metric on
  one-hot masks, background channel included): intersections and unions summed over every
  channel and pixel. With one-hot masks every pixel adds one to each of the two sums of the
  union, so it equals a / (2 − a) for the pixel accuracy a; it is not a mean IoU, and the two
  must not be compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from deepmat.errors import DataError


def confusion_matrix(
    truths: Iterable[np.ndarray], predictions: Iterable[np.ndarray], n_classes: int
) -> np.ndarray:
    """The pooled (n_classes, n_classes) matrix of pixel counts over pairs of label images."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    for k, (truth, prediction) in enumerate(zip(truths, predictions, strict=True)):
        truth, prediction = np.asarray(truth), np.asarray(prediction)
        if truth.shape != prediction.shape:
            raise DataError(
                f"image {k}: the prediction is {prediction.shape}, its annotation {truth.shape}"
            )
        for name, labels in (("annotation", truth), ("prediction", prediction)):
            if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
                raise DataError(
                    f"image {k}: the {name} has labels outside 0…{n_classes - 1}: "
                    f"{sorted(int(v) for v in set(np.unique(labels)) - set(range(n_classes)))}"
                )
        matrix += np.bincount(
            truth.ravel().astype(np.int64) * n_classes + prediction.ravel(),
            minlength=n_classes**2,
        ).reshape(n_classes, n_classes)
    return matrix


def segmentation_metrics(
    truths: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    class_names: Sequence[str],
) -> dict:
    """The scores of the module docstring for label images (one class index per pixel)."""
    matrix = confusion_matrix(truths, predictions, len(class_names))
    if matrix.sum() == 0:
        raise DataError("segmentation metrics need at least one annotated pixel")
    hits = np.diag(matrix).astype(np.float64)
    unions = matrix.sum(axis=0) + matrix.sum(axis=1) - hits
    iou = [float(h / u) if u else None for h, u in zip(hits, unions, strict=True)]
    accuracy = float(hits.sum() / matrix.sum())
    defined = [v for v in iou if v is not None]
    return {
        "miou": float(np.mean(defined)),
        "per_class_iou": dict(zip(class_names, iou, strict=True)),
        "pixel_accuracy": accuracy,
        "pooled_iou": accuracy / (2 - accuracy),
        "n": len(truths),  # images, the records every evaluation counts
        "n_pixels": int(matrix.sum()),
        "confusion": matrix.tolist(),
    }
