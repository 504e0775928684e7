"""Packaging a trained model as a shipped pretrained model (:mod:`deepmat.pretrained`).

:func:`package_model` copies a saved-model directory into the package under its public
name, stores the weights in half precision when the validation metric holds to
``tolerance`` (relative) that way and in full precision otherwise, adds the card's
``pretrained`` section (data files with their checksums, split, command, metrics, version,
size) and stores a few inputs with the predictions the packaged model gives for them, which
the test suite checks on every machine: ``examples.json`` for JSON inputs (formulas, CIF
texts), ``examples.npz`` for an array of inputs (microstructures, patterns).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from safetensors.torch import load_file, save_file

from deepmat import __version__
from deepmat.errors import ConfigError
from deepmat.pretrained import ARRAY_EXAMPLES, EXAMPLES
from deepmat.train.saved import CARD, load_model
from deepmat.train.weights import WEIGHTS

MAX_FILE_BYTES = 25_000_000


def _relative_change(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def package_model(
    source: str | Path,
    name: str,
    destination: str | Path,
    *,
    validate: Callable[[object], float],
    examples: list | np.ndarray,
    predict_examples: Callable[[object], list],
    pretrained: dict,
    test: Callable[[object], dict] | None = None,
    tolerance: float = 1e-3,
) -> dict:
    """Package the model saved at ``source`` as ``destination/name``.

    ``validate(model) -> float`` scores a model on the validation data (the card's metric);
    ``examples`` are inputs (a JSON list, or an array) that ``predict_examples(model)`` turns
    into predictions;
    ``pretrained`` is the card's ``pretrained`` section (data, split, command); ``test(model)
    -> dict``, when the training run did not score its held-out test data into the card,
    does so for the packaged model. Returns the final card.
    """
    source, target = Path(source), Path(destination) / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "work", "*.png"))
    reference = validate(load_model(source))
    precision, packaged = "float32", reference
    weights = sorted(target.rglob(WEIGHTS))  # an ensemble's are in members/i/
    if weights:
        full = {path: load_file(path) for path in weights}
        for path, tensors in full.items():
            save_file(
                {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, path
            )
        half = validate(load_model(target))
        if _relative_change(half, reference) <= tolerance:
            precision, packaged = "float16", half
        else:
            for path, tensors in full.items():
                save_file(tensors, path)
    predictions = np.asarray(predict_examples(load_model(target)), dtype=np.float64)
    if isinstance(examples, np.ndarray):
        np.savez_compressed(target / ARRAY_EXAMPLES, inputs=examples, predictions=predictions)
    else:
        (target / EXAMPLES).write_text(
            json.dumps({"inputs": examples, "predictions": predictions.tolist()}, indent=1)
        )
    files = [file for file in target.rglob("*") if file.is_file()]
    for file in files:
        file.chmod(0o644)  # readable wherever the package is installed
        if file.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{file} is {file.stat().st_size / 1e6:.1f} MB, over 25 MB")
    card = json.loads((target / CARD).read_text())
    if test is not None and "test" not in card["metrics"]:
        card["metrics"]["test"] = test(load_model(target))
    card["pretrained"] = pretrained | {
        "name": name,
        "deepmat_version": __version__,
        "weights_precision": precision,
        "validation_metric_packaged": packaged,
        "validation_metric_trained": reference,
        "bytes": sum(file.stat().st_size for file in files),
    }
    (target / CARD).write_text(json.dumps(card, indent=2, default=float))
    return card
