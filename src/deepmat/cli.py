"""The ``deepmat`` command: train, predict, evaluate, explain, list datasets, run the demo."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from deepmat.errors import DataError, DeepmatError

if TYPE_CHECKING:
    from deepmat.train.ebsd import OrientationCNNRegressor
    from deepmat.train.localization import LocalizationRegressor

app = typer.Typer(
    help="Deep materials informatics.", no_args_is_help=True, pretty_exceptions_enable=False
)
train_app = typer.Typer(help="Train a model.", no_args_is_help=True)
app.add_typer(train_app, name="train")
generate_app = typer.Typer(
    help="Generate labelled data with physics solvers.", no_args_is_help=True
)
app.add_typer(generate_app, name="generate")
ebsd_app = typer.Typer(help="EBSD patterns: simulate and index them.", no_args_is_help=True)
app.add_typer(ebsd_app, name="ebsd")
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
DropOption = Annotated[
    bool,
    typer.Option("--drop-invalid", help="skip and count bad rows instead of stopping at the first"),
]


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2)


@train_app.command("composition")
def train_composition_cmd(
    out: Annotated[Path, typer.Option(help="directory for the saved model and checkpoints")],
    data: DataOption,
    model: Annotated[str, typer.Option(help="elemnet, rf-magpie or rf-fractions")] = "elemnet",
    target: TargetOption = None,
    formula_column: FormulaOption = None,
    epochs: int = 300,
    batch_size: int = 256,
    lr: Annotated[float, typer.Option(help="Adam learning rate (peak, for onecycle)")] = 1e-4,
    schedule: Annotated[str, typer.Option(help="constant, onecycle, cosine or plateau")] = (
        "constant"
    ),
    patience: Annotated[int, typer.Option(help="epochs without improvement before stopping")] = 30,
    precision: Annotated[
        str, typer.Option(help="32-true, or bf16-mixed (faster on AVX-512 BF16 CPUs and GPUs)")
    ] = "32-true",
    dropout_until: Annotated[
        float,
        typer.Option(
            help="fraction of the epochs trained with dropout; the rest without, which removes "
            "the bias dropout leaves in deep regression networks (1: dropout throughout)"
        ),
    ] = 0.75,
    trees: Annotated[int, typer.Option(help="trees of a random forest")] = 100,
    split: Annotated[str, typer.Option(help="grouped (by reduced composition) or random")] = (
        "grouped"
    ),
    val_fraction: float = 0.1,
    holdout: Annotated[
        list[str] | None,
        typer.Option(help="hold out a chemical system as the test set, e.g. Ti-O (repeatable)"),
    ] = None,
    duplicates: Annotated[str, typer.Option(help="mean, keep or error")] = "mean",
    drop_invalid: DropOption = False,
    seed: int = 0,
    resume: Annotated[bool, typer.Option(help="continue from OUT/checkpoints/last.ckpt")] = True,
) -> None:
    """Train a composition model (ElemNet or a random forest) and save it to OUT."""
    from deepmat.train.trainer import TrainConfig
    from deepmat.workflows.composition import DataSpec, make_regressor, train_composition

    on_error = "drop" if drop_invalid else "raise"
    try:
        spec = DataSpec(data, target, formula_column, duplicates, on_error)
        train, val, test, made = spec.train_val(split, val_fraction, seed, holdout)
        for table in {id(t): t for t in (train, val)}.values():
            console.print(table.report.summary())
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            schedule=schedule,
            patience=patience,
            seed=seed,
            precision=precision,
            dropout_until=dropout_until,
            progress=sys.stderr.isatty(),
        )
        regressor = make_regressor(model, target or "target", spec.unit(), config, trees, seed)
        train_composition(
            regressor, train, val, out, test=test, split=made, on_error=on_error, resume=resume
        )
    except DeepmatError as exc:
        _fail(exc)
    _print_metrics(regressor.name, regressor.metrics)
    console.print(f"saved to {out}")


@train_app.command("microstructure")
def train_microstructure_cmd(
    out: Annotated[Path, typer.Option(help="directory for the saved model and checkpoints")],
    data: Annotated[
        Path, typer.Option(help="HDF5 file of labelled microstructures (`deepmat generate`)")
    ],
    model: Annotated[
        str,
        typer.Option(
            help="homogenization: cnn3d, two-point-pca, voigt or reuss; "
            "localization (strain field): mks, slice-cnn or fcn3d"
        ),
    ] = "cnn3d",
    val: Annotated[
        Path | None, typer.Option(help="validation HDF5 (default: split off DATA at random)")
    ] = None,
    test: Annotated[Path | None, typer.Option(help="held-out test HDF5, evaluated once")] = None,
    target: Annotated[
        str | None,
        typer.Option(help="stiffness component, e.g. C11 (the default); localization: e11"),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="default: 100; slice-cnn 30")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="default: 32; slice-cnn 1024 voxels, fcn3d 8")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            help="Adam learning rate (peak, for onecycle); default: 1e-3; 2e-3 "
            "for slice-cnn and fcn3d"
        ),
    ] = None,
    schedule: Annotated[str, typer.Option(help="constant, onecycle, cosine or plateau")] = (
        "constant"
    ),
    patience: Annotated[
        int | None,
        typer.Option(help="epochs without improvement before stopping; default: 20; slice-cnn 10"),
    ] = None,
    val_fraction: Annotated[float, typer.Option(help="share of DATA held out without --val")] = (
        0.15
    ),
    seed: int = 0,
    resume: Annotated[bool, typer.Option(help="continue from OUT/checkpoints/last.ckpt")] = True,
) -> None:
    """Train a homogenization model (microstructure → stiffness component) or a localization
    model (microstructure → ε11 strain field) and save it to OUT."""
    from deepmat.workflows.microstructure import default_target, train_config, train_microstructure

    target = target or default_target(model)
    try:
        config = train_config(
            model,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            schedule=schedule,
            patience=patience,
            seed=seed,
            progress=sys.stderr.isatty(),
        )
        regressor = train_microstructure(
            model,
            data,
            out,
            val=val,
            test=test,
            target=target,
            config=config,
            val_fraction=val_fraction,
            seed=seed,
            resume=resume,
        )
    except DeepmatError as exc:
        _fail(exc)
    _print_metrics(f"{regressor.name}: {target}", regressor.metrics)
    console.print(
        f"trained on {regressor.training['data']['n_train']} microstructures; saved to {out}"
    )


@train_app.command("ebsd")
def train_ebsd_cmd(
    out: Annotated[Path, typer.Option(help="directory for the saved model and checkpoints")],
    data: Annotated[
        list[Path],
        typer.Option(
            help="HDF5 file of simulated EBSD patterns (`deepmat ebsd simulate`); repeat it to "
            "train on several files of one detector, such as a dictionary and noisy patterns"
        ),
    ],
    val: Annotated[
        Path | None,
        typer.Option(help="validation pattern file (default: split off DATA at random)"),
    ] = None,
    epochs: int = 20,
    batch_size: int = 128,
    lr: Annotated[float, typer.Option(help="peak Adam learning rate (one-cycle schedule)")] = 2e-3,
    patience: Annotated[int, typer.Option(help="epochs without improvement before stopping")] = 10,
    precision: Annotated[
        str, typer.Option(help="32-true, or bf16-mixed (faster on AVX-512 BF16 CPUs and GPUs)")
    ] = "32-true",
    val_fraction: Annotated[float, typer.Option(help="share of DATA held out without --val")] = (
        0.1
    ),
    seed: int = 0,
    resume: Annotated[bool, typer.Option(help="continue from OUT/checkpoints/last.ckpt")] = True,
) -> None:
    """Train the orientation CNN (EBSD pattern → crystal orientation; cubic phases learn a
    symmetry-invariant embedding, others a quaternion with the disorientation loss) on
    simulated patterns and save it to OUT."""
    from deepmat.train.trainer import TrainConfig
    from deepmat.workflows.ebsd import train_ebsd

    try:
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            schedule="onecycle",
            patience=patience,
            seed=seed,
            precision=precision,
            progress=sys.stderr.isatty(),
        )
        regressor = train_ebsd(
            data, out, val=val, config=config, val_fraction=val_fraction, resume=resume
        )
    except DeepmatError as exc:
        _fail(exc)
    _print_orientation_metrics(regressor.name, regressor.metrics)
    console.print(f"trained on {regressor.training['data']['n_train']} patterns; saved to {out}")


StructureTableOption = Annotated[
    Path | None,
    typer.Option(
        "--table", help="id,target CSV for a folder or tar archive of <id>.cif files (CGCNN layout)"
    ),
]
CifColumnOption = Annotated[str, typer.Option(help="CIF column of a structure CSV")]


@train_app.command("crystal")
def train_crystal_cmd(
    out: Annotated[Path, typer.Option(help="directory for the saved model and checkpoints")],
    data: Annotated[
        str,
        typer.Option(
            help="structure dataset (mp-eform, perovskites), a folder or tar archive of CIFs "
            "with --table, a CSV with a CIF column, or pymatgen JSON"
        ),
    ],
    model: Annotated[
        str,
        typer.Option(
            help="cgcnn (gated convolution), cgcnn-shared, cgcnn-linear (interpretable: "
            "per-site contributions) or perovskite-mlp (ABX3 site descriptors)"
        ),
    ] = "cgcnn",
    table: StructureTableOption = None,
    target: TargetOption = None,
    cif_column: CifColumnOption = "cif",
    id_column: IdColumnOption = None,
    unit: Annotated[str, typer.Option(help="unit of the target, for plots and cards")] = "",
    epochs: int = 200,
    batch_size: int = 32,
    lr: Annotated[float, typer.Option(help="peak Adam learning rate (cosine schedule)")] = 1e-3,
    patience: Annotated[int, typer.Option(help="epochs without improvement before stopping")] = (
        150
    ),
    val_fraction: float = 0.1,
    test_fraction: Annotated[float, typer.Option(help="share held out as a test set")] = 0.0,
    limit: Annotated[int | None, typer.Option(help="read only the first records")] = None,
    drop_invalid: DropOption = False,
    seed: int = 0,
    resume: Annotated[bool, typer.Option(help="continue from OUT/checkpoints/last.ckpt")] = True,
) -> None:
    """Train a crystal-structure model (CGCNN or the perovskite site network) and save it
    to OUT; the split keeps each crystal (StructureMatcher) on one side."""
    from deepmat.data.registry import DATASETS
    from deepmat.train.trainer import TrainConfig
    from deepmat.workflows.crystal import (
        make_structure_model,
        read_structures,
        split_structures,
        train_structure_model,
    )

    try:
        structures = read_structures(
            data,
            target or "target",
            table=table,
            cif_column=cif_column,
            id_column=id_column,
            on_error="drop" if drop_invalid else "raise",
            limit=limit,
        )
        console.print(structures.report.summary())
        train, val, test, made = split_structures(structures, val_fraction, test_fraction, seed)
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            schedule="cosine",
            patience=patience,
            seed=seed,
            progress=sys.stderr.isatty(),
        )
        if data in DATASETS and not unit:
            unit = DATASETS[data].unit
        regressor = make_structure_model(model, target or "target", unit, config)
        train_structure_model(regressor, train, val, out, test=test, split=made, resume=resume)
    except DeepmatError as exc:
        _fail(exc)
    _print_metrics(regressor.name, regressor.metrics)
    console.print(f"saved to {out}")


@app.command()
def explain(
    model_dir: Annotated[Path, typer.Argument(help="saved cgcnn-linear model directory")],
    inputs: Annotated[
        list[Path], typer.Argument(help="CIF files or folders, or CSVs with a CIF column")
    ],
    out: Annotated[Path, typer.Option(help="directory for the CSVs and the picture")],
    cif_column: CifColumnOption = "cif",
) -> None:
    """Each site's contribution to the prediction of an interpretable (linear-pooling)
    CGCNN: sites.csv, means by element and by perovskite site (A/B/X), and a picture."""
    import deepmat
    from deepmat.train.crystal import CrystalGraphRegressor
    from deepmat.workflows.crystal import explain_structures

    try:
        model = deepmat.load(model_dir)
        if not isinstance(model, CrystalGraphRegressor) or model.spec.pooling != "linear":
            raise DeepmatError(
                f"{model_dir}: explain needs a CGCNN with linear pooling (--model cgcnn-linear)"
            )
        paths = explain_structures(model, _read_structure_inputs(inputs, cif_column), out)
    except DeepmatError as exc:
        _fail(exc)
    for what, path in paths.items():
        console.print(f"{what}: {path}")


def _read_structure_inputs(inputs: list[Path], cif_column: str):
    """CIF files, folders of them and CSVs with a CIF column, as one table without targets."""
    from deepmat.data.structures import concat_tables
    from deepmat.workflows.crystal import read_structures

    return concat_tables([read_structures(path, None, cif_column=cif_column) for path in inputs])


# Metrics printed when some set has them: R² (not of strain fields), MAPE (homogenization
# models) and MASE (localization models), with their column and format.
_OPTIONAL_METRICS = {"r2": ("R²", ".4f"), "mape": ("MAPE %", ".3g"), "mase": ("MASE %", ".3g")}


def _print_metrics(name: str, metrics: dict) -> None:
    """One row per set: MAE, RMSE, those of :data:`_OPTIONAL_METRICS` that some set has, n."""
    optional = [key for key in _OPTIONAL_METRICS if any(key in m for m in metrics.values())]
    table = Table(title=name)
    for column in ("set", "MAE", "RMSE", *(_OPTIONAL_METRICS[k][0] for k in optional), "n"):
        table.add_column(column)
    for side, m in metrics.items():
        values = [format(m.get(k, float("nan")), _OPTIONAL_METRICS[k][1]) for k in optional]
        table.add_row(side, f"{m['mae']:.4g}", f"{m['rmse']:.4g}", *values, str(m["n"]))
    console.print(table)


def _print_orientation_metrics(name: str, metrics: dict) -> None:
    """One row per set: mean and median disorientation, shares within 1, 2 and 5°, n."""
    table = Table(title=name)
    for column in ("set", "mean °", "median °", "≤ 1°", "≤ 2°", "≤ 5°", "n"):
        table.add_column(column)
    for side, m in metrics.items():
        within = [f"{m[f'within_{t}deg']:.1%}" for t in (1, 2, 5)]
        mean, median = m["mean_disorientation_deg"], m["median_disorientation_deg"]
        table.add_row(side, f"{mean:.3g}", f"{median:.3g}", *within, str(m["n"]))
    console.print(table)


def _read_inputs(inputs: list[str], formula_column: str) -> list[str]:
    formulas: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.suffix in (".csv", ".gz") or path.is_file():
            if not path.exists():
                raise typer.BadParameter(f"{item}: no such file")
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            if formula_column not in frame.columns:
                raise typer.BadParameter(
                    f"{item}: no column {formula_column!r}; columns are {', '.join(frame.columns)}"
                )
            formulas += frame[formula_column].tolist()
        else:
            formulas.append(item)
    return formulas


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="saved model directory")],
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="formulas, or CSVs with a formula column; HDF5/.npy files of microstructures; "
            "EBSD pattern files for an orientation model; CIF files, folders of them or CSVs "
            "with a CIF column for a structure model"
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="CSV to write; .h5 or .npy for the fields of a localization model",
        ),
    ] = None,
    formula_column: str = "formula",
    cif_column: CifColumnOption = "cif",
    std: Annotated[bool, typer.Option(help="also write standard deviations")] = False,
) -> None:
    """Predict the target of formulas (or of the formulas in CSV files), or of the
    microstructures in HDF5/.npy files for a microstructure model: ε11 fields for a
    localization model, written to OUTPUT or summarised; orientations of EBSD patterns for
    an orientation model; the target of crystal structures for a structure model."""
    import deepmat
    from deepmat.data.composition import composition_table
    from deepmat.train.ebsd import OrientationCNNRegressor
    from deepmat.train.localization import LocalizationRegressor
    from deepmat.train.microstructure import MicrostructureRegressor

    try:
        model = deepmat.load(model_dir)
        if isinstance(model, OrientationCNNRegressor):
            _predict_orientations(model, inputs, output)
            return
        if isinstance(model, MicrostructureRegressor):
            _predict_microstructures(model, inputs, output)
            return
        if isinstance(model, LocalizationRegressor):
            _predict_fields(model, inputs, output)
            return
        if model.card()["input"] == "structure":
            structures = _read_structure_inputs([Path(i) for i in inputs], cif_column)
            frame = pd.DataFrame({"id": structures.ids, model.target: model.predict(structures)})
            _write_table(frame, output, "predictions")
            return
        formulas = _read_inputs(inputs, formula_column)
        table = composition_table(
            formulas,
            source="inputs",
            duplicates="keep",
            label=lambda i: f"input {i + 1} ({formulas[i]})",
        )
        result = model.predict(table, return_std=std)
    except DeepmatError as exc:
        _fail(exc)
    frame = pd.DataFrame({"formula": table.formulas})
    values, spread = result if std else (result, None)
    frame[model.target] = values
    if spread is not None:
        frame[f"{model.target}_std"] = spread
    _write_table(frame, output, "predictions")


def _predict_orientations(
    model: OrientationCNNRegressor, inputs: list[str], output: Path | None
) -> None:
    from deepmat.workflows.ebsd import predict_pattern_files

    _write_table(predict_pattern_files(model, inputs), output, "orientations")


def _write_table(frame: pd.DataFrame, output: Path | None, what: str) -> None:
    """``frame`` as CSV to ``output``, or to stdout without one."""
    if output:
        frame.to_csv(output, index=False)
        console.print(f"{len(frame)} {what} written to {output}")
    else:
        typer.echo(frame.to_csv(index=False), nl=False)


def _predict_microstructures(model, inputs: list[str], output: Path | None) -> None:
    from deepmat.workflows.microstructure import predict_microstructure_files

    frames = []
    for item, values in predict_microstructure_files(model, inputs):
        columns = {"file": item, "index": range(len(values)), model.target: values}
        frames.append(pd.DataFrame(columns))
    _write_table(pd.concat(frames, ignore_index=True), output, "predictions")


def _predict_fields(model: LocalizationRegressor, inputs: list[str], output: Path | None) -> None:
    """Write the ε11 fields predicted for ``inputs`` to ``output``, or summarise them."""
    from deepmat.workflows.microstructure import (
        check_fields_output,
        field_summary,
        predict_microstructure_files,
        write_fields,
    )

    if output:
        check_fields_output(output)
    predictions = predict_microstructure_files(model, inputs)
    if output:
        write_fields(output, predictions, model)
        n = sum(len(fields) for _, fields in predictions)
        console.print(f"{n} ε11 fields written to {output}")
    else:
        for item, fields in predictions:
            typer.echo(field_summary(item, fields))


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="saved model directory")],
    data: Annotated[str, typer.Argument(help="CSV file, or named dataset NAME[:SPLIT]")],
    target: TargetOption = None,
    formula_column: FormulaOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print metrics as JSON")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="parity plot PNG, or strain-field picture for a localization model "
            "(default: in MODEL_DIR)"
        ),
    ] = None,
    drop_invalid: DropOption = False,
    table_csv: StructureTableOption = None,
    cif_column: CifColumnOption = "cif",
    id_column: IdColumnOption = None,
    part: Annotated[
        str | None,
        typer.Option(
            help="score only the train, val or test records of the split saved with the model "
            "(structure and composition models)"
        ),
    ] = None,
) -> None:
    """MAE, RMSE and R² (MASE for strain fields) of a saved model on labelled data, and a
    parity plot (a strain-field picture for a localization model); the disorientation
    statistics of an orientation model on a pattern file with reference orientations."""
    import deepmat
    from deepmat.train.ebsd import OrientationCNNRegressor
    from deepmat.train.localization import LocalizationRegressor
    from deepmat.train.metrics import parity_plot
    from deepmat.train.microstructure import MicrostructureRegressor
    from deepmat.workflows.common import split_part_rows
    from deepmat.workflows.composition import DataSpec

    on_error = "drop" if drop_invalid else "raise"
    try:
        model = deepmat.load(model_dir)
        image_model = MicrostructureRegressor | LocalizationRegressor | OrientationCNNRegressor
        if part and isinstance(model, image_model):
            raise DataError(
                f"--part needs a composition or structure model; {model_dir} is a "
                f"{model.family} model, whose test data comes as its own file"
            )
        if isinstance(model, MicrostructureRegressor | LocalizationRegressor):
            _evaluate_microstructures(model, model_dir, Path(data), as_json, plot)
            return
        if isinstance(model, OrientationCNNRegressor):
            _evaluate_orientations(model, Path(data), as_json)
            return
        if model.card()["input"] == "structure":
            from deepmat.data.registry import DATASETS
            from deepmat.workflows.crystal import read_structures

            named = data in DATASETS and not Path(data).exists()
            table = read_structures(
                data,
                target or (None if named else model.target),
                table=table_csv,
                cif_column=cif_column,
                id_column=id_column,
                on_error=on_error,
            )
            names = table.ids
        else:
            spec = DataSpec(data, target, formula_column, "mean", on_error)
            table = spec.load() if part else spec.evaluation_table()
            table = table.restrict_elements(model.representation.supported_elements, on_error)
            names = table.formulas
        if part:
            rows, missing = split_part_rows(model_dir, part, names)
            table = table.subset(rows)
        metrics, prediction = model.evaluate(table)
    except DeepmatError as exc:
        _fail(exc)
    metrics["dropped"] = sum(table.report.dropped.values())
    if part:
        metrics |= {"part": part, "part_records_missing": missing}
    stem = Path(data).name.split(".")[0].replace(":", "_") + (f"_{part}" if part else "")
    plot = plot or Path(model_dir) / f"parity_{stem}.png"
    parity_plot(table.targets, prediction, plot, title=f"{model.name} on {data}", unit=model.unit)
    if as_json:
        typer.echo(json.dumps(metrics))
    else:
        console.print(table.report.summary())
        if part and missing:
            console.print(f"{missing} {part} records of the saved split are not in {data}")
        _print_metrics(f"{model.name} on {data}", {part or "data": metrics})
        console.print(f"parity plot: {plot}")


def _evaluate_microstructures(
    model, model_dir: Path, data: Path, as_json: bool, plot: Path | None
) -> None:
    from deepmat.workflows.microstructure import evaluate_microstructure_file, plot_name

    plot = plot or model_dir / plot_name(model, data.name.split(".")[0])
    metrics = evaluate_microstructure_file(model, data, plot)
    if as_json:
        typer.echo(json.dumps(metrics))
    else:
        _print_metrics(f"{model.name} on {data}", {"data": metrics})
        console.print(f"plot: {plot}")


def _evaluate_orientations(model: OrientationCNNRegressor, data: Path, as_json: bool) -> None:
    from deepmat.workflows.ebsd import evaluate_pattern_file

    metrics = evaluate_pattern_file(model, data)
    if as_json:
        typer.echo(json.dumps(metrics))
    else:
        _print_orientation_metrics(f"{model.name} on {data}", {"data": metrics})


def _numbers(text: str, separator: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(separator))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a number or {separator}-separated numbers", param_hint=option
        ) from None


@generate_app.command("microstructures")
def generate_microstructures_cmd(
    out: Annotated[Path, typer.Argument(help="HDF5 file to write")],
    kind: Annotated[str, typer.Option(help="grf, sphere, ellipsoid or fibre")] = "grf",
    size: Annotated[int, typer.Option(help="voxels along each axis")] = 21,
    dims: Annotated[int, typer.Option(help="2 or 3")] = 3,
    n: Annotated[int, typer.Option("--n", help="number of microstructures")] = 100,
    volume_fraction: Annotated[
        str, typer.Option(help="fraction of phase 1, or MIN:MAX to draw one per sample")
    ] = "0.5",
    feature_size: Annotated[
        str,
        typer.Option(
            help="grf: kernel width in voxels (or one per axis, comma-separated); "
            "sphere/fibre: radius; ellipsoid: semi-axes"
        ),
    ] = "3",
    length: Annotated[float | None, typer.Option(help="fibre length (default: cell size)")] = (
        None
    ),
    direction: Annotated[
        str | None, typer.Option(help="fixed inclusion direction, e.g. 0,0,1 (default random)")
    ] = None,
    contrast: Annotated[float, typer.Option(help="Young's modulus of phase 1 / phase 0")] = 50.0,
    label: Annotated[str, typer.Option(help="stiffness or strain")] = "stiffness",
    load_cases: Annotated[
        int, typer.Option(help="stiffness columns to solve (1-6; the rest are stored as NaN)")
    ] = 6,
    tol: Annotated[float, typer.Option(help="solver relative residual")] = 1e-6,
    seed: int = 0,
    workers: Annotated[int, typer.Option(help="parallel local workers")] = 2,
    chunk_size: Annotated[int, typer.Option(help="samples per Dask task")] = 4,
    scheduler: Annotated[
        str,
        typer.Option(help="threads, processes, or a Dask scheduler address (tcp://HOST:PORT)"),
    ] = "threads",
) -> None:
    """Generate random two-phase microstructures, label them by FFT elasticity, write HDF5."""
    from deepmat.data.microstructures import MicrostructureSpec
    from deepmat.parallel import LOCAL_SCHEDULERS
    from deepmat.workflows.generate import generate_dataset

    fraction = _numbers(volume_fraction, ":", "--volume-fraction")
    sizes = _numbers(feature_size, ",", "--feature-size")
    local = scheduler in LOCAL_SCHEDULERS
    if not local and ":" not in scheduler:
        raise typer.BadParameter(
            f"{scheduler!r} is neither {', '.join(LOCAL_SCHEDULERS)} nor an address HOST:PORT",
            param_hint="--scheduler",
        )
    try:
        spec = MicrostructureSpec(
            kind=kind,
            shape=(size,) * dims,
            volume_fraction=fraction[0] if len(fraction) == 1 else fraction,
            feature_size=sizes[0] if len(sizes) == 1 else sizes,
            length=length,
            direction=None if direction is None else _numbers(direction, ",", "--direction"),
        )
        report = generate_dataset(
            out,
            spec,
            n,
            contrast=contrast,
            label=label,
            seed=seed,
            client=None if local else scheduler,
            scheduler=scheduler if local else "threads",
            workers=workers,
            tol=tol,
            load_cases=load_cases,
            chunk_size=chunk_size,
            progress=sys.stderr.isatty(),
            console=console,
        )
    except DeepmatError as exc:
        _fail(exc)
    console.print(report.summary())


@ebsd_app.command("simulate")
def ebsd_simulate_cmd(
    out: Annotated[Path, typer.Argument(help="HDF5 file to write")],
    resolution: Annotated[
        float | None,
        typer.Option(help="orientations on a fundamental-zone grid of this spacing (°)"),
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="this many random orientations")] = None,
    shape: Annotated[tuple[int, int], typer.Option(help="detector rows and columns")] = (60, 60),
    pc: Annotated[
        tuple[float, float, float] | None,
        typer.Option(
            help="projection centre PCx PCy PCz, Bruker convention (default: that of "
            "kikuchipy's nickel scan)"
        ),
    ] = None,
    noise_counts: Annotated[
        float | None, typer.Option(help="Poisson shot noise: electrons at the brightest pixel")
    ] = None,
    gaussian: Annotated[
        float, typer.Option(help="read-out noise σ, a fraction of the brightest pixel")
    ] = 0.0,
    background: Annotated[
        float, typer.Option(help="smooth background hump, a fraction of the brightest pixel")
    ] = 0.0,
    uint8: Annotated[
        bool, typer.Option("--uint8", help="8-bit patterns, each stretched onto 0-255")
    ] = False,
    seed: Annotated[int, typer.Option(help="seed of the random orientations and the noise")] = 0,
    workers: Annotated[int, typer.Option(help="parallel local workers")] = 2,
    master: Annotated[
        Path | None,
        typer.Option(help="EMsoft master pattern file (default: kikuchipy's nickel, 20 kV)"),
    ] = None,
) -> None:
    """Simulate EBSD patterns from a dynamical master pattern (kikuchipy) and write HDF5:
    a dictionary on an orientation grid, or training and test sets at random orientations."""
    from deepmat.data.ebsd import DetectorSpec, NoiseSpec
    from deepmat.workflows.ebsd import simulate_pattern_file

    try:
        detector = DetectorSpec(shape=shape) if pc is None else DetectorSpec(shape=shape, pc=pc)
        noise = NoiseSpec(noise_counts, gaussian, background, "uint8" if uint8 else "float")
        report = simulate_pattern_file(
            out,
            resolution=resolution,
            n=n,
            detector=detector,
            noise=noise,
            master=master,
            seed=seed,
            workers=workers,
            progress=sys.stderr.isatty(),
            console=console,
        )
    except DeepmatError as exc:
        _fail(exc)
    console.print(report.summary())


@ebsd_app.command("index")
def ebsd_index_cmd(
    patterns: Annotated[
        Path,
        typer.Argument(
            help="pattern file: `deepmat ebsd simulate` HDF5 or any EBSD file kikuchipy reads"
        ),
    ],
    model: Annotated[Path | None, typer.Option(help="saved orientation model directory")] = None,
    dictionary: Annotated[
        Path | None,
        typer.Option(help="simulated pattern set to index against instead of a model"),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="CSV to write (default: stdout)")
    ] = None,
    ipf: Annotated[
        Path | None, typer.Option(help="PNG of the inverse-pole-figure (IPF-Z) colour map")
    ] = None,
    correct_background: Annotated[
        bool,
        typer.Option(
            help="remove the static and dynamic background of files kikuchipy reads, as "
            "simulated patterns have none"
        ),
    ] = True,
) -> None:
    """Index EBSD patterns with a saved orientation CNN or by dictionary indexing: a CSV of
    Euler angles (Bunge, degrees) and quaternions, and disorientation statistics where the
    file records reference orientations."""
    from deepmat.workflows import ebsd

    try:
        scan, indexed = ebsd.index_file(
            patterns, model=model, dictionary=dictionary, correct_background=correct_background
        )
        table = ebsd.orientation_table(indexed, scan)
        metrics = ebsd.indexing_metrics(indexed, scan)
        if ipf:
            ebsd.ipf_plot(indexed, scan, ipf)
    except DeepmatError as exc:
        _fail(exc)
    for line in scan.corrections:
        console.print(f"{patterns}: {line}")
    for line in indexed.notes:
        console.print(f"[yellow]warning:[/] {line}")
    console.print(
        f"{len(scan)} patterns indexed by {indexed.method} in {indexed.seconds:.2f} s "
        f"({indexed.patterns_per_second:.0f} patterns/s)"
    )
    if metrics:
        _print_orientation_metrics(f"{indexed.method} on {patterns}", {"reference": metrics})
    if ipf:
        console.print(f"IPF map: {ipf}")
    _write_table(table, output, "orientations")


@app.command()
def datasets() -> None:
    """List the named datasets and whether each is in the local cache."""
    from deepmat.data.registry import DATASETS, data_dir

    table = Table(title=f"datasets (cache: {data_dir()})")
    for column in ("name", "splits", "target", "cached", "description"):
        table.add_column(column)
    for d in DATASETS.values():
        cached = all((data_dir() / f.relpath).exists() for f in d.all_files)
        table.add_row(
            d.name,
            ",".join(d.splits),
            f"{d.target_column} ({d.unit})",
            "yes" if cached else "no",
            d.description,
        )
    Console().print(table)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="directory for the demo's models and plots")] = Path(
        "runs/demo"
    ),
    epochs: int = 10,
    limit: Annotated[int | None, typer.Option(help="use a random subset of this size")] = None,
    microstructures: Annotated[
        int, typer.Option(help="microstructures generated for the homogenization part")
    ] = 150,
    grid: Annotated[int, typer.Option(help="voxels per edge of each microstructure")] = 15,
    cnn_epochs: Annotated[int, typer.Option(help="epochs of the homogenization CNN")] = 40,
) -> None:
    """Train ElemNet and a Magpie forest on data shipped inside matminer, then homogenization
    models on microstructures generated here; no network."""
    from deepmat.workflows.demo import run_demo, run_homogenization_demo

    try:
        run_demo(out, epochs=epochs, limit=limit, console=console)
        run_homogenization_demo(
            out, n=microstructures, grid=grid, epochs=cnn_epochs, console=console
        )
    except DeepmatError as exc:
        _fail(exc)
