"""Representations: materials turned into fixed-length tensors.

Compositions: each representation has ``transform(compositions, labels=None) -> float32 array``
(a vector per composition, or [Z, x] rows per element for :class:`ElementSequence`),
``feature_names`` and ``to_dict()``; :func:`representation_from_dict` rebuilds one from
the dict stored in a saved model's card, so a model always featurizes as it was trained.
Voxel microstructures: :func:`check_phase_maps` validates a batch and
:func:`two_point_statistics` computes its periodic 2-point autocorrelations;
:func:`neighbourhoods` cuts the periodic block around each voxel (localization input).
EBSD patterns: :func:`check_patterns` validates a batch and :func:`standardize_patterns`
maps each pattern to zero mean and unit variance, (n, 1, height, width) float32;
:class:`PreprocessSpec` removes backgrounds (and equalises) before that, as a model's card says.
Names are imported on first use (Magpie attributes need matminer, the others do not).
"""

import importlib

from deepmat._lazy import lazy_exports

#: a card's representation name → "module:Class" of the representation
REPRESENTATIONS = {
    "fractions": "deepmat.represent.fractions:ElementFractions",
    "element-sequence": "deepmat.represent.element_sequence:ElementSequence",
    "magpie": "deepmat.represent.magpie:MagpieAttributes",
    "perovskite-sites": "deepmat.represent.perovskite_sites:PerovskiteSites",
}


def representation_from_dict(spec: dict):
    """Rebuild a representation from ``to_dict()`` output."""
    spec = dict(spec)
    module, name = REPRESENTATIONS[spec.pop("name")].split(":")
    return getattr(importlib.import_module(module), name)(**spec)


_EXPORTS = {
    "ELEMNET_ELEMENTS": "deepmat.represent.fractions",
    "ElementFractions": "deepmat.represent.fractions",
    "ElementSequence": "deepmat.represent.element_sequence",
    "element_table": "deepmat.represent.element_sequence",
    "MagpieAttributes": "deepmat.represent.magpie",
    "PerovskiteSites": "deepmat.represent.perovskite_sites",
    "PreprocessSpec": "deepmat.represent.patterns",
    "check_patterns": "deepmat.represent.patterns",
    "check_phase_maps": "deepmat.represent.phase_maps",
    "neighbourhoods": "deepmat.represent.neighbourhoods",
    "sample_voxels": "deepmat.represent.neighbourhoods",
    "standardize_patterns": "deepmat.represent.patterns",
    "two_point_statistics": "deepmat.represent.two_point",
    "volume_fractions": "deepmat.represent.phase_maps",
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted([*_EXPORTS, "REPRESENTATIONS", "representation_from_dict"])
