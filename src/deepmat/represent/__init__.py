"""Representations: materials turned into fixed-length tensors.

Each representation has ``transform(compositions, labels=None) -> float32 array``,
``feature_names`` and ``to_dict()``; :func:`representation_from_dict` rebuilds one from
the dict stored in a saved model's card, so a model always featurizes as it was trained.
"""

from deepmat.represent.fractions import ELEMNET_ELEMENTS, ElementFractions
from deepmat.represent.magpie import MagpieAttributes

REPRESENTATIONS = {cls.name: cls for cls in (ElementFractions, MagpieAttributes)}


def representation_from_dict(spec: dict):
    """Rebuild a representation from ``to_dict()`` output."""
    spec = dict(spec)
    return REPRESENTATIONS[spec.pop("name")](**spec)


__all__ = [
    "ELEMNET_ELEMENTS",
    "REPRESENTATIONS",
    "ElementFractions",
    "MagpieAttributes",
    "representation_from_dict",
]
