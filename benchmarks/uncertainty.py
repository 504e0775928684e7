"""How sure deepmat's regressors are, and whether that holds on data they have not seen.

For each model (``composition``: Roost on ``oqmd-dhf``; ``elemnet``: ElemNet on
``oqmd-dhf``; ``cgcnn``: the gated CGCNN on ``mp-eform``, split as ``cgcnn-mp-eform``;
``forest``: RF-Magpie on ``oqmd-dhf``) every method of standard deviations that applies:

- ``ensemble``: ``--members`` networks from seeds 0, 1, … (their spread);
- ``snapshots``: a trained network and ``--members`` − 1 copies of it fine-tuned for a few
  epochs from seeds 0, 1, … (``--snapshots elemnet=elemnet-oqmd``);
- ``mc_dropout``: one network trained with dropout throughout, 30 passes with dropout on;
- ``heteroscedastic``: one network with a second output, ln σ, on the Gaussian NLL;
- ``sigma_head``: a trained network (``--snapshots elemnet=elemnet-oqmd``) given a second
  output, ln σ, and fine-tuned for ``--snapshot-epochs`` at ``--snapshot-lr`` with dropout
  off and its first ``--sigma-head-freeze`` layers fixed, on ``--sigma-head-loss`` (by
  default the β-NLL of a Laplace distribution, whose pull on the mean is the L1 loss's that
  trained the source): a σ for a shipped single network without retraining it or shipping
  more weights;
- ``companion``: a trained network (``--snapshots elemnet=elemnet-oqmd``) paired with a
  companion trained on the same split (``--companion elemnet=DIR``, e.g. the shipped pair's
  own, ``src/deepmat/pretrained/elemnet-oqmd/companion``, a Roost): their
  disagreement and the companion's own σ (:class:`deepmat.train.Paired`), a σ for a shipped
  single network that changes none of its predictions;
- ``trees``: the spread of a forest's trees;

each before and after recalibration (``<method>_recalibrated``: one factor on σ fitted by
maximum likelihood; ``<method>_recalibrated_area``: the factor with the smallest
miscalibration area, for errors with heavier tails than a Gaussian's;
``<method>_recalibrated_coverage``: the split-conformal factor that makes the 95 %
interval hold ``--coverage``, 95 % by default), all fitted on the calibration half. An
ensemble whose members give their own σ gets a factor on each part of its variance, the
members' own and their spread (``scales``, by
:func:`deepmat.train.calibration.fit_component_scales`). A method that does not apply
records the model's own error (Roost and CGCNN have no dropout). The validation split is
cut in two halves at random: the first stops training early and fits the recalibration,
the second scores every method, so no score comes from data a model or its calibration
saw. Metrics (uncertainty-toolbox definitions): miscalibration area, RMS calibration
error, sharpness, Gaussian NLL and the observed coverage of the 68 % and 95 % intervals,
beside the MAE.

    python benchmarks/uncertainty.py --out runs/uncertainty                  # full
    python benchmarks/uncertainty.py --out /tmp/u --quick                    # seconds

``--train-size`` and ``--epochs`` shrink a run to what a machine allows (the results say
so); ``--use composition.ensemble=runs/composition/ensemble`` scores a model trained
elsewhere (on the same train split) instead of training it, and ``--methods`` keeps only
the methods named; a run of some ``--models`` or ``--methods`` keeps the others' earlier
results (the picture places every model and method against the targets, and draws the
calibration curves of the latest run's). Each model is saved,
recalibrated on the calibration half by the split-conformal criterion, as
``OUT/<model>_<method>/``. Rerunning resumes from the checkpoints. Results:
``benchmarks/results/uncertainty.{json,png}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import deepmat
from _shared import command, machine, merge_earlier, merged_metrics, parser, subsample, write_json
from deepmat.data import dataset_path, load_dataset
from deepmat.data.readers import read_structures
from deepmat.train import Ensemble, Paired, save_model
from deepmat.train.calibration import (
    calibration_curve,
    calibration_metrics,
    fit_component_scales,
    scaled_std,
)
from deepmat.train.config import HETEROSCEDASTIC_LOSSES
from deepmat.train.estimator import UncertaintyUnavailable
from deepmat.train.metrics import save_figure
from deepmat.workflows.composition import make_regressor, train_composition
from deepmat.workflows.crystal import make_structure_model, split_structures, train_structure_model

#: criterion of fit_std_scale and the suffix of its entries
RECALIBRATIONS = (
    ("miscalibration", "_recalibrated_area"),
    ("nll", "_recalibrated"),
    ("coverage", "_recalibrated_coverage"),
)
# model: (dataset, deepmat model name, methods)
NETWORK_METHODS = (
    "ensemble",
    "snapshots",
    "mc_dropout",
    "heteroscedastic",
    "sigma_head",
    "companion",
)
#: the methods that start from the trained network --snapshots names
FROM_SOURCE = ("snapshots", "sigma_head", "companion")
MODELS = {
    "composition": ("oqmd-dhf", "roost", NETWORK_METHODS),
    "elemnet": ("oqmd-dhf", "elemnet", NETWORK_METHODS),
    "cgcnn": ("mp-eform", "cgcnn", NETWORK_METHODS),
    "forest": ("oqmd-dhf", "rf-magpie", ("trees",)),
}
MP_TARGET = "formation_energy_ev_per_atom"
# CrabNet's own uncertainty on the held-out part of the oqmd-dhf split (from its
# published predictions)
CRABNET = {"miscalibration_area": 0.025, "coverage_95": 0.874}
TARGETS = {"miscalibration_area": 0.05, "coverage_95": (0.93, 0.97)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "uncertainty")
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    p.add_argument(
        "--methods",
        nargs="*",
        default=None,
        choices=[*NETWORK_METHODS, "trees"],
        help="(default: every method that applies to each model)",
    )
    p.add_argument("--members", type=int, default=5)
    p.add_argument(
        "--snapshots",
        nargs="*",
        default=[],
        metavar="MODEL=SOURCE",
        help="method snapshots of MODEL: an ensemble of SOURCE (a model trained on the same "
        "train split) and --members - 1 copies fine-tuned from it, seeds 0, 1, …, for "
        "--snapshot-epochs at --snapshot-lr with dropout off (as cgcnn-mp-eform was made); "
        "method sigma_head: SOURCE with a σ output, fine-tuned the same way",
    )
    p.add_argument(
        "--companion",
        nargs="*",
        default=[],
        metavar="MODEL=COMPANION",
        help="method companion of MODEL: its --snapshots SOURCE paired with COMPANION (a "
        "saved model trained on the same train split that reads the same input)",
    )
    p.add_argument("--snapshot-epochs", type=int, default=3)
    p.add_argument("--snapshot-lr", type=float, default=2e-4)
    p.add_argument(
        "--sigma-head-freeze",
        type=int,
        default=0,
        help="sigma_head keeps the source's first N layers fixed",
    )
    p.add_argument(
        "--sigma-head-loss",
        default="laplace-beta-nll",
        choices=HETEROSCEDASTIC_LOSSES,
        help="sigma_head's loss (the plain NLLs pull the mean away from what the source learned)",
    )
    p.add_argument("--epochs", type=int, default=None, help="(default: each preset's)")
    p.add_argument("--train-size", type=int, default=None, help="(default: the whole split)")
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--use", nargs="*", default=[], help="MODEL.METHOD=PATH, trained elsewhere")
    p.add_argument(
        "--coverage",
        type=float,
        default=0.95,
        help="the share the split-conformal factor makes the 95 %% interval hold on the "
        "calibration half (a little below 0.95 trades coverage for area)",
    )
    return p.parse_args(argv)


def halves(table, seed: int = 1):
    """Two random halves of ``table``: (calibration, assessment)."""
    order = np.random.default_rng(seed).permutation(len(table))
    return table.subset(np.sort(order[: len(order) // 2])), table.subset(
        np.sort(order[len(order) // 2 :])
    )


def load_parts(dataset: str, args: argparse.Namespace) -> tuple:
    """Train and validation tables of ``dataset``: oqmd-dhf as distributed, mp-eform split
    as the ``cgcnn-mp-eform`` model was (grouped by crystal, 10 % validation, 10 % test)."""
    if dataset == "mp-eform":
        table = read_structures("mp-eform", limit=1100 if args.quick else None)
        train, val, _, _ = split_structures(table, val=0.1, test=0.1, seed=0)
    else:
        train, val = load_dataset(dataset, "train"), load_dataset(dataset, "val")
        if args.quick:
            val = subsample(val, 240)
    return subsample(train, args.train_size), val


def build(model: str, method: str, seed: int, args: argparse.Namespace, **options):
    """An untrained estimator of ``model`` for ``method``, member seed ``seed``;
    ``options`` override training options."""
    dataset, name, _ = MODELS[model]
    overrides = {"progress": sys.stderr.isatty(), "seed": seed}
    if args.epochs:
        overrides["epochs"] = args.epochs
    overrides |= options
    if method == "mc_dropout":
        overrides["dropout_until"] = 1.0
    heteroscedastic = method in ("heteroscedastic", "sigma_head")
    if dataset == "mp-eform":
        return make_structure_model(
            name, MP_TARGET, "eV/atom", "benchmark", overrides, heteroscedastic=heteroscedastic
        )
    if name.startswith("rf-"):
        return make_regressor(name, "benchmark", "dhf", "eV/atom", trees=args.trees, seed=seed)
    return make_regressor(
        name, "benchmark", "dhf", "eV/atom", overrides, seed=seed, heteroscedastic=heteroscedastic
    )


def train(estimator, dataset: str, train_part, stop, where: Path):
    fit = train_structure_model if dataset == "mp-eform" else train_composition
    return fit(estimator, train_part, stop, where)


def trained(model: str, method: str, train_part, stop, args, family: str) -> object:
    """The estimator of ``model`` (of ``family``) with ``method``: given by ``--use``, or
    trained here (an ensemble member by member, each resumable)."""
    given = dict(item.split("=", 1) for item in args.use)
    if f"{model}.{method}" in given:
        return deepmat.load(given[f"{model}.{method}"])
    dataset = MODELS[model][0]
    where = args.out / f"{model}_{method}"
    if method == "companion":
        companion = deepmat.load(companion_source(model, args))
        network = source_network(model, args, family)
        return Paired.of(network, companion, stop, name=f"{model}-paired")
    options = {}
    if method in FROM_SOURCE:
        options = {
            "init": snapshot_source(model, args),
            "epochs": args.snapshot_epochs,
            "lr": args.snapshot_lr,
            "schedule": "cosine",
            "dropout_until": 0.0,
        }
    if method == "sigma_head":
        options |= {"freeze": args.sigma_head_freeze, "loss": args.sigma_head_loss}
    if method not in ("ensemble", "snapshots"):
        return train(build(model, method, 0, args, **options), dataset, train_part, stop, where)
    first = [source_network(model, args, family)] if method == "snapshots" else []
    members = first + [
        train(
            build(model, method, seed, args, **options),
            dataset,
            train_part,
            stop,
            where / "members" / str(seed),
        )
        for seed in range(args.members - len(first))
    ]
    return Ensemble.from_members(members, stop, name=f"{model}-ensemble")


def snapshot_source(model: str, args: argparse.Namespace) -> str:
    """The model ``--snapshots`` names for ``model``; UncertaintyUnavailable without one."""
    given = dict(item.split("=", 1) for item in args.snapshots)
    if model not in given:
        raise UncertaintyUnavailable(
            f"snapshots and sigma_head of {model} need --snapshots {model}=SOURCE"
        )
    return given[model]


def source_network(model: str, args: argparse.Namespace, family: str):
    """The network of ``family`` in the model ``--snapshots`` names for ``model`` (the model
    itself, or the network of a shipped pair or ensemble)."""
    return deepmat.load(snapshot_source(model, args)).starting_point(family)


def companion_source(model: str, args: argparse.Namespace) -> str:
    """The companion ``--companion`` names for ``model``; UncertaintyUnavailable without one."""
    given = dict(item.split("=", 1) for item in args.companion)
    if model not in given:
        raise UncertaintyUnavailable(f"companion of {model} needs --companion {model}=DIR")
    return given[model]


def assess(model: str, method: str, train_part, calibration, assessment, args) -> tuple[dict, dict]:
    """Scores of ``method`` on ``assessment`` before and after recalibration on
    ``calibration``, and the calibration curves (or the reason it does not apply)."""
    start = time.perf_counter()
    try:
        probe = build(model, method, 0, args)
        if method in FROM_SOURCE:
            snapshot_source(model, args)
        if method == "companion":
            companion_source(model, args)
        if method == "mc_dropout":  # refuses before any training where it cannot apply
            probe.predict(calibration.subset([0, 1]), return_std=True)
    except UncertaintyUnavailable as error:
        return {method: {"not_applicable": str(error)}}, {}
    estimator = trained(model, method, train_part, calibration, args, probe.family)
    estimator.recalibration = {}  # the raw σ, whatever a model given by --use carried
    truth = estimator.targets_of(assessment)
    mean, parts = estimator.variance_components(assessment)
    std = np.sqrt(sum(parts.values()))
    entry = {
        method: {"mae": float(np.mean(np.abs(truth - mean)))}
        | calibration_metrics(truth, mean, std)
    }
    entry[method] |= {"n": len(truth), "model": str(args.out / f"{model}_{method}")}
    members = estimator.card().get("members", {})
    if members:
        entry[method] |= {"members": members.get("families"), "weights": members.get("weights")}
    curves = {method: calibration_curve(truth, mean, std)[1]}
    held = estimator.targets_of(calibration), *estimator.variance_components(calibration)
    for criterion, label in RECALIBRATIONS:
        scales = fit_component_scales(*held, criterion, args.coverage)[0]
        scaled = scaled_std(parts, scales)
        entry[method + label] = {
            "mae": entry[method]["mae"],
            "scales": scales,
            "criterion": criterion,
        }
        entry[method + label] |= calibration_metrics(truth, mean, scaled)
        curves[method + label] = calibration_curve(truth, mean, scaled)[1]
    estimator.recalibrate(calibration, criterion="coverage", coverage=args.coverage)
    save_model(estimator, args.out / f"{model}_{method}")
    entry[method]["seconds"] = time.perf_counter() - start
    return entry, curves


def plot(results: dict, curves: dict, path: Path) -> None:
    """Every model and method of the results (this run's and the earlier ones') against the
    targets, then this run's calibration curves, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in results["metrics"] if curves.get(m)]
    fig, axes = plt.subplots(1, 1 + len(models), figsize=(4.2 * (1 + len(models)), 4), dpi=120)
    axes = np.atleast_1d(axes)
    plot_targets(axes[0], results["metrics"])
    for ax, model in zip(axes[1:], models, strict=True):
        for label, observed in curves[model].items():
            expected = np.linspace(0, 1, len(observed))
            ax.plot(
                expected, observed, ls="--" if label.endswith("recalibrated") else "-", label=label
            )
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set(xlabel="expected share in interval", ylabel="observed share", title=model)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_targets(ax, metrics: dict) -> None:
    """95 % coverage against miscalibration area for every model (colour) and method, raw
    (open) and recalibrated (filled), with the target box and CrabNet's anchor."""
    from matplotlib.patches import Rectangle

    low, high = TARGETS["coverage_95"]
    width = TARGETS["miscalibration_area"]
    ax.add_patch(Rectangle((0, low), width, high - low, color="g", alpha=0.25))
    for colour, (model, entries) in enumerate(metrics.items()):
        rows = {method: row for method, row in entries.items() if "coverage_95" in row}
        ax.scatter(
            [row["miscalibration_area"] for row in rows.values()],
            [row["coverage_95"] for row in rows.values()],
            edgecolors=f"C{colour}",
            facecolors=[f"C{colour}" if "recalibrated" in m else "none" for m in rows],
            s=25,
            label=model,
        )
    ax.scatter(
        CRABNET["miscalibration_area"],
        CRABNET["coverage_95"],
        marker="x",
        color="k",
        label="CrabNet (test)",
    )
    ax.set(
        xlabel="miscalibration area",
        ylabel="95 % interval coverage",
        title="all methods (filled: recalibrated); box: target",
    )
    ax.legend(fontsize=7)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.members, args.epochs, args.train_size, args.trees = 2, 2, 300, 10
    t0 = time.perf_counter()
    metrics: dict = {}
    curves: dict = {}
    data: dict = {}
    sizes: dict = {}
    for model in args.models:
        dataset, _, methods = MODELS[model]
        train_part, val = load_parts(dataset, args)
        calibration, assessment = halves(val)
        data[model] = {"dataset": dataset, "files": [str(f) for f in dataset_files(dataset)]}
        sizes[model] = {
            "train": len(train_part),
            "calibration": len(calibration),
            "assessment": len(assessment),
        }
        metrics[model], curves[model] = {}, {}
        for method in [m for m in methods if args.methods is None or m in args.methods]:
            entry, curve = assess(model, method, train_part, calibration, assessment, args)
            metrics[model] |= entry
            curves[model] |= curve
    results = {
        "benchmark": "uncertainty",
        "quick": args.quick,
        "command": command(),
        "data": data,
        "split": "oqmd-dhf train/val as distributed; mp-eform grouped by crystal (10 % val, "
        "10 % test, seed 0); validation halved at random (seed 1): calibration half for early "
        "stopping and recalibration, assessment half for every score",
        "sizes": sizes,
        "settings": {
            "members": args.members,
            "snapshots": args.snapshots,
            "companion": args.companion,
            "snapshot_epochs": args.snapshot_epochs,
            "snapshot_lr": args.snapshot_lr,
            "sigma_head_freeze": args.sigma_head_freeze,
            "sigma_head_loss": args.sigma_head_loss,
            "epochs": args.epochs,
            "train_size": args.train_size,
            "methods": args.methods,
            "use": args.use,
            "coverage": args.coverage,
        },
        "reference": {"crabnet_oqmd_test": CRABNET, "targets": TARGETS},
        "metrics": metrics,
        "wall_seconds": {"total": time.perf_counter() - t0},
        "machine": machine(),
        "models": {
            f"{m}_{method}": row["model"]
            for m, entries in metrics.items()
            for method, row in entries.items()
            if "model" in row
        },
    }
    if args.use:
        results["use_note"] = (
            "models given by --use were trained elsewhere on the same train split; their "
            "training chose its best epoch on the whole validation split, both halves"
        )
    stem = "uncertainty_quick" if args.quick else "uncertainty"
    results["commands"] = {f"{m}.{method}": command() for m in metrics for method in metrics[m]}
    # the models and methods not rerun keep their earlier results
    results = merge_earlier(results, args.results / f"{stem}.json", ("data", "sizes", "models"))
    results["metrics"] = merged_metrics(args.results / f"{stem}.json", metrics)
    write_json(results, args.results, stem)
    plot(results, curves, args.results / f"{stem}.png")
    return results


def dataset_files(dataset: str) -> list[Path]:
    if dataset == "mp-eform":
        return [dataset_path("mp-eform")]
    return [dataset_path(dataset, "train"), dataset_path(dataset, "val")]


if __name__ == "__main__":
    main()
