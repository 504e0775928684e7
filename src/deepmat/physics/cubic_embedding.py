"""A continuous, symmetry-invariant coordinate for cubic orientations, and its inverse.

Why. A network that outputs a quaternion and is trained with the minimum over symmetry
equivalents (:class:`~deepmat.physics.orientations.DisorientationLoss`) must pick one of the
24 equivalents of every orientation, and no continuous choice exists over the whole of
SO(3)/O: somewhere the network has to jump between equivalents, and patterns near those jumps
are answered with an average of two far-apart quaternions. A target that is the same for all
equivalents and continuous in the orientation removes the jump: the network regresses it with
its distance to the true one, and the orientation is read back from it.

The coordinate. An orientation g (sample → crystal frame, rotation matrix R) puts the three
cubic axes at the sample-frame unit vectors n_i = Rᵀe_i, the rows of R. A symmetry operator s
acts as s·g, i.e. R ↦ R_s R with R_s a signed permutation matrix, which permutes the n_i and
flips their signs. The fourth-order tensor

.. math::

    T(g) = \\sum_{i=1}^{3} n_i \\otimes n_i \\otimes n_i \\otimes n_i

is unchanged by both, and it determines g up to the 24 proper rotations of 432: it is the
fourth-order tensor of cubic elasticity's anisotropic part, rotated. T is totally symmetric,
so it has 15 distinct components, one per monomial n_x^a n_y^b n_z^c with a + b + c = 4;
:func:`cubic_embedding` stores each times √(4!/(a! b! c!)), the square root of the number of
index orders it stands for, so that the Euclidean distance of two embeddings is the Frobenius
distance ‖T(g₁) − T(g₂)‖ of the tensors. For small rotations that distance is proportional to
the rotation angle (with a factor between 2 and 4 that depends on the axis).

The inverse. Contracting T with a symmetric 3×3 matrix G gives
A = T : G = Σ_i (n_iᵀ G n_i) n_i n_iᵀ, whose eigenvectors are the n_i when the three
numbers n_iᵀ G n_i differ. :func:`from_cubic_embedding` tries three fixed G and keeps, per
record, the one with the widest eigenvalue gap, assembles the rows n_i into a proper rotation
(flipping one row if the determinant is −1, which is a symmetry), converts it to a quaternion
and then refines it by
Gauss–Newton steps on ‖T(exp(δ)·g) − v‖² over the rotation vector δ, so that a predicted
v that is not exactly an embedding is read as the orientation whose embedding is closest.
The Jacobian of the embedding in δ has all three singular values equal to 2√2 (T moves
isometrically with the rotation), so from a start in the basin the steps converge
quadratically to machine precision.

The matrix-to-quaternion conversion must not guess signs
(:func:`~deepmat.physics.orientations.quaternion_from_matrix`). The rows come in whatever order
and signs the eigensolver returns, so for a half-turn g they may form another half-turn, whose
matrix is symmetric; orix's conversion then takes the signs of q_x, q_y, q_z from rounding
noise (with the matrix perturbed at 3e-16 it returned a wrong half-turn in 130 of 200
trials), and five Gauss–Newton steps from that far start ended 3e-6 rad off on one CPU.

Only groups whose proper rotations are those of 432 (m-3m, 432, -43m) are described: the
tetrahedral groups (23, m-3) have half as many rotations, and T cannot tell their two
cosets apart. Other groups use the quaternion output with the disorientation loss.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from orix.quaternion.symmetry import Symmetry
from torch import nn

from deepmat.errors import ConfigError, DataError
from deepmat.physics.orientations import (
    multiply,
    point_group_symmetry,
    quaternion_from_matrix,
    unit_target,
)

EMBEDDING_SIZE = 15
CUBIC_ROTATIONS = "432"
_EXPONENTS = [(a, b, 4 - a - b) for a in range(5) for b in range(5 - a)]
_WEIGHTS = [
    math.sqrt(math.factorial(4) / (math.factorial(a) * math.factorial(b) * math.factorial(c)))
    for a, b, c in _EXPONENTS
]
# Three generic symmetric matrices for the spectral start (see the module docstring).
_PROBES = np.array(
    [
        [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]],
        [[0.3, 1.0, -0.5], [1.0, -1.2, 0.7], [-0.5, 0.7, 2.1]],
        [[1.5, -0.4, 0.9], [-0.4, 0.2, -1.1], [0.9, -1.1, -0.8]],
    ]
)
_MIN_SQUARED = 1e-12  # clamp of the loss's squared distance: a finite gradient at the answer
_STEP = 1e-6  # rotation angle (radians) of the finite differences in the Gauss-Newton steps


def supports_cubic_embedding(point_group: str | Symmetry) -> bool:
    """Whether orientations of ``point_group`` are described by the cubic embedding (their
    proper rotations are the 24 of 432)."""
    return point_group_symmetry(point_group).laue_proper_subgroup.name == CUBIC_ROTATIONS


def check_cubic(point_group: str | Symmetry) -> None:
    """ConfigError unless ``point_group`` has the 24 proper rotations of 432."""
    if not supports_cubic_embedding(point_group):
        name = point_group if isinstance(point_group, str) else point_group.name
        raise ConfigError(
            f"the cubic embedding describes point groups with the 24 proper rotations of 432 "
            f"(m-3m, 432, -43m), not {name!r}; use the quaternion output for it"
        )


def isotropic_embedding() -> torch.Tensor:
    """The mean embedding over uniformly random orientations (float32): 3⟨n⊗n⊗n⊗n⟩ for a
    uniform unit vector n, whose components are 3/5 for n_x⁴ and 1/5 for n_x²n_y² (times
    their weights) and zero for odd powers."""
    means = {(4, 0, 0): 3 / 5, (0, 4, 0): 3 / 5, (0, 0, 4): 3 / 5}
    means |= {(2, 2, 0): 1 / 5, (2, 0, 2): 1 / 5, (0, 2, 2): 1 / 5}
    values = [means.get(e, 0.0) * w for e, w in zip(_EXPONENTS, _WEIGHTS, strict=True)]
    return torch.tensor(values, dtype=torch.float32)


def rotation_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices of (..., 4) unit quaternions (orix's convention)."""
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def cubic_embedding(q: torch.Tensor) -> torch.Tensor:
    """The (..., 15) embedding of (..., 4) unit quaternions: the weighted distinct components
    of Σ_i n_i⊗n_i⊗n_i⊗n_i, n_i the rows of the rotation matrix (module docstring)."""
    n = rotation_matrix(q)
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    monomials = [x**a * y**b * z**c for a, b, c in _EXPONENTS]
    return torch.stack(monomials, dim=-1).sum(dim=-2) * q.new_tensor(_WEIGHTS)


def from_cubic_embedding(v: torch.Tensor, refine_steps: int = 5) -> torch.Tensor:
    """(..., 4) unit quaternions (float64) whose embeddings are closest to ``v`` (..., 15).

    A spectral start, then ``refine_steps`` Gauss–Newton steps (module docstring). Any of the
    24 equivalent quaternions may come back; reduce them with orix to compare.
    """
    v = v.detach().to(torch.float64).cpu()
    shape = v.shape[:-1]
    v = v.reshape(-1, EMBEDDING_SIZE)
    q = _spectral_start(v)
    for _ in range(refine_steps):
        q = _gauss_newton_step(q, v)
    return q.reshape(*shape, 4)


def _full_tensor(v: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3, 3, 3) symmetric tensors from (n, 15) weighted components."""
    components = v / v.new_tensor(_WEIGHTS)
    lookup = np.empty((3, 3, 3, 3), dtype=np.int64)
    for index in np.ndindex(3, 3, 3, 3):
        lookup[index] = _EXPONENTS.index(tuple(index.count(axis) for axis in range(3)))
    return components[:, torch.from_numpy(lookup)]


def _spectral_start(v: torch.Tensor) -> torch.Tensor:
    tensor = _full_tensor(v)
    probes = torch.from_numpy(_PROBES)
    values, vectors = torch.linalg.eigh(torch.einsum("nabcd,pcd->npab", tensor, probes))
    gaps = torch.minimum(values[..., 1] - values[..., 0], values[..., 2] - values[..., 1])
    best = gaps.argmax(dim=1)
    rows = vectors[torch.arange(len(v)), best].transpose(-1, -2).clone()
    rows[:, 2] *= torch.linalg.det(rows).sign().unsqueeze(-1)
    return torch.from_numpy(quaternion_from_matrix(rows.numpy()))


def _gauss_newton_step(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One Gauss–Newton step over the rotation vector δ of exp(δ)·q, with a central
    finite-difference Jacobian (float64)."""
    residual = cubic_embedding(q) - v
    columns = []
    for axis in range(3):
        delta = torch.zeros(3, dtype=q.dtype)
        delta[axis] = _STEP
        ahead = cubic_embedding(_rotate(q, delta.expand(len(q), 3)))
        behind = cubic_embedding(_rotate(q, -delta.expand(len(q), 3)))
        columns.append((ahead - behind) / (2 * _STEP))
    jacobian = torch.stack(columns, dim=-1)  # (n, 15, 3)
    normal = jacobian.transpose(-1, -2) @ jacobian
    gradient = (jacobian.transpose(-1, -2) @ residual.unsqueeze(-1)).squeeze(-1)
    step = torch.linalg.lstsq(normal, -gradient.unsqueeze(-1)).solution.squeeze(-1)
    return _rotate(q, step)


def _rotate(q: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """exp(δ)·q for rotation vectors δ (n, 3), renormalised."""
    angle = delta.norm(dim=-1, keepdim=True)
    axis = delta / angle.clamp_min(1e-300)
    small = torch.cat([torch.cos(angle / 2), axis * torch.sin(angle / 2)], dim=-1)
    out = multiply(small, q)
    return out / out.norm(dim=-1, keepdim=True)


class CubicEmbeddingLoss(nn.Module):
    """Mean distance between predicted embeddings (..., 15) and the embeddings of target unit
    quaternions (..., 4): the Frobenius distance of the two fourth-order tensors, the same for
    all 24 equivalents of the target and, for small errors, proportional to the rotation angle.

    The distance, not its square: like the disorientation loss, it weighs every record's
    error linearly, which is what a mean disorientation scores (trained alike on 160k nickel
    patterns, the distance gave a validation mean disorientation of 1.05°, its square 1.73°).
    The squared distance is clamped below at 1e-12 so the gradient stays finite at the
    answer.
    """

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not isinstance(prediction, torch.Tensor):
            raise DataError(f"prediction must be a torch.Tensor, got {type(prediction).__name__}")
        if prediction.shape[-1:] != (EMBEDDING_SIZE,) or prediction.shape[:-1] != target.shape[:-1]:
            raise DataError(
                f"prediction must be (..., {EMBEDDING_SIZE}) embeddings of (..., 4) targets, "
                f"got shapes {tuple(prediction.shape)} and {tuple(target.shape)}"
            )
        dtype = torch.promote_types(prediction.dtype, torch.float32)
        p = prediction.to(dtype)
        squared = (p - cubic_embedding(unit_target(target, p))).square().sum(dim=-1)
        return squared.clamp_min(_MIN_SQUARED).sqrt().mean()
