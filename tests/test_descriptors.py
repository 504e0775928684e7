"""Microstructure descriptors: the textbook values on 0/1 images, gradients in between."""

import numpy as np
import pytest
import torch

from deepmat.errors import DataError
from deepmat.represent.descriptors import (
    cluster_sizes,
    gram_matrices,
    lineal_path,
    one_hot,
    total_variation,
    two_point,
    volume_fractions,
)
from deepmat.represent.two_point import two_point_statistics


def labels_2d(seed=0, shape=(24, 30), phases=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, phases, size=shape)


def test_indicators_and_volume_fractions():
    labels = labels_2d()
    x = one_hot(labels)
    assert x.shape == (3, 24, 30) and torch.all(x.sum(0) == 1)
    expected = np.bincount(labels.ravel(), minlength=3) / labels.size
    np.testing.assert_allclose(volume_fractions(x).numpy(), expected, rtol=1e-6)
    with pytest.raises(DataError, match="phase label 3 for 3 phases"):
        one_hot(labels + 1, 3)
    with pytest.raises(DataError, match="2-D or 3-D"):
        one_hot(np.zeros(5, int))


def test_periodic_two_point_matches_the_numpy_statistics_and_the_definition():
    volume = np.random.default_rng(1).integers(0, 2, size=(9, 10, 11))
    s2 = two_point(one_hot(volume, 2).double(), r_max=3)
    reference = two_point_statistics(volume[None], r_max=3)[0]
    np.testing.assert_allclose(s2[1].numpy(), reference, atol=1e-9)
    labels = labels_2d()
    s2 = two_point(one_hot(labels).double(), r_max=4)
    for phase, (dy, dx) in [(0, (0, 0)), (1, (2, -3)), (2, (-4, 1))]:
        m = labels == phase
        direct = np.mean(m & np.roll(m, (-dy, -dx), axis=(0, 1)))
        assert s2[phase, 4 + dy, 4 + dx].item() == pytest.approx(direct, abs=1e-9)


def test_non_periodic_two_point_averages_over_pairs_inside_the_image():
    labels = labels_2d(2)
    s2 = two_point(one_hot(labels).double(), r_max=5, periodic=False)
    m = labels == 1
    dy, dx = 3, 2
    direct = np.mean(m[:-dy, :-dx] & m[dy:, dx:])
    assert s2[1, 5 + dy, 5 + dx].item() == pytest.approx(direct, abs=1e-9)
    assert s2[1, 5, 5].item() == pytest.approx(m.mean(), abs=1e-9)
    with pytest.raises(DataError, match="r_max 20 does not fit"):
        two_point(one_hot(labels), r_max=20)


def test_lineal_path_counts_segments_inside_a_phase():
    labels = labels_2d(3, phases=2)
    for periodic in (True, False):
        curve = lineal_path(one_hot(labels).double(), max_length=4, periodic=periodic)
        assert curve.shape == (2, 2, 5)
        m = labels == 1
        for length in range(5):
            if periodic:
                inside = np.all([np.roll(m, -s, axis=1) for s in range(length + 1)], axis=0)
            else:
                n = m.shape[1] - length
                inside = np.all([m[:, s : s + n] for s in range(length + 1)], axis=0)
            assert curve[1, 1, length].item() == pytest.approx(inside.mean(), abs=1e-9)
        assert torch.all(curve[..., 1:] <= curve[..., :-1] + 1e-12)


def test_descriptors_are_differentiable_in_soft_indicators():
    x = torch.rand(2, 16, 16, dtype=torch.float64)
    x = (x / x.sum(0)).requires_grad_(True)
    loss = two_point(x, 3).sum() + lineal_path(x, 3).sum() + total_variation(x).sum()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_total_variation_and_gram_matrices():
    stripes = np.zeros((8, 8), int)
    stripes[:, ::2] = 1  # every horizontal neighbour differs, no vertical one does
    np.testing.assert_allclose(total_variation(one_hot(stripes)).numpy(), [1.0, 1.0])
    features = {"relu1_1": torch.rand(2, 3, 5, 4)}
    gram = gram_matrices(features)["relu1_1"]
    f = features["relu1_1"][0].reshape(3, -1)
    torch.testing.assert_close(gram[0], f @ f.T / (3 * 20))


def test_cluster_sizes():
    labels = np.zeros((6, 6), int)
    labels[0:2, 0:2] = 1
    labels[4:6, 3:6] = 1
    assert sorted(cluster_sizes(labels, 1).tolist()) == [4, 6]
    assert cluster_sizes(labels, 2).size == 0
