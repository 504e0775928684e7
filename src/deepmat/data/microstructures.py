"""Periodic two-phase voxel microstructures: Gaussian random fields and random inclusions.

These are the inputs of the microstructure–property models: a 2-D (n1, n2) or 3-D
(n1, n2, n3) ``uint8`` array holding the phase index, 0 (matrix) or 1, of every voxel. Every
structure is periodic, as the FFT elasticity solver that labels it assumes: a Gaussian random
field is filtered in Fourier space and inclusions wrap around the cell faces.

- :func:`gaussian_random_field`: white noise smoothed by a periodic Gaussian kernel whose
  width, the feature size, may differ per axis (anisotropy), thresholded at the quantile that
  gives the requested volume fraction of phase 1 exactly to the voxel.
- :func:`random_inclusions`: spheres, ellipsoids or fibres (finite cylinders) dropped at
  random positions until the volume fraction is reached; an inclusion is whole, so the
  achieved fraction is reported rather than exact.
- :class:`MicrostructureSpec` describes one family of structures (JSON-friendly, stored in
  data set files) and :func:`generate` draws many of them in parallel with Dask, sample i from
  ``np.random.SeedSequence(seed).spawn(n)[i]`` so the result does not depend on how the work
  is split.

Coordinates: voxel (i1, i2, i3) has its centre at the integer point (i1, i2, i3); sizes are in
voxels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from deepmat.errors import DataError
from deepmat.parallel import map_chunks
from deepmat.specs import JsonSpec

if TYPE_CHECKING:
    from distributed import Client

KINDS = ("grf", "sphere", "ellipsoid", "fibre")
INCLUSION_KINDS = ("sphere", "ellipsoid", "fibre")
DEFAULT_MAX_ATTEMPTS = 1000

Seed = int | np.random.SeedSequence | np.random.Generator | None


def gaussian_random_field(
    shape: Sequence[int],
    volume_fraction: float,
    feature_size: float | Sequence[float],
    seed: Seed = None,
) -> np.ndarray:
    """A thresholded periodic Gaussian random field: phase 1 on exactly the requested fraction.

    ``feature_size`` is the standard deviation, in voxels, of the Gaussian kernel that smooths
    the white noise (one number, or one per axis for an anisotropic structure); the field's
    autocorrelation is then a Gaussian of standard deviation √2·feature_size along each axis.
    """
    shape = check_shape(shape)
    volume_fraction = check_volume_fraction(volume_fraction)
    sizes = _per_axis(feature_size, len(shape), "feature_size")
    noise = np.random.default_rng(seed).standard_normal(shape)
    return threshold_at_fraction(periodic_gaussian_filter(noise, sizes), volume_fraction)


def periodic_gaussian_filter(
    field: np.ndarray, feature_size: float | Sequence[float]
) -> np.ndarray:
    """``field`` convolved with a periodic Gaussian of standard deviation ``feature_size``.

    The product with exp(−2π²σ²k²) in Fourier space (k in cycles per voxel) is a circular
    convolution, so the result commutes with periodic shifts (``np.roll``) of the input.
    """
    field = np.asarray(field, dtype=np.float64)
    sizes = _per_axis(feature_size, field.ndim, "feature_size")
    axes = tuple(range(field.ndim))
    freqs = [np.fft.fftfreq(n) for n in field.shape[:-1]] + [np.fft.rfftfreq(field.shape[-1])]
    kernel = np.ones([len(f) for f in freqs])
    for axis, (f, sigma) in enumerate(zip(freqs, sizes, strict=True)):
        along = np.exp(-2 * (math.pi * sigma * f) ** 2)
        kernel = kernel * along.reshape([-1 if a == axis else 1 for a in axes])
    return np.fft.irfftn(np.fft.rfftn(field) * kernel, s=field.shape, axes=axes)


def threshold_at_fraction(field: np.ndarray, volume_fraction: float) -> np.ndarray:
    """Phase 1 (uint8) on the round(fraction × size) voxels where ``field`` is largest."""
    field = np.asarray(field)
    volume_fraction = check_volume_fraction(volume_fraction)
    count = round(volume_fraction * field.size)
    if not 0 < count < field.size:
        raise DataError(
            f"volume_fraction {volume_fraction:g} rounds to {count} of the {field.size} voxels: "
            "use a fraction that leaves both phases at least one voxel, or a larger grid"
        )
    flat = np.zeros(field.size, dtype=np.uint8)
    flat[np.argpartition(field.ravel(), field.size - count)[field.size - count :]] = 1
    return flat.reshape(field.shape)


@dataclass(frozen=True, eq=False)
class Inclusions:
    """A random-inclusion structure, the fraction of phase 1 it reached and its inclusions."""

    structure: np.ndarray
    volume_fraction: float
    count: int


def random_inclusions(
    shape: Sequence[int],
    volume_fraction: float,
    kind: str = "sphere",
    size: float | Sequence[float] = 3.0,
    seed: Seed = None,
    *,
    length: float | None = None,
    direction: Sequence[float] | None = None,
    overlap: bool = True,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> Inclusions:
    """Inclusions of phase 1 in a matrix of phase 0, placed periodically at random.

    ``kind`` and ``size``: "sphere" (a radius), "ellipsoid" (semi-axes, one per dimension;
    one number gives a sphere) or "fibre" (a cylinder of radius ``size`` and ``length``,
    default the largest cell size; in 2-D a strip). ``direction`` fixes the orientation: the
    fibre axis or the ellipsoid's first semi-axis points along it, the other axes complete a
    fixed frame (the grid axes when ``direction`` is one); by default every inclusion gets
    a uniformly random orientation. ``overlap=False`` rejects an inclusion that would cover
    a voxel already taken.

    Inclusions are added until the next one would reach the volume fraction; that one is kept
    when it brings the fraction closer to the target than leaving it out, so the achieved
    fraction is within half an inclusion of the target. ``max_attempts`` placements in a row
    that add nothing (rejected for overlap, or falling on phase 1 already) mean the target
    cannot be reached, as when non-overlapping inclusions jam: a DataError says so.
    """
    shape = check_shape(shape)
    volume_fraction = check_volume_fraction(volume_fraction)
    semi_axes = _inclusion_semi_axes(kind, size, len(shape), length, shape)
    frame = None if direction is None else _frame(_direction(direction, len(shape)))
    if max_attempts < 1:
        raise DataError(f"max_attempts must be at least 1, got {max_attempts}")
    rng = np.random.default_rng(seed)
    total = math.prod(shape)
    target = max(1, round(volume_fraction * total))
    flat = np.zeros(total, dtype=np.uint8)
    filled = count = failures = 0
    while failures < max_attempts:
        centre = rng.uniform(0, shape)
        axes = _random_frame(rng, len(shape)) if frame is None else frame
        voxels = _footprint(kind, centre, axes, semi_axes, shape)
        new = voxels[flat[voxels] == 0]
        if new.size == 0 or (not overlap and new.size < voxels.size):
            failures += 1
            continue
        failures = 0
        if filled + new.size >= target:
            if count == 0 or filled + new.size - target <= target - filled:
                flat[new] = 1
                filled, count = filled + new.size, count + 1
            return Inclusions(flat.reshape(shape), filled / total, count)
        flat[new] = 1
        filled, count = filled + new.size, count + 1
    raise DataError(
        f"{kind} inclusions reached volume fraction {filled / total:.4f} of {volume_fraction:g} "
        f"({count} placed) and then {max_attempts} attempts in a row added nothing: "
        + (
            "allow overlap or use smaller inclusions"
            if not overlap
            else "use larger inclusions or a smaller volume fraction"
        )
    )


@dataclass(frozen=True)
class MicrostructureSpec(JsonSpec):
    """One family of random two-phase microstructures, stored with the data it generated.

    ``kind``: "grf", "sphere", "ellipsoid" or "fibre". ``shape``: the grid, 2-D or 3-D.
    ``volume_fraction``: of phase 1, one number, or a (min, max) range from which each sample
    draws its own uniformly. ``feature_size``: for "grf" the Gaussian kernel's standard
    deviation (one number or one per axis), for "sphere" and "fibre" the radius, for
    "ellipsoid" the semi-axes. ``length``, ``direction`` and ``overlap`` are passed to
    :func:`random_inclusions` (fibre length; fixed orientation; whether inclusions may overlap).
    """

    what = "microstructure spec"
    required = ("kind", "shape")
    spec_error = DataError

    kind: str
    shape: tuple[int, ...]
    volume_fraction: float | tuple[float, float] = 0.5
    feature_size: float | tuple[float, ...] = 3.0
    length: float | None = None
    direction: tuple[float, ...] | None = None
    overlap: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        shape = check_shape(self.shape)
        object.__setattr__(self, "shape", shape)
        if isinstance(self.volume_fraction, Sequence) and not isinstance(self.volume_fraction, str):
            low, high = _fraction_range(self.volume_fraction)
            object.__setattr__(self, "volume_fraction", (low, high))
        else:
            object.__setattr__(self, "volume_fraction", check_volume_fraction(self.volume_fraction))
        if self.kind == "grf":
            sizes = _per_axis(self.feature_size, len(shape), "feature_size")
            size = sizes[0] if len(set(sizes)) == 1 else sizes
        else:
            _inclusion_semi_axes(self.kind, self.feature_size, len(shape), self.length, shape)
            size = self.feature_size
            if isinstance(size, Sequence) and not isinstance(size, str):
                size = tuple(float(s) for s in size)
        object.__setattr__(self, "feature_size", size)
        if self.direction is not None:
            _direction(self.direction, len(shape))
            object.__setattr__(self, "direction", tuple(float(v) for v in self.direction))

    @property
    def ndim(self) -> int:
        """2 or 3."""
        return len(self.shape)

    def sample(self, seed: Seed = None) -> np.ndarray:
        """One microstructure, uint8 of ``shape``, drawn from ``seed``."""
        rng = np.random.default_rng(seed)
        fraction = self.volume_fraction
        if isinstance(fraction, tuple):
            fraction = float(rng.uniform(*fraction))
        if self.kind == "grf":
            return gaussian_random_field(self.shape, fraction, self.feature_size, rng)
        return random_inclusions(
            self.shape,
            fraction,
            self.kind,
            self.feature_size,
            rng,
            length=self.length,
            direction=self.direction,
            overlap=self.overlap,
        ).structure


def generate(
    spec: MicrostructureSpec,
    n: int,
    seed: int | np.random.SeedSequence = 0,
    client: Client | str | None = None,
    *,
    chunk_size: int = 16,
    scheduler: str = "threads",
    workers: int | None = None,
) -> np.ndarray:
    """``n`` microstructures of ``spec``, uint8 (n, *shape), drawn in parallel with Dask.

    Sample i comes from ``np.random.SeedSequence(seed).spawn(n)[i]`` whatever the chunking,
    scheduler or cluster. ``chunk_size`` samples make one Dask task; ``client`` (a
    ``distributed.Client`` or scheduler address) runs them on a cluster, otherwise the local
    ``scheduler`` (threads, processes, synchronous) with ``workers`` workers does.
    """
    if not isinstance(spec, MicrostructureSpec):
        raise DataError(f"spec must be a MicrostructureSpec, got {type(spec).__name__}")
    seeds = spawn_seeds(seed, n)
    chunks = chunked(seeds, chunk_size)
    out = np.empty((n, *spec.shape), dtype=np.uint8)
    start = 0
    task = partial(_sample_chunk, spec)
    for block in map_chunks(task, chunks, client=client, scheduler=scheduler, workers=workers):
        out[start : start + len(block)] = block
        start += len(block)
    return out


def _sample_chunk(spec: MicrostructureSpec, seeds: Sequence[np.random.SeedSequence]) -> np.ndarray:
    return np.stack([spec.sample(seed) for seed in seeds])


def spawn_seeds(seed: int | np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """The seed of every sample: ``np.random.SeedSequence(seed).spawn(n)``."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise DataError(f"the number of samples must be a positive integer, got {n!r}")
    if isinstance(seed, np.random.SeedSequence):
        return seed.spawn(int(n))
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence(int(seed)).spawn(int(n))


def chunked(items: Sequence[Any], chunk_size: int) -> list[Sequence[Any]]:
    """``items`` cut into consecutive chunks of ``chunk_size`` (the last may be shorter)."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise DataError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` as a tuple of ints, or a DataError unless it is 2-D or 3-D and positive."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if (
        dims is None
        or len(dims) not in (2, 3)
        or not all(isinstance(d, int | np.integer) and not isinstance(d, bool) for d in dims)
        or min(dims) < 1
    ):
        raise DataError(
            f"shape must be 2-D (n1, n2) or 3-D (n1, n2, n3) with positive integer sizes, "
            f"got {shape!r}"
        )
    return tuple(int(d) for d in dims)


def check_volume_fraction(volume_fraction: float) -> float:
    """``volume_fraction`` as a float, or a DataError unless it lies strictly in (0, 1)."""
    try:
        value = float(volume_fraction)
    except (TypeError, ValueError):
        value = math.nan
    if not 0 < value < 1:
        raise DataError(
            f"volume_fraction must lie strictly between 0 and 1, got {volume_fraction!r}"
        )
    return value


def _fraction_range(bounds: Sequence[float]) -> tuple[float, float]:
    if len(bounds) != 2:
        raise DataError(f"a volume_fraction range must be (min, max), got {tuple(bounds)!r}")
    low, high = (check_volume_fraction(b) for b in bounds)
    if low > high:
        raise DataError(f"volume_fraction range ({low:g}, {high:g}) has min above max")
    return low, high


def _per_axis(value: float | Sequence[float], ndim: int, name: str) -> tuple[float, ...]:
    """One positive finite float per axis from a number or an ndim-long sequence."""
    values = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if values is None:
        values = (value,) * ndim
    if len(values) != ndim:
        raise DataError(f"{name} needs one value or {ndim} (one per axis), got {value!r}")
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be numbers, got {value!r}") from None
    if not all(math.isfinite(v) and v > 0 for v in out):
        raise DataError(f"{name} must be positive and finite, got {value!r}")
    return out


def _inclusion_semi_axes(
    kind: str,
    size: float | Sequence[float],
    ndim: int,
    length: float | None,
    shape: tuple[int, ...],
) -> tuple[float, ...]:
    """Semi-axes of an inclusion in its own frame; a fibre's first one is half its length."""
    if kind not in INCLUSION_KINDS:
        raise DataError(f"inclusion kind must be one of {', '.join(INCLUSION_KINDS)}, got {kind!r}")
    if kind != "fibre" and length is not None:
        raise DataError(f"length applies to fibres only, not to a {kind}")
    if kind == "ellipsoid":
        return _per_axis(size, ndim, "ellipsoid semi-axes (size)")
    if isinstance(size, Sequence) and not isinstance(size, str):
        raise DataError(f"a {kind}'s size is one radius, got {size!r}")
    (radius,) = _per_axis(size, 1, f"{kind} radius (size)")
    if kind == "sphere":
        return (radius,) * ndim
    (full,) = _per_axis(max(shape) if length is None else length, 1, "fibre length")
    return (full / 2,) + (radius,) * (ndim - 1)


def _direction(direction: Sequence[float], ndim: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in direction)
    except (TypeError, ValueError):
        values = ()
    norm = math.hypot(*values)
    if len(values) != ndim or not math.isfinite(norm) or norm == 0:
        raise DataError(f"direction must be a non-zero {ndim}-vector, got {direction!r}")
    return tuple(v / norm for v in values)


def _frame(direction: Sequence[float]) -> np.ndarray:
    """An orthonormal frame (columns) whose first axis is ``direction``.

    The second axis is the grid axis least aligned with ``direction`` made orthogonal to it
    (Gram–Schmidt), so a grid-axis direction gives grid axes.
    """
    first = np.asarray(direction, dtype=np.float64)
    ndim = first.size
    columns = [first]
    for axis in np.argsort(np.abs(first), kind="stable"):
        if len(columns) == ndim:
            break
        candidate = np.eye(ndim)[axis]
        for column in columns:
            candidate = candidate - (candidate @ column) * column
        norm = np.linalg.norm(candidate)
        if norm > 1e-9:
            columns.append(candidate / norm)
    return np.stack(columns, axis=1)


def _random_frame(rng: np.random.Generator, ndim: int) -> np.ndarray:
    """A Haar-random orthogonal matrix: its columns are uniformly oriented axes."""
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    return q * np.sign(np.diag(r))


def _footprint(
    kind: str,
    centre: np.ndarray,
    frame: np.ndarray,
    semi_axes: tuple[float, ...],
    shape: tuple[int, ...],
) -> np.ndarray:
    """Flat indices of the voxels whose centres lie inside the inclusion, wrapped periodically."""
    semi = np.asarray(semi_axes)
    if kind == "fibre":
        axis = frame[:, 0]
        extent = semi[0] * np.abs(axis) + semi[1] * np.sqrt(np.clip(1 - axis**2, 0, None))
    else:
        extent = np.sqrt(((frame * semi) ** 2).sum(axis=1))
    ranges = [
        np.arange(math.ceil(c - e), math.floor(c + e) + 1)
        for c, e in zip(centre, extent, strict=True)
    ]
    points = np.stack(np.meshgrid(*ranges, indexing="ij"))
    local = np.einsum("ij,i...->j...", frame, points - centre.reshape(-1, *[1] * len(shape)))
    if kind == "fibre":
        inside = (np.abs(local[0]) <= semi[0]) & ((local[1:] ** 2).sum(axis=0) <= semi[1] ** 2)
    else:
        inside = ((local / semi.reshape(-1, *[1] * len(shape))) ** 2).sum(axis=0) <= 1
    wrapped = tuple(p[inside] % n for p, n in zip(points, shape, strict=True))
    return np.unique(np.ravel_multi_index(wrapped, shape))
