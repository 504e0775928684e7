"""A composition as the list of its elements and their fractions, for the networks that read
a formula as a set (:mod:`deepmat.models.element_sets`), and the pretrained element
embeddings those networks start from.

:class:`ElementSequence` turns compositions into (n, N, 2) float32 rows [Z, x]: atomic number
and atomic fraction of each element, largest fraction first, padded with zeros to N
elements. :func:`element_table` reads an embedding of ``elementembeddings`` (mat2vec,
matscholar, MEGNet-16, Magpie, Oliynyk, SkipAtom, random) into a table indexed by Z.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Composition, Element

from deepmat.errors import DataError
from deepmat.represent.fractions import record_label

#: the embeddings of ``elementembeddings`` a network can start from
EMBEDDINGS = ("mat2vec", "matscholar", "megnet16", "magpie", "oliynyk", "skipatom", "random_200")


def element_table(name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """The embedding ``name`` as a (119, dim) float32 table (row Z; zero rows for elements it
    lacks and for row 0, the padding) and the elements it covers."""
    if name not in EMBEDDINGS:
        raise DataError(f"unknown element embedding {name!r}; choose from {', '.join(EMBEDDINGS)}")
    from elementembeddings.core import Embedding

    embedding = Embedding.load_data(name)
    table = np.zeros((119, embedding.dim), dtype=np.float32)
    covered = []
    for symbol, vector in embedding.embeddings.items():
        try:
            z = Element(symbol).Z
        except ValueError:
            continue
        table[z] = vector
        covered.append(symbol)
    return table, tuple(sorted(covered, key=lambda s: Element(s).Z))


class ElementSequence:
    """Compositions to [Z, x] rows (module docstring) over ``elements`` (all by default)."""

    name = "element-sequence"

    def __init__(self, elements: Sequence[str] | None = None, max_elements: int = 8):
        self.elements = tuple(elements) if elements is not None else None
        self.max_elements = int(max_elements)
        self._allowed = set(self.elements) if self.elements is not None else None

    @property
    def feature_names(self) -> list[str]:
        return [f"{kind}{i}" for i in range(self.max_elements) for kind in ("Z", "x")]

    @property
    def supported_elements(self) -> tuple[str, ...]:
        return self.elements or tuple(Element.from_Z(z).symbol for z in range(1, 119))

    def to_dict(self) -> dict:
        elements = list(self.elements) if self.elements is not None else None
        return {"name": self.name, "elements": elements, "max_elements": self.max_elements}

    def transform(
        self, compositions: Sequence[Composition], labels: Sequence[str] | None = None
    ) -> np.ndarray:
        """An (n, max_elements, 2) float32 array of [Z, x] rows."""
        out = np.zeros((len(compositions), self.max_elements, 2), dtype=np.float32)
        for i, comp in enumerate(compositions):
            amounts = comp.get_el_amt_dict()
            if len(amounts) > self.max_elements:
                raise DataError(
                    f"{record_label(labels, i)} ({comp.formula}): {len(amounts)} elements, more "
                    f"than the {self.max_elements} this representation holds"
                )
            total = sum(amounts.values())
            order = sorted(amounts.items(), key=lambda item: (-item[1], item[0]))
            for k, (symbol, amount) in enumerate(order):
                if self._allowed is not None and symbol not in self._allowed:
                    raise DataError(
                        f"{record_label(labels, i)} ({comp.formula}): element {symbol} has no "
                        "row in this model's element embedding"
                    )
                out[i, k] = Element(symbol).Z, amount / total
        return out
