"""Whole-image predictions from a network that sees tiles: overlap and blend.

A micrograph may be far larger than what fits in memory at once, or than what a network was
trained on. :func:`predict_tiled` cuts the image into ``tile``-sized windows that overlap
by ``overlap`` pixels (the last window of a row or column is moved back to end at the
border, and an image smaller than a tile is padded by reflection), runs the network on
batches of windows, and blends the logits with a weight that falls linearly from the
window's centre to a small value at its edges, so that no seam remains where windows meet
and every pixel is scored mostly by windows in which it sits far from the edge.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from deepmat.errors import ConfigError


def window_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of windows of ``tile`` covering ``length`` with at least ``overlap`` shared."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def blend_weight(tile: int, floor: float = 0.05) -> torch.Tensor:
    """(tile, tile) weights: a tent from ``floor`` at the edges to one at the centre."""
    ramp = 1 - torch.abs(torch.linspace(-1, 1, tile))
    ramp = floor + (1 - floor) * ramp
    return ramp[:, None] * ramp[None, :]


@torch.no_grad()
def predict_tiled(
    network: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray | torch.Tensor,
    tile: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
) -> torch.Tensor:
    """Blended logits (K, H, W) of ``network`` (images (B, C, h, w) → logits (B, K, h, w))
    for one image (C, H, W) of any size."""
    if not 0 <= overlap < tile:
        raise ConfigError(f"tiles of {tile} px need an overlap in [0, {tile}), got {overlap}")
    x = torch.as_tensor(image, dtype=torch.float32)
    if x.ndim != 3:
        raise ConfigError(f"tiled prediction reads one (C, H, W) image, got {tuple(x.shape)}")
    height, width = x.shape[-2:]
    pad_h, pad_w = max(tile - height, 0), max(tile - width, 0)
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x[None], (0, pad_w, 0, pad_h), mode=mode)[0]
    full_h, full_w = x.shape[-2:]
    windows = [
        (top, left)
        for top in window_starts(full_h, tile, overlap)
        for left in window_starts(full_w, tile, overlap)
    ]
    weight = blend_weight(tile)
    total, norm = None, torch.zeros(full_h, full_w)
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        logits = network(torch.stack([x[:, t : t + tile, c : c + tile] for t, c in batch]))
        if total is None:
            total = torch.zeros(logits.shape[1], full_h, full_w)
        for (t, c), scores in zip(batch, logits.float().cpu(), strict=True):
            total[:, t : t + tile, c : c + tile] += scores * weight
            norm[t : t + tile, c : c + tile] += weight
    return (total / norm)[:, :height, :width]
