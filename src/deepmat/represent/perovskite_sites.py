"""Site descriptors of ABX3 perovskites: electronegativity and ionic radius per site.

Ye et al. predicted perovskite formation energies from two numbers per site, the Pauling
electronegativity and the ionic radius of the species occupying it. The sites are found
from chemistry and geometry together: the three most electronegative sites per formula
unit are the X anions (O, N, F, S in the Castelli set, mixed anions included), and of the
two cations the B cation is the one in an octahedron of six X at the shorter distance
(a/2 in the cubic cell, against a/√2 for the twelve X around A). Geometry alone fails on
the strongly distorted cells of relaxed perovskites; this rule does not.

Ionic radii are Shannon radii: of the X elements in their most negative common
oxidation state (O2-, N3-, F-, S2-), and of the cations in the states pymatgen's
oxidation-state guess finds to balance them. A cation with no balancing state or no
tabulated radius for it falls back to pymatgen's average ionic radius.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache

import numpy as np
from pymatgen.core import Composition, Element, Species, Structure

from deepmat.errors import DataError
from deepmat.represent.crystal_graph import keep_nearest

N_OCTAHEDRON = 6


def assign_sites(structure: Structure, record: str = "structure") -> list[str]:
    """The role, ``"A"``, ``"B"`` or ``"X"``, of every site of an ABX3 perovskite."""
    n = len(structure)
    if n % 5 or n == 0:
        raise DataError(f"{record}: not an ABX3 perovskite: {n} sites is not a multiple of 5")
    units = n // 5
    electronegativity = np.array([site.specie.X for site in structure], dtype=float)
    if not np.all(np.isfinite(electronegativity)):
        raise DataError(f"{record}: a species without a Pauling electronegativity")
    anions = np.argsort(-electronegativity, kind="stable")[: 3 * units]
    roles = np.full(n, "A")
    roles[anions] = "X"
    cations = np.flatnonzero(roles == "A")
    centers, neighbors, _, distances = structure.get_neighbor_list(1.5 * max(structure.lattice.abc))
    to_anion = np.isin(neighbors, anions)
    near, _, gaps = keep_nearest(
        centers[to_anion], neighbors[to_anion], distances[to_anion], N_OCTAHEDRON
    )
    # Sum of the distances to the six nearest anions: a/2 each for the B cation in its
    # octahedron, a/√2 for the A cation.
    shell = np.bincount(near, weights=gaps, minlength=n)
    b_sites = cations[np.argsort(shell[cations], kind="stable")[:units]]
    roles[b_sites] = "B"
    nearest_centers, nearest, _ = keep_nearest(centers, neighbors, distances, N_OCTAHEDRON)
    for b in b_sites:
        octahedron = nearest[nearest_centers == b]
        if len(octahedron) < N_OCTAHEDRON or np.any(roles[octahedron] != "X"):
            raise DataError(
                f"{record}: not an ABX3 perovskite: the six nearest neighbours of the B-site "
                f"cation ({structure[int(b)].specie}, site {b}) are not all X-site anions"
            )
    return roles.tolist()


@cache
def _oxidation_states(formula: str, anions: tuple[str, ...]) -> dict[str, float]:
    """Oxidation states that balance ``formula`` with the X-site elements ``anions`` in
    their most negative common state; cations without a balancing state get 0."""
    composition = Composition(formula)
    fixed = {a: [min(Element(a).common_oxidation_states)] for a in anions}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        guesses = composition.oxi_state_guesses(oxi_states_override=fixed, max_sites=-1)
    if guesses:
        return dict(guesses[0])
    return {el.symbol: fixed[el.symbol][0] if el.symbol in fixed else 0.0 for el in composition}


@cache
def ionic_radius(symbol: str, oxidation: float) -> float:
    """Shannon ionic radius (Å) of ``symbol`` in ``oxidation``, else its average radius."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if oxidation:
            radius = Species(symbol, oxidation).ionic_radius
            if radius is not None:
                return float(radius)
        return float(Element(symbol).average_ionic_radius)


class PerovskiteSites:
    """10 features per ABX3 structure: (electronegativity, ionic radius) of A, of B and of
    the three X sites, the X sites ordered by electronegativity (highest first) so that
    the features do not depend on the order of the sites in the file."""

    name = "perovskite-sites"

    @property
    def feature_names(self) -> list[str]:
        sites = ("A", "B", "X1", "X2", "X3")
        return [f"{s} {p}" for s in sites for p in ("electronegativity", "ionic radius")]

    def to_dict(self) -> dict:
        return {"name": self.name}

    def transform(
        self, structures: Sequence[Structure], labels: Sequence[str] | None = None
    ) -> np.ndarray:
        """(n, 10) float32 features; a structure that is not a 5-site ABX3 perovskite is
        an error naming its record."""
        rows = []
        for i, structure in enumerate(structures):
            record = labels[i] if labels is not None else f"structure {i}"
            if len(structure) != 5:
                raise DataError(
                    f"{record}: perovskite site features need the 5-site ABX3 cell, got "
                    f"{len(structure)} sites"
                )
            rows.append(self._features(structure, record))
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), 10)

    def _features(self, structure: Structure, record: str) -> list[float]:
        roles = assign_sites(structure, record)
        anions = tuple(
            sorted({s.specie.symbol for r, s in zip(roles, structure, strict=True) if r == "X"})
        )
        states = _oxidation_states(structure.composition.reduced_formula, anions)
        pairs = {}
        for role, site in zip(roles, structure, strict=True):
            symbol = site.specie.symbol
            pair = (Element(symbol).X, ionic_radius(symbol, states.get(symbol, 0.0)))
            pairs.setdefault(role, []).append(pair)
        anions = sorted(pairs["X"], reverse=True)
        return [value for pair in (*pairs["A"], *pairs["B"], *anions) for value in pair]
