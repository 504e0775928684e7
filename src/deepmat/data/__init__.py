"""Datasets: named sources with checksums and a local cache, validated tables, honest splits."""

from deepmat.data.composition import CompositionTable, LoadReport, read_composition_csv
from deepmat.data.registry import DATASETS, data_dir, dataset_path, load_dataset
from deepmat.data.splits import Split, chemical_system_split, grouped_split, random_split

__all__ = [
    "DATASETS",
    "CompositionTable",
    "LoadReport",
    "Split",
    "chemical_system_split",
    "data_dir",
    "dataset_path",
    "grouped_split",
    "load_dataset",
    "random_split",
    "read_composition_csv",
]
