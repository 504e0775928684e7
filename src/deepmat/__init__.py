"""deepmat: deep materials informatics.

One package for deep learning along the processing-structure-property chain:
named datasets with honest splits, representations of materials as tensors,
models as plain ``torch.nn.Module``s, one trainer, and one saved-model format
that :func:`deepmat.load` reads back.
"""

from importlib.metadata import version as _version

from deepmat.errors import DataError, DataNotFoundError, DeepmatError, ModelFormatError

__version__ = _version("deepmat")


def load(path_or_name):
    """The estimator saved in a directory, or the shipped pretrained model of that name
    (``deepmat models`` lists them): ``.predict``, ``.evaluate``, ``.card()``."""
    from pathlib import Path

    from deepmat.train.saved import load_model

    path = Path(path_or_name)
    if not path.is_dir():
        from deepmat.pretrained import pretrained_path

        path = pretrained_path(str(path_or_name))
    return load_model(path)


__all__ = [
    "DataError",
    "DataNotFoundError",
    "DeepmatError",
    "ModelFormatError",
    "__version__",
    "load",
]
