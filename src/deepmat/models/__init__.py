"""Models: ``torch.nn.Module``s only; no I/O, no training loops."""

from deepmat.models.cnn3d import (
    HOMOGENIZATION_PAPER,
    HOMOGENIZATION_SMALL,
    CNN3DSpec,
    HomogenizationCNN,
)
from deepmat.models.ebsd import (
    ORIENTATION_CNN_PAPER,
    ORIENTATION_CNN_SMALL,
    OrientationCNN,
    OrientationCNNSpec,
)
from deepmat.models.localization import (
    SLICE_CNN_PAPER,
    SLICE_CNN_SMALL,
    STRAIN_FCN_SMALL,
    STRAIN_FNO,
    SliceCNN,
    SliceCNNSpec,
    StrainFCN,
    StrainFCNSpec,
)
from deepmat.models.mlp import ELEMNET, MLP, Block, MLPSpec

__all__ = [
    "ELEMNET",
    "HOMOGENIZATION_PAPER",
    "HOMOGENIZATION_SMALL",
    "MLP",
    "ORIENTATION_CNN_PAPER",
    "ORIENTATION_CNN_SMALL",
    "SLICE_CNN_PAPER",
    "SLICE_CNN_SMALL",
    "STRAIN_FCN_SMALL",
    "STRAIN_FNO",
    "Block",
    "CNN3DSpec",
    "HomogenizationCNN",
    "MLPSpec",
    "OrientationCNN",
    "OrientationCNNSpec",
    "SliceCNN",
    "SliceCNNSpec",
    "StrainFCN",
    "StrainFCNSpec",
]
