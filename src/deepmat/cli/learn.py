"""``deepmat learn``: active learning over a pool of compositions, one round at a time."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated

import typer

from deepmat.cli.options import (
    DropOption,
    FormulaOption,
    PresetOption,
    SeedOption,
    TargetOption,
    console,
    fail,
)
from deepmat.errors import ConfigError, DeepmatError


def _user_function(spec: str):
    """The function named by ``module:function`` (a user's oracle)."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ConfigError(f"--oracle {spec!r}: give it as module:function")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--oracle {spec!r}: cannot import it ({exc})") from None


def learn(
    pool: Annotated[
        str,
        typer.Argument(
            help="compositions to choose from: a named dataset (NAME:SPLIT) or a CSV; its "
            "target column is the oracle unless --oracle is given"
        ),
    ],
    out: Annotated[Path, typer.Option(help="run folder: rounds.json, model/, curves.png")],
    model: Annotated[
        str, typer.Option(help="elemnet, roost, transformer, rf-magpie or rf-fractions")
    ] = "rf-magpie",
    preset: PresetOption = "default",
    oracle: Annotated[
        str | None,
        typer.Option(help="module:function returning the label of a pymatgen Composition"),
    ] = None,
    val: Annotated[
        str | None,
        typer.Option(help="labelled dataset or CSV scored after every round (validation MAE)"),
    ] = None,
    acquisition: Annotated[str, typer.Option(help="random, max_std, ei or ucb")] = "max_std",
    goal: Annotated[str, typer.Option(help="for ei and ucb: min, max or a target value")] = "min",
    initial: Annotated[int, typer.Option(help="random labels to start with")] = 500,
    batch: Annotated[int, typer.Option(help="labels per round")] = 500,
    rounds: Annotated[int, typer.Option(help="rounds after the initial labels")] = 10,
    diverse: Annotated[
        bool, typer.Option(help="spread each batch over the model's feature space (k-means)")
    ] = False,
    kappa: Annotated[float, typer.Option(help="ucb: σ multiplier")] = 2.0,
    committee: Annotated[
        int, typer.Option(help="bootstrap members for the spread (0: the model's own)")
    ] = 0,
    trees: Annotated[int | None, typer.Option(help="trees of a random forest")] = None,
    target: TargetOption = None,
    formula_column: FormulaOption = None,
    drop_invalid: DropOption = False,
    seed: SeedOption = 0,
) -> None:
    """Choose which compositions to label next: fit, score the pool by an acquisition
    function, ask the oracle for a batch, repeat. A rerun with the same OUT resumes after
    the last finished round."""
    from rich.progress import Progress

    from deepmat.workflows.active_learning import (
        FunctionOracle,
        LearningSettings,
        TableOracle,
        learn,
        plot_run,
        pool_of,
    )
    from deepmat.workflows.composition import DataSpec, make_regressor

    on_error = "drop" if drop_invalid else "raise"
    try:
        settings = LearningSettings(
            acquisition,
            goal,
            initial,
            batch,
            rounds,
            diverse,
            kappa=kappa,
            committee=committee,
            seed=seed,
        )
        spec = DataSpec(pool, target, formula_column, "mean", on_error)
        table = spec.load()
        scored = DataSpec(val, target, formula_column, "mean", on_error).load() if val else None

        def make(member_seed: int):
            return make_regressor(
                model, preset, spec.target_name(), spec.unit(), trees=trees, seed=member_seed
            )

        supported = make(seed).representation.supported_elements
        why = f" by the {model} model"
        table = table.restrict_elements(supported, on_error, why)
        console.print(table.report.summary())
        if scored is not None:
            scored = scored.restrict_elements(supported, on_error, why)
        if oracle:
            ask = FunctionOracle(_user_function(oracle), oracle)
        elif table.targets is not None:
            ask = TableOracle(table.targets)
        else:
            raise ConfigError(f"{pool} has no target column: give --oracle module:function")
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"{acquisition} rounds", total=rounds + 1)
            run = learn(
                make,
                pool_of(table),
                ask,
                settings,
                out,
                val=scored,
                progress=lambda r: bar.update(
                    task,
                    completed=r["round"] + 1,
                    description=f"round {r['round']}: {r['labels']} labels, "
                    + ", ".join(f"{k} {v:.4g}" for k, v in r["metrics"].items() if k == "mae"),
                ),
            )
        plot_run(run, out / "curves.png")
    except DeepmatError as exc:
        fail(exc)
    last = run.rounds[-1]
    console.print(
        json.dumps({k: last[k] for k in ("round", "labels", "best", "metrics")}, indent=1)
    )
    console.print(
        f"rounds: {out / 'rounds.json'}; model: {out / 'model'}; curves: {out / 'curves.png'}"
    )
