"""Physics solvers on voxel microstructures, for generating and checking property data.

:mod:`deepmat.physics.elasticity` computes periodic linear-elastic strain and stress fields and
effective stiffnesses with a Fourier–Galerkin FFT solver (conjugate gradients), its cheap
estimate after a few iterations (``partial_solve``, the input of hybrid surrogates), and the
Voigt, Reuss and Hashin–Shtrikman bounds to check them against.

:mod:`deepmat.physics.orientations` handles crystal orientations as unit quaternions: the
proper rotations of a point group (from orix), the exact disorientation angle for evaluation,
a differentiable, symmetry-aware disorientation loss and the quaternion algebra in torch
that it uses (import those from the module).
"""

from deepmat._lazy import lazy_exports

_EXPORTS = {
    "DisorientationLoss": "deepmat.physics.orientations",
    "ElasticField": "deepmat.physics.elasticity",
    "IsotropicPhase": "deepmat.physics.elasticity",
    "SolveReport": "deepmat.physics.elasticity",
    "disorientation_angle": "deepmat.physics.orientations",
    "effective_stiffness": "deepmat.physics.elasticity",
    "hashin_shtrikman_bounds": "deepmat.physics.elasticity",
    "isotropic_moduli": "deepmat.physics.elasticity",
    "mandel_to_voigt_stiffness": "deepmat.physics.elasticity",
    "partial_solve": "deepmat.physics.elasticity",
    "PartialSolution": "deepmat.physics.elasticity",
    "point_group_symmetry": "deepmat.physics.orientations",
    "proper_symmetry": "deepmat.physics.orientations",
    "reuss_stiffness": "deepmat.physics.elasticity",
    "solve": "deepmat.physics.elasticity",
    "to_rotation": "deepmat.physics.orientations",
    "voigt_stiffness": "deepmat.physics.elasticity",
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(_EXPORTS)
