"""Homogenization: the 3-D CNN, 2-point statistics, mixture rules and their estimators."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import deepmat
from deepmat.errors import ConfigError, DataError
from deepmat.models import HOMOGENIZATION_PAPER, HOMOGENIZATION_SMALL, CNN3DSpec, HomogenizationCNN
from deepmat.models.cnn3d import count_parameters
from deepmat.physics import IsotropicPhase, effective_stiffness, reuss_stiffness, voigt_stiffness
from deepmat.represent import two_point_statistics, volume_fractions
from deepmat.train import (
    RuleOfMixtures,
    TrainConfig,
    TwoPointPCARegressor,
    VoxelCNNRegressor,
    load_model,
    save_model,
)
from deepmat.train.microstructure import c11_symmetries

PHASES = (IsotropicPhase(1.0, 0.3), IsotropicPhase(50.0, 0.3))  # contrast 50, phase 1 stiff
TINY = CNN3DSpec(channels=(8, 16), fc_widths=(32,))
PAPER_PARAMETERS = 3_801_505  # counted by hand: 1,175,968 conv + 2,625,537 fully connected


def smoothed_structures(n: int, size: int = 9, seed: int = 0) -> np.ndarray:
    """Thresholded Gaussian-smoothed noise; the smoothing length along axis 1 differs from
    that along axes 2 and 3, and the volume fraction varies from 0.2 to 0.6."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(size)
    k1, k2, k3 = np.meshgrid(k, k, k, indexing="ij")
    out = np.empty((n, size, size, size), dtype=np.uint8)
    for i in range(n):
        along, across = rng.uniform(0.4, 2.5, 2)
        kernel = np.exp(-2 * np.pi**2 * (along**2 * k1**2 + across**2 * (k2**2 + k3**2)))
        field = np.fft.ifftn(np.fft.fftn(rng.normal(size=(size,) * 3)) * kernel).real
        out[i] = field > np.quantile(field, 1 - rng.uniform(0.2, 0.6))
    return out


def synthetic_target(x: np.ndarray) -> np.ndarray:
    """10 (1 + φ + 4 A), A = P(neighbours along 1 both stiff) − the same across: needs no
    solver, depends on volume fraction and anisotropy, and keeps the symmetries of C11."""
    m = x.astype(np.float64)
    pairs = [(m * np.roll(m, 1, axis=a)).mean(axis=(1, 2, 3)) for a in (1, 2, 3)]
    return 10 * (1 + m.mean(axis=(1, 2, 3)) + 4 * (pairs[0] - (pairs[1] + pairs[2]) / 2))


@pytest.fixture(scope="module")
def problem():
    x = smoothed_structures(250)
    y = synthetic_target(x)
    return (x[:200], y[:200]), (x[200:], y[200:])


def mean_baseline(problem) -> float:
    (_, y_train), (_, y_test) = problem
    return float(np.mean(np.abs(y_test - y_train.mean())))


# --- the network --------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [(1, 1, 1), (5, 5, 5), (9, 9, 9), (8, 12, 17), (33, 20, 9)])
def test_cnn_output_shape_for_any_grid(grid):
    net = HomogenizationCNN(HOMOGENIZATION_SMALL).eval()
    assert net(torch.rand(3, 1, *grid)).shape == (3, 1)


def test_paper_spec_has_about_3_8_million_weights_at_51_cubed():
    torch.manual_seed(0)
    net = HomogenizationCNN(HOMOGENIZATION_PAPER).eval()
    count = count_parameters(net)
    print(f"HOMOGENIZATION_PAPER: {count:,} weights")
    assert count == PAPER_PARAMETERS
    assert abs(count - 3.8e6) / 3.8e6 < 0.01  # "about 3.8 million"
    with torch.no_grad():
        features = net.features(torch.rand(1, 1, 51, 51, 51))
    assert features.shape == (1, 256, 1, 1, 1)  # 51 → 25 → 12 → 6 → 3 → 1
    assert count_parameters(HomogenizationCNN(HOMOGENIZATION_SMALL)) < 100_000


def test_spec_round_trips_and_rejects_bad_values():
    assert CNN3DSpec.from_dict(json.loads(json.dumps(HOMOGENIZATION_PAPER.to_dict()))) == (
        HOMOGENIZATION_PAPER
    )
    with pytest.raises(ConfigError, match="odd"):
        CNN3DSpec(channels=(4,), fc_widths=(), kernel_size=4)
    with pytest.raises(ConfigError, match="pooling"):
        CNN3DSpec(channels=(4,), fc_widths=(), pooling="median")


def test_circular_convolution_commutes_with_any_periodic_shift():
    torch.manual_seed(0)
    conv = HomogenizationCNN(TINY).blocks[0].conv
    x = torch.rand(2, 1, 7, 6, 5)
    shift, dims = (3, -2, 4), (2, 3, 4)
    with torch.no_grad():
        assert torch.allclose(
            conv(torch.roll(x, shift, dims)), torch.roll(conv(x), shift, dims), atol=1e-6
        )


@pytest.mark.parametrize("batch_norm", [False, True])
def test_network_is_invariant_to_shifts_by_multiples_of_the_pooling_stride(batch_norm):
    torch.manual_seed(0)
    spec = CNN3DSpec(channels=(4, 8), fc_widths=(16,), batch_norm=batch_norm)
    net = HomogenizationCNN(spec).eval()
    x = (torch.rand(2, 1, 8, 8, 12) < 0.4).float()
    with torch.no_grad():
        y = net(x)
        shifted = net(torch.roll(x, (spec.stride, 0, 2 * spec.stride), (2, 3, 4)))
        assert torch.allclose(shifted, y, atol=1e-5)
        assert not torch.allclose(net(torch.roll(x, 1, 2)), y, atol=1e-5)


def test_c11_augmentation_keeps_the_synthetic_target():
    torch.manual_seed(0)
    x = torch.from_numpy(smoothed_structures(16, seed=3)[:, None]).float()
    augmented = c11_symmetries(x)
    assert not torch.equal(augmented, x)
    expected = synthetic_target(x[:, 0].numpy().astype(np.uint8))
    got = synthetic_target(augmented[:, 0].numpy().astype(np.uint8))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


# --- 2-point statistics -------------------------------------------------------------------


def brute_force_s2(m: np.ndarray) -> np.ndarray:
    """S2(r) = mean_x m(x) m(x + r), centred, by explicit periodic shifts."""
    n1, n2, n3 = m.shape
    out = np.empty(m.shape)
    for a in range(n1):
        for b in range(n2):
            for c in range(n3):
                r = (a - n1 // 2, b - n2 // 2, c - n3 // 2)
                out[a, b, c] = np.mean(m * np.roll(m, tuple(-s for s in r), axis=(0, 1, 2)))
    return out


def test_two_point_statistics_of_hand_made_structures():
    line = np.array([1, 1, 0, 0], dtype=np.uint8).reshape(1, 4, 1, 1)
    np.testing.assert_allclose(two_point_statistics(line).ravel(), [0, 0.25, 0.5, 0.25])
    voxel = np.zeros((1, 3, 3, 3), dtype=np.uint8)
    voxel[0, 0, 2, 1] = 1
    expected = np.zeros((3, 3, 3))
    expected[1, 1, 1] = 1 / 27
    np.testing.assert_allclose(two_point_statistics(voxel)[0], expected, atol=1e-15)
    i, j, k = np.indices((2, 2, 2))
    checkerboard = ((i + j + k) % 2)[None].astype(np.uint8)
    even = ((i + j + k) % 2 == 0) * 0.5  # r = 0 sits at index 1 on a 2-voxel axis
    np.testing.assert_allclose(two_point_statistics(checkerboard)[0], 0.5 - even, atol=1e-15)


def test_two_point_statistics_match_brute_force_for_a_batch():
    x = (np.random.default_rng(0).random((3, 5, 4, 3)) < 0.4).astype(np.uint8)
    s2 = two_point_statistics(x)
    for sample, stats in zip(x, s2, strict=True):
        np.testing.assert_allclose(stats, brute_force_s2(sample), atol=1e-12)
    np.testing.assert_allclose(s2[:, 2, 2, 1], volume_fractions(x), atol=1e-12)


def test_two_point_statistics_at_zero_and_at_long_range():
    x = (np.random.default_rng(1).random((2, 24, 24, 24)) < 0.3).astype(np.uint8)
    s2 = two_point_statistics(x)
    phi = volume_fractions(x)
    np.testing.assert_allclose(s2[:, 12, 12, 12], phi, atol=1e-12)
    # the mean of S2 over all r is φ² exactly; away from r = 0 uncorrelated voxels give φ²
    np.testing.assert_allclose(s2.mean(axis=(1, 2, 3)), phi**2, atol=1e-12)
    far = s2.copy()
    far[:, 12, 12, 12] = np.nan
    deviation = np.nanmax(np.abs(far - phi[:, None, None, None] ** 2))
    assert deviation < 0.02


def test_cropped_two_point_statistics_are_the_centre_of_the_full_ones():
    x = (np.random.default_rng(2).random((2, 9, 8, 7)) < 0.5).astype(np.uint8)
    full, cropped = two_point_statistics(x), two_point_statistics(x, r_max=2)
    assert cropped.shape == (2, 5, 5, 5)
    np.testing.assert_array_equal(cropped, full[:, 2:7, 2:7, 1:6])
    assert two_point_statistics(x, r_max=3).shape == (2, 7, 7, 7)
    with pytest.raises(DataError, match="r_max must be between 0 and 3"):
        two_point_statistics(x, r_max=4)


# --- mixture rules ------------------------------------------------------------------------


def test_voigt_and_reuss_bound_the_solved_c11():
    x = smoothed_structures(3, seed=5)
    voigt = RuleOfMixtures(PHASES, "voigt").predict(x)
    reuss = RuleOfMixtures(PHASES, "reuss").predict(x)
    for i, structure in enumerate(x):
        stiffness, reports = effective_stiffness(structure, PHASES, tol=1e-8)
        assert all(r.converged for r in reports)
        assert reuss[i] < stiffness[0, 0] < voigt[i]


def test_mixture_rules_are_exact_for_homogeneous_structures():
    x = np.stack([np.zeros((4, 4, 4)), np.ones((4, 4, 4))]).astype(np.uint8)
    c11 = [p.stiffness()[0, 0] for p in PHASES]
    for rule in ("voigt", "reuss"):
        np.testing.assert_allclose(RuleOfMixtures(PHASES, rule).predict(x), c11, rtol=1e-12)


def test_reuss_c11_inverts_the_averaged_compliance_not_the_c11_values():
    # with equal Poisson ratios the stiffnesses are proportional and the two coincide
    phases = (IsotropicPhase(1.0, 0.2), IsotropicPhase(50.0, 0.45))
    phi = 0.3
    stiffness = [p.stiffness() for p in phases]
    compliance = (1 - phi) * np.linalg.inv(stiffness[0]) + phi * np.linalg.inv(stiffness[1])
    expected = np.linalg.inv(compliance)[0, 0]
    assert reuss_stiffness(phases, [1 - phi, phi])[0, 0] == pytest.approx(expected, rel=1e-12)
    harmonic = 1 / ((1 - phi) / stiffness[0][0, 0] + phi / stiffness[1][0, 0])
    assert abs(expected - harmonic) > 1e-3 * expected
    voigt = voigt_stiffness(phases, np.array([[1 - phi, phi]]))
    assert voigt.shape == (1, 6, 6)
    arithmetic = (1 - phi) * stiffness[0][0, 0] + phi * stiffness[1][0, 0]
    assert voigt[0, 0, 0] == pytest.approx(arithmetic, rel=1e-12)
    with pytest.raises(DataError, match="sum to 1"):
        voigt_stiffness(phases, [0.5, 0.6])


def test_rule_of_mixtures_rejects_bad_settings():
    with pytest.raises(ConfigError, match="two IsotropicPhase"):
        RuleOfMixtures(PHASES[:1])
    with pytest.raises(ConfigError, match="rule"):
        RuleOfMixtures(PHASES, "hill")


# --- learning estimators ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_point(problem):
    (x, y), _ = problem
    return TwoPointPCARegressor(r_max=2, phases=PHASES, unit="GPa").fit(x, y)


@pytest.fixture(scope="module")
def cnn(problem):
    (x, y), _ = problem
    config = TrainConfig(
        epochs=30, batch_size=32, lr=3e-3, patience=30, progress=False, accelerator="cpu"
    )
    return VoxelCNNRegressor(TINY, config, phases=PHASES, unit="GPa").fit(x, y)


@pytest.mark.parametrize("name", ["two_point", "cnn"])
def test_estimators_learn_volume_fraction_and_anisotropy(name, problem, request):
    model = request.getfixturevalue(name)
    _, (x_test, y_test) = problem
    metrics = model.evaluate(x_test, y_test)
    print(f"{name}: {metrics}, predicting the mean: MAE {mean_baseline(problem):.3f}")
    assert set(metrics) == {"mae", "rmse", "r2", "n", "mape"}
    assert metrics["mae"] < 0.5 * mean_baseline(problem)
    assert metrics["r2"] > 0.6
    assert metrics["mape"] == pytest.approx(
        100 * np.mean(np.abs(model.predict(x_test) - y_test) / y_test)
    )


def test_cnn_holds_out_a_validation_set_and_records_training(cnn):
    data = cnn.training["data"]
    assert (data["n_train"], data["n_val"]) == (170, 30)
    assert data["grid"] == [9, 9, 9]
    assert cnn.training["augment"] is True
    assert cnn.metrics["val"]["mae"] == pytest.approx(cnn.fit_result.best_val_mae, rel=1e-4)


@pytest.mark.parametrize("name", ["two_point", "cnn", "voigt", "reuss"])
def test_save_and_load_give_identical_predictions(name, problem, request, tmp_path):
    (x, y), (x_test, _) = problem
    if name in ("voigt", "reuss"):
        model = RuleOfMixtures(PHASES, name, unit="GPa").fit(x, y)
    else:
        model = request.getfixturevalue(name)
    save_model(model, tmp_path / name)
    card = json.loads((tmp_path / name / "card.json").read_text())
    assert card["input"] == "microstructure"
    assert card["grid"] == [9, 9, 9]
    assert card["phases"] == [
        {"youngs_modulus": 1.0, "poisson_ratio": 0.3},
        {"youngs_modulus": 50.0, "poisson_ratio": 0.3},
    ]
    assert card["target"]["name"] == "C11"
    loaded = deepmat.load(tmp_path / name)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict(x_test), model.predict(x_test))
    assert loaded.card()["training"] == card["training"]


def test_unfitted_two_point_model_says_so():
    with pytest.raises(ConfigError, match="not fitted"):
        TwoPointPCARegressor().predict(np.zeros((1, 5, 5, 5), dtype=np.uint8))


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((5, 5, 5), dtype=np.uint8), np.ones(5), r"shape \(n, n1, n2, n3\).*x\[None\]"),
        (np.full((2, 3, 3, 3), 2, dtype=np.uint8), np.ones(2), r"microstructures\[0\].*0 or 1"),
        (np.full((2, 3, 3, 3), np.nan), np.ones(2), r"microstructures\[0\].*nan"),
        (np.zeros((2, 3, 3, 3), dtype=np.uint8), [1.0, np.nan], r"targets\[1\] is nan"),
        (np.zeros((2, 3, 3, 3), dtype=np.uint8), np.ones(3), "3 values for 2 microstructures"),
        (np.zeros((0, 3, 3, 3), dtype=np.uint8), np.ones(0), "empty"),
    ],
)
def test_bad_input_raises_a_clear_data_error(x, y, message):
    for model in (RuleOfMixtures(PHASES), TwoPointPCARegressor(), VoxelCNNRegressor(TINY)):
        with pytest.raises(DataError, match=message):
            model.fit(x, y)
    with pytest.raises(DataError, match=message):
        RuleOfMixtures(PHASES).evaluate(x, y)


def test_bad_validation_data_is_named(problem):
    (x, y), _ = problem
    with pytest.raises(DataError, match=r"val targets has 1 values for 2 microstructures"):
        TwoPointPCARegressor().fit(x, y, val=(x[:2], y[:1]))


def test_two_point_window_is_reduced_to_what_the_grid_allows(problem, tmp_path):
    (x, y), _ = problem
    model = TwoPointPCARegressor(r_max=8, n_components=3).fit(x[:40], y[:40])
    assert model.card()["representation"] == {"name": "two-point", "r_max": 4}
    assert load_model(save_model(model, tmp_path / "m")).window == 4
