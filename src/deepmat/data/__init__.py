"""Datasets: named sources with checksums and a local cache, validated tables, honest splits,
crystal structures read from CIF folders, CSVs and JSON, random microstructures, the HDF5
format of labelled voxel data sets and simulated EBSD patterns."""

from deepmat.data.composition import CompositionTable, LoadReport, read_composition_csv
from deepmat.data.ebsd import (
    DetectorSpec,
    IndexingResult,
    NoiseSpec,
    PatternDataset,
    PatternReport,
    apply_noise,
    combine_pattern_sets,
    dictionary_index,
    master_pattern,
    read_pattern_dataset,
    sample_orientations,
    simulate_patterns,
    write_pattern_dataset,
)
from deepmat.data.microstructures import (
    Inclusions,
    MicrostructureSpec,
    gaussian_random_field,
    random_inclusions,
)
from deepmat.data.registry import (
    DATASETS,
    data_dir,
    dataset_path,
    load_dataset,
    load_structure_dataset,
)
from deepmat.data.splits import Split, chemical_system_split, grouped_split, random_split
from deepmat.data.structures import (
    StructureTable,
    read_cif_folder,
    read_structure_csv,
    read_structure_json,
)
from deepmat.data.voxels import (
    VoxelDataset,
    VoxelDatasetWriter,
    read_voxel_dataset,
    write_voxel_dataset,
)

__all__ = [
    "DATASETS",
    "CompositionTable",
    "DetectorSpec",
    "Inclusions",
    "IndexingResult",
    "LoadReport",
    "MicrostructureSpec",
    "NoiseSpec",
    "PatternDataset",
    "PatternReport",
    "Split",
    "StructureTable",
    "VoxelDataset",
    "VoxelDatasetWriter",
    "apply_noise",
    "chemical_system_split",
    "combine_pattern_sets",
    "data_dir",
    "dataset_path",
    "dictionary_index",
    "gaussian_random_field",
    "grouped_split",
    "load_dataset",
    "load_structure_dataset",
    "master_pattern",
    "random_inclusions",
    "random_split",
    "read_cif_folder",
    "read_composition_csv",
    "read_pattern_dataset",
    "read_structure_csv",
    "read_structure_json",
    "read_voxel_dataset",
    "sample_orientations",
    "simulate_patterns",
    "write_pattern_dataset",
    "write_voxel_dataset",
]
