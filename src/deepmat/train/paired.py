"""A model paired with a companion that tells how far to trust it.

Some models give no standard deviation of their own and cannot cheaply be made to: a network
trained without dropout in its last epochs (Monte-Carlo dropout would not describe its
errors), or one too large to ship k times as an ensemble. A *companion* — a second model
trained on the same split, reading the same input for the same target, ideally of another
family so that its errors differ — says where the model is likely wrong: where the two
disagree (query by committee; Seung et al., COLT 1992). The pair predicts the model's own
mean, unchanged, and as its standard deviation

    σ² = s_e² (μ_model − μ_companion)²  (epistemic)  +  s_a² σ_a²  (aleatoric)

with σ_a the model's own σ where it gives one, else the companion's (a heteroscedastic
Roost's, say), and the factors s_e, s_a fitted on validation data by
:meth:`~deepmat.train.estimator.Estimator.recalibrate`, as for an ensemble's two parts
(:func:`~deepmat.train.calibration.fit_component_scales`). Unlike an ensemble, whose spread
is weighed by the members' votes in the mean, the companion never moves the prediction; it
runs only when a standard deviation is asked for.

A pair is one saved model: ``card.json`` (family "paired") with ``model/`` and
``companion/``, each a saved-model directory of its own. Everything else (a network's
layers, its features, fine-tuning from it) is the model's.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

import numpy as np

from deepmat.errors import ConfigError
from deepmat.train.ensemble import identity, predict_moments
from deepmat.train.estimator import PRESETS, Estimator

MODEL, COMPANION = "model", "companion"


class Paired(Estimator):
    """``model`` with ``companion`` for its standard deviations (module docstring); the two
    must read one input for one target in one unit (a clear error names what differs).

    Presets build each of the two from its class's same-named preset (:meth:`from_preset`).
    """

    family = "paired"
    #: the model's input kind, set per pair
    input_kind: ClassVar[str] = "members"
    presets: ClassVar[dict] = {preset: {} for preset in PRESETS}

    def __init__(self, model: Estimator, companion: Estimator, name: str | None = None):
        ours, theirs = identity(model.card()), identity(companion.card())
        if ours["output"] == "orientation":
            raise ConfigError(
                "a companion's disagreement is a difference of values; orientations differ "
                f"by a disorientation that needs their crystal symmetry ({model.name})"
            )
        differing = [key for key, value in ours.items() if theirs[key] != value]
        if differing:
            raise ConfigError(
                f"companion {companion.name} differs from {model.name} in "
                f"{', '.join(differing)}: {theirs[differing[0]]!r} vs {ours[differing[0]]!r}"
            )
        self.model, self.companion = model, companion
        self.name = name or model.name
        self.input_kind, self.output_kind = model.input_kind, model.output_kind
        self.target, self.unit = ours["target"], ours["unit"]
        self.training: dict = {}
        self.metrics: dict = {}

    @classmethod
    def from_preset(
        cls,
        preset: str = "default",
        config: dict | None = None,
        *,
        model: type[Estimator] | None = None,
        companion: type[Estimator] | None = None,
        **overrides,
    ) -> Self:
        """``model.from_preset(preset, config, **overrides)`` paired with
        ``companion.from_preset(preset, config)``."""
        if model is None or companion is None:
            raise ConfigError("a paired preset needs both classes: model=..., companion=...")
        cls.preset_arguments(preset)
        return cls(
            model.from_preset(preset, config, **overrides), companion.from_preset(preset, config)
        )

    @classmethod
    def of(cls, model: Estimator, companion: Estimator, val=None, name: str | None = None) -> Self:
        """A pair of two models trained already (each by its own resumable run), recorded as
        :meth:`fit` records one: with its metrics on ``val``."""
        return cls(model, companion, name)._record(val)

    def fit(self, X, y=None, *, val=None, workdir: str | Path | None = None, **options) -> Self:
        """Train the model and then its companion on the same data, in ``workdir/model`` and
        ``workdir/companion``; ``options`` (such as ``resume``) go to both ``fit`` calls."""
        for part, where in ((self.model, MODEL), (self.companion, COMPANION)):
            part.fit(
                X, y, val=val, workdir=None if workdir is None else Path(workdir) / where, **options
            )
        return self._record(val)

    def _record(self, val) -> Self:
        self.training = {"model": self.model.name, "companion": self.companion.name}
        if "data" in self.model.training:
            self.training["data"] = self.model.training["data"]
        if val is not None:
            self.metrics["val"] = self.evaluate(*(val if isinstance(val, tuple) else (val,)))
        return self

    def __getattr__(self, name: str):
        """Whatever the pair does not define is its model's (its network, features,
        representation, grid)."""
        if MODEL not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__[MODEL], name)

    def starting_point(self, family: str) -> Estimator | None:
        """Fine-tuning starts from the model, or from the companion if only it is of
        ``family``."""
        return self.model.starting_point(family) or self.companion.starting_point(family)

    def targets_of(self, X, y=None) -> np.ndarray:
        return self.model.targets_of(X, y)

    def score(self, truth, prediction, **options) -> dict:
        return self.model.score(truth, prediction, **options)

    def embed(self, X) -> np.ndarray:
        return self.model.embed(X)

    def predict(self, X, return_std: bool = False, **options):
        """The model's predictions; with ``return_std`` also σ (module docstring), its parts
        weighed as :meth:`recalibrate` fitted them."""
        if not return_std:
            return self.model.predict(X, **options)
        mean, parts = self.variance_components(X, **options)
        return mean, self.recalibrated_std(parts)

    def variance_components(self, X, **options) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The model's mean and the parts of σ²: "epistemic", the squared disagreement with
        the companion, and "aleatoric", the model's own variance or else the companion's,
        where either gives one."""
        mean, _, parts = self._moments(X, options)
        return mean, parts

    def _moments(self, X, options: dict) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The model's and the companion's predictions for ``X`` and the parts of σ²
        (:meth:`variance_components`)."""
        mean, own = predict_moments(self.model, X, options)
        theirs, companion_own = predict_moments(self.companion, X, options)
        parts = {"epistemic": (mean - theirs) ** 2}
        aleatoric = own if own is not None else companion_own
        if aleatoric is not None:
            parts["aleatoric"] = aleatoric
        return mean, theirs, parts

    def evaluate(self, X, y=None, **options) -> dict:
        """The model's metrics, with the companion's MAE beside them."""
        truth = self.targets_of(X, y)
        mean, theirs = (m.predict(X, **options) for m in (self.model, self.companion))
        return self._scores(truth, mean, theirs, **options)

    def _scores(self, truth: np.ndarray, mean: np.ndarray, theirs: np.ndarray, **options) -> dict:
        """:meth:`evaluate` from the targets and the two models' predictions of them."""
        companion = self.companion.score(truth, theirs, **options)["mae"]
        return self.model.score(truth, mean, **options) | {"companion_mae": companion}

    def fit_held_out(
        self, X, y=None, *, criterion: str = "coverage", coverage: float = 0.95
    ) -> dict:
        """On held-out ``X`` (validation data): :meth:`recalibrate` and record the validation
        metrics, with each model predicting ``X`` once. Returns :attr:`recalibration`."""
        truth = self.held_out_targets(X, y)
        mean, theirs, parts = self._moments(X, {})
        record = self.recalibrate_on(truth, mean, parts, criterion, coverage)
        self.metrics["val"] = self._scores(truth, mean, theirs)
        return record

    def card(self) -> dict:
        model = self.model.card()
        return {
            "family": self.family,
            "model": self.name,
            "input": model.get("input", self.input_kind),
            "output": model.get("output", "value"),
            "target": model["target"],
            "representation": model.get("representation"),
            "paired": {"model": self.model.family, "companion": self.companion.family},
            "training": self.training,
            "metrics": self.metrics,
        }

    def save_state(self, path: Path) -> None:
        from deepmat.train.saved import save_model

        save_model(self.model, path / MODEL)
        save_model(self.companion, path / COMPANION)

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> Self:
        from deepmat.train.saved import load_model

        pair = cls(load_model(path / MODEL), load_model(path / COMPANION), card["model"])
        pair.restore_record(card)
        return pair
