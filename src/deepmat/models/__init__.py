"""Models: ``torch.nn.Module``s only; no I/O, no training loops."""

from deepmat._lazy import lazy_exports

_EXPORTS = {
    "CGCNN": "deepmat.models.cgcnn",
    "CGCNNSpec": "deepmat.models.cgcnn",
    "GatedConv": "deepmat.models.cgcnn",
    "SharedConv": "deepmat.models.cgcnn",
    "SpectralConv3d": "deepmat.models.localization",
    "PeriodicConv3d": "deepmat.models.localization",
    "Block": "deepmat.models.mlp",
    "CNN3DSpec": "deepmat.models.cnn3d",
    "CompositionTransformer": "deepmat.models.element_sets",
    "Roost": "deepmat.models.element_sets",
    "RoostSpec": "deepmat.models.element_sets",
    "TransformerSpec": "deepmat.models.element_sets",
    "ELEMNET": "deepmat.models.mlp",
    "HOMOGENIZATION_PAPER": "deepmat.models.cnn3d",
    "HOMOGENIZATION_SMALL": "deepmat.models.cnn3d",
    "HomogenizationCNN": "deepmat.models.cnn3d",
    "MLP": "deepmat.models.mlp",
    "MLPSpec": "deepmat.models.mlp",
    "ORIENTATION_CNN_PAPER": "deepmat.models.ebsd",
    "ORIENTATION_CNN_SMALL": "deepmat.models.ebsd",
    "OrientationCNN": "deepmat.models.ebsd",
    "OrientationCNNSpec": "deepmat.models.ebsd",
    "SLICE_CNN_PAPER": "deepmat.models.localization",
    "SLICE_CNN_SMALL": "deepmat.models.localization",
    "STRAIN_FCN_SMALL": "deepmat.models.localization",
    "STRAIN_FNO": "deepmat.models.localization",
    "SliceCNN": "deepmat.models.localization",
    "SliceCNNSpec": "deepmat.models.localization",
    "StrainFCN": "deepmat.models.localization",
    "StrainFCNSpec": "deepmat.models.localization",
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(_EXPORTS)
