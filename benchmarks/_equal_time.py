"""The FFT solver stopped early as a baseline for the microstructure surrogates.

A surrogate earns its place only where it beats the solver it replaces: more accurate than
the solver given the same wall time, or as accurate at a fraction of the time. The solver
runs whole conjugate-gradient iterations, so its error-time curve is a staircase over
k = 1 … K iterations, and the comparison reads that staircase as it is (no interpolation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from deepmat.physics.elasticity import IsotropicPhase, partial_solve
from deepmat.represent.physics_inputs import UNIAXIAL


def iteration_seconds(
    x: np.ndarray, phases: Sequence[IsotropicPhase], iterations: int, repeats: int = 8
) -> list[float]:
    """Mean wall seconds of k = 1 … ``iterations`` CG iterations (setup included) over the
    first ``repeats`` structures of ``x``."""
    partial_solve(x[0], phases, UNIAXIAL, 1)  # warm-up
    seconds = []
    for k in range(1, iterations + 1):
        start = time.perf_counter()
        for structure in x[:repeats]:
            partial_solve(structure, phases, UNIAXIAL, k)
        seconds.append((time.perf_counter() - start) / min(repeats, len(x)))
    return seconds


def solver_curve(seconds: Sequence[float], errors: Sequence[float]) -> list[dict]:
    """The staircase: one point per iteration count."""
    return [
        {"iterations": k + 1, "seconds": float(t), "error": float(e)}
        for k, (t, e) in enumerate(zip(seconds, errors, strict=True))
    ]


def equal_time(curve: list[dict], seconds: float, error: float) -> dict:
    """A surrogate taking ``seconds`` per structure with ``error``, against the solver.

    ``solver_error_at_equal_time``: the error after the most iterations that fit in
    ``seconds`` (None when not even one does); ``solver_seconds_at_equal_error``: the time
    of the fewest iterations with an error no larger (None when K iterations are not enough);
    ``speedup_at_equal_error`` their ratio to ``seconds``. Where the surrogate takes longer
    than K iterations, the solver's error at equal time is at most the curve's last one.
    """
    fits = [p for p in curve if p["seconds"] <= seconds]
    reaches = [p for p in curve if p["error"] <= error]
    at_time = fits[-1] if fits else None
    at_error = reaches[0] if reaches else None
    return {
        "surrogate_seconds": seconds,
        "surrogate_error": error,
        "solver_error_at_equal_time": at_time and at_time["error"],
        "solver_iterations_at_equal_time": at_time and at_time["iterations"],
        "solver_seconds_at_equal_error": at_error and at_error["seconds"],
        "solver_iterations_at_equal_error": at_error and at_error["iterations"],
        "speedup_at_equal_error": at_error and at_error["seconds"] / seconds,
        "more_accurate_than_solver_at_equal_time": bool(
            at_time is None or error < at_time["error"]
        ),
        # the solver could have run more iterations than the curve holds in that time
        "curve_exhausted_at_equal_time": at_time is curve[-1],
    }


def predict_seconds(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> float:
    """Mean wall seconds per structure of ``predict`` over ``x`` (after one warm-up call)."""
    predict(x[:1])
    start = time.perf_counter()
    predict(x)
    return (time.perf_counter() - start) / len(x)
