"""Quaternion utilities, exact disorientation against orix, and the disorientation loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from orix.quaternion import Orientation, Rotation
from orix.quaternion import symmetry as orix_symmetry

from deepmat.errors import ConfigError, DataError
from deepmat.physics.orientations import (
    DisorientationLoss,
    conjugate,
    disorientation_angle,
    multiply,
    normalize,
    proper_symmetry,
    quaternion_from_matrix,
    to_rotation,
)

GROUPS = [("m-3m", orix_symmetry.Oh), ("6/mmm", orix_symmetry.D6h), ("4/mmm", orix_symmetry.D4h)]
CUBIC_MAX = math.radians(62.8)  # Mackenzie: the largest cubic disorientation is 62.80°


def random_quaternions(n: int, seed: int) -> np.ndarray:
    q = np.random.default_rng(seed).standard_normal((n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def equivalents(q: np.ndarray, point_group: str, seed: int) -> np.ndarray:
    """s·q for a random proper symmetry operator s per record, with a random sign."""
    rng = np.random.default_rng(seed)
    ops = proper_symmetry(point_group)
    sign = rng.choice([-1.0, 1.0], size=(len(q), 1))
    return sign * (Rotation(ops[rng.integers(len(ops), size=len(q))]) * Rotation(q)).data


def test_quaternion_from_matrix_inverts_orix_matrices():
    q = random_quaternions(300, 11)
    back = quaternion_from_matrix(Rotation(q).to_matrix())
    np.testing.assert_allclose(np.abs((back * q).sum(-1)), 1.0, atol=1e-12)


def test_quaternion_from_matrix_is_stable_at_half_turns():
    """A half-turn's matrix is symmetric: signs read from its antisymmetric part would come
    from rounding noise (orix's conversion got 130 of these 200 wrong)."""
    rng = np.random.default_rng(12)
    axes = rng.standard_normal((200, 3))
    q = np.concatenate([np.zeros((200, 1)), axes / np.linalg.norm(axes, axis=1, keepdims=True)], 1)
    noisy = Rotation(q).to_matrix() + 3e-16 * rng.standard_normal((200, 3, 3))
    back = quaternion_from_matrix(noisy)
    np.testing.assert_allclose(np.abs((back * q).sum(-1)), 1.0, atol=1e-12)
    assert quaternion_from_matrix(noisy.reshape(20, 10, 3, 3)).shape == (20, 10, 4)


@pytest.mark.parametrize(
    ("point_group", "size"), [("m-3m", 24), ("432", 24), ("6/mmm", 12), ("4/mmm", 8), ("-1", 1)]
)
def test_proper_symmetry_is_the_laue_rotation_group(point_group, size):
    ops = proper_symmetry(point_group)
    assert ops.shape == (size, 4)
    np.testing.assert_allclose(ops[0], [1, 0, 0, 0])
    np.testing.assert_allclose(np.linalg.norm(ops, axis=1), 1)
    products = (Rotation(ops[:, None]) * Rotation(ops[None, :])).data.reshape(-1, 4)
    assert np.abs(products @ ops.T).max(axis=1).min() == pytest.approx(1)  # closed


def test_proper_symmetry_takes_an_orix_symmetry():
    np.testing.assert_array_equal(proper_symmetry(orix_symmetry.D6h), proper_symmetry("6/mmm"))


@pytest.mark.parametrize("bad", ["m3-m", 225, None])
def test_unknown_point_group_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="point"):
        proper_symmetry(bad)


@pytest.mark.parametrize(("point_group", "orix_group"), GROUPS)
def test_disorientation_agrees_with_orix(point_group, orix_group):
    q1, q2 = random_quaternions(5000, 1), random_quaternions(5000, 2)
    ours = disorientation_angle(q1, q2, point_group)
    theirs = Orientation(q1, orix_group).angle_with(Orientation(q2, orix_group))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    as_orientations = disorientation_angle(
        Orientation(q1, orix_group), Orientation(q2, orix_group), point_group
    )
    np.testing.assert_allclose(as_orientations, ours, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("point_group", "orix_group"), GROUPS)
def test_disorientation_is_the_angle_of_the_reduced_misorientation(point_group, orix_group):
    o1 = Orientation(random_quaternions(500, 3), orix_group)
    o2 = Orientation(random_quaternions(500, 4), orix_group)
    expected = (o2 - o1).angle  # the misorientation mapped into orix's fundamental zone
    np.testing.assert_allclose(disorientation_angle(o1, o2, point_group), expected, atol=1e-6)


@pytest.mark.parametrize("point_group", ["m-3m", "6/mmm"])
def test_one_sided_minimum_equals_the_two_sided_one(point_group):
    q1, q2 = random_quaternions(300, 5), random_quaternions(300, 6)
    ops = Rotation(proper_symmetry(point_group))
    e1, e2 = (ops.outer(Rotation(q)).data for q in (q1, q2))  # (n_ops, 300, 4)
    # Re(a·b⁻¹) = ⟨a, b⟩: the best of all s_a·q2·(s_b·q1)⁻¹.
    best = np.abs(np.einsum("anq,bnq->abn", e2, e1)).max(axis=(0, 1))
    expected = 2 * np.arccos(np.clip(best, -1, 1))
    np.testing.assert_allclose(disorientation_angle(q1, q2, point_group), expected, atol=1e-6)


@pytest.mark.parametrize("point_group", ["m-3m", "6/mmm", "4/mmm"])
def test_symmetry_equivalent_orientations_have_zero_disorientation(point_group):
    q = random_quaternions(1000, 7)
    angles = disorientation_angle(q, equivalents(q, point_group, 8), point_group)
    assert np.abs(angles).max() < 1e-12


def test_random_cubic_disorientations_lie_in_the_fundamental_zone():
    q1, q2 = random_quaternions(5000, 9), random_quaternions(5000, 10)
    angles = disorientation_angle(q1, q2)
    assert angles.min() >= 0
    assert angles.max() <= CUBIC_MAX
    np.testing.assert_allclose(disorientation_angle(q2, q1), angles, atol=1e-12)
    assert math.degrees(angles.mean()) == pytest.approx(40.7, abs=1.0)  # Mackenzie mean


def test_disorientation_broadcasts_one_against_many():
    q = random_quaternions(20, 11)
    one = disorientation_angle(q[:1], q)
    assert one.shape == (20,)
    np.testing.assert_allclose(one, disorientation_angle(np.repeat(q[:1], 20, axis=0), q))


def test_orientation_of_another_point_group_is_a_config_error():
    o = Orientation(random_quaternions(3, 12), orix_symmetry.D6h)
    with pytest.raises(ConfigError, match="6/mmm"):
        disorientation_angle(o, o, "m-3m")


def test_multiply_and_conjugate_agree_with_orix():
    a, b = random_quaternions(50, 13), random_quaternions(50, 14)
    product = multiply(torch.tensor(a), torch.tensor(b)).numpy()
    np.testing.assert_allclose(product, (Rotation(a) * Rotation(b)).data, atol=1e-12)
    np.testing.assert_allclose(conjugate(torch.tensor(a)).numpy(), (~Rotation(a)).data)
    identity = multiply(torch.tensor(a), conjugate(torch.tensor(a)))
    np.testing.assert_allclose(identity.numpy(), np.tile([1.0, 0, 0, 0], (50, 1)), atol=1e-12)


def test_multiply_broadcasts():
    ops = torch.tensor(proper_symmetry())
    q = torch.tensor(random_quaternions(5, 15))
    assert multiply(ops, q[:, None]).shape == (5, 24, 4)


def test_normalize_and_to_rotation():
    q = torch.tensor(random_quaternions(6, 16)) * torch.arange(1.0, 7.0)[:, None]
    unit = normalize(q)
    np.testing.assert_allclose(torch.linalg.vector_norm(unit, dim=-1).numpy(), 1)
    rotation = to_rotation(q.requires_grad_())
    assert isinstance(rotation, Rotation)
    np.testing.assert_allclose(rotation.data, unit.numpy(), atol=1e-12)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.ones((3, 3)), "shape"),
        (np.array([[1.0, 0, 0, 0], [1, 0, 0, 0], [np.nan, 0, 0, 0]]), "record 2 is not finite"),
        (np.array([[1.0, 0, 0, 0], [0, 0, 0, 0]]), "record 1 is the zero quaternion"),
    ],
)
def test_bad_quaternions_are_data_errors(values, message):
    for name, call in (
        ("quaternions", lambda: normalize(torch.tensor(values))),
        ("quaternions", lambda: to_rotation(values)),
        ("q1", lambda: disorientation_angle(values, values)),
        ("prediction", lambda: DisorientationLoss()(torch.tensor(values), torch.tensor(values))),
    ):
        with pytest.raises(DataError, match=message) as error:
            call()
        assert str(error.value).startswith(name)


def test_loss_rejects_bad_targets_and_settings():
    p = torch.tensor(random_quaternions(4, 17))
    loss = DisorientationLoss()
    with pytest.raises(DataError, match="target record 3 is not a unit quaternion"):
        loss(p, p * torch.tensor([1.0, 1, 1, 2])[:, None])
    with pytest.raises(DataError, match="same shape"):
        loss(p, p[:2])
    with pytest.raises(DataError, match="empty"):
        loss(p[:0], p[:0])
    with pytest.raises(ConfigError, match="temperature"):
        DisorientationLoss(temperature=-1.0)


def test_loss_is_the_exact_mean_disorientation():
    p, t = random_quaternions(500, 18), random_quaternions(500, 19)
    exact = disorientation_angle(p, t, "6/mmm").mean()
    loss = DisorientationLoss("6/mmm")
    assert float(loss(3.5 * torch.tensor(p), torch.tensor(t))) == pytest.approx(exact, abs=1e-9)
    in_float32 = loss(torch.tensor(p, dtype=torch.float32), torch.tensor(t, dtype=torch.float32))
    assert in_float32.dtype == torch.float32
    assert float(in_float32) == pytest.approx(exact, abs=1e-5)


def test_soft_loss_tends_to_the_exact_one():
    p, t = torch.tensor(random_quaternions(500, 20)), torch.tensor(random_quaternions(500, 21))
    exact = disorientation_angle(p.numpy(), t.numpy()).mean()
    gaps = [float(DisorientationLoss(temperature=tau)(p, t)) - exact for tau in (0.1, 0.01, 1e-3)]
    assert gaps[0] > gaps[1] > gaps[2] >= 0
    assert gaps[2] < 1e-5


@pytest.mark.parametrize("temperature", [0.0, 0.05])
def test_loss_gradient_is_finite_at_the_answer(temperature):
    t = torch.tensor(random_quaternions(8, 22), dtype=torch.float32)
    ops = torch.tensor(proper_symmetry(), dtype=torch.float32)
    loss = DisorientationLoss(temperature=temperature)
    for start in (t, -t, multiply(ops[7], t), 2 * multiply(ops[13], t)):
        p = start.clone().requires_grad_()
        value = loss(p, t)
        value.backward()
        assert value.item() < 1e-5
        assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("temperature", [0.0, 0.1])
def test_loss_gradient_matches_finite_differences(temperature):
    p = torch.tensor(random_quaternions(6, 23), requires_grad=True)
    t = torch.tensor(random_quaternions(6, 24))
    loss = DisorientationLoss("4/mmm", temperature=temperature)
    assert torch.autograd.gradcheck(lambda x: loss(x, t), (p,))


def test_gradient_descent_reduces_the_loss():
    torch.manual_seed(0)
    t = torch.tensor(random_quaternions(16, 25), dtype=torch.float32)
    p = torch.randn(16, 4, requires_grad=True)
    loss = DisorientationLoss()
    optimiser = torch.optim.Adam([p], lr=0.05)
    history = []
    for _ in range(60):
        optimiser.zero_grad()
        value = loss(p, t)
        value.backward()
        optimiser.step()
        history.append(value.item())
    assert history[-1] < 0.1 * history[0]
    assert history[-1] < math.radians(2)
