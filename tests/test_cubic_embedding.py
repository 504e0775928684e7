"""The cubic orientation embedding: symmetry invariance, the Frobenius metric, exact and
least-squares inversion, the loss, and the point groups it describes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from orix.quaternion import Rotation

from deepmat.errors import ConfigError, DataError
from deepmat.physics.cubic_embedding import (
    EMBEDDING_SIZE,
    CubicEmbeddingLoss,
    check_cubic,
    cubic_embedding,
    from_cubic_embedding,
    isotropic_embedding,
    rotation_matrix,
    supports_cubic_embedding,
)
from deepmat.physics.orientations import disorientation_angle, multiply, proper_symmetry


def random_quaternions(n: int, seed: int) -> torch.Tensor:
    q = np.random.default_rng(seed).standard_normal((n, 4))
    return torch.from_numpy(q / np.linalg.norm(q, axis=1, keepdims=True))


def tensor(q: torch.Tensor) -> torch.Tensor:
    """Σ_i n_i⊗n_i⊗n_i⊗n_i with n_i the rows of the rotation matrix, written out in full."""
    n = rotation_matrix(q)
    return torch.einsum("...ia,...ib,...ic,...id->...abcd", n, n, n, n)


def test_rotation_matrix_is_orix_convention():
    q = random_quaternions(50, 0)
    np.testing.assert_allclose(rotation_matrix(q), Rotation(q.numpy()).to_matrix(), atol=1e-12)


def test_embedding_is_the_same_for_all_24_equivalents_and_differs_otherwise():
    q = random_quaternions(200, 1)
    operators = torch.from_numpy(proper_symmetry("m-3m"))
    assert len(operators) == 24
    reference = cubic_embedding(q)
    for s in operators:
        equivalent = multiply(s.expand_as(q), q)
        torch.testing.assert_close(cubic_embedding(equivalent), reference, atol=1e-12, rtol=0)
        torch.testing.assert_close(cubic_embedding(-equivalent), reference, atol=1e-12, rtol=0)
    other = random_quaternions(200, 2)
    assert (cubic_embedding(other) - reference).norm(dim=-1).min() > 1e-3


def test_embedding_distance_is_the_frobenius_distance_of_the_tensors():
    a, b = random_quaternions(100, 3), random_quaternions(100, 4)
    embedded = (cubic_embedding(a) - cubic_embedding(b)).norm(dim=-1)
    frobenius = (tensor(a) - tensor(b)).flatten(-4).norm(dim=-1)
    torch.testing.assert_close(embedded, frobenius, atol=1e-12, rtol=0)
    assert cubic_embedding(a).shape == (100, EMBEDDING_SIZE)


def special_orientations() -> torch.Tensor:
    """The identity, the cube symmetry axes and 45° rotations: where eigenvalues tie."""
    axes = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 1, 1), (1, 2, 3)]
    angles = [0.0, 15.0, 45.0, 60.0, 90.0, 180.0]
    rotations = [
        Rotation.from_axes_angles(axis, np.radians(angle)).data[0]
        for axis, angle in itertools.product(axes, angles)
    ]
    return torch.from_numpy(np.array(rotations))


@pytest.mark.parametrize("source", ["random", "special"])
def test_inverse_recovers_the_orientation(source):
    q = random_quaternions(500, 5) if source == "random" else special_orientations()
    decoded = from_cubic_embedding(cubic_embedding(q))
    assert decoded.shape == q.shape and decoded.dtype == torch.float64
    angles = disorientation_angle(q.numpy(), decoded.numpy(), "m-3m")
    assert angles.max() < 1e-7


def test_inverse_of_a_noisy_embedding_is_its_least_squares_orientation():
    q = random_quaternions(400, 6)
    noisy = cubic_embedding(q) + 0.03 * torch.randn(400, EMBEDDING_SIZE, dtype=torch.float64)
    start = from_cubic_embedding(noisy, refine_steps=0)
    refined = from_cubic_embedding(noisy)
    distance = (cubic_embedding(refined) - noisy).norm(dim=-1)
    assert (distance <= (cubic_embedding(q) - noisy).norm(dim=-1) + 1e-9).all()
    assert (distance <= (cubic_embedding(start) - noisy).norm(dim=-1) + 1e-9).all()
    error = np.degrees(disorientation_angle(q.numpy(), refined.numpy(), "m-3m"))
    error_start = np.degrees(disorientation_angle(q.numpy(), start.numpy(), "m-3m"))
    assert error.mean() < 0.6 * error_start.mean() and error.max() < 5


def test_inverse_keeps_leading_axes():
    q = random_quaternions(6, 7).reshape(2, 3, 4)
    assert from_cubic_embedding(cubic_embedding(q)).shape == (2, 3, 4)


def test_loss_is_zero_at_the_answer_and_symmetric_in_the_target():
    q = random_quaternions(32, 8)
    loss = CubicEmbeddingLoss()
    assert loss(cubic_embedding(q).float(), q.float()).item() < 2e-6  # the clamp: 1e-6
    prediction = torch.randn(32, EMBEDDING_SIZE, requires_grad=True)
    s = torch.from_numpy(proper_symmetry("m-3m")[7])
    value = loss(prediction, q.float())
    torch.testing.assert_close(value, loss(prediction, multiply(s.expand_as(q), q).float()))
    value.backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0


def test_loss_rejects_bad_shapes_and_targets():
    loss = CubicEmbeddingLoss()
    q = random_quaternions(4, 9).float()
    with pytest.raises(DataError, match=r"\(\.\.\., 15\).*\(4, 4\) and \(4, 4\)"):
        loss(q, q)
    with pytest.raises(DataError, match="target record 2 is not a unit quaternion"):
        loss(torch.zeros(4, EMBEDDING_SIZE), q * torch.tensor([1.0, 1, 3, 1])[:, None])
    bad = q.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(DataError, match="target record 1 is not finite"):
        loss(torch.zeros(4, EMBEDDING_SIZE), bad)


@pytest.mark.parametrize(("group", "cubic"), [("m-3m", True), ("432", True), ("-43m", True)])
def test_cubic_groups_are_described(group, cubic):
    assert supports_cubic_embedding(group) is cubic
    check_cubic(group)


@pytest.mark.parametrize("group", ["m-3", "23", "6/mmm", "4/mmm", "mmm"])
def test_other_groups_are_refused_with_the_way_out(group):
    assert not supports_cubic_embedding(group)
    with pytest.raises(ConfigError, match=f"not '{group}'.*quaternion output"):
        check_cubic(group)


def test_isotropic_embedding_is_the_mean_over_random_orientations():
    mean = cubic_embedding(random_quaternions(200_000, 10)).mean(dim=0)
    torch.testing.assert_close(isotropic_embedding().double(), mean, atol=5e-3, rtol=0)
