"""Pretrained models shipped inside the package: ``deepmat.load("elemnet-oqmd")``.

Each model is a saved-model directory here, named as it is loaded, holding its card (the
data files and their checksums, the split, the command that trained it, validation and test
metrics, the deepmat version), its weights in half precision where the card's validation
metric holds to 1e-3 relative, and a few inputs with the predictions the model gave when it
was packaged, which the test suite checks: ``examples.json`` for formulas and CIF texts,
``examples.npz`` for arrays (microstructures, EBSD patterns). ``deepmat models`` lists them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepmat.errors import ModelFormatError

ROOT = Path(__file__).parent
EXAMPLES = "examples.json"
ARRAY_EXAMPLES = "examples.npz"
#: the metric ``deepmat models`` shows for a model, the first its card has, and its label
HEADLINE_METRICS = {
    "mase": "MASE %",
    "mape": "MAPE %",
    "mean_disorientation_deg": "mean °",
    "miou": "mIoU",
    "mae": "MAE",
    "s2_mse": "S2 MSE",
}


@dataclass
class PretrainedModel:
    """What ``deepmat models`` shows of one shipped model."""

    name: str
    path: Path
    card: dict

    @property
    def family(self) -> str:
        return self.card["family"]

    @property
    def predicts(self) -> str:
        if self.card.get("output") == "microstructure":  # a generator
            size = self.card["architecture"]["size"]
            return f"{size}² structures from {self.card['architecture']['latent_dim']} latents"
        if "classes" in self.card:  # a segmentation model
            return f"labels ({', '.join(self.card['classes']['names'])})"
        if "target" not in self.card:  # an orientation model
            return f"{self.card.get('output', '?')} ({self.card.get('point_group', '?')})"
        target = self.card["target"]
        unit = target.get("unit", "")
        return f"{target.get('name', '?')} ({unit})" if unit else str(target.get("name", "?"))

    @property
    def data(self) -> str:
        return self.card.get("pretrained", {}).get("data", {}).get("name", "?")

    @property
    def megabytes(self) -> float:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file()) / 1e6

    def metric_text(self, part: str) -> str:
        """The card's headline metric on ``part`` (val or test), e.g. "MAE 0.0493": MASE for
        strain fields, MAPE for stiffness, the mean disorientation for orientations."""
        metrics = self.card.get("metrics", {}).get(part)
        if not metrics:
            return "-"
        key = next(k for k in HEADLINE_METRICS if k in metrics)
        return f"{HEADLINE_METRICS[key]} {metrics[key]:.4g}"

    def examples(self) -> dict:
        """The stored example inputs and the predictions made when the model was packaged."""
        arrays = self.path / ARRAY_EXAMPLES
        if arrays.is_file():
            with np.load(arrays) as stored:
                return {"inputs": stored["inputs"], "predictions": stored["predictions"]}
        return json.loads((self.path / EXAMPLES).read_text())


def predict_examples(model, inputs: list | np.ndarray) -> np.ndarray:
    """``model``'s predictions for example inputs as an array: values, fields, or unit
    quaternions (n, 4) for an orientation model. Inputs are formulas, CIF texts for a
    structure model, or an array of microstructures, patterns or micrographs (label images
    for a segmentation model)."""
    if model.input_kind == "structure":
        from pymatgen.core import Structure

        inputs = [Structure.from_str(text, fmt="cif") for text in inputs]
    elif model.input_kind == "micrograph":
        inputs = list(inputs)
    predicted = model.predict(inputs)
    if model.output_kind == "orientation":
        return np.asarray(predicted.data, dtype=np.float64)
    return np.asarray(predicted, dtype=np.float64)


def pretrained_models() -> list[PretrainedModel]:
    """Every shipped model, by name."""
    models = []
    for folder in sorted(p for p in ROOT.iterdir() if (p / "card.json").is_file()):
        models.append(
            PretrainedModel(folder.name, folder, json.loads((folder / "card.json").read_text()))
        )
    return models


def pretrained_path(name: str) -> Path:
    """The directory of the shipped model ``name``; a clear error listing the others."""
    folder = ROOT / name
    if name and "/" not in name and (folder / "card.json").is_file():
        return folder
    known = ", ".join(m.name for m in pretrained_models()) or "none"
    raise ModelFormatError(
        f"{name!r} is neither a saved-model directory nor a shipped model (shipped: {known})"
    )
