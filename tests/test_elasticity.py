"""The FFT elasticity solver against exact solutions, bounds and resolution refinement."""

from __future__ import annotations

import numpy as np
import pytest

from deepmat.errors import DataError
from deepmat.physics import (
    IsotropicPhase,
    effective_stiffness,
    hashin_shtrikman_bounds,
    isotropic_moduli,
    mandel_to_voigt_stiffness,
    solve,
)

SOFT = IsotropicPhase(1.0, 0.3)


def two_phases(contrast: float) -> list[IsotropicPhase]:
    return [SOFT, IsotropicPhase(contrast, 0.25)]


def smoothed_random_map(n: int, fraction: float, seed: int = 0) -> np.ndarray:
    """Phase 1 where Gaussian-smoothed white noise is in its top ``fraction``: blobs ~n/4 wide."""
    noise = np.random.default_rng(seed).standard_normal((n, n, n))
    k2 = sum(np.meshgrid(*[np.fft.fftfreq(n) ** 2] * 3, indexing="ij"))
    smooth = np.fft.ifftn(np.fft.fftn(noise) * np.exp(-2 * k2 * (n / 4) ** 2)).real
    return (smooth > np.quantile(smooth, 1 - fraction)).astype(np.int64)


def sphere_map(n: int, radius: float) -> np.ndarray:
    """Phase 1 inside a centred sphere of ``radius`` (cell fraction), sampled at voxel centres."""
    x = (np.arange(n) + 0.5) / n - 0.5
    x1, x2, x3 = np.meshgrid(x, x, x, indexing="ij")
    return (x1**2 + x2**2 + x3**2 < radius**2).astype(np.int64)


def laminate_stiffness(layers: np.ndarray, phases: list[IsotropicPhase]) -> np.ndarray:
    """Exact Mandel stiffness of a laminate with layer normal x1; ``layers`` are phase ids."""
    f = np.bincount(layers, minlength=len(phases)) / len(layers)
    lam = np.array([p.lam for p in phases])
    mu = np.array([p.mu for p in phases])
    m = lam + 2 * mu

    def avg(values):
        return float(f @ values)

    c11 = 1 / avg(1 / m)
    c12 = avg(lam / m) * c11
    c22 = avg(m - lam**2 / m) + avg(lam / m) ** 2 * c11
    c23 = avg(lam - lam**2 / m) + avg(lam / m) ** 2 * c11
    across, in_plane = 2 / avg(1 / mu), 2 * avg(mu)
    return np.array(
        [
            [c11, c12, c12, 0, 0, 0],
            [c12, c22, c23, 0, 0, 0],
            [c12, c23, c22, 0, 0, 0],
            [0, 0, 0, in_plane, 0, 0],
            [0, 0, 0, 0, across, 0],
            [0, 0, 0, 0, 0, across],
        ]
    )


@pytest.mark.parametrize("shape", [(5, 4, 3), (6, 5, 1)])
def test_homogeneous_material_strain_is_the_macro_strain(shape):
    phase = IsotropicPhase(3.0, 0.2)
    strain = np.array([[1.0, 0.2, -0.1], [0.2, -0.5, 0.3], [-0.1, 0.3, 0.4]]) * 1e-3
    field = solve(np.zeros(shape, dtype=int), [phase, SOFT], strain)

    mandel = np.array([1.0, -0.5, 0.4, 0.3 * np.sqrt(2), -0.1 * np.sqrt(2), 0.2 * np.sqrt(2)])
    mandel *= 1e-3
    assert field.strain.shape == field.stress.shape == (6, *shape)
    expected = np.broadcast_to(mandel[:, None, None, None], field.strain.shape)
    np.testing.assert_allclose(field.strain, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(field.mean_stress, phase.stiffness() @ mandel, rtol=1e-12)
    assert field.report.converged

    stiffness, reports = effective_stiffness(np.zeros(shape, dtype=int), [phase])
    np.testing.assert_allclose(stiffness, phase.stiffness(), rtol=1e-12, atol=1e-12)
    assert all(r.converged for r in reports)


@pytest.mark.parametrize("contrast", [3.0, 50.0])
@pytest.mark.parametrize("shape", [(12, 4, 3), (11, 3, 1), (10, 4, 4)])
def test_laminate_matches_exact_moduli(contrast, shape):
    layers = np.array([0, 1, 1, 0, 1, 0, 0, 0, 1, 0, 1, 1])[: shape[0]]
    phases_map = np.broadcast_to(layers[:, None, None], shape)
    stiffness, reports = effective_stiffness(phases_map, two_phases(contrast))

    exact = laminate_stiffness(layers, two_phases(contrast))
    np.testing.assert_allclose(stiffness, exact, rtol=1e-5, atol=1e-5 * np.abs(exact).max())
    np.testing.assert_allclose(stiffness, stiffness.T, rtol=0, atol=1e-8 * np.abs(exact).max())
    assert all(r.converged for r in reports)


def test_random_microstructure_lies_within_hashin_shtrikman_bounds():
    phases = two_phases(10.0)
    phases_map = smoothed_random_map(16, 0.4)
    stiffness, reports = effective_stiffness(phases_map, phases)

    np.testing.assert_allclose(stiffness, stiffness.T, rtol=0, atol=1e-5 * np.abs(stiffness).max())
    fractions = np.bincount(phases_map.ravel(), minlength=2) / phases_map.size
    bounds = hashin_shtrikman_bounds(phases, fractions)
    bulk, shear = isotropic_moduli(stiffness)
    assert bounds["bulk_lower"] < bulk < bounds["bulk_upper"]
    assert bounds["shear_lower"] < shear < bounds["shear_upper"]
    assert all(r.converged for r in reports)


def test_sphere_inclusion_converges_with_resolution():
    phases = two_phases(10.0)
    coarse, _ = effective_stiffness(sphere_map(12, 0.3), phases)
    fine, _ = effective_stiffness(sphere_map(24, 0.3), phases)
    assert np.linalg.norm(coarse - fine) / np.linalg.norm(fine) < 0.03


def test_cg_converges_at_contrast_50():
    field = solve(smoothed_random_map(16, 0.3, seed=1), two_phases(50.0), [1, 0, 0, 0, 0, 0])
    assert field.report.converged
    assert field.report.residual < 1e-6
    assert field.report.iterations < 200


def test_solved_stress_is_in_equilibrium():
    """‖ξ·σ̂‖ is small next to ‖ξ‖‖σ̂‖ for the solution, and not for the uniform-strain guess."""
    n = 15  # odd: no Nyquist modes, so every nonzero wave vector is equilibrated
    phases_map = smoothed_random_map(n, 0.3, seed=2)
    macro = np.array([0.3, -0.2, 0.1, 0.5, 0.0, -0.4])
    field = solve(phases_map, two_phases(50.0), macro, tol=1e-8)

    xi = np.stack(np.meshgrid(*[np.fft.fftfreq(n)] * 3, indexing="ij"))

    def divergence_ratio(stress: np.ndarray) -> float:
        s = np.fft.fftn(stress, axes=(1, 2, 3))
        r = 1 / np.sqrt(2)
        tensor = [
            [s[0], r * s[5], r * s[4]],
            [r * s[5], s[1], r * s[3]],
            [r * s[4], r * s[3], s[2]],
        ]
        div = [sum(tensor[i][j] * xi[j] for j in range(3)) for i in range(3)]
        size = np.sqrt(np.sum(xi**2, axis=0)) * np.sqrt(np.sum(np.abs(s) ** 2, axis=0))
        return np.sqrt(sum(np.sum(np.abs(d) ** 2) for d in div)) / np.linalg.norm(size)

    uniform = np.stack([p.stiffness() @ macro for p in two_phases(50.0)])[phases_map]
    assert divergence_ratio(field.stress) < 1e-6
    assert divergence_ratio(np.moveaxis(uniform, -1, 0)) > 0.1


def test_non_converged_solve_warns_and_says_so():
    with pytest.warns(RuntimeWarning, match="CG stopped after 2 iterations"):
        field = solve(smoothed_random_map(8, 0.3), two_phases(50.0), np.eye(6)[0], max_iter=2)
    assert not field.report.converged
    assert field.report.iterations == 2


def test_hashin_shtrikman_bounds_collapse_for_identical_phases():
    phase = IsotropicPhase(2.0, 0.3)
    bounds = hashin_shtrikman_bounds([phase, phase], [0.3, 0.7])
    assert bounds["bulk_lower"] == pytest.approx(phase.bulk)
    assert bounds["bulk_upper"] == pytest.approx(phase.bulk)
    assert bounds["shear_lower"] == pytest.approx(phase.mu)
    assert bounds["shear_upper"] == pytest.approx(phase.mu)


def test_mandel_to_voigt_halves_the_shear_block():
    phase = IsotropicPhase(2.0, 0.3)
    voigt = mandel_to_voigt_stiffness(phase.stiffness())
    assert voigt[3, 3] == pytest.approx(phase.mu)
    assert voigt[0, 1] == pytest.approx(phase.lam)
    assert isotropic_moduli(phase.stiffness()) == pytest.approx((phase.bulk, phase.mu))


@pytest.mark.parametrize(
    ("phases_map", "macro", "match"),
    [
        (np.full((3, 3, 3), 2), np.zeros(6), "phase id 2, outside 0..1"),
        (np.full((3, 3, 3), -1), np.zeros(6), "phase id -1, outside 0..1"),
        (np.zeros((3, 3, 3)), np.zeros(6), "integer phase ids, got dtype float64"),
        (np.zeros((3, 3), dtype=int), np.zeros(6), r"3-D grid .* got shape \(3, 3\)"),
        (np.zeros((3, 3, 3), dtype=int), np.triu(np.ones((3, 3))), "must be symmetric"),
        (np.zeros((3, 3, 3), dtype=int), np.zeros(4), r"Mandel 6-vector .* shape \(4,\)"),
    ],
)
def test_bad_inputs_raise(phases_map, macro, match):
    with pytest.raises(DataError, match=match):
        solve(phases_map, two_phases(2.0), macro)


@pytest.mark.parametrize(
    ("youngs_modulus", "poisson_ratio", "match"),
    [
        (1.0, 0.5, r"poisson_ratio must lie in the open interval \(-1, 0.5\), got 0.5"),
        (1.0, -1.2, r"poisson_ratio .* got -1.2"),
        (0.0, 0.3, "youngs_modulus must be positive and finite, got 0.0"),
        (-2.0, 0.3, "youngs_modulus must be positive"),
    ],
)
def test_bad_phase_raises(youngs_modulus, poisson_ratio, match):
    with pytest.raises(DataError, match=match):
        IsotropicPhase(youngs_modulus, poisson_ratio)
