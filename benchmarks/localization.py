"""Localization of strain in contrast-10 and contrast-50 composites (Yang et al. 2019): the
slice CNN on 11³ neighbourhoods against a periodic 3-D FCN, the MKS first-order method, a
hybrid (the FFT solver's field after a few CG iterations, corrected by the FCN) and the
solver itself stopped early.

Generates its own ground truth for each contrast: random periodic 21³ microstructures
(Gaussian random fields with feature sizes from one to three voxels, isotropic and
elongated, over volume fractions 0.15-0.85) solved by the FFT elasticity solver under the
uniaxial macroscopic strain ε̄11 = 10⁻³ for the local strain field ε11. The volume elements
are split at random into train / validation / held-out test (each one drawn from its own
seed, so no structure is on two sides); settings are chosen on validation only (MKS ridge,
the networks' best epoch), and the test set is touched once at the end. Error: the mean
absolute strain error MASE = mean over voxels of |ε_pred − ε_true| / ε̄11 (%).

Equal time: the solver's field after k = 1 … 24 CG iterations on the test MVEs gives an
error-time staircase, and each model's prediction time per MVE is read against it
(``metrics.solver_equal_time``). ``--only hybrid mks`` trains those models alone and keeps
the other models' earlier results (their recorded prediction times are read against the
new staircase).

    python benchmarks/localization.py --out runs/localization        # full (~30 min, 2 cores)
    python benchmarks/localization.py --out /tmp/q --quick            # seconds

Each trained model is saved as ``OUT/<model>_c10/`` and ``OUT/<model>_c50/``, the validation
and test volume elements as ``OUT/data/c10/{val,test}.h5`` (``deepmat evaluate OUT/fcn3d_c10
OUT/data/c10/test.h5 --json``). Results:
``benchmarks/results/localization.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from _equal_time import equal_time, iteration_seconds, solver_curve
from _shared import command, machine, merge_earlier, parser, write_json
from deepmat.data.microstructures import MicrostructureSpec
from deepmat.data.splits import random_split
from deepmat.data.voxels import read_voxel_dataset, write_voxel_dataset
from deepmat.models.localization import STRAIN_FNO, StrainFCNSpec
from deepmat.physics import IsotropicPhase
from deepmat.physics.elasticity import partial_solve
from deepmat.train import save_model
from deepmat.train.field_plots import draw_field_comparison
from deepmat.train.localization import (
    FCN3DRegressor,
    HybridFCNRegressor,
    LocalizationRegressor,
    SliceCNNRegressor,
)
from deepmat.workflows.generate import generate_dataset
from deepmat.workflows.microstructure import select_mks

CONTRASTS = (10, 50)
MODELS = ("cnn_slices", "fcn3d", "mks", "hybrid")
SOLVER_ITERATIONS = 24
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
    p.add_argument("--hybrid-iterations", type=int, default=None, help="(the preset's)")
    p.add_argument("--hybrid-epochs", type=int, default=None, help="(the benchmark preset's)")
    p.add_argument("--only", nargs="+", choices=MODELS, default=None, help="models to train")
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


def fit_hybrid(x, e, val, macro: float, phases, args, workdir: Path) -> HybridFCNRegressor:
    """The hybrid of the ``benchmark`` preset, with the FCN's sizes."""
    spec = StrainFCNSpec(args.fcn_channels, tuple(args.fcn_dilations), modes=args.fcn_modes)
    model = HybridFCNRegressor.from_preset(
        "benchmark",
        config=_training(args.hybrid_epochs),
        spec=spec,
        phases=phases,
        name="hybrid",
        iterations=args.hybrid_iterations,
    )
    return model.fit(x, e, val=val, macro_strain=macro, workdir=workdir)


def fit_mks(x, e, val, macro: float, phases, args, workdir: Path):
    """MKS with the ridge chosen on val."""
    return select_mks((x, e), val, phases, macro_strain=macro)


FITS = {"cnn_slices": fit_cnn, "fcn3d": fit_fcn, "mks": fit_mks, "hybrid": fit_hybrid}


def solver_staircase(x_test, e_test, macro: float, phases, quick: bool) -> list[dict]:
    """Test MASE and seconds per MVE of the solver stopped after k = 1 … K iterations."""
    iterations = 3 if quick else SOLVER_ITERATIONS
    errors = []
    for k in range(1, iterations + 1):
        fields = np.stack(
            [partial_solve(m, phases, [macro, 0, 0, 0, 0, 0], k).strain[0] for m in x_test]
        )
        errors.append(100 * float(np.mean(np.abs(fields - e_test))) / macro)
    return solver_curve(iteration_seconds(x_test, phases, iterations), errors)


def equal_time_metrics(metrics: dict, curves: dict) -> dict:
    """Each model's recorded test MASE and prediction seconds per MVE against the solver's
    staircase of the same contrast; ``mase_<tag>``: the solver's MASE at the hybrid's time."""
    result: dict = {}
    for tag, curve in curves.items():
        result[f"curve_{tag}"] = curve
        for name in MODELS:
            recorded = metrics.get(name, {})
            if f"predict_seconds_per_mve_{tag}" in recorded:
                result[f"{name}_{tag}"] = equal_time(
                    curve, recorded[f"predict_seconds_per_mve_{tag}"], recorded[f"mase_{tag}"]
                )
        if f"hybrid_{tag}" in result:
            result[f"mase_{tag}"] = result[f"hybrid_{tag}"]["solver_error_at_equal_time"]
    return result


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
        name: FITS[name](*train, val, macro, phases, args, work / name)
        for name in args.only or MODELS
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
    if "mks" in models:
        metrics["mks"][f"selected_{tag}"] = {"ridge": models["mks"].ridge}
    if "hybrid" in models:
        metrics["hybrid"][f"iterations_{tag}"] = models["hybrid"].iterations
    uniform = 100 * float(np.mean(np.abs(e_test - macro))) / macro
    metrics["uniform_strain"] = {f"mase_{tag}": uniform}
    return {
        "tag": tag,
        "contrast": contrast,
        "phases": [{"E": p.youngs_modulus, "nu": p.poisson_ratio} for p in phases],
        "phases_objects": phases,
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
        "solver_curve": solver_staircase(x_test, e_test, macro, phases, args.quick),
    }


def learning_curve(run: dict, args) -> list[dict]:
    """Test MASE of the three models trained on fractions of the training set."""
    (x, e), val, (x_test, e_test) = run["train"], run["val"], run["test"]
    macro, phases = run["macro_strain"], run["phases_objects"]
    points = []
    for fraction in args.curve:
        n_part = max(2, round(fraction * len(x)))
        part = np.sort(np.random.default_rng(n_part).choice(len(x), n_part, replace=False))
        workdir = args.out / "work" / run["tag"] / "curve" / str(n_part)
        fitted = {
            name: FITS[name](x[part], e[part], val, macro, phases, args, workdir / name)
            for name in run["models"]
        }
        points.append(
            {"contrast": run["contrast"], "n_train": n_part}
            | {name: model.evaluate(x_test, e_test)["mase"] for name, model in fitted.items()}
        )
    points.append(
        {"contrast": run["contrast"], "n_train": len(x)}
        | {name: run["metrics"][name][f"mase_{run['tag']}"] for name in run["models"]}
    )
    return points


def merged_curve(path: Path, curve: list[dict]) -> list[dict]:
    """The earlier learning curve at ``path`` with this run's models' points added."""
    earlier = json.loads(path.read_text())["learning_curve"] if path.exists() else []
    fresh = {(p["contrast"], p["n_train"]): p for p in curve}
    merged = [p | fresh.pop((p["contrast"], p["n_train"]), {}) for p in earlier]
    return merged + list(fresh.values())


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
    for name, style in (("cnn_slices", "o-"), ("fcn3d", "D-"), ("mks", "s--"), ("hybrid", "^:")):
        points = [(p["n_train"], p[name]) for p in results["learning_curve"] if name in p]
        if points:
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
    stem = "localization_quick" if args.quick else "localization"
    fcn_spec = StrainFCNSpec(args.fcn_channels, tuple(args.fcn_dilations), modes=args.fcn_modes)
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
        "commands": dict.fromkeys(metrics, command()),
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
            for name in run["models"]
        },
    }
    if args.only is not None:
        results["learning_curve"] = merged_curve(args.results / f"{stem}.json", curve)
        results = merge_earlier(results, args.results / f"{stem}.json", ("metrics", "models"))
    results["metrics"]["solver_equal_time"] = equal_time_metrics(
        results["metrics"], {run["tag"]: run["solver_curve"] for run in runs}
    )
    results["commands"]["solver_equal_time"] = command()
    write_json(results, args.results, stem)
    plot(results, runs[-1], args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
