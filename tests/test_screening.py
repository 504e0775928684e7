"""Combinatorial screening: the enumeration is complete and unique, charge balance follows
the oxidation states, ΔHd agrees with the hull module, and the command writes what it says."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition
from typer.testing import CliRunner

import deepmat
from deepmat.cli import app
from deepmat.data.composition import composition_table
from deepmat.errors import DataError
from deepmat.physics.hulls import decomposition_energies
from deepmat.workflows.screening import charge_balanced, counts_with_leading, screen


def test_enumeration_is_every_reduced_composition_once():
    k, max_atoms = 3, 7
    ours = np.concatenate([counts_with_leading(k, max_atoms, n) for n in range(max_atoms + 1)])
    brute = [
        row
        for row in itertools.product(range(max_atoms + 1), repeat=k)
        if sum(row) <= max_atoms and sum(n > 0 for n in row) >= 2 and math.gcd(*row) == 1
    ]
    assert sorted(map(tuple, ours.tolist())) == sorted(brute)


def test_charge_balance_uses_common_oxidation_states():
    counts = np.array([[2, 3], [1, 1], [1, 2], [3, 4]])  # Fe2O3, FeO, FeO2, Fe3O4
    assert charge_balanced(("Fe", "O"), counts).tolist() == [True, True, False, False]


@pytest.fixture(scope="module")
def elemnet():
    return deepmat.load("elemnet-oqmd")


def test_screen_ranks_candidates_with_the_hull_of_the_others(elemnet):
    known = composition_table(["Li2O"], [-2.1])
    result = screen(elemnet, "Li-O", 8, known=known, scheduler="synchronous")
    frame = result.candidates
    assert result.kept == result.enumerated == len(frame) and frame["formula"].is_unique
    assert (np.diff(frame["dhd"]) >= 0).all()
    assert frame.loc[frame["formula"] == "Li2O", "known"].item()
    comps = [Composition(f) for f in frame["formula"]]
    expected = decomposition_energies(
        comps, frame["dhf"].to_numpy(), ([Composition("Li2O")], np.array([-2.1]))
    )
    assert frame["dhd"].to_numpy() == pytest.approx(expected, abs=1e-6)


def test_screen_refuses_what_it_cannot_do(elemnet):
    with pytest.raises(DataError, match="Xx"):
        screen(elemnet, "Xx-O", 6)
    with pytest.raises(DataError, match="7 elements"):
        screen(elemnet, "Li-Na-K-Rb-Cs-Fe-O", 6)
    with pytest.raises(DataError, match="He"):
        screen(elemnet, "He-O", 6)


def test_screen_command_writes_candidates_and_a_hull_plot(tmp_path):
    out, plot = tmp_path / "candidates.csv", tmp_path / "hull.png"
    result = CliRunner().invoke(
        app,
        [
            *("screen", "Li-Fe-O", "--max-atoms", "6", "--charge-balanced"),
            *("--out", str(out), "--plot", str(plot), "--scheduler", "synchronous"),
        ],
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert {"formula", "dhf", "dhd", "known"} <= set(frame.columns)
    assert "LiFeO2" in set(frame["formula"]) and "LiFeO" not in set(frame["formula"])
    assert plot.stat().st_size > 0
    # the shipped ElemNet's σ comes from its companion, which reads compositions
    spread = tmp_path / "spread.csv"
    command = ["screen", "Li-O", "--max-atoms", "4", "--std", "--out", str(spread)]
    assert CliRunner().invoke(app, command).exit_code == 0
    assert (pd.read_csv(spread)["dhf_std"] > 0).all()
