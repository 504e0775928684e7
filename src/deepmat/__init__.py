"""deepmat: deep materials informatics.

One package for deep learning along the processing-structure-property chain:
named datasets with honest splits, representations of materials as tensors,
models as plain ``torch.nn.Module``s, one trainer, and one saved-model format
that :func:`deepmat.load` reads back.
"""

from importlib.metadata import version as _version

from deepmat.errors import DataError, DataNotFoundError, DeepmatError, ModelFormatError

__version__ = _version("deepmat")


def load(path):
    """Load a saved model directory and return an object with ``.predict(inputs)``."""
    from deepmat.train.saved import load_model

    return load_model(path)


__all__ = [
    "DataError",
    "DataNotFoundError",
    "DeepmatError",
    "ModelFormatError",
    "__version__",
    "load",
]
