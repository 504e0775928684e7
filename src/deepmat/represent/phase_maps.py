"""Batches of two-phase voxel microstructures: validation and volume fractions.

A batch is a NumPy array of shape (n, n1, n2, n3) holding the phase index of every voxel,
0 or 1, phase 1 being the stiff (reinforcing) phase. Everything that takes
microstructures checks them here first, so a bad batch is rejected with the position of
the bad sample instead of failing deep inside an FFT or a convolution.
"""

from __future__ import annotations

import numpy as np

from deepmat.errors import DataError


def check_phase_maps(microstructures: np.ndarray, name: str = "microstructures") -> np.ndarray:
    """``microstructures`` as a uint8 (n, n1, n2, n3) array of 0/1 phase indices.

    Raises :class:`~deepmat.errors.DataError` naming the problem (and the first bad
    sample) for a wrong number of axes, an empty batch, non-finite values or values
    other than 0 and 1.
    """
    array = np.asarray(microstructures)
    if array.ndim != 4:
        hint = "; add the batch axis with x[None]" if array.ndim == 3 else ""
        raise DataError(
            f"{name} must have shape (n, n1, n2, n3), got {array.ndim} axes "
            f"with shape {array.shape}{hint}"
        )
    if 0 in array.shape:
        raise DataError(f"{name} is empty: shape {array.shape}")
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{name} must hold phase indices 0/1, got dtype {array.dtype}")
    bad = (array != 0) & (array != 1)
    if bad.any():
        sample = int(np.argmax(bad.reshape(len(array), -1).any(axis=1)))
        value = array[sample][bad[sample]][0]
        raise DataError(
            f"{name}[{sample}] holds the value {value}: voxels must be phase index 0 or 1"
        )
    return array.astype(np.uint8)


def check_targets(targets: np.ndarray, n: int, name: str = "targets") -> np.ndarray:
    """``targets`` as a finite float64 vector of length ``n`` (one per microstructure)."""
    values = np.asarray(targets, dtype=np.float64)
    if values.ndim != 1:
        raise DataError(f"{name} must be a vector of shape (n,), got shape {values.shape}")
    if len(values) != n:
        raise DataError(f"{name} has {len(values)} values for {n} microstructures")
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"{name}[{first}] is {values[first]}: targets must be finite "
            f"({int(bad.sum())} non-finite in all)"
        )
    return values


def volume_fractions(microstructures: np.ndarray) -> np.ndarray:
    """Fraction of phase-1 voxels in each microstructure, shape (n,)."""
    array = check_phase_maps(microstructures)
    return array.reshape(len(array), -1).mean(axis=1, dtype=np.float64)


def coarsened(microstructures: np.ndarray, factor: int) -> np.ndarray:
    """The maps on a grid ``factor`` times coarser along every axis longer than 1 (cropped
    to whole blocks): each block of voxels takes the phase most of them hold, a tie the
    phase of its first voxel (which keeps volume fractions closest). An FFT solve on it
    costs about factor³ times less."""
    array = check_phase_maps(microstructures)
    if factor == 1:
        return array
    steps = [factor if n > 1 else 1 for n in array.shape[1:]]
    blocks = [n // step for n, step in zip(array.shape[1:], steps, strict=True)]
    if 0 in blocks:
        raise DataError(f"a grid of {array.shape[1:]} voxels is smaller than one block of {factor}")
    whole = array[(slice(None), *(slice(0, b * s) for b, s in zip(blocks, steps, strict=True)))]
    split = [len(array)] + [v for pair in zip(blocks, steps, strict=True) for v in pair]
    share = whole.reshape(split).mean(axis=(2, 4, 6))
    first = whole[(slice(None), *(slice(None, None, step) for step in steps))]
    return np.where(share == 0.5, first, share > 0.5).astype(np.uint8)


def check_fields(fields: np.ndarray, shape: tuple[int, ...], name: str = "strain") -> np.ndarray:
    """``fields`` as a finite float64 array of ``shape``: one value per voxel per sample.

    ``shape`` is that of the microstructures the fields belong to, (n, n1, n2, n3); the
    message names a count or grid mismatch, or the first sample holding NaN or infinity.
    """
    values = np.asarray(fields, dtype=np.float64)
    if values.ndim != len(shape):
        raise DataError(
            f"{name} must have shape (n, n1, n2, n3) like the microstructures {shape}, "
            f"got shape {values.shape}"
        )
    if len(values) != shape[0]:
        raise DataError(f"{name} has {len(values)} fields for {shape[0]} microstructures")
    if values.shape[1:] != tuple(shape[1:]):
        raise DataError(
            f"{name} fields have grid {values.shape[1:]}, the microstructures {tuple(shape[1:])}"
        )
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"{name}[{first}] holds NaN or infinite values ({int(bad.sum())} such field(s))"
        )
    return values
