"""Convex hulls and decomposition energies agree with pymatgen's PhaseDiagram and with
hand-worked cases; stability scores count what they say."""

import numpy as np
import pytest
from pymatgen.core import Composition

from deepmat.data.splits import system_holdout
from deepmat.errors import DataError
from deepmat.physics.hulls import FormationHull, decomposition_energies, stability_scores


def random_compounds(elements, n, seed):
    """``n`` random compositions of up to all ``elements`` with formation energies."""
    rng = np.random.default_rng(seed)
    compositions = []
    for _ in range(n):
        k = rng.integers(2, len(elements) + 1)
        chosen = rng.choice(elements, k, replace=False)
        compositions.append(
            Composition(dict(zip(chosen, rng.integers(1, 6, k).tolist(), strict=True)))
        )
    return compositions, rng.uniform(-2.0, 0.3, n)


def test_li_o_by_hand():
    compositions = [Composition("Li2O"), Composition("Li2O2"), Composition("LiO2")]
    energies = np.array([-2.0, -1.6, -0.9])
    # Li2O against Li + Li2O2; Li2O2 against Li2O + O; LiO2 above the Li2O2-O tie line
    expected = [-2.0 + 1.6 * (1 / 3) / 0.5, -1.6 + 2.0 * 0.5 / (2 / 3), -0.9 + 1.6 * (1 / 3) / 0.5]
    assert decomposition_energies(compositions, energies) == pytest.approx(expected)
    hull = FormationHull(compositions, energies)
    # Li-Fe-O has only its Li-O compounds: LiFeO2 is half Li2O2 and half (Fe, O) at zero
    assert hull.hull_energies([Composition("LiFeO2"), Composition("Fe")]) == pytest.approx(
        [-0.8, 0.0]
    )


@pytest.mark.parametrize("elements", [["Li", "Fe", "O"], ["Na", "Mn", "Fe", "O"]])
def test_hull_energies_and_dhd_agree_with_pymatgen(elements):
    compositions, energies = random_compounds(elements, 40, seed=len(elements))
    hull = FormationHull(compositions, energies)
    space = tuple(sorted(elements))
    diagram = hull.phase_diagram(space)
    queries, _ = random_compounds(elements, 25, seed=7)
    expected = [diagram.get_hull_energy_per_atom(q) for q in queries]
    assert hull.hull_energies(queries) == pytest.approx(expected, abs=1e-8)
    # pymatgen's phase-separation energy is Bartel's ΔHd where a composition has one record
    # (it also measures a higher-energy polymorph against the others, which we do not)
    reduced = [c.reduced_formula for c in compositions]
    unique = [i for i, r in enumerate(reduced) if reduced.count(r) == 1]
    entries = {e.composition.reduced_formula: e for e in diagram.all_entries}
    expected = [diagram.get_phase_separation_energy(entries[reduced[i]]) for i in unique]
    assert hull.decomposition_energies()[unique] == pytest.approx(expected, abs=1e-5)
    assert len(unique) > 20


def test_stable_compound_is_measured_against_the_others_only():
    compositions = [Composition("TiO2"), Composition("Ti2O3"), Composition("TiO")]
    energies = np.array([-3.24, -3.12, -2.74])
    dhd = decomposition_energies(compositions, energies)
    assert (dhd <= 0).all()  # all three on the hull
    # a polymorph of TiO2 does not compete with TiO2, which keeps its ΔHd; the polymorph,
    # 0.04 eV/atom higher, is that far above the hull
    twice = decomposition_energies([*compositions, Composition("TiO2")], np.append(energies, -3.2))
    assert twice[0] == pytest.approx(dhd[0]) and twice[3] == pytest.approx(0.04)


def test_leaving_out_each_composition_of_the_hull_matches_rebuilding_it():
    from deepmat.physics.hulls import lower_hull, vertex_aware_dhd

    rng = np.random.default_rng(3)
    space = ("A", "B", "C", "D")
    rows = rng.dirichlet(np.full(4, 0.7), 400)
    rows = np.vstack([rows, rows[:40]])  # polymorphs: the same compositions again
    energies = -1.5 * (1 - (rows**2).sum(1)) + rng.normal(0, 0.1, len(rows))
    dhd = vertex_aware_dhd(space, rows, energies, np.arange(len(rows)))
    for i in np.flatnonzero(dhd <= 0):
        others = np.any(np.abs(rows - rows[i]) > 1e-8, axis=1)
        hull = lower_hull(space, rows[others], energies[others])
        assert dhd[i] == pytest.approx(energies[i] - hull.energies(rows[i : i + 1])[0], abs=1e-9)
    assert 10 < (dhd <= 0).sum() < len(rows) / 2


def test_known_subsystems_set_the_hull_of_held_out_compounds():
    known = ([Composition("Li2O"), Composition("MnO")], np.array([-2.0, -2.0]))
    dhd = decomposition_energies([Composition("Li2MnO2")], np.array([-2.5]), known)
    assert dhd[0] == pytest.approx(-0.5)  # against 3/5 Li2O + 2/5 MnO, at -2.0 eV/atom


def test_scores_and_the_everything_stable_classifier():
    true = np.array([-0.1, 0.05, 0.2, -0.3, 0.4])
    predicted = np.array([-0.05, -0.01, 0.3, 0.1, 0.5])
    scores = stability_scores(true, predicted)
    assert scores["precision"] == pytest.approx(0.5)  # called stable: 0 (right) and 1 (wrong)
    assert scores["recall"] == pytest.approx(0.5)  # stable 0 found, 3 missed
    assert scores["fpr"] == pytest.approx(1 / 3)
    assert (scores["n"], scores["n_stable"]) == (5, 2)
    trivial = stability_scores(true, np.full(5, -np.inf))
    assert trivial["recall"] == 1.0 and trivial["f1"] == pytest.approx(2 * 0.4 / 1.4)


def test_bad_energies_name_the_record():
    with pytest.raises(DataError, match=r"Fe2O3.*record 1"):
        FormationHull([Composition("Li2O"), Composition("Fe2O3")], np.array([-2.0, np.nan]))


def test_system_holdout_keeps_subsystems_and_drops_supersets():
    comps = [Composition(f) for f in ("TiO2", "Ti", "O2", "SrTiO3", "SrO", "Ti2O3", "FeO")]
    train, exact = system_holdout(comps, ["Ti-O"])
    assert train.tolist() == [False, True, True, False, True, False, True]
    assert exact["Ti-O"].tolist() == [0, 5]
