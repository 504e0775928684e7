"""Periodic neighbourhoods of voxels: the input of voxel-wise localization models.

The neighbourhood of size s (odd, h = s // 2) of voxel (i1, i2, i3) of microstructure j is
the s×s×s block

.. math::

    N_{j,i}[a, b, c] = m_j\\big((i_1 + a - h) \\bmod n_1,\\ (i_2 + b - h) \\bmod n_2,\\
    (i_3 + c - h) \\bmod n_3\\big), \\qquad 0 \\le a, b, c < s,

centred on the voxel and wrapped around the cell faces, since a microstructure volume
element is one period of an infinite medium. Axis order is kept: ``N[a]`` is the slice at
offset a − h along axis 1 (the loading direction of the localization benchmark).

:func:`neighbourhoods` extracts the blocks of a given list of voxels by index arithmetic
(one gather, no padded copy of the batch), or of every voxel through a strided window view
of the wrapped batch; both give uint8 arrays at one byte per voxel. A large data set is
handled by asking for a subset (:func:`sample_voxels`) or for a few microstructures at a
time, so the blocks of all voxels of all samples never sit in memory together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepmat.errors import ConfigError, DataError
from deepmat.represent.phase_maps import check_phase_maps


def check_size(size: int) -> int:
    """``size`` as a positive odd integer (the block must have a centre voxel)."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ConfigError(f"neighbourhood size must be a positive odd integer, got {size!r}")
    if size % 2 == 0:
        raise ConfigError(f"neighbourhood size must be odd (a centre voxel), got {size}")
    return int(size)


def neighbourhoods(
    microstructures: np.ndarray, size: int = 11, voxels: np.ndarray | None = None
) -> np.ndarray:
    """Periodic ``size``³ neighbourhoods, uint8 of shape (m, size, size, size).

    ``voxels``: an (m, 4) integer array of rows (sample, i1, i2, i3); None takes every voxel
    of every microstructure in C order (sample, then i1, i2, i3), m = n·n1·n2·n3.
    """
    x = check_phase_maps(microstructures)
    size = check_size(size)
    half = size // 2
    if voxels is None:
        wrapped = np.pad(x, [(0, 0)] + [(half, half)] * 3, mode="wrap")
        window = np.lib.stride_tricks.sliding_window_view(wrapped, (size,) * 3, axis=(1, 2, 3))
        return window.reshape(-1, size, size, size)
    index = check_voxels(voxels, x.shape)
    offsets = np.arange(-half, half + 1)
    sample = index[:, 0, None, None, None]
    i1 = (index[:, 1, None, None, None] + offsets[:, None, None]) % x.shape[1]
    i2 = (index[:, 2, None, None, None] + offsets[None, :, None]) % x.shape[2]
    i3 = (index[:, 3, None, None, None] + offsets[None, None, :]) % x.shape[3]
    return x[sample, i1, i2, i3]


def check_voxels(voxels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``voxels`` as an int64 (m, 4) array of valid (sample, i1, i2, i3) rows for ``shape``."""
    index = np.asarray(voxels)
    if index.ndim != 2 or index.shape[1] != 4:
        raise DataError(f"voxels must have shape (m, 4): (sample, i1, i2, i3); got {index.shape}")
    if not np.issubdtype(index.dtype, np.integer):
        raise DataError(f"voxels must be integer indices, got dtype {index.dtype}")
    bad = (index < 0) | (index >= np.asarray(shape))
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        raise DataError(
            f"voxels[{row}] = {index[row].tolist()} lies outside the batch of shape {tuple(shape)}"
        )
    return index.astype(np.int64)


def sample_voxels(
    n: int, grid: Sequence[int], per_sample: int, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """``per_sample`` distinct random voxels of each of ``n`` microstructures, (m, 4) rows.

    Every voxel is taken when ``per_sample`` is at least the number of voxels per sample.
    Rows are grouped by sample, each group in increasing voxel order.
    """
    if per_sample < 1:
        raise ConfigError(f"per_sample must be at least 1, got {per_sample}")
    grid = tuple(int(g) for g in grid)
    rng = np.random.default_rng(seed)
    count = int(np.prod(grid))
    take = min(per_sample, count)
    flat = [np.sort(rng.choice(count, take, replace=False)) for _ in range(n)]
    coords = np.unravel_index(np.concatenate(flat), grid)
    return np.column_stack([np.repeat(np.arange(n), take), *coords]).astype(np.int64)
