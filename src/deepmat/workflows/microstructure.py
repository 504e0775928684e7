"""Homogenization jobs: labelled microstructure files in, a saved model and its plots out.

Homogenization models predict one stiffness component, named as in the model card
("C11", "C12", ... in Mandel notation, 1-based); the data files store the whole 6×6 (or
its computed columns), so training and evaluation pick the component out here.

:func:`train_microstructure` is what ``deepmat train microstructure`` and the demo run, so
a model trained from Python and one trained from the shell give the same directory: the
saved model, ``split.json`` (when the validation set was split off here) and parity plots.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from deepmat.data.splits import Split, random_split
from deepmat.data.voxels import VoxelDataset, read_voxel_dataset
from deepmat.errors import ConfigError, DataError
from deepmat.models.cnn3d import HOMOGENIZATION_SMALL
from deepmat.physics.elasticity import IsotropicPhase
from deepmat.train.metrics import parity_plot
from deepmat.train.microstructure import (
    MicrostructureRegressor,
    RuleOfMixtures,
    TwoPointPCARegressor,
    VoxelCNNRegressor,
)
from deepmat.train.saved import save_model
from deepmat.train.trainer import TrainConfig

MODELS = ("cnn3d", "two-point-pca", "voigt", "reuss")
# (PCA components, polynomial degree) tried for the 2-point model; the best on val is kept.
TWO_POINT_CANDIDATES = ((5, 2), (5, 3), (10, 2), (10, 3), (20, 2), (20, 3))
# Mandel index → the pair of axes it stands for (1-based), and its image under the 2↔3 swap.
_MANDEL_AXES = {1: (1, 1), 2: (2, 2), 3: (3, 3), 4: (2, 3), 5: (1, 3), 6: (1, 2)}
_SWAP_23 = {1: 1, 2: 3, 3: 2, 4: 4, 5: 6, 6: 5}
Labelled = tuple[np.ndarray, np.ndarray]


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

    The phases (matrix, then inclusion) come from the ``phases`` attribute that
    ``deepmat generate`` writes; a file without it gives an empty tuple.
    """
    dataset = read_voxel_dataset(path, with_strain=False)
    if len(dataset.grid) != 3:
        raise DataError(
            f"{path}: microstructures of grid {dataset.grid} are 2-D; homogenization models "
            "take 3-D grids (n1, n2, n3)"
        )
    y = stiffness_target(dataset, target, str(path))
    phases = tuple(IsotropicPhase(**p) for p in dataset.attrs.get("phases") or ())
    return (dataset.microstructures, y), phases


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


def fit_microstructure_model(
    model: str,
    train: Labelled,
    val: Labelled,
    *,
    phases: tuple[IsotropicPhase, ...] = (),
    target: str = "C11",
    config: TrainConfig | None = None,
    workdir: str | Path | None = None,
    resume: bool = True,
) -> MicrostructureRegressor:
    """One of :data:`MODELS` fitted on ``train``, early-stopped or selected on ``val``."""
    if model == "cnn3d":
        regressor = VoxelCNNRegressor(
            HOMOGENIZATION_SMALL,
            config,
            augment=c11_symmetries_keep(target),
            phases=phases,
            name=model,
            target=target,
        )
        return regressor.fit(*train, val, workdir=workdir, resume=resume)
    if model == "two-point-pca":
        return select_two_point(train, val, phases, target)
    if model in ("voigt", "reuss"):
        if target != "C11":
            raise ConfigError(f"the {model} rule estimates C11 only, not {target}")
        if len(phases) != 2:
            raise DataError(
                f"the {model} rule needs the two phases' moduli: the training file has no "
                "'phases' attribute (files from `deepmat generate` have one)"
            )
        return RuleOfMixtures(phases, model, name=model, target=target).fit(*train, val)
    raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")


def select_two_point(
    train: Labelled, val: Labelled, phases: tuple[IsotropicPhase, ...] = (), target: str = "C11"
) -> TwoPointPCARegressor:
    """The 2-point model of :data:`TWO_POINT_CANDIDATES` with the lowest validation MAPE.

    The number of components and the degree decide between under- and over-fitting and
    cost almost nothing to try; every candidate's validation MAPE goes in the card.
    """
    fitted = [
        TwoPointPCARegressor(
            components, degree, phases=phases, name="two-point-pca", target=target
        ).fit(*train, val)
        for components, degree in TWO_POINT_CANDIDATES
    ]
    best = min(fitted, key=lambda m: m.metrics["val"]["mape"])
    best.training["selection"] = {
        "on": "val mape",
        "candidates": [m.hyperparameters | {"val_mape": m.metrics["val"]["mape"]} for m in fitted],
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
    target: str = "C11",
    config: TrainConfig | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
    resume: bool = True,
) -> MicrostructureRegressor:
    """Fit ``model`` on the HDF5 file ``data``, save it to ``out`` with its plots.

    Every file is read (and checked) before training starts. Without a ``val`` file a
    random ``val_fraction`` of ``data`` is held out (seeded) and the indices of each side
    are saved as ``out/split.json``. The CNN checkpoints to
    ``out/checkpoints`` and, with ``resume``, continues from ``last.ckpt``. Writes
    ``parity_val.png`` and, with a ``test`` file, ``parity_test.png``.
    """
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    out = Path(out)
    labelled, phases = read_labelled(data, target)
    split = None
    if val is None:
        split = split_off_validation(len(labelled[1]), val_fraction, seed, str(data))
        train, validation = (_subset(labelled, side) for side in (split.train, split.val))
    else:
        train = labelled
        validation, _ = read_labelled(val, target)
    sets = {"val": validation}
    if test is not None:
        sets["test"], _ = read_labelled(test, target)
    regressor = fit_microstructure_model(
        model,
        train,
        validation,
        phases=phases,
        target=target,
        config=config,
        workdir=out,
        resume=resume,
    )
    if "test" in sets:
        regressor.metrics["test"] = regressor.evaluate(*sets["test"])
    regressor.training["files"] = {
        side: str(path) if path is not None else None
        for side, path in (("train", data), ("val", val), ("test", test))
    }
    if split is not None:
        regressor.training["split"] = {
            "method": split.method,
            **split.params,
            "sizes": split.sizes(),
            "file": "split.json",
        }
        split.save(out / "split.json")
    save_model(regressor, out)
    for side, (x, y) in sets.items():
        parity_plot(
            y,
            regressor.predict(x),
            out / f"parity_{side}.png",
            title=f"{regressor.name}: {target}, {side}",
            unit=regressor.unit,
        )
    return regressor


def _subset(labelled: Labelled, index: np.ndarray) -> Labelled:
    x, y = labelled
    return x[index], y[index]
