"""Training on several processes: sharded batches, global validation MAE, one set of
checkpoints, trained weights back in the calling process, resuming; config checks.

The distributed runs use two CPU processes (``ddp_spawn``, gloo backend)."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from deepmat.errors import ConfigError
from deepmat.models import MLP, Block, MLPSpec
from deepmat.train.trainer import ShardedBatches, TargetScaler, TrainConfig, fit_network

SPEC = MLPSpec(8, (Block(32, 2),))
EPOCHS = 5


def config(epochs: int = EPOCHS, **distributed) -> TrainConfig:
    return TrainConfig(
        epochs=epochs, batch_size=32, lr=3e-3, progress=False, accelerator="cpu", **distributed
    )


@pytest.fixture(scope="module")
def problem():
    """A learnable regression problem: 320 training rows, 80 validation rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype(np.float32)
    y = x @ rng.normal(size=8) + 0.5 * np.sin(2 * x[:, 0])
    return x[:320], y[:320], x[320:], y[320:]


def train(problem, cfg: TrainConfig, workdir):
    torch.manual_seed(0)  # the same initial weights for every run
    net = MLP(SPEC)
    result = fit_network(net, *problem, cfg, workdir)
    return net, result


def val_mae(net, problem) -> float:
    _, y_train, x_val, y_val = problem
    with torch.no_grad():
        z = net(torch.as_tensor(x_val)).squeeze(-1).numpy()
    return float(np.mean(np.abs(TargetScaler.fit(y_train).inverse(z) - y_val)))


@pytest.fixture(scope="module")
def single(problem, tmp_path_factory):
    return train(problem, config(), tmp_path_factory.mktemp("single"))


@pytest.fixture(scope="module")
def spawned(problem, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ddp")
    net, result = train(problem, config(devices=2, strategy="ddp_spawn"), workdir)
    return net, result, workdir


def test_ddp_trains_like_one_process(problem, single, spawned):
    _, y_train, _, y_val = problem
    net, result, _ = spawned
    assert [row["epoch"] for row in result.history] == list(range(1, EPOCHS + 1))
    assert result.epochs_run == result.epochs_trained == EPOCHS
    assert result.resumed_from is None
    assert result.best_val_mae < 0.5 * np.mean(np.abs(y_val - y_train.mean()))
    # the same optimisation steps as one process, up to how each step's batch is drawn
    curve = np.array([row["val_mae"] for row in result.history])
    reference = np.array([row["val_mae"] for row in single[1].history])
    assert np.all(curve / reference < 1.5) and np.all(reference / curve < 1.5)
    assert result.best_val_mae == pytest.approx(single[1].best_val_mae, rel=0.5)
    # the calling process holds the best weights, and the score is the whole set's MAE
    assert result.best_val_mae == pytest.approx(min(curve))
    assert val_mae(net, problem) == pytest.approx(result.best_val_mae, rel=1e-4)
    assert not net.training


def test_ddp_writes_one_set_of_checkpoints(spawned):
    _, result, workdir = spawned
    checkpoints = workdir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]
    state = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["callbacks"]["EpochReport"]["history"] == result.history


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_ddp_resumes(problem, spawned, tmp_path):
    _, first, workdir = spawned
    shutil.copytree(workdir / "checkpoints", tmp_path / "checkpoints")
    net, second = train(problem, config(EPOCHS + 3, devices=2, strategy="ddp_spawn"), tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert second.resumed_from == str(last)
    assert [row["epoch"] for row in second.history] == list(range(1, EPOCHS + 4))
    assert second.history[:EPOCHS] == first.history  # restored, not run again
    assert second.epochs_run == EPOCHS + 3 and second.epochs_trained == 3
    assert second.best_val_mae <= first.best_val_mae
    assert val_mae(net, problem) == pytest.approx(second.best_val_mae, rel=1e-4)


@pytest.mark.parametrize(("n", "batch_size", "world"), [(10, 4, 2), (10, 4, 3), (2, 4, 3)])
def test_training_batches_are_disjoint_shards_of_the_global_batches(n, batch_size, world):
    sampler = ShardedBatches(n, batch_size, shuffle=True, seed=7)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        shards = [sampler.batches(world, rank) for rank in range(world)]
        steps = {len(batches) for batches in shards}
        assert steps == {-(-n // batch_size)}  # every process takes every step
        order = []
        for step in zip(*shards, strict=True):
            assert all(step), "a process without samples in a step"
            merged = [i for part in step for i in part]
            if n >= world:
                assert len(set(merged)) == len(merged)  # disjoint within the step
            order += merged
        assert set(order) == set(range(n))  # the epoch covers the data
        last = n - (n - 1) // batch_size * batch_size  # the last global batch's size
        # each sample once, but for those topping up a last batch smaller than world
        assert len(order) == n + max(world - last, 0)
        orders.append(order)
    if n > world:
        assert orders[0] != orders[1]  # a new permutation every epoch


@pytest.mark.parametrize(("n", "world"), [(10, 2), (11, 3), (2, 3)])
def test_evaluation_batches_cover_the_set_once(n, world):
    sampler = ShardedBatches(n, 3, shuffle=False)
    shards = [sampler.batches(world, rank) for rank in range(world)]
    assert all(shards), "a process without anything to evaluate"
    seen = sorted(i for batches in shards for batch in batches for i in batch)
    assert seen == (list(range(n)) if n >= world else sorted(list(range(n)) * world))


def test_single_process_batches_are_unchanged():
    torch.manual_seed(3)
    sampler = ShardedBatches(10, 4, shuffle=True)
    assert len(sampler) == 3
    ours = list(sampler)
    torch.manual_seed(3)
    expected = list(
        torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(range(10)), 4, False)
    )
    assert ours == expected
    assert list(ShardedBatches(5, 2, shuffle=False)) == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"devices": 0}, "devices 0 is not a whole number >= 1 or 'auto'"),
        ({"devices": -1}, "devices -1 is not"),
        ({"devices": "two"}, "devices 'two' is not"),
        ({"devices": 1.5}, "devices 1.5 is not"),
        ({"devices": True}, "devices True is not"),
        ({"num_nodes": 0}, "num_nodes 0 is not a whole number >= 1"),
        ({"num_nodes": "2"}, "num_nodes '2' is not"),
        ({"strategy": "horovod"}, "strategy 'horovod' is not one of"),
    ],
)
def test_bad_distributed_config(setting, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**setting)


def test_distributed_settings_are_saved_and_old_cards_load():
    cfg = TrainConfig(devices=4, num_nodes=2, strategy="ddp")
    saved = cfg.to_dict()
    assert (saved["devices"], saved["num_nodes"], saved["strategy"]) == (4, 2, "ddp")
    assert TrainConfig(**saved) == cfg
    assert TrainConfig(devices="auto").devices == "auto"
    # a card written before these settings existed
    old = {k: v for k, v in saved.items() if k not in ("devices", "num_nodes", "strategy")}
    loaded = TrainConfig(**old)
    assert (loaded.devices, loaded.num_nodes, loaded.strategy) == (1, 1, "auto")
    assert dataclasses.replace(loaded, devices=4, num_nodes=2, strategy="ddp") == cfg
