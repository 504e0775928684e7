"""Element-fraction vectors: a composition as the atomic fraction of each element.

ElemNet's input: no domain knowledge, just the fraction of each of a fixed list of
elements. The default list is ElemNet's 86 elements (H to Pu, without the noble gases
He, Ne, Ar, the short-lived Po, At, Rn, Fr, Ra, and everything after Pu), which is
exactly the set of elements present in OQMD.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Composition

from deepmat.errors import DataError

ELEMNET_ELEMENTS: tuple[str, ...] = (
    "H", "Li", "Be", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl",
    "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge",
    "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd",
    "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd",
    "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",
    "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Ac", "Th", "Pa", "U", "Np",
    "Pu",
)  # fmt: skip


def record_label(labels: Sequence[str] | None, i: int) -> str:
    return labels[i] if labels is not None else f"input[{i}]"


class ElementFractions:
    """Composition to a vector of atomic fractions over a fixed element list."""

    name = "fractions"

    def __init__(self, elements: Sequence[str] = ELEMNET_ELEMENTS):
        self.elements = tuple(elements)
        self._column = {el: i for i, el in enumerate(self.elements)}

    @property
    def feature_names(self) -> list[str]:
        return list(self.elements)

    @property
    def supported_elements(self) -> tuple[str, ...]:
        return self.elements

    def to_dict(self) -> dict:
        return {"name": self.name, "elements": list(self.elements)}

    def transform(
        self, compositions: Sequence[Composition], labels: Sequence[str] | None = None
    ) -> np.ndarray:
        """An (n, n_elements) float32 array; rows sum to one."""
        out = np.zeros((len(compositions), len(self.elements)), dtype=np.float32)
        for i, comp in enumerate(compositions):
            amounts = comp.get_el_amt_dict()
            total = sum(amounts.values())
            for el, amount in amounts.items():
                column = self._column.get(el)
                if column is None:
                    raise DataError(
                        f"{record_label(labels, i)} ({comp.formula}): element {el} is not among "
                        f"the {len(self.elements)} elements this representation supports"
                    )
                out[i, column] = amount / total
        return out

    def transform_fractions(self, elements: Sequence[str], fractions: np.ndarray) -> np.ndarray:
        """The vectors of rows of atomic fractions over ``elements`` (e.g. enumerated
        compositions), without building a composition per row."""
        columns = [self._column.get(el) for el in elements]
        missing = [el for el, column in zip(elements, columns, strict=True) if column is None]
        if missing:
            raise DataError(f"element(s) {', '.join(missing)} not among this representation's")
        out = np.zeros((len(fractions), len(self.elements)), dtype=np.float32)
        out[:, columns] = fractions
        return out
