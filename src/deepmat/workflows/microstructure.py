"""Microstructure jobs: labelled microstructure files in, a saved model and its plots out.

Homogenization models predict one stiffness component, named as in the model card
("C11", "C12", ... in Mandel notation, 1-based); the data files store the whole 6×6 (or
its computed columns), so training and evaluation pick the component out here.
Localization models predict the local strain field ε11 (target "e11"), component 0 of the
file's ``strain`` fields, solved under a uniaxial macroscopic strain ε̄11.

:func:`train_microstructure` is what ``deepmat train microstructure`` and the demo run, so
a model trained from Python and one trained from the shell give the same directory: the
saved model, ``split.json`` (when the validation set was split off here) and plots (parity
plots of a stiffness, pictures of strain fields).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from deepmat.data.splits import Split, random_split
from deepmat.data.voxels import VoxelDataset, read_voxel_dataset
from deepmat.errors import ConfigError, DataError
from deepmat.physics.elasticity import IsotropicPhase
from deepmat.train.calibration import (
    calibration_report,
    predict_with_spread,
    uncertainty_plot,
    uncertainty_plot_path,
)
from deepmat.train.ensemble import MEMBERS, Ensemble
from deepmat.train.field_plots import field_comparison_plot
from deepmat.train.localization import (
    TARGET,
    FCN3DRegressor,
    HybridFCNRegressor,
    LocalizationRegressor,
    MKSRegressor,
    SliceCNNRegressor,
)
from deepmat.train.metrics import parity_plot
from deepmat.train.microstructure import (
    MicrostructureRegressor,
    RuleOfMixtures,
    TwoPointPCARegressor,
    VoxelCNNRegressor,
)
from deepmat.train.saved import save_model
from deepmat.train.stiffness_hybrid import SolverHybridRegressor, reused_iterates
from deepmat.workflows.common import record_split

HOMOGENIZATION_MODELS = ("cnn3d", "two-point-pca", "hybrid", "hybrid-coarse", "voigt", "reuss")
#: the solver hybrids: how many times coarser than the data each takes the solver's iterates
HYBRID_COARSENING = {"hybrid": 1, "hybrid-coarse": 2}
LOCALIZATION_MODELS = ("mks", "slice-cnn", "fcn3d", "hybrid-fcn")
MODELS = HOMOGENIZATION_MODELS + LOCALIZATION_MODELS
#: the models ``--ensemble`` trains several of: the networks
ENSEMBLE_MODELS = ("cnn3d", "slice-cnn", "fcn3d", "hybrid-fcn")
# (PCA components, polynomial degree) tried for the 2-point model; the best on val is kept.
TWO_POINT_CANDIDATES = ((5, 2), (5, 3), (10, 2), (10, 3), (20, 2), (20, 3))
# The solver hybrid's CG iterations and (components, degree), chosen on val likewise.
HYBRID_ITERATIONS = (1, 2, 3, 4)
HYBRID_CANDIDATES = ((3, 2), (5, 2), (5, 3), (10, 2), (10, 3))
# Ridges (relative to the mean spectral power) tried for MKS; the best on val is kept.
MKS_RIDGES = (1e-10, 1e-6, 1e-3, 1e-1)
# Mandel index → the pair of axes it stands for (1-based), and its image under the 2↔3 swap.
_MANDEL_AXES = {1: (1, 1), 2: (2, 2), 3: (3, 3), 4: (2, 3), 5: (1, 3), 6: (1, 2)}
_SWAP_23 = {1: 1, 2: 3, 3: 2, 4: 4, 5: 6, 6: 5}
Labelled = tuple[np.ndarray, np.ndarray]
NETWORKS = {
    "slice-cnn": SliceCNNRegressor,
    "fcn3d": FCN3DRegressor,
    "hybrid-fcn": HybridFCNRegressor,
}
Regressor = MicrostructureRegressor | LocalizationRegressor


def _component(name: str) -> tuple[int, int]:
    """Zero-based (row, column) of a Mandel stiffness component such as "C12"."""
    if len(name) != 3 or name[0] != "C" or not set(name[1:]) <= set("123456"):
        raise DataError(f"target {name!r} is not a stiffness component such as C11 or C12")
    return int(name[1]) - 1, int(name[2]) - 1


def stiffness_target(dataset: VoxelDataset, name: str, source: str = "data") -> np.ndarray:
    """The stiffness component ``name`` ("C11" ... "C66") of every sample of ``dataset``.

    The effective stiffness is symmetric, so where the column of ``name`` was not solved
    (a file made with fewer load cases) its mirror image is used: C12 is C21, which the
    first load case gives.
    """
    i, j = _component(name)
    if dataset.stiffness is None:
        raise DataError(f"{source}: no stiffness labels, so it holds no {name}")
    for values in (dataset.stiffness[:, i, j], dataset.stiffness[:, j, i]):
        if np.all(np.isfinite(values)):
            return values
    computed = np.isfinite(dataset.stiffness).all(axis=0)
    rows, columns = np.nonzero(np.triu(computed | computed.T))
    available = [f"C{r + 1}{c + 1}" for r, c in zip(rows, columns, strict=True)]
    raise DataError(
        f"{source}: {name} was not computed (the file was labelled with "
        f"{int(computed.all(axis=0).sum())} load case(s)); available targets: "
        f"{', '.join(available) or 'none'}; generate with --load-cases {min(i, j) + 1} or more"
    )


def strain_target(dataset: VoxelDataset, source: str = "data") -> np.ndarray:
    """The ε11 fields (n, n1, n2, n3) of every sample of ``dataset``.

    Localization models learn ε11 / ε̄11, which is the whole story only under a uniaxial
    macroscopic strain; a file that records another (attribute ``macro_strain``, Mandel) is
    refused.
    """
    if dataset.strain is None:
        raise DataError(
            f"{source}: no strain labels (local strain fields), which localization models "
            "learn; generate it with --label strain"
        )
    macro = dataset.attrs.get("macro_strain")
    if macro is not None:
        values = np.asarray(macro, dtype=np.float64)
        if values.shape != (6,) or values[0] == 0 or np.any(values[1:]):
            raise DataError(
                f"{source}: the fields were solved under the macroscopic strain {macro}; "
                "localization models learn ε11 under a uniaxial one, [ε̄11, 0, 0, 0, 0, 0]"
            )
    return np.ascontiguousarray(dataset.strain[:, 0])


def read_microstructures(path: str | Path) -> np.ndarray:
    """Voxel microstructures from a deepmat HDF5 file or a NumPy ``.npy`` array."""
    path = Path(path)
    if path.suffix == ".npy":
        if not path.exists():
            raise DataError(f"{path}: no such file")
        array = np.load(path)
        return array[None] if array.ndim == 3 else array
    return read_voxel_dataset(path, with_strain=False).microstructures


def read_labelled(path: str | Path, target: str) -> tuple[Labelled, tuple[IsotropicPhase, ...]]:
    """Microstructures and their ``target`` from an HDF5 file, with the file's phases.

    ``target`` is a stiffness component ("C11" ...), one value per microstructure, or
    "e11", the ε11 field of each (:func:`strain_target`). The phases (matrix, then
    inclusion) come from the ``phases`` attribute that ``deepmat generate`` writes; a file
    without it gives an empty tuple.
    """
    fields = target == TARGET
    dataset = read_voxel_dataset(path, with_strain=fields)
    if len(dataset.grid) != 3:
        raise DataError(
            f"{path}: microstructures of grid {dataset.grid} are 2-D; microstructure models "
            "take 3-D grids (n1, n2, n3)"
        )
    if fields:
        y = strain_target(dataset, str(path))
    else:
        y = stiffness_target(dataset, target, str(path))
    phases = tuple(IsotropicPhase(**p) for p in dataset.attrs.get("phases") or ())
    return (dataset.microstructures, y), phases


def _is_diagonal(target: str) -> bool:
    """Whether ``target`` is a diagonal stiffness component (always positive), which a CNN
    learns on a log scale."""
    row, column = _component(target)
    return row == column


def c11_symmetries_keep(target: str) -> bool:
    """Whether the augmentation of :func:`~deepmat.train.microstructure.c11_symmetries`
    (translations, reflections of each axis, the 2↔3 swap) leaves ``target`` unchanged.

    A reflection of axis a multiplies C_ijkl by (−1)^(times a occurs in ijkl); the swap
    maps Mandel indices 2↔3 and 5↔6. C11, C23 and C44 survive both; C12 (→ C13 under the
    swap) and C14 (odd in axis 2) do not, so the CNN trains on them without augmentation.
    """
    m, n = (k + 1 for k in _component(target))
    counts = Counter(_MANDEL_AXES[m] + _MANDEL_AXES[n])
    even = all(count % 2 == 0 for count in counts.values())
    return even and {_SWAP_23[m], _SWAP_23[n]} == {m, n}


def default_target(model: str) -> str:
    """What ``model`` predicts unless told otherwise: "e11" for a localization model, "C11"
    for a homogenization one."""
    return TARGET if model in LOCALIZATION_MODELS else "C11"


def check_model_target(model: str, target: str) -> None:
    """Refuse an unknown model, and a target that ``model`` does not predict."""
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if model in HOMOGENIZATION_MODELS:
        _component(target)  # a DataError unless a stiffness component
    elif target != TARGET:
        raise ConfigError(
            f"{model} predicts the strain field {TARGET}, not {target!r}: stiffness targets "
            f"are for {', '.join(HOMOGENIZATION_MODELS)}"
        )


def fit_microstructure_model(
    model: str,
    train: Labelled,
    val: Labelled,
    *,
    phases: tuple[IsotropicPhase, ...] = (),
    target: str = "C11",
    preset: str = "default",
    overrides: dict | None = None,
    workdir: str | Path | None = None,
    resume: bool = True,
) -> Regressor:
    """One of :data:`MODELS` with the arguments of ``preset`` (``overrides`` replace single
    training options of it) fitted on ``train``, early-stopped or selected on ``val``.

    For a localization model the labels are ε11 fields and ``target`` is not used.
    """
    if model == "cnn3d":
        regressor = VoxelCNNRegressor.from_preset(
            preset,
            config=overrides,
            augment=c11_symmetries_keep(target),
            log_target=_is_diagonal(target),
            phases=phases,
            name=model,
            target=target,
        )
        return regressor.fit(*train, val=val, workdir=workdir, resume=resume)
    if model == "two-point-pca":
        return select_two_point(train, val, phases, target)
    if model in ("voigt", "reuss", "hybrid-fcn", *HYBRID_COARSENING):
        _require_phases(model, phases)
    if model in ("voigt", "reuss", *HYBRID_COARSENING) and target != "C11":
        raise ConfigError(f"{model} estimates C11 only, not {target}")
    if model in ("voigt", "reuss"):
        return RuleOfMixtures(phases, model, name=model, target=target).fit(*train, val=val)
    if model in HYBRID_COARSENING:
        return select_hybrid(train, val, phases, target, HYBRID_COARSENING[model], model)
    if model == "mks":
        return select_mks(train, val, phases)
    if model in NETWORKS:
        network = NETWORKS[model]
        estimator = network.from_preset(preset, config=overrides, phases=phases, name=model)
        return estimator.fit(*train, val=val, workdir=workdir, resume=resume)
    raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")


def _require_phases(model: str, phases: tuple[IsotropicPhase, ...]) -> None:
    if len(phases) != 2:
        raise DataError(
            f"{model} needs the two phases' moduli: the training file has no 'phases' "
            "attribute (files from `deepmat generate` have one)"
        )


def select_two_point(
    train: Labelled, val: Labelled, phases: tuple[IsotropicPhase, ...] = (), target: str = "C11"
) -> TwoPointPCARegressor:
    """The 2-point model of :data:`TWO_POINT_CANDIDATES` with the lowest validation MAPE.

    The number of components and the degree decide between under- and over-fitting and
    cost almost nothing to try; with positive targets each is tried on C and on ln C as
    well. Every candidate's validation MAPE goes in the card.
    """
    logs = (False, True) if np.all(train[1] > 0) else (False,)
    fitted = [
        TwoPointPCARegressor(
            components, degree, log_target=log, phases=phases, name="two-point-pca", target=target
        ).fit(*train, val=val)
        for components, degree in TWO_POINT_CANDIDATES
        for log in logs
    ]
    best = min(fitted, key=lambda m: m.metrics["val"]["mape"])
    best.training["selection"] = {
        "on": "val mape",
        "candidates": [m.hyperparameters | {"val_mape": m.metrics["val"]["mape"]} for m in fitted],
    }
    return best


def select_hybrid(
    train: Labelled,
    val: Labelled,
    phases: tuple[IsotropicPhase, ...],
    target: str = "C11",
    coarsen: int = 1,
    name: str = "hybrid",
) -> SolverHybridRegressor:
    """The solver hybrid of :data:`HYBRID_ITERATIONS` × :data:`HYBRID_CANDIDATES` with the
    lowest validation MAPE (each candidate's in the card), its solver run on the grid
    ``coarsen`` times coarser.

    More iterations buy accuracy with solver time, so a user who needs a faster model can
    read the candidates and pick fewer; the solver iterates are computed once for all.
    """
    with reused_iterates():
        fitted = [
            SolverHybridRegressor(
                iterations,
                components,
                degree,
                coarsen=coarsen,
                phases=phases,
                name=name,
                target=target,
            ).fit(*train, val=val)
            for iterations in sorted(HYBRID_ITERATIONS, reverse=True)
            for components, degree in HYBRID_CANDIDATES
        ]
    best = min(fitted, key=lambda m: m.metrics["val"]["mape"])
    best.training["selection"] = {
        "on": "val mape",
        "candidates": [m.hyperparameters | {"val_mape": m.metrics["val"]["mape"]} for m in fitted],
    }
    return best


def select_mks(
    train: Labelled,
    val: Labelled,
    phases: tuple[IsotropicPhase, ...] = (),
    macro_strain: float | None = None,
) -> MKSRegressor:
    """The MKS model of :data:`MKS_RIDGES` with the lowest validation MASE.

    The ridge matters only at frequencies the training structures hardly excite, and a fit
    is a few FFTs; every candidate's validation MASE goes in the card. ``macro_strain`` is
    the imposed ε̄11 (default: the mean of the training fields, the same for periodic ones).
    """
    fitted = [
        MKSRegressor(ridge, phases=phases, name="mks").fit(
            *train, val=val, macro_strain=macro_strain
        )
        for ridge in MKS_RIDGES
    ]
    best = min(fitted, key=lambda m: m.metrics["val"]["mase"])
    best.training["selection"] = {
        "on": "val mase",
        "candidates": [{"ridge": m.ridge, "val_mase": m.metrics["val"]["mase"]} for m in fitted],
    }
    return best


def split_off_validation(n: int, val_fraction: float, seed: int, source: str) -> Split:
    """A seeded random split of ``n`` microstructures into train and validation.

    Each generated microstructure is drawn from its own seed, so a random split keeps
    every structure on one side; both sides must be non-empty.
    """
    split = random_split(n, val=val_fraction, seed=seed)
    if not len(split.val) or not len(split.train):
        raise DataError(
            f"{source}: {n} microstructures with val_fraction {val_fraction} leave "
            f"{len(split.train)} for training and {len(split.val)} for validation; "
            "give a validation file or another fraction"
        )
    return split


def train_microstructure(
    model: str,
    data: str | Path,
    out: str | Path,
    *,
    val: str | Path | None = None,
    test: str | Path | None = None,
    target: str | None = None,
    preset: str = "default",
    overrides: dict | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
    resume: bool = True,
    ensemble: int = 1,
) -> Regressor | Ensemble:
    """Fit ``model`` on the HDF5 file ``data``, save it to ``out`` with its plots.

    ``target`` is a stiffness component for a homogenization model (default C11) and
    "e11", the strain field, for a localization model (its default). Every file is read
    (and checked) before training starts. Without a ``val`` file a random
    ``val_fraction`` of ``data`` is held out (seeded) and the indices of each side are
    saved as ``out/split.json``. The networks checkpoint to ``out/checkpoints`` and, with
    ``resume``, continue from ``last.ckpt``. Writes ``parity_val.png`` (``fields_val.png``
    for a localization model) and, with a ``test`` file, ``parity_test.png``
    (``fields_test.png``). ``ensemble`` > 1 trains that many networks from the seeds
    ``seed``, ``seed + 1``, … (in ``out/members/i``) as one :class:`Ensemble`, whose spread
    is its standard deviation.
    """
    target = target or default_target(model)
    if ensemble > 1 and model not in ENSEMBLE_MODELS:
        raise ConfigError(
            f"--ensemble applies to {', '.join(ENSEMBLE_MODELS)}, not {model} (fitted "
            "deterministically)"
        )
    check_model_target(model, target)
    out = Path(out)
    labelled, phases = read_labelled(data, target)
    split = None
    if val is None:
        split = split_off_validation(len(labelled[1]), val_fraction, seed, str(data))
        train, validation = (_subset(labelled, side) for side in (split.train, split.val))
    else:
        train = labelled
        validation, _ = read_labelled(val, target)
        if target == TARGET:
            _check_same_load(train[1], validation[1], str(val))
    sets = {"val": validation}
    if test is not None:
        sets["test"], _ = read_labelled(test, target)
    fit = functools.partial(
        fit_microstructure_model,
        model,
        train,
        validation,
        phases=phases,
        target=target,
        preset=preset,
        resume=resume,
    )
    if ensemble > 1:
        first = int((overrides or {}).get("seed", seed))
        members = [
            fit(overrides=(overrides or {}) | {"seed": first + i}, workdir=out / MEMBERS / str(i))
            for i in range(ensemble)
        ]
        regressor = Ensemble.from_members(members, validation)
    else:
        regressor = fit(overrides=overrides, workdir=out)
    if "test" in sets:
        regressor.metrics["test"] = evaluate_labelled(regressor, sets["test"])
    regressor.training["files"] = {
        side: str(path) if path is not None else None
        for side, path in (("train", data), ("val", val), ("test", test))
    }
    record_split(regressor, split, out)
    save_model(regressor, out)
    for side, labelled_side in sets.items():
        path = out / plot_name(regressor, side)
        save_plot(regressor, labelled_side, path, f"{regressor.name}: {target}, {side}")
    return regressor


def evaluate_labelled(model: Regressor, labelled: Labelled) -> dict:
    """The metrics of ``model`` on ``labelled``; a localization model predicts under the
    ε̄11 of the fields given, their mean (exact for periodic fields)."""
    x, y = labelled
    if model.output_kind == "field":
        return model.evaluate(x, y, macro_strain=float(y.mean()))
    return model.evaluate(x, y)


def evaluate_microstructure_file(model: Regressor, data: str | Path, plot: str | Path) -> dict:
    """The metrics of ``model`` on the labelled HDF5 file ``data``; writes its plot to ``plot``
    (see :func:`save_plot`). A model with standard deviations adds their calibration
    metrics and an uncertainty plot beside the parity plot."""
    labelled, _ = read_labelled(data, model.target)
    metrics = evaluate_labelled(model, labelled)
    x, y = labelled
    options = {"macro_strain": float(y.mean())} if model.output_kind == "field" else {}
    mean, std = predict_with_spread(model, x, **options)
    title = f"{model.name} on {data}"
    save_plot(model, labelled, Path(plot), title, prediction=mean)
    if std is not None:
        truth = model.targets_of(x, y)
        metrics |= calibration_report(truth, mean, std)
        if "calibration" not in metrics:
            path = uncertainty_plot_path(Path(plot))
            uncertainty_plot(truth, mean, std, path, title=title, unit=model.unit)
    return metrics


def plot_name(model: Regressor, label: str) -> str:
    """The file name of ``model``'s plot on the set ``label``: parity_LABEL.png, or
    fields_LABEL.png for a localization model."""
    kind = "fields" if model.output_kind == "field" else "parity"
    return f"{kind}_{label}.png"


def save_plot(
    model: Regressor, labelled: Labelled, path: Path, title: str, prediction=None
) -> Path:
    """A parity plot of a homogenization model on ``labelled``; for a localization model,
    its ε11 field beside the true one on the middle slice of the first structure. Pass the
    model's ``prediction`` for ``labelled`` where it is already made."""
    x, y = labelled
    if model.output_kind == "field":
        macro = float(y.mean())
        field = model.predict(x[:1], macro_strain=macro)[0] if prediction is None else prediction[0]
        return field_comparison_plot(x[0], y[0], {model.name: field}, path, macro, title=title)
    prediction = model.predict(x) if prediction is None else prediction
    return parity_plot(y, prediction, path, title=title, unit=model.unit)


def predict_microstructure_files(
    model: Regressor, inputs: Sequence[str | Path], return_std: bool = False
) -> list[tuple[str, np.ndarray]]:
    """``model``'s predictions for the microstructures of each HDF5 or ``.npy`` input, in
    order: one value per structure, or (n, n1, n2, n3) ε11 fields for a localization model
    (``return_std`` is passed on, for models that have standard deviations)."""
    return [
        (str(item), model.predict(read_microstructures(item), return_std=return_std))
        for item in inputs
    ]


def field_summary(source: str, fields: np.ndarray) -> str:
    """One line on the predicted ε11 fields of ``source``: how many, their mean and range."""
    if not len(fields):
        return f"{source}: no fields"
    grid = "×".join(str(n) for n in fields.shape[1:])
    return (
        f"{source}: {len(fields)} ε11 fields of {grid} voxels, mean {fields.mean():.4g}, "
        f"min {fields.min():.4g}, max {fields.max():.4g}"
    )


def check_fields_output(path: str | Path) -> Path:
    """``path`` as a :class:`Path` if :func:`write_fields` can write it (.h5, .hdf5, .npy)."""
    path = Path(path)
    if path.suffix not in (".npy", ".h5", ".hdf5"):
        raise DataError(f"{path}: strain fields are written as .h5, .hdf5 or .npy")
    return path


def write_fields(
    path: str | Path,
    predictions: Sequence[tuple[str, np.ndarray]],
    model: LocalizationRegressor,
    std: Sequence[np.ndarray] | None = None,
) -> Path:
    """The predicted ε11 fields of every input as one (n, n1, n2, n3) float64 array, and
    with ``std`` (one array per input) their standard deviations voxel by voxel.

    ``.npy`` holds the array alone (the standard deviations go to ``<stem>_std.npy``); an
    HDF5 file (``.h5`` or ``.hdf5``) holds it as the dataset ``e11`` (and ``e11_std``), with
    root attributes ``model``, ``macro_strain`` (ε̄11 of the prediction), ``inputs`` (JSON
    list of the input files) and ``counts`` (fields per input).
    """
    path = check_fields_output(path)
    grids = sorted({fields.shape[1:] for _, fields in predictions})
    if len(grids) > 1:
        raise DataError(
            f"the inputs have different grids ({', '.join(map(str, grids))}); predict them "
            "into separate files"
        )
    array = np.concatenate([fields for _, fields in predictions])
    spread = np.concatenate(list(std)) if std is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, array)
        if spread is not None:
            np.save(path.with_name(f"{path.stem}_std.npy"), spread)
        return path
    with h5py.File(path, "w") as file:
        chunks = (1, *array.shape[1:]) if len(array) else None
        file.create_dataset(TARGET, data=array, chunks=chunks, compression="gzip")
        if spread is not None:
            file.create_dataset(f"{TARGET}_std", data=spread, chunks=chunks, compression="gzip")
        file.attrs["model"] = model.name
        file.attrs["macro_strain"] = model.macro_strain
        file.attrs["inputs"] = json.dumps([source for source, _ in predictions])
        file.attrs["counts"] = [len(fields) for _, fields in predictions]
    return path


def _check_same_load(train: np.ndarray, val: np.ndarray, source: str) -> None:
    """Refuse validation fields solved under another ε̄11 than the training fields (the
    models scale both by the training one); ε̄11 is the mean of periodic fields."""
    if not np.isclose(val.mean(), train.mean(), rtol=1e-3):
        raise DataError(
            f"{source}: its fields average ε11 = {val.mean():.4g}, the training fields "
            f"{train.mean():.4g}: validation fields must be solved under the same "
            "macroscopic strain"
        )


def _subset(labelled: Labelled, index: np.ndarray) -> Labelled:
    x, y = labelled
    return x[index], y[index]
