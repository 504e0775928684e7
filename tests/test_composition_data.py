"""Reading and validating composition tables: every bad input is a clear DataError."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from pymatgen.core import Composition

import deepmat
from deepmat.data.composition import composition_table, read_composition_csv
from deepmat.errors import DataError

GOOD = "formula,target\nFe2O3,-1.5\nNaCl,-2.0\n"


def test_reads_good_csv(write_csv):
    table = read_composition_csv(write_csv(GOOD))
    assert table.formulas == ["Fe2O3", "NaCl"]
    assert table.labels == ["data.csv line 2", "data.csv line 3"]
    np.testing.assert_array_equal(table.targets, [-1.5, -2.0])
    assert table.compositions[0] == Composition("Fe2O3")
    assert table.report.rows_read == 2
    assert table.report.rows_kept == 2
    assert not table.report.dropped


def test_reads_without_target(write_csv):
    table = read_composition_csv(write_csv("formula\nFe2O3\nNaCl\n"), target=None)
    assert table.targets is None
    assert len(table) == 2


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("Fe2O3)(,1.0", r"bad\.csv line 3: cannot parse formula 'Fe2O3\)\('"),
        ("Xx2O,1.0", r"bad\.csv line 3: unknown element Xx"),
        (",1.0", r"bad\.csv line 3: empty formula"),
        ("TiO2,NaN", r"bad\.csv line 3 \(TiO2\): target is NaN"),
        ("TiO2,nan", r"bad\.csv line 3 \(TiO2\): target is NaN"),
        ("TiO2,inf", r"bad\.csv line 3 \(TiO2\): target is infinite"),
        ("TiO2,-inf", r"bad\.csv line 3 \(TiO2\): target is infinite"),
        ("TiO2,about 2", r"bad\.csv line 3 \(TiO2\): target 'about 2' is not a number"),
        ("TiO2,", r"bad\.csv line 3 \(TiO2\): target is missing"),
        ("TiO2,  ", r"bad\.csv line 3 \(TiO2\): target is missing"),
    ],
)
def test_bad_row_names_file_and_line(write_csv, row, message):
    path = write_csv(f"formula,target\nFe2O3,-1.5\n{row}\nNaCl,-2.0\n", "bad.csv")
    with pytest.raises(DataError, match=message):
        read_composition_csv(path)


def test_empty_file(write_csv):
    path = write_csv("", "empty.csv")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        read_composition_csv(path)


def test_header_only_file(write_csv):
    path = write_csv("formula,target\n", "header.csv")
    with pytest.raises(DataError, match=r"header\.csv: the file has a header but no rows"):
        read_composition_csv(path)


def test_missing_target_column_lists_columns(write_csv):
    path = write_csv("formula,energy,volume\nFe2O3,1,2\n", "cols.csv")
    with pytest.raises(DataError, match=r"no column 'target'; columns are formula, energy, volume"):
        read_composition_csv(path)


def test_missing_formula_column_lists_columns(write_csv):
    path = write_csv("composition,target\nFe2O3,1\n", "cols.csv")
    with pytest.raises(DataError, match=r"no column 'formula'; columns are composition, target"):
        read_composition_csv(path)


def test_custom_columns(write_csv):
    path = write_csv("pretty_formula,S_p\nFe2O3,100\n")
    table = read_composition_csv(path, "S_p", formula_column="pretty_formula")
    assert table.targets.tolist() == [100.0]


def test_nonexistent_file(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.csv: no such file"):
        read_composition_csv(tmp_path / "nowhere.csv")


def test_error_is_a_value_error(tmp_path):
    # DataError is also a ValueError, so generic handlers still catch it.
    with pytest.raises(ValueError):
        read_composition_csv(tmp_path / "nowhere.csv")


MESSY = """formula,target
Fe2O3,-1.5
Xx2O,1.0
,2.0
Fe2O3)(,1.0
TiO2,NaN
TiO2,inf
TiO2,
TiO2,abc
NaCl,-2.0
Qq3O,3
"""


def test_drop_counts_every_reason(write_csv):
    path = write_csv(MESSY, "messy.csv")
    table = read_composition_csv(path, on_error="drop")
    assert table.formulas == ["Fe2O3", "NaCl"]
    assert table.labels == ["messy.csv line 2", "messy.csv line 10"]
    report = table.report
    assert dict(report.dropped) == {
        "unknown element": 2,
        "empty formula": 1,
        "cannot parse formula": 1,
        "bad target": 4,
    }
    assert report.rows_read == 10
    assert report.rows_kept == 2
    assert report.summary() == (
        f"{path}: 10 rows read, 2 kept, 4 dropped (bad target), "
        "1 dropped (cannot parse formula), 1 dropped (empty formula), "
        "2 dropped (unknown element)"
    )
    assert report.to_dict()["dropped"]["bad target"] == 4


def test_raise_stops_at_first_bad_row(write_csv):
    with pytest.raises(DataError, match=r"messy\.csv line 3: unknown element"):
        read_composition_csv(write_csv(MESSY, "messy.csv"))


DUPLICATES = "formula,target\nFe2O3,-1.0\nNaCl,-2.0\nFe4O6,-2.0\nFeO,0.5\n"


def test_duplicates_mean(write_csv):
    table = read_composition_csv(write_csv(DUPLICATES, "dup.csv"), duplicates="mean")
    assert table.formulas == ["Fe2O3", "NaCl", "FeO"]
    np.testing.assert_allclose(table.targets, [-1.5, -2.0, 0.5])
    assert table.report.duplicates_merged == 1
    assert table.report.rows_kept == 3
    assert table.report.summary().endswith(
        "4 rows read, 3 kept, 1 duplicate rows averaged into others"
    )


def test_duplicates_mean_is_the_csv_default(write_csv):
    table = read_composition_csv(write_csv(DUPLICATES, "dup.csv"))
    assert len(table) == 3


def test_duplicates_keep(write_csv):
    table = read_composition_csv(write_csv(DUPLICATES, "dup.csv"), duplicates="keep")
    assert table.formulas == ["Fe2O3", "NaCl", "Fe4O6", "FeO"]
    assert table.report.duplicates_kept == 1
    assert table.report.duplicates_merged == 0
    assert table.report.rows_kept == 4
    assert table.report.summary().endswith("4 rows read, 4 kept, 1 duplicate rows kept")
    assert table.keys[0] == table.keys[2]


def test_duplicates_error_names_both_lines(write_csv):
    path = write_csv(DUPLICATES, "dup.csv")
    with pytest.raises(
        DataError,
        match=r"1 duplicate rows; e\.g\. dup\.csv line 2 \(Fe2O3\), dup\.csv line 4 \(Fe4O6\)",
    ):
        read_composition_csv(path, duplicates="error")


def test_gzipped_csv(tmp_path):
    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(GOOD)
    table = read_composition_csv(path)
    assert table.formulas == ["Fe2O3", "NaCl"]
    assert table.labels[1] == "data.csv.gz line 3"


def test_composition_table_from_lists():
    table = composition_table(["Fe2O3", Composition("NaCl")], [1.0, 2.0], source="mine")
    assert table.labels == ["mine[0]", "mine[1]"]
    assert table.formulas == ["Fe2O3", "Na1 Cl1"]
    with pytest.raises(DataError, match=r"mine\[1\]: unknown element"):
        composition_table(["Fe2O3", "Xx2O"], source="mine")


def test_composition_table_length_mismatch():
    with pytest.raises(DataError, match="2 formulas but 1 targets"):
        composition_table(["Fe2O3", "NaCl"], [1.0])


def test_restrict_elements_raise_names_record_and_element(write_csv):
    table = read_composition_csv(write_csv("formula,target\nFe2O3,1\nHeNe,2\n", "he.csv"))
    with pytest.raises(DataError, match=r"he\.csv line 3: element\(s\) He, Ne not supported"):
        table.restrict_elements(["Fe", "O"])


def test_restrict_elements_drop_counts(write_csv):
    text = "formula,target\nFe2O3,1\nHe,2\nNaCl,3\nHeFe,4\n"
    table = read_composition_csv(write_csv(text, "he.csv"))
    kept = table.restrict_elements(["Fe", "O", "Na", "Cl"], on_error="drop")
    assert kept.formulas == ["Fe2O3", "NaCl"]
    assert kept.targets.tolist() == [1.0, 3.0]
    assert kept.report.dropped["unsupported element"] == 2
    assert kept.report.rows_kept == 2
    assert "2 dropped (unsupported element)" in kept.report.summary()


def test_restrict_elements_keeps_table_when_all_allowed(write_csv):
    table = read_composition_csv(write_csv(GOOD))
    assert table.restrict_elements(["Fe", "O", "Na", "Cl"]) is table


def test_fingerprint_is_order_independent():
    a = composition_table(["Fe2O3", "NaCl", "TiO2"], [1.0, 2.0, 3.0])
    b = composition_table(["TiO2", "Fe2O3", "NaCl"], [3.0, 1.0, 2.0])
    c = composition_table(["TiO2", "Fe2O3", "NaCl"], [3.0, 1.0, 2.5])
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert len(a.fingerprint()) == 64


def test_subset_keeps_labels_and_targets():
    table = composition_table(["Fe2O3", "NaCl", "TiO2"], [1.0, 2.0, 3.0])
    sub = table.subset([2, 0])
    assert sub.formulas == ["TiO2", "Fe2O3"]
    assert sub.labels == ["input[2]", "input[0]"]
    assert sub.targets.tolist() == [3.0, 1.0]


def test_a_model_trained_on_a_named_dataset_names_its_target_as_the_dataset_does():
    from deepmat.data.registry import get_dataset
    from deepmat.workflows.composition import DataSpec

    # the shipped OQMD models call it dhf, as a model trained on the dataset now does, so
    # that the two can form one ensemble
    assert get_dataset("oqmd-dhf").target_column == "target"
    assert DataSpec("oqmd-dhf").target_name() == DataSpec("oqmd-dhf:val").target_name() == "dhf"
    assert deepmat.load("elemnet-oqmd").target == "dhf"
    assert DataSpec("mp-eform").target_name() == get_dataset("mp-eform").target_column
    assert DataSpec("oqmd-dhf", target="other").target_name() == "other"
    assert DataSpec("my.csv").target_name() == "target"
