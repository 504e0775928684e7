"""Orientation indexing of EBSD patterns with a CNN, and the metrics shared with dictionary
indexing.

:class:`OrientationCNNRegressor` trains an :class:`~deepmat.models.ebsd.OrientationCNN` by
:func:`~deepmat.train.trainer.fit_network` on patterns prepared by its
:class:`~deepmat.represent.patterns.PreprocessSpec` (background removal, equalisation, then
per-pattern standardisation; by default standardisation alone) against unit quaternions,
with a symmetry-invariant loss: the distance of the cubic embedding
(:class:`~deepmat.physics.cubic_embedding.CubicEmbeddingLoss`) for the default network, or
the :class:`~deepmat.physics.orientations.DisorientationLoss` (mean disorientation in
radians) for a quaternion network; that loss is also the validation score that picks the
best epoch, and the card records the validation disorientation in degrees. It has the
API of the other deepmat estimators: ``fit(patterns, rotations, val=None)``,
``predict(patterns)``, ``evaluate(patterns, rotations)`` and ``card()``. The preprocessing
is part of the model: the card stores it (``preprocess``) and ``predict`` and ``evaluate``
apply it, with a scan's static background when given one (``static_background=``), exactly
as to the training patterns; a card without it (saved before it existed) standardises only,
as those models did.

Patterns are (n, height, width) arrays, rows top to bottom as
:func:`~deepmat.data.ebsd_simulation.simulate_patterns` makes them; rotations are orix
:class:`~orix.quaternion.Rotation`/:class:`~orix.quaternion.Orientation` objects of n
orientations or (n, 4) scalar-first quaternion arrays. A
:class:`~deepmat.data.ebsd.PatternDataset` ``ds`` is passed as ``ds.patterns, ds.rotations``.

:func:`orientation_metrics` scores any orientations against the truth with the exact
:func:`~deepmat.physics.orientations.disorientation_angle`: the network's and those of
dictionary indexing alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from orix.quaternion import Orientation, Rotation
from orix.quaternion.symmetry import Symmetry

from deepmat.data.ebsd import PatternDataset
from deepmat.data.splits import hold_out
from deepmat.errors import ConfigError, DataError
from deepmat.models.ebsd import ORIENTATION_CNN_SMALL, OrientationCNN, OrientationCNNSpec
from deepmat.physics.cubic_embedding import (
    CubicEmbeddingLoss,
    check_cubic,
    from_cubic_embedding,
)
from deepmat.physics.orientations import (
    DisorientationLoss,
    disorientation_angle,
    point_group_symmetry,
    to_rotation,
)
from deepmat.represent.patterns import PreprocessSpec, check_patterns
from deepmat.train.config import FitResult, TargetScaler, TrainConfig
from deepmat.train.estimator import Estimator
from deepmat.train.search_space import (
    Choice,
    FloatRange,
    IntRange,
    SearchSpace,
    split_values,
)
from deepmat.train.weights import load_weights, save_weights

Rotations = Rotation | np.ndarray
Validation = tuple[np.ndarray, Rotations] | None
PREDICT_BATCH = 128
# Prediction runs in channels-last layout: 4× faster on CPU for the default network.
FAST_LAYOUT = torch.channels_last
THRESHOLDS_DEG = (1, 2, 5)

ORIENTATION_CONFIG = {"batch_size": 128, "lr": 2e-3, "schedule": "onecycle"}
#: what a search varies in an orientation CNN: ``blocks`` convolution blocks of
#: ``convs_per_block`` convolutions, the first with ``channels`` channels, doubling every
#: block; the kernel size; the read-out of the last feature maps (flattened, or average
#: pooled to one value per channel); a head of ``head_layers`` fully connected layers of
#: ``head_width`` units with ``dropout``. The default network is close to 4 blocks from 8
#: channels, kernel 3, flattened, one head layer of 512 (``search_start``)
ORIENTATION_SEARCH_SPACE = SearchSpace(
    {
        "blocks": IntRange(3, 5),
        "channels": IntRange(4, 32, log=True),
        "convs_per_block": IntRange(1, 2),
        "kernel_size": Choice((3, 5)),
        "readout": Choice(("flatten", "average")),
        "head_layers": IntRange(0, 2),
        "head_width": IntRange(64, 1024, log=True),
        "dropout": FloatRange(0.0, 0.4),
        "lr": FloatRange(3e-4, 5e-3, log=True),
        "batch_size": Choice((64, 128, 256)),
    }
)


def orientation_metrics(
    true: Rotations, predicted: Rotations, point_group: str | Symmetry = "m-3m"
) -> dict[str, float]:
    """Disorientation statistics of ``predicted`` against ``true`` orientations (one each).

    ``mean_disorientation_deg`` and ``median_disorientation_deg`` (degrees),
    ``within_1deg``, ``within_2deg`` and ``within_5deg`` (fractions of the records whose
    disorientation is at most that) and ``n``; angles from the exact
    :func:`~deepmat.physics.orientations.disorientation_angle` under ``point_group``.
    """
    n_true, n_predicted = _count(true, "true"), _count(predicted, "predicted")
    if n_true != n_predicted:
        raise DataError(
            f"true has {n_true} orientations but predicted has {n_predicted}: "
            "give one prediction per record"
        )
    angles = np.degrees(disorientation_angle(true, predicted, point_group)).ravel()
    return {
        "mean_disorientation_deg": float(angles.mean()),
        "median_disorientation_deg": float(np.median(angles)),
        **{f"within_{t}deg": float(np.mean(angles <= t)) for t in THRESHOLDS_DEG},
        "n": int(angles.size),
    }


def _count(rotations: Rotations, name: str) -> int:
    """The number of orientations in a Rotation or an (n, 4) quaternion array."""
    if isinstance(rotations, Rotation):
        count = rotations.size
    else:
        shape = np.shape(rotations)
        if len(shape) != 2 or shape[1] != 4:
            raise DataError(f"{name} must be an orix Rotation or (n, 4) quaternions, got {shape}")
        count = shape[0]
    if count == 0:
        raise DataError(f"{name} holds no orientations")
    return count


def check_rotations(rotations: Rotations, n: int, name: str = "rotations") -> np.ndarray:
    """``rotations`` as float64 (n, 4) unit quaternions, checked to be ``n`` finite,
    non-zero ones (non-unit ones are normalised)."""
    if _count(rotations, name) != n:
        raise DataError(
            f"{name} has {_count(rotations, name)} orientations for {n} patterns: "
            "give one orientation per pattern"
        )
    data = rotations.data if isinstance(rotations, Rotation) else rotations
    try:
        return to_rotation(np.reshape(data, (n, 4))).data
    except DataError as exc:
        raise DataError(f"{name}: {exc}") from None


def fingerprint(patterns: np.ndarray, rotations: np.ndarray) -> str:
    """SHA-256 of the patterns (with shape and dtype) and quaternions: the training data."""
    digest = hashlib.sha256(f"{patterns.shape} {patterns.dtype}".encode())
    digest.update(np.ascontiguousarray(patterns).tobytes())
    digest.update(np.ascontiguousarray(rotations, dtype=np.float64).tobytes())
    return digest.hexdigest()


def saved_preprocess(card: dict) -> PreprocessSpec:
    """The preprocessing a saved orientation model's card records; cards written before
    models had one standardise only, which is what those models did."""
    recorded = card.get("preprocess")
    return PreprocessSpec() if recorded is None else PreprocessSpec.from_dict(recorded)


class OrientationCNNRegressor(Estimator):
    """An orientation CNN on standardised patterns, trained with the disorientation loss.

    ``point_group`` (a Hermann–Mauguin name such as "m-3m") sets the symmetry of the loss and
    of the metrics. A network with the cubic-embedding output (the default spec; cubic point
    groups only) is trained on the distance of the embeddings
    (:class:`~deepmat.physics.cubic_embedding.CubicEmbeddingLoss`); one with the quaternion
    output by the disorientation loss, whose soft minimum over symmetry operators has
    ``temperature`` (radians, 0 for the exact minimum). The spec's ``pattern_shape`` is the
    only pattern size the network takes. ``preprocess`` prepares every pattern the network
    sees, in training and prediction alike (None: standardisation alone). Without ``val`` in
    :meth:`fit`, a random ``val_fraction`` of the training data is held out to pick the best
    epoch and stop early.

    Presets: ``default`` the small network, one-cycle 2e-3 for 20 epochs; ``paper`` Jha et
    al.'s quaternion output with the disorientation loss; ``benchmark`` the small network with
    the cubic embedding for 15 epochs (the committed run). No standard deviations.
    """

    family = "orientation-network"
    search_space: ClassVar[SearchSpace] = ORIENTATION_SEARCH_SPACE
    search_start: ClassVar[dict] = {
        "blocks": 4,
        "channels": 8,
        "convs_per_block": 1,
        "kernel_size": 3,
        "readout": "flatten",
        "head_layers": 1,
        "head_width": 512,
        "dropout": 0.0,
        "lr": 2e-3,
        "batch_size": 128,
    }
    input_kind: ClassVar[str] = "ebsd-pattern"
    output_kind: ClassVar[str] = "orientation"
    presets: ClassVar[dict] = {
        "default": {"config": ORIENTATION_CONFIG | {"epochs": 20, "patience": 10}},
        "paper": {
            "spec": dataclasses.replace(ORIENTATION_CNN_SMALL, output="quaternion"),
            "config": ORIENTATION_CONFIG | {"epochs": 20, "patience": 10},
        },
        "benchmark": {"config": ORIENTATION_CONFIG | {"epochs": 15, "patience": 15}},
    }

    def __init__(
        self,
        spec: OrientationCNNSpec = ORIENTATION_CNN_SMALL,
        config: TrainConfig | None = None,
        point_group: str | Symmetry = "m-3m",
        temperature: float = 0.0,
        val_fraction: float = 0.1,
        name: str = "orientation-cnn",
        preprocess: PreprocessSpec | None = None,
    ):
        if isinstance(point_group, Symmetry):
            point_group = point_group.name
        if not 0 < val_fraction < 1:
            raise ConfigError(f"val_fraction {val_fraction} is not between 0 and 1")
        if spec.output == "cubic-embedding":
            check_cubic(point_group)
            self.loss: torch.nn.Module = CubicEmbeddingLoss()
        else:
            self.loss = DisorientationLoss(point_group, temperature)
        self.symmetry = point_group_symmetry(point_group)
        self.spec, self.point_group, self.temperature = spec, point_group, temperature
        self.val_fraction, self.name = val_fraction, name
        if preprocess is not None and not isinstance(preprocess, PreprocessSpec):
            raise ConfigError(f"preprocess must be a PreprocessSpec, got {preprocess!r}")
        self.preprocess = preprocess or PreprocessSpec()
        self.config = config or TrainConfig(**self.presets["default"]["config"])
        torch.manual_seed(self.config.seed)
        self.net = OrientationCNN(spec)
        self.fit_result = FitResult()
        self.training: dict = {}
        self.metrics: dict = {}

    def searched(self, values: Mapping[str, Any]) -> Self:
        """A new, untrained network like this one (pattern shape, output, point group,
        preprocessing, training options) at ``values`` of :data:`ORIENTATION_SEARCH_SPACE`."""
        architecture, training = split_values(values)
        a = architecture
        spec = dataclasses.replace(
            self.spec,
            channels=tuple(a["channels"] * 2**i for i in range(a["blocks"])),
            convs_per_block=a["convs_per_block"],
            kernel_size=a["kernel_size"],
            readout=a["readout"],
            fc_widths=(a["head_width"],) * a["head_layers"],
            dropout=a["dropout"],
        )
        return type(self)(
            spec,
            dataclasses.replace(self.config, **training),
            self.point_group,
            self.temperature,
            self.val_fraction,
            self.name,
            self.preprocess,
        )

    @property
    def pattern_shape(self) -> tuple[int, int]:
        """(height, width) of the patterns the network takes."""
        return self.spec.pattern_shape

    def fit(
        self,
        X: np.ndarray,
        y: Rotations = None,
        *,
        val: Validation = None,
        workdir: str | Path | None = None,
        resume: bool = True,
    ) -> OrientationCNNRegressor:
        """Train on patterns ``X`` and their orientations ``y``; checkpoints go to
        ``workdir`` (a temporary directory when None)."""
        from deepmat.train.trainer import fit_network

        start = time.perf_counter()
        patterns = X
        x_all, q_all = self._check(X, y)
        val_xq = self._check_val(val)
        x, q = x_all, q_all
        if val_xq is None:
            x, q, val_xq = self._hold_out(x_all, q_all)
        self.warm_start()
        with tempfile.TemporaryDirectory(prefix="deepmat-ebsd-") as scratch:
            self.fit_result = fit_network(
                self.net,
                x,
                q,
                *val_xq,
                self.config,
                workdir if workdir is not None else scratch,
                TargetScaler(),
                resume,
                val_batch_size=PREDICT_BATCH,
                loss=self.loss,
            )
        self.metrics["val"] = orientation_metrics(
            val_xq[1], self._predict(val_xq[0]), self.point_group
        )
        self.training = self._training_record(patterns, q_all, len(x), len(val_xq[0]), start)
        return self

    def predict(
        self,
        X: np.ndarray,
        return_std: bool = False,
        *,
        static_background: np.ndarray | None = None,
    ) -> Orientation:
        """Orientations of patterns ``X``: an orix Orientation of the model's point group,
        shape (n,), each reduced into the fundamental zone (the network may answer any
        symmetrically equivalent quaternion; the reduction gives the canonical one).

        ``X`` is prepared by the model's ``preprocess``, with ``static_background`` (height,
        width; a scan's mean pattern) if its static step is on."""
        if return_std:
            raise self.no_uncertainty(
                "orientation networks give no standard deviation "
                "(and ensembles average values, not orientations)"
            )
        return self._predict(self._patterns(X, static_background=static_background))

    def evaluate(
        self,
        X: np.ndarray,
        y: Rotations = None,
        *,
        static_background: np.ndarray | None = None,
    ) -> dict[str, float]:
        """:func:`orientation_metrics` of the predictions for patterns ``X`` (prepared as in
        :meth:`predict`) against the reference orientations ``y``."""
        x, q = self._check(X, y, static_background=static_background)
        return orientation_metrics(q, self._predict(x), self.point_group)

    def card(self) -> dict:
        """The model card: what the network is, what it takes and what it learned from."""
        return {
            "family": self.family,
            "model": self.name,
            "input": "ebsd-pattern",
            "output": "orientation",
            "pattern_shape": list(self.pattern_shape),
            "point_group": self.point_group,
            "representation": {"name": "standardized-pattern"},
            "preprocess": self.preprocess.to_dict(),
            "architecture": self.spec.to_dict(),
            "loss": self._loss_record(),
            "val_fraction": self.val_fraction,
            "training": self.training,
            "metrics": self.metrics,
        }

    def save_state(self, path: Path) -> None:
        save_weights(self.net, path)

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> OrientationCNNRegressor:
        model = cls(
            OrientationCNNSpec.from_dict(card["architecture"]),
            cls.saved_config(card),
            point_group=card["point_group"],
            temperature=card["loss"].get("temperature", 0.0),
            val_fraction=card["val_fraction"],
            name=card["model"],
            preprocess=saved_preprocess(card),
        )
        load_weights(model.net, path)
        model.restore_record(card)
        return model

    @torch.inference_mode()
    def _predict(self, x: np.ndarray) -> Orientation:
        net = self.net.eval().to(memory_format=FAST_LAYOUT)
        raw = torch.cat(
            [
                net(torch.from_numpy(x[i : i + PREDICT_BATCH]).to(memory_format=FAST_LAYOUT))
                for i in range(0, len(x), PREDICT_BATCH)
            ]
        )
        if self.spec.output == "cubic-embedding":
            q = from_cubic_embedding(raw).numpy()
        else:
            q = to_rotation(raw.double()).data
        return Orientation(q, symmetry=self.symmetry).reduce()

    def _loss_record(self) -> dict:
        if self.spec.output == "cubic-embedding":
            return {"name": "cubic-embedding-distance"}
        return {"name": "disorientation", "temperature": self.temperature}

    def _patterns(
        self,
        patterns: np.ndarray,
        name: str = "patterns",
        static_background: np.ndarray | None = None,
    ) -> np.ndarray:
        """Prepared (n, 1, h, w) float32 patterns (the model's ``preprocess``), checked
        against the network's size first."""
        if isinstance(patterns, PatternDataset):
            raise DataError(f"{name}: pass a PatternDataset ds as ds.patterns, ds.rotations")
        array = check_patterns(patterns, name)
        if array.shape[1:] != self.pattern_shape:
            height, width = self.pattern_shape
            raise DataError(
                f"{name} are {array.shape[1]}×{array.shape[2]} pixels but {self.name} takes "
                f"{height}×{width} (spec.pattern_shape); make the patterns on that detector "
                "or train a network whose spec has this pattern_shape"
            )
        return self.preprocess.apply(array, static_background, name)[:, None]

    def _check(
        self,
        patterns: np.ndarray,
        rotations: Rotations,
        prefix: str = "",
        static_background: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        x = self._patterns(patterns, f"{prefix}patterns", static_background)
        return x, check_rotations(rotations, len(x), f"{prefix}rotations")

    def _check_val(self, val: Validation) -> Validation:
        if val is None:
            return None
        if len(val) != 2:
            raise DataError("val must be a pair (patterns, rotations)")
        return self._check(*val, prefix="val ")

    def _hold_out(
        self, x: np.ndarray, q: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """A random ``val_fraction`` of (x, q) set aside to pick the best epoch."""
        train, val = hold_out(len(x), self.val_fraction, self.config.seed, "patterns")
        return x[train], q[train], (x[val], q[val])

    def _training_record(
        self, patterns: np.ndarray, q: np.ndarray, n_train: int, n_val: int, start: float
    ) -> dict:
        """The card's ``training`` entry: the data fingerprint (of the patterns and rotations
        given to :meth:`fit`), sizes, config and result; ``best_val_mae`` is the best
        validation loss, ``best_val_disorientation_deg`` the mean disorientation it gives."""
        return {
            "data": {
                "fingerprint": fingerprint(np.asarray(patterns), q),
                "n_train": n_train,
                "n_val": n_val,
                "pattern_shape": list(self.pattern_shape),
            },
            "seconds": round(time.perf_counter() - start, 2),
            **self.fit_result.record(self.config),
            "best_val_disorientation_deg": self.metrics["val"]["mean_disorientation_deg"],
        }
