"""What every command shares: the console, errors, option types, the one builder of training
options, and the tables that print metrics."""

from __future__ import annotations

import csv
import functools
import inspect
import io
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)

DataOption = Annotated[
    str,
    typer.Option(
        "--data", help="named dataset (see `deepmat datasets`; NAME:SPLIT for one split) or CSV"
    ),
]
TargetOption = Annotated[
    str | None, typer.Option(help="target column (default: the dataset's, or 'target' for a CSV)")
]
FormulaOption = Annotated[
    str | None,
    typer.Option("--formula-column", help="formula column (default: the dataset's, or 'formula')"),
]
IdColumnOption = Annotated[str | None, typer.Option(help="id column of a structure CSV")]
CriterionOption = Annotated[
    str,
    typer.Option(
        help="how to fit the factors on σ: nll (maximum likelihood), miscalibration (the "
        "smallest miscalibration area, for errors with heavier tails than a Gaussian's) or "
        "coverage (95 % intervals that hold --coverage: split conformal)"
    ),
]
CoverageOption = Annotated[
    float, typer.Option(help="with --criterion coverage: the share the 95 % interval must hold")
]
DropOption = Annotated[
    bool,
    typer.Option("--drop-invalid", help="skip and count bad rows instead of stopping at the first"),
]
StructureTableOption = Annotated[
    Path | None,
    typer.Option(
        "--table", help="id,target CSV for a folder or tar archive of <id>.cif files (CGCNN layout)"
    ),
]
CifColumnOption = Annotated[str, typer.Option(help="CIF column of a structure CSV")]
OutOption = Annotated[Path, typer.Option(help="directory for the saved model and checkpoints")]

# Training options: None means "the preset's value" (see each estimator's presets).
PresetOption = Annotated[
    str,
    typer.Option(
        help="default (sensible, minutes on a laptop), paper (as published) or benchmark "
        "(exactly the run behind the README's numbers)"
    ),
]
EpochsOption = Annotated[int | None, typer.Option(help="epochs (default: the preset's)")]
BatchSizeOption = Annotated[int | None, typer.Option(help="batch size (default: the preset's)")]
LrOption = Annotated[
    float | None, typer.Option(help="Adam learning rate, the peak for onecycle (preset's)")
]
ScheduleOption = Annotated[
    str | None, typer.Option(help="constant, onecycle, cosine or plateau (preset's)")
]
PatienceOption = Annotated[
    int | None, typer.Option(help="epochs without improvement before stopping (preset's)")
]
PrecisionOption = Annotated[
    str | None,
    typer.Option(help="32-true, or bf16-mixed (faster on AVX-512 BF16 CPUs and GPUs) (preset's)"),
]
DevicesOption = Annotated[
    str | None, typer.Option(help="devices per node, a number or 'auto' (Lightning; default 1)")
]
NodesOption = Annotated[int | None, typer.Option(help="machines to train on (Lightning)")]
StrategyOption = Annotated[
    str | None, typer.Option(help="distribution strategy, e.g. ddp (Lightning; default auto)")
]
LossOption = Annotated[
    str | None,
    typer.Option(
        help="l1, mse, or for a network that predicts its own σ (--heteroscedastic) gaussian-nll, "
        "laplace-nll or their forms that train the mean as mse and l1 do, gaussian-beta-nll "
        "and laplace-beta-nll (default: the preset's; gaussian-nll with --heteroscedastic)"
    ),
]
InitOption = Annotated[
    str | None,
    typer.Option(
        help="start from this saved or pretrained model's weights and target scaling "
        "(fine-tuning, transfer learning): same architecture and representation; with "
        "--heteroscedastic a plain network gains its σ output"
    ),
]
SeedOption = Annotated[int, typer.Option(help="random seed of the split and the weights")]
ResumeOption = Annotated[
    bool, typer.Option(help="continue from OUT/checkpoints/last.ckpt after an interruption")
]
HeteroscedasticOption = Annotated[
    bool,
    typer.Option(help="a network predicts its own standard deviation too (Gaussian NLL loss)"),
]
FreezeOption = Annotated[
    int | None,
    typer.Option(
        help="with --init: keep this many leading layers of that model fixed and fine-tune the "
        "rest (transfer learning of the last layers)"
    ),
]
EnsembleOption = Annotated[
    int, typer.Option(help="train this many models from seeds SEED, SEED+1, ... as one")
]
EnsembleJobsOption = Annotated[
    int, typer.Option(help="train this many ensemble members at a time, in own processes")
]


# The options every ``deepmat train`` command shares, declared once (with_training_options).
SHARED_TRAINING_OPTIONS = {
    "epochs": EpochsOption,
    "batch_size": BatchSizeOption,
    "lr": LrOption,
    "schedule": ScheduleOption,
    "patience": PatienceOption,
    "precision": PrecisionOption,
    "loss": LossOption,
    "devices": DevicesOption,
    "num_nodes": NodesOption,
    "strategy": StrategyOption,
    "init": InitOption,
    "freeze": FreezeOption,
}


def with_training_options(command: Callable) -> Callable:
    """Give a ``deepmat train`` command the options of :data:`SHARED_TRAINING_OPTIONS`
    (each None: the preset's value); the command receives them as one dict, its
    ``training`` parameter."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "training"]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
        for name, kind in SHARED_TRAINING_OPTIONS.items()
    ]

    @functools.wraps(command)
    def run(**options):
        training = {name: options.pop(name) for name in SHARED_TRAINING_OPTIONS}
        return command(**options, training=training)

    run.__signature__ = signature.replace(parameters=[*own, *shared])
    return run


TRAINING_OPTIONS = (
    "epochs",
    "batch_size",
    "lr",
    "schedule",
    "patience",
    "precision",
    "loss",
    "dropout_until",
    "devices",
    "num_nodes",
    "strategy",
    "init",
    "freeze",
    "seed",
)


def training_overrides(options: dict) -> dict:
    """The training options among a command's ``options`` (its parameters), as TrainConfig
    fields that replace the preset's; options left at None keep the preset's value."""
    given = {k: options[k] for k in TRAINING_OPTIONS if options.get(k) is not None}
    if isinstance(given.get("devices"), str) and given["devices"].isdigit():
        given["devices"] = int(given["devices"])
    return given | {"progress": sys.stderr.isatty()}


def fail(exc: Exception) -> NoReturn:
    """Print a deepmat error as one line and exit with status 2."""
    console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
    raise typer.Exit(2)


def write_table(columns: Mapping[str, Sequence], output: Path | None, what: str) -> None:
    """``columns`` (a DataFrame, or a dict of equally long columns) as CSV to ``output``, or
    to stdout without one; plain ``csv``, so that predicting needs no pandas."""
    header = list(columns)
    rows = list(zip(*(columns[name] for name in header), strict=True))
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([header, *rows])
    if output:
        Path(output).write_text(text.getvalue())
        console.print(f"{len(rows)} {what} written to {output}")
    else:
        typer.echo(text.getvalue(), nl=False)


# Metrics printed when some set has them: R² (not of strain fields), MAPE (homogenization
# models) and MASE (localization models), with their column and format.
_OPTIONAL_METRICS = {"r2": ("R²", ".4f"), "mape": ("MAPE %", ".3g"), "mase": ("MASE %", ".3g")}


def print_metrics(name: str, metrics: dict) -> None:
    """One row per set: MAE, RMSE, those of :data:`_OPTIONAL_METRICS` that some set has, n;
    orientation metrics (disorientations) get their own columns."""
    if any("mean_disorientation_deg" in m for m in metrics.values()):
        print_orientation_metrics(name, metrics)
        return
    if not all("mae" in m for m in metrics.values()):  # segmentation, generators
        print_named_metrics(name, metrics)
        return
    optional = [key for key in _OPTIONAL_METRICS if any(key in m for m in metrics.values())]
    table = Table(title=name)
    for column in ("set", "MAE", "RMSE", *(_OPTIONAL_METRICS[k][0] for k in optional), "n"):
        table.add_column(column)
    for side, m in metrics.items():
        values = [format(m.get(k, float("nan")), _OPTIONAL_METRICS[k][1]) for k in optional]
        table.add_row(side, f"{m['mae']:.4g}", f"{m['rmse']:.4g}", *values, str(m["n"]))
    console.print(table)


def print_named_metrics(name: str, metrics: dict) -> None:
    """One row per set, one column per numeric metric any set has."""
    keys = list(dict.fromkeys(k for m in metrics.values() for k, v in m.items() if _number(v)))
    table = Table(title=name)
    for column in ("set", *keys):
        table.add_column(column)
    for side, m in metrics.items():
        table.add_row(side, *(format(m[k], ".4g") if k in m else "-" for k in keys))
    console.print(table)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def print_orientation_metrics(name: str, metrics: dict) -> None:
    """One row per set: mean and median disorientation, shares within 1, 2 and 5°, n."""
    table = Table(title=name)
    for column in ("set", "mean °", "median °", "≤ 1°", "≤ 2°", "≤ 5°", "n"):
        table.add_column(column)
    for side, m in metrics.items():
        within = [f"{m[f'within_{t}deg']:.1%}" for t in (1, 2, 5)]
        mean, median = m["mean_disorientation_deg"], m["median_disorientation_deg"]
        table.add_row(side, f"{mean:.3g}", f"{median:.3g}", *within, str(m["n"]))
    console.print(table)


SchedulerOption = Annotated[
    str, typer.Option(help="threads, processes, or a Dask scheduler address (tcp://HOST:PORT)")
]


def dask_target(scheduler: str) -> dict:
    """``client`` and ``scheduler`` arguments of :func:`deepmat.parallel.map_chunks` for the
    value of ``--scheduler``: a local scheduler's name, or a cluster's address."""
    from deepmat.parallel import LOCAL_SCHEDULERS

    if scheduler in LOCAL_SCHEDULERS:
        return {"client": None, "scheduler": scheduler}
    if ":" not in scheduler:
        raise typer.BadParameter(
            f"{scheduler!r} is neither {', '.join(LOCAL_SCHEDULERS)} nor an address HOST:PORT",
            param_hint="--scheduler",
        )
    return {"client": scheduler, "scheduler": "threads"}
