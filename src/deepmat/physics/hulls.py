"""Convex hulls of formation energy, decomposition energies and stability scores.

A compound of formation energy :math:`\\Delta H_f(x)` (eV/atom, elements at zero) is stable when
no combination of other compounds of its chemical space reaches a lower energy at its
composition :math:`x`. The lower convex hull of the known compounds and the elements,

.. math:: E_{hull}(x) = \\min \\{ \\textstyle\\sum_j \\lambda_j \\Delta H_f^{(j)} :
    \\sum_j \\lambda_j x_j = x,\\ \\lambda \\ge 0 \\},

gives that lowest energy. Following Bartel et al. (npj Comput. Mater. 6, 97, 2020), the
decomposition energy of compound :math:`i` is

.. math:: \\Delta H_d^{(i)} = \\Delta H_f^{(i)} - E_{hull}^{\\setminus i}(x_i),

where :math:`E_{hull}^{\\setminus i}` is formed by every *other* composition: positive, the
energy above the hull, for an unstable compound (a higher-energy polymorph of a stable one
included); negative, how far below the hull of its competitors it lies, for a compound on the
hull, whose own composition (and polymorphs) is left out. A compound is stable when
:math:`\\Delta H_d \\le 0`.

The lower hull of a chemical space of :math:`d` elements is the set of lower facets of the
convex hull of the points :math:`(x_1, \\dots, x_{d-1}, \\Delta H_f)`; a convex function is
the maximum of its supporting planes, so :math:`E_{hull}(x) = \\max_k (a_k \\cdot x + b_k)`
over the lower facets :math:`k`: one matrix product evaluates it at every query of the space.
Hulls are built per chemical space (Qhull through SciPy) from the compounds whose elements lie
in it, and cached, so hundreds of thousands of compounds spread over many small spaces take
minutes; :meth:`FormationHull.phase_diagram` gives the same space as a pymatgen
:class:`~pymatgen.analysis.phase_diagram.PhaseDiagram` for plots and further analysis, and the
tests check the two agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np
from pymatgen.core import Composition
from scipy.spatial import ConvexHull, cKDTree

from deepmat.errors import DataError

Space = tuple[str, ...]
"""A chemical space: its element symbols, sorted."""

SAME_COMPOSITION = 1e-8
"""Largest difference of atomic fractions between two records of the same composition."""

ON_HULL = 1e-9
"""Energy (eV/atom) within which a compound counts as on the hull of all compounds."""


def chemical_space(composition: Composition) -> Space:
    """The sorted element symbols of a composition."""
    return tuple(sorted(element.symbol for element in composition.elements))


def _fractions(composition: Composition) -> dict[str, float]:
    amounts = composition.get_el_amt_dict()
    total = sum(amounts.values())
    return {element: amount / total for element, amount in amounts.items()}


@dataclass(frozen=True)
class LowerHull:
    """The lower facets of one chemical space as planes, ΔHf = a·x[:-1] + b."""

    space: Space
    slopes: np.ndarray
    offsets: np.ndarray

    def energies(self, fractions: np.ndarray) -> np.ndarray:
        """The hull energy at each row of atomic fractions over ``space`` (its columns), in
        blocks of rows that keep the (rows × facets) products in the CPU's cache."""
        block = max(1, 2**20 // max(len(self.offsets), 1))
        return np.concatenate(
            [
                np.max(part[:, :-1] @ self.slopes.T + self.offsets, axis=1)
                for part in np.array_split(fractions, range(block, len(fractions), block))
            ]
        )


def lower_hull(space: Space, fractions: np.ndarray, energies: np.ndarray) -> LowerHull:
    """The lower hull of compounds (rows of atomic fractions over ``space``) with the
    elements of the space at zero energy."""
    d = len(space)
    if d == 1:
        return LowerHull(space, np.zeros((1, 0)), np.array([np.min(energies, initial=0.0)]))
    equations, _ = _lower_facets(space, fractions, energies)
    normal_x, normal_e, offset = equations[:, : d - 1], equations[:, d - 1], equations[:, d]
    return LowerHull(space, -normal_x / normal_e[:, None], -offset / normal_e)


def _lower_facets(
    space: Space, fractions: np.ndarray, energies: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The lower facets of compounds and the elements (two or more): their plane equations
    and their corners (indices into the elements, then the compounds)."""
    d = len(space)
    fractions = np.vstack([np.eye(d), fractions])
    energies = np.concatenate([np.zeros(d), energies])
    points = np.column_stack([fractions[:, :-1], energies])
    # a point far above the centre makes the set full-dimensional whatever the compounds are,
    # and closes the hull with upward-facing facets only
    roof = np.append(np.full(d - 1, 1.0 / d), energies.max() + 10.0 + np.ptp(energies))
    hull = ConvexHull(np.vstack([points, roof]))
    lower = hull.equations[:, d - 1] < -1e-12
    return hull.equations[lower], hull.simplices[lower]


def _lower_vertices(space: Space, rows: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """Which compounds (rows of atomic fractions) are corners of their lower hull with the
    elements."""
    corner = np.zeros(len(rows), dtype=bool)
    if len(space) > 1 and len(rows):
        index = np.unique(_lower_facets(space, rows, energies)[1]) - len(space)
        corner[index[(index >= 0) & (index < len(rows))]] = True
    return corner


def vertex_aware_dhd(
    space: Space, rows: np.ndarray, energies: np.ndarray, chosen: Sequence[int]
) -> np.ndarray:
    """Bartel's ΔHd of the ``chosen`` compounds among all the compounds of one space (rows of
    atomic fractions over ``space`` and their energies): the energy above the hull of all of
    them, or, for a compound on the hull, the depth below the hull without its composition.

    Without one composition of the hull, the corners of the new hull are among the others
    on the hull and the corners of the *second* hull: the hull of the compounds left when
    every composition on the first is taken away (a point that is no corner of a set is no
    corner of any larger one). So each such ΔHd is one small hull of those two layers."""
    chosen = np.asarray(chosen, dtype=int)
    above = energies - lower_hull(space, rows, energies).energies(rows)
    dhd = above[chosen].copy()
    on_hull = np.flatnonzero(dhd <= ON_HULL)
    if not len(on_hull):
        return dhd
    first = above <= ON_HULL
    nearest = cKDTree(rows[first]).query(rows, distance_upper_bound=SAME_COMPOSITION, p=np.inf)
    rest = np.flatnonzero(~np.isfinite(nearest[0]))  # no composition of the first hull
    layers = first.copy()
    layers[rest] = _lower_vertices(space, rows[rest], energies[rest])
    layer_rows, layer_energies = rows[layers], energies[layers]
    for k in on_hull:
        i = chosen[k]
        keep = np.any(np.abs(layer_rows - rows[i]) > SAME_COMPOSITION, axis=1)
        hull = lower_hull(space, layer_rows[keep], layer_energies[keep])
        dhd[k] = energies[i] - hull.energies(rows[i : i + 1])[0]
    return dhd


class FormationHull:
    """The lower convex hull of formation energy (eV/atom) of a set of known compounds.

    Every element is a terminal at zero energy (formation energies are relative to the
    elements), so a space needs no elemental records. :meth:`hull_energies` evaluates the hull
    at any compositions; :meth:`decomposition_energies` gives Bartel's ΔHd of the known
    compounds themselves.
    """

    def __init__(
        self, compositions: Sequence[Composition], energies: np.ndarray, cache_size: int = 8192
    ) -> None:
        energies = np.asarray(energies, dtype=np.float64).ravel()
        if len(energies) != len(compositions):
            raise DataError(f"{len(compositions)} compositions but {len(energies)} energies")
        bad = np.flatnonzero(~np.isfinite(energies))
        if len(bad):
            raise DataError(
                f"{len(bad)} formation energies are not finite, the first of "
                f"{compositions[bad[0]].reduced_formula} (record {bad[0]}): {energies[bad[0]]}"
            )
        self.compositions = list(compositions)
        self.energies = energies
        self._fractions = [_fractions(comp) for comp in self.compositions]
        self._by_space: dict[Space, list[int]] = defaultdict(list)
        for index, comp in enumerate(self.compositions):
            self._by_space[chemical_space(comp)].append(index)
        self.hull = lru_cache(maxsize=cache_size)(self._hull)

    def __len__(self) -> int:
        return len(self.compositions)

    def members(self, space: Space) -> list[int]:
        """Indices of the known compounds whose elements all lie in ``space``."""
        found = []
        for size in range(1, len(space) + 1):
            for subset in combinations(space, size):
                found.extend(self._by_space.get(subset, ()))
        return found

    def fraction_matrix(self, space: Space, indices: Iterable[int]) -> np.ndarray:
        """Atomic fractions of known compounds as rows over the columns of ``space``."""
        return _fraction_rows(space, [self._fractions[i] for i in indices])

    def _hull(self, space: Space) -> LowerHull:
        members = self.members(space)
        return lower_hull(space, self.fraction_matrix(space, members), self.energies[members])

    def hull_energies(self, compositions: Iterable[Composition]) -> np.ndarray:
        """The known compounds' hull energy (eV/atom) at each composition."""
        compositions = list(compositions)
        out = np.empty(len(compositions))
        for space, indices in _group_by_space(compositions).items():
            rows = _fraction_rows(space, [_fractions(compositions[i]) for i in indices])
            out[indices] = self.hull(space).energies(rows)
        return out

    def decomposition_energies(self, indices: Iterable[int] | None = None) -> np.ndarray:
        """Bartel's ΔHd (eV/atom) of known compounds, each against the hull of every other
        composition."""
        indices = np.arange(len(self)) if indices is None else np.asarray(list(indices), int)
        out = np.empty(len(indices))
        groups = _group_by_space([self.compositions[i] for i in indices])
        for space, positions in groups.items():
            members = np.asarray(self.members(space))
            where = {index: k for k, index in enumerate(members)}
            chosen = [where[i] for i in indices[positions]]
            rows = self.fraction_matrix(space, members)
            out[positions] = vertex_aware_dhd(space, rows, self.energies[members], chosen)
        return out

    def phase_diagram(self, space: Space):
        """The known compounds of ``space`` as a pymatgen ``PhaseDiagram`` (elements at 0)."""
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

        terminals = [PDEntry(Composition(symbol), 0.0) for symbol in space]
        entries = [
            PDEntry(self.compositions[i], self.energies[i] * self.compositions[i].num_atoms)
            for i in self.members(space)
        ]
        return PhaseDiagram(terminals + entries)


def _fraction_rows(space: Space, fractions: Sequence[dict[str, float]]) -> np.ndarray:
    column = {element: j for j, element in enumerate(space)}
    rows = np.zeros((len(fractions), len(space)))
    for i, amounts in enumerate(fractions):
        for element, fraction in amounts.items():
            rows[i, column[element]] = fraction
    return rows


def _group_by_space(compositions: Sequence[Composition]) -> dict[Space, list[int]]:
    groups: dict[Space, list[int]] = defaultdict(list)
    for i, comp in enumerate(compositions):
        groups[chemical_space(comp)].append(i)
    return groups


def decomposition_energies(
    compositions: Sequence[Composition],
    energies: np.ndarray,
    known: tuple[Sequence[Composition], np.ndarray] | None = None,
) -> np.ndarray:
    """Bartel's ΔHd (eV/atom) of each compound against the hull of the ``known`` compounds
    (compositions and energies) together with all the *other* given compounds.

    This is the held-out-system protocol: true ΔHd from true energies, predicted ΔHd from the
    predicted energies of the same compounds over the same known subsystems.
    """
    known_compositions, known_energies = known if known is not None else ([], np.empty(0))
    hull = FormationHull(
        [*compositions, *known_compositions],
        np.concatenate([np.asarray(energies, dtype=np.float64).ravel(), known_energies]),
    )
    return hull.decomposition_energies(range(len(compositions)))


def stability_scores(
    true_dhd: np.ndarray, predicted_dhd: np.ndarray, threshold: float = 0.0
) -> dict[str, float]:
    """Stability classification (stable when ΔHd ≤ ``threshold``) and the ΔHd MAE.

    Precision, recall, F1 and false-positive rate of the predicted stable set; a score with no
    predicted (or no true) stable compound is 0 rather than undefined.
    """
    true_dhd = np.asarray(true_dhd, dtype=np.float64)
    predicted_dhd = np.asarray(predicted_dhd, dtype=np.float64)
    stable, called = true_dhd <= threshold, predicted_dhd <= threshold
    tp = int(np.sum(stable & called))
    fp = int(np.sum(~stable & called))
    fn = int(np.sum(stable & ~called))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    negatives = int(np.sum(~stable))
    return {
        "dhd_mae": float(np.mean(np.abs(predicted_dhd - true_dhd))),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "fpr": fp / negatives if negatives else 0.0,
        "n": len(true_dhd),
        "n_stable": int(np.sum(stable)),
    }
