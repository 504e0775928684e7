"""Readers that turn what a user points at into validated tables: named datasets, files
and folders of compositions or crystal structures, for training, prediction and evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from deepmat.data.composition import CompositionTable, ErrorPolicy, LoadReport, composition_table
from deepmat.data.registry import DATASETS, get_dataset, load_structure_dataset
from deepmat.errors import DataError

if TYPE_CHECKING:
    from deepmat.data.structures import StructureTable

ASE_SUFFIXES = (".xyz", ".extxyz", ".traj", ".db", ".vasp", ".cfg")


def read_structures(
    data: str | Path,
    target: str | None = "target",
    *,
    table: str | Path | None = None,
    cif_column: str = "cif",
    id_column: str | None = None,
    on_error: ErrorPolicy = "raise",
    limit: int | None = None,
) -> StructureTable:
    """Structures from a named dataset (``mp-eform``), a folder or tar archive of CIFs with
    an ``id,target`` ``table``, a CSV with a CIF column, pymatgen JSON, files ASE reads
    (extended XYZ, ASE databases, trajectories: :data:`ASE_SUFFIXES`) or CIF files.

    Without a ``table``, a folder or a single CIF is read for prediction (no targets).
    """
    from deepmat.data.structures import (
        read_ase_file,
        read_cif_folder,
        read_structure_csv,
        read_structure_json,
    )

    name = str(data)
    if name in DATASETS and not Path(name).exists():
        dataset = get_dataset(name)
        own = target in (None, "target", dataset.target_column, dataset.target_name)
        return load_structure_dataset(
            name, target=None if own else target, on_error=on_error, limit=limit
        )
    path = Path(data)
    if not path.exists():
        raise DataError(
            f"{path}: no such file, folder or dataset; structure datasets: "
            f"{', '.join(n for n, d in DATASETS.items() if d.kind == 'structure')}"
        )
    if table is not None:
        return read_cif_folder(path, table, on_error=on_error, limit=limit)
    suffixes = "".join(path.suffixes).lower()
    if path.is_dir() or suffixes.endswith(".cif"):
        files = sorted(path.glob("*.cif")) if path.is_dir() else [path]
        return read_cif_files(files[:limit])
    if suffixes.endswith(".json"):
        return read_structure_json(path, target, on_error=on_error)
    if path.suffix.lower() in ASE_SUFFIXES:
        return read_ase_file(path, target, on_error=on_error)
    return read_structure_csv(path, target, cif_column, id_column, on_error=on_error, limit=limit)


def read_cif_files(files: list[Path]) -> StructureTable:
    """CIF files without targets, each named by its file (for prediction)."""
    from deepmat.data.structures import StructureTable, check_structure, parse_structure

    if not files:
        raise DataError("no CIF files given")
    structures = []
    for file in files:
        structure = parse_structure(file.read_text(errors="replace"), "cif", str(file))
        check_structure(structure, str(file))
        structures.append(structure)
    report = LoadReport(source=", ".join(map(str, files[:3])), rows_read=len(files))
    return StructureTable([f.stem for f in files], structures, None, report)


def read_structure_inputs(inputs: list[str | Path], cif_column: str = "cif") -> StructureTable:
    """CIF files, folders of them and CSVs with a CIF column, as one table without targets
    (what ``deepmat predict`` and ``explain`` read)."""
    from deepmat.data.structures import concat_tables

    return concat_tables([read_structures(path, None, cif_column=cif_column) for path in inputs])


def read_formula_inputs(inputs: list[str], formula_column: str = "formula") -> CompositionTable:
    """Formulas given as they are, or read from the ``formula_column`` of CSV files, as one
    validated table without targets; a bad formula names its input."""
    formulas: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.suffix in (".csv", ".gz") or path.is_file():
            if not path.exists():
                raise DataError(f"{item}: no such file")
            import pandas as pd

            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            if formula_column not in frame.columns:
                raise DataError(
                    f"{item}: no column {formula_column!r}; columns are {', '.join(frame.columns)}"
                )
            formulas += frame[formula_column].tolist()
        else:
            formulas.append(item)
    return composition_table(
        formulas,
        source="inputs",
        duplicates="keep",
        label=lambda i: f"input {i + 1} ({formulas[i]})",
    )
