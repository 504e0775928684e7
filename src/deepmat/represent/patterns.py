"""EBSD patterns turned into network input: one preprocessing for simulated and real patterns.

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
initialisation expects: kikuchipy's ``normalize_intensity`` (one standard deviation), in
float64 (:func:`standardize_patterns`). A constant pattern (σ = 0) has no bands and becomes
all zeros rather than a division by zero; so does one whose spread is below 1e-10 of its
largest |pixel|, which is rounding noise, not bands. The output is float32.

Before that, :class:`PreprocessSpec` can remove what is not bands, with kikuchipy's own
implementations on an :class:`kikuchipy.signals.EBSD` signal, in this order:

1. ``static``: subtract or divide by the static background (the mean pattern of a scan,
   which real files store; kikuchipy's ``remove_static_background``), when one is given;
2. ``dynamic``: subtract or divide by each pattern blurred by a Gaussian of ``dynamic_std``
   pixels (None: kikuchipy's width/8), in the ``filter_domain`` (kikuchipy's
   ``remove_dynamic_background``);
3. ``equalize``: adaptive histogram equalisation (kikuchipy's
   ``adaptive_histogram_equalization`` with ``equalize_kernel``, ``equalize_clip``,
   ``equalize_bins``), on 16-bit integers as kikuchipy recommends;
4. standardisation as above.

Patterns are processed as float32. kikuchipy stretches each pattern onto [-1, 1] after a
background step on float data; the result is moved onto [0, 1] before the next step, as
an unsigned integer camera's intensities start at 0, so that a division sees positive
intensities as on kikuchipy's usual 8-bit patterns. The spec is stored in an orientation
model's card and applied alike to its simulated training patterns and to every pattern it
indexes; the default (every step off) is standardisation alone, what models whose cards
predate the spec did. :data:`PREPROCESS_PRESETS` names the specs that ``deepmat train ebsd
--preprocess`` offers. Simulated sets have no static background, so step 1 acts on real
scans only; the camera model (:class:`deepmat.data.ebsd_camera.CameraSpec`) gives
simulations the backgrounds that step 2 removes from both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from deepmat.errors import ConfigError, DataError
from deepmat.specs import JsonSpec

_CHUNK = 4096  # patterns processed at a time: bounds the float64 temporaries
_CONSTANT = 1e-10  # a spread below this fraction of the largest |pixel| is a constant pattern

BACKGROUND_OPERATIONS = ("subtract", "divide", "off")
FILTER_DOMAINS = ("frequency", "spatial")


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


@dataclass(frozen=True)
class PreprocessSpec(JsonSpec):
    """How patterns are prepared for an orientation network; the steps are in the module
    docstring. The default, every step off, is standardisation alone.

    ``static``, ``dynamic``: "subtract", "divide" or "off". ``dynamic_std``: the Gaussian's
    standard deviation in pixels (None: kikuchipy's width/8). ``filter_domain``: "frequency"
    or "spatial". ``equalize``: adaptive histogram equalisation, with ``equalize_kernel``
    (rows, columns of the contextual regions; None: kikuchipy's quarter of the pattern),
    ``equalize_clip`` (0-1) and ``equalize_bins``.
    """

    what = "preprocess spec"

    static: str = "off"
    dynamic: str = "off"
    dynamic_std: float | None = None
    filter_domain: str = "frequency"
    equalize: bool = False
    equalize_kernel: tuple[int, int] | None = None
    equalize_clip: float = 0.0
    equalize_bins: int = 128

    def __post_init__(self) -> None:
        for name in ("static", "dynamic"):
            _choice(getattr(self, name), BACKGROUND_OPERATIONS, name)
        _choice(self.filter_domain, FILTER_DOMAINS, "filter_domain")
        if self.dynamic_std is not None:
            object.__setattr__(self, "dynamic_std", _positive(self.dynamic_std, "dynamic_std"))
        if not isinstance(self.equalize, bool | np.bool_):
            raise ConfigError(f"equalize must be true or false, got {self.equalize!r}")
        object.__setattr__(self, "equalize", bool(self.equalize))
        if self.equalize_kernel is not None:
            kernel = tuple(self.equalize_kernel) if _is_sequence(self.equalize_kernel) else ()
            if len(kernel) != 2 or not all(_is_positive_int(k) for k in kernel):
                raise ConfigError(
                    f"equalize_kernel must be two positive integers, got {self.equalize_kernel!r}"
                )
            object.__setattr__(self, "equalize_kernel", tuple(int(k) for k in kernel))
        clip = _number(self.equalize_clip, "equalize_clip")
        if not 0 <= clip <= 1:
            raise ConfigError(f"equalize_clip must lie within [0, 1], got {clip}")
        object.__setattr__(self, "equalize_clip", clip)
        if not _is_positive_int(self.equalize_bins):
            raise ConfigError(
                f"equalize_bins must be a positive integer, got {self.equalize_bins!r}"
            )
        object.__setattr__(self, "equalize_bins", int(self.equalize_bins))

    @property
    def removes_background(self) -> bool:
        """Whether a static or dynamic background step is on."""
        return self.static != "off" or self.dynamic != "off"

    def steps(self, static_background: bool = False) -> list[str]:
        """What :meth:`apply` does before standardising, one line a step
        (``static_background``: whether one is given), for reports such as ``deepmat ebsd
        index``'s."""
        done = []
        if self.static != "off" and static_background:
            done.append(f"static background removed ({self.static})")
        if self.dynamic != "off":
            std = "width/8" if self.dynamic_std is None else f"{self.dynamic_std:g} px"
            done.append(f"dynamic background removed ({self.dynamic}, Gaussian σ {std})")
        if self.equalize:
            done.append("adaptive histogram equalisation")
        return done

    def apply(
        self,
        patterns: np.ndarray,
        static_background: np.ndarray | None = None,
        name: str = "patterns",
    ) -> np.ndarray:
        """``patterns`` (n, height, width), checked by :func:`check_patterns`, prepared:
        float32 (n, height, width), each at zero mean and unit standard deviation.

        ``static_background`` (height, width) is removed when ``static`` is on; without one
        that step is skipped. Constant patterns become zeros. A division that meets negative
        intensities or gives non-finite ones is a :class:`~deepmat.errors.DataError` naming
        the pattern.
        """
        array = check_patterns(patterns, name)
        background = self._static(static_background, array.shape[1:])
        out = np.empty((len(array), 1, *array.shape[1:]), dtype=np.float32)
        for start in range(0, len(array), _CHUNK):
            chunk = array[start : start + _CHUNK]
            if self.removes_background or self.equalize:
                chunk = self._corrected(chunk, background, name, start)
            out[start : start + _CHUNK, 0] = _standardized(chunk)
        return out[:, 0]

    def _static(self, background: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
        """The static background to remove, checked against the pattern shape, or None."""
        if self.static == "off" or background is None:
            return None
        array = np.asarray(background)
        if array.shape != shape:
            raise DataError(
                f"the static background is {_size(array.shape)} but the patterns are {_size(shape)}"
            )
        if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
            raise DataError("the static background must hold finite pixel intensities")
        if self.static == "divide" and (array <= 0).any():
            raise DataError(
                f"the static background has {int((array <= 0).sum())} pixel(s) at or below 0: "
                'static="divide" needs positive ones (or use "subtract")'
            )
        return array.astype(np.float32)

    def _corrected(
        self, chunk: np.ndarray, background: np.ndarray | None, name: str, start: int
    ) -> np.ndarray:
        """The background and equalisation steps on one chunk, with kikuchipy; constant
        patterns are left out (kikuchipy's stretch would divide by zero) and stay constant."""
        import kikuchipy as kp

        values = chunk.astype(np.float32)  # always a copy: kikuchipy works in place
        constant = values.max(axis=(1, 2)) == values.min(axis=(1, 2))
        if constant.all():
            return values
        signal = kp.signals.EBSD(values[~constant])
        if background is not None:
            signal.remove_static_background(
                operation=self.static, static_bg=background, show_progressbar=False
            )
            signal.data = (signal.data + 1) / 2  # kikuchipy's [-1, 1] onto [0, 1]
        if self.dynamic != "off":
            self._check_divisible(signal.data, name, start, ~constant)
            signal.remove_dynamic_background(
                operation=self.dynamic,
                filter_domain=self.filter_domain,
                std=self.dynamic_std,
                show_progressbar=False,
            )
            signal.data = (signal.data + 1) / 2
        if self.equalize:
            signal.rescale_intensity(dtype_out=np.uint16, show_progressbar=False)
            signal.adaptive_histogram_equalization(
                kernel_size=self.equalize_kernel,
                clip_limit=self.equalize_clip,
                nbins=self.equalize_bins,
                show_progressbar=False,
            )
        corrected = np.asarray(signal.data, dtype=np.float32)
        bad = ~np.isfinite(corrected).all(axis=(1, 2))
        if bad.any():
            index = start + int(np.flatnonzero(~constant)[np.argmax(bad)])
            raise DataError(f"{name}[{index}]: the background removal gave NaN or infinite pixels")
        values[~constant] = corrected
        return values

    def _check_divisible(self, data: np.ndarray, name: str, start: int, kept: np.ndarray) -> None:
        """A dynamic division by a blurred pattern needs intensities of one sign."""
        if self.dynamic != "divide":
            return
        bad = (data < 0).any(axis=(1, 2))
        if bad.any():
            index = start + int(np.flatnonzero(kept)[np.argmax(bad)])
            raise DataError(
                f'{name}[{index}] has negative intensities: dynamic="divide" needs '
                'non-negative ones (use "subtract", or remove a static background first)'
            )

    @classmethod
    def preset(cls, name: str) -> PreprocessSpec:
        """A named spec of :data:`PREPROCESS_PRESETS` ("standardize", "background",
        "background-ahe"), as ``deepmat train ebsd --preprocess`` takes it."""
        if name not in PREPROCESS_PRESETS:
            raise ConfigError(
                f"unknown preprocessing {name!r}: give one of {', '.join(PREPROCESS_PRESETS)}"
            )
        return PREPROCESS_PRESETS[name]


def _choice(value: Any, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not np.isfinite(number):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return number


def _positive(value: Any, name: str) -> float:
    number = _number(value, name)
    if number <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return number


def _is_sequence(value: Any) -> bool:
    return isinstance(value, tuple | list)


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value > 0


def _size(shape: tuple[int, ...]) -> str:
    return "×".join(str(n) for n in shape)


#: standardisation alone: what a model card without a preprocess spec means
STANDARDIZE = PreprocessSpec()

#: static (when given) and dynamic background subtraction, as kikuchipy's tutorials do and
#: as files kikuchipy reads were corrected before standardised models and dictionaries
BACKGROUND_CORRECTION = PreprocessSpec(static="subtract", dynamic="subtract")

#: named specs: ``standardize`` (:data:`STANDARDIZE`), ``background``
#: (:data:`BACKGROUND_CORRECTION`) and ``background-ahe`` (that, then adaptive histogram
#: equalisation with kikuchipy's defaults)
PREPROCESS_PRESETS = {
    "standardize": STANDARDIZE,
    "background": BACKGROUND_CORRECTION,
    "background-ahe": replace(BACKGROUND_CORRECTION, equalize=True),
}
