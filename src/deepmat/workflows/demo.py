"""The demo: ElemNet and a Magpie random forest on data that ships with matminer.

Materials Project transport properties (Ricci et al., Sci. Data 2017; about 48k
compounds computed with BoltzTraP) come inside matminer, so the demo needs neither a
network nor the reference-data folder. Both models learn the p-type Seebeck
coefficient from composition alone on a grouped split (no reduced composition on two
sides), report validation and test metrics side by side, predict a few well-known
thermoelectrics and write parity plots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from deepmat.data.splits import grouped_split
from deepmat.train.trainer import TrainConfig
from deepmat.workflows.composition import DataSpec, make_regressor, train_composition

TARGET = "S_p"
THERMOELECTRICS = ["Bi2Te3", "PbTe", "SnSe", "Mg2Si", "CoSb3", "ZnO", "Cu2Se", "NaCl"]


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
    config = TrainConfig(
        epochs=epochs,
        batch_size=256,
        lr=1e-3,
        schedule="onecycle",
        patience=epochs,
        dropout_until=0.75,
        progress=console.is_terminal,
    )
    results, models = {}, {}
    for name in ("elemnet", "rf-magpie"):
        console.rule(name)
        model = make_regressor(name, TARGET, "uV/K", config, trees=trees)
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
    predictions = Table(title="predicted S_p (uV/K), mean ± std")
    predictions.add_column("formula")
    for name in models:
        predictions.add_column(name)
    values = {name: m.predict(THERMOELECTRICS, return_std=True) for name, m in models.items()}
    for i, formula in enumerate(THERMOELECTRICS):
        predictions.add_row(formula, *(f"{v[0][i]:.0f} ± {v[1][i]:.0f}" for v in values.values()))
    console.print(predictions)
    console.print(f"models, splits and parity plots in {out}/<model>/")
    return results
