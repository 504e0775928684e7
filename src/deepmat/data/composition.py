"""Tables of chemical compositions and their targets, validated at the boundary.

A :class:`CompositionTable` is what every composition model trains on: pymatgen
``Composition`` objects, one float target each, and a :class:`LoadReport` that
accounts for every input row (kept, merged as a duplicate, or dropped and why).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pymatgen.core import Composition, Element

from deepmat.errors import DataError

DuplicatePolicy = Literal["mean", "keep", "error"]
ErrorPolicy = Literal["raise", "drop"]


@dataclass
class LoadReport:
    """What happened to every row of a source: how many were read, dropped and merged."""

    source: str
    rows_read: int
    dropped: Counter = field(default_factory=Counter)
    duplicates_merged: int = 0
    duplicates_kept: int = 0

    @property
    def rows_kept(self) -> int:
        return self.rows_read - sum(self.dropped.values()) - self.duplicates_merged

    def summary(self) -> str:
        parts = [f"{self.source}: {self.rows_read} rows read, {self.rows_kept} kept"]
        parts += [f"{n} dropped ({reason})" for reason, n in sorted(self.dropped.items())]
        if self.duplicates_merged:
            parts.append(f"{self.duplicates_merged} duplicate rows averaged into others")
        if self.duplicates_kept:
            parts.append(f"{self.duplicates_kept} duplicate rows kept")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "dropped": dict(self.dropped),
            "duplicates_merged": self.duplicates_merged,
            "duplicates_kept": self.duplicates_kept,
        }


@dataclass
class CompositionTable:
    """Compositions with optional targets; ``labels`` name each record for error messages."""

    formulas: list[str]
    compositions: list[Composition]
    targets: np.ndarray | None
    labels: list[str]
    report: LoadReport

    def __len__(self) -> int:
        return len(self.compositions)

    @property
    def keys(self) -> list[str]:
        """Canonical composition keys: equal for Fe2O3 and Fe4O6, used for grouping."""
        return [composition_key(c) for c in self.compositions]

    def fingerprint(self) -> str:
        """SHA-256 of the (composition, target) pairs: identifies the training data."""
        digest = hashlib.sha256()
        targets = self.targets if self.targets is not None else [None] * len(self)
        for key, value in sorted(zip(self.keys, map(repr, targets), strict=True)):
            digest.update(f"{key}\t{value}\n".encode())
        return digest.hexdigest()

    def subset(self, index: Sequence[int] | np.ndarray) -> CompositionTable:
        index = np.asarray(index, dtype=int)
        return CompositionTable(
            formulas=[self.formulas[i] for i in index],
            compositions=[self.compositions[i] for i in index],
            targets=None if self.targets is None else self.targets[index],
            labels=[self.labels[i] for i in index],
            report=self.report,
        )

    def concat(self, other: CompositionTable) -> CompositionTable:
        """This table's records followed by ``other``'s (both with targets or both without)."""
        if (self.targets is None) != (other.targets is None):
            raise DataError("cannot join a table with targets to one without")
        return CompositionTable(
            formulas=self.formulas + other.formulas,
            compositions=self.compositions + other.compositions,
            targets=None if self.targets is None else np.concatenate([self.targets, other.targets]),
            labels=self.labels + other.labels,
            report=self.report,
        )

    def restrict_elements(
        self, allowed: Sequence[str], on_error: ErrorPolicy = "raise", why: str = ""
    ) -> CompositionTable:
        """Keep only compositions made of ``allowed`` elements; raise or count the others."""
        allowed_set = set(allowed)
        keep = []
        for i, comp in enumerate(self.compositions):
            bad = sorted({el.symbol for el in comp.elements} - allowed_set)
            if not bad:
                keep.append(i)
            elif on_error == "raise":
                raise DataError(
                    f"{self.labels[i]}: element(s) {', '.join(bad)} not supported{why}; "
                    "use on_error='drop' (CLI: --drop-invalid) to skip such rows"
                )
            else:
                self.report.dropped["unsupported element"] += 1
        return self if len(keep) == len(self) else self.subset(keep)


def composition_key(comp: Composition) -> str:
    """A canonical, cheap key of the reduced composition (element fractions to 1e-6)."""
    amounts = comp.get_el_amt_dict()
    total = sum(amounts.values())
    return " ".join(f"{el}{amounts[el] / total:.6f}" for el in sorted(amounts))


def parse_formula(formula: object, label: str) -> Composition:
    """Parse one formula (or pass a Composition through), naming ``label`` on failure."""
    if isinstance(formula, Composition):
        comp = formula
    else:
        text = "" if formula is None else str(formula).strip()
        if not text or text.lower() == "nan":
            raise DataError(f"{label}: empty formula")
        try:
            comp = Composition(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{label}: cannot parse formula {text!r} ({exc})") from None
    unknown = [str(el) for el in comp.elements if not isinstance(el, Element)]
    if unknown:
        raise DataError(f"{label}: unknown element {', '.join(unknown)} in {formula!s}")
    if comp.num_atoms <= 0:
        raise DataError(f"{label}: formula {formula!s} has no atoms")
    return comp


def composition_table(
    formulas: Sequence[object],
    targets: Sequence[float] | np.ndarray | None = None,
    *,
    source: str = "input",
    label: Callable[[int], str] | None = None,
    duplicates: DuplicatePolicy = "keep",
    on_error: ErrorPolicy = "raise",
) -> CompositionTable:
    """Validate formulas (and targets) into a :class:`CompositionTable`.

    ``on_error='drop'`` skips bad rows and counts them by reason in the report;
    ``duplicates`` decides what happens to rows whose reduced composition repeats.
    """
    label = label or (lambda i: f"{source}[{i}]")
    if targets is not None and len(targets) != len(formulas):
        raise DataError(f"{source}: {len(formulas)} formulas but {len(targets)} targets")
    report = LoadReport(source=source, rows_read=len(formulas))
    kept_formulas, comps, values, labels = [], [], [], []
    for i, formula in enumerate(formulas):
        where = label(i)
        try:
            comp = parse_formula(formula, where)
            value = None if targets is None else _check_target(targets[i], where, formula)
        except DataError as exc:
            if on_error == "raise":
                raise
            report.dropped[_reason(str(exc))] += 1
            continue
        kept_formulas.append(str(formula).strip())
        comps.append(comp)
        values.append(value)
        labels.append(where)
    y = None if targets is None else np.asarray(values, dtype=np.float64)
    table = CompositionTable(kept_formulas, comps, y, labels, report)
    return _handle_duplicates(table, duplicates)


def read_composition_csv(
    path: str | Path,
    target: str | None = "target",
    *,
    formula_column: str = "formula",
    duplicates: DuplicatePolicy = "mean",
    on_error: ErrorPolicy = "raise",
) -> CompositionTable:
    """Read a CSV (optionally gzipped) with a formula column and, unless ``target`` is
    None, a numeric target column. Errors name the file and line."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None
    if frame.empty:
        raise DataError(f"{path}: the file has a header but no rows")
    for column in [formula_column] + ([target] if target else []):
        if column not in frame.columns:
            raise DataError(
                f"{path}: no column {column!r}; columns are {', '.join(map(str, frame.columns))}"
            )
    targets = frame[target].tolist() if target else None
    return composition_table(
        frame[formula_column].tolist(),
        targets,
        source=str(path),
        label=lambda i: f"{path.name} line {i + 2}",
        duplicates=duplicates,
        on_error=on_error,
    )


def _check_target(value: object, where: str, formula: object) -> float:
    if isinstance(value, str) and not value.strip():
        raise DataError(f"{where} ({formula}): target is missing")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where} ({formula}): target {value!r} is not a number") from None
    if math.isnan(number):
        raise DataError(f"{where} ({formula}): target is NaN (missing)")
    if math.isinf(number):
        raise DataError(f"{where} ({formula}): target is infinite")
    return number


def _reason(message: str) -> str:
    for reason in ("empty formula", "cannot parse formula", "unknown element", "no atoms"):
        if reason in message:
            return reason
    if "target" in message:
        return "bad target"
    return "invalid"


def _handle_duplicates(table: CompositionTable, policy: DuplicatePolicy) -> CompositionTable:
    keys = table.keys
    first: dict[str, int] = {}
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        head = first.setdefault(key, i)
        groups.setdefault(head, []).append(i)
    repeated = {h: members for h, members in groups.items() if len(members) > 1}
    if not repeated:
        return table
    n_extra = sum(len(m) - 1 for m in repeated.values())
    if policy == "error":
        head, members = next(iter(repeated.items()))
        raise DataError(
            f"{table.report.source}: {n_extra} duplicate rows; e.g. "
            + ", ".join(f"{table.labels[i]} ({table.formulas[i]})" for i in members)
            + " have the same reduced composition; use duplicates='mean' or 'keep'"
        )
    if policy == "keep":
        table.report.duplicates_kept = n_extra
        return table
    heads = sorted(groups)
    merged = table.subset(heads)
    if table.targets is not None:
        merged.targets = np.array([table.targets[groups[h]].mean() for h in heads])
    table.report.duplicates_merged = n_extra
    return merged
