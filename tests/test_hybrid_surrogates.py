"""Hybrid surrogates: the solver's first CG iterates, and models that correct them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import deepmat
from deepmat.errors import ConfigError, DataError
from deepmat.models.localization import StrainFCNSpec
from deepmat.physics import IsotropicPhase, partial_solve, solve
from deepmat.represent.phase_maps import coarsened
from deepmat.represent.physics_inputs import (
    hashin_shtrikman_c11,
    stiffness_iterates,
    strain_estimates,
)
from deepmat.train import TrainConfig, save_model
from deepmat.train.localization import HybridFCNRegressor
from deepmat.train.stiffness_hybrid import SolverHybridRegressor, reused_iterates

PHASES = (IsotropicPhase(1.0, 0.3), IsotropicPhase(10.0, 0.3))
UNIAXIAL = [1.0, 0, 0, 0, 0, 0]


def blobs(n: int, grid: int = 8, seed: int = 0) -> np.ndarray:
    """Smoothed noise thresholded at volume fractions from 0.2 to 0.8."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, grid, grid, grid), dtype=np.uint8)
    for i in range(n):
        noise = rng.normal(size=(grid,) * 3)
        smooth = sum(np.roll(noise, s, axis=a) for a in range(3) for s in (-1, 0, 1))
        out[i] = smooth > np.quantile(smooth, 1 - rng.uniform(0.2, 0.8))
    return out


@pytest.fixture(scope="module")
def solved():
    x = blobs(40)
    fields = [solve(m, PHASES, UNIAXIAL) for m in x]
    return x, np.array([f.mean_stress[0] for f in fields]), np.stack([f.strain[0] for f in fields])


def test_partial_solve_is_the_solver_stopped_early():
    x = blobs(1, seed=3)[0]
    for k in (1, 3, 6):
        partial = partial_solve(x, PHASES, UNIAXIAL, k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stopped = solve(x, PHASES, UNIAXIAL, tol=1e-12, max_iter=k)
        assert partial.report.iterations == k and not partial.report.converged
        np.testing.assert_allclose(partial.strain, stopped.strain, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(partial.mean_stress[-1], stopped.mean_stress, rtol=1e-10)
        assert partial.mean_stress.shape == (k, 6)


def test_partial_solve_iterates_approach_the_solution(solved):
    x, c11, _ = solved
    iterates = stiffness_iterates(x[:6], PHASES, 8)
    errors = np.abs(iterates / c11[:6, None] - 1).mean(axis=0)
    assert errors[-1] < 0.01 * errors[0]
    assert errors[-1] < 1e-3


def test_partial_solve_of_a_uniform_cell_is_exact_and_converged():
    partial = partial_solve(np.zeros((4, 4, 4), int), PHASES, UNIAXIAL, 3)
    assert partial.report.converged
    np.testing.assert_allclose(partial.strain[0], 1.0)
    np.testing.assert_allclose(partial.mean_stress, np.tile(partial.mean_stress[0], (3, 1)))


@pytest.mark.parametrize("iterations", [0, -2, 1.5])
def test_partial_solve_refuses_a_bad_iteration_count(iterations):
    with pytest.raises(DataError, match="positive integer"):
        partial_solve(blobs(1)[0], PHASES, UNIAXIAL, iterations)


def test_strain_estimates_average_to_one_and_scale_away_the_load(solved):
    x, _, strain = solved
    estimate = strain_estimates(x[:3], PHASES, 4)
    np.testing.assert_allclose(estimate.mean(axis=(1, 2, 3)), 1.0, atol=1e-10)
    assert np.abs(estimate - strain[:3]).mean() < 0.2 * np.abs(1 - strain[:3]).mean()


def test_hashin_shtrikman_bounds_hold_the_solved_c11(solved):
    x, c11, _ = solved
    bounds = hashin_shtrikman_c11(x, PHASES)
    # HS bounds assume isotropy; a finite random cell may leave them by a little
    assert np.all(bounds[:, 0] < bounds[:, 1])
    assert np.mean((bounds[:, 0] <= c11 * 1.02) & (c11 <= bounds[:, 1] * 1.02)) > 0.9


def test_physics_inputs_refuse_converged_iterations_and_missing_phases():
    uniform = np.zeros((3, 4, 4, 4), np.uint8)
    with pytest.raises(ConfigError, match="converges within 2 iterations on 3 of 3"):
        stiffness_iterates(uniform, PHASES, 2)
    with pytest.raises(ConfigError, match="two IsotropicPhase"):
        strain_estimates(uniform, PHASES[:1], 2)
    assert stiffness_iterates(uniform, PHASES, 2, refuse_converged=False).shape == (3, 2)
    hybrid = SolverHybridRegressor(2, n_components=1, degree=1, phases=PHASES)
    with pytest.raises(ConfigError, match="converges within 2 iterations on 3 of 3"):
        hybrid.fit(uniform, np.ones(3), val=(uniform, np.ones(3)))


def test_stiffness_hybrid_beats_its_solver_estimate_and_round_trips(solved, tmp_path):
    x, c11, _ = solved
    model = SolverHybridRegressor(2, n_components=3, degree=1, alpha=1e-3, phases=PHASES)
    model.fit(x[:30], c11[:30], val=(x[30:], c11[30:]))
    estimate = stiffness_iterates(x[30:], PHASES, 2)[:, -1]
    prediction = model.predict(x[30:])
    assert np.abs(prediction / c11[30:] - 1).mean() < 0.5 * np.abs(estimate / c11[30:] - 1).mean()
    assert model.metrics["val"]["mape"] == pytest.approx(
        100 * np.abs(prediction / c11[30:] - 1).mean()
    )
    assert model.embed(x[:2]).shape == (2, 2 + 2 + 3)
    loaded = deepmat.load(save_model(model, tmp_path / "hybrid"))
    assert loaded.card()["family"] == "solver-hybrid"
    assert loaded.card()["representation"]["iterations"] == 2
    np.testing.assert_allclose(loaded.predict(x[30:]), prediction, rtol=1e-10)
    # Uniform cells converge at once: an answer at prediction, however many there are.
    uniform = loaded.predict(np.zeros((3, *x.shape[1:]), x.dtype))
    assert np.all(np.isfinite(uniform) & (uniform > 0))


def test_reused_iterates_are_kept_only_inside_the_context(solved, monkeypatch):
    x, c11, _ = solved
    calls = []
    import deepmat.train.stiffness_hybrid as module

    def counting(*args, **kwargs):
        calls.append(1)
        return stiffness_iterates(*args, **kwargs)

    monkeypatch.setattr(module, "stiffness_iterates", counting)
    model = SolverHybridRegressor(2, n_components=3, degree=1, phases=PHASES)
    with reused_iterates():
        model.fit(x[:20], c11[:20])
        model.predict(x[:20])
    assert len(calls) == 1
    model.predict(x[:20])
    assert len(calls) == 2


def test_hybrids_need_both_phases_and_positive_iterations():
    with pytest.raises(ConfigError, match="two phases"):
        SolverHybridRegressor(2)
    with pytest.raises(ConfigError, match="positive integer"):
        SolverHybridRegressor(0, phases=PHASES)
    with pytest.raises(ConfigError, match="two phases"):
        HybridFCNRegressor(StrainFCNSpec(channels=4, dilations=(1,)))
    with pytest.raises(ConfigError, match="positive integer"):
        HybridFCNRegressor(StrainFCNSpec(channels=4, dilations=(1,)), phases=PHASES, iterations=0)


def test_untrained_fcn_hybrid_predicts_the_solver_estimate(solved):
    x = solved[0]
    model = HybridFCNRegressor(StrainFCNSpec(channels=4, dilations=(1,)), phases=PHASES)
    model.scaler = model.scaler.fit(np.zeros(4))
    model.macro_strain = 1.0
    np.testing.assert_allclose(model.predict(x[:2]), strain_estimates(x[:2], PHASES, 4), atol=1e-6)


def test_fcn_hybrid_learns_the_correction_and_round_trips(solved, tmp_path):
    x, _, strain = solved
    e = 1e-3 * strain
    config = TrainConfig(epochs=15, batch_size=4, lr=3e-3, patience=15, progress=False)
    spec = StrainFCNSpec(channels=8, dilations=(1, 2))
    model = HybridFCNRegressor(spec, config, phases=PHASES, iterations=2)
    model.fit(x[:32], e[:32], val=(x[32:], e[32:]))
    base = 100 * np.abs(strain_estimates(x[32:], PHASES, 2) - strain[32:]).mean()
    assert model.evaluate(x[32:], e[32:])["mase"] < base
    card = model.card()
    assert card["architecture"]["kind"] == "hybrid-fcn"
    assert card["architecture"]["in_channels"] == 2
    loaded = deepmat.load(save_model(model, tmp_path / "fcn-hybrid"))
    assert isinstance(loaded, HybridFCNRegressor) and loaded.iterations == 2
    np.testing.assert_allclose(loaded.predict(x[32:]), model.predict(x[32:]), rtol=1e-5)
    assert np.all(np.isfinite(loaded.predict(np.zeros((3, *x.shape[1:]), x.dtype))))


def test_coarsened_maps_take_the_majority_phase_of_each_block():
    x = np.zeros((4, 4, 2, 2), np.uint8)
    x[0, :2].flat[:5] = 1  # five of eight: the stiff phase
    x[1, :2].flat[:3] = 1  # three of eight: the matrix
    x[2, :2].flat[:4] = 1  # a tie, first voxel stiff
    x[3, :2].flat[4:] = 1  # a tie, first voxel matrix
    assert coarsened(x, 2)[:, :, 0, 0].tolist() == [[1, 0], [0, 0], [1, 0], [0, 0]]
    assert np.array_equal(coarsened(x, 1), x)
    extruded = np.ones((1, 5, 5, 1), np.uint8)
    assert coarsened(extruded, 2).shape == (1, 2, 2, 1)  # cropped; the flat axis kept
    with pytest.raises(DataError, match="smaller than one block of 3"):
        coarsened(np.ones((1, 2, 2, 2), np.uint8), 3)


def test_a_coarse_hybrid_runs_the_solver_on_the_coarser_grid(solved, tmp_path, monkeypatch):
    x, c11, _ = solved
    import deepmat.train.stiffness_hybrid as module

    grids = []

    def recording(structures, *args, **kwargs):
        grids.append(structures.shape[1:])
        return stiffness_iterates(structures, *args, **kwargs)

    monkeypatch.setattr(module, "stiffness_iterates", recording)
    model = SolverHybridRegressor(2, n_components=3, degree=1, coarsen=2, phases=PHASES)
    model.fit(x[:30], c11[:30], val=(x[30:], c11[30:]))
    assert set(grids) == {(4, 4, 4)}
    assert model.metrics["val"]["mape"] < 100 * np.mean(np.abs(c11[30:] / c11[:30].mean() - 1))
    loaded = deepmat.load(save_model(model, tmp_path / "coarse"))
    assert loaded.card()["representation"]["coarsen"] == 2
    np.testing.assert_allclose(loaded.predict(x[30:]), model.predict(x[30:]), rtol=1e-10)
    with pytest.raises(ConfigError, match="coarsen must be a positive integer"):
        SolverHybridRegressor(2, coarsen=0, phases=PHASES)
