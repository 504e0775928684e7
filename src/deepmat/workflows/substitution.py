"""The substitution baseline: Hautier et al.'s ion substitution probabilities (Inorg. Chem.
50, 656, 2011; pymatgen's ``SubstitutionProbability``) on elements.

pymatgen's table is over ions (Fe2+, O2-). Materials Project crystals and the query
compositions of structure prediction carry no oxidation states, so the conditional
probability of putting element a where element b is in a known crystal is taken as the
largest over their ions,

.. math:: p(a \\mid b) = \\max_{i \\in a,\\, j \\in b} p(i \\mid j),

and an element absent from the table gets pymatgen's never-observed weight (``alpha``).
A candidate's score is :math:`\\max_m \\sum_g \\ln p(a_g \\mid b_{mg})` over the known
crystals m of its template, a_g and b_mg the new and the known element of group g.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from pathlib import Path

import numpy as np

from deepmat.data.registry import cache_dir, through_cache

N_Z = 119


@cache
def log_substitution_table() -> np.ndarray:
    """(119, 119) ln p(a | b) indexed by atomic numbers [a, b] (see the module docstring),
    through a disk cache (``<cache dir>/substitution/``): pymatgen takes seconds to build its
    table of ion pairs."""
    path = cache_dir() / "substitution" / f"elements-pymatgen-{version('pymatgen')}.npy"

    def save(table: np.ndarray, partial: Path) -> None:
        with partial.open("wb") as file:
            np.save(file, table)

    return through_cache(path, _element_table, save, np.load)


def _element_table() -> np.ndarray:
    from pymatgen.analysis.structure_prediction.substitution_probability import (
        SubstitutionProbability,
    )

    model = SubstitutionProbability()
    by_element: dict[int, list] = {}
    for species in model.species:
        by_element.setdefault(species.element.Z, []).append(species)
    # p(i | j) = exp(λ_ij) / px_j; unobserved pairs have λ = alpha
    floor = model.alpha - np.log(max(model.get_px(s) for s in model.species))
    table = np.full((N_Z, N_Z), floor)
    for a, ions_a in by_element.items():
        for b, ions_b in by_element.items():
            table[a, b] = max(np.log(model.cond_prob(i, j)) for i in ions_a for j in ions_b)
    return table


def substitution_scores(members: np.ndarray, assignments: np.ndarray) -> np.ndarray:
    """(assignments,) best over the known crystals ``members`` (crystals, groups) of the
    summed ln p(new | known) of ``assignments`` (assignments, groups), atomic numbers."""
    table = log_substitution_table()
    per_member = table[assignments[:, None, :], members[None, :, :]].sum(axis=2)
    return per_member.max(axis=1)
