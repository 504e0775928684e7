"""Losses for per-pixel classification with rare classes.

Micrograph classes are unbalanced (MetalDAM: precipitates 0.24 % of the pixels, defects
0.68 %), so plain cross-entropy learns to ignore them. With logits z and true class t of a
pixel, p_t = softmax(z)_t:

- ``focal`` (Lin et al. 2017, as DeCost et al. trained PixelNet): −α_t (1 − p_t)^γ log p_t,
  γ = 2, α from the inverse class frequencies of the training pixels (normalised to mean
  one), so well-classified pixels and common classes weigh little;
- ``dice_ce``: cross-entropy (class-weighted when weights are given) plus the soft Dice loss
  1 − mean_k 2 Σ p_k y_k / (Σ p_k + Σ y_k), which scores each class by overlap whatever
  its size;
- ``ce``: cross-entropy with optional class weights.

Pixels labelled ``ignore_index`` (255: unlabelled) contribute nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deepmat.errors import ConfigError

LOSSES = ("focal", "dice_ce", "ce")
IGNORE = 255


def inverse_frequency_weights(
    label_images: Sequence[np.ndarray], n_classes: int, floor: float = 1e-4
) -> np.ndarray:
    """α_k ∝ 1 / frequency of class k over all labelled pixels (a frequency below
    ``floor`` counts as ``floor``, so an absent class does not take all the weight),
    normalised to a mean of one."""
    counts = np.zeros(n_classes)
    for labels in label_images:
        kept = labels[labels != IGNORE].astype(np.int64)
        counts += np.bincount(kept.ravel(), minlength=n_classes)[:n_classes]
    frequency = np.maximum(counts / max(counts.sum(), 1), floor)
    weights = 1 / frequency
    return weights / weights.mean()


class SegmentationLoss(nn.Module):
    """One of :data:`LOSSES` on logits (B, K, …) and labels (B, …)."""

    def __init__(self, kind: str = "focal", weights=None, gamma: float = 2.0):
        super().__init__()
        if kind not in LOSSES:
            raise ConfigError(f"segmentation loss {kind!r} is not one of {', '.join(LOSSES)}")
        self.kind, self.gamma = kind, gamma
        weight = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.register_buffer("weights", weight)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.long()
        valid = labels != IGNORE
        if not valid.any():
            return logits.sum() * 0.0
        if self.kind == "focal":
            log_p = F.log_softmax(logits, dim=1)
            safe = labels.where(valid, 0).unsqueeze(1)
            log_pt = log_p.gather(1, safe).squeeze(1)
            loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt
            if self.weights is not None:
                loss = loss * self.weights[safe.squeeze(1)]
            return loss[valid].mean()
        ce = F.cross_entropy(logits, labels, weight=self.weights, ignore_index=IGNORE)
        if self.kind == "ce":
            return ce
        probabilities = F.softmax(logits, dim=1) * valid.unsqueeze(1)
        one_hot = F.one_hot(labels.where(valid, 0), logits.shape[1]).movedim(-1, 1)
        one_hot = one_hot * valid.unsqueeze(1)
        dims = (0, *range(2, logits.ndim))
        overlap = (probabilities * one_hot).sum(dims)
        sizes = probabilities.sum(dims) + one_hot.sum(dims)
        dice = 1 - (2 * overlap / sizes.clamp_min(1e-6)).mean()
        return ce + dice
