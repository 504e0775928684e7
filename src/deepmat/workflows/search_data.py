"""What an architecture search trains on: one class per kind of input.

:mod:`deepmat.workflows.search` knows nothing of a family's data. Each class here is a
small, frozen and picklable description of where the data lives (every worker process
reads it itself) with the same methods:

* ``models``: the model names it can search, and ``estimator_class(model)``, whose
  declared search space the search samples;
* ``load(job)``: the estimator every trial starts from (preset, training options, the
  data's shapes and classes) and the training and validation data, ``job.subset`` and
  ``job.val_subset`` records of them drawn with ``job.seed``;
* ``fit(model, train, val, workdir)``: train one trial's network, picking its best epoch
  on ``val``;
* ``error(model, val)``: the validation error every trial is ranked by, which
  ``error_name`` names (MAE for compositions, mean disorientation in degrees for
  orientations, 1 − mean IoU for segmentation);
* ``head(val, n)``: ``n`` validation records to time ``predict`` on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from deepmat.data.composition import CompositionTable
from deepmat.errors import DataError
from deepmat.train.element_sets import ElementSetRegressor
from deepmat.train.regressors import NetworkRegressor
from deepmat.workflows.composition import DataSpec, make_regressor

if TYPE_CHECKING:
    from deepmat.data.ebsd import PatternDataset
    from deepmat.train.estimator import Estimator


def drawn_indices(n: int, size: int | None, seed: int) -> np.ndarray | None:
    """``size`` of ``n`` record indices drawn at random, in order (None: keep them all)."""
    if size is None or size >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


@dataclass(frozen=True)
class CompositionData:
    """Composition tables: a named dataset (its train and val splits) or CSV files."""

    classes: ClassVar[dict[str, type]] = {
        "elemnet": NetworkRegressor,
        "roost": ElementSetRegressor,
        "transformer": ElementSetRegressor,
    }
    models: ClassVar[tuple[str, ...]] = tuple(classes)
    error_name: ClassVar[str] = "mae"
    spec: DataSpec

    def estimator_class(self, model: str) -> type[Estimator]:
        return self.classes[model]

    def load(
        self, job, tables: tuple[CompositionTable, CompositionTable] | None = None
    ) -> tuple[Estimator, CompositionTable, CompositionTable]:
        """As the module says; from ``tables`` (train, val) when they were read already.
        Records with elements the representation lacks are refused or dropped as the data
        spec's ``on_error`` says."""
        train, val = tables or self.spec.train_val(seed=job.seed)[:2]
        train, val = _subset(train, job.subset, job.seed), _subset(val, job.val_subset, job.seed)
        base = make_regressor(
            job.model,
            job.preset,
            self.spec.target_name(),
            self.spec.unit(),
            {"epochs": job.epochs, "progress": False},
            seed=job.seed,
        )
        why = f" by the {base.representation.name} representation"
        supported, on_error = base.representation.supported_elements, self.spec.on_error
        return (
            base,
            train.restrict_elements(supported, on_error, why),
            val.restrict_elements(supported, on_error, why),
        )

    def fit(self, model: Estimator, train, val, workdir) -> None:
        model.fit(train, val=val, workdir=workdir)

    def error(self, model: Estimator, val: CompositionTable) -> float:
        return float(model.evaluate(val)["mae"])

    def head(self, val: CompositionTable, n: int) -> CompositionTable:
        return val.subset(np.arange(min(n, len(val))))


def _subset(table: CompositionTable, size: int | None, seed: int) -> CompositionTable:
    chosen = drawn_indices(len(table), size, seed)
    return table if chosen is None else table.subset(chosen)


@dataclass(frozen=True)
class PatternData:
    """EBSD pattern files of one detector (``deepmat ebsd simulate``): the training files,
    and a validation file or, without one, a random ``val_fraction`` of the training
    patterns (drawn with the search's seed, the same for every trial)."""

    models: ClassVar[tuple[str, ...]] = ("orientation-cnn",)
    error_name: ClassVar[str] = "mean_disorientation_deg"
    train: tuple[str, ...]
    val: str | None = None
    val_fraction: float = 0.1

    def estimator_class(self, model: str) -> type[Estimator]:
        from deepmat.train.ebsd import OrientationCNNRegressor

        return OrientationCNNRegressor

    def load(self, job) -> tuple[Estimator, PatternDataset, PatternDataset]:
        from deepmat.data.ebsd import combine_pattern_sets, read_pattern_dataset, size_text
        from deepmat.data.splits import hold_out
        from deepmat.models.ebsd import ORIENTATION_CNN_SMALL
        from deepmat.train.ebsd import OrientationCNNRegressor
        from deepmat.workflows.ebsd import orientation_estimator

        train = combine_pattern_sets([read_pattern_dataset(p) for p in self.train], self.train)
        if self.val is None:
            kept, held = hold_out(len(train), self.val_fraction, job.seed, "patterns")
            train, val = _patterns(train, kept), _patterns(train, held)
        else:
            val = read_pattern_dataset(self.val)
            if val.detector.shape != train.detector.shape:
                raise DataError(
                    f"{self.val}: patterns are {size_text(val.detector.shape)} but the "
                    f"training patterns are {size_text(train.detector.shape)}"
                )
        train = _patterns(train, drawn_indices(len(train), job.subset, job.seed))
        val = _patterns(val, drawn_indices(len(val), job.val_subset, job.seed))
        overrides = {"epochs": job.epochs, "progress": False, "seed": job.seed}
        arguments = OrientationCNNRegressor.preset_arguments(job.preset, overrides)
        spec = arguments.get("spec", ORIENTATION_CNN_SMALL)
        base = orientation_estimator(train, spec, arguments["config"], self.val_fraction)
        return base, train, val

    def fit(self, model: Estimator, train: PatternDataset, val: PatternDataset, workdir) -> None:
        from deepmat.workflows.ebsd import fit_on_patterns

        fit_on_patterns(model, train, val, workdir)

    def error(self, model: Estimator, val: PatternDataset) -> float:
        return float(model.evaluate(val.patterns, val.rotations)["mean_disorientation_deg"])

    def head(self, val: PatternDataset, n: int) -> np.ndarray:
        return val.patterns[:n]


def _patterns(dataset: PatternDataset, chosen: np.ndarray | None) -> PatternDataset:
    """The patterns ``chosen`` of ``dataset`` (all of them for None)."""
    from orix.quaternion import Rotation

    if chosen is None:
        return dataset
    return replace(
        dataset,
        patterns=dataset.patterns[chosen],
        rotations=Rotation(dataset.rotations.data[chosen]),
    )


@dataclass(frozen=True)
class MicrographData:
    """Labelled micrographs: a named set (``nasa-super1``, ``metaldam``, ...; its train and
    val images) or ``IMAGES:MASKS`` folders with a class map file ``classes``, validated on
    the ``val`` set or folders (the named set's val images by default). ``pretrained``: the
    encoder of every trial starts from ImageNet's VGG-19 weights."""

    models: ClassVar[tuple[str, ...]] = ("segmentation",)
    error_name: ClassVar[str] = "1 - miou"
    data: str
    val: str | None = None
    classes: str | None = None
    pretrained: bool = True

    def estimator_class(self, model: str) -> type[Estimator]:
        from deepmat.train.segmentation import SegmentationModel

        return SegmentationModel

    def load(self, job) -> tuple[Estimator, list, list]:
        from deepmat.workflows.segmentation import read_labelled, segmentation_estimator

        train, class_map = read_labelled(self.data, "train", self.classes)
        val, _ = read_labelled(self.val or self.data, "val", self.classes)
        train = _items(train, drawn_indices(len(train), job.subset, job.seed))
        val = _items(val, drawn_indices(len(val), job.val_subset, job.seed))
        base = segmentation_estimator(
            train,
            class_map,
            f"segmentation-{self.data.split(':')[0]}",
            job.preset,
            {"epochs": job.epochs, "progress": False, "seed": job.seed},
            network={"pretrained": self.pretrained},
        )
        return base, train, val

    def fit(self, model: Estimator, train: list, val: list, workdir) -> None:
        model.fit(train, val=val, workdir=workdir)

    def error(self, model: Estimator, val: list) -> float:
        return 1.0 - float(model.evaluate(val)["miou"])

    def head(self, val: list, n: int) -> list:
        return val[:n]


def _items(records: list[Any], chosen: np.ndarray | None) -> list[Any]:
    return records if chosen is None else [records[i] for i in chosen]


SearchData = CompositionData | PatternData | MicrographData
