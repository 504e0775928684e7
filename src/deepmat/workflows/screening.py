"""Combinatorial screening: every composition of a chemical system, its predicted formation
energy and its decomposition energy, ranked.

For a system of :math:`k` elements every composition with integer amounts
:math:`n_i \\ge 0`, at least two elements present, :math:`\\sum n_i \\le N` atoms per formula
unit and :math:`\\gcd(n) = 1` (each composition once) is enumerated — by stars and bars, in
chunks of one leading amount :math:`n_1` each, which Dask spreads over workers or a cluster.
Optionally only charge-balanced compositions are kept: some combination of the elements'
common oxidation states (pymatgen) sums to zero. A composition model predicts ΔHf (with its
standard deviation where it gives one), and ΔHd (:mod:`deepmat.physics.hulls`) places each
candidate against the known compounds of the system (optional) and all the other candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations, product

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Element

from deepmat.data.composition import CompositionTable, composition_table
from deepmat.data.splits import parse_system
from deepmat.errors import DataError
from deepmat.parallel import map_chunks
from deepmat.physics.hulls import FormationHull, vertex_aware_dhd
from deepmat.train.estimator import UncertaintyUnavailable

MAX_ELEMENTS = 6


def system_elements(system: str, supported: Sequence[str]) -> tuple[str, ...]:
    """The sorted elements of ``system`` ("Na-Fe-Mn-O"); an unknown element, too many of them
    or one the model cannot represent is a clear error naming it."""
    elements = tuple(sorted(parse_system(system)))
    if len(elements) < 2 or len(elements) > MAX_ELEMENTS:
        raise DataError(
            f"system {system!r} has {len(elements)} elements; screening takes 2 to {MAX_ELEMENTS}"
        )
    missing = [el for el in elements if el not in set(supported)]
    if missing:
        raise DataError(f"system {system!r}: the model does not represent {', '.join(missing)}")
    return elements


def counts_with_leading(k: int, max_atoms: int, leading: int) -> np.ndarray:
    """Integer amounts (rows, ``k`` columns) with ``n_1 = leading``, all ≥ 0, at least two
    elements present, at most ``max_atoms`` atoms and no common divisor."""
    budget = max_atoms - leading
    if k == 1:
        rows = np.array([[leading]]) if budget >= 0 else np.zeros((0, 1), int)
    else:
        # stars and bars: k-1 amounts ≥ 0 summing to at most `budget` are the gaps between
        # k-1 sorted bars among budget + k - 1 slots
        bars = np.array(list(combinations(range(budget + k - 1), k - 1)), dtype=np.int64)
        bars = bars.reshape(-1, k - 1)
        rest = np.diff(np.column_stack([np.full(len(bars), -1), bars]), axis=1) - 1
        rows = np.column_stack([np.full(len(rest), leading), rest])
    keep = (np.count_nonzero(rows, axis=1) >= 2) & (np.gcd.reduce(rows, axis=1) == 1)
    return rows[keep]


def charge_balanced(elements: Sequence[str], counts: np.ndarray) -> np.ndarray:
    """Whether some combination of the elements' common oxidation states (pymatgen) sums to
    zero over the amounts of each row; an absent element takes no part."""
    states = [Element(el).common_oxidation_states or (0,) for el in elements]
    balanced = np.zeros(len(counts), dtype=bool)
    for combination in product(*states):
        balanced |= counts @ np.array(combination) == 0
    return balanced


@dataclass
class ScreenResult:
    """The candidates, ranked by ΔHd, and what it took."""

    candidates: pd.DataFrame
    enumerated: int
    kept: int
    known: int

    @property
    def stable(self) -> pd.DataFrame:
        return self.candidates[self.candidates["dhd"] <= 0]


def screen(
    model,
    system: str,
    max_atoms: int = 12,
    *,
    known: CompositionTable | None = None,
    only_charge_balanced: bool = False,
    std: bool = False,
    scheduler: str = "threads",
    client=None,
    workers: int | None = None,
) -> ScreenResult:
    """Enumerate ``system`` up to ``max_atoms`` atoms per formula unit, predict ΔHf with
    ``model`` (eV/atom; ``std`` adds its standard deviation), place every candidate on the
    hull of the ``known`` compounds (with targets in the model's unit) and the other
    candidates, and rank by ΔHd."""
    elements = system_elements(system, model.representation.supported_elements)
    if max_atoms < 2:
        raise DataError(f"max_atoms must be at least 2, got {max_atoms}")
    k = len(elements)

    def chunk(leading: int):
        counts = counts_with_leading(k, max_atoms, leading)
        enumerated = len(counts)
        if only_charge_balanced:
            counts = counts[charge_balanced(elements, counts)]
        fractions = counts / counts.sum(axis=1, keepdims=True)
        predicted = predict_fractions(model, elements, fractions, std)
        return counts, enumerated, predicted

    parts = list(
        map_chunks(
            chunk, list(range(max_atoms + 1)), scheduler=scheduler, client=client, workers=workers
        )
    )
    counts = np.concatenate([p[0] for p in parts])
    enumerated = sum(p[1] for p in parts)
    energy = np.concatenate([p[2][0] if std else p[2] for p in parts])
    spread = np.concatenate([p[2][1] for p in parts]) if std else None
    fractions = counts / counts.sum(axis=1, keepdims=True)
    known_rows, known_energy = _known_in_space(known, elements)
    dhd = candidate_dhd(elements, fractions, energy, known_rows, known_energy)
    # written as pymatgen writes formulas: elements by electronegativity (LiFeO2)
    order = sorted(range(k), key=lambda j: (Element(elements[j]).X, elements[j]))
    formulas = [_formula([elements[j] for j in order], row[order]) for row in counts]
    frame = pd.DataFrame({"formula": formulas, "dhf": energy, "dhd": dhd})
    if spread is not None:
        frame.insert(2, "dhf_std", spread)
    frame["atoms"] = counts.sum(axis=1)
    frame["known"] = _is_known(fractions, known_rows)
    frame = frame.sort_values("dhd", kind="stable").reset_index(drop=True)
    return ScreenResult(frame, enumerated, len(frame), len(known_rows))


def predict_fractions(model, elements: Sequence[str], fractions: np.ndarray, std: bool):
    """The model's predictions for rows of atomic fractions over ``elements``: straight from
    the arrays where the representation takes fractions (and the network gives σ itself, if
    asked for), else through compositions."""
    representation = model.representation
    if hasattr(representation, "transform_fractions"):
        try:
            return model.predict_features(
                representation.transform_fractions(elements, fractions), return_std=std
            )
        except UncertaintyUnavailable:  # σ from a companion that reads compositions
            pass
    table = composition_table(
        [Composition(dict(zip(elements, row, strict=True))) for row in fractions]
    )
    return model.predict(table, return_std=std)


def candidate_dhd(
    elements: Sequence[str],
    fractions: np.ndarray,
    energy: np.ndarray,
    known_rows: np.ndarray,
    known_energy: np.ndarray,
) -> np.ndarray:
    """ΔHd of each candidate against the known compounds and all the other candidates (see
    :func:`~deepmat.physics.hulls.vertex_aware_dhd`)."""
    return vertex_aware_dhd(
        tuple(elements),
        np.vstack([fractions, known_rows]),
        np.concatenate([energy, known_energy]),
        np.arange(len(fractions)),
    )


def _known_in_space(known: CompositionTable | None, elements: Sequence[str]):
    if known is None:
        return np.zeros((0, len(elements))), np.zeros(0)
    if known.targets is None:
        raise DataError("the known compounds need formation energies (a target column)")
    hull = FormationHull(known.compositions, known.targets)
    members = hull.members(tuple(elements))
    return hull.fraction_matrix(tuple(elements), members), hull.energies[members]


def _is_known(fractions: np.ndarray, known_rows: np.ndarray) -> np.ndarray:
    if not len(known_rows):
        return np.zeros(len(fractions), dtype=bool)
    keys = {tuple(np.round(row, 8)) for row in known_rows}
    return np.array([tuple(np.round(row, 8)) in keys for row in fractions])


def _formula(elements: Sequence[str], counts: np.ndarray) -> str:
    return "".join(f"{el}{n if n > 1 else ''}" for el, n in zip(elements, counts, strict=True) if n)


def hull_plot(result: ScreenResult, system: str, path, known: CompositionTable | None = None):
    """The predicted hull of a binary or ternary system (pymatgen's phase-diagram plot) from
    the candidates on or below it and the known compounds; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pymatgen.analysis.phase_diagram import PDEntry, PDPlotter, PhaseDiagram

    elements = tuple(sorted(parse_system(system)))
    if len(elements) > 3:
        raise DataError(f"a hull plot is drawn for binary and ternary systems, not {system}")
    stable = result.stable
    entries = [PDEntry(Composition(el), 0.0) for el in elements]
    entries += [
        PDEntry(Composition(f), e * Composition(f).num_atoms, name=f"{f} (predicted)")
        for f, e in zip(stable["formula"], stable["dhf"], strict=True)
    ]
    if known is not None:
        hull = FormationHull(known.compositions, known.targets)
        entries += [
            PDEntry(hull.compositions[i], hull.energies[i] * hull.compositions[i].num_atoms)
            for i in hull.members(elements)
        ]
    PDPlotter(PhaseDiagram(entries), backend="matplotlib", show_unstable=0).get_plot()
    plt.gcf().savefig(path, dpi=120, bbox_inches="tight")
    plt.close("all")
    return path
