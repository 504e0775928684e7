"""Localization: periodic neighbourhoods, the slice CNN and strain FCN, MKS and their estimators."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import deepmat
from deepmat.errors import ConfigError, DataError
from deepmat.models.localization import (
    SliceCNN,
    SliceCNNSpec,
    StrainFCN,
    StrainFCNSpec,
    circular_pad,
)
from deepmat.represent.neighbourhoods import neighbourhoods, sample_voxels
from deepmat.train import (
    FCN3DRegressor,
    MKSRegressor,
    SliceCNNRegressor,
    TrainConfig,
    load_model,
    save_model,
)
from deepmat.train.field_plots import field_comparison_plot
from deepmat.train.localization import (
    localization_metrics,
    neighbourhood_symmetries,
    strain_component,
    strain_symmetries,
)

MACRO = 1e-3
TINY_CNN = SliceCNNSpec(size=5, channels=(8, 16), fc_widths=(32,))
TINY_FCN = StrainFCNSpec(channels=8, dilations=(1, 2))


def random_structures(n: int, grid=(8, 8, 8), seed: int = 0) -> np.ndarray:
    """Smoothed noise thresholded at volume fractions from 0.2 to 0.8."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, *grid), dtype=np.uint8)
    for i in range(n):
        noise = rng.normal(size=grid)
        smooth = sum(np.roll(noise, s, axis=a) for a in range(3) for s in (-1, 0, 1))
        out[i] = smooth > np.quantile(smooth, 1 - rng.uniform(0.2, 0.8))
    return out


def local_rule(x: np.ndarray) -> np.ndarray:
    """ε11 = ε̄ (1 + r − ⟨r⟩), r = 0.8 b − 0.4 m + 0.6 m b with b the mean of m over the
    3×3×3 periodic block: local, nonlinear, mean ε̄ and the symmetries of ε11."""
    m = x.astype(np.float64)
    block = (
        sum(
            np.roll(m, (a, b, c), axis=(1, 2, 3))
            for a in (-1, 0, 1)
            for b in (-1, 0, 1)
            for c in (-1, 0, 1)
        )
        / 27
    )
    r = 0.8 * block - 0.4 * m + 0.6 * m * block
    return MACRO * (1 + r - r.mean(axis=(1, 2, 3), keepdims=True))


def periodic_convolution(kernel: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(κ ⊛ m)(x) = Σ_r κ(r) m(x − r) by brute force over r, for each structure."""
    out = np.zeros(m.shape, dtype=np.float64)
    for r in np.ndindex(kernel.shape):
        out += kernel[r] * np.roll(m, r, axis=(1, 2, 3))
    return out


@pytest.fixture(scope="module")
def data():
    x = random_structures(48)
    e = local_rule(x)
    return (x[:36], e[:36]), (x[36:], e[36:])


@pytest.fixture(scope="module")
def slice_cnn(data):
    config = TrainConfig(epochs=8, batch_size=256, lr=3e-3, patience=8, progress=False)
    model = SliceCNNRegressor(TINY_CNN, config, voxels_per_sample=150)
    return model.fit(*data[0], val=data[1])


@pytest.fixture(scope="module")
def fcn(data):
    config = TrainConfig(epochs=12, batch_size=4, lr=5e-3, patience=12, progress=False)
    return FCN3DRegressor(TINY_FCN, config).fit(*data[0], val=data[1])


# neighbourhoods ---------------------------------------------------------------------------


def brute_force_neighbourhood(x: np.ndarray, row, size: int) -> np.ndarray:
    sample, i1, i2, i3 = row
    h = size // 2
    n1, n2, n3 = x.shape[1:]
    block = np.empty((size,) * 3, dtype=x.dtype)
    for a in range(size):
        for b in range(size):
            for c in range(size):
                block[a, b, c] = x[sample, (i1 + a - h) % n1, (i2 + b - h) % n2, (i3 + c - h) % n3]
    return block


@pytest.mark.parametrize("size", [1, 3, 5, 7])
def test_neighbourhoods_of_every_voxel_match_brute_force(size):
    x = random_structures(2, grid=(3, 4, 5), seed=1)
    blocks = neighbourhoods(x, size)
    rows = list(np.ndindex(x.shape))
    assert blocks.shape == (len(rows), size, size, size) and blocks.dtype == np.uint8
    for k, row in enumerate(rows):
        np.testing.assert_array_equal(blocks[k], brute_force_neighbourhood(x, row, size))


def test_neighbourhoods_of_chosen_voxels_match_brute_force():
    x = random_structures(3, grid=(6, 5, 4), seed=2)
    voxels = np.array([[0, 0, 0, 0], [2, 5, 4, 3], [1, 3, 0, 2], [1, 3, 0, 2]])
    blocks = neighbourhoods(x, 5, voxels)
    for block, row in zip(blocks, voxels, strict=True):
        np.testing.assert_array_equal(block, brute_force_neighbourhood(x, row, 5))
    assert neighbourhoods(x, 5, voxels[:0]).shape == (0, 5, 5, 5)


def test_sample_voxels_are_distinct_per_sample_and_in_range():
    voxels = sample_voxels(4, (3, 4, 5), 10, seed=3)
    assert voxels.shape == (40, 4)
    for sample in range(4):
        rows = voxels[voxels[:, 0] == sample, 1:]
        assert len({tuple(r) for r in rows}) == 10
        assert (rows >= 0).all() and (rows < [3, 4, 5]).all()
    assert len(sample_voxels(2, (2, 2, 2), 100)) == 16
    np.testing.assert_array_equal(voxels, sample_voxels(4, (3, 4, 5), 10, seed=3))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda x: neighbourhoods(x, 4), ConfigError, "odd"),
        (lambda x: neighbourhoods(x, 0), ConfigError, "positive odd"),
        (lambda x: neighbourhoods(x, 3, np.array([[0, 9, 0, 0]])), DataError, "outside"),
        (lambda x: neighbourhoods(x, 3, np.zeros((2, 3), dtype=int)), DataError, "(m, 4)"),
        (lambda x: neighbourhoods(x[0], 3), DataError, "batch axis"),
    ],
)
def test_neighbourhood_bad_inputs(call, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(random_structures(1, grid=(4, 4, 4)))


# networks -----------------------------------------------------------------------------------


def test_slice_cnn_shapes_and_spec_round_trip():
    net = SliceCNN(TINY_CNN)
    assert net(torch.zeros(3, 5, 5, 5)).shape == (3, 1)
    for spec in (SliceCNNSpec(), TINY_CNN, SliceCNNSpec(size=11, channels=(4, 4, 4))):
        assert SliceCNNSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
        assert SliceCNN(spec)(torch.zeros(2, *(spec.size,) * 3)).shape == (2, 1)
    with pytest.raises(ValueError, match="neighbourhoods"):
        net(torch.zeros(3, 7, 7, 7))


def test_slice_cnn_treats_slices_along_axis_1_as_channels():
    net = SliceCNN(TINY_CNN)
    assert net.convs[0].in_channels == TINY_CNN.size
    x = torch.zeros(1, 5, 5, 5)
    x[0, 4] = 1  # the last slice along axis 1 ...
    y = torch.zeros(1, 5, 5, 5)
    y[0, :, :, 4] = 1  # ... is not the last slice along axis 3
    assert not torch.allclose(net(x), net(y))


@pytest.mark.parametrize("bad", [{"size": 4}, {"channels": ()}, {"dropout": 1.0}])
def test_bad_slice_cnn_spec(bad):
    with pytest.raises(ConfigError):
        SliceCNNSpec(**bad)


@pytest.mark.parametrize(
    "bad", [{"channels": 0}, {"dilations": ()}, {"kernel_size": 2}, {"modes": -1}]
)
def test_bad_fcn_spec(bad):
    with pytest.raises(ConfigError):
        StrainFCNSpec(**bad)


def test_fcn_shapes_and_translation_equivariance():
    torch.manual_seed(0)
    net = StrainFCN(TINY_FCN).eval()
    x = torch.from_numpy(random_structures(2, grid=(6, 7, 5), seed=4))[:, None]
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, 1, 6, 7, 5)
        for shifts in [(1, 0, 0), (2, 3, 4), (5, 6, 1)]:
            rolled = net(torch.roll(x, shifts, dims=(2, 3, 4)))
            torch.testing.assert_close(rolled, torch.roll(y, shifts, dims=(2, 3, 4)))
    assert StrainFCNSpec.from_dict(json.loads(json.dumps(TINY_FCN.to_dict()))) == TINY_FCN


def test_spectral_blocks_keep_equivariance_and_see_the_whole_cell():
    torch.manual_seed(0)
    spec = StrainFCNSpec(channels=4, dilations=(1,), modes=2)
    net = StrainFCN(spec).eval()
    x = torch.from_numpy(random_structures(2, grid=(9, 7, 8), seed=5))[:, None]
    with torch.no_grad():
        y = net(x)
        rolled = net(torch.roll(x, (4, 2, 5), dims=(2, 3, 4)))
        torch.testing.assert_close(rolled, torch.roll(y, (4, 2, 5), dims=(2, 3, 4)))
        far = x.clone()
        far[0, 0, 4, 3, 4] = 1 - far[0, 0, 4, 3, 4]
        assert (net(far) - y)[0, 0, 0, 0, 0].abs() > 0  # beyond the 5³ local kernels
    assert StrainFCNSpec.from_dict(spec.to_dict()) == spec
    coarse = torch.from_numpy(random_structures(1, grid=(4, 3, 2), seed=6))[:, None]
    with torch.no_grad():  # fewer frequencies than modes: those that exist are kept
        y = net(coarse)
        torch.testing.assert_close(net(torch.roll(coarse, 1, 2)), torch.roll(y, 1, 2))


def test_fcn_receptive_field():
    spec = StrainFCNSpec(channels=4, dilations=(1, 2))
    assert spec.receptive_field == 9
    assert StrainFCNSpec().receptive_field == 33 >= 11
    torch.manual_seed(0)
    net = StrainFCN(spec).eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv3d):
                module.weight.abs_()  # positive weights: no cancellation, no dead ReLUs
        x = torch.zeros(1, 1, 15, 15, 15)
        x2 = x.clone()
        x2[0, 0, 7, 7, 7] = 1
        changed = (net(x2) - net(x)).abs()[0, 0] > 0
    extent = [int(changed.any(dim=tuple(d for d in range(3) if d != a)).sum()) for a in range(3)]
    assert extent == [9, 9, 9]


def test_circular_pad_wraps_beyond_the_grid():
    x = torch.arange(3.0).reshape(1, 1, 3, 1, 1).expand(1, 1, 3, 2, 2)
    padded = circular_pad(x, 4)
    assert padded.shape == (1, 1, 11, 10, 10)
    assert padded[0, 0, :, 0, 0].tolist() == [2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0]


def test_strain_symmetries_move_structure_and_field_together():
    torch.manual_seed(1)
    x = random_structures(6, seed=5)
    y = local_rule(x)[:, None] / MACRO
    gx, gy = strain_symmetries(torch.from_numpy(x)[:, None].float(), torch.from_numpy(y).float())
    assert not torch.equal(gx, torch.from_numpy(x)[:, None].float())
    expected = local_rule(gx[:, 0].numpy().astype(np.uint8)) / MACRO
    np.testing.assert_allclose(gy[:, 0].numpy(), expected, atol=1e-6)


def test_neighbourhood_symmetries_keep_the_centre_and_the_contents():
    torch.manual_seed(2)
    x = torch.from_numpy(neighbourhoods(random_structures(2, seed=6), 5)).float()
    g = neighbourhood_symmetries(x)
    assert not torch.equal(g, x)
    torch.testing.assert_close(g[:, 2, 2, 2], x[:, 2, 2, 2])
    torch.testing.assert_close(g.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))


# MKS ----------------------------------------------------------------------------------------


def test_mks_recovers_a_linear_localization_exactly():
    rng = np.random.default_rng(7)
    grid = (6, 7, 8)
    kernel = rng.normal(size=grid) * 0.1
    x = (rng.random((12, *grid)) < rng.uniform(0.2, 0.8, (12, 1, 1, 1))).astype(np.uint8)
    e = MACRO * (0.7 + periodic_convolution(kernel, x))
    model = MKSRegressor(ridge=1e-14).fit(x[:8], e[:8], macro_strain=MACRO)
    predicted = model.predict(x[8:])
    assert np.max(np.abs(predicted - e[8:])) / np.max(np.abs(e[8:])) < 1e-8
    assert model.evaluate(x[8:], e[8:])["mase"] < 1e-6


def test_mks_gives_the_macroscopic_strain_on_homogeneous_structures():
    rng = np.random.default_rng(8)
    kernel = rng.normal(size=(5, 5, 5)) * 0.2
    x = random_structures(10, grid=(5, 5, 5), seed=8)
    phi = x.mean(axis=(1, 2, 3), keepdims=True)
    e = MACRO * (1 + periodic_convolution(kernel, x - phi))
    model = MKSRegressor().fit(x, e)
    assert model.macro_strain == pytest.approx(MACRO)
    homogeneous = np.stack([np.zeros((5, 5, 5)), np.ones((5, 5, 5))]).astype(np.uint8)
    np.testing.assert_allclose(model.predict(homogeneous), MACRO, rtol=1e-8)
    np.testing.assert_allclose(model.predict(homogeneous, macro_strain=-2e-3), -2e-3, rtol=1e-8)


def test_mks_on_the_local_rule_beats_the_mean(data):
    (x, e), (x_val, e_val) = data
    model = MKSRegressor().fit(x, e, val=(x_val, e_val))
    baseline = localization_metrics(e_val, np.full_like(e_val, MACRO), MACRO)["mase"]
    assert model.metrics["val"]["mase"] < 0.5 * baseline


# network estimators -------------------------------------------------------------------------


def test_networks_learn_the_local_rule_better_than_the_mean(data, slice_cnn, fcn):
    x_val, e_val = data[1]
    baseline = localization_metrics(e_val, np.full_like(e_val, MACRO), MACRO)["mase"]
    for model in (slice_cnn, fcn):
        predicted = model.predict(x_val)
        assert predicted.shape == x_val.shape
        np.testing.assert_allclose(predicted.mean(axis=(1, 2, 3)), MACRO, rtol=1e-6)
        assert model.evaluate(x_val, e_val)["mase"] < 0.8 * baseline, model.name
        assert model.metrics["val"]["n_voxels"] == e_val.size


def test_network_training_is_recorded(slice_cnn, fcn, data):
    for model in (slice_cnn, fcn):
        assert model.training["data"]["n_train"] == 36
        assert model.training["epochs_run"] >= 1
        assert model.macro_strain == pytest.approx(MACRO)
        card = model.card()
        assert card["input"] == "microstructure" and card["output"] == "strain field"
        assert card["family"] == "localization-network"
    assert slice_cnn.card()["architecture"]["kind"] == "slice-cnn"
    assert fcn.card()["architecture"]["kind"] == "strain-fcn"


def test_network_holds_out_validation_without_val(data):
    config = TrainConfig(epochs=1, batch_size=8, progress=False)
    model = FCN3DRegressor(TINY_FCN, config, val_fraction=0.25).fit(*data[0])
    assert model.training["data"]["n_train"] == 27 and model.training["data"]["n_val"] == 9


def test_save_load_round_trips(data, slice_cnn, fcn, tmp_path):
    (x, e), (x_val, _) = data
    mks = MKSRegressor(ridge=1e-6).fit(x, e)
    for model in (slice_cnn, fcn, mks):
        path = save_model(model, tmp_path / model.name)
        loaded = deepmat.load(path)
        assert type(loaded) is type(model)
        np.testing.assert_allclose(loaded.predict(x_val), model.predict(x_val), rtol=1e-6)
        assert loaded.card()["target"] == model.card()["target"]
        assert loaded.grid == model.grid == (8, 8, 8)
        assert len(loaded.predict(np.zeros((2, *loaded.grid)))) == 2
    assert (tmp_path / "mks" / "mks.npz").exists()
    assert load_model(tmp_path / "mks").ridge == 1e-6


def test_unfitted_mks_cannot_predict_or_be_saved(tmp_path):
    with pytest.raises(ConfigError, match="not fitted"):
        MKSRegressor().predict(np.zeros((1, 4, 4, 4)))
    with pytest.raises(deepmat.ModelFormatError, match="not fitted"):
        save_model(MKSRegressor(), tmp_path / "mks")


# metrics, inputs, figures -------------------------------------------------------------------


def test_mase_on_a_hand_example():
    truth = np.array([[[[1.0, 2.0], [3.0, 2.0]]]]) * 1e-3
    predicted = np.array([[[[1.5, 1.0], [3.0, 2.2]]]]) * 1e-3
    metrics = localization_metrics(truth, predicted, 2e-3)
    assert metrics["mase"] == pytest.approx(100 * (0.5 + 1.0 + 0 + 0.2) / 4 / 2)
    assert metrics["mae"] == pytest.approx(1e-3 * 1.7 / 4)
    assert metrics["n"] == 1 and metrics["n_voxels"] == 4


def test_strain_component_takes_e11_of_mandel_fields():
    fields = np.arange(2 * 6 * 8).reshape(2, 6, 2, 2, 2)
    np.testing.assert_array_equal(strain_component(fields), fields[:, 0])
    np.testing.assert_array_equal(strain_component(fields[:, 0]), fields[:, 0])


@pytest.mark.parametrize(
    ("strain", "message"),
    [
        (lambda e: e[:3], "3 fields for 4 microstructures"),
        (lambda e: e[:, :4], "grid"),
        (lambda e: e[0], "shape"),
        (lambda e: np.where(np.arange(4)[:, None, None, None] == 2, np.nan, e), r"strain\[2\]"),
    ],
)
def test_bad_strain_raises_data_error(strain, message):
    x = random_structures(4, grid=(5, 5, 5))
    e = local_rule(x)
    with pytest.raises(DataError, match=message):
        MKSRegressor().fit(x, strain(e))


def test_bad_inputs_raise_data_error(data):
    (x, e), _ = data
    model = MKSRegressor().fit(x, e)
    with pytest.raises(DataError, match="batch axis"):
        model.predict(x[0])
    with pytest.raises(DataError, match="grid"):
        model.predict(np.zeros((1, 6, 6, 6)))
    with pytest.raises(DataError, match="value 2"):
        model.predict(np.full((1, 8, 8, 8), 2))
    with pytest.raises(DataError, match="val must be a pair"):
        MKSRegressor().fit(x, e, val=(x,))
    with pytest.raises(DataError, match="val strain"):
        MKSRegressor().fit(x, e, val=(x[:2], e[:3]))
    with pytest.raises(DataError, match="non-zero"):
        MKSRegressor().fit(x, e, macro_strain=0.0)


def test_field_comparison_plot(data, tmp_path):
    (x, e), _ = data
    model = MKSRegressor().fit(x, e)
    path = field_comparison_plot(
        x[0],
        e[0],
        {"mks": model.predict(x[:1])[0], "mean": np.full_like(e[0], MACRO)},
        tmp_path / "fields.png",
    )
    assert path.stat().st_size > 1000
    with pytest.raises(DataError, match="shape"):
        field_comparison_plot(x[0], e[0], {"bad": e[0, :2]}, tmp_path / "bad.png")
