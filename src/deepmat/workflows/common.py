"""What every training job does after fitting: record its split and save with a plot."""

from __future__ import annotations

from pathlib import Path

from deepmat.data.splits import Split
from deepmat.train.estimator import Estimator
from deepmat.train.metrics import parity_plot
from deepmat.train.saved import save_model


def record_split(model: Estimator, split: Split | None, out: Path) -> None:
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


def save_with_parity_plot(model: Estimator, val, out: Path) -> None:
    """Save ``model`` to ``out`` and draw its validation parity plot there."""
    save_model(model, out)
    prediction = model.predict(val)
    parity_plot(
        val.targets,
        prediction,
        out / "parity_val.png",
        title=f"{model.name}: validation",
        unit=model.unit,
    )
