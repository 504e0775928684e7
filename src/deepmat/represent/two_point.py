"""Periodic 2-point statistics of two-phase voxel microstructures, computed by FFT.

For the indicator m(x) ∈ {0, 1} of phase 1 on a periodic grid of N = n1·n2·n3 voxels,
the 2-point autocorrelation is the probability that both ends of the vector r land in
phase 1,

.. math::

    S_2(r) = \\frac{1}{N}\\sum_x m(x)\\, m\\big((x + r) \\bmod n\\big)
           = \\frac{1}{N}\\,\\mathcal F^{-1}\\big[\\,\\overline{\\hat m}\\,\\hat m\\,\\big](r),

so :math:`S_2(0) = \\phi`, the volume fraction of phase 1, :math:`S_2(r) = S_2(-r)`, and
for a structure without long-range order :math:`S_2(r) \\to \\phi^2` once |r| exceeds the
correlation length. For two phases this one function carries all 2-point information:
the other auto- and cross-correlations follow from it and φ. The result is centred
(``fftshift``: r = 0 at index n//2 along every axis) and can be cropped to the vectors
with :math:`|r_i| \\le r_{max}`, the usual input of the PCA-and-regression homogenization
models of the materials knowledge systems (MKS) literature.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepmat.errors import DataError
from deepmat.represent.phase_maps import check_phase_maps

CHUNK = 128


def two_point_statistics(
    microstructures: np.ndarray, r_max: int | Sequence[int] | None = None
) -> np.ndarray:
    """S2(r) of phase 1 for each microstructure of a (n, n1, n2, n3) batch of 0/1 voxels.

    Returns float64 of shape (n, n1, n2, n3) with r = 0 at the centre (n1//2, n2//2,
    n3//2), or (n, 2·r1+1, 2·r2+1, 2·r3+1) with ``r_max`` (one radius for every axis, or
    one per axis: r3 = 0 for a 2-D structure extruded along x3), each radius at most
    (n_i − 1) // 2 (beyond that the window would repeat vectors).
    """
    array = check_phase_maps(microstructures)
    grid = array.shape[1:]
    if r_max is not None:
        radii = (r_max,) * 3 if np.ndim(r_max) == 0 else tuple(r_max)
        for n, r in zip(grid, radii, strict=True):
            if not 0 <= r <= (n - 1) // 2:
                raise DataError(
                    f"r_max must be between 0 and {(n - 1) // 2} along an axis of {n} voxels "
                    f"(grid {grid}), got {r}"
                )
        window = tuple(slice(n // 2 - r, n // 2 + r + 1) for n, r in zip(grid, radii, strict=True))
    else:
        window = (slice(None),) * 3
    axes = (1, 2, 3)
    out = []
    for start in range(0, len(array), CHUNK):
        spectrum = np.fft.rfftn(array[start : start + CHUNK].astype(np.float64), axes=axes)
        power = spectrum.real**2 + spectrum.imag**2
        s2 = np.fft.irfftn(power, s=grid, axes=axes) / np.prod(grid)
        out.append(np.fft.fftshift(s2, axes=axes)[(slice(None), *window)])
    return np.concatenate(out)
