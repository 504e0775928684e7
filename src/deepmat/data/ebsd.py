"""EBSD pattern files: simulated sets written in parallel, read back and combined.

- :func:`write_pattern_dataset` / :func:`read_pattern_dataset`: HDF5 sets simulated chunk by
  chunk in parallel with Dask (:func:`deepmat.parallel.map_chunks`) from the physics of
  :mod:`deepmat.data.ebsd_simulation` (and the camera of :mod:`deepmat.data.ebsd_camera`)
  and appended in order, so 300k+ patterns never sit in memory. Layout:

  - ``patterns``: (n, height, width), float32 or uint8 (the noise output), 16 patterns per
    HDF5 chunk, uncompressed: simulated patterns shrink only ~1.2× under gzip, which would
    cap writing near the speed of one simulating core.
  - ``rotations``: float64 (n, 4), unit quaternions scalar first (orix ``Rotation.data``).
  - root attributes: ``format``, ``format_version``, ``deepmat_version``, ``detector``,
    ``noise`` and ``camera`` (specs as JSON; a set is degraded by a
    :class:`~deepmat.data.ebsd_simulation.NoiseSpec` or by a
    :class:`~deepmat.data.ebsd_camera.CameraSpec`, whose ranges the attribute records,
    the other None; files from before the camera model have no ``camera``), ``master``
    (source, title, phase, energy), ``symmetry`` (the master's point group), ``seed``,
    ``complete`` and timings. With the seed and the spec, every pattern's camera values
    are reproducible (:func:`~deepmat.data.ebsd_camera.camera_draws`).
- :func:`save_pattern_dataset`: a set held in memory, in the same layout.
- :func:`combine_pattern_sets`: several sets of one detector as one training set.

Dictionary indexing against such a set is an estimator,
:class:`~deepmat.train.dictionary.DictionaryIndexer`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import orix.crystal_map
import orix.quaternion
import orix.sampling
from rich.console import Console

from deepmat import __version__
from deepmat.data.ebsd_camera import CameraSpec
from deepmat.data.ebsd_simulation import (
    SHIPPED_MASTER,
    Degradation,
    DetectorSpec,
    NoiseSpec,
    check_finite,
    check_seed,
    describe_master,
    loaded_master,
    render,
    rotation_batch,
)
from deepmat.data.microstructures import chunked
from deepmat.data.voxels import decode_attr, encode_attr
from deepmat.errors import ConfigError, DataError
from deepmat.parallel import map_chunks, progress_bar

if TYPE_CHECKING:
    from distributed import Client
    from kikuchipy.signals import EBSDMasterPattern
    from orix.quaternion import Rotation

FORMAT = "deepmat-ebsd-patterns"


FORMAT_VERSION = 1


_ROWS_PER_CHUNK = 16


@dataclass
class PatternDataset:
    """An EBSD pattern set as read from an HDF5 file (or assembled to index against);
    ``noise`` is how its patterns were degraded: a NoiseSpec, a CameraSpec or None."""

    patterns: np.ndarray
    rotations: Rotation
    detector: DetectorSpec
    noise: Degradation = None
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
    noise: Degradation
    seed: int


def write_pattern_dataset(
    path: str | Path,
    rotations: Rotation,
    detector_spec: DetectorSpec | None = None,
    noise: Degradation = None,
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
    split: ``noise`` a :class:`~deepmat.data.ebsd_camera.CameraSpec` (each pattern draws
    its camera from its own seed, geometry included) or a
    :class:`~deepmat.data.ebsd_simulation.NoiseSpec`. The layout is in the module docstring.
    """
    rotations = rotation_batch(rotations)
    spec = detector_spec or DetectorSpec()
    source = None if master is None else str(master)
    loaded = loaded_master(source)
    job = _Job(source, energy, spec, noise, check_seed(seed))
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


def save_pattern_dataset(path: str | Path, dataset: PatternDataset) -> Path:
    """Write a pattern set held in memory (one assembled from several noise levels, say) in
    the layout of :func:`write_pattern_dataset`, so that it reads back as it is."""
    attrs = dict(dataset.attrs) | {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "deepmat_version": __version__,
        "detector": dataset.detector.to_dict(),
        **degradation_attrs(dataset.noise),
        "n_requested": len(dataset),
        "complete": True,
    }
    shape = dataset.detector.shape
    with _create(Path(path), attrs, shape, dataset.patterns.dtype) as file:
        _append(file["patterns"], dataset.patterns)
        _append(file["rotations"], dataset.rotations.data)
    return Path(path)


def _describe(job: _Job, master: EBSDMasterPattern, n: int) -> dict[str, Any]:
    """The root attributes of a new pattern set."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "deepmat_version": __version__,
        "detector": job.detector.to_dict(),
        **degradation_attrs(job.noise),
        "master": describe_master(master, job.master or SHIPPED_MASTER, job.energy),
        "symmetry": master.phase.point_group.name,
        "seed": job.seed,
        "n_requested": n,
        "complete": False,
    }


def degradation_attrs(noise: Degradation) -> dict[str, dict | None]:
    """The attributes ``noise`` and ``camera`` of a set degraded by ``noise`` (the kind not
    used None); model cards record the same under ``training``."""
    return {
        "noise": noise.to_dict() if isinstance(noise, NoiseSpec) else None,
        "camera": noise.to_dict() if isinstance(noise, CameraSpec) else None,
    }


def _degradation(attrs: Mapping[str, Any]) -> Degradation:
    """The spec the attributes record, if any."""
    if attrs.get("camera") is not None:
        return CameraSpec.from_dict(attrs["camera"])
    if attrs.get("noise") is not None:
        return NoiseSpec.from_dict(attrs["noise"])
    return None


def _simulate_chunk(job: _Job, item: tuple[int, np.ndarray]) -> np.ndarray:
    """Patterns start, start + 1, ... of the set: one Dask task."""
    start, quaternions = item
    rotations = orix.quaternion.Rotation(quaternions)
    master = loaded_master(job.master)
    return render(
        master, rotations, job.detector, job.noise, job.seed, start, job.energy, "synchronous"
    )


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
        noise = _degradation(attrs)
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
    attributes and its noise (or camera) only when every set shares it. A different pattern
    shape, point group or projection centre (beyond 1e-6) is a DataError: a network learns
    one geometry.
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
    check_finite(path, patterns, "pattern")
    norms = np.linalg.norm(quaternions, axis=1)
    bad = ~(np.abs(norms - 1) < 1e-4)
    if bad.any():
        raise DataError(
            f"{path}: rotation {int(np.argmax(bad))} is not a unit quaternion "
            f"({int(bad.sum())} in all)"
        )
