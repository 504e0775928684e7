"""Structure templates: the distinct structure types of a set of known crystals.

A template is one structure type (an anonymous formula and an arrangement, "AB rocksalt")
with the known crystals that have it. Crystals are grouped by pymatgen's
``StructureMatcher.group_structures(anonymous=True)`` (default tolerances) inside buckets of
one anonymous reduced formula, one space group (spglib at ``symprec`` 0.1) and one number of
sites in the primitive cell: crystals of one type share all three, and bucketing keeps the
pairwise matching affordable on tens of thousands of structures.

Species are put in a canonical order, the *groups* of a structure: its elements sorted by
reduced amount, then Pauling electronegativity, then atomic number. Group g of every member
of a template is aligned with group g of its representative (the first member), so
substituting elements into the representative means choosing one element per group. Where
two groups have equal amounts the alignment by electronegativity is a convention (the
members were matched anonymously, whatever the mapping).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Element, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from rich.progress import track

from deepmat.data.composition import LoadReport
from deepmat.data.structures import StructureTable, load_structure_table, save_structure_table
from deepmat.errors import DataError

SYMPREC = 0.1
LIBRARY_TABLE, LIBRARY_INDEX = "templates.npz", "templates.json"


def canonical_elements(composition: Composition) -> list[Element]:
    """The elements of ``composition`` in group order: by reduced amount, electronegativity
    (elements without one last), atomic number."""
    reduced = composition.reduced_composition
    return sorted(
        reduced.elements,
        key=lambda e: (reduced[e], e.X if np.isfinite(e.X) else 99.0, e.Z),
    )


def site_groups(structure: Structure) -> np.ndarray:
    """(sites,) the group of each site's element (:func:`canonical_elements` order)."""
    order = {e: g for g, e in enumerate(canonical_elements(structure.composition))}
    return np.array([order[site.specie] for site in structure], dtype=np.int64)


def type_key(structure: Structure) -> str:
    """``"<anonymous formula>|<space group>|<primitive sites>"``: equal for crystals of one
    structure type (the bucket they are matched in)."""
    dataset = SpacegroupAnalyzer(structure, symprec=SYMPREC).get_symmetry_dataset()
    if dataset is None:
        number, n_primitive = 1, len(structure)
    else:
        number, n_primitive = dataset.number, len(set(dataset.mapping_to_primitive))
    return f"{structure.composition.anonymized_formula}|{number}|{n_primitive}"


@dataclass
class Template:
    """One structure type: its representative crystal, the groups of its sites, and the
    elements (one per group) and ids of every known crystal of the type."""

    structure: Structure
    key: str
    members: np.ndarray  # (crystals, groups) atomic numbers
    ids: list[str]
    groups: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.groups = site_groups(self.structure)

    @property
    def formula(self) -> str:
        """The anonymous reduced formula ("AB2", "ABC3")."""
        return self.key.split("|")[0]

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def amounts(self) -> np.ndarray:
        """Sites per group in the representative's cell."""
        return np.bincount(self.groups)

    def substituted(self, elements: Sequence[int], rescale: bool = True) -> Structure:
        """The representative with element ``elements[g]`` on the sites of group g; with
        ``rescale`` its volume scaled by Σ r³(new) / Σ r³(old) over the sites (atomic radii)."""
        new = np.asarray(elements)[self.groups]
        structure = Structure(self.structure.lattice, new.tolist(), self.structure.frac_coords)
        if rescale:
            old_r = np.array([_radius(z) for z in self.structure.atomic_numbers])
            new_r = np.array([_radius(z) for z in new])
            structure.scale_lattice(self.structure.volume * (new_r**3).sum() / (old_r**3).sum())
        return structure


def _radius(z: int) -> float:
    element = Element.from_Z(int(z))
    radius = element.atomic_radius or element.atomic_radius_calculated
    return float(radius) if radius else 1.5


def _member_elements(structure: Structure) -> list[int]:
    return [e.Z for e in canonical_elements(structure.composition)]


def template_candidates(
    table: StructureTable, max_species: int = 3, max_sites: int | None = None
) -> tuple[list[int], dict[str, int]]:
    """Positions of the crystals of ``table`` that may be templates (2 to ``max_species``
    elements, at most ``max_sites`` sites), and the counts of the others by reason."""
    keep, dropped = [], defaultdict(int)
    for i, structure in enumerate(table.structures):
        n_species = len(structure.composition.elements)
        if n_species > max_species:
            dropped[f"more than {max_species} elements"] += 1
        elif n_species < 2:
            dropped["a single element"] += 1
        elif max_sites is not None and len(structure) > max_sites:
            dropped[f"more than {max_sites} sites"] += 1
        else:
            keep.append(i)
    return keep, dict(dropped)


def build_templates(
    table: StructureTable,
    max_species: int = 3,
    max_sites: int | None = None,
    progress: bool = False,
) -> tuple[list[Template], dict[str, int]]:
    """The templates of the crystals in ``table`` with at most ``max_species`` elements and
    ``max_sites`` sites, most common first; and the counts of crystals left out by reason."""
    keep, dropped = template_candidates(table, max_species, max_sites)
    buckets: dict[str, list[int]] = defaultdict(list)
    items = track(keep, "structure types") if progress else keep
    for i in items:
        buckets[type_key(table.structures[i])].append(i)
    matcher = StructureMatcher()
    templates = []
    for key, members in buckets.items():
        bucket = [table.structures[i] for i in members]
        groups = [[0]] if len(bucket) == 1 else _anonymous_groups(matcher, bucket)
        for group in groups:
            chosen = [members[p] for p in group]
            templates.append(
                Template(
                    structure=table.structures[chosen[0]],
                    key=key,
                    members=np.array([_member_elements(table.structures[i]) for i in chosen]),
                    ids=[table.ids[i] for i in chosen],
                )
            )
    templates.sort(key=lambda t: (-t.count, t.key, t.ids[0]))
    return templates, dropped


def _anonymous_groups(matcher: StructureMatcher, bucket: list[Structure]) -> list[list[int]]:
    """Positions in ``bucket`` grouped by anonymous structure matching."""
    position = {id(s): p for p, s in enumerate(bucket)}
    return [
        [position[id(s)] for s in group]
        for group in matcher.group_structures(bucket, anonymous=True)
    ]


def save_templates(templates: Sequence[Template], path: str | Path, meta: dict) -> Path:
    """Write a template library into the folder ``path``: the representatives as a
    structure table and an index (keys, member ids and elements, ``meta``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    table = StructureTable(
        ids=[t.ids[0] for t in templates],
        structures=[t.structure for t in templates],
        targets=None,
        report=LoadReport("templates", len(templates)),
    )
    save_structure_table(table, path / LIBRARY_TABLE)
    index = [{"key": t.key, "ids": t.ids, "members": t.members.tolist()} for t in templates]
    (path / LIBRARY_INDEX).write_text(json.dumps({"meta": meta, "templates": index}))
    return path


def load_templates(path: str | Path) -> tuple[list[Template], dict[str, int]]:
    """A template library written by :func:`save_templates`, or the templates of a folder
    of structure files (each its own crystal, grouped as :func:`build_templates` does); and
    the counts of crystals left out of it by reason."""
    path = Path(path)
    if (path / LIBRARY_INDEX).exists():
        table = load_structure_table(path / LIBRARY_TABLE)
        library = json.loads((path / LIBRARY_INDEX).read_text())
        templates = [
            Template(structure, entry["key"], np.array(entry["members"]), entry["ids"])
            for structure, entry in zip(table.structures, library["templates"], strict=True)
        ]
        return templates, library["meta"].get("left_out", {})
    return build_templates(read_template_files(path))


def read_template_files(path: Path) -> StructureTable:
    """Crystals from a folder of structure files (CIF, POSCAR, anything ASE reads) or one
    file; a file that is not a periodic crystal is an error naming it."""
    from ase.io import read as ase_read
    from pymatgen.io.ase import AseAtomsAdaptor

    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise DataError(f"{path}: no template library and no structure files there")
    structures = []
    for file in files:
        try:
            atoms = ase_read(file)
        except Exception as exc:
            raise DataError(f"template {file}: not a structure file ASE reads ({exc})") from None
        if not atoms.pbc.all() or abs(atoms.cell.volume) < 1e-6:
            raise DataError(
                f"template {file}: not periodic (a crystal needs a cell with periodic "
                "boundaries in all three directions; a molecule cannot be a template)"
            )
        structures.append(AseAtomsAdaptor.get_structure(atoms))
    return StructureTable(
        [f.stem for f in files], structures, None, LoadReport(str(path), len(files))
    )
