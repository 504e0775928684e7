"""Physics solvers on voxel microstructures, for generating and checking property data.

:mod:`deepmat.physics.elasticity` computes periodic linear-elastic strain and stress fields and
effective stiffnesses with a Fourier–Galerkin FFT solver (conjugate gradients), and gives the
Voigt, Reuss and Hashin–Shtrikman bounds to check them against.

:mod:`deepmat.physics.orientations` handles crystal orientations as unit quaternions: the
proper rotations of a point group (from orix), the exact disorientation angle for evaluation,
a differentiable, symmetry-aware disorientation loss and the quaternion algebra in torch
that it uses (import those from the module).
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
from deepmat.physics.orientations import (
    DisorientationLoss,
    disorientation_angle,
    point_group_symmetry,
    proper_symmetry,
    to_rotation,
)

__all__ = [
    "DisorientationLoss",
    "ElasticField",
    "IsotropicPhase",
    "SolveReport",
    "disorientation_angle",
    "effective_stiffness",
    "hashin_shtrikman_bounds",
    "isotropic_moduli",
    "mandel_to_voigt_stiffness",
    "point_group_symmetry",
    "proper_symmetry",
    "reuss_stiffness",
    "solve",
    "to_rotation",
    "voigt_stiffness",
]
