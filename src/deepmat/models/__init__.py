"""Models: ``torch.nn.Module``s only; no I/O, no training loops."""

from deepmat.models.cnn3d import (
    HOMOGENIZATION_PAPER,
    HOMOGENIZATION_SMALL,
    CNN3DSpec,
    HomogenizationCNN,
)
from deepmat.models.mlp import ELEMNET, MLP, Block, MLPSpec

__all__ = [
    "ELEMNET",
    "HOMOGENIZATION_PAPER",
    "HOMOGENIZATION_SMALL",
    "MLP",
    "Block",
    "CNN3DSpec",
    "HomogenizationCNN",
    "MLPSpec",
]
