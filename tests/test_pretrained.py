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
    if model.output_kind == "orientation":
        from deepmat.physics.orientations import disorientation_angle

        angles = disorientation_angle(predicted, examples["predictions"], model.point_group)
        assert np.degrees(angles).max() < 0.01
    elif model.output_kind == "labels":  # a pixel's class may flip where two classes tie
        assert np.mean(predicted != examples["predictions"]) < 1e-3
    else:
        np.testing.assert_allclose(predicted, examples["predictions"], rtol=1e-4, atol=1e-6)
    card = model.card() | {"pretrained": entry.card["pretrained"]}
    assert all(field in card["pretrained"] for field in CARD_FIELDS)
    assert "val" in entry.card["metrics"]


def test_shipped_models_fit_the_size_budget():
    sizes = [f.stat().st_size for m in SHIPPED for f in m.path.rglob("*") if f.is_file()]
    assert all(size <= 25_000_000 for size in sizes)
    assert sum(sizes) <= 60_000_000


def test_an_unknown_name_lists_the_shipped_models(tmp_path):
    with pytest.raises(ModelFormatError, match="neither a saved-model directory"):
        deepmat.load("no-such-model")
    with pytest.raises(ModelFormatError, match="neither a saved-model directory"):
        deepmat.load(str(tmp_path / "missing"))


def test_a_composition_model_loads_and_predicts_without_the_heavy_families(tmp_path):
    """Cold start: no Lightning (training only), none of the image families' libraries and no
    pandas (read only for CSV inputs)."""
    from deepmat.models.mlp import Block, MLPSpec
    from deepmat.represent import ElementFractions
    from deepmat.train import NetworkRegressor

    n = len(ElementFractions().feature_names)
    NetworkRegressor(MLPSpec(n, (Block(8, 1),))).save(tmp_path / "tiny")
    script = (
        "import sys, json, deepmat\n"
        f"deepmat.load({str(tmp_path / 'tiny')!r}).predict(['Fe2O3'])\n"
        "print(json.dumps(sorted(m for m in ('lightning', 'kikuchipy', 'orix', 'matminer', "
        "'dask', 'numba', 'pandas') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_an_array_model_packages_with_array_examples_and_test_metrics(tmp_path):
    """A model on microstructures stores its example inputs and predictions as arrays
    (examples.npz) and gets the test metrics its training run did not record."""
    from deepmat.physics import IsotropicPhase
    from deepmat.pretrained import PretrainedModel
    from deepmat.train import RuleOfMixtures
    from deepmat.workflows.pretrained import package_model

    rng = np.random.default_rng(0)
    x = (rng.random((6, 5, 5, 5)) < 0.4).astype(np.uint8)
    y = 1 + 9 * x.mean(axis=(1, 2, 3))
    phases = (IsotropicPhase(1.0, 0.3), IsotropicPhase(10.0, 0.3))
    RuleOfMixtures(phases, "voigt").fit(x, y).save(tmp_path / "trained")
    card = package_model(
        tmp_path / "trained",
        "voigt-tiny",
        tmp_path / "shipped",
        validate=lambda model: model.evaluate(x, y)["mae"],
        examples=x[:2],
        predict_examples=lambda model: predict_examples(model, x[:2]),
        pretrained={"data": {"name": "made in the test"}, "split": "none", "command": "-"},
        test=lambda model: model.evaluate(x[3:], y[3:]),
    )
    entry = PretrainedModel("voigt-tiny", tmp_path / "shipped" / "voigt-tiny", card)
    stored = entry.examples()
    np.testing.assert_array_equal(stored["inputs"], x[:2])
    np.testing.assert_allclose(stored["predictions"], deepmat.load(entry.path).predict(x[:2]))
    assert card["metrics"]["test"]["n"] == 3 and entry.metric_text("test").startswith("MAPE %")
    assert card["pretrained"]["bytes"] > (entry.path / "examples.npz").stat().st_size
