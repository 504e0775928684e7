"""Representations: materials turned into fixed-length tensors.

Compositions: each representation has ``transform(compositions, labels=None) -> float32 array``,
``feature_names`` and ``to_dict()``; :func:`representation_from_dict` rebuilds one from
the dict stored in a saved model's card, so a model always featurizes as it was trained.
Voxel microstructures: :func:`check_phase_maps` validates a batch and
:func:`two_point_statistics` computes its periodic 2-point autocorrelations;
:func:`neighbourhoods` cuts the periodic block around each voxel (localization input).
EBSD patterns: :func:`check_patterns` validates a batch and :func:`standardize_patterns`
maps each pattern to zero mean and unit variance, (n, 1, height, width) float32.
"""

from deepmat.represent.fractions import ELEMNET_ELEMENTS, ElementFractions
from deepmat.represent.magpie import MagpieAttributes
from deepmat.represent.neighbourhoods import neighbourhoods, sample_voxels
from deepmat.represent.patterns import check_patterns, standardize_patterns
from deepmat.represent.perovskite_sites import PerovskiteSites
from deepmat.represent.phase_maps import check_phase_maps, volume_fractions
from deepmat.represent.two_point import two_point_statistics

REPRESENTATIONS = {cls.name: cls for cls in (ElementFractions, MagpieAttributes, PerovskiteSites)}


def representation_from_dict(spec: dict):
    """Rebuild a representation from ``to_dict()`` output."""
    spec = dict(spec)
    return REPRESENTATIONS[spec.pop("name")](**spec)


__all__ = [
    "ELEMNET_ELEMENTS",
    "REPRESENTATIONS",
    "ElementFractions",
    "MagpieAttributes",
    "PerovskiteSites",
    "check_patterns",
    "check_phase_maps",
    "neighbourhoods",
    "representation_from_dict",
    "sample_voxels",
    "standardize_patterns",
    "two_point_statistics",
    "volume_fractions",
]
