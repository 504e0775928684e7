"""Train/validation/test splits that do not leak, saved beside every result.

Three ways to split, as materials work needs them:

* ``random_split``: rows shuffled, no grouping (use only for de-duplicated data);
* ``grouped_split``: whole groups (by default the reduced composition) go to one side,
  so Fe2O3 can never be in training while Fe4O6 is tested;
* ``chemical_system_split``: every compound of a held-out chemical system (all of
  Ti-O, or all of Na-Fe-Mn-O including its binary and ternary subsystems) is tested,
  the model never sees any of them; pure elements stay in training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Element

from deepmat.data.composition import composition_key
from deepmat.errors import DataError


@dataclass
class Split:
    """Index arrays of a split, with the method and parameters that made it."""

    method: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray = field(default_factory=lambda: np.array([], dtype=int))
    params: dict = field(default_factory=dict)
    names: Sequence[str] | None = None

    def indices(self) -> dict[str, np.ndarray]:
        """The row indices of each side, by name."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def sizes(self) -> dict[str, int]:
        return {side: len(index) for side, index in self.indices().items()}

    def assert_disjoint(self, keys: Sequence[str]) -> None:
        """Raise if any group key (e.g. a reduced composition) sits on two sides."""
        sides = {name: {keys[i] for i in getattr(self, name)} for name in ("train", "val", "test")}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = sides[a] & sides[b]
            if shared:
                raise DataError(
                    f"split leaks: {len(shared)} keys in both {a} and {b}, "
                    f"e.g. {sorted(shared)[:3]}"
                )

    def to_dict(self, names: Sequence[str] | None = None) -> dict:
        out = {"method": self.method, "params": self.params, "sizes": self.sizes()}
        for side in ("train", "val", "test"):
            index = getattr(self, side).tolist()
            out[side] = [names[i] for i in index] if names is not None else index
        return out

    def save(self, path: str | Path, names: Sequence[str] | None = None) -> Path:
        """Write the split as JSON: the record names (``names`` or ``self.names``) on each
        side, or the indices when no names are known."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(names if names is not None else self.names)))
        return path


def _check_fractions(val: float, test: float) -> None:
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DataError(f"split fractions val={val}, test={test} must be in [0, 1) and sum below 1")


def random_split(n: int, val: float = 0.1, test: float = 0.0, seed: int = 0) -> Split:
    """Shuffle ``n`` rows into train/val/test by fraction."""
    _check_fractions(val, test)
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = round(n * val), round(n * test)
    return Split(
        "random",
        train=np.sort(order[n_val + n_test :]),
        val=np.sort(order[:n_val]),
        test=np.sort(order[n_val : n_val + n_test]),
        params={"val": val, "test": test, "seed": seed},
    )


def hold_out(
    n: int, fraction: float, seed: int = 0, what: str = "samples"
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices (train, val) with a random ``fraction`` of ``n`` ``what`` in val and
    at least one on each side: the set an estimator keeps back for early stopping when it is
    given no validation data."""
    if n < 2:
        raise DataError(f"need at least 2 {what} to hold out a validation set, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, round(fraction * n)), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def grouped_split(
    keys: Sequence[str],
    val: float = 0.1,
    test: float = 0.0,
    seed: int = 0,
    group: str = "reduced composition",
) -> Split:
    """Split so that rows sharing a key never straddle sides; ``group`` says what the keys
    are (a reduced composition, or a structure from ``StructureTable.keys()``)."""
    _check_fractions(val, test)
    unique, inverse = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(unique))
    order = np.random.default_rng(seed).permutation(len(unique))
    filled = np.cumsum(counts[order])
    n = len(keys)
    side_of_group = np.zeros(len(unique), dtype=int)
    side_of_group[order[filled <= round(n * val)]] = 1
    in_test = (filled > round(n * val)) & (filled <= round(n * (val + test)))
    side_of_group[order[in_test]] = 2
    side = side_of_group[inverse]
    return Split(
        "grouped",
        train=np.flatnonzero(side == 0),
        val=np.flatnonzero(side == 1),
        test=np.flatnonzero(side == 2),
        params={"val": val, "test": test, "seed": seed, "group": group},
    )


def parse_system(system: str) -> frozenset[str]:
    """``"Na-Fe-Mn-O"`` (or ``"Na–Fe–Mn–O"``) to its set of element symbols."""
    symbols = [s.strip() for s in system.replace("–", "-").split("-") if s.strip()]
    bad = [s for s in symbols if not Element.is_valid_symbol(s)]
    if bad or not symbols:
        raise DataError(
            f"chemical system {system!r}: {', '.join(bad) or 'nothing'} is not an "
            "element; write systems as dash-separated symbols such as 'Ti-O'"
        )
    return frozenset(symbols)


def chemical_system_split(
    compositions: Sequence[Composition],
    systems: Sequence[str],
    val: float = 0.1,
    seed: int = 0,
    keys: Sequence[str] | None = None,
) -> Split:
    """Hold out every compound of the given chemical systems as the test set.

    A compound is held out when its elements are a subset of a held-out system and it
    has at least two elements; the rest is split into train/val by ``grouped_split``.
    """
    held = [parse_system(s) for s in systems]
    elements = [frozenset(el.symbol for el in c.elements) for c in compositions]
    in_test = np.array([len(e) > 1 and any(e <= h for h in held) for e in elements], dtype=bool)
    if not in_test.any():
        raise DataError(f"no compound of the chemical systems {list(systems)} is in the data")
    rest = np.flatnonzero(~in_test)
    if keys is None:
        keys = [composition_key(c) for c in compositions]
    inner = grouped_split([keys[i] for i in rest], val=val, seed=seed)
    return Split(
        "chemical_system",
        train=rest[inner.train],
        val=rest[inner.val],
        test=np.flatnonzero(in_test),
        params={"systems": list(systems), "val": val, "seed": seed},
    )


def system_holdout(
    compositions: Sequence[Composition], systems: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Retraining without whole chemical systems, as in the ElemNet paper and Bartel et al.

    Returns a mask of the compounds a model may train on — those that do not contain all the
    elements of any system (so Ti-O-X ternaries go with the Ti-O binaries, while Ti and O
    in other company stay) — and, per system, the indices of the compounds made of exactly its
    elements, whose stability the retrained model is asked about. Lower-order subsystems stay
    in training: their compounds form the known hull.
    """
    held = {system: parse_system(system) for system in systems}
    elements = [frozenset(el.symbol for el in c.elements) for c in compositions]
    train = np.array([not any(e >= h for h in held.values()) for e in elements], dtype=bool)
    exact = {system: np.flatnonzero([e == h for e in elements]) for system, h in held.items()}
    return train, exact


def grouped_folds(keys: Sequence[str], folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """The row indices of each of ``folds`` cross-validation folds, rows sharing a key (a
    reduced composition) always in one fold; groups are dealt to the folds in a seeded
    random order."""
    if folds < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {folds}")
    unique, inverse = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    if len(unique) < folds:
        raise DataError(f"{len(unique)} distinct compositions cannot fill {folds} folds")
    fold_of_group = np.empty(len(unique), dtype=int)
    fold_of_group[np.random.default_rng(seed).permutation(len(unique))] = (
        np.arange(len(unique)) % folds
    )
    return [np.flatnonzero(fold_of_group[inverse] == f) for f in range(folds)]
