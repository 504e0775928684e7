"""Quantitative metallography on segmented micrographs: particles, fractions, denuded zones.

From a label image (one class index per pixel) and a pixel size (µm; pixels when unknown):

- :func:`particles`: the connected components (8-connected) of one class, each with its
  area, equivalent-circle diameter d = √(4A/π), the major and minor axes of the ellipse of
  equal second moments, their ratio (aspect ratio) and the major axis' orientation
  (degrees between the image's row axis and the major axis, counter-clockwise, in
  [−90, 90], scikit-image's convention), and its centroid;
  particles cut by the image border are flagged, as size statistics usually leave them out;
- :func:`area_fractions`: the share of pixels of each class;
- :func:`summary`: counts per unit area and the size distribution of one class;
- :func:`denuded_zone_widths`: for every boundary pixel of a reference class (DeCost et
  al.'s network carbide), the distance to the nearest pixel of a particle class (the
  spheroidite), the width of the zone around the reference that the particles avoid;
- :func:`compare_distributions`: a two-sample Kolmogorov–Smirnov test of a quantity measured
  on predicted against annotated masks, as DeCost et al. compared their size distributions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage, stats
from skimage import measure

from deepmat.errors import DataError

PARTICLE_COLUMNS = (
    "particle",
    "area",
    "equivalent_diameter",
    "major_axis",
    "minor_axis",
    "aspect_ratio",
    "orientation_deg",
    "centroid_row",
    "centroid_col",
    "touches_border",
)


def _checked(labels: np.ndarray, pixel_size: float | None) -> tuple[np.ndarray, float]:
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0:
        raise DataError(f"a label image is 2-D and not empty, got shape {labels.shape}")
    if pixel_size is not None and not pixel_size > 0:
        raise DataError(f"the pixel size must be positive, got {pixel_size}")
    return labels, float(pixel_size or 1.0)


def particles(labels: np.ndarray, class_index: int, pixel_size: float | None = None) -> dict:
    """The particles of ``class_index`` as columns (:data:`PARTICLE_COLUMNS`): lengths in
    µm and areas in µm² with ``pixel_size`` µm per pixel, in pixels without."""
    labels, size = _checked(labels, pixel_size)
    components = measure.label(labels == class_index, connectivity=2)
    rows: dict[str, list] = {column: [] for column in PARTICLE_COLUMNS}
    height, width = labels.shape
    for region in measure.regionprops(components):
        top, left, bottom, right = region.bbox
        major, minor = region.axis_major_length, region.axis_minor_length
        values = (
            region.label,
            region.area * size**2,
            np.sqrt(4 * region.area / np.pi) * size,
            major * size,
            minor * size,
            major / minor if minor > 0 else np.inf,
            float(np.degrees(region.orientation)),
            region.centroid[0] * size,
            region.centroid[1] * size,
            top == 0 or left == 0 or bottom == height or right == width,
        )
        for column, value in zip(PARTICLE_COLUMNS, values, strict=True):
            rows[column].append(value)
    return {column: np.asarray(values) for column, values in rows.items()}


def area_fractions(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """The share of the image's pixels in each class."""
    labels, _ = _checked(labels, None)
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=len(class_names))
    if len(counts) > len(class_names):
        raise DataError(f"labels up to {len(counts) - 1} for {len(class_names)} classes")
    return {name: float(c / labels.size) for name, c in zip(class_names, counts, strict=True)}


def summary(
    labels: np.ndarray,
    class_index: int,
    pixel_size: float | None = None,
    include_border: bool = False,
) -> dict:
    """Count, number per unit area (µm⁻² or px⁻²), area fraction and the distribution of
    equivalent diameters and aspect ratios of one class's particles (those cut by the
    border left out of the distributions unless ``include_border``)."""
    labels, size = _checked(labels, pixel_size)
    table = particles(labels, class_index, pixel_size)
    kept = np.ones(len(table["particle"]), bool) if include_border else ~table["touches_border"]
    diameters = table["equivalent_diameter"][kept]
    quantiles = (
        dict(
            zip(
                ("d10", "d50", "d90"), np.quantile(diameters, [0.1, 0.5, 0.9]).tolist(), strict=True
            )
        )
        if len(diameters)
        else {}
    )
    return {
        "count": len(table["particle"]),
        "count_inside": int(kept.sum()),
        "per_area": len(table["particle"]) / (labels.size * size**2),
        "area_fraction": float(np.mean(labels == class_index)),
        "mean_equivalent_diameter": float(diameters.mean()) if len(diameters) else None,
        "mean_aspect_ratio": float(table["aspect_ratio"][kept].mean()) if len(diameters) else None,
        "unit": "µm" if pixel_size else "px",
    } | quantiles


def denuded_zone_widths(
    labels: np.ndarray,
    reference: int,
    particle_class: int,
    pixel_size: float | None = None,
) -> np.ndarray:
    """For each boundary pixel of class ``reference`` (a pixel of it with a 4-neighbour of
    another class), the Euclidean distance to the nearest pixel of ``particle_class``."""
    labels, size = _checked(labels, pixel_size)
    region = labels == reference
    if not region.any():
        raise DataError(f"class {reference} is absent: no zone around it to measure")
    if not (labels == particle_class).any():
        raise DataError(f"class {particle_class} is absent: no particles to measure to")
    boundary = region & ~ndimage.binary_erosion(region, border_value=1)
    distance = ndimage.distance_transform_edt(labels != particle_class)
    return distance[boundary] * size


def compare_distributions(annotated: np.ndarray, predicted: np.ndarray) -> dict:
    """Two-sample Kolmogorov–Smirnov statistic and p-value of ``predicted`` against
    ``annotated`` values (e.g. particle diameters); a small p says they differ."""
    annotated, predicted = np.asarray(annotated, float), np.asarray(predicted, float)
    if len(annotated) == 0 or len(predicted) == 0:
        raise DataError(
            f"a KS test needs values on both sides: {len(annotated)} annotated, "
            f"{len(predicted)} predicted"
        )
    result = stats.ks_2samp(annotated, predicted)
    return {
        "ks_statistic": float(result.statistic),
        "ks_pvalue": float(result.pvalue),
        "n_annotated": len(annotated),
        "n_predicted": len(predicted),
    }
