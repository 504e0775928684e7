"""Simulated EBSD patterns: the training data and the dictionary of orientation indexing.

The orientation CNN (after Jha et al. 2018: 60×60 patterns of nickel, cubic m-3m) learns from
patterns projected from a dynamical master pattern, and is compared with dictionary indexing
against the same simulations. This module makes and reads those patterns; kikuchipy does the
physics (master pattern, detector geometry, projection, indexing) and orix the orientations.

- :func:`master_pattern`: kikuchipy's shipped EMsoft nickel master pattern (20 kV, square
  Lambert projection, both hemispheres; offline) or a master pattern file.
- :class:`DetectorSpec`: the detector and its geometry, a JSON-friendly record of a
  :class:`kikuchipy.detectors.EBSDDetector`. The projection centre is in kikuchipy's default
  (Bruker) convention; the default is that of ``kikuchipy.data.nickel_ebsd_small()``.
- :func:`sample_orientations`: an equispaced grid over the fundamental zone (orix) or seeded
  uniformly random orientations reduced into it.
- :func:`simulate_patterns`: float32 patterns (n, height, width), rows top to bottom, in the
  master pattern's own intensity units (0–255 for the shipped one; not rescaled per pattern).
- :class:`NoiseSpec` and :func:`apply_noise`: how a clean simulation is degraded towards an
  experimental pattern. With s the brightest pixel of the clean pattern, in this order:

  1. background: add ``background`` · s · B, where B is a broad Gaussian hump, 1 at the detector
     centre and e⁻² ≈ 0.14 at the middle of each edge (coordinates scaled to [-1, 1] across
     the detector, standard deviation 0.5): the smooth backscatter yield that real patterns
     sit on before background subtraction;
  2. shot noise: ``counts`` electrons are expected at intensity s, and each pixel is a Poisson
     count scaled back to intensity units (None: off);
  3. read-out noise: add Gaussian noise of standard deviation ``gaussian_sigma`` · s;
  4. output: ``"float"`` keeps float32 intensities; ``"uint8"`` stretches each pattern from its
     minimum to its maximum onto 0–255 and rounds, as an 8-bit camera with auto exposure.

  Pattern i of a set draws its noise from ``np.random.SeedSequence(seed).spawn(n)[i]``, so a
  set is the same however it is chunked. A spec with everything off changes nothing.
- :func:`write_pattern_dataset` / :func:`read_pattern_dataset`: HDF5 sets simulated chunk by
  chunk in parallel with Dask (:func:`deepmat.parallel.map_chunks`) and appended in order, so
  300k+ patterns never sit in memory. Layout:

  - ``patterns``: (n, height, width), float32 or uint8 (the noise output), 16 patterns per
    HDF5 chunk, uncompressed: simulated patterns shrink only ~1.2× under gzip, which would
    cap writing near the speed of one simulating core.
  - ``rotations``: float64 (n, 4), unit quaternions scalar first (orix ``Rotation.data``).
  - root attributes: ``format``, ``format_version``, ``deepmat_version``, ``detector`` and
    ``noise`` (specs as JSON), ``master`` (source, title, phase, energy), ``symmetry`` (the
    master's point group), ``seed``, ``complete`` and timings.
- :func:`dictionary_index`: kikuchipy dictionary indexing (normalized cross-correlation by
  default) of patterns against a simulated set, the baseline the CNN is measured against.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import kikuchipy as kp
import numpy as np
import orix.crystal_map
import orix.quaternion
import orix.sampling
from rich.console import Console

from deepmat import __version__
from deepmat.data.microstructures import chunked
from deepmat.data.voxels import decode_attr, encode_attr
from deepmat.errors import ConfigError, DataError
from deepmat.parallel import map_chunks, progress_bar
from deepmat.physics.orientations import point_group_symmetry

if TYPE_CHECKING:
    from distributed import Client
    from kikuchipy.detectors import EBSDDetector
    from kikuchipy.signals import EBSDMasterPattern
    from orix.quaternion import Rotation
    from orix.quaternion.symmetry import Symmetry

FORMAT = "deepmat-ebsd-patterns"
FORMAT_VERSION = 1
SHIPPED_MASTER = "kikuchipy.data.nickel_ebsd_master_pattern_small"
DEFAULT_PC = (0.425, 0.213, 0.501)
NOISE_OUTPUTS = ("float", "uint8")
METRICS = ("ncc", "ndp")
_ROWS_PER_CHUNK = 16
_BACKGROUND_SIGMA = 0.5


def master_pattern(path: str | Path | None = None) -> EBSDMasterPattern:
    """An EBSD master pattern in the square Lambert projection, both hemispheres.

    ``None`` gives kikuchipy's shipped nickel master pattern (EMsoft, 20 kV, 401×401, uint8),
    which needs no download. A path is read with :func:`kikuchipy.load`; a file that is not
    a master pattern (an EBSD pattern file, another HDF5 file) is a :class:`DataError`.
    """
    if path is None:
        return kp.data.nickel_ebsd_master_pattern_small(projection="lambert", hemisphere="both")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        signal = kp.load(path, projection="lambert", hemisphere="both")
    except TypeError:  # the reader of this format takes no projection: not a master pattern
        signal = _load_any(path)
    except Exception as exc:  # kikuchipy's readers raise many kinds of errors
        raise DataError(f"{path}: kikuchipy cannot read it as a master pattern: {exc}") from None
    return _checked_master(signal, str(path))


def _load_any(path: Path) -> Any:
    try:
        return kp.load(path, lazy=True)
    except Exception as exc:
        raise DataError(f"{path}: kikuchipy cannot read it: {exc}") from None


def _checked_master(signal: Any, where: str) -> EBSDMasterPattern:
    if not isinstance(signal, kp.signals.EBSDMasterPattern):
        kind = type(signal).__name__.removeprefix("Lazy")
        raise DataError(
            f"{where}: holds {kind}, not an EBSD master pattern "
            "(an EMsoft EBSD master pattern file is expected)"
        )
    if signal.projection != "lambert":
        raise DataError(
            f"{where}: the master pattern is in the {signal.projection} projection; "
            "projecting patterns needs the square Lambert projection"
        )
    return signal


@lru_cache(maxsize=4)
def _loaded_master(path: str | None) -> EBSDMasterPattern:
    """The master pattern of ``path`` ready to project, loaded once per process."""
    return _float32_master(master_pattern(path))


def _float32_master(master: EBSDMasterPattern) -> EBSDMasterPattern:
    """float32 intensities, so kikuchipy projects them as they are instead of rescaling."""
    if master.data.dtype == np.float32:
        return master
    master = master.deepcopy()
    master.change_dtype("float32")
    return master


def _projection_master(master: EBSDMasterPattern | str | Path | None) -> EBSDMasterPattern:
    if master is None or isinstance(master, str | Path):
        return _loaded_master(None if master is None else str(master))
    return _float32_master(_checked_master(master, "master"))


def _describe_master(
    master: EBSDMasterPattern, source: str, energy: float | None
) -> dict[str, Any]:
    """The root attribute ``master``: where the patterns came from."""
    return {
        "source": source,
        "title": master.metadata.General.title,
        "phase": master.phase.name,
        "point_group": master.phase.point_group.name,
        "hemisphere": master.hemisphere,
        "energy_kv": _master_energy(master, energy),
    }


def _master_energy(master: EBSDMasterPattern, energy: float | None) -> float | None:
    """The energy projected: the one asked for, the highest of several, or EMsoft's beam energy.

    A master pattern of one energy has no energy axis; its energy is then taken from the
    EMsoft Monte Carlo settings (``EkeV``) when the file records them, else None.
    """
    names = [axis.name for axis in master.axes_manager.navigation_axes]
    if "energy" in names:
        axis = master.axes_manager["energy"].axis
        return float(axis[-1] if energy is None else axis[np.abs(axis - energy).argmin()])
    recorded = master.original_metadata.get_item("MCCLNameList.EkeV")
    return None if recorded is None else float(recorded)


@dataclass(frozen=True)
class DetectorSpec:
    """An EBSD detector and its geometry; :meth:`detector` makes the kikuchipy detector.

    ``shape``: pattern (height, width) in pixels. ``pc``: projection centre (PCx, PCy, PCz)
    in kikuchipy's default Bruker convention (fractions of the detector width, height and
    height from the top-left corner). ``sample_tilt`` and ``tilt`` (camera tilt) in degrees.
    ``binning`` and ``px_size`` (µm, unbinned) describe the camera; the projection itself
    depends only on the shape, PC and tilts.
    """

    shape: tuple[int, int] = (60, 60)
    pc: tuple[float, float, float] = DEFAULT_PC
    sample_tilt: float = 70.0
    tilt: float = 0.0
    binning: int = 8
    px_size: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _positive_ints(self.shape, 2, "detector shape"))
        pc = _finite_floats(self.pc, 3, "projection centre pc")
        if pc[2] <= 0:
            raise ConfigError(f"the projection centre's PCz must be positive, got {pc[2]}")
        object.__setattr__(self, "pc", pc)
        for name in ("sample_tilt", "tilt"):
            object.__setattr__(self, name, _finite_floats([getattr(self, name)], 1, name)[0])
        (binning,) = _positive_ints([self.binning], 1, "binning")
        object.__setattr__(self, "binning", binning)
        (px_size,) = _finite_floats([self.px_size], 1, "px_size")
        if px_size <= 0:
            raise ConfigError(f"px_size must be positive, got {px_size}")
        object.__setattr__(self, "px_size", px_size)

    def detector(self) -> EBSDDetector:
        """The :class:`kikuchipy.detectors.EBSDDetector` with this geometry."""
        return kp.detectors.EBSDDetector(
            shape=self.shape,
            pc=self.pc,
            sample_tilt=self.sample_tilt,
            tilt=self.tilt,
            binning=self.binning,
            px_size=self.px_size,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict that :meth:`from_dict` reads back."""
        return _spec_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectorSpec:
        """The spec written by :meth:`to_dict` (lists where tuples were)."""
        return _spec_from_dict(cls, data, "detector spec")


@dataclass(frozen=True)
class NoiseSpec:
    """How clean simulations are degraded; the model is in the module docstring.

    ``counts``: expected electrons at the brightest clean pixel (Poisson shot noise), None
    for none. ``gaussian_sigma``: read-out noise, a fraction of the brightest clean pixel.
    ``background``: amplitude of the smooth background hump, same unit. ``output``:
    ``"float"`` (float32) or ``"uint8"`` (each pattern stretched onto 0–255).
    """

    counts: float | None = None
    gaussian_sigma: float = 0.0
    background: float = 0.0
    output: str = "float"

    def __post_init__(self) -> None:
        if self.counts is not None:
            (counts,) = _finite_floats([self.counts], 1, "counts")
            if counts <= 0:
                raise ConfigError(f"counts must be positive (or None for no shot noise): {counts}")
            object.__setattr__(self, "counts", counts)
        for name in ("gaussian_sigma", "background"):
            (value,) = _finite_floats([getattr(self, name)], 1, name)
            if value < 0:
                raise ConfigError(f"{name} must not be negative, got {value}")
            object.__setattr__(self, name, value)
        if self.output not in NOISE_OUTPUTS:
            raise ConfigError(
                f"output must be one of {', '.join(NOISE_OUTPUTS)}, got {self.output!r}"
            )

    @property
    def is_identity(self) -> bool:
        """Whether applying this spec changes nothing."""
        return (
            self.counts is None
            and self.gaussian_sigma == 0
            and self.background == 0
            and self.output == "float"
        )

    @property
    def dtype(self) -> np.dtype:
        """The dtype of degraded patterns."""
        return np.dtype(np.uint8 if self.output == "uint8" else np.float32)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict that :meth:`from_dict` reads back."""
        return _spec_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoiseSpec:
        """The spec written by :meth:`to_dict`."""
        return _spec_from_dict(cls, data, "noise spec")


def _spec_dict(spec: DetectorSpec | NoiseSpec) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()}


def _spec_from_dict(cls: type, data: Mapping[str, Any], what: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"a {what} must be a mapping, got {type(data).__name__}")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} keys {unknown}; known: {', '.join(sorted(known))}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _positive_ints(values: Any, count: int, name: str) -> tuple[int, ...]:
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


def sample_orientations(
    resolution_deg: float | None = None,
    n: int | None = None,
    symmetry: str | Symmetry = "m-3m",
    seed: int = 0,
) -> Rotation:
    """Orientations in the fundamental zone of ``symmetry`` (a point group name or orix group).

    Exactly one of ``resolution_deg`` (an equispaced cubochoric grid with that spacing, from
    :func:`orix.sampling.get_sample_fundamental`) and ``n`` (that many rotations drawn
    uniformly from SO(3) with ``seed``, then reduced into the zone, so uniform over it).
    """
    if (resolution_deg is None) == (n is None):
        raise ConfigError("give exactly one of resolution_deg (a grid) and n (random rotations)")
    point_group = point_group_symmetry(symmetry)
    if resolution_deg is not None:
        (resolution,) = _finite_floats([resolution_deg], 1, "resolution_deg")
        if resolution <= 0:
            raise ConfigError(f"resolution_deg must be positive, got {resolution_deg}")
        return orix.sampling.get_sample_fundamental(resolution, point_group=point_group)
    (count,) = _positive_ints([n], 1, "n")
    quaternions = np.random.default_rng(_check_seed(seed)).standard_normal((count, 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    reduced = orix.quaternion.Orientation(quaternions, symmetry=point_group).reduce()
    return orix.quaternion.Rotation(reduced.data)


def apply_noise(patterns: np.ndarray, noise: NoiseSpec | None, seed: int = 0) -> np.ndarray:
    """``patterns`` (n, height, width) degraded by ``noise`` (see the module docstring).

    Pattern i draws from ``np.random.SeedSequence(seed).spawn(n)[i]``. ``None`` or a spec with
    everything off returns the patterns as float32, unchanged.
    """
    return _degrade(_pattern_batch(patterns, "patterns"), noise, _check_seed(seed), 0)


def _degrade(patterns: np.ndarray, noise: NoiseSpec | None, seed: int, start: int) -> np.ndarray:
    """Patterns start, start + 1, ... of a set seeded with ``seed``, degraded."""
    if noise is None or noise.is_identity:
        return patterns.astype(np.float32, copy=False)
    background = _background(patterns.shape[1:]) if noise.background else None
    out = np.empty(patterns.shape, dtype=noise.dtype)
    for i, pattern in enumerate(patterns):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(start + i,)))
        out[i] = _degrade_one(pattern, noise, rng, background)
    return out


def _degrade_one(
    pattern: np.ndarray, noise: NoiseSpec, rng: np.random.Generator, background: np.ndarray | None
) -> np.ndarray:
    image = pattern.astype(np.float64)
    peak = float(image.max())
    scale = peak if peak > 0 else 1.0
    if background is not None:
        image = image + noise.background * scale * background
    if noise.counts is not None:
        electrons = rng.poisson(np.clip(image, 0, None) * (noise.counts / scale))
        image = electrons * (scale / noise.counts)
    if noise.gaussian_sigma:
        image = image + rng.normal(0.0, noise.gaussian_sigma * scale, image.shape)
    if noise.output == "uint8":
        low, high = image.min(), image.max()
        stretched = (image - low) * (255 / (high - low)) if high > low else np.zeros_like(image)
        return np.rint(stretched).astype(np.uint8)
    return image.astype(np.float32)


def _background(shape: tuple[int, ...]) -> np.ndarray:
    """The smooth background hump: 1 at the centre, e⁻² at the middle of each edge."""
    rows, cols = (np.linspace(-1.0, 1.0, size) for size in shape)
    radius2 = rows[:, None] ** 2 + cols[None, :] ** 2
    return np.exp(-radius2 / (2 * _BACKGROUND_SIGMA**2))


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def simulate_patterns(
    rotations: Rotation,
    detector_spec: DetectorSpec | None = None,
    master: EBSDMasterPattern | str | Path | None = None,
    noise: NoiseSpec | None = None,
    seed: int = 0,
    *,
    energy: float | None = None,
) -> np.ndarray:
    """EBSD patterns (n, height, width) of ``rotations`` (flattened) on the detector.

    Projected by :meth:`kikuchipy.signals.EBSDMasterPattern.get_patterns` from ``master`` (a
    signal, a file, or None for the shipped nickel one) at ``energy`` (kV; None: the highest,
    or the only one), then degraded by ``noise`` with ``seed``. Clean patterns are float32 in
    the master pattern's intensity units; noisy ones have the noise's output dtype.
    """
    rotations = _rotation_batch(rotations)
    spec = detector_spec or DetectorSpec()
    clean = _project(_projection_master(master), rotations, spec, energy, "threads")
    return _degrade(clean, noise, _check_seed(seed), 0)


def _project(
    master: EBSDMasterPattern,
    rotations: Rotation,
    spec: DetectorSpec,
    energy: float | None,
    scheduler: str,
) -> np.ndarray:
    """Clean float32 patterns; ``scheduler`` runs kikuchipy's Dask graph."""
    lazy = master.get_patterns(
        rotations, spec.detector(), energy=energy, dtype_out="float32", compute=False
    )
    return np.asarray(lazy.data.compute(scheduler=scheduler))


def _rotation_batch(rotations: Rotation) -> Rotation:
    if not isinstance(rotations, orix.quaternion.Rotation):
        raise DataError(f"rotations must be an orix Rotation, got {type(rotations).__name__}")
    if rotations.size == 0:
        raise DataError("rotations is empty: there is nothing to simulate")
    return rotations.flatten()


@dataclass
class PatternDataset:
    """An EBSD pattern set as read from an HDF5 file (or assembled to index against)."""

    patterns: np.ndarray
    rotations: Rotation
    detector: DetectorSpec
    noise: NoiseSpec | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.patterns)


@dataclass(frozen=True)
class PatternReport:
    """What :func:`write_pattern_dataset` wrote and how long it took."""

    path: Path
    n: int
    shape: tuple[int, int]
    wall_seconds: float

    def summary(self) -> str:
        """One line for the console."""
        rate = self.n / self.wall_seconds if self.wall_seconds > 0 else math.inf
        return (
            f"{self.n} EBSD patterns of {self.shape[0]}×{self.shape[1]} written to {self.path} "
            f"in {self.wall_seconds:.1f} s ({rate:.0f} patterns/s)"
        )


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs to simulate a chunk (pickled to processes and clusters)."""

    master: str | None
    energy: float | None
    detector: DetectorSpec
    noise: NoiseSpec | None
    seed: int


def write_pattern_dataset(
    path: str | Path,
    rotations: Rotation,
    detector_spec: DetectorSpec | None = None,
    noise: NoiseSpec | None = None,
    *,
    master: str | Path | None = None,
    energy: float | None = None,
    seed: int = 0,
    chunk_size: int = 1024,
    client: Client | str | None = None,
    scheduler: str = "threads",
    workers: int | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> PatternReport:
    """Simulate the patterns of ``rotations`` chunk by chunk and write them to HDF5.

    One Dask task projects ``chunk_size`` patterns (kikuchipy's own graph runs inside it on one
    thread); ``client`` (a ``distributed.Client`` or scheduler address) runs the tasks on a
    cluster, otherwise the local ``scheduler`` with ``workers`` workers. ``master`` is a
    master pattern file, loaded once in every worker process, or None for the shipped
    nickel one. Finished chunks are appended in order, so the file equals
    ``simulate_patterns(rotations, detector_spec, master, noise, seed)`` however the work is
    split. The layout is in the module docstring.
    """
    rotations = _rotation_batch(rotations)
    spec = detector_spec or DetectorSpec()
    source = None if master is None else str(master)
    loaded = _loaded_master(source)
    job = _Job(source, energy, spec, noise, _check_seed(seed))
    quaternions = rotations.data
    chunks = [
        (r.start, quaternions[r.start : r.stop])
        for r in chunked(range(len(quaternions)), chunk_size)
    ]
    results = map_chunks(
        partial(_simulate_chunk, job), chunks, client=client, scheduler=scheduler, workers=workers
    )
    dtype = np.dtype(np.float32) if noise is None else noise.dtype
    start = time.perf_counter()
    with (
        _create(Path(path), _describe(job, loaded, len(quaternions)), spec.shape, dtype) as file,
        progress_bar(console, progress) as bar,
    ):
        task = bar.add_task("simulating EBSD patterns", total=len(quaternions))
        for (_, chunk_quaternions), patterns in zip(chunks, results, strict=True):
            _append(file["patterns"], patterns)
            _append(file["rotations"], chunk_quaternions)
            bar.advance(task, len(patterns))
        wall = time.perf_counter() - start
        _set_attrs(file, {"complete": True, "wall_seconds": wall})
    return PatternReport(Path(path), len(quaternions), spec.shape, wall)


def _describe(job: _Job, master: EBSDMasterPattern, n: int) -> dict[str, Any]:
    """The root attributes of a new pattern set."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "deepmat_version": __version__,
        "detector": job.detector.to_dict(),
        "noise": None if job.noise is None else job.noise.to_dict(),
        "master": _describe_master(master, job.master or SHIPPED_MASTER, job.energy),
        "symmetry": master.phase.point_group.name,
        "seed": job.seed,
        "n_requested": n,
        "complete": False,
    }


def _simulate_chunk(job: _Job, item: tuple[int, np.ndarray]) -> np.ndarray:
    """Patterns start, start + 1, ... of the set: one Dask task."""
    start, quaternions = item
    rotations = orix.quaternion.Rotation(quaternions)
    clean = _project(_loaded_master(job.master), rotations, job.detector, job.energy, "synchronous")
    return _degrade(clean, job.noise, job.seed, start)


def _create(
    path: Path, attrs: Mapping[str, Any], shape: tuple[int, int], dtype: np.dtype
) -> h5py.File:
    """A new file with empty, growable ``patterns`` and ``rotations`` datasets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        file = h5py.File(path, "w")
    except OSError as exc:
        raise DataError(f"{path}: cannot open for writing: {exc}") from None
    _set_attrs(file, attrs)
    file.create_dataset(
        "patterns",
        shape=(0, *shape),
        maxshape=(None, *shape),
        dtype=dtype,
        chunks=(_ROWS_PER_CHUNK, *shape),
    )
    file.create_dataset(
        "rotations", shape=(0, 4), maxshape=(None, 4), dtype=np.float64, chunks=(4096, 4)
    )
    return file


def _append(dataset: h5py.Dataset, rows: np.ndarray) -> None:
    start = dataset.shape[0]
    dataset.resize(start + len(rows), axis=0)
    dataset[start:] = rows


def _set_attrs(file: h5py.File, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        file.attrs[key] = encode_attr(key, value)


def read_pattern_dataset(path: str | Path) -> PatternDataset:
    """Read and check a pattern set written by :func:`write_pattern_dataset`."""
    path = Path(path)
    with _open_checked(path) as file:
        attrs = {key: decode_attr(value) for key, value in file.attrs.items()}
        patterns = file["patterns"][()]
        quaternions = file["rotations"][()]
    try:
        detector = DetectorSpec.from_dict(attrs.get("detector"))
        noise = None if attrs.get("noise") is None else NoiseSpec.from_dict(attrs["noise"])
    except ConfigError as exc:
        raise DataError(f"{path}: {exc}") from None
    _check_arrays(path, patterns, quaternions, detector)
    return PatternDataset(
        patterns, orix.quaternion.Rotation(quaternions), detector, noise, attrs=attrs
    )


def combine_pattern_sets(sets: Sequence[PatternDataset], names: Sequence[str]) -> PatternDataset:
    """One training set from several pattern sets of one detector and phase (a dictionary and
    noisy patterns at random orientations, say), in the order given; ``names`` name them in
    errors. Patterns of mixed dtypes become float32; the result keeps the first set's
    attributes and its noise only when every set shares it. A different pattern shape, point
    group or projection centre (beyond 1e-6) is a DataError: a network learns one geometry.
    """
    if not sets or len(sets) != len(names):
        raise DataError("give one or more pattern sets, each with a name")
    first, first_name = sets[0], names[0]
    for other, name in zip(sets[1:], names[1:], strict=True):
        for what, mine, theirs in (
            ("pattern shape", size_text(first.detector.shape), size_text(other.detector.shape)),
            ("point group", first.attrs.get("symmetry"), other.attrs.get("symmetry")),
        ):
            if mine != theirs:
                raise DataError(f"{name}: {what} {theirs} is not {first_name}'s {mine}")
        if not np.allclose(first.detector.pc, other.detector.pc, rtol=0, atol=1e-6):
            raise DataError(
                f"{name}: projection centre {other.detector.pc} differs from {first_name}'s "
                f"{first.detector.pc}; patterns of one detector geometry train one network"
            )
    if len(sets) == 1:
        return first
    dtypes = {ds.patterns.dtype for ds in sets}
    dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float32)
    noises = {ds.noise for ds in sets}
    return PatternDataset(
        np.concatenate([ds.patterns for ds in sets]).astype(dtype, copy=False),
        orix.quaternion.Rotation(np.concatenate([ds.rotations.data for ds in sets])),
        first.detector,
        noises.pop() if len(noises) == 1 else None,
        attrs=first.attrs,
    )


def size_text(shape: Sequence[int]) -> str:
    """A pattern shape as text: (60, 60) → "60×60"."""
    return "×".join(str(n) for n in shape)


def _open_checked(path: Path) -> h5py.File:
    """The file open for reading, tagged as a pattern set, with its two datasets."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file() or not h5py.is_hdf5(path):
        raise DataError(f"{path}: not an HDF5 file")
    file = h5py.File(path, "r")
    fmt = decode_attr(file.attrs.get("format"))
    missing = [k for k in ("patterns", "rotations") if not isinstance(file.get(k), h5py.Dataset)]
    if fmt != FORMAT or missing:
        found = ", ".join(sorted(file)) or "nothing"
        file.close()
        raise DataError(
            f"{path}: not an EBSD pattern data set (format {fmt!r}, datasets: {found}); "
            f"expected format {FORMAT!r} with 'patterns' and 'rotations'"
        )
    return file


def _check_arrays(
    path: Path, patterns: np.ndarray, quaternions: np.ndarray, detector: DetectorSpec
) -> None:
    if patterns.ndim != 3:
        raise DataError(f"{path}: 'patterns' must be (n, height, width), got {patterns.shape}")
    if quaternions.ndim != 2 or quaternions.shape[1] != 4:
        raise DataError(f"{path}: 'rotations' must be (n, 4), got {quaternions.shape}")
    if len(patterns) != len(quaternions):
        raise DataError(
            f"{path}: 'patterns' has {len(patterns)} patterns but 'rotations' has "
            f"{len(quaternions)} rows"
        )
    if len(patterns) == 0:
        raise DataError(f"{path}: holds no patterns")
    if patterns.shape[1:] != detector.shape:
        raise DataError(
            f"{path}: patterns are {patterns.shape[1]}×{patterns.shape[2]} but the detector "
            f"is {detector.shape[0]}×{detector.shape[1]}"
        )
    _check_finite(path, patterns, "pattern")
    norms = np.linalg.norm(quaternions, axis=1)
    bad = ~(np.abs(norms - 1) < 1e-4)
    if bad.any():
        raise DataError(
            f"{path}: rotation {int(np.argmax(bad))} is not a unit quaternion "
            f"({int(bad.sum())} in all)"
        )


def _check_finite(where: Path | str, patterns: np.ndarray, what: str) -> None:
    if not np.issubdtype(patterns.dtype, np.floating):
        return
    bad = ~np.isfinite(patterns.reshape(len(patterns), -1)).all(axis=1)
    if bad.any():
        raise DataError(
            f"{where}: {what} {int(np.argmax(bad))} holds NaN or infinite pixels "
            f"({int(bad.sum())} {what}(s) in all)"
        )


def _pattern_batch(patterns: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(patterns)
    if array.ndim != 3 or 0 in array.shape:
        raise DataError(f"{what} must be a non-empty (n, height, width) array, got {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise DataError(f"{what} must be numbers, got dtype {array.dtype}")
    _check_finite(what, array, "pattern")
    return array


@dataclass(frozen=True, eq=False)
class IndexingResult:
    """Dictionary indexing: the ``keep_n`` best matches of every pattern, best first.

    ``rotations`` (n, keep_n) and ``indices`` (n, keep_n, into the dictionary) of the
    matches, ``scores`` (n, keep_n) their similarity (NCC: 1 is a perfect match),
    ``settings`` how the indexing ran.
    """

    rotations: Rotation
    scores: np.ndarray
    indices: np.ndarray
    settings: dict[str, Any]

    @property
    def best(self) -> Rotation:
        """The best match of every pattern, shape (n,)."""
        return self.rotations[:, 0]


def dictionary_index(
    patterns: np.ndarray,
    dictionary: PatternDataset | tuple[np.ndarray, Rotation],
    keep_n: int = 1,
    *,
    metric: str = "ncc",
    n_per_iteration: int | None = None,
    verbose: bool = False,
) -> IndexingResult:
    """Index ``patterns`` (n, height, width) against a dictionary of simulated patterns.

    Runs :meth:`kikuchipy.signals.EBSD.dictionary_indexing` with ``metric`` ("ncc",
    normalized cross-correlation, or "ndp", normalized dot product); ``n_per_iteration``
    dictionary patterns are compared at a time (None: all at once) to bound memory.
    ``verbose`` lets kikuchipy print its report and progress.
    """
    query = _pattern_batch(patterns, "query patterns")
    reference, rotations = _dictionary_arrays(dictionary)
    if query.shape[1:] != reference.shape[1:]:
        raise DataError(
            f"query patterns are {query.shape[1]}×{query.shape[2]} but the dictionary's are "
            f"{reference.shape[1]}×{reference.shape[2]}: they must come from the same detector"
        )
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    (keep,) = _positive_ints([keep_n], 1, "keep_n")
    if n_per_iteration is not None:
        _positive_ints([n_per_iteration], 1, "n_per_iteration")
    signal = kp.signals.EBSD(reference, xmap=orix.crystal_map.CrystalMap(rotations=rotations))
    quiet = contextlib.nullcontext() if verbose else _silenced()
    with quiet:
        xmap = kp.signals.EBSD(query).dictionary_indexing(
            signal, metric=metric, keep_n=keep, n_per_iteration=n_per_iteration
        )
    indices = np.asarray(xmap.prop["simulation_indices"]).reshape(len(query), -1)
    settings = {
        "metric": metric,
        "keep_n": indices.shape[1],
        "dictionary_size": len(reference),
        "n_per_iteration": n_per_iteration or len(reference),
    }
    return IndexingResult(
        rotations=rotations[indices],
        scores=np.asarray(xmap.prop["scores"]).reshape(len(query), -1),
        indices=indices,
        settings=settings,
    )


def _dictionary_arrays(
    dictionary: PatternDataset | tuple[np.ndarray, Rotation],
) -> tuple[np.ndarray, Rotation]:
    if isinstance(dictionary, PatternDataset):
        patterns, rotations = dictionary.patterns, dictionary.rotations
    elif isinstance(dictionary, tuple) and len(dictionary) == 2:
        patterns, rotations = dictionary
    else:
        raise DataError(
            "dictionary must be a PatternDataset or a (patterns, rotations) pair, got "
            f"{type(dictionary).__name__}"
        )
    patterns = _pattern_batch(patterns, "dictionary patterns")
    rotations = _rotation_batch(rotations)
    if rotations.size != len(patterns):
        raise DataError(
            f"the dictionary has {len(patterns)} patterns but {rotations.size} rotations"
        )
    return patterns, rotations


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Swallow what kikuchipy prints (its report, Dask's and tqdm's progress bars)."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield
