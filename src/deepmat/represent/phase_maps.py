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
