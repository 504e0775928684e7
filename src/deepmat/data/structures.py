"""Tables of crystal structures and their targets, validated at the boundary.

A :class:`StructureTable` holds pymatgen ``Structure`` objects, one float target each (or
none, for prediction), the id of every record and a
:class:`~deepmat.data.composition.LoadReport` that accounts for every input record: kept, or
dropped and why. It is read from the layouts users already have:

- :func:`read_cif_folder`: a folder (or tar archive) of CIFs and a CSV of ``id,target``
  (CGCNN's layout; the file of ``<id>`` is ``<id>.cif``), with or without a header row;
- :func:`read_structure_csv`: a CSV with a column of CIF text (the Castelli perovskites,
  matbench-style tables);
- :func:`read_structure_json`: a JSON list of pymatgen ``Structure.as_dict()`` records, each
  with the structure under ``"structure"`` and optional ``"id"`` and target keys.

A structure is refused, with the record named, when pymatgen cannot parse it, when it has
no sites, when two sites sit closer than :data:`MIN_DISTANCE` Å (overlapping atoms, usually a
CIF whose symmetry operations were applied twice), when a lattice has no volume, or when its
target is missing or not finite. With ``on_error="drop"`` such records are skipped and
counted by reason instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import tarfile
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import ase.db
import ase.io
import numpy as np
import pandas as pd
from ase import Atoms
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from deepmat.data.composition import ErrorPolicy, LoadReport
from deepmat.errors import DataError

MIN_DISTANCE = 0.5  # Å: two sites closer than this are overlapping atoms, not a crystal


@dataclass
class StructureTable:
    """Structures with optional targets; ``ids`` name each record in errors and outputs."""

    ids: list[str]
    structures: list[Structure]
    targets: np.ndarray | None
    report: LoadReport

    def __len__(self) -> int:
        return len(self.structures)

    def keys(self) -> list[str]:
        """Identity keys for splits: equal for records that are the same crystal (see
        :func:`structure_keys`), so ``grouped_split(table.keys())`` never puts one structure
        on two sides."""
        return structure_keys(self.structures)

    def fingerprint(self) -> str:
        """SHA-256 of the (id, reduced formula, target) records: identifies training data."""
        digest = hashlib.sha256()
        targets = self.targets if self.targets is not None else [None] * len(self)
        for record, structure, value in zip(self.ids, self.structures, targets, strict=True):
            digest.update(f"{record}\t{structure.reduced_formula}\t{value!r}\n".encode())
        return digest.hexdigest()

    def subset(self, index: Iterable[int]) -> StructureTable:
        """The records at ``index``, in that order."""
        index = np.asarray(list(index), dtype=int)
        return StructureTable(
            ids=[self.ids[i] for i in index],
            structures=[self.structures[i] for i in index],
            targets=None if self.targets is None else self.targets[index],
            report=self.report,
        )


def concat_tables(tables: Sequence[StructureTable]) -> StructureTable:
    """One table of several, in order; targets kept only when every table has them."""
    if len(tables) == 1:
        return tables[0]
    has_targets = all(t.targets is not None for t in tables)
    report = LoadReport(
        source=" + ".join(t.report.source for t in tables),
        rows_read=sum(t.report.rows_read for t in tables),
    )
    for t in tables:
        report.dropped.update(t.report.dropped)
    return StructureTable(
        ids=[i for t in tables for i in t.ids],
        structures=[s for t in tables for s in t.structures],
        targets=np.concatenate([t.targets for t in tables]) if has_targets else None,
        report=report,
    )


def save_structure_table(table: StructureTable, path: Path) -> None:
    """Write an ordered-structure table as flat arrays (``.npz``, no pickle): reading it
    back is about fifty times faster than parsing the CIFs again."""
    sizes = np.array([len(s) for s in table.structures], dtype=np.int64)
    np.savez(
        path,
        ids=np.array(table.ids, dtype=str),
        sizes=sizes,
        lattices=np.stack([s.lattice.matrix for s in table.structures]),
        numbers=np.concatenate([s.atomic_numbers for s in table.structures]).astype(np.int16),
        frac_coords=np.concatenate([s.frac_coords for s in table.structures]),
        targets=table.targets if table.targets is not None else np.zeros(0),
        has_targets=table.targets is not None,
        report=json.dumps(table.report.to_dict()),
    )


def load_structure_table(path: Path) -> StructureTable:
    """A table written by :func:`save_structure_table`."""
    with np.load(path) as stored:
        ends = np.cumsum(stored["sizes"])
        numbers = np.split(stored["numbers"].astype(int), ends[:-1])
        coords = np.split(stored["frac_coords"], ends[:-1])
        structures = [
            Structure(lattice, species, frac)
            for lattice, species, frac in zip(stored["lattices"], numbers, coords, strict=True)
        ]
        report = json.loads(str(stored["report"]))
        targets = stored["targets"] if bool(stored["has_targets"]) else None
        ids = stored["ids"].tolist()
    load_report = LoadReport(report["source"], report["rows_read"])
    load_report.dropped.update(report["dropped"])
    return StructureTable(ids, structures, targets, load_report)


def structures_digest(structures: Sequence[Structure], salt: str = "") -> str:
    """A hash of every lattice, species and fractional position (to 1e-6) and ``salt``
    (what is derived from them, and how): the key of the disk caches of derived data."""
    digest = hashlib.sha256(salt.encode())
    for structure in structures:
        digest.update(np.round(structure.lattice.matrix, 6).tobytes())
        digest.update(np.asarray(structure.atomic_numbers, dtype=np.int16).tobytes())
        digest.update(np.round(structure.frac_coords, 6).tobytes())
    return digest.hexdigest()[:32]


def structure_keys(structures: Sequence[Structure]) -> list[str]:
    """``"<reduced formula>#<k>"`` per structure, where structures of one reduced formula
    share k exactly when pymatgen's ``StructureMatcher`` (default tolerances: lattice,
    sites and angles up to a scale and a supercell) finds them the same crystal. Polymorphs
    get different keys; a conventional and a primitive cell of one crystal the same."""
    by_formula: dict[str, list[int]] = defaultdict(list)
    for i, structure in enumerate(structures):
        by_formula[structure.composition.reduced_formula].append(i)
    keys = [""] * len(structures)
    matcher = StructureMatcher()
    for formula, members in by_formula.items():
        bucket = [structures[i] for i in members]
        for k, group in enumerate(_matching_groups(matcher, bucket)):
            for position in group:
                keys[members[position]] = f"{formula}#{k}"
    return keys


def _matching_groups(matcher: StructureMatcher, bucket: list[Structure]) -> list[list[int]]:
    """Positions in ``bucket`` (structures of one formula) grouped by
    ``StructureMatcher.group_structures``, which reduces each structure once rather than at
    every comparison; a lone structure is its own group without being reduced."""
    if len(bucket) == 1:
        return [[0]]
    positions: dict[int, list[int]] = defaultdict(list)  # one object may be listed twice
    for position, structure in enumerate(bucket):
        positions[id(structure)].append(position)
    return [
        [positions[id(structure)].pop(0) for structure in group]
        for group in matcher.group_structures(bucket)
    ]


def parse_structure(text: str | dict | Atoms, fmt: str, record: str) -> Structure:
    """A checked Structure from CIF (``fmt="cif"``) or pymatgen JSON text, an already
    decoded pymatgen dict or an ASE ``Atoms``; DataError naming ``record`` when it cannot be
    parsed or is not a crystal (see :func:`check_structure`)."""
    if isinstance(text, Atoms) and not all(text.pbc):
        raise DataError(f"{record}: not periodic in all three directions (pbc={text.pbc})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(text, Atoms):
                structure = AseAtomsAdaptor.get_structure(text)
            elif isinstance(text, dict):
                structure = Structure.from_dict(text)
            else:
                structure = Structure.from_str(text, fmt=fmt)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{record}: unparsable {fmt.upper()} ({reason})") from None
    check_structure(structure, record)
    return structure


def check_structure(structure: Structure, record: str) -> None:
    """DataError naming ``record`` for a structure with no sites, a lattice without volume,
    non-finite coordinates, or two sites closer than :data:`MIN_DISTANCE` Å."""
    if len(structure) == 0:
        raise DataError(f"{record}: the structure has no sites")
    volume = structure.lattice.volume
    if not math.isfinite(volume) or volume <= 1e-6:
        raise DataError(f"{record}: the lattice has no volume ({volume:g} Å³)")
    if not np.isfinite(structure.frac_coords).all():
        raise DataError(f"{record}: site coordinates are not finite")
    if len(structure) > 1:
        distances = structure.distance_matrix
        np.fill_diagonal(distances, np.inf)
        i, j = (int(k) for k in np.unravel_index(np.argmin(distances), distances.shape))
        if distances[i, j] < MIN_DISTANCE:  # row-major argmin of a symmetric matrix: i < j
            raise DataError(
                f"{record}: overlapping atoms, sites {i} ({structure[i].species_string}) and "
                f"{j} ({structure[j].species_string}) are "
                f"{distances[i, j]:.3f} Å apart (less than {MIN_DISTANCE} Å)"
            )


def read_cif_folder(
    folder: str | Path,
    table: str | Path,
    on_error: ErrorPolicy = "raise",
    limit: int | None = None,
) -> StructureTable:
    """Structures ``<id>.cif`` of ``folder`` with the targets of ``table``: a CSV whose first
    column is the id and second the target, with a header row or without one (CGCNN's
    ``id_prop.csv``). ``folder`` may also be a tar archive (``.tar``, ``.tar.gz``) holding
    the CIFs, in any sub-folder of it. ``limit`` reads only the first records of ``table``."""
    folder, table = Path(folder), Path(table)
    cifs = _cif_source(folder)
    frame = _read_csv(table)
    if frame.shape[1] < 2:
        raise DataError(f"{table}: needs two columns, id and target; found {frame.shape[1]}")
    first_line = 1
    if _is_header(frame.iloc[0, 1]):
        frame, first_line = frame.iloc[1:], 2
    frame = frame.iloc[:limit]

    def records() -> Iterator[tuple[str, str, object, str | None]]:
        for line, (raw_id, target, *_) in enumerate(frame.itertuples(index=False), first_line):
            record_id = str(raw_id).strip()
            yield f"{table}:{line} ({record_id}.cif)", record_id, target, cifs(record_id)

    return _collect(records(), "cif", f"{folder} with {table}", on_error, missing="no CIF file")


def _cif_source(source: Path) -> Callable[[str], str | None]:
    """id → the text of ``<id>.cif`` in a folder or a tar archive (None when absent). An
    archive is read once, in order: a compressed one cannot be read out of order cheaply."""
    if source.is_dir():

        def from_folder(record_id: str) -> str | None:
            path = source / f"{record_id}.cif"
            return path.read_text(errors="replace") if path.is_file() else None

        return from_folder
    if not (source.is_file() and tarfile.is_tarfile(source)):
        raise DataError(f"{source}: neither a folder of CIF files nor a tar archive of them")
    texts = {}
    with tarfile.open(source) as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".cif"):
                stem = PurePosixPath(member.name).stem
                texts[stem] = archive.extractfile(member).read().decode(errors="replace")
    return texts.get


def read_structure_csv(
    path: str | Path,
    target: str | None,
    cif_column: str = "cif",
    id_column: str | None = None,
    on_error: ErrorPolicy = "raise",
    limit: int | None = None,
) -> StructureTable:
    """Structures from the CIF text in ``cif_column`` of a CSV, with the targets of column
    ``target`` (None: no targets) and ids from ``id_column`` (None: the line number);
    ``limit`` reads only the first rows."""
    path = Path(path)
    frame = _read_csv(path, header=0).iloc[:limit]
    for column in (cif_column, target, id_column):
        if column is not None and column not in frame.columns:
            raise DataError(
                f"{path}: no column {column!r}; columns are {', '.join(map(str, frame.columns))}"
            )
    ids = frame[id_column].astype(str) if id_column else [str(i) for i in range(len(frame))]
    targets = frame[target] if target else [None] * len(frame)
    rows = zip(ids, frame[cif_column], targets, strict=True)
    records = (
        (
            f"{path}:{line} (id {record_id})",
            record_id,
            value,
            text if isinstance(text, str) else None,
        )
        for line, (record_id, text, value) in enumerate(rows, start=2)
    )
    return _collect(
        records,
        "cif",
        str(path),
        on_error,
        missing="empty CIF cell",
        has_targets=target is not None,
    )


def read_structure_json(
    path: str | Path, target: str | None, on_error: ErrorPolicy = "raise"
) -> StructureTable:
    """Structures from a JSON list of records ``{"id": ..., "structure": <pymatgen dict>,
    target: value}`` (``id`` optional: the position is used)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a list of records with a 'structure' each")
    records = (
        (
            f"{path}[{i}]",
            str(record.get("id", i)),
            record.get(target) if target else None,
            record.get("structure"),
        )
        for i, record in enumerate(data)
    )
    return _collect(
        records,
        "json",
        str(path),
        on_error,
        missing="no 'structure'",
        has_targets=target is not None,
    )


def read_ase_file(
    path: str | Path, target: str | None, on_error: ErrorPolicy = "raise"
) -> StructureTable:
    """Structures from any file ASE reads (extended XYZ, trajectories, VASP, …), targets from
    each frame's ``info[target]``; or from an ASE database (``.db``), targets from each row's
    key-value pairs. Ids come from ``info["id"]`` (a row's ``name`` key in a database) or
    the position (the row id)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if path.suffix == ".db":
            frames = [
                (f"{path} row {r.id}", str(r.get("name", r.id)), r.key_value_pairs, r.toatoms())
                for r in ase.db.connect(path).select()
            ]
        else:
            frames = [
                (f"{path} frame {i}", str(a.info.get("id", i)), a.info, a)
                for i, a in enumerate(ase.io.read(path, index=":"))
            ]
    except Exception as exc:
        raise DataError(f"{path}: ASE cannot read it ({exc})") from None
    records = (
        (where, record_id, values.get(target) if target else None, atoms)
        for where, record_id, values, atoms in frames
    )
    return _collect(
        records, "ase", str(path), on_error, missing="no atoms", has_targets=target is not None
    )


def _read_csv(path: Path, header: int | None = None) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, header=header)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None
    if frame.empty:
        raise DataError(f"{path}: holds no records")
    return frame


def _is_header(value: object) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return True
    return False


def _collect(
    records: Iterable[tuple[str, str, object, str | dict | None]],
    fmt: str,
    source: str,
    on_error: ErrorPolicy,
    missing: str,
    has_targets: bool = True,
) -> StructureTable:
    """Parse and check every (where, id, target, text or pymatgen dict) record; raise on the
    first bad one or count it by reason."""
    if on_error not in ("raise", "drop"):
        raise DataError(f"on_error must be 'raise' or 'drop', got {on_error!r}")
    report = LoadReport(source=source, rows_read=0)
    ids, structures, targets = [], [], []
    for where, record_id, value, text in records:
        report.rows_read += 1
        try:
            if text is None:
                raise DataError(f"{where}: {missing}")
            number = _target(value, where) if has_targets else math.nan
            structure = parse_structure(text, fmt, where)
        except DataError as exc:
            if on_error == "raise":
                raise DataError(
                    f"{exc}; use on_error='drop' (CLI: --drop-invalid) to skip"
                ) from None
            report.dropped[_reason(str(exc))] += 1
            continue
        ids.append(record_id)
        structures.append(structure)
        targets.append(number)
    if not structures:
        raise DataError(f"{source}: no valid structures ({report.summary()})")
    return StructureTable(ids, structures, np.array(targets) if has_targets else None, report)


def _target(value: object, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: target {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DataError(f"{where}: target is {number} (NaN or infinite)")
    return number


def _reason(message: str) -> str:
    """The kind of problem, for the drop counts: the message without the record name."""
    reason = message.split(": ", 1)[-1]
    return reason.split(" (", 1)[0].split(",", 1)[0]
