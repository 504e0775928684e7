"""Physics solvers on voxel microstructures, for generating and checking property data.

:mod:`deepmat.physics.elasticity` computes periodic linear-elastic strain and stress fields and
effective stiffnesses with a Fourier–Galerkin FFT solver (conjugate gradients), and gives the
Voigt, Reuss and Hashin–Shtrikman bounds to check them against.
"""

from deepmat.physics.elasticity import (
    ElasticField,
    IsotropicPhase,
    SolveReport,
    effective_stiffness,
    hashin_shtrikman_bounds,
    isotropic_moduli,
    mandel_to_voigt_stiffness,
    reuss_stiffness,
    solve,
    voigt_stiffness,
)

__all__ = [
    "ElasticField",
    "IsotropicPhase",
    "SolveReport",
    "effective_stiffness",
    "hashin_shtrikman_bounds",
    "isotropic_moduli",
    "mandel_to_voigt_stiffness",
    "reuss_stiffness",
    "solve",
    "voigt_stiffness",
]
