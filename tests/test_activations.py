"""Layer activations are the network's own intermediate outputs, probes measure what is
linearly readable from them, and the command writes its report."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deepmat.cli import app
from deepmat.errors import DataError
from deepmat.explain.activations import activations, binary_set, element_set, probe_accuracy
from deepmat.models.mlp import Block, MLPSpec
from deepmat.represent import ElementFractions
from deepmat.train import NetworkRegressor, TrainConfig


@pytest.fixture(scope="module")
def network(small_table, tmp_path_factory):
    """A small network (layers of 16, 16, 8 and 1) trained for one epoch, and where to save it."""
    spec = MLPSpec(len(ElementFractions().feature_names), (Block(16, 2), Block(8, 1)))
    config = TrainConfig(epochs=1, batch_size=64, progress=False)
    home = tmp_path_factory.mktemp("act")
    train, val = small_table.subset(range(200)), small_table.subset(range(200, len(small_table)))
    model = NetworkRegressor(spec, config=config).fit(train, val=val, workdir=home / "run")
    return model, home / "net"


def test_activations_are_the_layers_outputs(network):
    model, _ = network
    table, labels = element_set(model.representation.supported_elements)
    outputs = activations(model, table)
    assert [a.shape[1] for a in outputs] == [16, 16, 8, 1]
    x = torch.from_numpy(model.featurize(table))
    first = next(m for m in model.net.modules() if isinstance(m, torch.nn.Linear))
    np.testing.assert_allclose(outputs[0], first(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert set(labels["group"]) <= set(range(1, 19)) and labels["period"].min() == 1


def test_probe_reads_what_is_linearly_there():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    readable = np.column_stack([labels + 0.1 * rng.normal(size=400), rng.normal(size=(400, 5))])
    hidden = rng.normal(size=(400, 6))
    assert probe_accuracy(readable, labels)["balanced_accuracy"] > 0.95
    noise = probe_accuracy(hidden, labels)
    assert abs(noise["balanced_accuracy"] - 0.5) < 0.1 and noise["chance"] == 0.5


def test_binary_probe_set_labels_charge_balance():
    table, labels = binary_set(("Na", "Cl", "Fe", "O"), limit=10_000)
    amounts = [frozenset(c.get_el_amt_dict().items()) for c in table.compositions]
    balanced = dict(zip(amounts, labels["charge_balanced"], strict=True))

    def of(**amount):
        return balanced[frozenset((el, float(n)) for el, n in amount.items())]

    assert of(Na=1, Cl=1) and of(Fe=2, O=3) and of(Na=2, O=1)
    assert not of(Na=1, O=1) and not of(Fe=1, Cl=4) and not of(Na=1, Fe=1)


def test_explain_activations_command(network, tmp_path):
    model, path = network
    model.save(path)
    out = tmp_path / "explained"
    result = CliRunner().invoke(
        app,
        ["explain", "activations", str(path), "--out", str(out), "--layer", "2", "--layer", "4"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "probes.json").read_text())
    assert report["layers"] == 4 and set(report["probes"]) == {"group", "period", "charge_balanced"}
    assert [p["layer"] for p in report["probes"]["group"]] == [1, 2, 3, 4]
    assert (out / "layer2_pca.png").exists() and (out / "layer4_pca.png").exists()
    assert (out / "probes.png").exists()
    refused = CliRunner().invoke(
        app, ["explain", "activations", str(path), "--out", str(out), "--layer", "9"]
    )
    assert refused.exit_code != 0 and "layers 1 to 4" in refused.output


def test_a_model_without_a_network_is_refused(small_table):
    from deepmat.train import ForestRegressor

    forest = ForestRegressor(ElementFractions(), n_estimators=2, n_jobs=1).fit(small_table)
    with pytest.raises(DataError, match="has none"):
        activations(forest, small_table)
