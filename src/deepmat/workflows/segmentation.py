"""Segmentation jobs: train on a named set or folders, label new images, measure the labels.

A *data* argument is a named micrograph set (``nasa-super1``, ``metaldam``, …; its ``train``
and ``val`` splits) or a folder pair ``IMAGES:MASKS`` with a class map file (JSON:
``{"names": [...], "values": [...], "rest": null}``, values RGB triples or grey levels).
Predicted labels are written as PNG images of class indices (0, 1, …; what ``deepmat
measure`` reads), with an optional overlay of the classes' colours on the micrograph.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from deepmat.data.micrographs import (
    MICROGRAPH_SETS,
    ClassMap,
    Micrograph,
    image_files,
    load_micrographs,
    read_image,
    read_pairs,
)
from deepmat.errors import DataError
from deepmat.physics.metallography import (
    PARTICLE_COLUMNS,
    denuded_zone_widths,
    particles,
    summary,
)
from deepmat.train.saved import save_model
from deepmat.train.segmentation import SegmentationModel, SegmentationSpec

#: overlay colours of classes 0, 1, … (class 0, usually the matrix, left uncoloured)
PALETTE = np.array(
    [[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180]]
)


def read_labelled(
    data: str, split: str, classes: Path | None = None, class_map: ClassMap | None = None
) -> tuple:
    """(micrographs, class map) of a named set's ``split``, or of ``IMAGES:MASKS`` folders
    read with ``class_map`` or the class map file ``classes``."""
    if data in MICROGRAPH_SETS:
        return load_micrographs(data, split), MICROGRAPH_SETS[data].class_map
    images, _, masks = data.partition(":")
    if not masks or (classes is None and class_map is None):
        with_map = "" if class_map else " with --classes CLASS_MAP.json"
        raise DataError(
            f"{data}: give a named set ({', '.join(MICROGRAPH_SETS)}) or IMAGES:MASKS "
            f"folders{with_map}"
        )
    if class_map is None:
        try:
            class_map = ClassMap.from_dict(json.loads(Path(classes).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{classes}: not a class map ({exc})") from None
    return read_pairs(images, masks, class_map, crop_to_mask=True), class_map


def train_segmentation(
    data: str,
    out: str | Path,
    *,
    model: str = "unet",
    pretrained: bool = True,
    preset: str = "default",
    overrides: dict | None = None,
    loss: str | None = None,
    val: str | None = None,
    classes: Path | None = None,
    network: dict | None = None,
    resume: bool = True,
) -> SegmentationModel:
    """Train on ``data`` (validated on its ``val`` split, or on the ``val`` folders), save
    the model to ``out`` with an overlay of its first validation image. ``network`` holds
    :class:`SegmentationSpec` fields (tile, depth, scale, ...) that replace the preset's."""
    train, class_map = read_labelled(data, "train", classes)
    validation, _ = read_labelled(val or data, "val", classes)
    network = {"kind": model, "pretrained": pretrained} | (network or {})
    estimator = segmentation_estimator(
        train, class_map, f"{model}-{data.split(':')[0]}", preset, overrides, loss, network
    )
    out = Path(out)
    estimator.fit(train, val=validation, workdir=out / "work", resume=resume)
    estimator.training["data"] = {"train": data, "val": val or data}
    save_model(estimator, out)
    first = validation[0]
    (label,) = estimator.predict([first])
    write_overlay(first, label, out / f"overlay_{first.name}.png", truth=first.labels)
    return estimator


def segmentation_estimator(
    train: list[Micrograph],
    class_map: ClassMap,
    name: str,
    preset: str = "default",
    overrides: dict | None = None,
    loss: str | None = None,
    network: dict | None = None,
) -> SegmentationModel:
    """An untrained segmentation network of ``preset`` for the micrographs ``train``: grey
    or RGB as they are; ``overrides`` replace training options, ``network`` fields of the
    preset's :class:`SegmentationSpec`."""
    arguments = SegmentationModel.preset_arguments(preset, overrides, loss=loss)
    channels = 3 if any(m.image.ndim == 3 for m in train) else 1
    spec = replace(arguments.get("spec") or SegmentationSpec(), channels=channels)
    spec = replace(spec, **(network or {}))
    return SegmentationModel(class_map, **(arguments | {"spec": spec}), name=name)


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Image files given, and the images of folders given, in order."""
    return [f for path in inputs for f in (image_files(path) if path.is_dir() else [path])]


def segment_images(
    model: SegmentationModel,
    inputs: list[Path],
    out: Path,
    crop_bottom: int = 0,
    overlay: bool = False,
) -> list[Path]:
    """Label every image of ``inputs`` (files or folders); writes ``out/<stem>.png``
    (class indices) and, with ``overlay``, ``out/overlays/<stem>.png``."""
    files = expand_inputs(inputs)
    if not files:
        raise DataError("no images to segment")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in files:
        micrograph = read_image(path, crop_bottom)
        (labels,) = model.predict([micrograph])
        target = out / f"{path.stem}.png"
        Image.fromarray(labels).save(target)
        written.append(target)
        if overlay:
            (out / "overlays").mkdir(exist_ok=True)
            write_overlay(micrograph, labels, out / "overlays" / f"{path.stem}.png")
    return written


def write_overlay(
    micrograph: Micrograph, labels: np.ndarray, path: Path, truth: np.ndarray | None = None
) -> Path:
    """The micrograph with each class's colour blended in (class 0 left clear); beside the
    annotation's when ``truth`` is given."""
    grey = micrograph.image if micrograph.image.ndim == 2 else micrograph.image.mean(-1)
    base = np.repeat((grey * 255)[..., None], 3, axis=-1)

    def tint(classes: np.ndarray) -> np.ndarray:
        colours = PALETTE[np.asarray(classes) % len(PALETTE)]
        mixed = np.where((classes > 0)[..., None], 0.55 * base + 0.45 * colours, base)
        return mixed.astype(np.uint8)

    panels = [tint(labels)] + ([tint(truth)] if truth is not None else [])
    gap = np.full((base.shape[0], 8, 3), 255, np.uint8)
    picture = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    Image.fromarray(picture).save(path)
    return path


def read_label_images(inputs: list[Path]) -> list[tuple[str, np.ndarray]]:
    """(stem, class indices) of label PNGs (files or folders), as ``segment`` writes them."""
    files = expand_inputs(inputs)
    out = []
    for path in files:
        with Image.open(path) as opened:
            labels = np.asarray(opened)
        if labels.ndim != 2:
            raise DataError(
                f"{path}: a label image has one class index per pixel, not {labels.shape[2]} "
                "channels (colour masks: read them with their class map)"
            )
        out.append((path.stem, labels))
    return out


def measure_labels(
    inputs: list[Path], class_index: int, pixel_size: float | None = None
) -> tuple[dict, dict]:
    """Every particle of ``class_index`` in the label images (a column per
    :data:`PARTICLE_COLUMNS`, plus the image) and the summary per image and over all."""
    table: dict[str, list] = {"image": [], **{c: [] for c in PARTICLE_COLUMNS}}
    per_image = {}
    for stem, labels in read_label_images(inputs):
        found = particles(labels, class_index, pixel_size)
        table["image"] += [stem] * len(found["particle"])
        for column in PARTICLE_COLUMNS:
            table[column] += found[column].tolist()
        per_image[stem] = summary(labels, class_index, pixel_size)
    return table, per_image


def size_histogram(table: dict, path: Path, unit: str) -> Path:
    """Histogram of the equivalent diameters of the particles not cut by the border."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepmat.train.metrics import save_figure

    inside = ~np.asarray(table["touches_border"], dtype=bool)
    diameters = np.asarray(table["equivalent_diameter"], dtype=float)[inside]
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    ax.hist(diameters, bins=30 if len(diameters) > 30 else 10)
    ax.set(
        xlabel=f"equivalent diameter ({unit})",
        ylabel="particles",
        title=f"{len(diameters)} particles inside the images",
    )
    return save_figure(fig, path)


def evaluate_segmentation(
    model: SegmentationModel,
    data: str,
    part: str,
    plot: Path | None,
    home: Path,
    stem: str,
) -> dict:
    """Segmentation metrics of ``model`` on ``data`` (a named set's ``part``, or
    ``IMAGES:MASKS`` folders read with the model's class map), and an overlay of the first
    image beside its annotation."""
    micrographs, _ = read_labelled(data, part, class_map=model.class_map)
    predictions = model.predict(micrographs)
    metrics = model.score_labels(micrographs, predictions)
    first = micrographs[0]
    write_overlay(first, predictions[0], plot or home / f"overlay_{stem}.png", truth=first.labels)
    return metrics | {"part": part if data in MICROGRAPH_SETS else "file"}


def denuded_zones(
    inputs: list[Path], reference: int, particle_class: int, pixel_size: float | None = None
) -> dict:
    """The denuded-zone width at every boundary pixel of class ``reference`` in the label
    images (columns image, width); images without either class are skipped."""
    table: dict[str, list] = {"image": [], "width": []}
    for stem, labels in read_label_images(inputs):
        if (labels == reference).any() and (labels == particle_class).any():
            widths = denuded_zone_widths(labels, reference, particle_class, pixel_size)
            table["image"] += [stem] * len(widths)
            table["width"] += widths.tolist()
    if not table["width"]:
        raise DataError(f"no image holds both class {reference} and class {particle_class}")
    return table
