"""Non-local pattern averaging (NLPAR) of an EBSD map: each pattern averaged with the
neighbours that show the same crystal, to lift its bands out of the camera's noise.

Neighbouring points of a map inside one grain give the same pattern up to noise; averaging
them cuts the noise by up to the square root of their number, but averaging across a
grain boundary mixes two orientations. NLPAR (Brewick, Callahan & Wright, *Microsc.
Microanal.* 25, 2019; the scheme PyEBSDIndex and EMsoft implement) weighs each neighbour by
how likely it is to show the same pattern. For patterns :math:`p_i, p_j` of :math:`N`
pixels with noise variances :math:`\\sigma_i^2, \\sigma_j^2`, two noisy copies of one pattern
have :math:`\\mathbb{E}\\,\\lVert p_i - p_j \\rVert^2 = N(\\sigma_i^2 + \\sigma_j^2)` with
standard deviation :math:`(\\sigma_i^2 + \\sigma_j^2)\\sqrt{2N}`, so

.. math::

    z_{ij} = \\frac{\\lVert p_i - p_j \\rVert^2 - N(\\sigma_i^2 + \\sigma_j^2)}
                  {(\\sigma_i^2 + \\sigma_j^2)\\sqrt{2N}}, \\qquad
    w_{ij} = \\exp\\!\\left(-\\frac{\\max(z_{ij} - t, 0)}{\\lambda^2}\\right), \\qquad
    \\bar p_i = \\frac{p_i + \\sum_{j} w_{ij}\\, p_j}{1 + \\sum_j w_{ij}},

over the neighbours :math:`j` within ``search_radius`` map steps (a square window). Each
pattern's noise variance is estimated from its most similar nearest neighbour,
:math:`\\sigma_i^2 = \\min_j \\lVert p_i - p_j \\rVert^2 / 2N` over the (up to) 8 adjacent
points, which is the noise itself when that neighbour shows the same crystal. ``λ`` sets how
far from "the same pattern" a neighbour may be and still count; by default it is chosen per
map, without any orientation, so that a pattern keeps on average ``self_weight`` of the
weight among itself and its adjacent points (PyEBSDIndex's middle target, a third).

Patterns are averaged as stored, before any background correction, so that whatever
indexes them prepares them as before (a background is a smooth part of each pattern that the
corrections remove after averaging). The distances may be taken on other versions of the
same patterns (``compare``): :func:`deepmat.workflows.ebsd.average_scan` compares them
background-corrected, as a backscatter background that varies over the map is not a
difference of bands (on a simulated camera map of 8 grains, comparing the raw patterns let 3
of 144 points average across a boundary, comparing the corrected ones 1, a grain of one
point).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from deepmat.errors import ConfigError, DataError
from deepmat.represent.patterns import _is_positive_int, _positive, check_patterns
from deepmat.specs import JsonSpec

_LAMBDA_RANGE = (0.05, 10.0)  # the automatic λ's search interval
_BLOCK_BYTES = 256 * 2**20  # float32 pattern data read at a time
_SAME = 1e-3  # squared distance per pixel below which two patterns are copies, not noise


@dataclass(frozen=True)
class NeighbourAveraging(JsonSpec):
    """How a map's patterns are averaged with their neighbours (see the module docstring).

    ``lam``: λ (None: chosen per map for ``self_weight``); ``search_radius``: the window's
    half-width in map steps; ``threshold``: ``t``, the z-score below which a neighbour counts
    fully; ``self_weight``: the automatic λ's target, in (0, 1).
    """

    what = "neighbour averaging spec"

    lam: float | None = None
    search_radius: int = 3
    threshold: float = 0.0
    self_weight: float = 1 / 3

    def __post_init__(self) -> None:
        if self.lam is not None:
            object.__setattr__(self, "lam", _positive(self.lam, "lam"))
        if not _is_positive_int(self.search_radius):
            raise ConfigError(
                f"search_radius must be a positive integer, got {self.search_radius!r}"
            )
        object.__setattr__(self, "search_radius", int(self.search_radius))
        if not 0 < _positive(self.self_weight, "self_weight") < 1:
            raise ConfigError(f"self_weight must lie within (0, 1), got {self.self_weight!r}")
        if not np.isfinite(self.threshold):
            raise ConfigError(f"threshold must be finite, got {self.threshold!r}")


@dataclass
class AveragedMap:
    """A map's patterns after :func:`average_neighbours`: ``patterns`` (n, height, width)
    float32, the ``lam`` used, each pattern's estimated noise standard deviation ``noise``
    (n,; on the scale of the patterns compared), its ``self_weight`` (n,), the share of its
    average that is its own pattern, and the ``spec`` they were averaged by."""

    patterns: np.ndarray
    lam: float
    noise: np.ndarray
    self_weight: np.ndarray
    spec: NeighbourAveraging

    def description(self) -> str:
        """One line for indexing reports."""
        chosen = "chosen for the map" if self.spec.lam is None else "given"
        return (
            f"neighbour patterns averaged (NLPAR, λ {self.lam:.3g} {chosen}, search radius "
            f"{self.spec.search_radius}; median own share {np.median(self.self_weight):.2f})"
        )


def average_neighbours(
    patterns: np.ndarray,
    scan_shape: tuple[int, ...],
    spec: NeighbourAveraging | None = None,
    name: str = "the scan",
    compare: Callable[[np.ndarray], np.ndarray] | None = None,
    block_rows: int | None = None,
) -> AveragedMap:
    """The patterns (n, height, width) of a map of ``scan_shape`` (rows, columns), row by
    row, each averaged with its neighbours by NLPAR (module docstring).

    ``compare`` maps patterns (k, height, width) to the same patterns as the weights should
    judge them, e.g. background-corrected, so that a backscatter background that varies over
    the map does not count as a difference of bands (None: the patterns themselves); it is
    applied to a block of map rows at a time. The map is read ``block_rows`` rows at a time
    (None: as many as fit in about 256 MB as float32), with the search radius's rows around
    them, so that only the float32 average is held whole. A scan that is not a map of at
    least two points (a set of patterns, a single point) or whose shape does not hold its n
    patterns is a :class:`DataError` naming ``name``.
    """
    spec = spec or NeighbourAveraging()
    array = check_patterns(patterns, f"{name}'s patterns")
    rows, columns = _map_shape(scan_shape, len(array), name)
    pixels = array.shape[1] * array.shape[2]
    block = block_rows or max(1, _BLOCK_BYTES // (4 * columns * pixels))
    reading = (array, (rows, columns), block, spec.search_radius, name)
    offsets = _offsets(spec.search_radius)
    squared = np.empty((len(offsets), rows, columns))
    for part, around, _, judged in _blocks(*reading, compare):
        for k, offset in enumerate(offsets):
            squared[k, part] = _squared_distances(judged, offset)[around]
    adjacent = np.array([max(abs(dy), abs(dx)) == 1 for dy, dx in offsets])
    variance = _noise_variance(squared[adjacent], pixels, name)
    z = _z_scores(squared, variance, offsets, pixels) - spec.threshold
    lam = spec.lam if spec.lam is not None else _choose_lambda(z[adjacent], spec.self_weight)
    weights = np.exp(-np.maximum(z, 0.0) / lam**2)  # outside the map z is inf: weight 0
    total = 1.0 + weights.sum(axis=0)
    averaged = np.empty((rows, columns, pixels), dtype=np.float32)
    for part, around, held, sub in _blocks(*reading):
        out = sub.copy()  # the halo rows' sums lack neighbours beyond the block: not kept
        for weight, offset in zip(weights[:, held], offsets, strict=True):
            points, neighbours = _pairs(sub.shape, offset)
            out[points] += weight[points][..., None] * sub[neighbours]
        averaged[part] = out[around] / total[part][..., None]
    return AveragedMap(
        averaged.reshape(array.shape),
        float(lam),
        np.sqrt(variance).ravel(),
        (1.0 / total).ravel(),
        spec,
    )


def _blocks(
    patterns: np.ndarray,
    shape: tuple[int, int],
    block: int,
    halo: int,
    name: str,
    compare: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[tuple[slice, slice, slice, np.ndarray]]:
    """The map of ``patterns`` (n, height, width) of ``shape`` (rows, columns), ``block``
    rows at a time: those rows (a slice of the map), where they lie in the float32 sub-map
    (rows, columns, pixels) that holds them and ``halo`` rows either side, the map rows that
    sub-map holds, and the sub-map, as ``compare`` gives its patterns when it is given."""
    rows, columns = shape
    for start in range(0, rows, block):
        stop = min(start + block, rows)
        low, high = max(start - halo, 0), min(stop + halo, rows)
        sub = patterns[low * columns : high * columns]
        if compare is not None:
            judged = check_patterns(compare(sub), f"{name}'s compared patterns")
            if judged.shape != sub.shape:
                raise DataError(
                    f"{name}: compare gave patterns of shape {judged.shape[1:]} for {sub.shape[1:]}"
                )
            sub = judged
        maps = sub.reshape(high - low, columns, -1).astype(np.float32)
        yield slice(start, stop), slice(start - low, stop - low), slice(low, high), maps


def _map_shape(scan_shape: tuple[int, ...], n: int, name: str = "the scan") -> tuple[int, int]:
    """(rows, columns) of a map of ``n`` patterns whose shape is ``scan_shape``; anything else
    (a set of patterns, a single point, a shape that does not hold n) is a DataError."""
    if len(scan_shape) != 2 or int(np.prod(scan_shape)) != n or n < 2:
        raise DataError(
            f"{name}: neighbour averaging needs a map (rows, columns) of at least two points "
            f"holding its {n} patterns, got scan shape {tuple(scan_shape)}"
        )
    return int(scan_shape[0]), int(scan_shape[1])


def _offsets(radius: int) -> list[tuple[int, int]]:
    """Every (row, column) step within ``radius`` but (0, 0)."""
    steps = range(-radius, radius + 1)
    return [(dy, dx) for dy in steps for dx in steps if (dy, dx) != (0, 0)]


def _pairs(shape: tuple[int, ...], offset: tuple[int, int]) -> tuple[tuple, tuple]:
    """Index of the map points (rows, columns) that have a neighbour at ``offset``, and of
    those neighbours."""
    points, neighbours = [], []
    for size, step in zip(shape[:2], offset, strict=True):
        start, stop = max(-step, 0), size - max(step, 0)
        points.append(slice(start, max(stop, start)))
        neighbours.append(slice(start + step, max(stop, start) + step))
    return tuple(points), tuple(neighbours)


def _squared_distances(maps: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """‖p_i − p_j‖² (rows, columns) from each point to its neighbour at ``offset``; inf
    where that lies outside the map."""
    points, neighbours = _pairs(maps.shape, offset)
    out = np.full(maps.shape[:2], np.inf)
    difference = maps[points] - maps[neighbours]
    out[points] = np.einsum("ijk,ijk->ij", difference, difference, dtype=np.float64)
    return out


def _noise_variance(adjacent: np.ndarray, pixels: int, name: str) -> np.ndarray:
    """σ² (rows, columns): the squared distance to the most similar adjacent pattern over
    2N, copies (distance below rounding) left out."""
    per_pixel = adjacent / (2 * pixels)
    variance = np.where(per_pixel > _SAME / 2, per_pixel, np.inf).min(axis=0)
    if not np.isfinite(variance).any():
        raise DataError(f"{name}: every pattern equals its neighbours; nothing to average")
    return np.where(np.isfinite(variance), variance, np.median(variance[np.isfinite(variance)]))


def _z_scores(
    squared: np.ndarray, variance: np.ndarray, offsets: list[tuple[int, int]], pixels: int
) -> np.ndarray:
    """z_ij (offsets, rows, columns) of the module docstring; inf outside the map."""
    z = np.empty_like(squared)
    for k, offset in enumerate(offsets):
        points, neighbours = _pairs(variance.shape, offset)
        both = variance.copy()  # beyond the map the distance is inf, and so is z
        both[points] += variance[neighbours]
        z[k] = (squared[k] - pixels * both) / (both * np.sqrt(2 * pixels))
    return z


def _choose_lambda(adjacent: np.ndarray, self_weight: float) -> float:
    """λ whose weights leave each pattern ``self_weight`` of the weight among itself and its
    adjacent points, on average (PyEBSDIndex's criterion)."""

    def miss(lam: float) -> float:
        total = 1.0 + np.exp(-np.maximum(adjacent, 0.0) / lam**2).sum(axis=0)
        return float(np.mean(np.abs(self_weight - 1.0 / total)))

    return float(minimize_scalar(miss, bounds=_LAMBDA_RANGE, method="bounded").x)
