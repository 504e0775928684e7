"""Periodic small-strain linear elasticity on voxel grids: a Fourier–Galerkin FFT solver.

Notation. Strain and stress are Mandel 6-vectors (ε11, ε22, ε33, √2ε23, √2ε13, √2ε12), so the
Frobenius product ε:σ is the dot product and a stiffness is a symmetric 6×6 matrix. Fields
have shape (6, n1, n2, n3) on a periodic grid of unit cubic voxels; a 2-D image is passed as
(n1, n2, 1). Each voxel holds one isotropic phase, C:ε = λ tr(ε) I + 2μ ε.

Problem. Given the macroscopic strain E, find the periodic fluctuation ε̃ (the symmetrised
gradient of a periodic displacement) such that σ = C:(E + ε̃) is in equilibrium, div σ = 0.

Compatibility projection. With the reference medium C0 = identity, Γ maps a symmetric τ̂(ξ)
to its compatible part; for ξ ≠ 0, with q = ξ/|ξ| and v = τ̂ q,

    Γ(τ̂) = q⊗v + v⊗q − (q·v) q⊗q,

and Γ = 0 at ξ = 0. Γ is the orthogonal projection onto symmetrised gradients, so a strain
ε̃ is compatible when Γ(ε̃) = ε̃ and σ is in equilibrium when Γ(σ) = 0.

Solver (Zeman et al. 2010; Vondřejc et al. 2014). Equilibrium of the fluctuation reads

    Γ(C:ε̃) = −Γ(C:E).

On compatible fields the operator A(x) = Γ(C:x) is symmetric and positive definite (⟨y, Γ(C:x)⟩
= ⟨y, C:x⟩ for compatible x, y), and the right-hand side is compatible, so conjugate gradients
started from ε̃ = 0 stay on compatible fields and converge at a rate set by the phase contrast
through √cond(C), not cond(C) as the basic Moulinec–Suquet fixed-point scheme does. The
stopping test is ‖Γ(σ)‖ / ‖Γ(C:E)‖ < tol: the relative out-of-equilibrium part of the stress.

Nyquist frequencies. On an even axis the Nyquist frequency −n/2 is its own mirror image, so a
wave vector with a Nyquist component and another component that is neither 0 nor Nyquist has
a conjugate partner whose q is not ±q: no single Γ keeps real fields real there. Γ is set to
zero at exactly those "mixed" wave vectors, which keeps it an exact orthogonal projection of
real fields (and CG's operator symmetric), while wave vectors whose components are all 0 or
Nyquist, such as (n1/2, 0, 0), keep the full Γ, so laminates stay exact on any grid. The price
is that equilibrium is not enforced at the mixed modes: odd grid sizes avoid the issue. (Keeping
the plain Γ there instead is not a projection of real fields: at contrast 50 on 16³, CG then
needs ~5× the iterations or stalls, and moduli drift by up to several percent.)
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from deepmat.errors import DataError

SQRT2 = math.sqrt(2.0)
# Mandel index -> tensor indices (i, j).
_MANDEL_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
_MANDEL_WEIGHTS = np.array([1.0, 1.0, 1.0, SQRT2, SQRT2, SQRT2])
_IDENTITY_2 = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])  # the second-order identity, Mandel


@dataclass(frozen=True)
class IsotropicPhase:
    """An isotropic linear-elastic phase given by Young's modulus and Poisson's ratio."""

    youngs_modulus: float
    poisson_ratio: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.youngs_modulus) and self.youngs_modulus > 0):
            raise DataError(
                f"youngs_modulus must be positive and finite, got {self.youngs_modulus}"
            )
        if not -1.0 < self.poisson_ratio < 0.5:
            raise DataError(
                f"poisson_ratio must lie in the open interval (-1, 0.5), got {self.poisson_ratio}"
            )

    @property
    def lam(self) -> float:
        """Lamé's first parameter λ = Eν / ((1 + ν)(1 − 2ν))."""
        nu = self.poisson_ratio
        return self.youngs_modulus * nu / ((1 + nu) * (1 - 2 * nu))

    @property
    def mu(self) -> float:
        """Shear modulus μ = E / (2(1 + ν))."""
        return self.youngs_modulus / (2 * (1 + self.poisson_ratio))

    @property
    def bulk(self) -> float:
        """Bulk modulus K = λ + 2μ/3."""
        return self.lam + 2 * self.mu / 3

    def stiffness(self) -> np.ndarray:
        """The 6×6 Mandel stiffness λ I⊗I + 2μ 𝕀."""
        return self.lam * np.outer(_IDENTITY_2, _IDENTITY_2) + 2 * self.mu * np.eye(6)


@dataclass
class SolveReport:
    """How one CG solve went: iterations, final relative residual ‖Γ(σ)‖/‖Γ(C:E)‖, time."""

    iterations: int
    residual: float
    converged: bool
    seconds: float


@dataclass
class ElasticField:
    """Solution for one macroscopic strain: fields of shape (6, *grid), Mandel notation."""

    strain: np.ndarray
    stress: np.ndarray
    mean_stress: np.ndarray
    report: SolveReport


def mandel_to_voigt_stiffness(stiffness: np.ndarray) -> np.ndarray:
    """The Voigt-notation matrix (engineering shear strains) of a 6×6 Mandel stiffness."""
    stiffness = np.asarray(stiffness, dtype=np.float64)
    return stiffness / np.outer(_MANDEL_WEIGHTS, _MANDEL_WEIGHTS)


def isotropic_moduli(stiffness: np.ndarray) -> tuple[float, float]:
    """(bulk, shear) moduli of the nearest isotropic stiffness (Frobenius) to a Mandel 6×6.

    For an anisotropic effective stiffness this is the usual way to compare with isotropic
    estimates and bounds: K = (I:C:I)/9, G = (tr C − (I:C:I)/3)/10.
    """
    stiffness = np.asarray(stiffness, dtype=np.float64)
    hydrostatic = float(_IDENTITY_2 @ stiffness @ _IDENTITY_2)
    return hydrostatic / 9, (float(np.trace(stiffness)) - hydrostatic / 3) / 10


def hashin_shtrikman_bounds(
    phases: Sequence[IsotropicPhase], fractions: Sequence[float]
) -> dict[str, float]:
    """Hashin–Shtrikman bounds on the bulk and shear moduli of an isotropic 3-D composite.

    Walpole's form, which holds for any number of isotropic phases, well-ordered or not:
    K(G0) = [Σ f/(K + 4G0/3)]⁻¹ − 4G0/3 and G(ζ) = [Σ f/(G + ζ)]⁻¹ − ζ with
    ζ = G0 (9K0 + 8G0) / (6(K0 + 2G0)); the lower bounds use the smallest K0 and G0 of the
    phases, the upper bounds the largest. Keys: bulk_lower, bulk_upper, shear_lower,
    shear_upper.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (len(phases),) or np.any(f < 0) or not math.isclose(f.sum(), 1, abs_tol=1e-9):
        raise DataError(
            f"fractions must be {len(phases)} non-negative numbers summing to 1, got {fractions}"
        )
    bulk = np.array([p.bulk for p in phases])
    shear = np.array([p.mu for p in phases])

    def bulk_bound(g0: float) -> float:
        return 1 / np.sum(f / (bulk + 4 * g0 / 3)) - 4 * g0 / 3

    def shear_bound(k0: float, g0: float) -> float:
        zeta = g0 * (9 * k0 + 8 * g0) / (6 * (k0 + 2 * g0))
        return 1 / np.sum(f / (shear + zeta)) - zeta

    return {
        "bulk_lower": float(bulk_bound(shear.min())),
        "bulk_upper": float(bulk_bound(shear.max())),
        "shear_lower": float(shear_bound(bulk.min(), shear.min())),
        "shear_upper": float(shear_bound(bulk.max(), shear.max())),
    }


def voigt_stiffness(phases: Sequence[IsotropicPhase], fractions: np.ndarray) -> np.ndarray:
    """The Voigt bound Σ f_i C_i: the volume average of the phases' Mandel stiffnesses.

    ``fractions`` has shape (..., len(phases)) and sums to 1 along its last axis; the
    result has shape (..., 6, 6). Uniform strain in every phase gives it, so the effective
    stiffness lies below it: εᵀ C_eff ε ≤ εᵀ C_V ε for every ε, C11 included.
    """
    f = _check_fractions(phases, fractions)
    stiffness = np.stack([p.stiffness() for p in phases])
    return np.einsum("...p,pij->...ij", f, stiffness)


def reuss_stiffness(phases: Sequence[IsotropicPhase], fractions: np.ndarray) -> np.ndarray:
    """The Reuss bound (Σ f_i C_i⁻¹)⁻¹: the inverse of the volume-averaged compliance.

    Shapes as in :func:`voigt_stiffness`. Uniform stress in every phase gives it, so the
    effective stiffness lies above it: εᵀ C_eff ε ≥ εᵀ C_R ε, C11 included. Its C11 is
    the (0, 0) entry of that inverse, not the harmonic mean of the phases' C11.
    """
    f = _check_fractions(phases, fractions)
    compliance = np.stack([np.linalg.inv(p.stiffness()) for p in phases])
    return np.linalg.inv(np.einsum("...p,pij->...ij", f, compliance))


def _check_fractions(phases: Sequence[IsotropicPhase], fractions: np.ndarray) -> np.ndarray:
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim == 0 or f.shape[-1] != len(phases):
        raise DataError(
            f"fractions must have shape (..., {len(phases)}) for {len(phases)} phases, "
            f"got shape {f.shape}"
        )
    if not np.all(np.isfinite(f)) or np.any(f < 0) or not np.allclose(f.sum(-1), 1, atol=1e-9):
        raise DataError("fractions must be non-negative and sum to 1 over the phases")
    return f


def solve(
    phases_map: np.ndarray,
    phases: Sequence[IsotropicPhase],
    macro_strain: np.ndarray | Sequence[float],
    tol: float = 1e-6,
    max_iter: int = 1000,
    device: str | torch.device = "cpu",
) -> ElasticField:
    """Strain and stress fields of a periodic voxel microstructure under a mean strain.

    ``phases_map`` is an integer (or boolean) array of shape (n1, n2, n3) holding the index
    into ``phases`` of each voxel; ``macro_strain`` is a Mandel 6-vector or a symmetric 3×3
    matrix. CG stops at relative residual ``tol`` or after ``max_iter`` iterations (with a
    RuntimeWarning; ``report.converged`` says which).
    """
    macro = _macro_mandel(macro_strain)
    return _Problem(phases_map, phases, device).solve(macro, tol, max_iter)


def effective_stiffness(
    phases_map: np.ndarray,
    phases: Sequence[IsotropicPhase],
    tol: float = 1e-6,
    max_iter: int = 1000,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, list[SolveReport]]:
    """The 6×6 Mandel effective stiffness and the six solves' reports.

    Column j is the mean stress under the unit Mandel strain e_j, so C_eff maps mean strain
    to mean stress in the same notation as :meth:`IsotropicPhase.stiffness`.
    """
    problem = _Problem(phases_map, phases, device)
    columns, reports = [], []
    for load in np.eye(6):
        field = problem.solve(load, tol, max_iter)
        columns.append(field.mean_stress)
        reports.append(field.report)
    return np.stack(columns, axis=1), reports


@dataclass
class PartialSolution:
    """CG stopped after a fixed number of iterations: the strain field, (6, *grid), and the
    mean stress after each iteration, (iterations, 6); ``report.converged`` is True when the
    residual fell below ``PARTIAL_TOL`` earlier (the rows after that repeat the last one)."""

    strain: np.ndarray
    mean_stress: np.ndarray
    report: SolveReport


PARTIAL_TOL = 1e-10


def partial_solve(
    phases_map: np.ndarray,
    phases: Sequence[IsotropicPhase],
    macro_strain: np.ndarray | Sequence[float],
    iterations: int,
    device: str | torch.device = "cpu",
) -> PartialSolution:
    """The solver's estimate after ``iterations`` CG iterations from ε̃ = 0.

    The first iterates already hold most of the answer at a small fraction of a converged
    solve's cost (at contrast 10 four iterations leave about 2 % of the strain), which makes
    them the physics-informed inputs of the hybrid surrogates: a model learns the correction
    from this estimate to the converged field or stiffness.
    """
    if not isinstance(iterations, int | np.integer) or iterations < 1:
        raise DataError(f"iterations must be a positive integer, got {iterations!r}")
    start = time.perf_counter()
    problem = _Problem(phases_map, phases, device)
    steps = problem.iterate(_macro_mandel(macro_strain))
    macro_field, fluctuation, relative = next(steps)
    history = []
    while len(history) < iterations:
        if relative >= PARTIAL_TOL:
            _, _, relative = next(steps)
        history.append(problem.stress(macro_field + fluctuation).mean(dim=(1, 2, 3)))
    field = problem.field(
        macro_field + fluctuation, iterations, relative, relative < PARTIAL_TOL, start
    )
    return PartialSolution(field.strain, torch.stack(history).cpu().numpy(), field.report)


def _macro_mandel(macro_strain: np.ndarray | Sequence[float]) -> np.ndarray:
    strain = np.asarray(macro_strain, dtype=np.float64)
    if strain.shape == (3, 3):
        scale = np.abs(strain).max()
        if not np.allclose(strain, strain.T, rtol=0, atol=1e-12 * scale):
            raise DataError(f"macro_strain as a 3x3 matrix must be symmetric, got\n{strain}")
        return np.array([strain[i, j] for i, j in _MANDEL_PAIRS]) * _MANDEL_WEIGHTS
    if strain.shape != (6,):
        raise DataError(
            "macro_strain must be a Mandel 6-vector or a symmetric 3x3 matrix, "
            f"got shape {strain.shape}"
        )
    if not np.all(np.isfinite(strain)):
        raise DataError(f"macro_strain must be finite, got {strain}")
    return strain


def _check_phases_map(phases_map: np.ndarray, n_phases: int) -> np.ndarray:
    phases_map = np.asarray(phases_map)
    if phases_map.dtype != np.bool_ and not np.issubdtype(phases_map.dtype, np.integer):
        raise DataError(
            f"phases_map must hold integer phase ids, got dtype {phases_map.dtype} "
            "(convert with .astype(int) if the values are whole numbers)"
        )
    if phases_map.ndim != 3 or phases_map.size == 0:
        raise DataError(
            f"phases_map must be a non-empty 3-D grid (n1, n2, n3), got shape {phases_map.shape}; "
            "pass a 2-D image as image[:, :, None]"
        )
    low, high = int(phases_map.min()), int(phases_map.max())
    if low < 0 or high >= n_phases:
        bad = low if low < 0 else high
        raise DataError(
            f"phases_map holds phase id {bad}, outside 0..{n_phases - 1} for {n_phases} phases"
        )
    return phases_map.astype(np.int64)


def _unit_wave_vectors(shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """q = ξ/|ξ| on the rfftn half-spectrum, shape (3, n1, n2, n3//2 + 1); zero where Γ is.

    Γ is quadratic in q, so q = 0 switches it off: at ξ = 0 and at the mixed Nyquist wave
    vectors (see the module docstring).
    """
    n1, n2, n3 = shape
    freqs = [torch.fft.fftfreq(n, d=1 / n, dtype=torch.float64) for n in (n1, n2)]
    freqs.append(torch.fft.rfftfreq(n3, d=1 / n3, dtype=torch.float64))
    k = torch.stack(torch.meshgrid(*freqs, indexing="ij"))  # integer wave numbers
    sizes = torch.tensor(shape, dtype=torch.float64).view(3, 1, 1, 1)
    nyquist = 2 * k.abs() == sizes
    regular = (k != 0) & ~nyquist
    mixed = nyquist.any(dim=0) & regular.any(dim=0)
    xi = k / sizes
    q = xi / xi.norm(dim=0).clamp_min(1e-300)
    q[:, mixed] = 0.0
    return q.to(device)


@functools.lru_cache(maxsize=4)
def _projection_operands(
    shape: tuple[int, int, int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """q and n = q⊗q (Mandel form) of Γ(τ) = 2 sym(q⊗τq) − (n·τ) n for one grid, read-only.

    Both are repeated over a trailing (re, im) axis to multiply spectra seen through
    ``view_as_real``: same-shape operands vectorise much better than a broadcast size-1 axis.
    They depend only on the grid, so a batch of microstructures of one size builds them once.
    """
    q = _unit_wave_vectors(shape, device)
    q = q.unsqueeze(-1).expand(*q.shape, 2).contiguous()
    n = torch.stack(
        [q[i] * q[j] * float(w) for (i, j), w in zip(_MANDEL_PAIRS, _MANDEL_WEIGHTS, strict=True)]
    )
    return q, n


class _Problem:
    """A voxel microstructure ready to solve: per-voxel λ and 2μ, and the projection Γ."""

    def __init__(
        self, phases_map: np.ndarray, phases: Sequence[IsotropicPhase], device: str | torch.device
    ):
        ids = _check_phases_map(phases_map, len(phases))
        self.device = torch.device(device)
        self.shape = ids.shape
        ids = torch.from_numpy(ids).to(self.device)
        lam = torch.tensor([p.lam for p in phases], dtype=torch.float64, device=self.device)
        mu = torch.tensor([p.mu for p in phases], dtype=torch.float64, device=self.device)
        self.lam = lam[ids]
        self.two_mu = 2 * mu[ids]
        self.q, self.n = _projection_operands(self.shape, self.device)

    def stress(self, strain: torch.Tensor) -> torch.Tensor:
        """C:ε voxel by voxel."""
        stress = self.two_mu * strain
        stress[:3] += self.lam * strain[:3].sum(dim=0)
        return stress

    def project(self, field: torch.Tensor) -> torch.Tensor:
        """Γ(field): the compatible part of a real (6, *grid) field.

        Γ(τ) = 2 sym(q⊗v) − (n·τ) n with v = τq, component by component on the real and
        imaginary parts (``view_as_real``) and written over the spectrum itself: large
        temporaries and complex promotion of q cost more than the arithmetic here.
        """
        t = torch.view_as_real(torch.fft.rfftn(field, dim=(1, 2, 3)))
        q, n = self.q, self.n
        v = torch.zeros_like(t[:3])
        for a, (i, j) in enumerate(_MANDEL_PAIRS):
            if i == j:
                v[i].addcmul_(t[a], q[i])
            else:  # Mandel shear component a is √2 τij
                v[i].addcmul_(t[a], q[j], value=1 / SQRT2)
                v[j].addcmul_(t[a], q[i], value=1 / SQRT2)
        s = torch.zeros_like(t[0])
        for a in range(6):
            s.addcmul_(n[a], t[a])
        for a, (i, j) in enumerate(_MANDEL_PAIRS):
            out = torch.mul(q[i], v[j], out=t[a]).addcmul_(q[j], v[i])
            out.mul_(_MANDEL_WEIGHTS[a]).addcmul_(n[a], s, value=-1)
        return torch.fft.irfftn(torch.view_as_complex(t), s=self.shape, dim=(1, 2, 3))

    def iterate(self, macro: np.ndarray) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        """CG on Γ(C:ε̃) = −Γ(C:E) from ε̃ = 0 (see the module docstring).

        Yields (macro strain field, fluctuation ε̃, relative residual) first for ε̃ = 0 and
        then after each iteration, ε̃ updated in place. It stops by itself only when nothing
        is left to solve (a zero residual)."""
        macro_field = torch.tensor(macro, dtype=torch.float64, device=self.device)
        macro_field = macro_field.view(6, 1, 1, 1).expand(6, *self.shape)
        load = self.stress(macro_field)
        rhs = -self.project(load)
        rhs_norm = torch.linalg.vector_norm(rhs).item()
        fluctuation = torch.zeros_like(rhs)
        # A uniform material (or E = 0) leaves only FFT round-off to solve for: nothing to do.
        balanced = rhs_norm <= 1e-13 * torch.linalg.vector_norm(load).item()
        yield macro_field, fluctuation, 0.0 if balanced else 1.0
        if balanced:
            return
        residual, direction = rhs, rhs.clone()
        rr = rhs_norm**2
        while True:
            a_dir = self.project(self.stress(direction))
            alpha = rr / torch.dot(direction.flatten(), a_dir.flatten()).item()
            fluctuation.add_(direction, alpha=alpha)
            residual.sub_(a_dir, alpha=alpha)
            rr_new = torch.dot(residual.flatten(), residual.flatten()).item()
            yield macro_field, fluctuation, math.sqrt(rr_new) / rhs_norm
            if rr_new == 0:
                return
            direction.mul_(rr_new / rr).add_(residual)
            rr = rr_new

    def solve(self, macro: np.ndarray, tol: float, max_iter: int) -> ElasticField:
        """Iterate until the relative residual is below ``tol`` or ``max_iter`` is reached."""
        start = time.perf_counter()
        steps = self.iterate(macro)
        macro_field, fluctuation, relative = next(steps)
        iterations = 0
        while relative >= tol and iterations < max_iter:
            _, _, relative = next(steps)
            iterations += 1
        converged = relative < tol
        if not converged:
            warnings.warn(
                f"CG stopped after {iterations} iterations at relative residual {relative:.3g} "
                f"> tol {tol:g}",
                RuntimeWarning,
                stacklevel=3,
            )
        return self.field(macro_field + fluctuation, iterations, relative, converged, start)

    def field(
        self, strain: torch.Tensor, iterations: int, relative: float, converged: bool, start: float
    ) -> ElasticField:
        """The solution record for a total strain field."""
        stress = self.stress(strain)
        report = SolveReport(iterations, relative, converged, time.perf_counter() - start)
        return ElasticField(
            strain=strain.cpu().numpy(),
            stress=stress.cpu().numpy(),
            mean_stress=stress.mean(dim=(1, 2, 3)).cpu().numpy(),
            report=report,
        )
