"""EBSD patterns turned into network input: per-pattern standardisation.

A pattern's brightness and contrast depend on the beam current, the exposure and the camera
gain; its orientation is carried by the positions and contrasts of the Kikuchi bands. Every
pattern ``p`` (height × width pixels) is therefore mapped to zero mean and unit variance on
its own,

.. math::

    \\tilde p(x) = \\frac{p(x) - \\mu_p}{\\sigma_p}, \\qquad
    \\mu_p = \\tfrac{1}{hw}\\textstyle\\sum_x p(x), \\qquad
    \\sigma_p^2 = \\tfrac{1}{hw}\\textstyle\\sum_x (p(x) - \\mu_p)^2,

which removes brightness and exposure (an affine change of intensity ``a p + b`` with
``a > 0`` gives the same ``p̃``) and puts every input on the scale that the network's He
initialisation expects. A smooth background is not subtracted: simulated training patterns
and the patterns to index must be degraded alike (see
:class:`deepmat.data.ebsd_simulation.NoiseSpec`).
A constant pattern (σ = 0) has no bands and becomes all zeros rather than a division by
zero; so does one whose spread is below 1e-10 of its largest |pixel|, which is rounding
noise, not bands. Statistics are accumulated in float64; the output is float32 with a
channel axis, (n, 1, height, width), as 2-D convolutions take it.
"""

from __future__ import annotations

import numpy as np

from deepmat.errors import DataError

_CHUNK = 4096  # patterns standardised at a time: bounds the float64 temporaries
_CONSTANT = 1e-10  # a spread below this fraction of the largest |pixel| is a constant pattern


def check_patterns(patterns: np.ndarray, name: str = "patterns") -> np.ndarray:
    """``patterns`` as a non-empty (n, height, width) array of finite numbers.

    Raises :class:`~deepmat.errors.DataError` for a wrong number of axes, an empty batch, a
    non-numeric dtype, or NaN/infinite pixels, naming the first bad pattern and the count.
    """
    array = np.asarray(patterns)
    if array.ndim != 3:
        hint = "; add the batch axis with p[None]" if array.ndim == 2 else ""
        raise DataError(
            f"{name} must have shape (n, height, width), got {array.ndim} axes "
            f"with shape {array.shape}{hint}"
        )
    if 0 in array.shape:
        raise DataError(f"{name} is empty: shape {array.shape}")
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise DataError(f"{name} must hold pixel intensities, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array).all(axis=(1, 2))
        if bad.any():
            raise DataError(
                f"{name}[{int(np.argmax(bad))}] holds NaN or infinite pixels "
                f"({int(bad.sum())} such pattern(s))"
            )
    return array


def standardize_patterns(patterns: np.ndarray, name: str = "patterns") -> np.ndarray:
    """Each pattern at zero mean and unit variance: float32 of shape (n, 1, height, width).

    ``patterns`` is (n, height, width), float or integer (uint8 camera images); it is checked
    by :func:`check_patterns` first. Constant patterns become zeros (see the module docstring).
    """
    array = check_patterns(patterns, name)
    out = np.empty((len(array), 1, *array.shape[1:]), dtype=np.float32)
    for start in range(0, len(array), _CHUNK):
        out[start : start + _CHUNK, 0] = _standardized(array[start : start + _CHUNK])
    return out


def _standardized(patterns: np.ndarray) -> np.ndarray:
    """One chunk; a spread below rounding level counts as constant (it would only be noise)."""
    values = patterns.astype(np.float64)
    rounding = _CONSTANT * np.abs(values).max(axis=(1, 2), keepdims=True)
    values -= values.mean(axis=(1, 2), keepdims=True)
    std = np.sqrt(np.square(values).mean(axis=(1, 2), keepdims=True))
    return values / np.where(std > rounding, std, np.inf)
