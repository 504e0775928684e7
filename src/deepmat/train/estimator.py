"""The estimator protocol every deepmat model follows, in the scikit-learn spirit.

::

    model = SomeEstimator.from_preset("default")        # or "paper", "benchmark"
    model.fit(X, y, val=(X_val, y_val), workdir="runs/x")  # returns the estimator
    model.predict(X)                                    # values in the target's units
    model.predict(X, return_std=True)                   # (values, standard deviations)
    model.evaluate(X, y)                                # {"mae": ..., ...}: always a dict
    model.save("runs/x")                                # a saved-model directory
    deepmat.load("runs/x")                              # the same estimator back

``X`` is whatever the family reads (a :class:`~deepmat.data.CompositionTable` or formulas, a
:class:`~deepmat.data.StructureTable` or pymatgen structures, an (n, n1, n2, n3) voxel array,
(n, h, w) EBSD patterns); tables carry their targets, so ``y`` may be omitted for them.

Each family is a subclass that sets ``family`` (its key in the saved-model registry,
:mod:`deepmat.train.saved`), ``input_kind`` (what ``X`` is, which the command line uses to
read inputs), ``output_kind`` (a value, a field or an orientation per record) and
``presets``: named constructor arguments shared by the command line and the benchmark
scripts, so that ``--preset benchmark`` trains exactly what produced a committed result.
``config`` in a preset holds :class:`~deepmat.train.config.TrainConfig` fields. A network
family that can be searched (``deepmat search``) also declares ``search_space``, a
:class:`~deepmat.train.search_space.SearchSpace`, and :meth:`Estimator.searched`, which
builds the estimator at one point of it.

Uncertainty is never silently wrong: an estimator that cannot give a standard deviation
raises :class:`UncertaintyUnavailable` saying why, instead of returning zeros. One that can
is recalibrated on held-out data by :meth:`Estimator.recalibrate`: a factor on its standard
deviations (on each part of its variance, for an ensemble) kept in its card.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Self

import numpy as np

from deepmat.errors import ConfigError, DataError, DeepmatError
from deepmat.train.config import TargetScaler, TrainConfig
from deepmat.train.search_space import SearchSpace

PRESETS = ("default", "paper", "benchmark")
#: the fewest records a standard-deviation factor is fitted on
MIN_CALIBRATION_RECORDS = 50


class UncertaintyUnavailable(DeepmatError):
    """``predict(..., return_std=True)`` on a model that cannot estimate its uncertainty."""


class Estimator:
    """Base of every deepmat estimator (see the module docstring for the protocol)."""

    family: ClassVar[str] = ""
    input_kind: ClassVar[str] = ""
    #: what ``predict`` returns per record: "value", "field" (an array per record) or
    #: "orientation"
    output_kind: ClassVar[str] = "value"
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: what an architecture search may vary (None: the family cannot be searched)
    search_space: ClassVar[SearchSpace | None] = None
    #: the default preset's network as a point of :attr:`search_space`, which a search
    #: tries first (None where the preset's network is not a point of the space)
    search_start: ClassVar[dict | None] = None

    name: str
    training: dict
    metrics: dict
    #: the saved-model directory this estimator was loaded from (None until saved or loaded)
    source: Path | None = None
    #: {} until :meth:`recalibrate`: then ``std_scale``, the factor on the standard
    #: deviations, with the records it was fitted on and the metrics before and after
    recalibration: Mapping[str, Any] = MappingProxyType({})

    @classmethod
    def preset_arguments(
        cls, preset: str = "default", config: dict | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """The constructor arguments of ``preset`` with ``overrides`` applied; ``config``
        overrides single fields of the preset's training configuration."""
        if preset not in cls.presets:
            raise ConfigError(
                f"{cls.__name__} has no preset {preset!r}; choose from {sorted(cls.presets)}"
            )
        arguments = copy.deepcopy(cls.presets[preset])
        given = {k: v for k, v in (config or {}).items() if v is not None}
        if "config" in arguments:
            arguments["config"] = TrainConfig(**(arguments["config"] | given))
        elif set(given) - {"progress", "seed"}:
            raise ConfigError(
                f"{cls.__name__} trains no network: the training options "
                f"{', '.join(sorted(set(given) - {'progress', 'seed'}))} do not apply to it"
            )
        return arguments | {k: v for k, v in overrides.items() if v is not None}

    @classmethod
    def from_preset(cls, preset: str = "default", config: dict | None = None, **overrides: Any):
        """A new estimator with the arguments of ``preset`` (``default``, ``paper`` or
        ``benchmark``), ``overrides`` and single ``config`` fields replacing the preset's."""
        return cls(**cls.preset_arguments(preset, config, **overrides))

    @classmethod
    def declared_search_space(cls) -> SearchSpace:
        """:attr:`search_space`, or a ConfigError for a family that declares none."""
        if cls.search_space is None:
            raise ConfigError(f"{cls.__name__} declares no search space: it cannot be searched")
        return cls.search_space

    def searched(self, values: Mapping[str, Any]) -> Self:
        """A new, untrained estimator like this one (representation, target, training
        configuration) at one point ``values`` of its search space."""
        raise ConfigError(f"{type(self).__name__} declares no search space: it cannot be searched")

    def fit(self, X, y=None, *, val=None, workdir: str | Path | None = None) -> Self:
        raise NotImplementedError

    def predict(self, X, return_std: bool = False):
        raise NotImplementedError

    def evaluate(self, X, y=None) -> dict:
        raise NotImplementedError

    def refit(self, X, y=None, *, val=None, workdir: str | Path | None = None) -> Self:
        """Train again on ``X``, which holds the records of the last fit and more (the next
        round of an active-learning loop). A family that can start from what it learned
        overrides this (a warm start); by default it calls ``fit`` again."""
        return self.fit(X, y, val=val, workdir=workdir)

    def starting_point(self, family: str) -> Estimator | None:
        """The model of ``family`` in this one that fine-tuning a ``family`` model starts
        from (:meth:`warm_start`): this model itself, or None when it is of another family."""
        return self if self.family == family else None

    def embed(self, X) -> np.ndarray:
        """(n, d) coordinates of the inputs ``X`` in the space the model reads them in (its
        features, or a latent space), where near records are alike: active learning spreads
        a batch over it. A family without such a space raises ConfigError."""
        raise ConfigError(f"{self.name} ({self.family}) gives no feature space for its inputs")

    def card(self) -> dict:
        """The model card: family, hyper-parameters, target, training record, metrics."""
        raise NotImplementedError

    def score(self, truth: np.ndarray, prediction: np.ndarray) -> dict:
        """The metrics this family reports for ``prediction`` against ``truth`` (an ensemble
        of its members reports the same): MAE, RMSE, R² and n."""
        from deepmat.train.metrics import regression_metrics

        return regression_metrics(truth, prediction)

    def targets_of(self, X, y=None) -> np.ndarray:
        """The true targets of labelled inputs: ``y`` here (tables carry their own)."""
        if y is None:
            raise DataError(f"{self.name} needs the targets y of its inputs X")
        return np.asarray(y, dtype=np.float64)

    @property
    def std_scale(self) -> float:
        """The factor :meth:`recalibrate` fitted on the standard deviations (1 before)."""
        return float(self.recalibration.get("std_scale", 1.0))

    def variance_components(self, X) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The predictions for ``X`` and the parts of their variance before recalibration:
        one, "total", for a single model (an ensemble tells its members' own from their
        spread)."""
        mean, std = self.predict(X, return_std=True)
        return mean, {"total": (np.asarray(std, dtype=np.float64) / self.std_scale) ** 2}

    def recalibrated_std(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """σ from the parts of :meth:`variance_components`, each with the factor
        :meth:`recalibrate` fitted for it (``std_scale`` for one part, 1 before)."""
        from deepmat.train.calibration import scaled_std

        scales = self.recalibration.get("component_scales") or dict.fromkeys(parts, self.std_scale)
        return scaled_std(parts, scales)

    def held_out_targets(self, X, y=None, purpose: str = "recalibrating") -> np.ndarray:
        """The targets of held-out ``X`` that a fit on validation data (``purpose``) reads:
        at least :data:`MIN_CALIBRATION_RECORDS` of them, or a clear error with the count."""
        truth = self.targets_of(X, y)
        if truth.size < MIN_CALIBRATION_RECORDS:
            raise DataError(
                f"{purpose} {self.name} needs at least {MIN_CALIBRATION_RECORDS} held-out "
                f"records; got {truth.size}"
            )
        return truth

    def recalibrate(self, X, y=None, criterion: str = "nll", coverage: float = 0.95) -> dict:
        """Fit and keep the factor s on this model's standard deviations that calibrates
        them on held-out ``X`` (validation data, never training or test data). ``criterion``
        "nll": maximum likelihood of Gaussian errors, s² = mean(((y − μ)/σ)²);
        "miscalibration": the s with the smallest miscalibration area (for errors with
        heavier tails than a Gaussian's, which no one factor makes right at every level);
        "coverage": the 95 % interval holds ``coverage`` of them (split conformal). A model
        whose variance has two parts (an ensemble's members' own and their spread) gets a
        factor on each (:func:`~deepmat.train.calibration.fit_component_scales`). Later
        predictions with ``return_std`` are scaled by them and the card records them.
        Needs :data:`MIN_CALIBRATION_RECORDS` held-out values (records, or voxels of
        fields); returns :attr:`recalibration`."""
        truth = self.held_out_targets(X, y)
        return self.recalibrate_on(truth, *self.variance_components(X), criterion, coverage)

    def recalibrate_on(
        self,
        truth: np.ndarray,
        mean: np.ndarray,
        parts: dict[str, np.ndarray],
        criterion: str = "nll",
        coverage: float = 0.95,
    ) -> dict:
        """:meth:`recalibrate` from held-out targets and the model's predictions of them
        already made (:meth:`variance_components`)."""
        from deepmat.train.calibration import calibration_metrics, fit_component_scales

        before = calibration_metrics(truth, mean, np.sqrt(sum(parts.values())))
        scales, method = fit_component_scales(truth, mean, parts, criterion, coverage)
        fitted = (
            {"std_scale": next(iter(scales.values()))}
            if len(scales) == 1
            else {"component_scales": scales}
        )
        self.recalibration = {
            **fitted,
            "criterion": criterion,
            **({"coverage": coverage} if criterion == "coverage" else {}),
            "method": method,
            "n": int(truth.size),
            "before": before,
        }
        self.recalibration["after"] = calibration_metrics(truth, mean, self.recalibrated_std(parts))
        return self.recalibration

    def warm_start(self) -> Estimator | None:
        """Before training: when the training configuration's ``init`` names a saved or
        pretrained model, copy its network's weights into this one's (fine-tuning, transfer
        learning) and return it; None otherwise. The two must be of one family (or the saved
        model an ensemble with a member of this family: the first such member), read one
        representation and share the architecture (this one may add a σ output). The
        configuration's ``freeze`` first layers then keep those weights."""
        init = getattr(getattr(self, "config", None), "init", None)
        if not init:
            return None
        from deepmat import load
        from deepmat.train.weights import freeze_leading, transfer_weights

        saved = load(init)
        label = f"{self.name}: starting from {init}"
        source = saved.starting_point(self.family)
        if source is None:
            raise ConfigError(f"{label}: it holds no {self.family} (it is a {saved.family})")
        ours, theirs = (getattr(m, "representation", None) for m in (self, source))
        if ours is not None and ours.to_dict() != theirs.to_dict():
            raise ConfigError(f"{label}: it reads {theirs.to_dict()}, this model {ours.to_dict()}")
        transfer_weights(self.net, source.net, label)
        if self.config.freeze:
            freeze_leading(self.net, self.config.freeze, label)
        return source

    def starting_scaler(self, y: np.ndarray, log: bool = False) -> TargetScaler:
        """The target standardisation a fit trains under: fitted on ``y``, or that of the
        model the network starts from (:meth:`warm_start`), whose weights learned it."""
        source = self.warm_start()
        return copy.deepcopy(source.scaler) if source else TargetScaler.fit(y, log=log)

    def save_state(self, path: Path) -> None:
        """Write what the card does not hold (weights, fitted arrays) into ``path``."""

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> Self:
        """Rebuild the estimator from a saved-model directory and its card."""
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write this estimator as a saved-model directory (read back by :func:`deepmat.load`)."""
        from deepmat.train.saved import save_model

        return save_model(self, path)

    def no_uncertainty(self, reason: str) -> UncertaintyUnavailable:
        """The error ``predict(..., return_std=True)`` raises when this model has none."""
        return UncertaintyUnavailable(
            f"{self.name} ({self.family}) gives no standard deviations: {reason}"
        )

    def restore_record(self, card: dict) -> None:
        """Training record and metrics from a card (shared by every ``from_saved``)."""
        self.training, self.metrics = card.get("training", {}), card.get("metrics", {})

    @staticmethod
    def saved_config(card: dict) -> TrainConfig:
        """The training configuration a card records."""
        return TrainConfig(**card.get("training", {}).get("config", {}))

    @staticmethod
    def saved_names(card: dict) -> dict[str, str]:
        """The model's name, target and unit as a card records them (constructor arguments)."""
        target = card["target"]
        return {"name": card["model"], "target": target["name"], "unit": target.get("unit", "")}
