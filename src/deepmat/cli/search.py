"""``deepmat search``: architecture search on Optuna, a thin shell over
:mod:`deepmat.workflows.search`.

One command per kind of data (``composition``, ``ebsd``, ``segmentation``): each declares
the options saying what it searches on, and takes every option of :class:`SearchOptions`,
which say how the search runs. Every worker shares one study through ``--storage``;
``--workers N`` starts N processes here, and the same command on another machine (same
``--storage`` and ``--study``) joins them.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
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

OutOption = Annotated[Path, typer.Option(help="directory for trials/<number>/ and the summary")]


@dataclass
class SearchOptions:
    """How a search runs, whatever it searches: the options of every ``deepmat search``
    command."""

    trials: Annotated[int, typer.Option(help="finished trials over all workers")] = 60
    workers: Annotated[int, typer.Option(help="worker processes started here")] = 1
    storage: Annotated[
        str | None,
        typer.Option(
            help="sqlite:///FILE (one machine), postgresql://USER:PASSWORD@HOST/DB (many), "
            "or a journal file path (default: sqlite:///OUT/study.db)"
        ),
    ] = None
    study: Annotated[str, typer.Option(help="study name; workers of one study share it")] = "search"
    sampler: Annotated[str, typer.Option(help="nsga2 (genetic) or tpe")] = "nsga2"
    population: Annotated[int, typer.Option(help="NSGA-II trials per generation")] = 20
    crossover: Annotated[
        str, typer.Option(help="NSGA-II crossover: uniform, blxalpha, sbx, vsbx, undx or spx")
    ] = "uniform"
    crossover_prob: Annotated[float, typer.Option(help="NSGA-II crossover probability")] = 0.9
    mutation_prob: Annotated[
        float | None,
        typer.Option(help="NSGA-II mutation probability per parameter (default 1/parameters)"),
    ] = None
    objective: Annotated[
        list[str] | None,
        typer.Option(
            help="minimised, repeatable: error (validation), latency (measured), flops, "
            "params (default: error, latency, params)"
        ),
    ] = None
    epochs: Annotated[int | None, typer.Option(help="epochs of every trial (preset's)")] = None
    preset: PresetOption = "default"
    subset: Annotated[
        int | None, typer.Option(help="train every trial on this many training records")
    ] = None
    val_subset: Annotated[
        int | None, typer.Option(help="score every epoch on this many validation records")
    ] = None
    space: Annotated[
        Path | None,
        typer.Option(
            help='JSON file narrowing the declared space: {"width": [32, 256], "residual": [false]}'
        ),
    ] = None
    prune: Annotated[
        bool, typer.Option(help="stop trials worse than the median at the same epoch")
    ] = True
    start: Annotated[
        bool,
        typer.Option(
            help="a new study tries the preset's network first (orientation and segmentation "
            "networks declare it)"
        ),
    ] = True
    heartbeat: Annotated[
        int, typer.Option(help="seconds between running trials' heartbeats (databases)")
    ] = 10
    seed: SeedOption = 0


def search_command(name: str) -> Callable[[Callable], Callable]:
    """Register a function as ``deepmat search NAME``: its own options (what it searches
    on) come first, then every field of :class:`SearchOptions`, which it receives gathered
    as ``options``."""
    hints = typing.get_type_hints(SearchOptions, include_extras=True)
    shared = [
        inspect.Parameter(
            field.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=field.default,
            annotation=hints[field.name],
        )
        for field in dataclasses.fields(SearchOptions)
    ]

    def register(function: Callable) -> Callable:
        own = inspect.signature(function, eval_str=True).parameters.values()

        @functools.wraps(function)
        def command(**given):
            options = SearchOptions(**{p.name: given.pop(p.name) for p in shared})
            return function(**given, options=options)

        command.__signature__ = inspect.Signature([p for p in own if p.name != "options"] + shared)
        return search_app.command(name)(command)

    return register


@search_command("composition")
def search_composition_cmd(
    out: OutOption,
    data: DataOption,
    model: Annotated[str, typer.Option(help="elemnet (MLP), roost or transformer")] = "elemnet",
    target: TargetOption = None,
    formula_column: FormulaOption = None,
    *,
    options: SearchOptions,
) -> None:
    """Search composition networks: each trial trains one architecture of the model's
    declared space on the same data; trials are saved to OUT/trials/<number>/, the Pareto
    front of validation MAE against cost to OUT/pareto.png, the summary to OUT/search.json."""
    from deepmat.workflows.composition import DataSpec
    from deepmat.workflows.search_data import CompositionData

    _search(CompositionData(DataSpec(data, target, formula_column)), model, out, options)


@search_command("ebsd")
def search_ebsd_cmd(
    out: OutOption,
    data: Annotated[
        list[Path],
        typer.Option(
            help="HDF5 file of simulated EBSD patterns (`deepmat ebsd simulate`); repeat it to "
            "train on several files of one detector"
        ),
    ],
    val: Annotated[
        Path | None,
        typer.Option(help="pattern file to validate on (default: a random tenth of --data)"),
    ] = None,
    *,
    options: SearchOptions,
) -> None:
    """Search orientation CNNs (channels, depth, kernel size, pooling, head widths) on
    EBSD patterns; the error is the mean disorientation (degrees) on the validation
    patterns. Trials, Pareto front and summary as for compositions."""
    from deepmat.workflows.search_data import PatternData

    files = tuple(str(path) for path in data)
    pattern_data = PatternData(files, None if val is None else str(val))
    _search(pattern_data, "orientation-cnn", out, options)


@search_command("segmentation")
def search_segmentation_cmd(
    out: OutOption,
    data: Annotated[
        str,
        typer.Option(help="a named micrograph set (nasa-super1, metaldam, ...) or IMAGES:MASKS"),
    ],
    val: Annotated[
        str | None, typer.Option(help="IMAGES:MASKS to validate on (a named set's val images)")
    ] = None,
    classes: Annotated[
        Path | None, typer.Option(help="class map JSON file for IMAGES:MASKS folders")
    ] = None,
    pretrained: Annotated[
        bool, typer.Option(help="encoders start from ImageNet's VGG-19 weights")
    ] = True,
    *,
    options: SearchOptions,
) -> None:
    """Search segmentation networks (U-Net or PixelNet, encoder depth, decoder and head
    widths, tile) on labelled micrographs; the error is 1 − mean IoU on the validation
    images. Trials, Pareto front and summary as for compositions."""
    from deepmat.workflows.search_data import MicrographData

    micrographs = MicrographData(data, val, None if classes is None else str(classes), pretrained)
    _search(micrographs, "segmentation", out, options)


def _search(data, model: str, out: Path, options: SearchOptions) -> None:
    """Run the search of ``model`` on ``data`` and print what it found."""
    from deepmat.workflows.search import SearchJob, run_search
    from deepmat.workflows.search_study import SamplerSpec

    o = options
    try:
        job = SearchJob(
            model=model,
            data=data,
            out=out,
            trials=o.trials,
            storage=o.storage,
            study=o.study,
            workers=o.workers,
            objectives=tuple(o.objective or ("error", "latency", "params")),
            sampler=SamplerSpec(
                o.sampler, o.population, o.crossover, o.crossover_prob, o.mutation_prob, o.seed
            ),
            preset=o.preset,
            epochs=o.epochs,
            subset=o.subset,
            val_subset=o.val_subset,
            seed=o.seed,
            space=_read_ranges(o.space) if o.space else {},
            prune=o.prune,
            start=o.start,
            heartbeat=o.heartbeat,
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
            f"best validation {summary['error']} {best['val_error']:.4g}: trial "
            f"{best['number']} ({best['params']:,} weights) at {best.get('path')}"
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
