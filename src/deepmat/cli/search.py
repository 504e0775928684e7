"""``deepmat search``: architecture search on Optuna, a thin shell over
:mod:`deepmat.workflows.search`.

Every worker shares one study through ``--storage``; ``--workers N`` starts N processes
here, and the same command on another machine (same ``--storage`` and ``--study``) joins
them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
TrialsOption = Annotated[int, typer.Option(help="finished trials over all workers")]
WorkersOption = Annotated[int, typer.Option(help="worker processes started here")]
StorageOption = Annotated[
    str | None,
    typer.Option(
        help="sqlite:///FILE (one machine), postgresql://USER:PASSWORD@HOST/DB (many), or "
        "a journal file path (default: sqlite:///OUT/study.db)"
    ),
]
StudyOption = Annotated[str, typer.Option(help="study name; workers of one study share it")]
SamplerOption = Annotated[str, typer.Option(help="nsga2 (genetic) or tpe")]
PopulationOption = Annotated[int, typer.Option(help="NSGA-II trials per generation")]
CrossoverOption = Annotated[
    str, typer.Option(help="NSGA-II crossover: uniform, blxalpha, sbx, vsbx, undx or spx")
]
CrossoverProbOption = Annotated[float, typer.Option(help="NSGA-II crossover probability")]
MutationProbOption = Annotated[
    float | None,
    typer.Option(help="NSGA-II mutation probability per parameter (default 1/parameters)"),
]
ObjectiveOption = Annotated[
    list[str] | None,
    typer.Option(
        help="minimised, repeatable: error (validation), latency (measured), flops, params "
        "(default: error, latency, params)"
    ),
]
EpochsOption = Annotated[int | None, typer.Option(help="epochs of every trial (preset's)")]
SubsetOption = Annotated[
    int | None, typer.Option(help="train every trial on this many training records")
]
ValSubsetOption = Annotated[
    int | None, typer.Option(help="score every epoch on this many validation records")
]
SpaceOption = Annotated[
    Path | None,
    typer.Option(
        help='JSON file narrowing the declared space: {"width": [32, 256], "residual": [false]}'
    ),
]
PruneOption = Annotated[
    bool, typer.Option(help="stop trials worse than the median at the same epoch")
]
HeartbeatOption = Annotated[
    int, typer.Option(help="seconds between running trials' heartbeats (databases)")
]


@search_app.command("composition")
def search_composition_cmd(
    out: OutOption,
    data: DataOption,
    model: Annotated[str, typer.Option(help="elemnet (MLP), roost or transformer")] = "elemnet",
    target: TargetOption = None,
    formula_column: FormulaOption = None,
    trials: TrialsOption = 60,
    workers: WorkersOption = 1,
    storage: StorageOption = None,
    study: StudyOption = "search",
    sampler: SamplerOption = "nsga2",
    population: PopulationOption = 20,
    crossover: CrossoverOption = "uniform",
    crossover_prob: CrossoverProbOption = 0.9,
    mutation_prob: MutationProbOption = None,
    objective: ObjectiveOption = None,
    epochs: EpochsOption = None,
    preset: PresetOption = "default",
    subset: SubsetOption = None,
    val_subset: ValSubsetOption = None,
    space: SpaceOption = None,
    prune: PruneOption = True,
    heartbeat: HeartbeatOption = 10,
    seed: SeedOption = 0,
) -> None:
    """Search composition networks: each trial trains one architecture of the model's
    declared space on the same data; trials are saved to OUT/trials/<number>/, the Pareto
    front of validation MAE against cost to OUT/pareto.png, the summary to OUT/search.json."""
    options = _options(locals())
    from deepmat.workflows.composition import DataSpec
    from deepmat.workflows.search_data import CompositionData

    _search(CompositionData(DataSpec(data, target, formula_column)), model, **options)


@search_app.command("ebsd")
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
    trials: TrialsOption = 60,
    workers: WorkersOption = 1,
    storage: StorageOption = None,
    study: StudyOption = "search",
    sampler: SamplerOption = "nsga2",
    population: PopulationOption = 20,
    crossover: CrossoverOption = "uniform",
    crossover_prob: CrossoverProbOption = 0.9,
    mutation_prob: MutationProbOption = None,
    objective: ObjectiveOption = None,
    epochs: EpochsOption = None,
    preset: PresetOption = "default",
    subset: SubsetOption = None,
    val_subset: ValSubsetOption = None,
    space: SpaceOption = None,
    prune: PruneOption = True,
    heartbeat: HeartbeatOption = 10,
    seed: SeedOption = 0,
) -> None:
    """Search orientation CNNs (channels, depth, kernel size, pooling, head widths) on
    EBSD patterns; the error is the mean disorientation (degrees) on the validation
    patterns. Trials, Pareto front and summary as for compositions."""
    options = _options(locals())
    from deepmat.workflows.search_data import PatternData

    files = tuple(str(path) for path in data)
    _search(PatternData(files, None if val is None else str(val)), "orientation-cnn", **options)


@search_app.command("segmentation")
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
    trials: TrialsOption = 60,
    workers: WorkersOption = 1,
    storage: StorageOption = None,
    study: StudyOption = "search",
    sampler: SamplerOption = "nsga2",
    population: PopulationOption = 20,
    crossover: CrossoverOption = "uniform",
    crossover_prob: CrossoverProbOption = 0.9,
    mutation_prob: MutationProbOption = None,
    objective: ObjectiveOption = None,
    epochs: EpochsOption = None,
    preset: PresetOption = "default",
    subset: SubsetOption = None,
    val_subset: ValSubsetOption = None,
    space: SpaceOption = None,
    prune: PruneOption = True,
    heartbeat: HeartbeatOption = 10,
    seed: SeedOption = 0,
) -> None:
    """Search segmentation networks (U-Net or PixelNet, encoder depth, decoder and head
    widths, tile) on labelled micrographs; the error is 1 − mean IoU on the validation
    images. Trials, Pareto front and summary as for compositions."""
    options = _options(locals())
    from deepmat.workflows.search_data import MicrographData

    micrographs = MicrographData(data, val, None if classes is None else str(classes), pretrained)
    _search(micrographs, "segmentation", **options)


_DATA_OPTIONS = ("data", "val", "classes", "pretrained", "model", "target", "formula_column")


def _options(given: dict) -> dict:
    """A command's options (its ``locals()`` before anything else is defined) other than
    those describing its data and model."""
    return {k: v for k, v in given.items() if k not in _DATA_OPTIONS}


def _search(
    data,
    model: str,
    *,
    out: Path,
    space: Path | None,
    objective: list[str] | None,
    sampler: str,
    population: int,
    crossover: str,
    crossover_prob: float,
    mutation_prob: float | None,
    seed: int,
    **job: Any,
) -> None:
    """Run the search of ``model`` on ``data`` and print what it found."""
    from deepmat.workflows.search import SearchJob, run_search
    from deepmat.workflows.search_study import SamplerSpec

    try:
        summary = run_search(
            SearchJob(
                model=model,
                data=data,
                out=out,
                objectives=tuple(objective or ("error", "latency", "params")),
                sampler=SamplerSpec(
                    sampler, population, crossover, crossover_prob, mutation_prob, seed
                ),
                seed=seed,
                space=_read_ranges(space) if space else {},
                **job,
            )
        )
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
