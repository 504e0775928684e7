"""What every training job does after fitting: record its split and save with a plot;
and, to score a saved model honestly later, the rows of one side of that split."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepmat.data.splits import Split
from deepmat.errors import DataError
from deepmat.train.metrics import parity_plot
from deepmat.train.saved import Model, save_model


def record_split(model: Model, split: Split | None, out: Path) -> None:
    """Save ``split`` as ``out/split.json`` and note it in the model's training record."""
    if split is None:
        return
    model.training["split"] = {
        "method": split.method,
        **split.params,
        "sizes": split.sizes(),
        "file": "split.json",
    }
    split.save(out / "split.json")


def save_with_parity_plot(model: Model, val, out: Path) -> None:
    """Save ``model`` to ``out`` and draw its validation parity plot there."""
    save_model(model, out)
    _, prediction = model.evaluate(val)
    parity_plot(
        val.targets,
        prediction,
        out / "parity_val.png",
        title=f"{model.name}: validation",
        unit=model.unit,
    )


SPLIT_PARTS = ("train", "val", "test")


def split_part_rows(model_dir: Path, part: str, names: Sequence[str]) -> tuple[np.ndarray, int]:
    """Rows of ``names`` (record ids or formulas) that the ``split.json`` saved with the
    model in ``model_dir`` puts in ``part``, and how many of that part's records are not
    among ``names``: scoring a model on its own validation or test records, not on the
    data it was trained on."""
    if part not in SPLIT_PARTS:
        raise DataError(f"split part {part!r} is not one of {SPLIT_PARTS}")
    path = Path(model_dir) / "split.json"
    if not path.exists():
        raise DataError(
            f"{model_dir} has no split.json (its training data came split as distributed), "
            "so there is no saved part to evaluate on"
        )
    wanted = set(json.loads(path.read_text())[part])
    rows = np.array([i for i, name in enumerate(names) if name in wanted], dtype=int)
    if not len(rows):
        raise DataError(f"none of the {len(wanted)} {part} records of {path} are in this data")
    return rows, len(wanted) - len({names[i] for i in rows})
