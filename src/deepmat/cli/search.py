"""``deepmat search``: architecture search on Optuna, a thin shell over
:mod:`deepmat.workflows.search`.

Every worker shares one study through ``--storage``; ``--workers N`` starts N processes
here, and the same command on another machine (same ``--storage`` and ``--study``) joins
them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepmat.cli.options import (
    DataOption,
    FormulaOption,
    PresetOption,
    SeedOption,
    TargetOption,
    console,
    fail,
)
from deepmat.errors import ConfigError, DeepmatError

search_app = typer.Typer(help="Search network architectures (Optuna).", no_args_is_help=True)


@search_app.command("composition")
def search_composition_cmd(
    out: Annotated[Path, typer.Option(help="directory for trials/<number>/ and the summary")],
    data: DataOption,
    model: Annotated[str, typer.Option(help="elemnet (MLP), roost or transformer")] = "elemnet",
    trials: Annotated[int, typer.Option(help="finished trials over all workers")] = 60,
    workers: Annotated[int, typer.Option(help="worker processes started here")] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            help="sqlite:///FILE (one machine), postgresql://USER:PASSWORD@HOST/DB (many), or "
            "a journal file path (default: sqlite:///OUT/study.db)"
        ),
    ] = None,
    study: Annotated[str, typer.Option(help="study name; workers of one study share it")] = (
        "search"
    ),
    sampler: Annotated[str, typer.Option(help="nsga2 (genetic) or tpe")] = "nsga2",
    population: Annotated[int, typer.Option(help="NSGA-II trials per generation")] = 20,
    crossover: Annotated[
        str, typer.Option(help="NSGA-II crossover: uniform, blxalpha, sbx, vsbx, undx or spx")
    ] = "uniform",
    crossover_prob: Annotated[float, typer.Option(help="NSGA-II crossover probability")] = 0.9,
    mutation_prob: Annotated[
        float | None,
        typer.Option(help="NSGA-II mutation probability per parameter (default 1/parameters)"),
    ] = None,
    objective: Annotated[
        list[str] | None,
        typer.Option(
            help="minimised, repeatable: mae, latency (measured), flops, params "
            "(default: mae, latency, params)"
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs of every trial (preset's)")] = None,
    preset: PresetOption = "default",
    subset: Annotated[
        int | None, typer.Option(help="train every trial on this many training records")
    ] = None,
    val_subset: Annotated[
        int | None, typer.Option(help="score every epoch on this many validation records")
    ] = None,
    space: Annotated[
        Path | None,
        typer.Option(
            help='JSON file narrowing the declared space: {"width": [32, 256], "residual": [false]}'
        ),
    ] = None,
    prune: Annotated[
        bool, typer.Option(help="stop trials worse than the median at the same epoch")
    ] = True,
    heartbeat: Annotated[
        int, typer.Option(help="seconds between running trials' heartbeats (databases)")
    ] = 10,
    target: TargetOption = None,
    formula_column: FormulaOption = None,
    seed: SeedOption = 0,
) -> None:
    """Search composition networks: each trial trains one architecture of the model's
    declared space on the same data; trials are saved to OUT/trials/<number>/, the Pareto
    front of validation MAE against cost to OUT/pareto.png, the summary to OUT/search.json."""
    from deepmat.workflows.composition import DataSpec
    from deepmat.workflows.search import SearchJob, run_search
    from deepmat.workflows.search_study import SamplerSpec

    try:
        ranges = _read_ranges(space) if space else {}
        job = SearchJob(
            model=model,
            data=DataSpec(data, target, formula_column),
            out=out,
            trials=trials,
            storage=storage,
            study=study,
            workers=workers,
            objectives=tuple(objective or ("mae", "latency", "params")),
            sampler=SamplerSpec(
                sampler, population, crossover, crossover_prob, mutation_prob, seed
            ),
            preset=preset,
            epochs=epochs,
            subset=subset,
            val_subset=val_subset,
            seed=seed,
            space=ranges,
            prune=prune,
            heartbeat=heartbeat,
        )
        summary = run_search(job)
    except DeepmatError as exc:
        fail(exc)
    for index, code in enumerate(summary["worker_exit_codes"]):
        if code != 0:
            console.print(f"[yellow]worker {index} exited with code {code}[/]")
    states = ", ".join(f"{n} {s}" for s, n in summary["states"].items())
    console.print(f"study {summary['study']} ({summary['storage']}): {states}")
    if summary["best"]:
        best = summary["best"]
        console.print(
            f"best validation MAE {best['val_mae']:.4g}: trial {best['number']} "
            f"({best['params']:,} weights) at {best.get('path')}"
        )
    console.print(f"{len(summary['pareto'])} trials on the Pareto front; see {out / 'pareto.png'}")


def _read_ranges(path: Path) -> dict:
    """The ranges of a ``--space`` JSON file."""
    try:
        ranges = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--space {path}: {exc}") from None
    if not isinstance(ranges, dict):
        raise ConfigError(f"--space {path}: expected an object of parameter ranges")
    return ranges
