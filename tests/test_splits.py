"""Splits that do not leak: random, grouped by composition, and by chemical system."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Composition

from deepmat.data.composition import composition_table
from deepmat.data.splits import (
    Split,
    chemical_system_split,
    grouped_split,
    parse_system,
    random_split,
)
from deepmat.errors import DataError


def covers_once(split: Split, n: int) -> bool:
    everything = np.concatenate([split.train, split.val, split.test])
    return sorted(everything.tolist()) == list(range(n))


def test_random_split_sizes():
    split = random_split(100, val=0.1, test=0.2, seed=3)
    assert split.sizes() == {"train": 70, "val": 10, "test": 20}
    assert covers_once(split, 100)
    assert split.method == "random"
    assert split.params == {"val": 0.1, "test": 0.2, "seed": 3}


def test_random_split_is_seeded():
    a, b, c = random_split(50, seed=1), random_split(50, seed=1), random_split(50, seed=2)
    assert a.val.tolist() == b.val.tolist()
    assert a.val.tolist() != c.val.tolist()


@pytest.mark.parametrize(("val", "test"), [(0.6, 0.5), (-0.1, 0.0), (1.0, 0.0), (0.5, 0.5)])
def test_bad_fractions(val, test):
    with pytest.raises(DataError, match="must be in"):
        random_split(10, val=val, test=test)
    with pytest.raises(DataError, match="must be in"):
        grouped_split(["a"] * 10, val=val, test=test)


def test_grouped_split_never_straddles():
    rng = np.random.default_rng(0)
    keys = [f"k{k}" for k in rng.integers(0, 60, size=400)]  # many repeated keys
    split = grouped_split(keys, val=0.15, test=0.15, seed=0)
    split.assert_disjoint(keys)
    assert covers_once(split, len(keys))
    sizes = split.sizes()
    assert sizes["val"] <= round(400 * 0.15)
    assert sizes["val"] + sizes["test"] <= round(400 * 0.3)
    assert sizes["val"] > 0.1 * 400
    assert sizes["test"] > 0.05 * 400
    for side in (split.train, split.val, split.test):
        side_keys = {keys[i] for i in side}
        assert all(keys[j] not in side_keys for j in np.setdiff1d(np.arange(400), side))


def test_grouped_split_on_compositions(small_table):
    keys = small_table.keys
    split = grouped_split(keys, val=0.2, seed=1)
    split.assert_disjoint(keys)
    assert split.sizes()["val"] == pytest.approx(0.2 * len(keys), abs=2)
    assert split.sizes()["test"] == 0


def test_grouped_split_keeps_fe2o3_with_fe4o6():
    table = composition_table(["Fe2O3", "Fe4O6", "NaCl", "TiO2", "FeO", "MgO"] * 5)
    keys = table.keys
    for seed in range(5):
        split = grouped_split(keys, val=0.3, seed=seed)
        split.assert_disjoint(keys)
        side_of = {int(i): name for name in ("train", "val") for i in getattr(split, name)}
        assert side_of[0] == side_of[1]


def test_assert_disjoint_raises_for_leak():
    keys = ["a", "b", "c", "a"]
    leaking = Split("manual", train=np.array([0, 1]), val=np.array([2, 3]))
    with pytest.raises(
        DataError, match=r"split leaks: 1 keys in both train and val, e\.g\. \['a'\]"
    ):
        leaking.assert_disjoint(keys)
    Split("manual", train=np.array([0, 3]), val=np.array([1]), test=np.array([2])).assert_disjoint(
        keys
    )


FORMULAS = ["TiO2", "Ti2O3", "Ti", "O2", "TiN", "FeO", "NaFeO2", "Fe2O3", "NaMnO2", "NaCl",
            "Mn", "NaFeMnO4", "Na2O", "LiFeO2", "MnO2", "Mn3O4", "TiFeO3", "MgO"]  # fmt: skip


def held_out(split: Split) -> set[str]:
    return {FORMULAS[i] for i in split.test}


def test_chemical_system_split_ti_o():
    comps = [Composition(f) for f in FORMULAS]
    split = chemical_system_split(comps, ["Ti-O"], val=0.2)
    assert held_out(split) == {"TiO2", "Ti2O3"}
    assert covers_once(split, len(FORMULAS))
    kept = {FORMULAS[i] for i in np.concatenate([split.train, split.val])}
    assert {"Ti", "O2", "TiN", "FeO", "TiFeO3"} <= kept
    assert split.method == "chemical_system"
    assert split.params["systems"] == ["Ti-O"]


def test_chemical_system_split_includes_subsystems():
    comps = [Composition(f) for f in FORMULAS]
    split = chemical_system_split(comps, ["Na-Fe-Mn-O"])
    assert held_out(split) == {
        "FeO", "NaFeO2", "Fe2O3", "NaMnO2", "NaFeMnO4", "Na2O", "MnO2", "Mn3O4",
    }  # fmt: skip
    for kept in ("NaCl", "Mn", "O2", "LiFeO2", "TiFeO3"):
        assert kept not in held_out(split)


def test_chemical_system_split_several_systems_and_en_dash():
    comps = [Composition(f) for f in FORMULAS]
    split = chemical_system_split(comps, ["Ti–O", "Mg-O"])
    assert held_out(split) == {"TiO2", "Ti2O3", "MgO"}


def test_chemical_system_split_disjoint_with_duplicates():
    formulas = [*FORMULAS, "Ti4O8", "Fe4O4", "Na2Cl2"]
    comps = [Composition(f) for f in formulas]
    split = chemical_system_split(comps, ["Ti-O"], val=0.3, seed=2)
    table = composition_table(formulas)
    split.assert_disjoint(table.keys)
    assert {formulas[i] for i in split.test} == {"TiO2", "Ti2O3", "Ti4O8"}


def test_chemical_system_without_compounds():
    comps = [Composition(f) for f in FORMULAS]
    with pytest.raises(DataError, match=r"no compound of the chemical systems \['Cs-I'\]"):
        chemical_system_split(comps, ["Cs-I"])


def test_unknown_element_in_system_is_an_error():
    comps = [Composition(f) for f in FORMULAS]
    with pytest.raises(DataError, match="Ti-Qq"):
        chemical_system_split(comps, ["Ti-Qq"])
    for garbage in ("ti-o2x", "1-2", "Ti-("):
        with pytest.raises(DataError, match="is not an element"):
            parse_system(garbage)


def test_unknown_element_in_system_is_named():
    # A typo must not silently shrink the held-out system (here to Na-Fe-O).
    comps = [Composition(f) for f in FORMULAS]
    with pytest.raises(DataError, match="Qq"):
        chemical_system_split(comps, ["Na-Fe-Qq-O"])


def test_chemical_system_split_with_given_keys():
    table = composition_table(FORMULAS)
    split = chemical_system_split(table.compositions, ["Ti-O"], keys=table.keys)
    assert held_out(split) == {"TiO2", "Ti2O3"}


def test_chemical_system_split_with_array_keys():
    table = composition_table(FORMULAS)
    split = chemical_system_split(table.compositions, ["Ti-O"], keys=np.array(table.keys))
    assert held_out(split) == {"TiO2", "Ti2O3"}


def test_split_save_writes_names_and_sizes(tmp_path):
    formulas = ["Fe2O3", "NaCl", "TiO2", "MgO", "FeO"]
    split = random_split(len(formulas), val=0.2, test=0.2, seed=0)
    path = split.save(tmp_path / "run" / "split.json", names=formulas)
    saved = json.loads(path.read_text())
    assert saved["method"] == "random"
    assert saved["sizes"] == {"train": 3, "val": 1, "test": 1}
    assert saved["params"] == {"val": 0.2, "test": 0.2, "seed": 0}
    assert sorted(saved["train"] + saved["val"] + saved["test"]) == sorted(formulas)
    assert saved["val"] == [formulas[i] for i in split.val]


def test_split_save_without_names_writes_indices(tmp_path):
    split = random_split(4, val=0.25)
    saved = json.loads(split.save(tmp_path / "split.json").read_text())
    assert sorted(saved["train"] + saved["val"]) == [0, 1, 2, 3]
    split.names = ["a", "b", "c", "d"]
    saved = json.loads(split.save(tmp_path / "split.json").read_text())
    assert sorted(saved["train"] + saved["val"]) == ["a", "b", "c", "d"]


def test_grouped_folds_cover_every_row_once_and_keep_groups_together():
    from deepmat.data.splits import grouped_folds

    keys = ["Fe2O3", "NaCl", "Fe2O3", "SiO2", "MgO", "NaCl", "TiO2", "ZnO"]
    folds = grouped_folds(keys, folds=3, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(keys)))
    for fold in folds:
        inside = {keys[i] for i in fold}
        outside = {keys[i] for f in folds if f is not fold for i in f}
        assert not inside & outside
