"""Shipped pretrained models: each loads by name and reproduces the predictions stored with
it; together they fit the size budget; loading a composition model stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import deepmat
from deepmat.errors import ModelFormatError
from deepmat.pretrained import predict_examples, pretrained_models

SHIPPED = pretrained_models()
CARD_FIELDS = ("data", "split", "command", "deepmat_version", "weights_precision", "bytes")


@pytest.mark.parametrize("entry", SHIPPED, ids=[m.name for m in SHIPPED])
def test_shipped_model_reproduces_its_examples(entry):
    model = deepmat.load(entry.name)
    examples = entry.examples()
    predicted = predict_examples(model, examples["inputs"])
    np.testing.assert_allclose(predicted, examples["predictions"], rtol=1e-4, atol=1e-6)
    card = model.card() | {"pretrained": entry.card["pretrained"]}
    assert all(field in card["pretrained"] for field in CARD_FIELDS)
    assert "val" in entry.card["metrics"]


def test_shipped_models_fit_the_size_budget():
    sizes = [f.stat().st_size for m in SHIPPED for f in m.path.iterdir()]
    assert all(size <= 25_000_000 for size in sizes)
    assert sum(sizes) <= 60_000_000


def test_an_unknown_name_lists_the_shipped_models(tmp_path):
    with pytest.raises(ModelFormatError, match="neither a saved-model directory"):
        deepmat.load("no-such-model")
    with pytest.raises(ModelFormatError, match="neither a saved-model directory"):
        deepmat.load(str(tmp_path / "missing"))


def test_a_composition_model_loads_and_predicts_without_the_heavy_families(tmp_path):
    """Cold start: no Lightning (training only) and none of the image families' libraries."""
    from deepmat.models.mlp import Block, MLPSpec
    from deepmat.represent import ElementFractions
    from deepmat.train import NetworkRegressor

    n = len(ElementFractions().feature_names)
    NetworkRegressor(MLPSpec(n, (Block(8, 1),))).save(tmp_path / "tiny")
    script = (
        "import sys, json, deepmat\n"
        f"deepmat.load({str(tmp_path / 'tiny')!r}).predict(['Fe2O3'])\n"
        "print(json.dumps(sorted(m for m in ('lightning', 'kikuchipy', 'orix', 'matminer', "
        "'dask', 'numba') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
