"""Regressors on tables of records featurized by a representation, on the estimator protocol.

* :class:`RecordRegressor`: the shared part: inputs as a validated table, featurize,
  ``predict``, ``evaluate`` and the card.
* :class:`NetworkRegressor`: any :class:`~deepmat.models.MLPSpec` (ElemNet by default) on
  compositions, trained by :func:`~deepmat.train.trainer.fit_network`;
  ``predict(..., return_std=True)`` adds Monte-Carlo-dropout standard deviations to the
  deterministic predictions.
* :class:`ForestRegressor`: scikit-learn's random forest on compositions; standard deviations
  are the spread of the trees.

Both featurize through a representation (element fractions or Magpie attributes), so a
loaded model turns formulas into inputs exactly as it did in training. The network part is
shared with :class:`~deepmat.train.crystal.SiteNetworkRegressor`, which reads structures.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from pymatgen.core import Composition

from deepmat.data.composition import CompositionTable, composition_table
from deepmat.errors import DataError, ModelFormatError
from deepmat.models.mlp import ELEMNET_BLOCKS, Block, MLPSpec
from deepmat.represent import representation_from_dict
from deepmat.represent.cache import cached_transform
from deepmat.represent.fractions import ElementFractions
from deepmat.train.config import FitResult, TargetScaler, TrainConfig
from deepmat.train.estimator import Estimator
from deepmat.train.metrics import regression_metrics
from deepmat.train.search_space import Choice, FloatRange, IntRange, SearchSpace, split_values
from deepmat.train.weights import restore_network, save_weights

CompositionInputs = CompositionTable | Sequence[str | Composition]
PREDICT_BATCH = 4096
MC_SAMPLES = 30


def as_table(inputs: CompositionInputs) -> CompositionTable:
    """Formulas or Compositions (or a table) as a validated table, duplicates kept."""
    if isinstance(inputs, CompositionTable):
        return inputs
    if isinstance(inputs, str | Composition):
        inputs = [inputs]
    return composition_table(list(inputs), source="input", duplicates="keep")


def with_targets(table, y, source: str):
    """``table`` with the targets ``y`` when given; a table without either is an error."""
    if y is not None:
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (len(table),):
            raise DataError(f"{source}: {len(table)} records but targets of shape {y.shape}")
        if not np.all(np.isfinite(y)):
            bad = int(np.flatnonzero(~np.isfinite(y))[0])
            raise DataError(f"{source}: target of record {bad} is not a finite number")
        return dataclasses.replace(table, targets=y)
    if table.targets is None:
        raise DataError(f"{source}: no targets (pass y, or a table read with a target column)")
    return table


class RecordRegressor(Estimator):
    """Shared behaviour of regressors on records featurized by a representation."""

    def __init__(self, representation, name: str, target: str = "target", unit: str = ""):
        self.representation = representation
        self.name, self.target, self.unit = name, target, unit
        self.training: dict = {}
        self.metrics: dict = {}

    def featurize(self, table) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X, return_std: bool = False):
        """Predicted targets; with ``return_std``, also standard deviations (recalibrated
        when :meth:`recalibrate` has fitted a factor)."""
        x = self.featurize(self.table(X))
        if not return_std:
            return self.predict_features(x)
        mean, std = self.predict_features(x, return_std=True)
        return mean, self.std_scale * std

    def predict_features(self, x: np.ndarray, return_std: bool = False):
        raise NotImplementedError

    def embed(self, X) -> np.ndarray:
        """The representation's features of ``X`` (the space the model reads records in)."""
        return self.featurize(self.table(X))

    def evaluate(self, X, y=None) -> dict:
        """MAE, RMSE, R² and n of the predictions for ``X`` (a table with targets, or records
        and ``y``)."""
        table = self.labelled(X, y)
        return regression_metrics(table.targets, self.predict(table))

    def _record_training(self, train, val, seconds: float, extra: dict) -> None:
        self.training = {
            "data": {
                "source": train.report.source,
                "fingerprint": train.fingerprint(),
                "n_train": len(train),
                "n_val": len(val) if val is not None else 0,
                "val_fingerprint": val.fingerprint() if val is not None else None,
                "load_report": train.report.to_dict(),
            },
            "seconds": round(seconds, 2),
        } | extra
        if val is not None and len(val):
            self.metrics["val"] = self.evaluate(val)

    def card(self) -> dict:
        return {
            "family": self.family,
            "model": self.name,
            "input": self.input_kind,
            "representation": self.representation.to_dict(),
            "target": {"name": self.target, "unit": self.unit},
            "training": self.training,
            "metrics": self.metrics,
        }


class TableInputs:
    """Inputs read as a table of records that carries its targets (compositions or
    structures): the table for training and scoring, and the ``val`` argument of ``fit``."""

    def table(self, X):
        """``X`` as this model's table type."""
        raise NotImplementedError

    def targets_of(self, X, y=None) -> np.ndarray:
        """The targets of ``X`` (from ``y`` or the table itself)."""
        return np.asarray(self.labelled(X, y).targets, dtype=np.float64)

    def labelled(self, X, y=None, source: str = "data"):
        """``X`` as a table with targets (from ``y`` or the table itself)."""
        return with_targets(self.table(X), y, source)

    def labelled_val(self, val):
        """``val`` of ``fit`` (a table, a pair (records, targets), or None) as a table."""
        if val is None:
            return None
        if isinstance(val, tuple):
            return self.labelled(*val, source="validation data")
        return self.labelled(val, source="validation data")


class CompositionRecords(TableInputs):
    """Inputs of composition models: formulas, Compositions or a CompositionTable."""

    input_kind: ClassVar[str] = "composition"
    representation: object

    def table(self, X: CompositionInputs) -> CompositionTable:
        return as_table(X)

    def featurize(self, table: CompositionTable) -> np.ndarray:
        return cached_transform(self.representation, table.compositions, table.labels)


class MLPRegressor(RecordRegressor):
    """A fully connected network on a representation's features, trained by the common
    trainer on standardised targets with early stopping on the validation MAE.

    Setting ``inference_bf16 = True`` predicts with bfloat16 matrix products on the CPU:
    about twice as fast on CPUs with AVX-512 BF16, at a cost of ~3 significant digits.
    """

    default_blocks: ClassVar[tuple] = ELEMNET_BLOCKS

    def __init__(
        self,
        spec: MLPSpec | None = None,
        representation=None,
        config: TrainConfig | None = None,
        name: str = "mlp",
        target: str = "target",
        unit: str = "",
    ):
        super().__init__(representation, name, target, unit)
        self.spec = spec or MLPSpec(len(representation.feature_names), self.default_blocks)
        self.check_spec()
        self.config = config or TrainConfig()
        self.config.check_outputs(name, self.spec.out_features)
        torch.manual_seed(self.config.seed)
        self.net = self.spec.build()
        self.scaler = TargetScaler()
        self.fit_result = FitResult()
        self.inference_bf16 = False

    def check_spec(self) -> None:
        """Refuse a network whose input does not fit the representation."""
        n_features = len(self.representation.feature_names)
        if self.spec.in_features != n_features:
            raise ValueError(
                f"spec has {self.spec.in_features} inputs, the representation {n_features} features"
            )

    @property
    def heteroscedastic(self) -> bool:
        """Whether the network predicts its own σ (trained on the Gaussian NLL)."""
        return self.config.heteroscedastic

    def prepare_network(self) -> None:
        """What the network needs before its first epoch (nothing for a plain MLP)."""

    @staticmethod
    def spec_from_dict(architecture: dict):
        """The network's spec from a card's ``architecture``."""
        return MLPSpec.from_dict(architecture)

    def searched(self, values: Mapping[str, Any]) -> Self:
        """A new estimator like this one at ``values`` of its search space: the architecture
        values give the spec (:meth:`searched_spec`), the training values (``lr``,
        ``batch_size``, ...) replace fields of the training configuration."""
        self.declared_search_space()
        architecture, training = split_values(values)
        config = dataclasses.replace(self.config, **training)
        spec = self.searched_spec(architecture)
        return type(self)(spec, self.representation, config, self.name, self.target, self.unit)

    def searched_spec(self, architecture: Mapping[str, Any]):
        """The network spec at the architecture values of a point of the search space,
        with this model's inputs and outputs."""
        raise NotImplementedError

    def fit(self, X, y=None, *, val=None, workdir: str | Path | None = None, resume: bool = True):
        """Train on ``X`` (a table with targets, or records and ``y``) with early stopping on
        ``val`` (a table, or a pair (records, targets)); checkpoints in ``workdir``."""
        return self._train_network(X, y, val, workdir, resume, warm=False)

    def refit(self, X, y=None, *, val=None, workdir: str | Path | None = None) -> Self:
        """Warm start: a trained network trains on from its weights, under the target
        scaling they learned, on ``X`` (give a new ``workdir``: a finished run found there
        would be resumed as done); a network not trained yet is fitted."""
        return self._train_network(X, y, val, workdir, True, warm=bool(self.training))

    def _train_network(self, X, y, val, workdir, resume: bool, warm: bool) -> Self:
        from deepmat.train.trainer import fit_network

        if val is None or workdir is None:
            raise DataError(f"{self.name}: fit needs val= (early stopping) and workdir=")
        train, val = self.labelled(X, y, "training data"), self.labelled_val(val)
        start = time.perf_counter()
        if not warm:
            self.prepare_network()
            self.scaler = self.starting_scaler(train.targets)
        self.fit_result = fit_network(
            self.net,
            self.featurize(train),
            train.targets,
            self.featurize(val),
            val.targets,
            self.config,
            workdir,
            self.scaler,
            resume,
        )
        self._record_training(
            train, val, time.perf_counter() - start, self.fit_result.record(self.config)
        )
        return self

    @torch.inference_mode()
    def predict_features(
        self, x: np.ndarray, return_std: bool = False, mc_samples: int = MC_SAMPLES
    ):
        """Predictions in target units (dropout off); ``return_std`` adds the network's own σ
        for a heteroscedastic network, else the spread of ``mc_samples`` passes with dropout
        on (Monte-Carlo dropout)."""
        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.net.eval()
        z = self._forward(inputs)
        if self.heteroscedastic:
            values = self.scaler.inverse(z[:, 0])
            std = np.exp(np.clip(z[:, 1], -10, 10)) * self.scaler.std
            return (values, std) if return_std else values
        values = self.scaler.inverse(z)
        if not return_std:
            return values
        if not any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in self.net.modules()):
            raise self.no_uncertainty(
                "Monte-Carlo dropout needs dropout layers and this network has none"
            )
        if self.config.dropout_until < 1:
            raise self.no_uncertainty(
                f"it trained its last epochs without dropout (dropout_until="
                f"{self.config.dropout_until}), so the spread of Monte-Carlo dropout does not "
                "describe its errors; train with dropout_until=1 or an ensemble"
            )
        self.net.train()
        try:
            draws = np.stack([self._forward(inputs) for _ in range(mc_samples)])
        finally:
            self.net.eval()
        return values, self.scaler.inverse(draws).std(0)

    def _forward(self, inputs: torch.Tensor) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.inference_bf16):
            z = torch.cat([self.net(b).float() for b in inputs.split(PREDICT_BATCH)])
        return z.squeeze(-1).numpy().astype(np.float64)

    def card(self) -> dict:
        card = super().card()
        card["architecture"] = self.spec.to_dict()
        card["target"] |= self.scaler.to_dict()
        return card

    def save_state(self, path: Path) -> None:
        save_weights(self.net, path)

    @classmethod
    def from_saved(cls, path: Path, card: dict):
        model = cls(
            cls.spec_from_dict(card["architecture"]),
            representation_from_dict(card["representation"]),
            cls.saved_config(card),
            **cls.saved_names(card),
        )
        restore_network(model, path, card)
        return model


ELEMNET_CONFIG = {"batch_size": 256, "patience": 30}

#: what a search varies in a composition MLP. Block i has ``width · taper^i`` units (at
#: least 16) in ``depth`` layers, dropout after every block but the last; ElemNet is close
#: to blocks 6, width 1024, taper 0.5, depth 3, dropout 0.2, no residual connections
MLP_SEARCH_SPACE = SearchSpace(
    {
        "blocks": IntRange(2, 7),
        "width": IntRange(64, 1024, log=True),
        "taper": FloatRange(0.4, 1.0),
        "depth": IntRange(1, 4),
        "dropout": FloatRange(0.0, 0.4),
        "residual": Choice((False, True)),
        "lr": FloatRange(1e-4, 3e-3, log=True),
        "batch_size": Choice((64, 128, 256, 512)),
    }
)
MIN_SEARCHED_WIDTH = 16


class NetworkRegressor(CompositionRecords, MLPRegressor):
    """A fully connected network on a composition representation (ElemNet by default).

    Presets: ``default`` trains ElemNet with one-cycle Adam (peak 1e-3) for 30 epochs, the
    last quarter without dropout (tens of minutes on OQMD on 2 cores); ``paper`` as Jha et
    al. (Adam 1e-4, constant, dropout throughout, up to 1000 epochs with patience 100);
    ``benchmark`` exactly as ``benchmarks/oqmd_elemnet.py`` produced its committed result
    (75 epochs of one-cycle 1e-3 in bf16 mixed precision, dropout off for the last quarter).
    """

    family = "network"
    search_space: ClassVar[SearchSpace] = MLP_SEARCH_SPACE
    presets: ClassVar[dict] = {
        "default": {
            "config": ELEMNET_CONFIG
            | {"epochs": 30, "lr": 1e-3, "schedule": "onecycle", "dropout_until": 0.75}
        },
        "paper": {
            "config": ELEMNET_CONFIG
            | {"epochs": 1000, "lr": 1e-4, "schedule": "constant", "patience": 100}
        },
        "benchmark": {
            "config": ELEMNET_CONFIG
            | {
                "epochs": 75,
                "lr": 1e-3,
                "schedule": "onecycle",
                "precision": "bf16-mixed",
                "dropout_until": 0.75,
                "patience": 75,
            }
        },
    }

    def __init__(
        self,
        spec: MLPSpec | None = None,
        representation=None,
        config: TrainConfig | None = None,
        name: str = "elemnet",
        target: str = "target",
        unit: str = "",
    ):
        super().__init__(spec, representation or ElementFractions(), config, name, target, unit)

    def searched_spec(self, architecture: Mapping[str, Any]) -> MLPSpec:
        """Tapering blocks of :data:`MLP_SEARCH_SPACE` (its docstring gives the rule)."""
        a = architecture
        widths = [
            max(MIN_SEARCHED_WIDTH, round(a["width"] * a["taper"] ** i)) for i in range(a["blocks"])
        ]
        blocks = tuple(
            Block(w, a["depth"], a["dropout"] if i < len(widths) - 1 else 0.0, a["residual"])
            for i, w in enumerate(widths)
        )
        return MLPSpec(self.spec.in_features, blocks, self.spec.out_features)


class ForestRegressor(CompositionRecords, RecordRegressor):
    """scikit-learn random forest on a composition representation; standard deviations are
    the spread of the trees. Presets: ``default`` and ``benchmark`` 100 trees, ``paper``
    (as in Ward et al.'s Magpie baseline) 500.

    :meth:`refit` warm-starts: ``refit_trees`` new trees (a quarter of the forest when None)
    fitted to the larger training set replace as many of the oldest, so each round of an
    active-learning loop grows a share of the forest instead of all of it."""

    family = "forest"
    presets: ClassVar[dict] = {
        "default": {"n_estimators": 100},
        "paper": {"n_estimators": 500},
        "benchmark": {"n_estimators": 100},
    }

    def __init__(
        self,
        representation=None,
        n_estimators: int = 100,
        max_features: float = 1 / 3,
        min_samples_leaf: int = 1,
        seed: int = 0,
        n_jobs: int = -1,
        refit_trees: int | None = None,
        name: str = "rf-magpie",
        target: str = "target",
        unit: str = "",
    ):
        from sklearn.ensemble import RandomForestRegressor

        from deepmat.represent.magpie import MagpieAttributes

        super().__init__(representation or MagpieAttributes(), name, target, unit)
        self.hyperparameters = {
            "n_estimators": n_estimators,
            "max_features": max_features,
            "min_samples_leaf": min_samples_leaf,
            "seed": seed,
            "refit_trees": refit_trees,
        }
        self.forest = RandomForestRegressor(
            n_estimators=n_estimators,
            max_features=max_features,
            min_samples_leaf=min_samples_leaf,
            random_state=seed,
            n_jobs=n_jobs,
        )

    def fit(
        self,
        X,
        y=None,
        *,
        val=None,
        workdir: str | Path | None = None,
        resume: bool = True,
    ) -> ForestRegressor:
        """Fit the forest; ``val`` (optional) is scored into the card. ``workdir`` and
        ``resume`` are unused: a forest trains in one step and keeps no checkpoints."""
        train, val = self.labelled(X, y, "training data"), self.labelled_val(val)
        start = time.perf_counter()
        self.forest.fit(self.featurize(train), train.targets)
        self._record_training(
            train, val, time.perf_counter() - start, {"hyperparameters": self.hyperparameters}
        )
        return self

    def refit(self, X, y=None, *, val=None, workdir: str | Path | None = None) -> ForestRegressor:
        """Warm start (class docstring): the newest trees learn ``X``, the oldest go; a forest
        not fitted yet is fitted whole. ``workdir`` is unused."""
        if not hasattr(self.forest, "estimators_"):
            return self.fit(X, y, val=val)
        train, val = self.labelled(X, y, "training data"), self.labelled_val(val)
        start = time.perf_counter()
        size = len(self.forest.estimators_)
        grow = min(size, self.hyperparameters["refit_trees"] or max(1, size // 4))
        refits = self.training.get("refits", 0) + 1
        seed = int(np.random.default_rng([self.hyperparameters["seed"], refits]).integers(2**31))
        self.forest.set_params(warm_start=True, n_estimators=size + grow, random_state=seed)
        self.forest.fit(self.featurize(train), train.targets)
        self.forest.estimators_ = self.forest.estimators_[grow:]
        self.forest.set_params(warm_start=False, n_estimators=size)
        extra = {"hyperparameters": self.hyperparameters, "refits": refits, "trees_refitted": grow}
        self._record_training(train, val, time.perf_counter() - start, extra)
        return self

    def predict_features(self, x: np.ndarray, return_std: bool = False):
        if not return_std:
            return self.forest.predict(x)
        per_tree = np.stack([tree.predict(x) for tree in self.forest.estimators_])
        return per_tree.mean(0), per_tree.std(0)

    def card(self) -> dict:
        return super().card() | {"hyperparameters": self.hyperparameters}

    def save_state(self, path: Path) -> None:
        import joblib

        joblib.dump(self.forest, path / "forest.joblib", compress=3)

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> ForestRegressor:
        import joblib

        model = cls(
            representation_from_dict(card["representation"]),
            **card.get("hyperparameters", {}),
            **cls.saved_names(card),
        )
        forest = path / "forest.joblib"
        if not forest.exists():
            raise ModelFormatError(f"{path}: missing forest.joblib")
        model.forest = joblib.load(forest)
        model.restore_record(card)
        return model
