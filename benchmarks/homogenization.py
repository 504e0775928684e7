"""Homogenization of contrast-50 two-phase composites (Yang et al. 2018): a 3-D CNN
against 2-point statistics + PCA + polynomial regression, the rules of mixtures, a hybrid
(the FFT solver's first CG iterates corrected by a regression; ``hybrid_coarse`` takes them
on the grid coarsened twice, eight times cheaper) and the solver itself stopped early.

Generates its own ground truth: random periodic microstructures (Gaussian random fields
of several feature sizes, isotropic and elongated, and random spheres, over a range of
volume fractions) labelled with the effective stiffness C11 by the FFT elasticity solver.
The microstructures are split at random into train / validation / held-out test (each one
is drawn from its own seed, so no microstructure is on two sides); models are selected on
validation only, and the test set is touched once at the end.

Equal time: the solver's C11 after k = 1 … 12 CG iterations on the test structures gives
an error-time staircase; each model's prediction time per structure is read against it
(``metrics.solver_equal_time``: the solver's MAPE in the same time, and the time it needs
for the same MAPE).

    python benchmarks/homogenization.py --out runs/homogenization           # full
    python benchmarks/homogenization.py --out /tmp/q --quick                 # seconds

Each trained model is saved as ``OUT/<model>/`` (``deepmat evaluate OUT/cnn3d
OUT/data/test.h5 --json``). Results: ``benchmarks/results/homogenization.{json,png}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _equal_time import equal_time, iteration_seconds, predict_seconds, solver_curve
from _shared import command, machine, parser, write_json
from deepmat.data.microstructures import MicrostructureSpec
from deepmat.data.splits import random_split
from deepmat.data.voxels import VoxelDataset, write_voxel_dataset
from deepmat.models.cnn3d import CNN3DSpec, count_parameters
from deepmat.physics import IsotropicPhase, solve
from deepmat.represent.physics_inputs import stiffness_iterates
from deepmat.train import save_model
from deepmat.train.microstructure import (
    RuleOfMixtures,
    VoxelCNNRegressor,
    microstructure_metrics,
)
from deepmat.workflows.generate import generate_families
from deepmat.workflows.microstructure import select_hybrid, select_two_point

CONTRAST = 50.0
PHASES = (IsotropicPhase(1.0, 0.3), IsotropicPhase(CONTRAST, 0.3))
SOLVER_ITERATIONS = 12
#: the trained models of the learning curve
CURVE_MODELS = ("cnn3d", "two_point_pca", "hybrid", "hybrid_coarse")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "homogenization")
    p.add_argument("--grid", type=int, default=51, help="voxels per edge (the paper: 51)")
    p.add_argument("--n", type=int, default=600, help="microstructures generated in all")
    p.add_argument("--val", type=float, default=0.15, help="fraction for validation")
    p.add_argument("--test", type=float, default=0.15, help="fraction held out for test")
    p.add_argument("--epochs", type=int, default=None, help="(default: the benchmark preset's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--channels", type=int, nargs="+", default=None, help="(preset: paper size)")
    p.add_argument("--fc-widths", type=int, nargs="+", default=None)
    p.add_argument("--precision", default=None, help="32-true, bf16-mixed or 16-mixed")
    p.add_argument("--workers", type=int, default=2, help="parallel solver tasks (Dask)")
    p.add_argument("--curve", type=float, nargs="*", default=[0.5])
    return p.parse_args(argv)


def families(grid: int) -> list[MicrostructureSpec]:
    """The microstructure families, in equal shares: features from 1.5 voxels to a tenth of
    the cell, isotropic and elongated along each axis, fields and spheres."""
    shape = (grid,) * 3
    scale = grid / 51
    fractions = (0.15, 0.85)
    grf = [
        (1.5 * scale,) * 3,
        (3 * scale,) * 3,
        (5 * scale,) * 3,
        (6 * scale, 2 * scale, 2 * scale),
        (2 * scale, 2 * scale, 6 * scale),
    ]
    specs = [
        MicrostructureSpec("grf", shape, fractions, tuple(max(s, 1.0) for s in size))
        for size in grf
    ]
    specs.append(MicrostructureSpec("sphere", shape, (0.1, 0.5), max(4 * scale, 1.5)))
    return specs


def generate(grid: int, n: int, workers: int) -> tuple[VoxelDataset, dict]:
    """All families labelled with C[:, 0]; returns the data and per-family timings."""
    specs = families(grid)
    data, reports = generate_families(
        specs,
        n,
        contrast=CONTRAST,
        label="stiffness",
        workers=workers,
        load_cases=1,
        progress=sys.stderr.isatty(),
    )
    timing = {
        f"family{i}": {"spec": spec.to_dict(), "n": report.n, "seconds": report.wall_seconds}
        for i, (spec, report) in enumerate(zip(specs, reports, strict=True))
    }
    return data, timing


def solver_time(grid: int, repeats: int = 2) -> dict:
    """Best-of-``repeats`` seconds of one FFT solve (uniaxial strain) at contrast 50."""
    spec = MicrostructureSpec("grf", (grid,) * 3, 0.5, 3.0 * grid / 51)
    structure = spec.sample(0)
    runs = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        field = solve(structure, PHASES, [1e-3, 0, 0, 0, 0, 0])
        runs.append(time.perf_counter() - start)
    return {
        "grid": grid,
        "seconds": min(runs[1:]),
        "iterations": field.report.iterations,
        "residual": field.report.residual,
        "torch_threads": torch.get_num_threads(),
    }


def train_models(x, y, x_val, y_val, args, workdir: Path, curve_point: bool = False) -> dict:
    """The CNN and the 2-point model on (x, y); the 2-point model's settings are chosen on
    val."""
    given = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "precision": args.precision,
        "progress": sys.stderr.isatty() and not curve_point,
    }
    arguments = VoxelCNNRegressor.preset_arguments("benchmark", config=given)
    if args.channels or args.fc_widths:
        spec = arguments["spec"]
        arguments["spec"] = CNN3DSpec(
            tuple(args.channels or spec.channels), tuple(args.fc_widths or spec.fc_widths)
        )
    arguments["config"].patience = arguments["config"].epochs
    cnn = VoxelCNNRegressor(**arguments, phases=PHASES, name="cnn3d")
    cnn.fit(x, y, val=(x_val, y_val), workdir=workdir / "cnn3d")
    two_point = select_two_point((x, y), (x_val, y_val), PHASES)
    hybrid = select_hybrid((x, y), (x_val, y_val), PHASES)
    coarse = select_hybrid((x, y), (x_val, y_val), PHASES, coarsen=2, name="hybrid_coarse")
    return {"cnn3d": cnn, "two_point_pca": two_point, "hybrid": hybrid, "hybrid_coarse": coarse}


def solver_equal_time(models: dict, x_test: np.ndarray, y_test: np.ndarray, args) -> dict:
    """The solver's staircase on the test set and each model read against it."""
    iterations = 3 if args.quick else SOLVER_ITERATIONS
    iterates = stiffness_iterates(x_test, PHASES, iterations)
    errors = [microstructure_metrics(y_test, iterates[:, k])["mape"] for k in range(iterations)]
    curve = solver_curve(iteration_seconds(x_test, PHASES, iterations), errors)
    result = {"curve": curve, "error": "test MAPE of C11 (%)", "threads": torch.get_num_threads()}
    for name, model in models.items():
        seconds = predict_seconds(model.predict, x_test)
        result[name] = equal_time(
            curve, seconds, microstructure_metrics(y_test, model.predict(x_test))["mape"]
        )
    result["mape_c50"] = result["hybrid"]["solver_error_at_equal_time"]
    return result


def plot(results: dict, truth: np.ndarray, predictions: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.4), dpi=120)
    for name, values in predictions.items():
        mape = results["metrics"][name]["mape_c50"]
        ax1.scatter(truth, values, s=8, alpha=0.6, label=f"{name} ({mape:.2f} %)")
    low, high = truth.min(), truth.max()
    ax1.plot([low, high], [low, high], "k-", lw=0.8)
    ax1.set(
        xlabel="C11 from the FFT solver (matrix E = 1)",
        ylabel="predicted C11",
        title="Held-out test set, contrast 50",
        yscale="log",
        xscale="log",
    )
    ax1.legend(fontsize=8)
    for name, style in zip(CURVE_MODELS, ("o-", "s--", "^:", "v-."), strict=True):
        points = [(c["n_train"], c[name]) for c in results["learning_curve"]]
        ax2.plot(*zip(*points, strict=True), style, label=name)
    ax2.set(
        xscale="log",
        xlabel="training microstructures",
        ylabel="test MAPE of C11 (%)",
        title="Learning curve",
    )
    ax2.legend()
    equal = results["metrics"]["solver_equal_time"]
    ax3.step(
        [p["seconds"] for p in equal["curve"]],
        [p["error"] for p in equal["curve"]],
        "k-",
        where="post",
        label="FFT solver, k CG iterations",
    )
    for name in predictions:
        if name in equal:
            ax3.plot(
                equal[name]["surrogate_seconds"], equal[name]["surrogate_error"], "o", label=name
            )
    ax3.set(
        xscale="log",
        yscale="log",
        xlabel="seconds per microstructure",
        ylabel="test MAPE of C11 (%)",
        title="Error against time: surrogates vs the solver",
    )
    ax3.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.grid, args.n, args.epochs, args.curve = 9, 60, 3, [0.5]
        args.channels, args.fc_widths = [4, 4, 8, 8, 8], [16]
    t0 = time.perf_counter()
    solver = solver_time(args.grid)
    data, generation = generate(args.grid, args.n, args.workers)
    generate_seconds = time.perf_counter() - t0 - solver["seconds"]
    c11 = data.stiffness[:, 0, 0]
    parts = random_split(len(data), args.val, args.test).indices()
    (args.out / "data").mkdir(parents=True, exist_ok=True)
    for side, index in parts.items():
        write_voxel_dataset(
            args.out / "data" / f"{side}.h5",
            data.microstructures[index],
            stiffness=data.stiffness[index],
            attrs=data.attrs,
        )
    x, y = data.microstructures[parts["train"]], c11[parts["train"]]
    x_val, y_val = data.microstructures[parts["val"]], c11[parts["val"]]
    x_test, y_test = data.microstructures[parts["test"]], c11[parts["test"]]

    start = time.perf_counter()
    models = train_models(x, y, x_val, y_val, args, args.out)
    train_seconds = time.perf_counter() - start
    for rule, name in (("voigt", "rule_of_mixtures"), ("reuss", "reuss")):
        models[name] = RuleOfMixtures(PHASES, rule, name=name).fit(x, y, val=(x_val, y_val))

    metrics, predictions = {}, {}
    for name, model in models.items():
        save_model(model, args.out / name)
        predictions[name] = model.predict(x_test)
        test = microstructure_metrics(y_test, predictions[name])
        metrics[name] = {
            "mape_c50": test["mape"],
            "mae_c50": test["mae"],
            "r2_c50": test["r2"],
            "val_mape_c50": model.evaluate(x_val, y_val)["mape"],
            "train_seconds": model.training.get("seconds", 0.0),
        }
    metrics["two_point_pca"]["selected"] = models["two_point_pca"].hyperparameters
    for name in ("hybrid", "hybrid_coarse"):
        metrics[name]["selected"] = models[name].hyperparameters
    metrics["solver_equal_time"] = solver_equal_time(models, x_test, y_test, args)
    metrics["solver"] = {
        f"seconds_{args.grid}_c50": solver["seconds"],
        "iterations": solver["iterations"],
        "residual": solver["residual"],
        "mean_seconds_per_microstructure": float(np.mean(data.solve_seconds)),
        "mean_iterations": float(np.mean(data.iterations)),
    }
    if args.grid != 51 and not args.quick:
        metrics["solver"]["seconds_51_c50"] = solver_time(51, repeats=1)["seconds"]

    curve = []
    for fraction in args.curve:
        n_part = max(4, round(fraction * len(x)))
        part = np.random.default_rng(n_part).choice(len(x), n_part, replace=False)
        fitted = train_models(
            x[part], y[part], x_val, y_val, args, args.out / "curve" / str(n_part), curve_point=True
        )
        curve.append(
            {"n_train": n_part}
            | {name: model.evaluate(x_test, y_test)["mape"] for name, model in fitted.items()}
        )
    curve.append({"n_train": len(x)} | {m: metrics[m]["mape_c50"] for m in CURVE_MODELS})

    results = {
        "benchmark": "homogenization",
        "quick": args.quick,
        "command": command(),
        "data": {
            "generated": generation,
            "files": {side: str(args.out / "data" / f"{side}.h5") for side in parts},
            "grid": [args.grid] * 3,
            "contrast": CONTRAST,
            "phases": [{"E": p.youngs_modulus, "nu": p.poisson_ratio} for p in PHASES],
            "target": "C11 (Mandel), from the solve under uniaxial strain e11",
        },
        "split": {
            "how": "random over microstructures (each drawn from its own seed); "
            "models and hyper-parameters chosen on val; test used once",
            **{side: index.tolist() for side, index in parts.items()},
        },
        "sizes": {side: len(index) for side, index in parts.items()},
        "settings": {
            "cnn3d": models["cnn3d"].spec.to_dict()
            | {"parameters": count_parameters(models["cnn3d"].net), "log_target": True},
            "train": {k: vars(args)[k] for k in ("epochs", "batch_size", "lr", "precision")},
        },
        "metrics": metrics,
        "learning_curve": curve,
        "wall_seconds": {
            "generate": generate_seconds,
            "train": train_seconds,
            "total": time.perf_counter() - t0,
        },
        "machine": machine(),
        "models": {name: str(args.out / name) for name in models},
    }
    stem = "homogenization_quick" if args.quick else "homogenization"
    write_json(results, args.results, stem)
    plot(results, y_test, predictions, args.results / f"{stem}.png")
    return results


if __name__ == "__main__":
    main()
