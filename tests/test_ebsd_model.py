"""EBSD orientation CNN: pattern standardisation, the network spec and its outputs, training
(cubic embedding by default) on small simulated patterns, metrics, the saved-model format and
input checks (tiny 20×20 detectors, orientations within 20° of the identity)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from orix.quaternion import Orientation, Rotation

import deepmat
from deepmat.data.ebsd import PatternDataset
from deepmat.data.ebsd_simulation import DetectorSpec, simulate_patterns
from deepmat.errors import ConfigError, DataError
from deepmat.models.cnn3d import count_parameters
from deepmat.models.ebsd import (
    ORIENTATION_CNN_PAPER,
    ORIENTATION_CNN_SMALL,
    OrientationCNN,
    OrientationCNNSpec,
)
from deepmat.physics.cubic_embedding import isotropic_embedding
from deepmat.represent.patterns import standardize_patterns
from deepmat.train.config import TrainConfig
from deepmat.train.ebsd import OrientationCNNRegressor, orientation_metrics
from deepmat.train.saved import save_model

DETECTOR = DetectorSpec(shape=(20, 20))
TINY = OrientationCNNSpec(pattern_shape=(20, 20), channels=(8, 16), fc_widths=(64,))
N_TEST = 200
METRIC_KEYS = {
    "mean_disorientation_deg",
    "median_disorientation_deg",
    "within_1deg",
    "within_2deg",
    "within_5deg",
    "n",
}


def near_identity(n: int, max_deg: float, seed: int) -> Rotation:
    """``n`` rotations uniform in the ball of ``max_deg`` around the identity: far from the
    cubic symmetry operators (90° and more), so the answer is unambiguous."""
    rng = np.random.default_rng(seed)
    angles = np.radians(max_deg) * rng.random(n) ** (1 / 3)
    return Rotation.from_axes_angles(rng.standard_normal((n, 3)), angles)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, Rotation]:
    rotations = near_identity(1200, 20.0, seed=0)
    return simulate_patterns(rotations, DETECTOR), rotations


@pytest.fixture(scope="module")
def model(data) -> OrientationCNNRegressor:
    patterns, rotations = data
    config = TrainConfig(
        epochs=12, batch_size=32, lr=1e-2, schedule="onecycle", patience=100, progress=False
    )
    return OrientationCNNRegressor(TINY, config).fit(patterns[N_TEST:], rotations[N_TEST:])


def test_standardisation_gives_zero_mean_unit_variance_float32_with_a_channel_axis():
    rng = np.random.default_rng(0)
    patterns = rng.random((3, 5, 7)) * 200 + 10
    x = standardize_patterns(patterns)
    assert x.shape == (3, 1, 5, 7) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), 0, atol=1e-6)
    np.testing.assert_allclose(x.std(axis=(1, 2, 3)), 1, atol=1e-5)
    np.testing.assert_allclose(standardize_patterns(3 * patterns - 7), x, atol=1e-5)
    as_uint8 = standardize_patterns(patterns.astype(np.uint8))
    assert as_uint8.dtype == np.float32 and np.isfinite(as_uint8).all()


def test_a_constant_pattern_becomes_zeros_not_a_division_by_zero():
    patterns = np.stack([np.full((4, 4), 3.7, np.float32), np.zeros((4, 4), np.float32)])
    patterns = np.concatenate([patterns, np.arange(16.0).reshape(1, 4, 4)])
    x = standardize_patterns(patterns)
    assert np.all(x[:2] == 0) and np.isfinite(x).all()
    assert x[2].std() == pytest.approx(1, abs=1e-6)


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (np.zeros((4, 4)), r"\(n, height, width\).*p\[None\]"),
        (np.zeros((2, 1, 4, 4)), "got 4 axes"),
        (np.zeros((0, 4, 4)), "empty"),
        (np.array([[["a"]]]), "intensities"),
    ],
)
def test_standardisation_rejects_bad_batches(patterns, message):
    with pytest.raises(DataError, match=message):
        standardize_patterns(patterns)


def test_standardisation_names_the_first_non_finite_pattern():
    patterns = np.ones((4, 3, 3))
    patterns[2, 1, 1] = np.nan
    patterns[3, 0, 0] = np.inf
    with pytest.raises(DataError, match=r"patterns\[2\].*NaN.*2 such"):
        standardize_patterns(patterns)


def test_spec_round_trips_through_json_and_rejects_bad_values():
    spec = replace(TINY, dropout=0.1, readout="average", convs_per_block=2)
    assert OrientationCNNSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    for bad in (
        {"channels": ()},
        {"channels": (8, 0)},
        {"fc_widths": (0,)},
        {"kernel_size": 4},
        {"readout": "max"},
        {"dropout": 1.0},
        {"convs_per_block": 0},
        {"pattern_shape": (20,)},
        {"output": "euler"},
    ):
        with pytest.raises(ConfigError):
            replace(TINY, **bad)


def test_cards_from_before_the_output_choice_hold_quaternion_networks():
    card = TINY.to_dict()
    del card["output"]
    assert OrientationCNNSpec.from_dict(card) == replace(TINY, output="quaternion")
    assert TINY.output == "cubic-embedding" and TINY.out_features == 15


def test_the_embedding_output_is_refused_for_non_cubic_phases():
    with pytest.raises(ConfigError, match=r"not '6/mmm'.*quaternion output"):
        OrientationCNNRegressor(TINY, point_group="6/mmm")
    hexagonal = OrientationCNNRegressor(replace(TINY, output="quaternion"), point_group="6/mmm")
    assert hexagonal.card()["loss"]["name"] == "disorientation"


def test_default_and_paper_sizes():
    assert count_parameters(OrientationCNN(ORIENTATION_CNN_SMALL)) == 327_623
    assert ORIENTATION_CNN_SMALL.feature_shape == (3, 3)
    with torch.device("meta"):
        paper = OrientationCNN(ORIENTATION_CNN_PAPER)
    assert 1.8e8 < count_parameters(paper) < 2.1e8  # "about 200 million"
    assert sum(isinstance(m, torch.nn.Conv2d) for m in paper.modules()) == 8
    assert sum(isinstance(m, torch.nn.Linear) for m in paper.modules()) == 5


@pytest.mark.parametrize(
    ("readout", "output", "width"),
    [("flatten", "cubic-embedding", 15), ("average", "cubic-embedding", 15),
     ("flatten", "quaternion", 4)],
)  # fmt: skip
def test_network_maps_patterns_to_raw_outputs(readout, output, width):
    net = OrientationCNN(replace(TINY, readout=readout, output=output)).eval()
    assert net(torch.randn(5, 1, 20, 20)).shape == (5, width)
    if output == "cubic-embedding":  # starts at the mean embedding, not at noise around zero
        torch.testing.assert_close(net.head[-1].bias, isotropic_embedding())
    with pytest.raises(DataError, match=r"\(batch, 1, 20, 20\).*\(5, 1, 21, 20\)"):
        net(torch.randn(5, 1, 21, 20))


def test_orientation_metrics_use_the_exact_symmetric_disorientation():
    truth = near_identity(4, 30.0, seed=1)
    three_deg = Rotation.from_axes_angles([0, 0, 1], np.radians(3.0))
    cube_equivalent = Rotation.from_axes_angles([1, 0, 0], np.pi / 2) * truth
    metrics = orientation_metrics(truth, three_deg * truth)
    assert set(metrics) == METRIC_KEYS and metrics["n"] == 4
    assert metrics["mean_disorientation_deg"] == pytest.approx(3.0)
    assert (metrics["within_1deg"], metrics["within_2deg"], metrics["within_5deg"]) == (0, 0, 1)
    exact = orientation_metrics(truth.data, cube_equivalent, "m-3m")
    assert exact["mean_disorientation_deg"] == pytest.approx(0, abs=1e-6)
    assert exact["within_1deg"] == 1
    with pytest.raises(DataError, match="true has 4 orientations but predicted has 3"):
        orientation_metrics(truth, truth[:3])


def test_training_beats_the_best_constant_prediction(model, data):
    patterns, rotations = data
    metrics = model.evaluate(patterns[:N_TEST], rotations[:N_TEST])
    constant = orientation_metrics(rotations[:N_TEST], Rotation.identity(N_TEST))
    assert set(metrics) == METRIC_KEYS and metrics["n"] == N_TEST
    assert metrics["mean_disorientation_deg"] < 0.5 * constant["mean_disorientation_deg"]
    assert 0 <= metrics["median_disorientation_deg"] <= 20
    fractions = [metrics[f"within_{t}deg"] for t in (1, 2, 5)]
    assert 0 <= fractions[0] <= fractions[1] <= fractions[2] <= 1 and fractions[2] > 0.2


def test_predictions_are_orientations_in_the_fundamental_zone(model, data):
    predicted = model.predict(data[0][:7])
    assert isinstance(predicted, Orientation) and predicted.shape == (7,)
    assert predicted.symmetry.name == "m-3m"
    np.testing.assert_allclose(np.linalg.norm(predicted.data, axis=1), 1, atol=1e-12)
    np.testing.assert_allclose(predicted.reduce().data, predicted.data, atol=1e-12)


def test_card_records_the_training(model):
    card = model.card()
    assert card["family"] == "orientation-network" and card["input"] == "ebsd-pattern"
    assert card["pattern_shape"] == [20, 20] and card["point_group"] == "m-3m"
    training = card["training"]
    assert len(training["data"]["fingerprint"]) == 64
    assert training["data"]["n_train"] + training["data"]["n_val"] == 1000
    assert training["data"]["n_val"] == 100 and training["epochs_run"] == 12
    assert training["config"]["lr"] == 1e-2
    assert (
        training["best_val_disorientation_deg"] == card["metrics"]["val"]["mean_disorientation_deg"]
    )
    assert card["loss"]["name"] == "cubic-embedding-distance"
    assert set(card["metrics"]["val"]) == METRIC_KEYS
    json.dumps(card)


def test_fit_takes_quaternion_arrays_and_an_explicit_validation_set(data, tmp_path):
    patterns, rotations = data
    config = TrainConfig(epochs=1, batch_size=32, progress=False)
    model = OrientationCNNRegressor(TINY, config).fit(
        patterns[:64],
        rotations[:64].data,
        val=(patterns[64:96], rotations[64:96]),
        workdir=tmp_path,
    )
    assert (model.training["data"]["n_train"], model.training["data"]["n_val"]) == (64, 32)
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert model.metrics["val"]["n"] == 32


def test_save_and_load_predict_identically(model, data, tmp_path):
    save_model(model, tmp_path / "cnn")
    loaded = deepmat.load(tmp_path / "cnn")
    assert isinstance(loaded, OrientationCNNRegressor) and loaded.spec == TINY
    patterns = data[0][:N_TEST]
    # Same weights; oneDNN may pick another kernel for another buffer alignment, which moves
    # the last bits of a float32 convolution (seen here: 5e-12 after decoding).
    np.testing.assert_allclose(
        loaded.predict(patterns).data, model.predict(patterns).data, rtol=1e-8, atol=1e-9
    )
    assert loaded.card()["training"] == model.card()["training"]
    scores = loaded.evaluate(patterns, data[1][:N_TEST])
    assert scores == pytest.approx(model.evaluate(patterns, data[1][:N_TEST]), rel=1e-6)


def test_bad_input_raises_a_clear_data_error(model, data):
    patterns, rotations = data
    with pytest.raises(DataError, match=r"patterns are 20×21 pixels but .* takes 20×20"):
        model.predict(np.zeros((2, 20, 21)))
    bad = patterns[:3].copy()
    bad[1, 4, 4] = np.nan
    with pytest.raises(DataError, match=r"patterns\[1\] holds NaN"):
        model.evaluate(bad, rotations[:3])
    with pytest.raises(DataError, match="rotations has 2 orientations for 3 patterns"):
        model.evaluate(patterns[:3], rotations[:2])
    with pytest.raises(DataError, match=r"rotations: .*record 1 is not finite"):
        model.evaluate(patterns[:2], np.array([[1.0, 0, 0, 0], [np.nan, 0, 0, 0]]))
    with pytest.raises(DataError, match=r"\(n, 4\)"):
        model.evaluate(patterns[:2], np.ones((2, 3)))
    dataset = PatternDataset(patterns[:2], rotations[:2], DETECTOR)
    with pytest.raises(DataError, match=r"ds\.patterns, ds\.rotations"):
        model.fit(dataset, rotations[:2])
    with pytest.raises(DataError, match="val must be a pair"):
        model.fit(patterns[:4], rotations[:4], val=(patterns[:2],))
    with pytest.raises(ConfigError, match="point group"):
        OrientationCNNRegressor(TINY, point_group="m-3x")
