"""Crystal orientations as unit quaternions: symmetry, exact disorientation and a training loss.

Convention. A rotation is a scalar-first unit quaternion q = (w, x, y, z), the convention of
orix, and q and −q are the same rotation. Its angle is ω(q) = 2 acos|w| = 2 atan2(|v|, |w|)
with v = (x, y, z). An orientation g is the rotation from the sample frame to the crystal frame
(orix's :class:`~orix.quaternion.Orientation`), so a crystal symmetry operator s acts on the
left: s·g is the same orientation as g. Only rotations matter here, so a point group is
represented by the proper rotations S of its Laue group (the group plus inversion): 24 for
m-3m, 12 for 6/mmm, 8 for 4/mmm, the same set for all point groups of one Laue class.

Disorientation. For two orientations g1, g2 of the same phase, every pair of equivalents gives
the misorientation s_a·Δ·s_b⁻¹ with Δ = g2·g1⁻¹, and the disorientation angle is the smallest
of their angles. The angle depends only on the real part, and Re(ab) = Re(ba), so
ω(s_a Δ s_b⁻¹) = ω(s_b⁻¹ s_a Δ); as s_b⁻¹s_a runs over the whole group S, the two-sided
minimum is a one-sided one:

    ω(g1, g2) = min_{s ∈ S} ω(s⁻¹Δ) = 2 acos max_{s ∈ S} |⟨s, Δ⟩| = 2 acos max_{s ∈ S} |⟨s·g1, g2⟩|,

since Re(s⁻¹Δ) = ⟨s, Δ⟩ and right multiplication by a unit quaternion keeps inner products;
with s ↦ s⁻¹ it is also 2 acos max_s |Re(g1⁻¹·s·g2)|. That is |S| dot products per pair
instead of |S|² products. The reduction needs both orientations to share S, i.e. one phase.
:func:`disorientation_angle` evaluates it in float64 with orix and reads the angle of the best
s⁻¹Δ as 2 atan2(|v|, |w|), which keeps full precision near zero, where acos of a dot product
close to 1 loses half the digits.

Training loss. :class:`DisorientationLoss` is the same quantity in torch for a network that
predicts orientations (the differentiable disorientation loss of Jha et al., Microsc.
Microanal. 24, 497, 2018). A prediction p (any non-zero 4-vector) is normalised to p̂, each
equivalent of the target t is taken on the side of p̂ (σ_s = ±1, the sign of ⟨p̂, s·t⟩), and
the angle is read from the chord d_s = ‖p̂ − σ_s s·t‖ rather than from the dot product:

    ω_s = 2 acos |⟨p̂, s·t⟩| = 4 asin(d_s / 2),        since d_s² = 2 − 2|⟨p̂, s·t⟩|,

    L = mean over the batch of  min_s ω_s           (temperature τ = 0, the default), or
                                Σ_s softmax(−ω/τ)_s ω_s   (τ > 0, in radians).

Both forms of ω_s are the same number, but d(acos c)/dc = −1/√(1 − c²) is infinite at c = 1,
so the acos form needs c clamped away from 1, which, at the ~1e-7 resolution of float32,
leaves a dead zone of about 0.05° where the gradient is zero and the value is noise. The chord
form has the bounded slope dω/dd = 2/√(1 − d²/4) ≤ 2√2 down to d = 0 and full float32
precision at small angles. Its only singularity is the one of ‖·‖ at d = 0 (p̂ = ±s·t, the
exact answer), so d² is clamped below at 1e-12 (ω ≥ 2e-6 rad): the gradient there is zero and
finite. Since d_s ≤ √2, asin stays well inside its domain.

The exact minimum is differentiable except where two operators tie, on the boundary of the
fundamental zone (a set of measure zero, where the loss has a ridge, not a valley, so gradient
descent moves away from it). The soft minimum with τ > 0 is a softmax-weighted mean of the ω_s:
it lies between the minimum and the mean, tends to the minimum as τ → 0 and smooths the switch
of the best operator across the zone boundary. At the optimum p̂ = s·t the other operators are
at least the smallest non-trivial symmetry rotation away (90° for cubic, 60° for hexagonal), so
for τ ≤ 0.05 rad the soft minimum is exact there to better than 1e-8 rad.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from orix.crystal_map import Phase
from orix.quaternion import Orientation, Rotation
from orix.quaternion.symmetry import C1, Symmetry
from torch import nn

from deepmat.errors import ConfigError, DataError

_MIN_NORM = 1e-12  # a quaternion shorter than this has no direction: it is rejected as zero
_MIN_CHORD2 = 1e-12  # clamp of the squared chord, so the loss gradient is finite at d = 0
_UNIT_TOLERANCE = 1e-3  # targets must be unit quaternions to this tolerance on the norm


def _check_shape(shape: tuple[int, ...], name: str) -> None:
    if len(shape) == 0 or shape[-1] != 4:
        raise DataError(
            f"{name} must be quaternions (w, x, y, z) of shape (..., 4), got shape {tuple(shape)}"
        )


def _record(mask: np.ndarray) -> str:
    """The position of the first True entry, as 'record i' or 'record (i, j, ...)'."""
    index = tuple(int(i) for i in np.argwhere(mask)[0])
    return f"record {index[0]}" if len(index) == 1 else f"record {index}"


def _check_values(finite: np.ndarray, norm: np.ndarray, name: str) -> None:
    """Raise DataError naming the first quaternion that is not finite or is (close to) zero."""
    if not finite.all():
        raise DataError(f"{name} {_record(~finite)} is not finite (NaN or inf)")
    if not (norm > _MIN_NORM).all():
        raise DataError(
            f"{name} {_record(norm <= _MIN_NORM)} is the zero quaternion, which is no rotation"
        )


def _checked_tensor(q: torch.Tensor, name: str) -> torch.Tensor:
    """Norms of a (..., 4) tensor after checking its shape and values."""
    if not isinstance(q, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor, got {type(q).__name__}")
    _check_shape(q.shape, name)
    norm = torch.linalg.vector_norm(q, dim=-1)
    finite = torch.isfinite(q).all(dim=-1)
    if not bool(finite.all()) or not bool((norm > _MIN_NORM).all()):
        _check_values(finite.cpu().numpy(), norm.detach().cpu().numpy(), name)
    return norm


def _checked_array(q: np.ndarray | Rotation | torch.Tensor, name: str) -> np.ndarray:
    """A float64 (..., 4) array of unit quaternions from an array, tensor or orix Rotation."""
    if isinstance(q, Rotation):
        q = q.data
    elif isinstance(q, torch.Tensor):
        q = q.detach().cpu().numpy()
    q = np.asarray(q, dtype=np.float64)
    _check_shape(q.shape, name)
    norm = np.linalg.norm(q, axis=-1)
    _check_values(np.isfinite(q).all(axis=-1), norm, name)
    return q / norm[..., None]


def unit_target(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Target quaternions (..., 4) in ``like``'s dtype and device, checked to be finite, unit
    (to 1e-3 on the norm) and non-empty; DataError naming the first bad record otherwise."""
    norm = _checked_tensor(target, "target")
    if target.numel() == 0:
        raise DataError("target is empty: no orientations to compare")
    off_unit = (norm - 1).abs() > _UNIT_TOLERANCE
    if bool(off_unit.any()):
        raise DataError(
            f"target {_record(off_unit.cpu().numpy())} is not a unit quaternion "
            f"(norm {float(norm[off_unit][0]):.6g})"
        )
    return (target / norm.unsqueeze(-1)).to(like)


def normalize(q: torch.Tensor) -> torch.Tensor:
    """Quaternions (..., 4) scaled to unit length; DataError for NaN, inf or zero ones."""
    return _normalized(q, "quaternions")


def _normalized(q: torch.Tensor, name: str) -> torch.Tensor:
    return q / _checked_tensor(q, name).unsqueeze(-1)


def multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a·b of quaternions (..., 4), broadcasting over the leading axes."""
    _check_shape(a.shape, "a")
    _check_shape(b.shape, "b")
    w1, x1, y1, z1 = a.unbind(-1)
    w2, x2, y2, z2 = b.unbind(-1)
    return torch.stack(
        (
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ),
        dim=-1,
    )


def conjugate(q: torch.Tensor) -> torch.Tensor:
    """The conjugate (w, −x, −y, −z): the inverse rotation of a unit quaternion."""
    _check_shape(q.shape, "quaternions")
    return torch.cat((q[..., :1], -q[..., 1:]), dim=-1)


def to_rotation(q: np.ndarray | torch.Tensor) -> Rotation:
    """An orix Rotation from quaternions (..., 4), e.g. network outputs, after checking them.

    Tensors are detached and copied to the CPU; non-unit quaternions are normalised. Unlike
    ``Rotation(q)``, which turns a zero quaternion into NaN silently, a wrong shape, NaN, inf
    or zero quaternion raises DataError naming the record.
    """
    return Rotation(_checked_array(q, "quaternions"))


def quaternion_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4), scalar first, of rotation matrices (..., 3, 3) in orix's
    convention, well conditioned at every rotation.

    At a half-turn R is symmetric, so a conversion that takes the signs of q_x, q_y, q_z from
    the antisymmetric part of R (orix's ``Rotation.from_matrix``, after Rowenhorst et al.)
    reads them from rounding noise and can return another half-turn. SciPy's conversion
    computes the largest of q_w², q_x², q_y², q_z² from the diagonal and the other components
    from sums of off-diagonal pairs divided by it, which has no such branch.
    """
    from scipy.spatial.transform import Rotation as ScipyRotation

    matrix = np.asarray(matrix, dtype=np.float64)
    xyzw = ScipyRotation.from_matrix(matrix.reshape(-1, 3, 3)).as_quat()
    return np.roll(xyzw, 1, axis=-1).reshape(*matrix.shape[:-2], 4)


def point_group_symmetry(point_group: str | Symmetry) -> Symmetry:
    """The orix point group of a Hermann–Mauguin name such as 'm-3m', '6/mmm' or '4/mmm'."""
    if isinstance(point_group, Symmetry):
        return point_group
    if not isinstance(point_group, str):
        raise ConfigError(
            f"point_group must be a name such as 'm-3m' or an orix Symmetry, "
            f"got {type(point_group).__name__}"
        )
    try:
        return Phase(point_group=point_group).point_group
    except ValueError:
        raise ConfigError(
            f"{point_group!r}: a point group must name a crystallographic point group known to "
            "orix, a Hermann–Mauguin name such as 'm-3m', '432', '6/mmm', '4/mmm' or 'mmm'"
        ) from None


def proper_symmetry(point_group: str | Symmetry = "m-3m") -> np.ndarray:
    """The proper rotations of a point group's Laue group, as float64 (n, 4) quaternions.

    These are the operators that leave an orientation unchanged: 24 for the cubic m-3m (and
    432, -43m), 12 for 6/mmm, 8 for 4/mmm. The identity comes first.
    """
    return np.array(point_group_symmetry(point_group).laue_proper_subgroup.data, dtype=np.float64)


def _check_orientation_symmetry(q: object, operators: Symmetry, name: str) -> None:
    """ConfigError when an orix Orientation carries a symmetry other than the one asked for."""
    if isinstance(q, Orientation) and q.symmetry.laue_proper_subgroup.name not in (
        C1.name,
        operators.name,
    ):
        raise ConfigError(
            f"{name} has point group {q.symmetry.name!r}, whose rotations "
            f"({q.symmetry.laue_proper_subgroup.name}) differ from those of the point group "
            f"asked for ({operators.name})"
        )


def disorientation_angle(
    q1: np.ndarray | Rotation,
    q2: np.ndarray | Rotation,
    point_group: str | Symmetry = "m-3m",
) -> np.ndarray:
    """Exact disorientation angles (radians, float64) between two sets of orientations.

    ``q1`` and ``q2`` are quaternions (..., 4) or orix Rotations/Orientations of one phase,
    with broadcastable shapes; the result has their broadcast shape. The angle is
    min_s ω(s⁻¹·q2·q1⁻¹) over the proper rotations s of the Laue group (see the module
    docstring for why the one-sided minimum is the two-sided one), and lies in [0, π].
    """
    operators = point_group_symmetry(point_group).laue_proper_subgroup
    _check_orientation_symmetry(q1, operators, "q1")
    _check_orientation_symmetry(q2, operators, "q2")
    a, b = _checked_array(q1, "q1"), _checked_array(q2, "q2")
    try:
        a, b = np.broadcast_arrays(a, b)
    except ValueError:
        raise DataError(
            f"q1 and q2 must have broadcastable shapes, got {a.shape[:-1]} and {b.shape[:-1]}"
        ) from None
    delta = Rotation(b) * ~Rotation(a)
    best = np.argmax(np.abs(delta.dot_outer(operators)), axis=-1)
    reduced = (~Rotation(operators.data[best]) * delta).data
    return 2 * np.arctan2(np.linalg.norm(reduced[..., 1:], axis=-1), np.abs(reduced[..., 0]))


class DisorientationLoss(nn.Module):
    """Mean symmetry-aware disorientation (radians) between predicted and target orientations.

    ``forward(prediction, target)`` takes predictions of any non-zero 4-vectors (normalised
    here) and unit target quaternions, both of shape (..., 4), and returns the mean over all
    records of min_s 4 asin(‖p̂ − σ_s s·t‖ / 2), or its softmax-weighted version for
    ``temperature`` > 0 (radians); see the module docstring for the formula and the clamp.
    :meth:`angles` gives the per-record values. It is computed in the predictions' dtype
    (float32 at least). Inputs are checked on every call (one device synchronisation): a
    wrong shape, NaN, inf, zero or non-unit target raises DataError naming the record.
    """

    operators: torch.Tensor

    def __init__(self, point_group: str | Symmetry = "m-3m", temperature: float = 0.0) -> None:
        super().__init__()
        if not (math.isfinite(temperature) and temperature >= 0):
            raise ConfigError(
                f"temperature must be a finite number >= 0 (radians), got {temperature}"
            )
        self.temperature = float(temperature)
        self.register_buffer("operators", torch.from_numpy(proper_symmetry(point_group)))

    def angles(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-record (soft) disorientation angles in radians, of shape prediction.shape[:-1]."""
        if not isinstance(prediction, torch.Tensor):
            raise DataError(f"prediction must be a torch.Tensor, got {type(prediction).__name__}")
        dtype = torch.promote_types(prediction.dtype, torch.float32)
        p = _normalized(prediction.to(dtype), "prediction")
        if target.shape != prediction.shape:
            raise DataError(
                f"prediction and target must have the same shape, got {tuple(prediction.shape)}"
                f" and {tuple(target.shape)}"
            )
        t = unit_target(target, p)
        equivalents = multiply(self.operators.to(p), t.unsqueeze(-2))  # (..., n, 4)
        p = p.unsqueeze(-2)
        same_side = (p * equivalents).sum(dim=-1, keepdim=True) >= 0
        chord2 = (p - torch.where(same_side, equivalents, -equivalents)).square().sum(dim=-1)
        angles = 4 * torch.asin(chord2.clamp_min(_MIN_CHORD2).sqrt() / 2)
        if self.temperature == 0:
            return angles.amin(dim=-1)
        weights = torch.softmax(-angles / self.temperature, dim=-1)
        return (weights * angles).sum(dim=-1)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.angles(prediction, target).mean()
