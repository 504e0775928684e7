"""Fine-tuning: a network starts from a saved model's weights and target scaling (transfer
learning), may gain a σ output on the way, and refuses a model it cannot start from."""

from __future__ import annotations

import numpy as np
import pytest

from deepmat.errors import ConfigError, ModelFormatError
from deepmat.models.mlp import Block, MLPSpec
from deepmat.represent import ElementFractions
from deepmat.train import ForestRegressor, NetworkRegressor, TrainConfig

N_FEATURES = len(ElementFractions().feature_names)


def network(outputs: int = 1, width: int = 32, **config) -> NetworkRegressor:
    settings = {"epochs": 12, "batch_size": 32, "lr": 3e-3, "progress": False} | config
    if outputs == 2:
        settings["loss"] = "gaussian-nll"
    spec = MLPSpec(N_FEATURES, (Block(width, 2),), out_features=outputs)
    return NetworkRegressor(spec, config=TrainConfig(**settings))


@pytest.fixture(scope="module")
def trained(small_table, tmp_path_factory):
    """A plain network trained on 180 compounds, saved; and the remaining compounds."""
    order = np.random.default_rng(0).permutation(len(small_table))
    train, val = small_table.subset(order[:180]), small_table.subset(order[180:])
    root = tmp_path_factory.mktemp("warm")
    model = network().fit(train, val=val, workdir=root / "run")
    return model, model.save(root / "source"), train, val


def test_a_network_starts_from_the_saved_weights_and_gains_a_sigma_output(trained, tmp_path):
    source, path, train, val = trained
    tuned = network(outputs=2, init=str(path), epochs=2, lr=1e-5)
    tuned.scaler = tuned.starting_scaler(train.targets)
    mean, std = tuned.predict(val, return_std=True)
    np.testing.assert_allclose(mean, source.predict(val), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, source.scaler.std, rtol=1e-6)  # ln σ = 0 to begin with
    assert tuned.scaler.to_dict() == source.scaler.to_dict()

    tuned.fit(train, val=val, workdir=tmp_path / "tuned")
    _, std = tuned.predict(val, return_std=True)
    assert np.all(std > 0) and tuned.card()["training"]["config"]["init"] == str(path)
    assert tuned.metrics["val"]["mae"] < 1.2 * source.metrics["val"]["mae"]


def test_a_model_it_cannot_start_from_is_refused_by_name(trained, tmp_path):
    _, path, train, val = trained
    with pytest.raises(ModelFormatError, match=r"\.weight is \(32, 86\) there and \(16, 86\)"):
        network(width=16, init=str(path)).fit(train, val=val, workdir=tmp_path / "a")
    forest = ForestRegressor(ElementFractions(), n_estimators=4, n_jobs=1).fit(train, val=val)
    forest_path = forest.save(tmp_path / "forest")
    with pytest.raises(ConfigError, match="it is a forest"):
        network(init=str(forest_path)).fit(train, val=val, workdir=tmp_path / "b")
    other = NetworkRegressor(
        MLPSpec(3, (Block(32, 2),)),
        ElementFractions(("Fe", "O", "Ni")),
        TrainConfig(init=str(path), progress=False),
    )
    with pytest.raises(ConfigError, match="it reads"):
        other.warm_start()


def test_freezing_keeps_the_leading_layers_and_trains_the_rest(trained, tmp_path):
    from deepmat.train.weights import layers

    source, path, train, val = trained
    tuned = network(init=str(path), freeze=2, epochs=3).fit(
        train, val=val, workdir=tmp_path / "frozen"
    )
    before, after = layers(source.net), layers(tuned.net)
    for kept in range(2):
        for a, b in zip(before[kept].parameters(), after[kept].parameters(), strict=True):
            np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    last = zip(before[-1].parameters(), after[-1].parameters(), strict=True)
    assert any(not np.allclose(a.detach().numpy(), b.detach().numpy()) for a, b in last)
    assert tuned.card()["training"]["config"]["freeze"] == 2
    with pytest.raises(ModelFormatError, match="cannot freeze 3 layers of a network of 3"):
        network(init=str(path), freeze=3).fit(train, val=val, workdir=tmp_path / "all")
    with pytest.raises(ConfigError, match="give init"):
        TrainConfig(freeze=1)


def test_fine_tuning_from_an_ensemble_starts_from_its_member_of_the_same_family(trained, tmp_path):
    from deepmat.train import Ensemble

    source, _, train, val = trained
    forest = ForestRegressor(ElementFractions(), n_estimators=4, n_jobs=1).fit(train, val=val)
    mixed = Ensemble.from_members([forest, source]).save(tmp_path / "mixed")
    tuned = network(init=str(mixed), epochs=1, lr=1e-9)
    tuned.scaler = tuned.starting_scaler(train.targets)
    np.testing.assert_allclose(tuned.predict(val), source.predict(val), rtol=1e-5, atol=1e-6)
    forests = Ensemble.from_members([forest, forest]).save(tmp_path / "forests")
    with pytest.raises(ConfigError, match="holds no network"):
        network(init=str(forests)).warm_start()
