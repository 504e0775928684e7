"""Commands that use trained models: predict, evaluate, explain, list the shipped models, and
the demo.

A model is a saved-model directory or the name of a shipped pretrained model. What it reads
is its ``input_kind`` (the estimator protocol), which picks the reader of the inputs below;
nothing here depends on the estimator's class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deepmat.cli.options import (
    CifColumnOption,
    CoverageOption,
    CriterionOption,
    DropOption,
    FormulaOption,
    IdColumnOption,
    SchedulerOption,
    StructureTableOption,
    TargetOption,
    console,
    dask_target,
    fail,
    print_metrics,
    write_table,
)
from deepmat.errors import DataError, DeepmatError

ModelArgument = Annotated[
    str, typer.Argument(help="saved model directory, or a shipped model (`deepmat models`)")
]


def _with_std(columns: dict, target: str, result, std: bool) -> dict:
    values, spread = result if std else (result, None)
    columns[target] = values
    if spread is not None:
        columns[f"{target}_std"] = spread
    return columns


def _predict_compositions(model, inputs: list[str], output: Path | None, std: bool, **options):
    from deepmat.data.readers import read_formula_inputs

    table = read_formula_inputs(inputs, options["formula_column"])
    result = model.predict(table, return_std=std)
    frame = _with_std({"formula": table.formulas}, model.target, result, std)
    write_table(frame, output, "predictions")


def _predict_structures(model, inputs: list[str], output: Path | None, std: bool, **options):
    from deepmat.data.readers import read_structure_inputs

    table = read_structure_inputs(inputs, options["cif_column"])
    if model.output_kind == "site-distribution":  # element likelihoods, a row per site
        if std:
            raise model.no_uncertainty("it predicts a distribution over elements per site")
        write_table(model.site_table(table), output, "site predictions")
        return
    result = model.predict(table, return_std=std)
    write_table(
        _with_std({"id": table.ids}, model.target, result, std),
        output,
        "predictions",
    )


def _predict_microstructures(model, inputs: list[str], output: Path | None, std: bool, **_):
    from deepmat.workflows import microstructure as jobs

    if model.output_kind == "field":
        if output:
            jobs.check_fields_output(output)
        results = jobs.predict_microstructure_files(model, inputs, return_std=std)
        predictions = [(item, result[0] if std else result) for item, result in results]
        spreads = [result[1] for _, result in results] if std else None
        if output:
            jobs.write_fields(output, predictions, model, spreads)
            n = sum(len(fields) for _, fields in predictions)
            also = " with their standard deviations" if std else ""
            console.print(f"{n} ε11 fields{also} written to {output}")
        else:
            for i, (item, fields) in enumerate(predictions):
                typer.echo(jobs.field_summary(item, fields))
                if spreads is not None:
                    typer.echo(
                        f"  σ per voxel: mean {spreads[i].mean():.4g}, max {spreads[i].max():.4g}"
                    )
        return
    columns: dict[str, list] = {"file": [], "index": [], model.target: []}
    if std:
        columns[f"{model.target}_std"] = []
    for item, result in jobs.predict_microstructure_files(model, inputs, return_std=std):
        values, spread = result if std else (result, None)
        columns["file"] += [item] * len(values)
        columns["index"] += list(range(len(values)))
        columns[model.target] += list(values)
        if spread is not None:
            columns[f"{model.target}_std"] += list(spread)
    write_table(columns, output, "predictions")


def _predict_orientations(model, inputs: list[str], output: Path | None, std: bool, **_):
    from deepmat.workflows.ebsd import predict_pattern_files

    write_table(predict_pattern_files(model, inputs, return_std=std), output, "orientations")


def _predict_micrographs(model, inputs: list[str], output: Path | None, std: bool, **_):
    """Label images of micrographs: ``predict`` is ``segment`` with label PNGs in OUTPUT."""
    from deepmat.workflows.segmentation import segment_images

    if std:
        raise model.no_uncertainty("segmentation networks give class labels")
    if output is None:
        raise DataError("a segmentation model writes label images: give -o FOLDER")
    written = segment_images(model, [Path(i) for i in inputs], output)
    console.print(f"{len(written)} label images written to {output}")


PREDICTORS = {
    "micrograph": _predict_micrographs,
    "composition": _predict_compositions,
    "structure": _predict_structures,
    "microstructure": _predict_microstructures,
    "ebsd-pattern": _predict_orientations,
}


def predict(
    model_dir: ModelArgument,
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
    std: Annotated[
        bool, typer.Option(help="also write standard deviations (an error where there are none)")
    ] = False,
) -> None:
    """Predict with a saved or shipped model: the target of formulas (or of the formulas in
    CSV files), of crystal structures, of the microstructures in HDF5/.npy files (ε11 fields
    for a localization model, written to OUTPUT or summarised), or the orientations of EBSD
    patterns."""
    import deepmat

    try:
        model = deepmat.load(model_dir)
        PREDICTORS[model.input_kind](
            model, inputs, output, std, formula_column=formula_column, cif_column=cif_column
        )
    except DeepmatError as exc:
        fail(exc)


def _reading_options(
    target, formula_column, drop_invalid, table_csv, cif_column, id_column
) -> dict:
    """How ``evaluate`` and ``recalibrate`` read labelled data (see :func:`_labelled_table`)."""
    return {
        "target": target,
        "formula_column": formula_column,
        "on_error": "drop" if drop_invalid else "raise",
        "table_csv": table_csv,
        "cif_column": cif_column,
        "id_column": id_column,
    }


def _labelled_table(model, data: str, options: dict):
    """The labelled table of ``data`` for a composition or structure model, and its name."""
    if model.input_kind == "structure":
        from deepmat.data.readers import read_structures
        from deepmat.data.registry import DATASETS

        named = data in DATASETS and not Path(data).exists()
        table = read_structures(
            data,
            options["target"] or (None if named else model.target),
            table=options["table_csv"],
            cif_column=options["cif_column"],
            id_column=options["id_column"],
            on_error=options["on_error"],
        )
        return table, table.ids, "all"
    from deepmat.workflows.composition import DataSpec

    spec = DataSpec(data, options["target"], options["formula_column"], "mean", options["on_error"])
    table, label = spec.evaluation_table()
    table = table.restrict_elements(model.representation.supported_elements, options["on_error"])
    return table, table.formulas, label


def _evaluate_records(model, model_dir: str, data: str, part: str | None, options: dict):
    """Metrics of a composition or structure model on the honest part of ``data`` (see
    :mod:`deepmat.workflows.evaluation`), with the calibration metrics of its standard
    deviations when it gives them, and the parity plot's inputs."""
    from deepmat.train.calibration import calibration_report, predict_with_spread
    from deepmat.workflows.evaluation import evaluation_scope

    table, names, label = _labelled_table(model, data, options)
    directory = model.source or model_dir
    scope = evaluation_scope(directory, model.card(), names, table.fingerprint(), part, label)
    scored = table.subset(scope.rows)
    prediction, std = predict_with_spread(model, scored)
    metrics = model.score(scored.targets, prediction)
    if std is not None:
        metrics |= calibration_report(scored.targets, prediction, std)
        std = None if "calibration" in metrics else std
    metrics |= {"dropped": sum(table.report.dropped.values())} | scope.to_dict()
    return metrics, scope, (scored.targets, prediction, std), table.report.summary()


def recalibrate(
    model_dir: Annotated[Path, typer.Argument(help="saved model directory (updated in place)")],
    data: Annotated[
        str, typer.Argument(help="the model's own data (its val part is used) or a val file")
    ],
    target: TargetOption = None,
    formula_column: FormulaOption = None,
    drop_invalid: DropOption = False,
    table_csv: StructureTableOption = None,
    cif_column: CifColumnOption = "cif",
    id_column: IdColumnOption = None,
    criterion: CriterionOption = "nll",
    coverage: CoverageOption = 0.95,
) -> None:
    """Fit the factor on a model's standard deviations that calibrates them on validation
    data, keep it in the model's card, and print the calibration before and after. Test
    records and records the model trained on are refused."""
    import deepmat

    options = _reading_options(
        target, formula_column, drop_invalid, table_csv, cif_column, id_column
    )
    try:
        if not model_dir.is_dir():
            raise DataError(
                f"{model_dir}: not a saved-model directory (copy a shipped model first)"
            )
        model = deepmat.load(model_dir)
        held_out = _validation_records(model, model_dir, data, options)
        record = model.recalibrate(*held_out, criterion=criterion, coverage=coverage)
        model.save(model_dir)
    except DeepmatError as exc:
        fail(exc)
    _print_recalibration(record)


def _validation_records(model, model_dir: Path, data: str, options: dict) -> tuple:
    """The validation records of ``data`` for the model saved in ``model_dir``, as
    ``recalibrate``'s arguments; test records and records it trained on are refused."""
    from deepmat.workflows.evaluation import evaluation_scope, read_split

    if model.input_kind == "microstructure":
        from deepmat.workflows.microstructure import read_labelled

        return read_labelled(data, model.target)[0]
    table, names, label = _labelled_table(model, data, options)
    part = "val" if read_split(model_dir) is not None else None
    scope = evaluation_scope(model_dir, model.card(), names, table.fingerprint(), part, label)
    if scope.part != "val" or scope.training_records:
        raise DataError(
            f"recalibration needs validation records; {data} gives the {scope.part} part "
            f"({scope.training_records} training records): give the model's own data or its "
            "validation file"
        )
    return (table.subset(scope.rows),)


def _print_recalibration(record: dict) -> None:
    scales = record.get("component_scales", {"standard deviations": record.get("std_scale")})
    factors = ", ".join(f"{name} × {scale:.4g}" for name, scale in scales.items())
    console.print(f"{factors} (fitted on {record['n']} val records)")
    for when in ("before", "after"):
        metrics = record[when]
        console.print(
            f"{when}: miscalibration area {metrics['miscalibration_area']:.4f}, 95 % coverage "
            f"{metrics['coverage_95']:.3f}, 68 % coverage {metrics['coverage_68']:.3f}, NLL "
            f"{metrics['nll']:.4g} (median {metrics['median_nll']:.4g})"
        )


def _save_combined(model, sources: list[str], out: Path, data, options: dict, fit: dict):
    """Save a model combined from saved ones (an ensemble, a pair) in ``out`` with their
    split; with validation ``data``, fit it there (``fit_held_out(**fit)``), save it again
    and return the recalibration (None without data)."""
    model.training["sources"] = sources
    model.save(out)
    _share_split(sources, out)
    if data is None:
        return None
    record = model.fit_held_out(*_validation_records(model, out, data, options), **fit)
    model.save(out)
    return record


def _share_split(members: list[str], out: Path) -> None:
    """Copy the members' split into the ensemble ``out``: one split, or a clear error naming
    the member trained on another (its validation records would be another's training)."""
    import shutil

    from deepmat.pretrained import pretrained_path

    places = [Path(m) if Path(m).is_dir() else pretrained_path(m) for m in members]
    splits = [place / "split.json" for place in places if (place / "split.json").exists()]
    for split in splits[1:]:
        if split.read_bytes() != splits[0].read_bytes():
            raise DataError(
                f"{split.parent} was trained on another split than "
                f"{splits[0].parent}: its validation records would be training records of "
                "the other"
            )
    if splits:
        shutil.copyfile(splits[0], out / "split.json")


def ensemble(
    members: Annotated[
        list[str], typer.Argument(help="saved model directories or shipped models, 2 or more")
    ],
    out: Annotated[Path, typer.Option(help="directory for the saved ensemble")],
    data: Annotated[
        str | None,
        typer.Option(
            help="validation data of the members (their own data: its val part) to weigh "
            "them and recalibrate the ensemble on"
        ),
    ] = None,
    weigh: Annotated[
        bool,
        typer.Option(
            help="with --data: fit the members' weights (smallest MAE) instead of equal ones"
        ),
    ] = True,
    weight: Annotated[
        list[float] | None,
        typer.Option(
            help="the members' weights, one per member in their order (repeat the option); "
            "they replace --weigh"
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="the ensemble's name")] = None,
    target: TargetOption = None,
    formula_column: FormulaOption = None,
    drop_invalid: DropOption = False,
    table_csv: StructureTableOption = None,
    cif_column: CifColumnOption = "cif",
    id_column: IdColumnOption = None,
    criterion: CriterionOption = "coverage",
    coverage: CoverageOption = 0.95,
) -> None:
    """Combine trained models that read the same input for the same target (a Roost and an
    ElemNet, say) into one ensemble saved in OUT. With --data, weigh the members and fit the
    factors on its standard deviation's parts on validation data, and record its metrics."""
    import deepmat
    from deepmat.train import Ensemble

    options = _reading_options(
        target, formula_column, drop_invalid, table_csv, cif_column, id_column
    )
    fit = {"weigh": weigh and not weight, "criterion": criterion, "coverage": coverage}
    try:
        model = Ensemble.from_members([deepmat.load(m) for m in members], None, name, weight)
        record = _save_combined(model, members, out, data, options, fit)
    except DeepmatError as exc:
        fail(exc)
    weights = ", ".join(
        f"{m.name} {w:.3f}" for m, w in zip(model.members, model.weights, strict=True)
    )
    console.print(f"saved {len(model.members)} members to {out} (weights: {weights})")
    if data is not None:
        console.print(
            f"val MAE {model.metrics['val']['mae']:.4g} (members: "
            + ", ".join(f"{v:.4g}" for v in model.metrics["val"]["member_mae"])
            + ")"
        )
        _print_recalibration(record)


def pair(
    model_dir: Annotated[
        str, typer.Argument(help="saved model directory or shipped model: the pair's mean")
    ],
    companion: Annotated[
        str,
        typer.Argument(
            help="saved model trained on the same split for the same target and input "
            "(an ensemble's member: DIR/members/I)"
        ),
    ],
    out: Annotated[Path, typer.Option(help="directory for the saved pair")],
    data: Annotated[
        str | None,
        typer.Option(
            help="validation data of the two (their own data: its val part) to recalibrate "
            "the pair on"
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="the pair's name (default: the model's)")] = None,
    target: TargetOption = None,
    formula_column: FormulaOption = None,
    drop_invalid: DropOption = False,
    table_csv: StructureTableOption = None,
    cif_column: CifColumnOption = "cif",
    id_column: IdColumnOption = None,
    criterion: CriterionOption = "coverage",
    coverage: CoverageOption = 0.95,
) -> None:
    """Give a trained model standard deviations from a companion: their disagreement and
    the companion's own σ, its predictions unchanged; saved in OUT. With --data, fit the
    factors on the two parts of σ² on validation data and record the metrics."""
    import deepmat
    from deepmat.train import Paired

    options = _reading_options(
        target, formula_column, drop_invalid, table_csv, cif_column, id_column
    )
    fit = {"criterion": criterion, "coverage": coverage}
    try:
        model = Paired.of(deepmat.load(model_dir), deepmat.load(companion), None, name)
        record = _save_combined(model, [model_dir, companion], out, data, options, fit)
    except DeepmatError as exc:
        fail(exc)
    console.print(f"saved {model.model.name} with companion {model.companion.name} to {out}")
    if data is not None:
        val = model.metrics["val"]
        console.print(f"val MAE {val['mae']:.4g} (companion {val['companion_mae']:.4g})")
        _print_recalibration(record)


def evaluate(
    model_dir: ModelArgument,
    data: Annotated[
        str, typer.Argument(help="CSV file, named dataset NAME[:SPLIT], or a labelled file")
    ],
    target: TargetOption = None,
    formula_column: FormulaOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print metrics as JSON")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="parity plot PNG, or strain-field picture for a localization model "
            "(default: in MODEL_DIR, or the working directory for a shipped model)"
        ),
    ] = None,
    drop_invalid: DropOption = False,
    table_csv: StructureTableOption = None,
    cif_column: CifColumnOption = "cif",
    id_column: IdColumnOption = None,
    part: Annotated[
        str | None,
        typer.Option(
            help="train, val, test or all records of the split saved with the model "
            "(composition and structure models); default: test, else val, when DATA is the "
            "model's own data"
        ),
    ] = None,
) -> None:
    """Score a saved or shipped model on labelled data: MAE, RMSE and R² (MASE for strain
    fields) and a parity plot; disorientation statistics for an orientation model. On the
    model's own data it scores the held-out part by default and says which part it scored."""
    import deepmat
    from deepmat.train.metrics import parity_plot

    options = _reading_options(
        target, formula_column, drop_invalid, table_csv, cif_column, id_column
    )
    calibration_plot = None
    try:
        model = deepmat.load(model_dir)
        home = Path(model_dir) if Path(model_dir).is_dir() else Path.cwd()
        stem = Path(data).name.split(".")[0].replace(":", "_")
        if model.input_kind == "micrograph":
            from deepmat.workflows.segmentation import evaluate_segmentation

            metrics = evaluate_segmentation(model, data, part or "val", plot, home, stem)
            notes, summary = [], None
        elif model.input_kind == "latent":  # a generator: scored against real structures
            from deepmat.workflows.design import evaluate_generator_file

            plot = plot or home / f"samples_{stem}.png"
            metrics = evaluate_generator_file(model, Path(data), plot) | {"part": "file"}
            notes, summary = [], None
        elif model.input_kind in ("microstructure", "ebsd-pattern"):
            if part:
                raise DataError(
                    f"--part needs a composition or structure model; {model_dir} is a "
                    f"{model.family} model, whose test data comes as its own file"
                )
            metrics = _evaluate_file(model, home, Path(data), plot, stem)
            notes, summary = [], None
        else:
            metrics, scope, (truth, prediction, std), summary = _evaluate_records(
                model, str(model_dir), data, part, options
            )
            notes = scope.notes()
            plot = plot or home / f"parity_{stem}_{scope.part}.png"
            title = f"{model.name} on {data} ({scope.part})"
            parity_plot(truth, prediction, plot, title=title, unit=model.unit)
            if std is not None:
                from deepmat.train.calibration import uncertainty_plot, uncertainty_plot_path

                calibration_plot = uncertainty_plot_path(plot)
                uncertainty_plot(
                    truth, prediction, std, calibration_plot, title=title, unit=model.unit
                )
    except DeepmatError as exc:
        fail(exc)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    if summary:
        console.print(summary)
    print_metrics(f"{model.name} on {data}", {metrics.get("part", "data"): metrics})
    if plot:
        console.print(f"plot: {plot}")
    if calibration_plot:
        console.print(f"calibration plot: {calibration_plot}")


def _evaluate_file(model, home: Path, data: Path, plot: Path | None, stem: str) -> dict:
    """Metrics of an image model on a labelled file (all its records: a test file is a file
    of its own for these families)."""
    if model.input_kind == "ebsd-pattern":
        from deepmat.workflows.ebsd import evaluate_pattern_file

        return evaluate_pattern_file(model, data) | {"part": "file"}
    from deepmat.workflows.microstructure import evaluate_microstructure_file, plot_name

    plot = plot or home / plot_name(model, stem)
    return evaluate_microstructure_file(model, data, plot) | {"part": "file"}


explain_app = typer.Typer(
    help="What a model learned: site contributions, layer activations.", no_args_is_help=True
)


@explain_app.command("sites")
def explain_sites(
    model_dir: ModelArgument,
    inputs: Annotated[
        list[Path], typer.Argument(help="CIF files or folders, or CSVs with a CIF column")
    ],
    out: Annotated[Path, typer.Option(help="directory for the CSVs and the picture")],
    cif_column: CifColumnOption = "cif",
) -> None:
    """Each site's contribution to the prediction of an interpretable (linear-pooling)
    CGCNN: sites.csv, means by element and by perovskite site (A/B/X), and a picture."""
    import deepmat
    from deepmat.data.readers import read_structure_inputs
    from deepmat.workflows.crystal import explain_structures

    try:
        model = deepmat.load(model_dir)
        if not hasattr(model, "site_contributions") or model.spec.pooling != "linear":
            raise DeepmatError(
                f"{model_dir}: explain needs a CGCNN with linear pooling (--model cgcnn-linear)"
            )
        paths = explain_structures(model, read_structure_inputs(inputs, cif_column), out)
    except DeepmatError as exc:
        fail(exc)
    for what, path in paths.items():
        console.print(f"{what}: {path}")


@explain_app.command("activations")
def explain_activations_cmd(
    model_dir: Annotated[str, typer.Argument(help="a composition network (e.g. elemnet-oqmd)")],
    out: Annotated[Path, typer.Option(help="directory for probes.json and the pictures")],
    layer: Annotated[
        list[int] | None, typer.Option(help="layer to project (1-based; repeatable)")
    ] = None,
    projection: Annotated[str, typer.Option(help="pca, tsne or umap")] = "pca",
) -> None:
    """Linear-probe accuracy of every layer for an element's group and period and a binary
    compound's charge balance, and projections of the chosen layers' activations (the
    ElemNet paper's analysis, as numbers)."""
    import deepmat
    from deepmat.workflows.activations import explain_activations

    try:
        model = deepmat.load(model_dir)
        paths = explain_activations(model, out, layer or (), projection)
    except DeepmatError as exc:
        fail(exc)
    report = json.loads(paths["probes"].read_text())
    table = Table(title=f"{model_dir}: linear-probe balanced accuracy by layer (chance)")
    table.add_column("layer")
    for prop in report["probes"]:
        table.add_column(prop)
    for k in range(report["layers"]):
        cells = [
            f"{per[k]['balanced_accuracy']:.2f} ({per[k]['chance']:.2f})"
            for per in report["probes"].values()
        ]
        table.add_row(str(k + 1), *cells)
    console.print(table)
    for what, path in paths.items():
        console.print(f"{what}: {path}")


def screen(
    system: Annotated[str, typer.Argument(help="chemical system, e.g. Na-Fe-Mn-O")],
    model_dir: Annotated[
        str, typer.Option("--model", help="a composition model of formation energy")
    ] = "elemnet-oqmd",
    max_atoms: Annotated[int, typer.Option(help="most atoms per formula unit")] = 12,
    out: Annotated[Path | None, typer.Option(help="CSV of the ranked candidates")] = None,
    known: Annotated[
        str | None,
        typer.Option(help="known compounds with formation energies: a dataset name or CSV"),
    ] = None,
    charge_balanced: Annotated[
        bool, typer.Option(help="only compositions some common oxidation states balance")
    ] = False,
    std: Annotated[bool, typer.Option(help="also the model's standard deviations")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="PNG of the predicted hull (binary or ternary)")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="parallel local workers")] = None,
    scheduler: SchedulerOption = "threads",
) -> None:
    """Enumerate every composition of a chemical system up to MAX_ATOMS atoms per formula
    unit, predict its formation energy, place it on the convex hull of the known compounds
    and the other candidates, and rank by decomposition energy (stable when ΔHd ≤ 0)."""
    import deepmat
    from deepmat.workflows.composition import DataSpec
    from deepmat.workflows.screening import hull_plot
    from deepmat.workflows.screening import screen as run_screen

    target = dask_target(scheduler)
    try:
        model = deepmat.load(model_dir)
        table = DataSpec(known).load() if known else None
        result = run_screen(
            model,
            system,
            max_atoms,
            known=table,
            only_charge_balanced=charge_balanced,
            std=std,
            workers=workers,
            **target,
        )
        if plot:
            hull_plot(result, system, plot, table)
    except DeepmatError as exc:
        fail(exc)
    console.print(
        f"{system}: {result.enumerated} compositions enumerated, {result.kept} screened, "
        f"{len(result.stable)} on or below the hull"
        + (f" of {result.known} known compounds and the candidates" if known else "")
    )
    write_table(result.candidates, out, "candidates")


def models() -> None:
    """List the pretrained models shipped with deepmat: data, metrics, size."""
    from deepmat.pretrained import pretrained_models

    table = Table(title="pretrained models (deepmat.load(NAME), deepmat predict NAME ...)")
    table.add_column("name", no_wrap=True)
    for column in ("family", "predicts", "data", "val", "test", "MB"):
        table.add_column(column)
    for entry in pretrained_models():
        table.add_row(
            entry.name,
            entry.family,
            entry.predicts,
            entry.data,
            entry.metric_text("val"),
            entry.metric_text("test"),
            f"{entry.megabytes:.1f}",
        )
    Console().print(table)


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
    """Use the shipped models on well-known materials, then train ElemNet and a Magpie forest
    on data shipped inside matminer and homogenization models on microstructures generated
    here; no network."""
    from deepmat.workflows.demo import run_demo, run_homogenization_demo, run_pretrained_demo

    try:
        run_pretrained_demo(out, console=console)
        run_demo(out, epochs=epochs, limit=limit, console=console)
        run_homogenization_demo(
            out, n=microstructures, grid=grid, epochs=cnn_epochs, console=console
        )
    except DeepmatError as exc:
        fail(exc)


def segment(
    model_dir: ModelArgument,
    inputs: Annotated[list[Path], typer.Argument(help="images or folders of images")],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for label PNGs")],
    overlay: Annotated[bool, typer.Option(help="also write overlays/<stem>.png")] = False,
    crop_bottom: Annotated[
        int, typer.Option(help="rows of information band to cut from each image's bottom")
    ] = 0,
) -> None:
    """Label every pixel of micrographs of any size with a segmentation model; writes one
    PNG of class indices per image (what `deepmat measure` reads)."""
    import deepmat
    from deepmat.workflows.segmentation import segment_images

    try:
        model = deepmat.load(model_dir)
        if model.input_kind != "micrograph":
            raise DataError(f"{model_dir} is a {model.family} model, not a segmentation one")
        written = segment_images(model, inputs, output, crop_bottom, overlay)
    except DeepmatError as exc:
        fail(exc)
    console.print(f"{len(written)} label images written to {output}")


def measure(
    inputs: Annotated[list[Path], typer.Argument(help="label PNGs (or folders) of classes")],
    class_index: Annotated[int, typer.Option("--class", help="the class to measure")],
    output: Annotated[Path, typer.Option("-o", "--output", help="particle table CSV")],
    pixel_size: Annotated[
        float | None, typer.Option(help="µm per pixel (default: lengths in pixels)")
    ] = None,
    reference: Annotated[
        int | None,
        typer.Option(
            help="also measure the zone free of CLASS particles around this class (DeCost's "
            "denuded zone around network carbide): OUTPUT's stem + _denuded.csv"
        ),
    ] = None,
) -> None:
    """Quantitative metallography: every particle of a class (area, equivalent diameter,
    axes, aspect ratio, orientation) to a CSV, a summary per image, and a size histogram."""
    import numpy as np

    from deepmat.workflows.segmentation import denuded_zones, measure_labels, size_histogram

    try:
        table, per_image = measure_labels(inputs, class_index, pixel_size)
        zones = None
        if reference is not None:
            zones = denuded_zones(inputs, reference, class_index, pixel_size)
    except DeepmatError as exc:
        fail(exc)
    if zones is not None:
        widths = np.asarray(zones["width"])
        write_table(zones, output.with_name(f"{output.stem}_denuded.csv"), "boundary pixels")
        console.print(
            f"denuded zone around class {reference}: median {np.median(widths):.3g}, mean "
            f"{widths.mean():.3g}, 90th percentile {np.quantile(widths, 0.9):.3g} "
            f"{'µm' if pixel_size else 'px'}"
        )
    write_table(table, output, "particles")
    for stem, row in per_image.items():
        console.print(
            f"{stem}: {row['count']} particles ({row['count_inside']} inside), area fraction "
            f"{row['area_fraction']:.4f}, mean diameter {row['mean_equivalent_diameter'] or 0:.3g} "
            f"{row['unit']}"
        )
    figure = size_histogram(table, output.with_suffix(".png"), "µm" if pixel_size else "px")
    console.print(f"histogram: {figure}")
