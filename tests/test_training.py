"""Training, resuming, saving and loading composition regressors; metrics and plots."""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import deepmat
from deepmat.data.splits import grouped_split
from deepmat.errors import ConfigError, DataError, ModelFormatError
from deepmat.models import MLP, Block, MLPSpec
from deepmat.represent import ElementFractions, MagpieAttributes
from deepmat.train import (
    ForestRegressor,
    NetworkRegressor,
    TrainConfig,
    load_model,
    parity_plot,
    regression_metrics,
    save_model,
)
from deepmat.train.trainer import (
    DropoutCutoff,
    GaussianNLL,
    LaplaceNLL,
    TargetScaler,
    fit_network,
)

SMALL = MLPSpec(86, (Block(64, 2, 0.1), Block(32, 1)))
EPOCHS = 30


def config(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, progress=False, accelerator="cpu")


@pytest.fixture(scope="module")
def train_val(small_table):
    split = grouped_split(small_table.keys, val=0.2, seed=0)
    split.assert_disjoint(small_table.keys)
    return small_table.subset(split.train), small_table.subset(split.val)


def baseline_mae(train, val) -> float:
    """MAE of always predicting the training mean."""
    return float(np.mean(np.abs(val.targets - train.targets.mean())))


@pytest.fixture(scope="module")
def network(train_val, tmp_path_factory):
    train, val = train_val
    workdir = tmp_path_factory.mktemp("network")
    model = NetworkRegressor(SMALL, config=config(EPOCHS), name="small-net", unit="eV/atom")
    model.fit(train, val=val, workdir=workdir)
    return model, workdir


@pytest.fixture(scope="module")
def forest(train_val):
    train, val = train_val
    return ForestRegressor(n_estimators=30, n_jobs=1).fit(train, val=val)


def test_network_learns(network, train_val):
    model, _ = network
    train, val = train_val
    metrics, prediction = model.evaluate(val), model.predict(val)
    assert prediction.shape == (len(val),)
    assert metrics["n"] == len(val)
    assert metrics["mae"] < 0.5 * baseline_mae(train, val)
    assert metrics["r2"] > 0.5
    assert model.metrics["val"]["mae"] == pytest.approx(metrics["mae"])
    assert model.fit_result.best_val_mae == pytest.approx(metrics["mae"], rel=1e-4)
    assert model.fit_result.epochs_run == EPOCHS
    assert [row["epoch"] for row in model.fit_result.history] == list(range(1, EPOCHS + 1))


def test_network_records_training(network, train_val):
    model, _ = network
    train, val = train_val
    training = model.training
    assert training["data"]["fingerprint"] == train.fingerprint()
    assert training["data"]["n_train"] == len(train)
    assert training["data"]["n_val"] == len(val)
    assert training["config"]["epochs"] == EPOCHS
    assert training["resumed_from"] is None


def test_checkpoints_written(network):
    _, workdir = network
    assert (workdir / "checkpoints" / "last.ckpt").is_file()
    assert (workdir / "checkpoints" / "best.ckpt").is_file()


def test_network_save_load_round_trip(network, train_val, tmp_path):
    model, _ = network
    _, val = train_val
    path = save_model(model, tmp_path / "model")
    assert (path / "weights.safetensors").is_file()
    card = json.loads((path / "card.json").read_text())
    assert card["format"] == "deepmat-model"
    assert card["family"] == "network"
    assert card["model"] == "small-net"
    assert card["architecture"] == json.loads(json.dumps(SMALL.to_dict()))
    assert card["target"]["unit"] == "eV/atom"
    loaded = deepmat.load(path)
    assert isinstance(loaded, NetworkRegressor)
    assert loaded.spec == SMALL
    assert loaded.metrics["val"]["mae"] == pytest.approx(model.metrics["val"]["mae"])
    np.testing.assert_array_equal(loaded.predict(val), model.predict(val))
    formulas = ["Fe2O3", "TiO2", "LiCoO2"]
    np.testing.assert_array_equal(loaded.predict(formulas), model.predict(formulas))


def test_network_predict_with_std(network, train_val):
    model, _ = network
    _, val = train_val
    mean, std = model.predict(val, return_std=True)
    assert mean.shape == std.shape == (len(val),)
    assert (std > 0).all()
    assert np.all(np.isfinite(mean))
    # the values are the deterministic predictions; dropout only supplies the spread
    np.testing.assert_array_equal(mean, model.predict(val))
    # Monte-Carlo dropout leaves the network in eval mode: plain predictions stay exact.
    np.testing.assert_array_equal(model.predict(val), model.predict(val))
    assert not model.net.training


def test_bf16_inference_is_close_to_float32(network, train_val):
    model, _ = network
    _, val = train_val
    exact = model.predict(val)
    model.inference_bf16 = True
    try:
        fast = model.predict(val)
    finally:
        model.inference_bf16 = False
    assert not np.array_equal(fast, exact)
    assert np.abs(fast - exact).max() < 0.02 * np.abs(exact).max()


def test_dropout_cutoff_switches_dropout_off_and_restores_it():
    net = MLP(SMALL)
    cutoff = DropoutCutoff(dropout_until=0.5)
    rates = lambda: [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)]  # noqa: E731
    for epoch, expected in ((0, [0.1]), (1, [0.1]), (2, [0.0]), (3, [0.0])):
        cutoff.on_train_epoch_start(SimpleNamespace(max_epochs=4, current_epoch=epoch), net)
        assert rates() == expected, epoch
    cutoff.on_train_end(None, net)
    assert rates() == [0.1]


def test_dropout_cutoff_and_bf16_training(train_val, tmp_path):
    train, val = train_val
    cfg = TrainConfig(
        epochs=2, batch_size=32, lr=3e-3, progress=False, accelerator="cpu",
        precision="bf16-mixed", dropout_until=0.5,
    )  # fmt: skip
    model = NetworkRegressor(SMALL, config=cfg).fit(train, val=val, workdir=tmp_path)
    assert model.fit_result.epochs_run == 2
    assert [m.p for m in model.net.modules() if isinstance(m, torch.nn.Dropout)] == [0.1]
    assert model.net.layers[0].weight.dtype == torch.float32
    assert model.training["config"]["precision"] == "bf16-mixed"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"precision": "fp8"}, "precision 'fp8' is not one of"),
        ({"dropout_until": 1.5}, "dropout_until 1.5 is not between 0 and 1"),
        ({"schedule": "warm"}, "schedule 'warm' is not one of"),
        (
            {"loss": "huber"},
            "loss 'huber' is not one of \\('l1', 'mse', 'gaussian-nll', 'laplace-nll', ",
        ),
    ],
)
def test_bad_train_config(setting, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**setting)


@pytest.mark.parametrize(
    ("loss", "mean_gradient", "best_std"),
    [
        (GaussianNLL(beta=True), lambda e: e, lambda e: e.pow(2).mean().sqrt()),
        (LaplaceNLL(beta=True), torch.sign, lambda e: math.sqrt(2) * e.abs().mean()),
    ],
)
def test_beta_nll_trains_the_mean_as_its_point_loss_and_sigma_to_the_likelihood_optimum(
    loss, mean_gradient, best_std
):
    """β-NLL: whatever σ, the mean's gradient is that of the squared error (Gaussian) or
    of the L1 loss (Laplace); σ's gradient vanishes at the distribution's ML estimate."""
    y = torch.tensor([0.3, -1.2, 2.0, 0.7])
    mean = torch.tensor([0.1, -0.2, 1.0, 1.5], requires_grad=True)
    log_std = torch.tensor([-2.0, 0.5, 1.0, 3.0], requires_grad=True)
    loss(torch.stack([mean, log_std], -1), y).backward()
    expected = mean_gradient(mean.detach() - y) / len(y)
    assert torch.allclose(mean.grad, expected, rtol=1e-4, atol=1e-6)
    errors = mean.detach() - y
    at_optimum = torch.full((4,), float(best_std(errors).log()), requires_grad=True)
    loss(torch.stack([mean.detach(), at_optimum], -1), y).backward()
    assert abs(float(at_optimum.grad.sum())) < 1e-5


@pytest.mark.filterwarnings("ignore:No Pauling electronegativity")
def test_predict_formulas(network):
    model, _ = network
    assert model.predict("Fe2O3").shape == (1,)
    assert model.predict(["Fe2O3", "Fe4O6"])[0] == pytest.approx(model.predict(["Fe2O3"])[0])
    with pytest.raises(DataError, match=r"input\[1\] .*element He"):
        model.predict(["Fe2O3", "HeO"])
    with pytest.raises(DataError, match=r"input\[0\]: unknown element"):
        model.predict(["Xx2O"])


def fast_config(epochs: int, lr: float = 1e-2) -> TrainConfig:
    """Small batches and a high rate: every one of the first epochs clearly improves."""
    return TrainConfig(epochs=epochs, batch_size=16, lr=lr, progress=False, accelerator="cpu")


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_resume(train_val, tmp_path):
    train, val = train_val
    torch.manual_seed(0)
    first = NetworkRegressor(SMALL, config=fast_config(2)).fit(train, val=val, workdir=tmp_path)
    assert first.fit_result.resumed_from is None and first.fit_result.epochs_trained == 2
    history = first.fit_result.history
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[1]["val_mae"] < history[0]["val_mae"]  # see test_resume_after_no_gain
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()

    second = NetworkRegressor(SMALL, config=fast_config(4)).fit(train, val=val, workdir=tmp_path)
    assert second.fit_result.resumed_from == str(last)
    # the history travels in the checkpoint; epochs 1-2 are not run again
    assert [row["epoch"] for row in second.fit_result.history] == [1, 2, 3, 4]
    assert second.fit_result.epochs_run == 4 and second.fit_result.epochs_trained == 2
    assert second.training["resumed_from"] == str(last)

    fresh = NetworkRegressor(SMALL, config=fast_config(1)).fit(
        train, val=val, workdir=tmp_path, resume=False
    )
    assert fresh.fit_result.resumed_from is None
    assert [row["epoch"] for row in fresh.fit_result.history] == [1]


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_rerunning_a_finished_one_cycle_run_trains_nothing_and_keeps_its_best(train_val, tmp_path):
    train, val = train_val
    config = dataclasses.replace(fast_config(2), schedule="onecycle")
    first = NetworkRegressor(SMALL, config=config).fit(train, val=val, workdir=tmp_path)
    again = NetworkRegressor(SMALL, config=config).fit(train, val=val, workdir=tmp_path)
    assert [row["epoch"] for row in again.fit_result.history] == [1, 2]
    assert again.fit_result.epochs_trained == 0 and again.fit_result.epochs_run == 2
    np.testing.assert_allclose(again.predict(val), first.predict(val), rtol=1e-6)
    # the card still says how long the epochs took, though this fit trained none
    assert again.training["epoch_seconds"] == first.training["epoch_seconds"] > 0


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_a_finished_run_moved_elsewhere_keeps_its_own_best(train_val, tmp_path):
    train, val = train_val
    config = dataclasses.replace(fast_config(2), schedule="onecycle")
    first = NetworkRegressor(SMALL, config=config).fit(train, val=val, workdir=tmp_path / "a")
    (tmp_path / "a").rename(tmp_path / "b")
    other = dataclasses.replace(config, seed=config.seed + 1)
    NetworkRegressor(SMALL, config=other).fit(train, val=val, workdir=tmp_path / "a")
    moved = NetworkRegressor(SMALL, config=config).fit(train, val=val, workdir=tmp_path / "b")
    assert moved.fit_result.epochs_trained == 0  # read from b's checkpoints, not a's
    np.testing.assert_allclose(moved.predict(val), first.predict(val), rtol=1e-6)


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_resume_after_no_gain(train_val, tmp_path):
    train, val = train_val
    # lr=0: the validation MAE never improves after epoch 1.
    NetworkRegressor(SMALL, config=fast_config(2, lr=0.0)).fit(train, val=val, workdir=tmp_path)
    second = NetworkRegressor(SMALL, config=fast_config(4, lr=0.0)).fit(
        train, val=val, workdir=tmp_path
    )
    # the history travels in the checkpoint; epochs 1-2 are not run again
    assert [row["epoch"] for row in second.fit_result.history] == [1, 2, 3, 4]


def test_training_is_reproducible(train_val, tmp_path):
    train, val = train_val
    predictions = []
    for run in range(2):
        torch.manual_seed(run)  # unrelated global state must not matter
        model = NetworkRegressor(SMALL, config=fast_config(1))
        model.fit(train, val=val, workdir=tmp_path / str(run))
        predictions.append(model.predict(val))
    np.testing.assert_array_equal(predictions[0], predictions[1])


def test_spec_must_match_representation():
    with pytest.raises(ValueError, match="spec has 10 inputs, the representation 86 features"):
        NetworkRegressor(MLPSpec(10, (Block(4),)))
    model = NetworkRegressor(MLPSpec(142, (Block(4),)), representation=MagpieAttributes())
    assert model.spec.in_features == 142


def test_untrained_network_round_trip(tmp_path):
    model = NetworkRegressor(SMALL, representation=ElementFractions())
    loaded = load_model(save_model(model, tmp_path / "untrained"))
    np.testing.assert_array_equal(loaded.predict(["Fe2O3"]), model.predict(["Fe2O3"]))


def test_forest_learns_and_round_trips(forest, train_val, tmp_path):
    train, val = train_val
    metrics = forest.evaluate(val)
    assert metrics["mae"] < 0.75 * baseline_mae(train, val)
    assert forest.metrics["val"] == metrics
    assert forest.training["hyperparameters"]["n_estimators"] == 30
    path = save_model(forest, tmp_path / "forest")
    assert (path / "forest.joblib").is_file()
    loaded = deepmat.load(path)
    assert isinstance(loaded, ForestRegressor)
    assert isinstance(loaded.representation, MagpieAttributes)
    assert loaded.hyperparameters == forest.hyperparameters
    np.testing.assert_array_equal(loaded.predict(val), forest.predict(val))


def test_forest_predict_with_std(forest, train_val):
    _, val = train_val
    mean, std = forest.predict(val, return_std=True)
    assert mean.shape == std.shape == (len(val),)
    assert (std > 0).all()
    np.testing.assert_allclose(mean, forest.predict(val))


def test_load_directory_without_card(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelFormatError, match=r"not a deepmat model directory \(no card\.json\)"):
        deepmat.load(tmp_path)


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ("{not json", "unreadable model card"),
        ('{"format": "other"}', "not a deepmat-model card"),
        ('{"format": "deepmat-model", "format_version": 99}', "format version 99 is newer"),
    ],
)
def test_load_bad_card(tmp_path, card, message):
    (tmp_path / "card.json").write_text(card)
    with pytest.raises(ModelFormatError, match=message):
        deepmat.load(tmp_path)


def test_load_unknown_family_and_missing_weights(forest, tmp_path):
    path = save_model(forest, tmp_path / "forest")
    card = json.loads((path / "card.json").read_text())
    (path / "forest.joblib").unlink()
    with pytest.raises(ModelFormatError, match=r"missing forest\.joblib"):
        deepmat.load(path)
    (path / "card.json").write_text(json.dumps(card | {"family": "gnn"}))
    with pytest.raises(ModelFormatError, match="unknown model family 'gnn'"):
        deepmat.load(path)


def test_regression_metrics_exact():
    metrics = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 6.0]))
    assert metrics == {"mae": 0.5, "rmse": 1.0, "r2": pytest.approx(0.2), "n": 4}
    perfect = regression_metrics([1, 2, 3], [1, 2, 3])
    assert perfect["mae"] == 0.0 and perfect["rmse"] == 0.0 and perfect["r2"] == 1.0
    assert math.isnan(regression_metrics([2.0, 2.0], [1.0, 3.0])["r2"])
    column = regression_metrics(np.array([[1.0], [3.0]]), np.array([2.0, 2.0]))
    assert column["mae"] == 1.0 and column["n"] == 2


@pytest.mark.parametrize("n", [50, 6000])  # scatter, then hexbin for large sets
def test_parity_plot_writes_png(tmp_path, n):
    rng = np.random.default_rng(0)
    y = rng.normal(size=n)
    path = parity_plot(y, y + rng.normal(0, 0.1, n), tmp_path / "plots" / "parity.png",
                       title="val", unit="eV/atom")  # fmt: skip
    assert path.is_file()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_log_target_scaler_round_trips_and_rejects_non_positive():
    y = np.array([1.5, 3.0, 60.0, 12.0])
    scaler = TargetScaler.fit(y, log=True)
    z = scaler.transform(y)
    assert z.mean() == pytest.approx(0.0, abs=1e-12)
    assert z.std() == pytest.approx(1.0)
    np.testing.assert_allclose(scaler.inverse(z), y)
    np.testing.assert_allclose(z, (np.log(y) - np.log(y).mean()) / np.log(y).std())
    assert TargetScaler(**scaler.to_dict()) == scaler
    with pytest.raises(DataError, match="positive targets"):
        TargetScaler.fit(np.array([1.0, 0.0]), log=True)


def test_custom_loss_trains_and_is_the_validation_score(tmp_path):
    """A loss module on raw (unscaled) 2-vector targets: the direction of the input."""
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(256, 2)).astype(np.float32)
    y = x / np.linalg.norm(x, axis=1, keepdims=True)

    def cosine_loss(prediction, target):
        return (1 - torch.nn.functional.cosine_similarity(prediction, target)).mean()

    class CosineLoss(torch.nn.Module):
        forward = staticmethod(cosine_loss)

    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    with torch.no_grad():
        before = float(cosine_loss(net(torch.from_numpy(x)), torch.from_numpy(y)))
    result = fit_network(
        net, x, y, x[:64], y[:64], config(30), tmp_path, TargetScaler(), loss=CosineLoss()
    )
    with torch.no_grad():
        after = float(cosine_loss(net(torch.from_numpy(x[:64])), torch.from_numpy(y[:64])))
    assert after < 0.2 * before
    assert result.best_val_mae == pytest.approx(after, rel=1e-4, abs=1e-6)
