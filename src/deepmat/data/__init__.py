"""Datasets: named sources with checksums and a local cache, validated tables, honest splits,
random microstructures and the HDF5 format of labelled voxel data sets."""

from deepmat.data.composition import CompositionTable, LoadReport, read_composition_csv
from deepmat.data.microstructures import (
    Inclusions,
    MicrostructureSpec,
    gaussian_random_field,
    random_inclusions,
)
from deepmat.data.registry import DATASETS, data_dir, dataset_path, load_dataset
from deepmat.data.splits import Split, chemical_system_split, grouped_split, random_split
from deepmat.data.voxels import (
    VoxelDataset,
    VoxelDatasetWriter,
    read_voxel_dataset,
    write_voxel_dataset,
)

__all__ = [
    "DATASETS",
    "CompositionTable",
    "Inclusions",
    "LoadReport",
    "MicrostructureSpec",
    "Split",
    "VoxelDataset",
    "VoxelDatasetWriter",
    "chemical_system_split",
    "data_dir",
    "dataset_path",
    "gaussian_random_field",
    "grouped_split",
    "load_dataset",
    "random_inclusions",
    "random_split",
    "read_composition_csv",
    "read_voxel_dataset",
    "write_voxel_dataset",
]
