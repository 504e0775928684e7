"""Representations: ElemNet element fractions and Magpie attributes (checked against matminer)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition, Element

from deepmat.errors import DataError
from deepmat.represent import (
    ELEMNET_ELEMENTS,
    ElementFractions,
    MagpieAttributes,
    representation_from_dict,
)

EXCLUDED = ("He", "Ne", "Ar", "Po", "At", "Rn", "Fr", "Ra", "Am")
VARIED = [
    "Fe2O3", "NaCl", "Fe", "Li7La3Zr2O12", "BaTiO3", "Al0.5Ni0.5", "CuInGaSe2", "LaNi5H6",
    "PuO2", "Sm2Co17", "XeF2", "Mg0.1Al0.2Si0.3Ti0.4",
]  # fmt: skip


def test_elemnet_elements():
    assert len(ELEMNET_ELEMENTS) == 86
    assert len(set(ELEMNET_ELEMENTS)) == 86
    for symbol in EXCLUDED:
        assert symbol not in ELEMNET_ELEMENTS
    expected = [
        Element.from_Z(z).symbol for z in range(1, 95) if Element.from_Z(z).symbol not in EXCLUDED
    ]
    assert list(ELEMNET_ELEMENTS) == expected  # H to Pu in order of Z
    assert ElementFractions().feature_names == list(ELEMNET_ELEMENTS)


def test_fractions_fe2o3():
    rep = ElementFractions()
    x = rep.transform([Composition("Fe2O3")])
    assert x.shape == (1, 86)
    assert x.dtype == np.float32
    column = {el: i for i, el in enumerate(rep.feature_names)}
    assert x[0, column["Fe"]] == pytest.approx(0.4)
    assert x[0, column["O"]] == pytest.approx(0.6)
    assert np.count_nonzero(x) == 2


def test_fraction_rows_sum_to_one():
    x = ElementFractions().transform([Composition(f) for f in VARIED])
    np.testing.assert_allclose(x.sum(1), 1.0, rtol=1e-6)
    assert (x >= 0).all()


def test_fractions_empty_input():
    assert ElementFractions().transform([]).shape == (0, 86)


@pytest.mark.filterwarnings("ignore:No Pauling electronegativity")
def test_unsupported_element_names_label_and_element():
    comps = [Composition("Fe2O3"), Composition("HeH")]
    with pytest.raises(DataError, match=r"data\.csv line 3 \(.*\): element He is not among the 86"):
        ElementFractions().transform(comps, labels=["data.csv line 2", "data.csv line 3"])
    with pytest.raises(DataError, match=r"input\[1\] .*element He"):
        ElementFractions().transform(comps)


def test_custom_element_list():
    rep = ElementFractions(["O", "Fe"])
    np.testing.assert_allclose(rep.transform([Composition("Fe2O3")]), [[0.6, 0.4]], rtol=1e-6)
    assert rep.supported_elements == ("O", "Fe")


def test_magpie_matches_matminer():
    from matminer.featurizers.composition import ElementProperty, Stoichiometry, ValenceOrbital

    comps = [Composition(f) for f in VARIED]
    stoichiometry = Stoichiometry()
    element_property = ElementProperty.from_preset("magpie")
    valence = ValenceOrbital(props=["frac"])
    reference = np.array(
        [
            stoichiometry.featurize(c) + element_property.featurize(c) + valence.featurize(c)
            for c in comps
        ],
        dtype=np.float64,
    )
    rep = MagpieAttributes()
    got = rep.transform(comps)
    assert got.shape == reference.shape == (len(comps), 142)
    assert got.dtype == np.float32
    names = (
        stoichiometry.feature_labels()
        + element_property.feature_labels()
        + valence.feature_labels()
    )
    assert rep.feature_names == names
    assert np.array_equal(np.isnan(got), np.isnan(reference))
    finite = ~np.isnan(reference)
    relative = np.abs(got[finite] - reference[finite]) / np.maximum(np.abs(reference[finite]), 1e-6)
    assert relative.max() < 1e-5


def test_magpie_feature_names_match_columns():
    rep = MagpieAttributes()
    x = rep.transform([Composition("Fe2O3"), Composition("NaCl")])
    assert len(rep.feature_names) == x.shape[1] == 142
    assert len(set(rep.feature_names)) == 142
    assert len(rep.supported_elements) == 103


def test_magpie_does_not_depend_on_batch():
    comps = [Composition(f) for f in VARIED]
    together = MagpieAttributes().transform(comps)
    alone = np.concatenate([MagpieAttributes().transform([c]) for c in comps])
    np.testing.assert_allclose(together, alone, rtol=1e-6)


@pytest.mark.parametrize(
    "rep", [ElementFractions(), ElementFractions(["Fe", "O"]), MagpieAttributes()]
)
def test_representation_round_trip(rep):
    spec = rep.to_dict()
    rebuilt = representation_from_dict(spec)
    assert type(rebuilt) is type(rep)
    assert rebuilt.to_dict() == spec
    assert rebuilt.feature_names == rep.feature_names
    assert spec == rep.to_dict()  # the input dict is not consumed
    comps = [Composition("Fe2O3"), Composition("FeO")]
    np.testing.assert_array_equal(rebuilt.transform(comps), rep.transform(comps))
