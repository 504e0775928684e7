"""Labelled voxel-microstructure data sets on disk: one HDF5 file per set.

Layout (HDF5 through h5py; gzip-compressed, one sample per chunk, so a training loader
reads any sample without decompressing its neighbours):

- ``microstructures``: uint8 (n, n1, n2) or (n, n1, n2, n3), phase index 0 or 1 per voxel.
- ``stiffness`` (optional): float64 (n, 6, 6), the Mandel effective stiffness. Columns not
  computed (when fewer than six load cases were solved) hold NaN; the root attribute
  ``stiffness_columns`` lists those that were.
- ``strain`` (optional): float32 (n, 6, *grid), the local Mandel strain field under the
  macroscopic strain in the root attribute ``macro_strain``.
- ``iterations`` (optional): int32 (n, load cases), solver iterations per sample and load;
  ``solve_seconds`` (optional): float64 (n,), solve time per sample. These are datasets, not
  attributes, because attributes are limited to 64 KiB.
- Root attributes: ``format``, ``format_version``, ``deepmat_version`` and whatever the
  producer records (phases, contrast, solver settings, generator spec, seed, timings).
  Numbers and strings are stored as they are; dicts, lists and None as JSON strings, which
  :func:`read_voxel_dataset` decodes.

:class:`VoxelDatasetWriter` appends chunk by chunk, so a large set never sits in memory; the
reader checks what it loads and names the file and sample in every error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from deepmat import __version__
from deepmat.errors import DataError

FORMAT = "deepmat-voxels"
FORMAT_VERSION = 1
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
_OPTIONAL = ("stiffness", "strain", "iterations", "solve_seconds")
_DTYPES = {
    "microstructures": np.uint8,
    "stiffness": np.float64,
    "strain": np.float32,
    "iterations": np.int32,
    "solve_seconds": np.float64,
}


@dataclass
class VoxelDataset:
    """A labelled microstructure set as read from (or to be written to) an HDF5 file."""

    microstructures: np.ndarray
    stiffness: np.ndarray | None = None
    strain: np.ndarray | None = None
    iterations: np.ndarray | None = None
    solve_seconds: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.microstructures)

    @property
    def grid(self) -> tuple[int, ...]:
        """The shape of one microstructure, (n1, n2) or (n1, n2, n3)."""
        return tuple(self.microstructures.shape[1:])


class VoxelDatasetWriter:
    """Writes a voxel data set chunk by chunk: ``with VoxelDatasetWriter(p) as w: w.append(x)``.

    ``mode="w"`` creates (or replaces) the file; ``mode="a"`` continues an existing one. The
    datasets present are fixed by the first :meth:`append` (or by the file when appending):
    every later call must give the same labels for the same grid. ``attrs`` become root
    attributes; :meth:`set_attrs` adds or replaces some later (e.g. timings at the end).
    """

    def __init__(
        self, path: str | Path, attrs: Mapping[str, Any] | None = None, *, mode: str = "w"
    ):
        self.path = Path(path)
        if mode not in ("w", "a"):
            raise DataError(f"mode must be 'w' (create) or 'a' (append), got {mode!r}")
        if mode == "a":
            _open_checked(self.path).close()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = h5py.File(self.path, "r+" if mode == "a" else "w")
        except OSError as exc:
            raise DataError(f"{self.path}: cannot open for writing: {exc}") from None
        if mode == "w":
            self.set_attrs(format=FORMAT, format_version=FORMAT_VERSION, **_version())
        if attrs:
            self.set_attrs(**attrs)

    @property
    def n(self) -> int:
        """Samples written so far."""
        return len(self._file["microstructures"]) if "microstructures" in self._file else 0

    def set_attrs(self, **attrs: Any) -> None:
        """Set root attributes (dicts, lists and None as JSON)."""
        for key, value in attrs.items():
            self._file.attrs[key] = encode_attr(key, value)

    def append(
        self,
        microstructures: np.ndarray,
        stiffness: np.ndarray | None = None,
        strain: np.ndarray | None = None,
        iterations: np.ndarray | None = None,
        solve_seconds: np.ndarray | None = None,
    ) -> int:
        """Append a batch of k samples (arrays with a leading axis k); returns the new total."""
        batch = {
            "microstructures": _check_labels_batch(microstructures),
            "stiffness": stiffness,
            "strain": strain,
            "iterations": iterations,
            "solve_seconds": solve_seconds,
        }
        batch = {k: np.asarray(v, dtype=_DTYPES[k]) for k, v in batch.items() if v is not None}
        grid = batch["microstructures"].shape[1:]
        expected = {
            "microstructures": (*grid,),
            "stiffness": (6, 6),
            "strain": (6, *grid),
            "solve_seconds": (),
        }
        count = len(batch["microstructures"])
        for key, array in batch.items():
            tail = array.shape[1:] if key == "iterations" else expected[key]
            if array.shape != (count, *tail) or (key == "iterations" and array.ndim != 2):
                want = "(k, load cases)" if key == "iterations" else str((count, *tail))
                raise DataError(
                    f"{self.path}: {key} of shape {array.shape} does not fit {count} samples "
                    f"of grid {grid}: expected {want}"
                )
        if "microstructures" not in self._file:
            for key, array in batch.items():
                self._file.create_dataset(
                    key,
                    shape=(0, *array.shape[1:]),
                    maxshape=(None, *array.shape[1:]),
                    dtype=array.dtype,
                    chunks=(1, *array.shape[1:]),
                    **_COMPRESSION,
                )
        present = sorted(k for k in _DTYPES if k in self._file)
        if sorted(batch) != present:
            raise DataError(
                f"{self.path}: this file holds {', '.join(present)}; the batch gives "
                f"{', '.join(sorted(batch))}: every append must give the same datasets"
            )
        for key, array in batch.items():
            dataset = self._file[key]
            if dataset.shape[1:] != array.shape[1:]:
                raise DataError(
                    f"{self.path}: {key} samples have shape {dataset.shape[1:]} in the file, "
                    f"{array.shape[1:]} in the batch"
                )
            start = dataset.shape[0]
            dataset.resize(start + count, axis=0)
            dataset[start:] = array
        return self.n

    def close(self) -> None:
        """Flush and close the file."""
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> VoxelDatasetWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def write_voxel_dataset(
    path: str | Path,
    microstructures: np.ndarray,
    *,
    stiffness: np.ndarray | None = None,
    strain: np.ndarray | None = None,
    iterations: np.ndarray | None = None,
    solve_seconds: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write a whole data set in one go (see :class:`VoxelDatasetWriter` for chunk by chunk)."""
    with VoxelDatasetWriter(path, attrs) as writer:
        writer.append(microstructures, stiffness, strain, iterations, solve_seconds)
    return Path(path)


def read_voxel_dataset(path: str | Path, with_strain: bool = True) -> VoxelDataset:
    """Read and check a data set; ``with_strain=False`` skips the (large) strain fields."""
    path = Path(path)
    with _open_checked(path) as file:
        attrs = {key: decode_attr(value) for key, value in file.attrs.items()}
        micro = file["microstructures"][()]
        _check_values(path, micro)
        arrays: dict[str, np.ndarray | None] = {}
        for key in _OPTIONAL:
            if key not in file or (key == "strain" and not with_strain):
                arrays[key] = None
                continue
            array = file[key][()]
            if len(array) != len(micro):
                raise DataError(
                    f"{path}: '{key}' has {len(array)} samples but 'microstructures' has "
                    f"{len(micro)}"
                )
            arrays[key] = array
    _check_label_shapes(path, micro, arrays)
    _check_finite(path, arrays, attrs.get("stiffness_columns"))
    return VoxelDataset(micro.astype(np.uint8), attrs=attrs, **arrays)


def _open_checked(path: Path):
    """The file open for reading, with a 'microstructures' dataset of a 2-D or 3-D grid."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file() or not h5py.is_hdf5(path):
        raise DataError(f"{path}: not an HDF5 file")
    file = h5py.File(path, "r")
    try:
        if not isinstance(file.get("microstructures"), h5py.Dataset):
            found = ", ".join(sorted(file)) or "nothing"
            raise DataError(
                f"{path}: no 'microstructures' dataset (found {found}); not a voxel data set"
            )
        shape = file["microstructures"].shape
        if len(shape) not in (3, 4):
            raise DataError(
                f"{path}: 'microstructures' must have shape (n, n1, n2) or (n, n1, n2, n3), "
                f"got {shape}"
            )
    except DataError:
        file.close()
        raise
    return file


def _check_labels_batch(microstructures: np.ndarray) -> np.ndarray:
    array = np.asarray(microstructures)
    if array.ndim not in (3, 4):
        raise DataError(
            "microstructures must be a batch of shape (k, n1, n2) or (k, n1, n2, n3), "
            f"got shape {array.shape}"
        )
    _check_values("microstructures", array)
    return array


def _check_values(where: Path | str, micro: np.ndarray) -> None:
    """Phase indices must be 0 or 1 (NaN and other values named with their sample)."""
    if micro.dtype == np.bool_ or (
        micro.dtype == np.uint8 and (micro.size == 0 or micro.max() <= 1)
    ):
        return
    if not (np.issubdtype(micro.dtype, np.integer) or np.issubdtype(micro.dtype, np.floating)):
        raise DataError(f"{where}: microstructures must be numbers, got dtype {micro.dtype}")
    bad = ~((micro == 0) | (micro == 1))
    if bad.any():
        sample = int(np.argmax(bad.reshape(len(micro), -1).any(axis=1)))
        values = np.unique(micro[sample][bad[sample]])[:5]
        raise DataError(
            f"{where}: microstructure {sample} holds {', '.join(map(str, values))}: "
            "phase indices must be 0 or 1"
        )


def _check_label_shapes(
    path: Path, micro: np.ndarray, arrays: Mapping[str, np.ndarray | None]
) -> None:
    grid = micro.shape[1:]
    expected = {"stiffness": (6, 6), "strain": (6, *grid), "solve_seconds": ()}
    for key, tail in expected.items():
        array = arrays.get(key)
        if array is not None and array.shape[1:] != tail:
            raise DataError(
                f"{path}: '{key}' must have shape (n{''.join(f', {t}' for t in tail)}) for "
                f"grid {grid}, got {array.shape}"
            )
    iterations = arrays.get("iterations")
    if iterations is not None and iterations.ndim != 2:
        raise DataError(f"{path}: 'iterations' must be (n, load cases), got {iterations.shape}")


def _check_finite(
    path: Path, arrays: Mapping[str, np.ndarray | None], stiffness_columns: Any
) -> None:
    """Labels must be finite, except stiffness columns that were not computed."""
    for key in ("stiffness", "strain"):
        array = arrays.get(key)
        if array is None:
            continue
        if key == "stiffness" and stiffness_columns is not None:
            array = array[:, :, list(stiffness_columns)]
        bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
        if bad.any():
            sample = int(np.argmax(bad))
            raise DataError(
                f"{path}: '{key}' of sample {sample} holds NaN or infinite values"
                f" ({int(bad.sum())} sample(s) in all)"
            )


def encode_attr(key: str, value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | bool | int | float):
        return value
    try:
        return json.dumps(_plain(value), allow_nan=True)
    except TypeError as exc:
        raise DataError(f"attribute {key!r} cannot be stored: {exc}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str) and (value.startswith(("{", "[")) or value == "null"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _version() -> dict[str, str]:
    return {"deepmat_version": __version__}
