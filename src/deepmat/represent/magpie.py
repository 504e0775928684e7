"""Magpie composition attributes (Ward et al. 2016), vectorised over whole datasets.

The elemental property table comes from matminer (``MagpieData``) and the statistics
are those of matminer's ``Stoichiometry``, ``ElementProperty.from_preset("magpie")``
and ``ValenceOrbital(props=["frac"])``, in the same order and with the same values
(the tests compare them). matminer computes them one composition at a time (about
5 ms each, 25 min for OQMD); here every statistic is one NumPy reduction over a
padded (compositions x elements x properties) array, a few seconds for 300k.

The Magpie ion-property attributes are left out: they need oxidation-state guessing,
which is neither fast nor well defined for the intermetallics that dominate OQMD.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
from matminer.featurizers.composition import ElementProperty
from matminer.utils.data import MagpieData
from pymatgen.core import Composition, Element

P_NORMS = (0, 2, 3, 5, 7, 10)
STATS = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")
ORBITALS = ("s", "p", "d", "f")
N_ELEMENTS = 103


@cache
def _property_table() -> tuple[tuple[str, ...], np.ndarray]:
    """(property names, array of shape (103, n_properties)) indexed by Z - 1."""
    names = tuple(ElementProperty.from_preset("magpie").features)
    data = MagpieData()
    table = np.array(
        [
            [data.get_elemental_property(Element.from_Z(z), name) for name in names]
            for z in range(1, N_ELEMENTS + 1)
        ],
        dtype=np.float64,
    )
    return names, table


def _padded_fractions(compositions: Sequence[Composition]) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers (n, k) and fractions (n, k), zero-padded to the largest k."""
    k = max((len(c) for c in compositions), default=1)
    z = np.ones((len(compositions), k), dtype=np.int64)
    w = np.zeros((len(compositions), k), dtype=np.float64)
    for i, comp in enumerate(compositions):
        amounts = comp.get_el_amt_dict()
        total = sum(amounts.values())
        for j, (symbol, amount) in enumerate(amounts.items()):
            z[i, j] = Element(symbol).Z
            w[i, j] = amount / total
    return z, w


class MagpieAttributes:
    """142 Magpie attributes: 6 stoichiometric p-norms, 22 elemental properties x 6
    fraction-weighted statistics, and 4 valence-orbital fractions."""

    name = "magpie"

    @property
    def feature_names(self) -> list[str]:
        names, _ = _property_table()
        return (
            [f"{p}-norm" for p in P_NORMS]
            + [f"MagpieData {stat} {prop}" for prop in names for stat in STATS]
            + [f"frac {o} valence electrons" for o in ORBITALS]
        )

    @property
    def supported_elements(self) -> tuple[str, ...]:
        return tuple(Element.from_Z(z).symbol for z in range(1, N_ELEMENTS + 1))

    def to_dict(self) -> dict:
        return {"name": self.name}

    def transform(
        self, compositions: Sequence[Composition], labels: Sequence[str] | None = None
    ) -> np.ndarray:
        """An (n, 142) float32 array; NaN where Magpie lacks an element's property."""
        names, table = _property_table()
        z, w = _padded_fractions(compositions)
        present = w > 0
        values = table[z - 1]  # (n, k, properties)
        weights = w[:, :, None]
        mean = (weights * values).sum(1)
        low = np.where(present[:, :, None], values, np.inf).min(1)
        high = np.where(present[:, :, None], values, -np.inf).max(1)
        avg_dev = (weights * np.abs(values - mean[:, None, :])).sum(1)
        top = np.isclose(w, w.max(1, keepdims=True)) & present
        mode = np.where(top[:, :, None], values, np.inf).min(1)
        stats = np.stack([low, high, high - low, mean, avg_dev, mode], axis=2)
        stats = stats.reshape(len(compositions), stats.shape[1] * stats.shape[2])
        norms = [present.sum(1)] + [(w**p).sum(1) ** (1 / p) for p in P_NORMS[1:]]
        column = {name: i for i, name in enumerate(names)}
        total_valence = mean[:, column["NValence"]]
        with np.errstate(invalid="ignore", divide="ignore"):
            orbital = [mean[:, column[f"N{o}Valence"]] / total_valence for o in ORBITALS]
        features = np.concatenate(
            [np.stack(norms, 1), stats, np.stack(orbital, 1)],
            axis=1,
        )
        return features.astype(np.float32)
