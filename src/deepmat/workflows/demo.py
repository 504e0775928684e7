"""The demo: shipped models on well-known materials, then composition and microstructure
models trained on the spot, with nothing downloaded.

Shipped models (:func:`run_pretrained_demo`): each shipped model on inputs it has not seen,
next to a reference value (:mod:`deepmat.workflows.showcases`). Only models this version
ships are shown.

Composition (:func:`run_demo`): ElemNet and a Magpie random forest on data that ships
with matminer. Materials Project transport properties (Ricci et al., Sci. Data 2017; about
48k compounds computed with BoltzTraP) come inside matminer, so the demo needs neither a
network nor the reference-data folder. Both models learn the p-type Seebeck
coefficient from composition alone on a grouped split (no reduced composition on two
sides), report validation and test metrics side by side, predict a few well-known
thermoelectrics and write parity plots.

Homogenization (:func:`run_homogenization_demo`): the data is made on the spot. Random
two-phase microstructures at stiffness contrast 50 are labelled with C11 by the FFT
elasticity solver, split at random, and the Voigt and Reuss rules of mixtures, 2-point
statistics + PCA and a small 3-D CNN are trained and compared by their test MAPE, the
comparison of Yang et al. (2018) in miniature.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from deepmat.data.microstructures import MicrostructureSpec
from deepmat.data.splits import grouped_split, random_split
from deepmat.data.voxels import write_voxel_dataset
from deepmat.train.microstructure import MicrostructureRegressor
from deepmat.workflows.composition import DataSpec, make_regressor, train_composition
from deepmat.workflows.generate import generate_families
from deepmat.workflows.microstructure import read_labelled, train_microstructure
from deepmat.workflows.showcases import SHOWCASES

TARGET = "S_p"
THERMOELECTRICS = ["Bi2Te3", "PbTe", "SnSe", "Mg2Si", "CoSb3", "ZnO", "Cu2Se", "NaCl"]
CONTRAST = 50.0
HOMOGENIZATION_MODELS = ("voigt", "reuss", "two-point-pca", "cnn3d")


def run_pretrained_demo(out: str | Path, console: Console | None = None) -> dict:
    """What the shipped models say about well-known materials (module docstring); returns
    the rows shown per model."""
    import deepmat
    from deepmat.pretrained import pretrained_models

    console = console or Console(stderr=True)
    shipped = {m.name for m in pretrained_models()}
    console.rule("shipped models")
    shown = {}
    for name, showcase in SHOWCASES.items():
        if name not in shipped:
            console.print(f"{name}: not shipped in this version")
            continue
        shown[name] = showcase(deepmat.load(name), console, Path(out) / name)
    return shown


def run_demo(
    out: str | Path,
    epochs: int = 10,
    trees: int = 100,
    limit: int | None = None,
    console: Console | None = None,
) -> dict:
    """Train, compare, predict and plot; returns the metrics of both models.

    ``limit`` keeps a random subset of that many compounds (for a quick run).
    """
    console = console or Console(stderr=True)
    out = Path(out)
    spec = DataSpec("mp-transport", target=TARGET, on_error="drop")
    table = spec.load()
    if limit is not None and limit < len(table):
        table = table.subset(np.sort(np.random.default_rng(0).choice(len(table), limit, False)))
    split = grouped_split(table.keys, val=0.1, test=0.1, seed=0)
    split.names = table.formulas
    train, val, test = (table.subset(i) for i in (split.train, split.val, split.test))
    console.print(f"[bold]deepmat demo[/]: {table.report.summary()}")
    console.print(f"grouped split: {split.sizes()}; target {TARGET} (p-type Seebeck, uV/K)")
    overrides = {"epochs": epochs, "patience": epochs, "progress": console.is_terminal}
    results, models = {}, {}
    for name in ("elemnet", "rf-magpie"):
        console.rule(name)
        options = overrides if name == "elemnet" else None  # a forest has no epochs
        model = make_regressor(name, "default", TARGET, "uV/K", options, trees=trees)
        train_composition(
            model, train, val, out / name, test=test, split=split, on_error="drop", resume=False
        )
        results[name], models[name] = model.metrics, model
    summary = Table(title=f"p-type Seebeck coefficient from composition ({out})")
    for column in ("model", "val MAE", "test MAE", "test R²", "train s"):
        summary.add_column(column)
    for name, model in models.items():
        m = model.metrics
        summary.add_row(
            name,
            f"{m['val']['mae']:.1f}",
            f"{m['test']['mae']:.1f}",
            f"{m['test']['r2']:.3f}",
            f"{model.training['seconds']:.0f}",
        )
    console.print(summary)
    predictions = Table(
        title="predicted S_p (uV/K); the test MAE is the honest error bar of a prediction"
    )
    predictions.add_column("formula")
    for name, model in models.items():
        predictions.add_column(f"{name} (± {model.metrics['test']['mae']:.0f})")
    values = {name: m.predict(THERMOELECTRICS) for name, m in models.items()}
    for i, formula in enumerate(THERMOELECTRICS):
        predictions.add_row(formula, *(f"{v[i]:.0f}" for v in values.values()))
    console.print(predictions)
    console.print(f"models, splits and parity plots in {out}/<model>/")
    return results


def run_homogenization_demo(
    out: str | Path,
    n: int = 150,
    grid: int = 15,
    epochs: int = 40,
    workers: int = 2,
    console: Console | None = None,
) -> dict:
    """Generate, train the four homogenization models, compare, plot; returns their metrics.

    Everything goes to ``out/homogenization/``: ``data/`` (train/val/test HDF5 files and
    ``split.json``), one saved model per directory and ``parity_test.png``. ``n``, ``grid``
    and the CNN's ``epochs`` set the size (a few minutes on two cores by default).
    """
    console = console or Console(stderr=True)
    folder = Path(out) / "homogenization"
    console.rule("homogenization")
    console.print(
        f"[bold]homogenization demo[/]: {n} random two-phase microstructures of {grid}³ "
        f"voxels, stiffness contrast {CONTRAST:g}, C11 by the FFT elasticity solver"
    )
    start = time.perf_counter()
    files = generate_homogenization_data(folder / "data", n, grid, workers, console)
    generate_seconds = time.perf_counter() - start
    overrides = {
        "epochs": epochs,
        "batch_size": 16,
        "lr": 2e-3,
        "schedule": "onecycle",
        "patience": epochs,
        "progress": console.is_terminal,
    }
    models = {}
    for name in HOMOGENIZATION_MODELS:
        console.rule(name)
        models[name] = train_microstructure(
            name,
            files["train"],
            folder / name,
            val=files["val"],
            test=files["test"],
            overrides=overrides,
            resume=False,
        )
    console.print(_homogenization_table(models, generate_seconds, folder))
    (x_test, y_test), _ = read_labelled(files["test"], "C11")
    predictions = {name: model.predict(x_test) for name, model in models.items()}
    plot = plot_homogenization_parity(
        y_test,
        predictions,
        {name: m.metrics["test"]["mape"] for name, m in models.items()},
        folder / "parity_test.png",
    )
    console.print(f"data in {folder / 'data'}, models in {folder}/<model>/, plot {plot}")
    return {name: model.metrics for name, model in models.items()}


def homogenization_families(grid: int) -> list[MicrostructureSpec]:
    """Gaussian random fields with volume fractions from 0.15 to 0.85: isotropic, and
    elongated along axis 1 (stiff phase aligned with the load, C11 near Voigt) or along
    axis 3 (across it, nearer Reuss), so that the volume fraction alone cannot tell C11."""
    scale = grid / 15
    sizes = ((2.0, 2.0, 2.0), (4.0, 1.5, 1.5), (1.5, 1.5, 4.0))
    return [
        MicrostructureSpec(
            "grf", (grid,) * 3, (0.15, 0.85), tuple(max(1.0, s * scale) for s in size)
        )
        for size in sizes
    ]


def generate_homogenization_data(
    folder: Path, n: int, grid: int, workers: int, console: Console
) -> dict[str, Path]:
    """``n`` microstructures in equal shares of :func:`homogenization_families`, labelled
    with C11 (one load case), split at random 70/15/15 into ``train.h5``, ``val.h5`` and
    ``test.h5`` in ``folder``; the indices of each side go to ``folder/split.json``."""
    specs = homogenization_families(grid)
    data, reports = generate_families(
        specs,
        n,
        contrast=CONTRAST,
        workers=workers,
        load_cases=1,
        progress=console.is_terminal,
        console=console,
    )
    for i, (spec, report) in enumerate(zip(specs, reports, strict=True)):
        size = "×".join(f"{s:.3g}" for s in np.atleast_1d(spec.feature_size))
        console.print(
            f"family {i} (feature size {size} voxels): {report.n} labelled in "
            f"{report.wall_seconds:.1f} s, {report.mean_iterations:.0f} solver iterations "
            "on average"
        )
    micro, stiffness = data.microstructures, data.stiffness
    split = random_split(len(micro), val=0.15, test=0.15, seed=0)
    split.save(folder / "split.json")
    console.print(f"random split by microstructure: {split.sizes()}")
    return {
        side: write_voxel_dataset(
            folder / f"{side}.h5", micro[index], stiffness=stiffness[index], attrs=data.attrs
        )
        for side, index in (("train", split.train), ("val", split.val), ("test", split.test))
    }


def _homogenization_table(
    models: dict[str, MicrostructureRegressor], generate_seconds: float, folder: Path
) -> Table:
    title = f"C11 of contrast-50 composites ({folder}; data made in {generate_seconds:.0f} s)"
    table = Table(title=title)
    for column in ("model", "val MAPE %", "test MAPE %", "test R²", "train s"):
        table.add_column(column)
    for name, model in models.items():
        m = model.metrics
        table.add_row(
            name,
            f"{m['val']['mape']:.2f}",
            f"{m['test']['mape']:.2f}",
            f"{m['test']['r2']:.3f}",
            f"{model.training['seconds']:.1f}",
        )
    return table


def plot_homogenization_parity(
    truth: np.ndarray, predictions: dict[str, np.ndarray], mape: dict[str, float], path: Path
) -> Path:
    """Every model's test predictions against the solver's C11 on one log-log plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    for name, values in predictions.items():
        ax.scatter(truth, values, s=10, alpha=0.7, label=f"{name} ({mape[name]:.1f} %)")
    low, high = float(np.min(truth)), float(np.max(truth))
    ax.plot([low, high], [low, high], "k-", lw=0.8)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="C11 from the FFT solver (matrix E = 1)",
        ylabel="predicted C11",
        title="held-out test set, contrast 50 (test MAPE)",
    )
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
