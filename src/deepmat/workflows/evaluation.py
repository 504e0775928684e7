"""Which records an evaluation scores, and what they are to the model: honest by default.

A saved model's ``split.json`` names the records of each side of its split. Evaluated on its
own data without a part, a model scores its test records when there are any, else its
validation records, and says that those chose the model (early stopping, settings picked on
them). Without a saved split, the data's fingerprint is compared with the card's training and
validation fingerprints. Whatever is scored, the result says which part it was, whether it
was used for model selection, and how many of its records the model was trained on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepmat.errors import DataError

SPLIT_PARTS = ("train", "val", "test")
PARTS = (*SPLIT_PARTS, "all")


@dataclass
class Scope:
    """The records scored and what they are to the model."""

    part: str
    rows: np.ndarray
    model_selection: bool = False
    training_records: int = 0
    missing: int = 0

    def to_dict(self) -> dict:
        return {
            "part": self.part,
            "used_for_model_selection": self.model_selection,
            "training_records_scored": self.training_records,
            "part_records_missing": self.missing,
        }

    def notes(self) -> list[str]:
        """Warnings for a reader of the scores."""
        notes = []
        if self.training_records:
            notes.append(
                f"{self.training_records} of the {len(self.rows)} records scored were used to "
                "train this model: their errors flatter it"
            )
        if self.model_selection:
            notes.append(f"the {self.part} records were used for model selection (early stopping)")
        if self.missing:
            notes.append(
                f"{self.missing} {self.part} records of the saved split are not in the data"
            )
        return notes


def read_split(model_dir: str | Path) -> dict[str, set[str]] | None:
    """The record names on each side of the split saved with a model, if it has one."""
    path = Path(model_dir) / "split.json"
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    return {part: {str(n) for n in saved.get(part, [])} for part in SPLIT_PARTS}


def evaluation_scope(
    model_dir: str | Path,
    card: dict,
    names: Sequence[str],
    fingerprint: str,
    part: str | None = None,
    label: str = "all",
) -> Scope:
    """The rows of a table (record ``names``, content ``fingerprint``) to score for the model
    saved in ``model_dir``: ``part`` of its saved split, or by default its held-out part when
    the table is its own data (see the module docstring). ``label`` names the table's part
    when it is not the model's own split (a named dataset's split file)."""
    if part is not None and part not in PARTS:
        raise DataError(f"part {part!r} is not one of {', '.join(PARTS)}")
    split = read_split(model_dir)
    everything = np.arange(len(names))
    if split is None:
        if part in SPLIT_PARTS:
            raise DataError(
                f"{model_dir} has no split.json (its training data came split as distributed), "
                f"so it has no saved {part} part; evaluate on that split's file instead"
            )
        data = card.get("training", {}).get("data", {})
        trained = fingerprint == data.get("fingerprint")
        selected = fingerprint == data.get("val_fingerprint")
        return Scope(label, everything, selected, len(names) if trained else 0)
    side = {
        name: np.array([i for i, n in enumerate(names) if n in split[name]], dtype=int)
        for name in SPLIT_PARTS
    }
    if part is None:
        if not any(len(rows) for rows in side.values()):
            return Scope(label, everything)
        part = "test" if len(side["test"]) else "val"
    if part == "all":
        return Scope("all", everything, bool(len(side["val"])), len(side["train"]))
    rows = side[part]
    if not len(rows):
        raise DataError(
            f"none of the {len(split[part])} {part} records of the split saved with "
            f"{model_dir} are in this data"
        )
    missing = len(split[part]) - len({names[i] for i in rows})
    training = len(rows) if part == "train" else 0
    return Scope(part, rows, part == "val", training, missing)
