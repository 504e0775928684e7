"""Labelled microstructure files as model inputs: voxels and the targets stored beside them.

Homogenization models predict one stiffness component, named as in the model card
("C11", "C12", ... in Mandel notation, 1-based); the data files store the whole 6×6 (or
its computed columns), so evaluation picks the component out here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepmat.data.voxels import VoxelDataset, read_voxel_dataset
from deepmat.errors import DataError


def stiffness_target(dataset: VoxelDataset, name: str, source: str = "data") -> np.ndarray:
    """The stiffness component ``name`` ("C11" ... "C66") of every sample of ``dataset``."""
    if len(name) != 3 or name[0] != "C" or not set(name[1:]) <= set("123456"):
        raise DataError(f"target {name!r} is not a stiffness component such as C11 or C12")
    if dataset.stiffness is None:
        raise DataError(f"{source}: no stiffness labels, so {name} cannot be evaluated")
    i, j = int(name[1]) - 1, int(name[2]) - 1
    values = dataset.stiffness[:, i, j]
    if not np.all(np.isfinite(values)):
        raise DataError(f"{source}: {name} was not computed for every sample (load cases)")
    return values


def read_microstructures(path: str | Path) -> np.ndarray:
    """Voxel microstructures from a deepmat HDF5 file or a NumPy ``.npy`` array."""
    path = Path(path)
    if path.suffix == ".npy":
        if not path.exists():
            raise DataError(f"{path}: no such file")
        array = np.load(path)
        return array[None] if array.ndim == 3 else array
    return read_voxel_dataset(path, with_strain=False).microstructures
