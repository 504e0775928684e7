"""Active learning: acquisition maths, batch choice, oracles, resume and the command, on
tiny synthetic pools."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

import deepmat
from deepmat.cli import app
from deepmat.errors import ConfigError, DataError
from deepmat.models.mlp import Block, MLPSpec
from deepmat.represent import ElementFractions
from deepmat.train import ForestRegressor, NetworkRegressor, TrainConfig
from deepmat.train.config import TargetScaler
from deepmat.train.estimator import Estimator
from deepmat.train.metrics import regression_metrics
from deepmat.workflows.acquisition import acquisition_scores, select
from deepmat.workflows.active_learning import (
    FunctionOracle,
    LearningSettings,
    TableOracle,
    learn,
    pool_of,
)


class Sigma(Estimator):
    """A model of vectors that is sure of nothing but its σ: the first feature."""

    family, input_kind = "toy-sigma", "vector"

    def __init__(self, seed: int = 0):
        self.name, self.training, self.metrics = "sigma", {}, {}

    def fit(self, X, y=None, *, val=None, workdir=None):
        return self

    def predict(self, X, return_std=False):
        x = np.asarray(X)
        return (np.zeros(len(x)), x[:, 0]) if return_std else np.zeros(len(x))


class ToyGP(Estimator):
    """A Gaussian process on 1-D points: a model with a well-founded σ."""

    family, input_kind = "toy-gp", "vector"

    def __init__(self, seed: int = 0):
        self.name, self.training, self.metrics = "gp", {}, {}

    def fit(self, X, y=None, *, val=None, workdir=None):
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF

        self.gp = GaussianProcessRegressor(RBF(0.08, "fixed"), alpha=1e-8, normalize_y=True)
        self.gp.fit(np.asarray(X), y)
        return self

    def predict(self, X, return_std=False):
        return self.gp.predict(np.asarray(X), return_std=return_std)

    def evaluate(self, X, y=None):
        return regression_metrics(y, self.predict(X))

    def embed(self, X):
        return np.asarray(X, dtype=np.float64)


def bumpy(x) -> float:
    """A 1-D function on [0, 1] with several local minima and one global one near 0.77."""
    x = float(np.asarray(x).ravel()[0])
    return float(np.sin(13 * x) * np.sin(27 * x) + 0.5 * (x - 0.7) ** 2)


def test_max_std_labels_the_most_uncertain_records_first(tmp_path):
    sigma = np.random.default_rng(0).permutation(40).astype(float)
    pool = pool_of(np.column_stack([sigma, np.zeros(40)]), kind="vector")
    settings = LearningSettings("max_std", initial=4, batch=5, rounds=2)
    run = learn(Sigma, pool, TableOracle(np.zeros(40)), settings, tmp_path, save=False)
    first = set(run.rounds[0]["indices"])
    remaining = sorted(set(range(40)) - first, key=lambda i: -sigma[i])
    assert run.rounds[1]["indices"] == remaining[:5]
    assert run.rounds[2]["indices"] == remaining[5:10]


def test_expected_improvement_finds_the_minimum_of_a_toy_function_sooner_than_random(tmp_path):
    x = np.linspace(0, 1, 201)[:, None]
    truth = np.array([bumpy(v) for v in x])
    optimum = int(np.argmin(truth))

    def labels_to_optimum(acquisition: str, seed: int) -> int:
        settings = LearningSettings(acquisition, "min", initial=3, batch=2, rounds=25, seed=seed)
        oracle = FunctionOracle(bumpy, "bumpy")
        run = learn(
            ToyGP,
            pool_of(x, kind="vector"),
            oracle,
            settings,
            tmp_path / f"{acquisition}{seed}",
            save=False,
        )
        order = list(run.indices)
        assert oracle.asked == len(order) == len(set(order)) == settings.labels
        return order.index(optimum) + 1 if optimum in order else settings.labels + 1

    ei = [labels_to_optimum("ei", seed) for seed in range(5)]
    random = [labels_to_optimum("random", seed) for seed in range(5)]
    assert np.mean(ei) < 0.5 * np.mean(random), (ei, random)


@pytest.mark.parametrize("goal", ["min", "max", 0.3])
def test_expected_improvement_is_the_mean_improvement_of_gaussian_outcomes(goal):
    mean, std = np.array([0.1, 0.5, -0.2]), np.array([0.2, 0.05, 0.4])
    best = {"min": 0.0, "max": 0.2, 0.3: 0.25}[goal]  # for a target: its distance
    draws = stats.norm(mean, std).rvs((400_000, 3), random_state=np.random.default_rng(0))
    if goal == "min":
        gain = best - draws
    elif goal == "max":
        gain = draws - best
    else:
        gain = best - np.abs(draws - goal)
    expected = np.maximum(gain, 0).mean(0)
    np.testing.assert_allclose(acquisition_scores("ei", mean, std, best, goal), expected, atol=2e-3)


def test_confidence_bounds_point_at_the_goal():
    mean, std = np.array([0.0, 0.0, 1.0]), np.array([0.1, 1.0, 0.1])
    assert np.argmax(acquisition_scores("ucb", mean, std, 0.0, "max")) == 1
    assert np.argmax(acquisition_scores("ucb", mean, std, 0.0, "max", kappa=0.0)) == 2
    assert np.argmax(acquisition_scores("ucb", mean, std, 0.0, "min", kappa=0.0)) in (0, 1)
    assert np.argmax(acquisition_scores("ucb", mean, std, 0.0, 1.0, kappa=0.0)) == 2


def test_a_diverse_batch_spreads_over_clusters_of_alike_records():
    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal(0, 0.01, (10, 2)), rng.normal(5, 0.01, (10, 2))])
    scores = np.r_[np.linspace(2, 1.9, 10), np.linspace(1.5, 1.4, 10)]
    top = select(scores, 2)
    diverse = select(scores, 2, features, candidates=10)
    assert set(top) == {0, 1}  # both from the better cluster
    assert sorted(diverse) == [0, 10]  # the best of each cluster


def forest(seed: int = 0) -> ForestRegressor:
    return ForestRegressor(ElementFractions(), n_estimators=8, seed=seed, n_jobs=1)


class Interrupted(Exception):
    pass


def test_an_interrupted_run_resumes_from_its_last_finished_round(small_table, tmp_path):
    pool, labels = pool_of(small_table), small_table.targets
    settings = LearningSettings("max_std", initial=20, batch=10, rounds=4, diverse=True)
    calls = []

    def failing(pool_, indices):
        calls.append(len(indices))
        if len(calls) == 3:  # the oracle fails while round 2 asks
            raise Interrupted
        return labels[indices]

    with pytest.raises(Interrupted):
        learn(forest, pool, failing, settings, tmp_path, val=small_table)
    recorded = json.loads((tmp_path / "rounds.json").read_text())
    assert [r["round"] for r in recorded] == [0, 1]

    oracle = TableOracle(labels)
    run = learn(forest, pool, oracle, settings, tmp_path, val=small_table)
    assert [r["round"] for r in run.rounds] == [0, 1, 2, 3, 4]
    assert run.rounds[:2] == recorded  # nothing finished is redone
    assert oracle.asked == 3 * settings.batch  # only rounds 2-4 asked the oracle
    assert len(set(run.indices)) == len(run.indices) == settings.labels
    assert run.rounds[2]["chosen"] == [small_table.formulas[i] for i in run.rounds[2]["indices"]]
    assert all("mae" in r["metrics"] for r in run.rounds)
    assert deepmat.load(tmp_path / "model").predict(["Fe2O3"]).shape == (1,)

    with pytest.raises(ConfigError, match="holds another run"):
        learn(forest, pool, oracle, LearningSettings("ei", initial=20, batch=10), tmp_path)


def test_a_forest_refit_grows_new_trees_in_place_of_the_oldest(small_table):
    model = forest().fit(small_table.subset(range(100)))
    before = [id(tree) for tree in model.forest.estimators_]
    model.refit(small_table.subset(range(200)), val=small_table.subset(range(200, 300)))
    after = [id(tree) for tree in model.forest.estimators_]
    assert len(after) == 8 and after[:6] == before[2:] and not set(after[6:]) & set(before)
    assert model.training["refits"] == 1 and model.metrics["val"]["n"] == 100


def test_a_network_refit_trains_on_from_its_weights_and_target_scaling(small_table, tmp_path):
    spec = MLPSpec(len(ElementFractions().feature_names), (Block(32, 2),))
    config = TrainConfig(epochs=6, batch_size=32, lr=3e-3, progress=False)
    model = NetworkRegressor(spec, config=config)
    first, more, val = (small_table.subset(r) for r in (range(100), range(200), range(200, 300)))
    model.fit(first, val=val, workdir=tmp_path / "0")
    scaler, before = model.scaler.to_dict(), model.predict(val)
    assert TargetScaler.fit(more.targets).to_dict() != scaler  # a fresh fit would rescale
    model.config = dataclasses.replace(config, lr=1e-9, epochs=1)
    model.refit(more, val=val, workdir=tmp_path / "1")
    assert model.scaler.to_dict() == scaler and model.training["data"]["n_train"] == 200
    np.testing.assert_allclose(model.predict(val), before, atol=1e-3)


def test_bad_requests_get_clear_errors(small_table, tmp_path):
    with pytest.raises(ConfigError, match="unknown acquisition function 'thompson'"):
        LearningSettings("thompson")
    with pytest.raises(ConfigError, match="goal 'lowest'"):
        LearningSettings("ei", goal="lowest")
    voxels = np.zeros((30, 4, 4, 4), dtype=np.uint8)
    with pytest.raises(DataError, match="pool holds microstructure records, but rf-magpie"):
        learn(
            lambda seed: ForestRegressor(n_jobs=1),
            pool_of(voxels),
            TableOracle(np.zeros(30)),
            LearningSettings(initial=5, batch=5, rounds=1),
            tmp_path / "a",
        )
    with pytest.raises(ConfigError, match="more than the pool's 300 records"):
        learn(
            forest,
            pool_of(small_table),
            TableOracle(small_table.targets),
            LearningSettings(),
            tmp_path / "b",
        )

    def nothing(composition):
        return None if composition.reduced_formula == "Fe2O3" else 1.0

    with pytest.raises(DataError, match="gave no finite number for record Fe2O3"):
        learn(
            forest,
            pool_of(small_table),
            FunctionOracle(nothing, "nothing"),
            LearningSettings(initial=300, batch=1, rounds=0),
            tmp_path / "c",
        )


def test_the_command_learns_resumes_and_refuses_an_unknown_acquisition(small_table, tmp_path):
    csv = tmp_path / "pool.csv"
    pd.DataFrame({"formula": small_table.formulas, "target": small_table.targets}).to_csv(
        csv, index=False
    )
    runner = CliRunner()
    options = ["--model", "rf-fractions", "--trees", "8", "--initial", "20", "--batch", "10"]
    options += ["--rounds", "2", "--acquisition", "ei", "--diverse", "--val", str(csv)]
    result = runner.invoke(app, ["learn", str(csv), "--out", str(tmp_path / "run"), *options])
    assert result.exit_code == 0, result.output
    rounds = json.loads((tmp_path / "run" / "rounds.json").read_text())
    assert [r["labels"] for r in rounds] == [20, 30, 40]
    assert (tmp_path / "run" / "curves.png").exists()
    again = runner.invoke(app, ["learn", str(csv), "--out", str(tmp_path / "run"), *options])
    assert (
        again.exit_code == 0
        and json.loads((tmp_path / "run" / "rounds.json").read_text()) == rounds
    )

    bad = runner.invoke(
        app, ["learn", str(csv), "--out", str(tmp_path / "x"), "--acquisition", "best"]
    )
    assert bad.exit_code == 2 and "unknown acquisition function 'best'" in bad.output
