"""The camera model of simulated EBSD patterns (:class:`CameraSpec`), for domain randomisation.

Clean simulations are sharp Kikuchi bands on black; a real detector's patterns are faint
bands (a few per cent of the intensity) on a bright, lopsided backscatter background,
blurred by the phosphor, darkened towards the corners, noisy, with bad pixels. Every field
of a camera spec is a *range* (low, high), and each pattern draws its own value of each
from it, so that a network trained on the set meets many cameras. With s the brightest
pixel of the pattern's clean projection, the unit of every intensity below, in this order:

1. geometry (at projection, by :func:`~deepmat.data.ebsd_simulation.project_camera`): the
   projection centre moved by up to ± ``pc_jitter`` (per pattern, through kikuchipy's
   :class:`~kikuchipy.detectors.EBSDDetector` with one PC per pattern); the detector tilted
   by up to ± ``tilt_jitter`` degrees (kikuchipy rotates sample and detector tilt about the
   same axis, so a detector tilted by δ shows exactly the pattern of the crystal rotated by
   δ about the sample's y axis, which is how it is applied, per pattern: with the
   orientation label kept, tilt jitter is label noise of up to that angle, so keep it at 0
   unless the target camera's tilt is uncertain); and ``binning``: projected ``binning``
   times finer in each direction and averaged over binning × binning blocks, as a camera's
   pixels integrate the light that falls on them (kikuchipy point-samples the master
   pattern at pixel centres), at binning² the cost;
2. background: add amplitude · s · H, where H is a Gaussian hump of standard deviation
   ``background_width`` centred at (``background_x``, ``background_y``) (coordinates scaled
   to [-1, 1] across the detector, x to the right, y down), tilted by a plane rising by
   ``background_gradient`` (a fraction of the hump's height) from the centre to the edge in
   a random direction: the smooth backscatter yield that real patterns sit on; then add
   ``texture`` · s · T, where T is white Gaussian noise smoothed by a Gaussian of
   ``texture_width`` pixels and scaled to unit standard deviation: the spatially correlated
   structure that real patterns keep after their static background is removed (phosphor
   grain, the point-to-point change of the background, and where the dynamical simulation
   itself is off), which shot noise, being white, never imitates;
3. blur: a Gaussian point-spread function of ``blur`` pixels (standard deviation);
4. vignetting: intensities times 1 − v r²/2 (r the distance from the detector centre in
   the same scaled coordinates), so the corners lose a fraction ``vignetting`` of the light;
5. shot noise: ``counts`` electrons (drawn log-uniformly) are expected at intensity s, and
   each pixel is a Poisson count scaled back to intensity units (None: off);
6. gain: intensities times ``gain`` (log-uniform), before the read-out noise, so a low gain
   raises the read-out noise relative to the signal, as a dim, short exposure does;
7. read-out noise: add Gaussian noise of standard deviation ``read_noise`` · s;
8. gamma: I_max (I / I_max)^γ with I_max the pattern's brightest pixel (negative
   intensities clipped to 0), γ = ``gamma`` (log-uniform): γ > 1 darkens the mid-tones;
9. bad pixels: a fraction ``hot_pixels`` of the pixels stuck at the pattern's brightest
   value (saturated) and a fraction ``dead_pixels`` at 0;
   or, with ``static_removed``, the static background removed as a real scan's is: subtract
   the pattern's band-free image (its background hump alone through steps 3-8, without
   noise) times ``static_mismatch``, as a scan's one static background meets each point's
   own background only to within a few per cent (a scan's bad pixels are in its static
   background too, so they go with it);
10. output: ``"float"`` keeps float32 intensities; ``"uint8"`` stretches each pattern from
    its minimum to its maximum onto 0–255 and rounds, as an 8-bit camera with auto exposure.

A spec whose ranges are all off (the defaults: no background, blur, vignetting or noise,
gain and gamma 1, no bad pixels or jitter, binning 1, float output) changes nothing.
:data:`CAMERA_PRESETS` names ``"off"``, ``"realistic"``, whose ranges cover the 9 raw
patterns of ``kikuchipy.data.nickel_ebsd_small()`` (see :data:`REALISTIC_CAMERA`), and
``"realistic-corrected"``, the same patterns once their static background is removed (see
:data:`REALISTIC_CORRECTED_CAMERA`).
Pattern i of a set draws its values from ``np.random.SeedSequence(seed).spawn(n)[i]``'s
first child and its noise from that sequence itself, so a set is the same however it is
chunked; :func:`camera_draws` lists what each pattern drew. :func:`camera_spec` reads a
preset's name or a JSON file of ranges (``deepmat ebsd simulate --camera``).

:func:`expose` applies steps 2-10 to clean patterns. Effects at the geometry step need the
projection: :func:`~deepmat.data.ebsd_simulation.simulate_patterns` and
:func:`~deepmat.data.ebsd.write_pattern_dataset` apply a whole spec while projecting, and
:func:`~deepmat.data.ebsd_simulation.apply_noise` (patterns already projected) refuses a spec
with them. The projection itself, and :class:`~deepmat.data.ebsd_simulation.NoiseSpec` (the
earlier fixed degradation, a camera spec of single values), are
:mod:`deepmat.data.ebsd_simulation`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from deepmat.errors import ConfigError, DataError
from deepmat.specs import JsonSpec

NOISE_OUTPUTS = ("float", "uint8")


_BACKGROUND_SIGMA = 0.5  # the hump of a NoiseSpec: standard deviation in scaled coordinates


Range = tuple[float, float]


@dataclass(frozen=True)
class CameraSpec(JsonSpec):
    """A camera model whose fields are ranges (low, high) that each pattern draws from; the
    model, its units and its order are in the module docstring. A single number is the range
    of that one value. The defaults are all off: such a spec changes nothing.

    ``background``: hump amplitude (× s, the brightest clean pixel); ``background_x``,
    ``background_y``: hump centre (detector scaled to [-1, 1], x right, y down);
    ``background_width``: its standard deviation, same scale; ``background_gradient``: the tilt
    of the hump, a fraction of its amplitude at the edge; ``texture``: amplitude (× s) of a
    correlated random field, ``texture_width`` its correlation length (pixels); ``vignetting``:
    fraction of the light lost at the corners; ``blur``: Gaussian point-spread σ in pixels;
    ``counts``: electrons expected at intensity s (log-uniform; None: no shot noise); ``gain``
    (log-uniform, before the read-out noise); ``read_noise``: Gaussian σ (× s); ``gamma``
    (log-uniform); ``hot_pixels``, ``dead_pixels``: fractions of the pixels saturated and dark;
    ``pc_jitter``: the largest shift (PCx, PCy, PCz) of the projection centre, drawn uniformly
    in ± that; ``tilt_jitter``: the largest detector tilt change (degrees), ± that; ``binning``:
    projected that many times finer in each direction and averaged down (a property of the
    camera, not drawn); ``output``: ``"float"`` or ``"uint8"``; ``static_removed``: the patterns
    as they are once a scan's static background is removed, which meets each pattern's own
    background within a factor ``static_mismatch``.
    """

    what = "camera spec"

    background: Range = (0.0, 0.0)
    background_x: Range = (0.0, 0.0)
    background_y: Range = (0.0, 0.0)
    background_width: Range = (_BACKGROUND_SIGMA, _BACKGROUND_SIGMA)
    background_gradient: Range = (0.0, 0.0)
    texture: Range = (0.0, 0.0)
    texture_width: Range = (1.0, 1.0)
    vignetting: Range = (0.0, 0.0)
    blur: Range = (0.0, 0.0)
    counts: Range | None = None
    gain: Range = (1.0, 1.0)
    read_noise: Range = (0.0, 0.0)
    gamma: Range = (1.0, 1.0)
    hot_pixels: Range = (0.0, 0.0)
    dead_pixels: Range = (0.0, 0.0)
    pc_jitter: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tilt_jitter: float = 0.0
    binning: int = 1
    output: str = "float"
    static_removed: bool = False
    static_mismatch: Range = (1.0, 1.0)

    def __post_init__(self) -> None:
        for name, low, high in (
            ("background", 0.0, math.inf),
            ("background_x", -math.inf, math.inf),
            ("background_y", -math.inf, math.inf),
            ("background_width", 0.0, math.inf),
            ("background_gradient", 0.0, math.inf),
            ("texture", 0.0, math.inf),
            ("texture_width", 0.0, math.inf),
            ("vignetting", 0.0, 1.0),
            ("blur", 0.0, math.inf),
            ("gain", 0.0, math.inf),
            ("read_noise", 0.0, math.inf),
            ("gamma", 0.0, math.inf),
            ("hot_pixels", 0.0, 1.0),
            ("dead_pixels", 0.0, 1.0),
            ("static_mismatch", 0.0, math.inf),
        ):
            object.__setattr__(self, name, _range(getattr(self, name), name, low, high))
        for name in ("background_width", "texture_width", "gain", "gamma"):
            if getattr(self, name)[0] <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.counts is not None:
            counts = _range(self.counts, "counts", 0.0, math.inf)
            if counts[0] <= 0:
                raise ConfigError(f"counts must be positive (or None for no shot noise): {counts}")
            object.__setattr__(self, "counts", counts)
        if self.hot_pixels[1] + self.dead_pixels[1] > 1:
            raise ConfigError("hot_pixels and dead_pixels together must not exceed 1")
        jitter = _finite_floats(self.pc_jitter, 3, "pc_jitter")
        (tilt,) = _finite_floats([self.tilt_jitter], 1, "tilt_jitter")
        if min(*jitter, tilt) < 0:
            raise ConfigError(f"pc_jitter and tilt_jitter must not be negative: {jitter}, {tilt}")
        object.__setattr__(self, "pc_jitter", jitter)
        object.__setattr__(self, "tilt_jitter", tilt)
        if not isinstance(self.static_removed, bool | np.bool_):
            raise ConfigError(f"static_removed must be true or false, got {self.static_removed!r}")
        object.__setattr__(self, "static_removed", bool(self.static_removed))
        (binning,) = positive_ints([self.binning], 1, "binning")
        object.__setattr__(self, "binning", binning)
        if self.output not in NOISE_OUTPUTS:
            raise ConfigError(
                f"output must be one of {', '.join(NOISE_OUTPUTS)}, got {self.output!r}"
            )

    @property
    def has_geometry(self) -> bool:
        """Whether the spec changes the projection (PC or tilt jitter, binning)."""
        return any(self.pc_jitter) or self.tilt_jitter > 0 or self.binning > 1

    @property
    def is_identity(self) -> bool:
        """Whether applying this spec changes nothing."""
        hump = (
            "background_x", "background_y", "background_width", "background_gradient",
            "texture_width", "static_mismatch",
        )  # fmt: skip
        return self == CameraSpec(**{name: getattr(self, name) for name in hump})

    @property
    def dtype(self) -> np.dtype:
        """The dtype of degraded patterns."""
        return np.dtype(np.uint8 if self.output == "uint8" else np.float32)

    @classmethod
    def preset(cls, name: str) -> CameraSpec:
        """A named spec of :data:`CAMERA_PRESETS` ("off", "realistic")."""
        if name not in CAMERA_PRESETS:
            raise ConfigError(
                f"unknown camera preset {name!r}; known: {', '.join(sorted(CAMERA_PRESETS))}"
            )
        return CAMERA_PRESETS[name]


def _range(value: Any, name: str, low: float, high: float) -> Range:
    """``value`` (a number or a pair) as a checked range (low ≤ high, within [low, high])."""
    pair = [value, value] if isinstance(value, int | float | np.number) else value
    first, second = _finite_floats(pair, 2, f"{name} (a number or a range low, high)")
    if first > second:
        raise ConfigError(f"{name}: the range {first}, {second} runs backwards")
    if first < low or second > high:
        raise ConfigError(f"{name} must lie within [{low}, {high}], got {first}, {second}")
    return first, second


@dataclass(frozen=True)
class CameraDraw:
    """The values one pattern drew from a :class:`CameraSpec` (``pc_shift`` is added to the
    detector's projection centre, ``tilt`` in degrees is added to its tilt)."""

    background: float
    background_x: float
    background_y: float
    background_width: float
    background_gradient: float
    gradient_angle: float
    texture: float
    texture_width: float
    static_mismatch: float
    vignetting: float
    blur: float
    counts: float | None
    gain: float
    read_noise: float
    gamma: float
    hot_pixels: float
    dead_pixels: float
    pc_shift: tuple[float, float, float]
    tilt: float


_UNIFORM = (
    "background", "background_x", "background_y", "background_width", "background_gradient",
    "vignetting", "blur", "read_noise", "hot_pixels", "dead_pixels",
)  # fmt: skip
# drawn after the 18 numbers of the first camera model, which they leave as they were
_APPENDED = ("texture", "texture_width", "static_mismatch")
_LOG_UNIFORM = ("counts", "gain", "gamma")
_DRAWS = 21  # uniform numbers per pattern: one per range, the gradient's angle, PC, tilt


def camera_draws(camera: CameraSpec, n: int, seed: int = 0, start: int = 0) -> list[CameraDraw]:
    """What patterns start, ..., start + n - 1 of a set seeded with ``seed`` draw.

    Pattern i draws from a generator seeded with the first child of
    ``np.random.SeedSequence(seed).spawn(i + 1)[i]``: always the same numbers in the same
    order, whichever ranges are on, so one range's width never moves another's values.
    """
    return [_draw(camera, _parameter_rng(seed, start + i)) for i in range(n)]


def _parameter_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 0)))


def _noise_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def _draw(camera: CameraSpec, rng: np.random.Generator) -> CameraDraw:
    u = iter(rng.random(_DRAWS))
    values = {name: _uniform(getattr(camera, name), next(u)) for name in _UNIFORM}
    for name in _LOG_UNIFORM:
        bounds, x = getattr(camera, name), next(u)
        values[name] = None if bounds is None else _log_uniform(bounds, x)
    angle = 2 * math.pi * next(u)
    shift = tuple(j * (2 * next(u) - 1) for j in camera.pc_jitter)
    tilt = camera.tilt_jitter * (2 * next(u) - 1)
    values |= {name: _uniform(getattr(camera, name), next(u)) for name in _APPENDED}
    return CameraDraw(**values, gradient_angle=angle, pc_shift=shift, tilt=tilt)


def _uniform(bounds: Range, u: float) -> float:
    low, high = bounds
    return low if low == high else low + (high - low) * u


def _log_uniform(bounds: Range, u: float) -> float:
    low, high = bounds
    return low if low == high else math.exp(math.log(low) + (math.log(high) - math.log(low)) * u)


# Spec records and checks, shared with the specs of deepmat.data.ebsd_simulation (which
# imports this module, never the other way round).


def positive_ints(values: Any, count: int, name: str) -> tuple[int, ...]:
    try:
        items = tuple(values)
    except TypeError:
        items = ()
    if len(items) != count or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in items
    ):
        raise ConfigError(f"{name} must be {count} positive integer(s), got {values!r}")
    return tuple(int(v) for v in items)


def _finite_floats(values: Any, count: int, name: str) -> tuple[float, ...]:
    try:
        items = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        items = ()
    if len(items) != count or not all(math.isfinite(v) for v in items):
        raise ConfigError(f"{name} must be {count} finite number(s), got {values!r}")
    return items


# The ranges of the realistic camera, read off the 9 raw 60×60 patterns of
# kikuchipy.data.nickel_ebsd_small() (two grains) against their clean projections at the
# orientations and projection centres of its crystal map. With s the brightest clean pixel:
REALISTIC_CAMERA = CameraSpec(
    # the static background is a hump ~5 s high: the bands are ~2 % of the intensity on it
    background=(2.0, 8.0),
    # its centre sits left of and above the detector centre (fit: x -0.2, y -0.1), its
    # standard deviation is 0.85-0.9 of the half-width, tilted by a plane of ~0.08 of its
    # height; its darkest smoothed value is 0.29 of its brightest (camera: 0.09-0.44)
    background_x=(-0.4, 0.3),
    background_y=(-0.4, 0.3),
    background_width=(0.7, 1.4),
    background_gradient=(0.0, 0.15),
    vignetting=(0.0, 0.2),
    # the bands are about as sharp as the projection's: little blur at 60×60
    blur=(0.0, 0.7),
    # pixel noise 1.5 % of the intensity (same-grain pairs); high-passed band contrast over
    # noise 1.3-1.5 (camera: 0.8-2.4, 10th-90th percentile)
    counts=(200.0, 2000.0),
    gain=(0.7, 1.5),
    read_noise=(0.0, 0.03),
    gamma=(0.8, 1.25),
    # none seen in the scan; a few per pattern at most
    hot_pixels=(0.0, 0.0005),
    dead_pixels=(0.0, 0.0005),
    # the scan's 9 projection centres lie within 0.006 of their mean
    pc_jitter=(0.005, 0.005, 0.005),
    # label noise (see the module docstring): off
    tilt_jitter=0.0,
    binning=2,
    # the scan is 8-bit
    output="uint8",
)
# Overall: the normalised cross-correlation of a pattern with its clean projection, both
# after kikuchipy's dynamic background removal, is 0.39-0.51 for the real patterns (after
# their static background's removal; 0.15-0.25 without it) and 0.33-0.64 (10th-90th
# percentile, median 0.50) for this camera at their orientations.


# A scan's patterns once its static background is removed: the realistic camera with that
# step (a mismatch of ± 5 %), which also takes its bad pixels. Read off the same 9 patterns
# after static then dynamic background removal, against their clean projections after the
# dynamic one: normalised cross-correlation 0.36-0.47 (median 0.43), and what the clean
# projection leaves is correlated over a few pixels, 0.36, 0.20 and 0.06 between pixels 1, 2
# and 5 apart (white shot noise: 0, 0, 0). This camera (150 random orientations): 0.27-0.52
# (10th-90th percentile, median 0.38), and 0.36, 0.20, -0.01: the texture gives the short
# correlation, the lower counts the noise level, a little harder than the scan.
REALISTIC_CORRECTED_CAMERA = replace(
    REALISTIC_CAMERA,
    texture=(0.05, 0.3),
    texture_width=(0.5, 2.0),
    counts=(50.0, 500.0),
    static_removed=True,
    static_mismatch=(0.95, 1.05),
)


#: named camera specs: ``off`` changes nothing, ``realistic`` is :data:`REALISTIC_CAMERA`,
#: ``realistic-corrected`` :data:`REALISTIC_CORRECTED_CAMERA`
CAMERA_PRESETS = {
    "off": CameraSpec(),
    "realistic": REALISTIC_CAMERA,
    "realistic-corrected": REALISTIC_CORRECTED_CAMERA,
}


def camera_spec(camera: str | Path) -> CameraSpec:
    """The camera spec named by ``camera``: a preset of :data:`CAMERA_PRESETS` or a JSON file
    of a spec's fields (what :meth:`CameraSpec.to_dict` writes and a pattern file's
    ``camera`` attribute records; fields left out are off), as ``deepmat ebsd simulate
    --camera`` takes it. Anything else is a :class:`~deepmat.errors.ConfigError` naming the
    choices; a file that is not such JSON is a :class:`~deepmat.errors.DataError`."""
    if isinstance(camera, str) and camera in CAMERA_PRESETS:
        return CAMERA_PRESETS[camera]
    path = Path(camera)
    if not path.is_file():
        if path.suffix.lower() == ".json" or len(path.parts) > 1:
            raise DataError(f"{path}: no such camera spec file")
        raise ConfigError(
            f"unknown camera {str(camera)!r}: give one of {', '.join(CAMERA_PRESETS)} or a "
            "JSON file of camera spec ranges"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a JSON file of camera spec ranges ({exc})") from None
    try:
        return CameraSpec.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def expose(
    patterns: np.ndarray, camera: CameraSpec, draws: list[CameraDraw], seed: int, start: int
) -> np.ndarray:
    """Clean patterns start, start + 1, ... through the camera's image effects (steps 2-10
    of the module docstring), pattern i with ``draws[i]`` and its own noise generator."""
    out = np.empty(patterns.shape, dtype=camera.dtype)
    for i, (pattern, draw) in enumerate(zip(patterns, draws, strict=True)):
        image = _camera_image(pattern, draw, _noise_rng(seed, start + i), camera.static_removed)
        out[i] = _output(image, camera.output)
    return out


def _camera_image(
    pattern: np.ndarray, draw: CameraDraw, rng: np.random.Generator, static_removed: bool = False
) -> np.ndarray:
    """One pattern's intensities (float64) after the camera; steps off are skipped, so that
    a :class:`NoiseSpec` gives bit for bit what it always gave."""
    image = pattern.astype(np.float64)
    peak = float(image.max())
    scale = peak if peak > 0 else 1.0
    background = np.zeros_like(image)
    if draw.background:
        background = draw.background * scale * _hump(image.shape, draw)
        image = image + background
    if draw.texture:
        image = image + draw.texture * scale * _texture(image.shape, draw.texture_width, rng)
    image = _optics(image, draw)
    if draw.counts is not None:
        electrons = rng.poisson(np.clip(image, 0, None) * (draw.counts / scale))
        image = electrons * (scale / draw.counts)
    image = _electronics(image, draw, rng, scale)
    if static_removed:
        band_free = _electronics(_optics(background, draw), draw, None, scale, image.max())
        return image - draw.static_mismatch * band_free
    if draw.hot_pixels or draw.dead_pixels:
        image = _bad_pixels(image, draw, rng)
    return image


def _optics(image: np.ndarray, draw: CameraDraw) -> np.ndarray:
    """Steps 3 and 4: the point-spread blur and the vignetting."""
    if draw.blur:
        image = ndimage.gaussian_filter(image, draw.blur)
    if draw.vignetting:
        image = image * (1 - draw.vignetting * _radius2(image.shape) / 2)
    return image


def _electronics(
    image: np.ndarray,
    draw: CameraDraw,
    rng: np.random.Generator | None,
    scale: float,
    full: float | None = None,
) -> np.ndarray:
    """Steps 6-8: gain, read-out noise (none without ``rng``) and gamma (about ``full``, by
    default the image's brightest pixel)."""
    if draw.gain != 1:
        image = image * draw.gain
    if draw.read_noise and rng is not None:
        image = image + rng.normal(0.0, draw.read_noise * scale, image.shape)
    if draw.gamma != 1:
        image = _gamma(image, draw.gamma, full)
    return image


def _output(image: np.ndarray, output: str) -> np.ndarray:
    if output == "uint8":
        low, high = image.min(), image.max()
        stretched = (image - low) * (255 / (high - low)) if high > low else np.zeros_like(image)
        return np.rint(stretched).astype(np.uint8)
    return image.astype(np.float32)


def _scaled_axes(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates scaled to [-1, 1] across the detector."""
    rows, cols = (np.linspace(-1.0, 1.0, size) for size in shape)
    return rows, cols


def _hump(shape: tuple[int, ...], draw: CameraDraw) -> np.ndarray:
    """The backscatter background: a Gaussian hump, height 1, tilted by a plane."""
    rows, cols = _scaled_axes(shape)
    radius2 = (rows - draw.background_y)[:, None] ** 2 + (cols - draw.background_x)[None, :] ** 2
    hump = np.exp(-radius2 / (2 * draw.background_width**2))
    if draw.background_gradient:
        direction = math.cos(draw.gradient_angle), math.sin(draw.gradient_angle)
        plane = direction[0] * cols[None, :] + direction[1] * rows[:, None]
        hump = hump + draw.background_gradient * plane
    return hump


def _texture(shape: tuple[int, ...], width: float, rng: np.random.Generator) -> np.ndarray:
    """A Gaussian random field of unit standard deviation, correlated over ``width`` pixels."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), width, mode="wrap")
    spread = field.std()
    return field / spread if spread > 0 else field


def _radius2(shape: tuple[int, ...]) -> np.ndarray:
    rows, cols = _scaled_axes(shape)
    return rows[:, None] ** 2 + cols[None, :] ** 2


def _gamma(image: np.ndarray, gamma: float, full: float | None = None) -> np.ndarray:
    full = float(image.max()) if full is None else full
    if full <= 0:
        return image
    return full * (np.clip(image, 0, None) / full) ** gamma


def _bad_pixels(image: np.ndarray, draw: CameraDraw, rng: np.random.Generator) -> np.ndarray:
    """Hot pixels at the brightest value (saturated), dead ones at 0, drawn independently
    of each other's neighbours; one uniform number per pixel decides."""
    u = rng.random(image.shape)
    full = image.max()
    image = image.copy()
    image[u < draw.hot_pixels] = full
    image[u >= 1 - draw.dead_pixels] = 0.0
    return image
