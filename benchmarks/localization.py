"""Localization of strain in contrast-10 and contrast-50 composites (Yang et al. 2019): the
slice CNN on 11³ neighbourhoods against a periodic 3-D FCN and the MKS first-order method.

Generates its own ground truth for each contrast: random periodic 21³ microstructures
(Gaussian random fields with feature sizes from one to three voxels, isotropic and
elongated, over volume fractions 0.15-0.85) solved by the FFT elasticity solver under the
uniaxial macroscopic strain ε̄11 = 10⁻³ for the local strain field ε11. The volume elements
are split at random into train / validation / held-out test (each one drawn from its own
seed, so no structure is on two sides); settings are chosen on validation only (MKS ridge,
the networks' best epoch), and the test set is touched once at the end. Error: the mean
absolute strain error MASE = mean over voxels of |ε_pred − ε_true| / ε̄11 (%).

    python benchmarks/localization.py --out runs/localization        # full (~30 min, 2 cores)
    python benchmarks/localization.py --out /tmp/q --quick            # seconds

Each trained model is saved as ``OUT/<model>_c10/`` and ``OUT/<model>_c50/``, the validation
and test volume elements as ``OUT/data/c10/{val,test}.h5`` (``deepmat evaluate OUT/fcn3d_c10
OUT/data/c10/test.h5 --json``). Results:
``benchmarks/results/localization.{json,png}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from _shared import command, machine, parser, write_json
from deepmat.data.microstructures import MicrostructureSpec
from deepmat.data.splits import random_split
from deepmat.data.voxels import read_voxel_dataset, write_voxel_dataset
from deepmat.models.localization import STRAIN_FNO, StrainFCNSpec
from deepmat.physics import IsotropicPhase
from deepmat.train import save_model
from deepmat.train.field_plots import draw_field_comparison
from deepmat.train.localization import (
    FCN3DRegressor,
    LocalizationRegressor,
    SliceCNNRegressor,
)
from deepmat.workflows.generate import generate_dataset
from deepmat.workflows.microstructure import select_mks

CONTRASTS = (10, 50)
MODELS = ("cnn_slices", "fcn3d", "mks")
PAPER = {
    "source": "Yang et al., Acta Mater. 166, 335 (2019): 21^3 MVEs, 2500 (c10) and 3000 (c50)",
    "mase": {
        "cnn_slices": {"mase_c10": 3.07, "mase_c50": 5.71},
        "mks": {"mase_c10": 10.86, "mase_c50": 26.46},
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "localization")
    p.add_argument("--grid", type=int, default=21, help="voxels per edge (the paper: 21)")
    p.add_argument("--n", type=int, default=800, help="microstructures per contrast")
    p.add_argument("--val", type=float, default=0.15, help="fraction for validation")
    p.add_argument("--test", type=float, default=0.15, help="fraction held out for test")
    p.add_argument("--neighbourhood", type=int, default=11, help="slice CNN block edge")
    p.add_argument("--voxels-per-mve", type=int, default=500, help="slice CNN samples per MVE")
    p.add_argument("--cnn-epochs", type=int, default=None, help="(the benchmark preset's)")
    p.add_argument("--fcn-epochs", type=int, default=None, help="(the benchmark preset's)")
    p.add_argument("--fcn-channels", type=int, default=STRAIN_FNO.channels)
    p.add_argument("--fcn-dilations", type=int, nargs="+", default=list(STRAIN_FNO.dilations))
    p.add_argument(
        "--fcn-modes", type=int, default=STRAIN_FNO.modes, help="spectral modes (0: none)"
    )
    p.add_argument("--workers", type=int, default=2, help="parallel solver tasks (Dask)")
    p.add_argument("--curve", type=float, nargs="*", default=[0.5])
    return p.parse_args(argv)


def families(grid: int) -> list[MicrostructureSpec]:
    """Gaussian random fields in equal shares: isotropic features of 1, 1.5 and 2.5 voxels
    (at 21³) and features elongated along axis 1 (the loading axis) and across it."""
    shape = (grid,) * 3
    scale = grid / 21
    sizes = [(1.0,) * 3, (1.5,) * 3, (2.5,) * 3, (3.0, 1.5, 1.5), (1.5, 1.5, 3.0)]
    return [
        MicrostructureSpec("grf", shape, (0.15, 0.85), tuple(max(s * scale, 0.7) for s in size))
        for size in sizes
    ]


def generate(out: Path, grid: int, n: int, contrast: float, workers: int, seed: int) -> dict:
    """``n`` structures of all families with their ε11 fields, timings and solver records."""
    parts, timing = [], {}
    specs = families(grid)
    for i, spec in enumerate(specs):
        count = n // len(specs) + (i < n % len(specs))
        path = out / "data" / f"c{contrast:g}" / f"family{i}.h5"
        report = generate_dataset(
            path,
            spec,
            count,
            contrast=contrast,
            label="strain",
            seed=seed + 1000 * i,
            workers=workers,
            progress=sys.stderr.isatty(),
        )
        timing[f"family{i}"] = {
            "spec": spec.to_dict(),
            "n": count,
            "seconds": report.wall_seconds,
            "file": str(path),
        }
        parts.append(read_voxel_dataset(path))
    strain = np.concatenate([p.strain for p in parts])
    return {
        "x": np.concatenate([p.microstructures for p in parts]),
        "strain": strain,
        "e": np.ascontiguousarray(strain[:, 0]),
        "attrs": parts[0].attrs | {"families": [spec.to_dict() for spec in specs]},
        "macro_strain": float(parts[0].attrs["macro_strain"][0]),
        "solve_seconds": float(np.mean(np.concatenate([p.solve_seconds for p in parts]))),
        "iterations": float(np.mean(np.concatenate([p.iterations for p in parts]))),
        "generated": timing,
    }


def fit_cnn(x, e, val, macro: float, phases, args, workdir: Path) -> SliceCNNRegressor:
    """The slice CNN of the ``benchmark`` preset, at the command line's sizes."""
    arguments = SliceCNNRegressor.preset_arguments(
        "benchmark", config=_training(args.cnn_epochs), voxels_per_sample=args.voxels_per_mve
    )
    arguments["spec"] = replace(arguments["spec"], size=args.neighbourhood)
    model = SliceCNNRegressor(**arguments, phases=phases, name="cnn_slices")
    return model.fit(x, e, val=val, macro_strain=macro, workdir=workdir)


def fit_fcn(x, e, val, macro: float, phases, args, workdir: Path) -> FCN3DRegressor:
    """The spectral FCN of the ``benchmark`` preset, at the command line's sizes."""
    spec = StrainFCNSpec(args.fcn_channels, tuple(args.fcn_dilations), modes=args.fcn_modes)
    model = FCN3DRegressor.from_preset(
        "benchmark", config=_training(args.fcn_epochs), spec=spec, phases=phases, name="fcn3d"
    )
    return model.fit(x, e, val=val, macro_strain=macro, workdir=workdir)


def _training(epochs: int | None) -> dict:
    """Options replacing the preset's: the epochs asked for, all of them trained."""
    given = {"progress": sys.stderr.isatty()}
    return given | ({"epochs": epochs, "patience": epochs} if epochs else {})


def timed_predict(model: LocalizationRegressor, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Predicted fields and seconds per volume element."""
    start = time.perf_counter()
    fields = model.predict(x)
    return fields, (time.perf_counter() - start) / len(x)


def run_contrast(contrast: float, args, seed: int) -> dict:
    """Generate, split, train the three models and evaluate them on test."""
    phases = (IsotropicPhase(1.0, 0.3), IsotropicPhase(float(contrast), 0.3))
    start = time.perf_counter()
    data = generate(args.out, args.grid, args.n, contrast, args.workers, seed)
    generate_seconds = time.perf_counter() - start
    parts = random_split(len(data["x"]), args.val, args.test, seed).indices()
    x, e, macro = data["x"], data["e"], data["macro_strain"]
    tag = f"c{contrast:g}"
    for side in ("val", "test"):
        write_voxel_dataset(
            args.out / "data" / tag / f"{side}.h5",
            x[parts[side]],
            strain=data["strain"][parts[side]],
            attrs=data["attrs"],
        )
    train = x[parts["train"]], e[parts["train"]]
    val = x[parts["val"]], e[parts["val"]]
    x_test, e_test = x[parts["test"]], e[parts["test"]]
    work = args.out / "work" / tag
    start = time.perf_counter()
    models = {
        "cnn_slices": fit_cnn(*train, val, macro, phases, args, work / "cnn_slices"),
        "fcn3d": fit_fcn(*train, val, macro, phases, args, work / "fcn3d"),
        "mks": select_mks(train, val, phases, macro_strain=macro),
    }
    train_seconds = time.perf_counter() - start
    metrics, predictions = {}, {}
    for name, model in models.items():
        save_model(model, args.out / f"{name}_{tag}")
        predictions[name], seconds = timed_predict(model, x_test)
        test = model.evaluate(x_test, e_test)
        metrics[name] = {
            f"mase_{tag}": test["mase"],
            f"mae_{tag}": test["mae"],
            f"val_mase_{tag}": model.metrics["val"]["mase"],
            f"train_seconds_{tag}": model.training["seconds"],
            f"predict_seconds_per_mve_{tag}": seconds,
        }
    metrics["mks"][f"selected_{tag}"] = {"ridge": models["mks"].ridge}
    uniform = 100 * float(np.mean(np.abs(e_test - macro))) / macro
    metrics["uniform_strain"] = {f"mase_{tag}": uniform}
    return {
        "tag": tag,
        "contrast": contrast,
        "phases": [{"E": p.youngs_modulus, "nu": p.poisson_ratio} for p in phases],
        "macro_strain": macro,
        "data": data,
        "parts": parts,
        "train": train,
        "val": val,
        "test": (x_test, e_test),
        "models": models,
        "metrics": metrics,
        "predictions": predictions,
        "seconds": {"generate": generate_seconds, "train": train_seconds},
    }


def learning_curve(run: dict, args) -> list[dict]:
    """Test MASE of the three models trained on fractions of the training set."""
    (x, e), val, (x_test, e_test) = run["train"], run["val"], run["test"]
    macro, phases = run["macro_strain"], run["models"]["mks"].phases
    points = []
    for fraction in args.curve:
        n_part = max(2, round(fraction * len(x)))
        part = np.sort(np.random.default_rng(n_part).choice(len(x), n_part, replace=False))
        workdir = args.out / "work" / run["tag"] / "curve" / str(n_part)
        fitted = {
            "mks": select_mks((x[part], e[part]), val, phases, macro_strain=macro),
            "cnn_slices": fit_cnn(x[part], e[part], val, macro, phases, args, workdir / "cnn"),
            "fcn3d": fit_fcn(x[part], e[part], val, macro, phases, args, workdir / "fcn3d"),
        }
        points.append(
            {"contrast": run["contrast"], "n_train": n_part}
            | {name: model.evaluate(x_test, e_test)["mase"] for name, model in fitted.items()}
        )
    points.append(
        {"contrast": run["contrast"], "n_train": len(x)}
        | {name: run["metrics"][name][f"mase_{run['tag']}"] for name in MODELS}
    )
    return points


def plot(results: dict, run: dict, path: Path) -> None:
    """Left: a test MVE's fields at the highest contrast; right: MASE bars and the curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15, 7.5), dpi=110)
    left, right = fig.subfigures(1, 2, width_ratios=[1.15, 1])
    x_test, e_test = run["test"]
    fields = {name: values[0] for name, values in run["predictions"].items()}
    draw_field_comparison(left, x_test[0], e_test[0], fields, run["macro_strain"])
    left.suptitle(f"Test MVE, contrast {run['contrast']:g}, ε̄11 = {run['macro_strain']:g}")
    bars, curve = right.subplots(2, 1)
    width = 0.8 / len(MODELS)
    for i, name in enumerate(MODELS):
        values = [results["metrics"][name][f"mase_c{c:g}"] for c in CONTRASTS]
        bars.bar(np.arange(len(CONTRASTS)) + i * width, values, width, label=name)
    for name, marker in (("cnn_slices", "v"), ("mks", "^")):
        paper = [PAPER["mase"][name][f"mase_c{c:g}"] for c in CONTRASTS]
        offset = MODELS.index(name) * width
        bars.scatter(
            np.arange(len(CONTRASTS)) + offset,
            paper,
            marker=marker,
            c="k",
            zorder=3,
            label=f"{name}, Yang et al. 2019",
        )
    bars.set_xticks(np.arange(len(CONTRASTS)) + width, [f"contrast {c:g}" for c in CONTRASTS])
    bars.set(ylabel="test MASE (%)", title="Mean absolute strain error, held-out test")
    bars.legend(fontsize=8)
    for name, style in (("cnn_slices", "o-"), ("fcn3d", "D-"), ("mks", "s--")):
        points = [(p["n_train"], p[name]) for p in results["learning_curve"]]
        curve.plot(*zip(*points, strict=True), style, label=name)
    curve.set(
        xscale="log",
        xlabel="training MVEs",
        ylabel="test MASE (%)",
        title=f"Learning curve, contrast {run['contrast']:g}",
    )
    curve.legend(fontsize=8)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.grid, args.n, args.neighbourhood, args.voxels_per_mve = 9, 24, 5, 60
        args.cnn_epochs, args.fcn_epochs, args.fcn_channels = 2, 2, 4
        args.fcn_dilations, args.fcn_modes, args.curve = [1, 2], 2, [0.5]
    t0 = time.perf_counter()
    runs = [run_contrast(c, args, seed=100_000 * i) for i, c in enumerate(CONTRASTS)]
    metrics: dict = {}
    for run in runs:
        for name, values in run["metrics"].items():
            metrics.setdefault(name, {}).update(values)
    curve = learning_curve(runs[-1], args)
    fcn_spec = runs[0]["models"]["fcn3d"].spec
    results = {
        "benchmark": "localization",
        "quick": args.quick,
        "command": command(),
        "reference": PAPER,
        "data": {
            "grid": [args.grid] * 3,
            "target": "e11 (Mandel component 0) under uniaxial macroscopic strain e11",
            "neighbourhood": args.neighbourhood,
            "voxels_per_mve": args.voxels_per_mve,
            "fcn_spec": fcn_spec.to_dict(),
            "fcn_local_receptive_field": fcn_spec.receptive_field,
            **{
                run["tag"]: {
                    "contrast": run["contrast"],
                    "phases": run["phases"],
                    "macro_strain": run["macro_strain"],
                    "generated": run["data"]["generated"],
                    "mean_solve_seconds": run["data"]["solve_seconds"],
                    "mean_iterations": run["data"]["iterations"],
                    "generate_seconds": run["seconds"]["generate"],
                }
                for run in runs
            },
        },
        "split": {
            "how": "random over microstructures (each drawn from its own seed), per contrast; "
            "settings chosen on val; test used once",
            **{
                run["tag"]: {side: index.tolist() for side, index in run["parts"].items()}
                for run in runs
            },
        },
        "sizes": {
            run["tag"]: {side: len(index) for side, index in run["parts"].items()} for run in runs
        },
        "metrics": metrics,
        "learning_curve": curve,
        "wall_seconds": {
            "generate": sum(run["seconds"]["generate"] for run in runs),
            "train": sum(run["seconds"]["train"] for run in runs),
            "total": time.perf_counter() - t0,
        },
        "machine": machine(),
        "models": {
            f"{name}_{run['tag']}": str(args.out / f"{name}_{run['tag']}")
            for run in runs
            for name in MODELS
        },
    }
    stem = "localization_quick" if args.quick else "localization"
    write_json(results, args.results, stem)
    plot(results, runs[-1], args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
