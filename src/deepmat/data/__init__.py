"""Datasets: named sources with checksums and a local cache, validated tables, honest splits,
crystal structures read from CIF folders, CSVs and JSON, random microstructures, the HDF5
format of labelled voxel data sets and simulated EBSD patterns."""

from deepmat._lazy import lazy_exports

_EXPORTS = {
    "CacheEntry": "deepmat.data.cache_admin",
    "CompositionTable": "deepmat.data.composition",
    "DATASETS": "deepmat.data.registry",
    "DetectorSpec": "deepmat.data.ebsd_simulation",
    "Inclusions": "deepmat.data.microstructures",
    "LoadReport": "deepmat.data.composition",
    "MicrostructureSpec": "deepmat.data.microstructures",
    "NoiseSpec": "deepmat.data.ebsd_simulation",
    "PatternDataset": "deepmat.data.ebsd",
    "PatternReport": "deepmat.data.ebsd",
    "Split": "deepmat.data.splits",
    "StructureTable": "deepmat.data.structures",
    "VoxelDataset": "deepmat.data.voxels",
    "VoxelDatasetWriter": "deepmat.data.voxels",
    "apply_noise": "deepmat.data.ebsd_simulation",
    "cache_info": "deepmat.data.cache_admin",
    "chemical_system_split": "deepmat.data.splits",
    "clear_cache": "deepmat.data.cache_admin",
    "combine_pattern_sets": "deepmat.data.ebsd",
    "data_dir": "deepmat.data.registry",
    "dataset_path": "deepmat.data.registry",
    "gaussian_random_field": "deepmat.data.microstructures",
    "grouped_split": "deepmat.data.splits",
    "load_dataset": "deepmat.data.registry",
    "load_structure_dataset": "deepmat.data.registry",
    "master_pattern": "deepmat.data.ebsd_simulation",
    "random_inclusions": "deepmat.data.microstructures",
    "random_split": "deepmat.data.splits",
    "read_cif_folder": "deepmat.data.structures",
    "read_composition_csv": "deepmat.data.composition",
    "read_pattern_dataset": "deepmat.data.ebsd",
    "read_structure_csv": "deepmat.data.structures",
    "read_structure_json": "deepmat.data.structures",
    "read_voxel_dataset": "deepmat.data.voxels",
    "sample_orientations": "deepmat.data.ebsd_simulation",
    "simulate_patterns": "deepmat.data.ebsd_simulation",
    "write_pattern_dataset": "deepmat.data.ebsd",
    "write_voxel_dataset": "deepmat.data.voxels",
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(_EXPORTS)
