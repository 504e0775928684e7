"""Structure data layer: CIF folders with id,target tables, CSVs with a CIF column, pymatgen
JSON, and the clear errors (or counted drops) for records that are not crystals."""

from __future__ import annotations

import hashlib
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from deepmat.data import registry
from deepmat.data.composition import LoadReport
from deepmat.data.splits import grouped_split
from deepmat.data.structures import (
    StructureTable,
    read_cif_folder,
    read_structure_csv,
    read_structure_json,
    structure_keys,
)
from deepmat.errors import DataError


def rock_salt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]
    )


def overlapping() -> Structure:
    return Structure(Lattice.cubic(4.0), ["Fe", "Fe"], [[0, 0, 0], [0.05, 0, 0]])


GARBAGE = "data_broken\n_cell_length_a not-a-number\nloop_\n_atom_site_label\n"


@pytest.fixture
def cif_folder(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    rock_salt().to(filename=str(folder / "nacl.cif"))
    rock_salt(5.0).to(filename=str(folder / "small.cif"))
    overlapping().to(filename=str(folder / "bad-overlap.cif"))
    (folder / "bad-garbage.cif").write_text(GARBAGE)
    return folder


def test_cif_folder_with_a_headerless_table_reads_ids_targets_and_structures(cif_folder, tmp_path):
    table = tmp_path / "id_prop.csv"
    table.write_text("nacl,-2.1\nsmall,-1.5\n")
    data = read_cif_folder(cif_folder, table)
    assert data.ids == ["nacl", "small"] and len(data) == 2
    np.testing.assert_allclose(data.targets, [-2.1, -1.5])
    assert data.structures[0].composition.reduced_formula == "NaCl"
    assert len(data.structures[0]) == 8  # the conventional cell
    assert data.report.rows_read == 2 and data.report.rows_kept == 2
    assert data.subset([1]).ids == ["small"]


def test_a_header_row_is_recognised(cif_folder, tmp_path):
    table = tmp_path / "targets.csv"
    table.write_text("material_id,formation_energy\nnacl,-2.1\n")
    assert read_cif_folder(cif_folder, table).ids == ["nacl"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("bad-garbage,1.0", r"targets.csv:2 \(bad-garbage.cif\): unparsable CIF"),
        ("bad-overlap,1.0", r"bad-overlap.cif\): overlapping atoms, sites 0 \(Fe\) and 1 \(Fe\)"),
        ("missing,1.0", r"targets.csv:2 \(missing.cif\): no CIF file"),
        ("nacl,nan", r"nacl.cif\): target is nan"),
        ("nacl,high", r"target 'high' is not a number"),
    ],
)
def test_bad_records_name_the_record_and_the_problem(cif_folder, tmp_path, line, message):
    table = tmp_path / "targets.csv"
    table.write_text("small,1\n" + line + "\n")  # a non-number first would read as a header
    with pytest.raises(DataError, match=message):
        read_cif_folder(cif_folder, table)


def test_dropping_counts_every_skipped_record_by_reason(cif_folder, tmp_path):
    table = tmp_path / "targets.csv"
    rows = ["nacl,1", "bad-garbage,1", "bad-overlap,2", "missing,3", "small,nan", "small,4"]
    table.write_text("\n".join(rows) + "\n")
    data = read_cif_folder(cif_folder, table, on_error="drop")
    assert data.ids == ["nacl", "small"]
    report = data.report
    assert report.rows_read == 6 and report.rows_kept == 2
    assert dict(report.dropped) == {
        "unparsable CIF": 1,
        "overlapping atoms": 1,
        "no CIF file": 1,
        "target is nan": 1,
    }
    assert "6 rows read, 2 kept" in report.summary()


def test_a_table_of_only_bad_records_is_an_error_with_the_counts(cif_folder, tmp_path):
    table = tmp_path / "targets.csv"
    table.write_text("bad-garbage,1\n")
    with pytest.raises(DataError, match=r"no valid structures.*1 dropped"):
        read_cif_folder(cif_folder, table, on_error="drop")


def test_missing_and_empty_inputs(cif_folder, tmp_path):
    with pytest.raises(DataError, match="neither a folder of CIF files nor a tar archive"):
        read_cif_folder(tmp_path / "nowhere", tmp_path / "t.csv")
    with pytest.raises(DataError, match=r"t.csv: no such file"):
        read_cif_folder(cif_folder, tmp_path / "t.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty.csv: empty file"):
        read_cif_folder(cif_folder, tmp_path / "empty.csv")


def test_csv_with_a_cif_column(tmp_path):
    path = tmp_path / "perovskites.csv"
    frame = pd.DataFrame(
        {
            "material_id": ["a", "b", "c"],
            "cif": [rock_salt().to(fmt="cif"), GARBAGE, rock_salt(5.2).to(fmt="cif")],
            "heat_ref": [0.1, 0.2, 0.3],
        }
    )
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"perovskites.csv:3 \(id b\): unparsable CIF"):
        read_structure_csv(path, "heat_ref", id_column="material_id")
    data = read_structure_csv(path, "heat_ref", id_column="material_id", on_error="drop")
    assert data.ids == ["a", "c"] and data.targets.tolist() == [0.1, 0.3]
    unlabelled = read_structure_csv(path, None, on_error="drop")
    assert unlabelled.targets is None and unlabelled.ids == ["0", "2"]
    with pytest.raises(DataError, match="no column 'gap'; columns are material_id, cif"):
        read_structure_csv(path, "gap")


def test_pymatgen_json_records(tmp_path):
    path = tmp_path / "structures.json"
    records = [
        {"id": "x", "structure": rock_salt().as_dict(), "e": -1.0},
        {"structure": overlapping().as_dict(), "e": 0.5},
        {"id": "z", "e": 2.0},
    ]
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"structures.json\[1\]: overlapping atoms"):
        read_structure_json(path, "e")
    data = read_structure_json(path, "e", on_error="drop")
    assert data.ids == ["x"] and data.report.dropped["no 'structure'"] == 1
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match=r"bad.json: not JSON"):
        read_structure_json(tmp_path / "bad.json", "e")


def test_cifs_are_read_from_a_tar_archive_in_any_sub_folder(cif_folder, tmp_path):
    archive = tmp_path / "cifs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cif_folder, arcname="cifs")
    table = tmp_path / "id_prop.csv"
    table.write_text("small,1\nnacl,2\nmissing,3\n")
    data = read_cif_folder(archive, table, on_error="drop")
    assert data.ids == ["small", "nacl"] and data.report.dropped["no CIF file"] == 1
    assert data.structures[1].composition.reduced_formula == "NaCl"
    with pytest.raises(DataError, match="neither a folder of CIF files nor a tar archive"):
        read_cif_folder(table, table)


def test_named_structure_datasets_load_from_the_cache(cif_folder, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    (root / "s").mkdir(parents=True)
    with tarfile.open(root / "s/cifs.tar", "w") as tar:
        tar.add(cif_folder, arcname="cifs")
    (root / "s/id_prop.csv").write_text("material_id,e\nnacl,-2.1\n")
    monkeypatch.setenv(registry.ENV_VAR, str(root))
    registry.verify_checksum.cache_clear()
    dataset = registry.Dataset(
        name="tiny-structures",
        description="test",
        files={"all": registry.DatasetFile("s/id_prop.csv", sha256(root / "s/id_prop.csv"))},
        archive=registry.DatasetFile("s/cifs.tar", sha256(root / "s/cifs.tar")),
        source="a test",
        target_column="e",
        kind="structure",
    )
    monkeypatch.setitem(registry.DATASETS, dataset.name, dataset)
    data = registry.load_structure_dataset("tiny-structures")
    assert data.ids == ["nacl"] and data.targets.tolist() == [-2.1]
    with pytest.raises(DataError, match=r"holds crystal structures.*load_structure_dataset"):
        registry.load_dataset("tiny-structures")
    with pytest.raises(DataError, match="is a composition table"):
        registry.load_structure_dataset("mp-transport")
    registry.verify_checksum.cache_clear()


def test_a_named_subset_counts_the_records_it_leaves_out(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    root.mkdir()
    kcl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(6.3), ["K", "Cl"], [[0, 0, 0], [0.5] * 3]
    )
    rows = [("nacl", rock_salt(), -2.1), ("kcl", kcl, -2.2), ("mgo", rock_salt(), -3.0)]
    rows[2][1].replace_species({"Na": "Mg", "Cl": "O"})
    frame = pd.DataFrame([(i, s.to(fmt="cif"), e) for i, s, e in rows], columns=["id", "cif", "e"])
    frame.to_csv(root / "salts.csv", index=False)
    monkeypatch.setenv(registry.ENV_VAR, str(root))
    monkeypatch.setenv("DEEPMAT_CACHE_DIR", str(tmp_path / "parsed"))
    registry.verify_checksum.cache_clear()
    dataset = registry.Dataset(
        name="no-potassium",
        description="test",
        files={"all": registry.DatasetFile("salts.csv", sha256(root / "salts.csv"))},
        source="a test",
        target_column="e",
        kind="structure",
        id_column="id",
        without_elements=("K",),
    )
    monkeypatch.setitem(registry.DATASETS, dataset.name, dataset)
    data = registry.load_structure_dataset("no-potassium")
    assert data.ids == ["nacl", "mgo"] and data.targets.tolist() == [-2.1, -3.0]
    assert data.report.dropped == {"not in no-potassium: contains K": 1}
    assert data.report.rows_read == 3 and data.report.rows_kept == 2
    registry.verify_checksum.cache_clear()


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["mp-eform", "perovskites"])
def test_shared_structure_datasets_are_registered_with_their_checksums(name):
    root = registry.data_dir()
    dataset = registry.DATASETS[name]
    if not all((root / f.relpath).exists() for f in dataset.all_files):
        pytest.skip(f"{name} not found in {root}: set DEEPMAT_DATA_DIR (e.g. ../shared/data)")
    for entry in dataset.all_files:
        path = root / entry.relpath
        stat = path.stat()
        registry.verify_checksum(path, entry.sha256, stat.st_mtime_ns, stat.st_size)


def test_shared_perovskites_read_whole_then_from_the_cache(monkeypatch, tmp_path):
    if not (registry.data_dir() / "structures/perovskites/perov_5.csv.gz").exists():
        pytest.skip("perovskites not found: set DEEPMAT_DATA_DIR (e.g. ../shared/data)")
    monkeypatch.setenv("DEEPMAT_CACHE_DIR", str(tmp_path))
    data = registry.load_structure_dataset("perovskites")
    assert len(data) == 5680 and not data.report.dropped
    assert all(len(s) == 5 for s in data.structures[:50])  # ABX3 in the cubic cell
    assert len(list((tmp_path / "structures").glob("perovskites-*.npz"))) == 1
    again = registry.load_structure_dataset("perovskites")
    assert again.ids == data.ids and np.array_equal(again.targets, data.targets)
    assert again.structures[123] == data.structures[123]


def test_structure_keys_group_one_crystal_and_split_polymorphs():
    conventional = rock_salt()
    primitive = conventional.get_primitive_structure()
    caesium_chloride_type = Structure(Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    potassium = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(6.3), ["K", "Cl"], [[0] * 3, [0.5] * 3]
    )
    structures = [conventional, caesium_chloride_type, primitive, potassium, rock_salt(5.0)]
    keys = structure_keys(structures)
    assert keys[0] == keys[2] == keys[4] == "NaCl#0"  # same crystal: cell choice and scale
    assert keys[1] == "NaCl#1" and keys[3] == "KCl#0"
    split = grouped_split(keys, val=0.4, seed=1, group="structure")
    split.assert_disjoint(keys)
    assert split.params["group"] == "structure"
    table = StructureTable(["a", "b"], structures[:2], None, LoadReport("test", 2))
    assert table.keys() == ["NaCl#0", "NaCl#1"]


def test_extended_xyz_and_ase_database_read_with_targets(tmp_path):
    import ase.db
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    from deepmat.data.structures import read_ase_file

    frames = []
    for i, a in enumerate((5.64, 5.0)):
        atoms = AseAtomsAdaptor.get_atoms(rock_salt(a))
        atoms.info.update({"id": f"nacl-{i}", "eform": -2.0 + i})
        frames.append(atoms)
    ase.io.write(tmp_path / "set.extxyz", frames)
    data = read_ase_file(tmp_path / "set.extxyz", "eform")
    assert data.ids == ["nacl-0", "nacl-1"]
    np.testing.assert_allclose(data.targets, [-2.0, -1.0])
    assert data.structures[1].lattice.a == pytest.approx(5.0)
    with ase.db.connect(tmp_path / "set.db") as db:
        for atoms in frames:
            db.write(atoms, name=atoms.info["id"], eform=atoms.info["eform"])
    stored = read_ase_file(tmp_path / "set.db", "eform")
    assert stored.ids == ["nacl-0", "nacl-1"] and stored.targets.tolist() == [-2.0, -1.0]


def test_ase_frames_that_are_not_crystals_are_named(tmp_path):
    import ase.io
    from ase import Atoms

    from deepmat.data.structures import read_ase_file

    molecule = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    molecule.info["eform"] = 1.0
    ase.io.write(tmp_path / "mol.extxyz", [molecule])
    with pytest.raises(DataError, match=r"mol.extxyz frame 0: not periodic"):
        read_ase_file(tmp_path / "mol.extxyz", "eform")
    (tmp_path / "junk.xyz").write_text("three\nnot a frame\n")
    with pytest.raises(DataError, match=r"junk\.xyz: ASE cannot read it"):
        read_ase_file(tmp_path / "junk.xyz", "eform")


def test_parsed_structures_round_trip_through_the_cache_file(tmp_path):
    from deepmat.data.structures import load_structure_table, save_structure_table

    report = LoadReport("cifs", 3)
    report.dropped["unparsable CIF"] += 1
    perovskite = Structure(
        Lattice.tetragonal(3.9, 4.1),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.52], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    table = StructureTable(
        ["nacl", "sto"], [rock_salt(), perovskite], np.array([-2.0, 0.5]), report
    )
    save_structure_table(table, tmp_path / "t.npz")
    back = load_structure_table(tmp_path / "t.npz")
    assert back.ids == ["nacl", "sto"] and back.targets.tolist() == [-2.0, 0.5]
    assert back.report.to_dict() == report.to_dict()
    for a, b in zip(back.structures, table.structures, strict=True):
        assert a == b and a.lattice == b.lattice
    unlabelled = StructureTable(["x"], [rock_salt()], None, LoadReport("x", 1))
    save_structure_table(unlabelled, tmp_path / "u.npz")
    assert load_structure_table(tmp_path / "u.npz").targets is None
