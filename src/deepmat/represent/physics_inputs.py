"""Physics-informed inputs of the hybrid microstructure surrogates.

The FFT solver (:mod:`deepmat.physics.elasticity`) stopped after a few conjugate-gradient
iterations already gives most of the answer: the strain field and the mean stress of the
first iterates. The hybrid models learn only the correction from these estimates to the
converged result, which is smaller and smoother than the result itself:

* :func:`stiffness_iterates`: C11 = ⟨σ11⟩ under the uniaxial strain E = e1 after each of
  the first k iterations, plus the isotropic Hashin–Shtrikman bounds on C11 = K + 4G/3;
* :func:`strain_estimates`: the field ε11 / ε̄11 after k iterations.

Both refuse, when asked to (``refuse_converged``, as a fit does), an iteration count at which
the solver has already converged on every microstructure: the "estimate" would then be the
solution, and the surrogate pointless. Prediction does not ask: one uniform cell in a small
batch is an answer, not a configuration error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepmat.errors import ConfigError, DataError
from deepmat.physics.elasticity import IsotropicPhase, hashin_shtrikman_bounds, partial_solve
from deepmat.represent.phase_maps import volume_fractions

UNIAXIAL = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0])


def stiffness_iterates(
    x: np.ndarray,
    phases: Sequence[IsotropicPhase],
    iterations: int,
    progress: bool = False,
    refuse_converged: bool = True,
) -> np.ndarray:
    """(n, iterations) estimates of C11 after 1 … ``iterations`` CG iterations."""
    solutions = _partial_solutions(
        x, phases, iterations, progress, refuse_converged, "C11 iterates"
    )
    return np.stack([s.mean_stress[:, 0] for s in solutions])


def strain_estimates(
    x: np.ndarray,
    phases: Sequence[IsotropicPhase],
    iterations: int,
    progress: bool = False,
    refuse_converged: bool = True,
) -> np.ndarray:
    """(n, n1, n2, n3) fields ε11 / ε̄11 after ``iterations`` CG iterations under E = e1
    (the problem is linear, so this is the field under any ε̄11, divided by it)."""
    solutions = _partial_solutions(
        x, phases, iterations, progress, refuse_converged, "strain estimates"
    )
    return np.stack([s.strain[0] for s in solutions])


def hashin_shtrikman_c11(x: np.ndarray, phases: Sequence[IsotropicPhase]) -> np.ndarray:
    """(n, 2) lower and upper Hashin–Shtrikman bounds on C11 = K + 4G/3 of an isotropic
    composite with each microstructure's volume fractions."""
    _check_phases(phases)
    rows = []
    for phi in volume_fractions(x):
        b = hashin_shtrikman_bounds(phases, [1 - phi, phi])
        rows.append(
            [
                b["bulk_lower"] + 4 * b["shear_lower"] / 3,
                b["bulk_upper"] + 4 * b["shear_upper"] / 3,
            ]
        )
    return np.array(rows)


def _check_phases(phases: Sequence[IsotropicPhase]) -> None:
    if len(phases) != 2 or not all(isinstance(p, IsotropicPhase) for p in phases):
        raise ConfigError(
            "physics-informed inputs need the two IsotropicPhase objects of the microstructures "
            "(phase 0, then phase 1): pass phases=..."
        )


def _partial_solutions(x, phases, iterations, progress, refuse_converged, what):
    _check_phases(phases)
    if len(x) == 0:
        raise DataError("no microstructures to compute physics-informed inputs for")
    items = range(len(x))
    if progress:
        from rich.progress import track

        items = track(items, description=f"{what} ({iterations} CG iterations)")
    solutions = [partial_solve(x[i], phases, UNIAXIAL, iterations) for i in items]
    converged = sum(s.report.converged for s in solutions)
    if refuse_converged and converged == len(solutions):
        raise ConfigError(
            f"the solver converges within {iterations} iterations on {converged} of "
            f"{len(solutions)} microstructures: the estimate is the solution; use fewer "
            "iterations or the solver itself"
        )
    return solutions
