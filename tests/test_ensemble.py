"""Deep ensembles and recalibration: any family that predicts values gets a standard
deviation, which a factor fitted on validation data calibrates; both survive saving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepmat
from deepmat.errors import ConfigError, DataError
from deepmat.models.mlp import Block, MLPSpec
from deepmat.represent import ElementFractions
from deepmat.train import Ensemble, ForestRegressor, NetworkRegressor, TrainConfig
from deepmat.train.trainer import LaplaceNLL
from deepmat.workflows.composition import make_regressor


def forest(seed: int, target: str = "target") -> ForestRegressor:
    return ForestRegressor(ElementFractions(), n_estimators=8, seed=seed, n_jobs=1, target=target)


@pytest.fixture(scope="module")
def parts(small_table):
    order = np.random.default_rng(0).permutation(len(small_table))
    return small_table.subset(order[:180]), small_table.subset(order[180:])


def test_an_ensemble_of_forests_predicts_saves_and_recalibrates(parts, tmp_path):
    train, val = parts
    ensemble = Ensemble.of(forest, 3, name="rf-ensemble").fit(train, val=val)
    mean, std = ensemble.predict(val, return_std=True)
    members = np.stack([m.predict(val) for m in ensemble.members])
    np.testing.assert_allclose(mean, members.mean(axis=0))
    assert np.all(std >= members.std(axis=0) - 1e-12) and np.all(std > 0)
    assert (
        ensemble.metrics["val"]["n"] == len(val) and len(ensemble.metrics["val"]["member_mae"]) == 3
    )

    record = ensemble.recalibrate(val)
    scaled = ensemble.predict(val, return_std=True)[1]
    scales = record["component_scales"]  # the trees' own spread and the members' spread
    parts = ensemble.variance_components(val)[1]
    assert set(scales) == set(parts) == {"aleatoric", "epistemic"}
    np.testing.assert_allclose(scaled, np.sqrt(sum(scales[k] ** 2 * parts[k] for k in parts)))
    np.testing.assert_allclose(std**2, parts["aleatoric"] + parts["epistemic"])
    assert record["n"] == len(val)
    # maximum likelihood: the rescaled standardized errors have unit mean square
    assert np.mean(((val.targets - mean) / scaled) ** 2) == pytest.approx(1.0)
    assert record["after"]["nll"] <= record["before"]["nll"]

    loaded = deepmat.load(ensemble.save(tmp_path / "ensemble"))
    assert isinstance(loaded, Ensemble) and len(loaded.members) == 3
    assert loaded.recalibration["component_scales"] == pytest.approx(scales)
    np.testing.assert_allclose(loaded.predict(val, return_std=True)[1], scaled)


def test_a_single_model_recalibrates_and_keeps_it_in_its_card(parts, tmp_path):
    train, val = parts
    model = forest(0).fit(train, val=val)
    raw = model.predict(val, return_std=True)[1]
    model.recalibrate(val)
    loaded = deepmat.load(model.save(tmp_path / "rf"))
    assert loaded.card()["family"] == "forest" and loaded.recalibration["n"] == len(val)
    np.testing.assert_allclose(loaded.predict(val, return_std=True)[1], model.std_scale * raw)


def test_recalibration_refuses_fewer_than_50_records(parts):
    train, val = parts
    model = forest(0).fit(train)
    with pytest.raises(DataError, match="at least 50 held-out records; got 20"):
        model.recalibrate(val.subset(range(20)))


def test_networks_without_dropout_get_the_spread_of_the_members(parts, tmp_path):
    train, val = parts
    spec = MLPSpec(len(ElementFractions().feature_names), (Block(16, 1),))

    def network(seed: int) -> NetworkRegressor:
        config = TrainConfig(epochs=2, batch_size=64, progress=False, seed=seed)
        return NetworkRegressor(spec, config=config)

    ensemble = Ensemble.of(network, 2)
    with pytest.raises(Exception, match="no standard deviations"):
        ensemble.members[0].predict(val, return_std=True)
    ensemble.fit(train, val=val, workdir=tmp_path)
    assert (tmp_path / "members" / "1" / "checkpoints").is_dir()
    assert np.all(ensemble.predict(val, return_std=True)[1] > 0)


def test_members_that_differ_are_named():
    with pytest.raises(ConfigError, match=r"member 1 .* differs from member 0 in target"):
        Ensemble([forest(0), forest(1, target="other")])
    with pytest.raises(ConfigError, match="at least 2 members"):
        Ensemble([forest(0)])


def test_a_preset_builds_k_members_with_their_own_seeds():
    forests = Ensemble.from_preset("default", member=ForestRegressor, k=2, n_jobs=1)
    assert [m.forest.random_state for m in forests.members] == [0, 1]
    networks = Ensemble.from_preset("benchmark", {"seed": 7, "epochs": 3}, member=NetworkRegressor)
    assert len(networks.members) == 5 and networks.name == "elemnet-ensemble"
    assert [m.config.seed for m in networks.members] == [7, 8, 9, 10, 11]
    assert all(m.config.epochs == 3 and m.config.lr == 1e-3 for m in networks.members)
    with pytest.raises(ConfigError, match="needs the member class"):
        Ensemble.from_preset("default")


def test_a_heteroscedastic_network_predicts_its_own_standard_deviation(parts, tmp_path):
    train, val = parts
    n = len(ElementFractions().feature_names)
    config = TrainConfig(epochs=15, batch_size=32, lr=3e-3, loss="gaussian-nll", progress=False)
    model = NetworkRegressor(MLPSpec(n, (Block(32, 2),), out_features=2), config=config)
    model.fit(train, val=val, workdir=tmp_path / "run")
    mean, std = model.predict(val, return_std=True)
    assert mean.shape == std.shape == (len(val),) and np.all(std > 0)
    spread = np.abs(val.targets - val.targets.mean()).mean()
    assert model.metrics["val"]["mae"] < spread  # the mean output learns the target
    loaded = deepmat.load(model.save(tmp_path / "saved"))
    np.testing.assert_allclose(loaded.predict(val, return_std=True)[1], std, rtol=1e-5)
    with pytest.raises(ConfigError, match="has 2 outputs, μ and ln σ"):
        NetworkRegressor(MLPSpec(n, (Block(8, 1),)), config=config)


def test_members_train_in_parallel_processes_as_they_would_in_turn(parts, tmp_path):
    train, val = parts
    in_turn = Ensemble.of(forest, 2).fit(train, val=val)
    parallel = Ensemble.of(forest, 2).fit(train, val=val, workdir=tmp_path, jobs=2)
    np.testing.assert_allclose(parallel.predict(val), in_turn.predict(val))
    assert (tmp_path / "members" / "1" / "trained" / "card.json").exists()


def test_a_laplace_head_trains_like_roost_robust_l1_and_is_picked_by_its_loss(parts, tmp_path):
    train, val = parts
    overrides = {"epochs": 15, "batch_size": 32, "lr": 3e-3, "loss": "laplace-nll"}
    model = make_regressor("elemnet", "default", "dhf", "eV/atom", overrides | {"progress": False})
    assert model.spec.out_features == 2 and model.config.loss == "laplace-nll"
    model.fit(train, val=val, workdir=tmp_path / "run")
    _, std = model.predict(val, return_std=True)
    assert (
        np.all(std > 0)
        and model.metrics["val"]["mae"] < np.abs(val.targets - val.targets.mean()).mean()
    )
    prediction = torch.tensor([[0.5, 0.0], [1.0, np.log(2.0)]])
    y = torch.tensor([1.0, 1.0])  # √2|y − μ|/σ + ln σ, averaged
    expected = (np.sqrt(2) * 0.5 + 0.0 + 0.0 + np.log(2.0)) / 2
    assert float(LaplaceNLL()(prediction, y)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ConfigError, match=r"one of gaussian-nll, laplace-nll, .*, not 'l1'"):
        make_regressor("elemnet", overrides={"loss": "l1"}, heteroscedastic=True)


def test_members_of_two_families_are_weighed_on_held_out_data(parts, tmp_path):
    train, val = parts
    spec = MLPSpec(len(ElementFractions().feature_names), (Block(16, 1),))
    config = TrainConfig(epochs=2, batch_size=64, progress=False)
    weak = NetworkRegressor(spec, config=config).fit(train, val=val, workdir=tmp_path / "net")
    mixed = Ensemble([forest(0).fit(train), weak])
    equal = mixed.evaluate(val)["mae"]
    weights = mixed.weigh(val)
    assert weights.sum() == pytest.approx(1.0) and np.all(weights >= 0)
    assert mixed.evaluate(val)["mae"] <= equal + 1e-9
    mean, parts_ = mixed.variance_components(val)
    members = np.stack([m.predict(val) for m in mixed.members])
    np.testing.assert_allclose(mean, weights @ members)
    # only the forest gives its own σ: the aleatoric part is the forest's
    np.testing.assert_allclose(parts_["aleatoric"], mixed.members[0].predict(val, True)[1] ** 2)
    loaded = deepmat.load(mixed.save(tmp_path / "mixed"))
    np.testing.assert_allclose(loaded.weights, weights)
    with pytest.raises(ConfigError, match="2 non-negative weights"):
        Ensemble(mixed.members, weights=[1.0, -1.0])
    with pytest.raises(DataError, match="at least 50 held-out records; got 20"):
        mixed.weigh(val.subset(range(20)))


def test_weighing_recalibrating_and_scoring_at_once_predicts_each_member_once(parts):
    train, val = parts
    members = [forest(seed).fit(train) for seed in (0, 1)]
    apart, together = Ensemble(members), Ensemble(members)
    apart.weigh(val)
    expected = apart.recalibrate(val, criterion="coverage")
    calls = []
    for member in members:
        member.predict = _counting(member.predict, calls)
    record = together.fit_held_out(val, criterion="coverage")
    assert len(calls) == 2  # one call each, with its standard deviation
    np.testing.assert_allclose(together.weights, apart.weights)
    assert record["component_scales"] == pytest.approx(expected["component_scales"])
    assert together.metrics["val"]["mae"] == pytest.approx(apart.evaluate(val)["mae"])


def _counting(predict, calls: list):
    def counted(*args, **kwargs):
        calls.append(kwargs.get("return_std", False))
        return predict(*args, **kwargs)

    return counted
