"""Atom features of the crystal graph CNN: one-hot encoded element properties.

Xie and Grossman describe each atom by nine properties, each one-hot encoded in
categories (discrete properties) or equal bins (continuous ones, some on a log scale).
The same nine properties come here from pymatgen's ``Element`` (group, period, Pauling
electronegativity, block, electron affinity, first ionisation energy) and matminer's
Magpie table (covalent radius, valence electrons, ground-state atomic volume). A
property an element lacks leaves its categories all zero.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache
from itertools import pairwise

import numpy as np
from matminer.utils.data import MagpieData
from pymatgen.core import Element

MAX_Z = 100  # fermium: the heaviest element with all nine properties tabulated


@dataclass(frozen=True)
class Encoding:
    """How one property becomes categories: ``values`` for discrete ones, else ``bins``
    equal bins over ``[low, high]`` (of log10 of the value when ``log``)."""

    name: str
    values: tuple = ()
    bins: int = 0
    low: float = 0.0
    high: float = 0.0
    log: bool = False

    @property
    def labels(self) -> list[str]:
        if self.values:
            return [f"{self.name}={v}" for v in self.values]
        edges = np.linspace(self.low, self.high, self.bins + 1)
        scale = "log10 " if self.log else ""
        return [f"{self.name} {scale}[{a:.3g}, {b:.3g})" for a, b in pairwise(edges)]

    def encode(self, value: float | str | None) -> np.ndarray:
        out = np.zeros(len(self.labels), dtype=np.float32)
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return out
        if self.values:
            if value in self.values:
                out[self.values.index(value)] = 1.0
            return out
        x = np.log10(value) if self.log else float(value)
        if self.log and value <= 0:
            return out
        position = (x - self.low) / (self.high - self.low) * self.bins
        out[int(np.clip(position, 0, self.bins - 1))] = 1.0
        return out


ENCODINGS = (
    Encoding("group", values=tuple(range(1, 19))),
    Encoding("period", values=tuple(range(1, 8))),
    Encoding("electronegativity", bins=10, low=0.5, high=4.0),
    Encoding("covalent radius (pm)", bins=10, low=25.0, high=250.0),
    Encoding("valence electrons", values=tuple(range(1, 13))),
    Encoding("first ionisation energy (eV)", bins=10, low=0.5, high=1.4, log=True),
    Encoding("electron affinity (eV)", bins=10, low=-3.0, high=3.7),
    Encoding("block", values=("s", "p", "d", "f")),
    Encoding("atomic volume (Å³)", bins=10, low=0.5, high=2.0, log=True),
)


def _properties(element: Element, magpie: MagpieData) -> tuple:
    """The nine raw properties of ``element``, None where a source has no value."""

    def magpie_value(name: str) -> float | None:
        value = magpie.get_elemental_property(element, name)
        return float(value) if value is not None and np.isfinite(value) else None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        electronegativity = element.X if np.isfinite(element.X) else None
        try:
            affinity = float(element.electron_affinity)
        except (ValueError, TypeError, KeyError):
            affinity = None
        ionisation = element.ionization_energies[0] if element.ionization_energies else None
    valence = magpie_value("NValence")
    return (
        element.group,
        element.row,
        electronegativity,
        magpie_value("CovalentRadius"),
        min(int(valence), 12) if valence else None,
        ionisation,
        affinity,
        element.block,
        magpie_value("GSvolume_pa"),
    )


@cache
def atom_feature_table() -> np.ndarray:
    """(MAX_Z + 1, n_features) float32; row Z holds element Z's features, row 0 is unused."""
    magpie = MagpieData()
    table = np.zeros((MAX_Z + 1, len(atom_feature_names())), dtype=np.float32)
    for z in range(1, MAX_Z + 1):
        values = _properties(Element.from_Z(z), magpie)
        table[z] = np.concatenate([e.encode(v) for e, v in zip(ENCODINGS, values, strict=True)])
    return table


@cache
def atom_feature_names() -> tuple[str, ...]:
    """One name per column of :func:`atom_feature_table` (``property=category`` or bin)."""
    return tuple(label for encoding in ENCODINGS for label in encoding.labels)
