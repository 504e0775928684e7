"""Deep ensembles: k estimators that read one kind of input, as one model.

Members are usually one family trained from different seeds; they may also be different
families that read the same input for the same target (a Roost and an ElemNet, both reading
compositions): their errors are less alike, and their disagreement flags more of them.
The ensemble predicts the weighted mean μ̄ = Σₘ wₘ μₘ of its members' predictions (equal
weights wₘ = 1/k unless :meth:`Ensemble.weigh` fitted them on validation data) and, as its
standard deviation, their spread together with the members' own variances σₘ² where they
give them (Monte-Carlo dropout, forests, heteroscedastic networks), after Lakshminarayanan
et al. (NeurIPS 2017):

    σ² = Σₘ wₘ (μₘ − μ̄)²  (epistemic)  +  Σₘ wₘ σₘ² / Σₘ wₘ over members with σₘ  (aleatoric)

so any family that predicts values, or fields of values (a strain field per
microstructure, σ then per voxel), gets a standard deviation, which
:meth:`~deepmat.train.estimator.Estimator.recalibrate` then calibrates on validation data.

An ensemble is one saved model: ``card.json`` (family "ensemble", the members' family and
count, the ensemble's metrics) and ``members/0`` … ``members/k-1``, each a saved-model
directory of its own.
"""

from __future__ import annotations

import functools
import inspect
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import ClassVar, Self

import numpy as np

from deepmat.errors import ConfigError
from deepmat.train.estimator import Estimator, UncertaintyUnavailable

MEMBERS = "members"


def identity(card: dict) -> dict:
    """What members of one ensemble must share: the input they read (a composition, a
    structure, a microstructure), what they predict, and its name and unit."""
    target = card.get("target") or {}
    return {
        "input": card.get("input"),
        "output": card.get("output", "value"),
        "target": target.get("name"),
        "unit": target.get("unit", ""),
    }


class Ensemble(Estimator):
    """k members that read one kind of input for one target in one unit (a clear error
    names the member that differs), with ``weights`` (equal by default); ``fit`` trains each
    member in turn, member i in ``workdir/members/i``.

    Presets: ``k`` members (5 in all three, as Lakshminarayanan et al.), each built from the
    same-named preset of the member class (:meth:`from_preset`).
    """

    family = "ensemble"
    #: the members' input kind, set per ensemble
    input_kind: ClassVar[str] = "members"
    #: what an ensemble reads from its first member, which all share (a field model's grid
    #: and training ε̄11, say)
    shared: ClassVar[tuple[str, ...]] = ("grid", "macro_strain", "phases")
    presets: ClassVar[dict] = {"default": {"k": 5}, "paper": {"k": 5}, "benchmark": {"k": 5}}

    def __init__(
        self,
        members: Sequence[Estimator],
        name: str | None = None,
        weights: Sequence[float] | None = None,
    ):
        if len(members) < 2:
            raise ConfigError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = list(members)
        self.weights = _checked_weights(weights, len(self.members))
        self.name = name or f"{self.members[0].name}-ensemble"
        first = identity(self.members[0].card())
        if first["output"] == "orientation":
            raise ConfigError(
                "ensembles average values or fields; the mean of orientations needs their "
                f"crystal symmetry ({self.members[0].family} predicts orientations)"
            )
        for i, member in enumerate(self.members[1:], start=1):
            theirs = identity(member.card())
            differing = [key for key, value in theirs.items() if value != first[key]]
            if differing:
                raise ConfigError(
                    f"ensemble member {i} ({member.name}) differs from member 0 in "
                    f"{', '.join(differing)}: {theirs[differing[0]]!r} vs "
                    f"{first[differing[0]]!r}"
                )
        self.input_kind = self.members[0].input_kind
        self.output_kind = self.members[0].output_kind
        self.target, self.unit = first["target"], first["unit"]
        self.training: dict = {}
        self.metrics: dict = {}

    @classmethod
    def of(cls, make: Callable[[int], Estimator], k: int, name: str | None = None) -> Self:
        """An ensemble of ``make(0)`` … ``make(k - 1)``: give each its own seed."""
        return cls([make(i) for i in range(k)], name)

    @classmethod
    def from_preset(
        cls,
        preset: str = "default",
        config: dict | None = None,
        *,
        member: type[Estimator] | None = None,
        k: int | None = None,
        **overrides,
    ) -> Self:
        """``k`` (the preset's by default) members ``member.from_preset(preset, config,
        **overrides)``, member i with the seed ``seed + i`` (``seed`` from ``config`` or
        ``overrides``, 0 by default)."""
        if member is None:
            raise ConfigError("an ensemble preset needs the member class: member=...")
        k = k or cls.preset_arguments(preset)["k"]
        config = dict(config or {})
        seed = int(config.pop("seed", None) or overrides.pop("seed", None) or 0)
        takes_seed = "seed" in inspect.signature(member).parameters

        def make(i: int) -> Estimator:
            seeded = {"seed": seed + i} if takes_seed else {}
            given = config | ({} if takes_seed else {"seed": seed + i})
            return member.from_preset(preset, config=given, **overrides, **seeded)

        return cls.of(make, k)

    @property
    def representation(self):
        """The members' representation (composition and structure members have one)."""
        return self.members[0].representation

    def fit(
        self,
        X,
        y=None,
        *,
        val=None,
        workdir: str | Path | None = None,
        jobs: int = 1,
        **options,
    ) -> Self:
        """Train every member on the same data (their seeds make them differ), ``jobs`` at a
        time in their own processes (each with its share of the CPU threads); ``options``
        (such as ``resume``) go to each member's ``fit``."""
        with tempfile.TemporaryDirectory(prefix="deepmat-ensemble-") as scratch:
            root = Path(workdir) if workdir is not None else Path(scratch)
            places = [root / MEMBERS / str(i) for i in range(len(self.members))]
            if jobs > 1:
                self.members = _fit_in_processes(self.members, places, X, y, val, jobs, options)
            else:
                for member, where in zip(self.members, places, strict=True):
                    member.fit(X, y, val=val, workdir=where, **options)
        return self._record(val)

    @classmethod
    def from_members(
        cls,
        members: Sequence[Estimator],
        val=None,
        name: str | None = None,
        weights: Sequence[float] | None = None,
    ) -> Self:
        """An ensemble of members trained already (by separate runs, say, each resumable on
        its own), recorded as :meth:`fit` records one: with its metrics on ``val``."""
        return cls(members, name, weights)._record(val)

    def _record(self, val) -> Self:
        self.training = {"members": len(self.members), "member_family": self.members[0].family}
        if "data" in self.members[0].training:
            self.training["data"] = self.members[0].training["data"]
        if val is not None:
            self.metrics["val"] = self.evaluate(*(val if isinstance(val, tuple) else (val,)))
        return self

    def __getattr__(self, name: str):
        if name in type(self).shared:
            return getattr(self.__dict__["members"][0], name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def starting_point(self, family: str) -> Estimator | None:
        """The first member of ``family``: fine-tuning starts from it."""
        return next((m for m in self.members if m.family == family), None)

    def _member_means(self, X, **options) -> np.ndarray:
        """The members' predictions, (k, n, …); ``options`` (a field model's ε̄11) go to
        each member's ``predict``."""
        return np.stack(
            [np.asarray(m.predict(X, **options), dtype=np.float64) for m in self.members]
        )

    def _member_moments(self, X, **options) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The members' means (k, n, …) and the variances of those that give one, by
        member index."""
        moments = [predict_moments(member, X, options) for member in self.members]
        variances = {i: var for i, (_, var) in enumerate(moments) if var is not None}
        return np.stack([mean for mean, _ in moments]), variances

    def _mean(self, means: np.ndarray) -> np.ndarray:
        """The weighted mean over the members' axis of ``means`` (k, n, …)."""
        return np.tensordot(self.weights, means, axes=1)

    def predict(self, X, return_std: bool = False, **options):
        """The members' weighted mean; with ``return_std`` also σ (module docstring), its
        parts weighed as :meth:`recalibrate` fitted them. Without it, no member computes a
        spread (Monte-Carlo dropout would cost its passes for nothing)."""
        if not return_std:
            return self._mean(self._member_means(X, **options))
        mean, parts = self.variance_components(X, **options)
        return mean, self.recalibrated_std(parts)

    def variance_components(self, X, **options) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The mean and the parts of σ² (module docstring): "epistemic", the members'
        spread, and "aleatoric", their own variances, where any member gives one."""
        return self._components(*self._member_moments(X, **options))

    def _components(
        self, means: np.ndarray, own: dict[int, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:meth:`variance_components` from the members' means and own variances."""
        mean = self._mean(means)
        parts = {"epistemic": self._mean((means - mean) ** 2)}
        if own:
            giving = np.array([self.weights[i] for i in own])
            stacked = np.stack(list(own.values()))
            parts["aleatoric"] = np.tensordot(giving / giving.sum(), stacked, axes=1)
        return mean, parts

    def weigh(self, X, y=None) -> np.ndarray:
        """Fit the members' weights on held-out ``X`` (validation data): the non-negative
        weights, summing to 1, whose mean has the smallest absolute error there (members of
        different families rarely deserve equal votes). Returns and keeps them."""
        truth = self.held_out_targets(X, y, "weighing")
        return self._fit_weights(truth, self._member_means(X))

    def _fit_weights(self, truth: np.ndarray, means: np.ndarray) -> np.ndarray:
        """:meth:`weigh` from held-out targets and the members' means (k, n, …) of them."""
        from scipy.optimize import minimize

        truth, means = truth.reshape(-1), means.reshape(len(self.members), -1)

        def error(logits: np.ndarray) -> float:
            weights = np.exp(logits - logits.max())
            return float(np.mean(np.abs(truth - weights @ means / weights.sum())))

        start = np.zeros(len(self.members))
        logits = minimize(error, start, method="Nelder-Mead", options={"xatol": 1e-4}).x
        weights = np.exp(logits - logits.max())
        self.weights = weights / weights.sum()
        return self.weights

    def targets_of(self, X, y=None) -> np.ndarray:
        return self.members[0].targets_of(X, y)

    def embed(self, X) -> np.ndarray:
        """The first member's feature space (members share their inputs)."""
        return self.members[0].embed(X)

    def evaluate(self, X, y=None, **options) -> dict:
        """The members' metrics (:meth:`~deepmat.train.estimator.Estimator.score`) of the
        ensemble's mean, with each member's MAE."""
        return self._scores(self.targets_of(X, y), self._member_means(X, **options), **options)

    def _scores(self, truth: np.ndarray, means: np.ndarray, **options) -> dict:
        """:meth:`evaluate` from the targets and the members' means (k, n, …) of them."""
        score = functools.partial(self.members[0].score, **options)
        members = [score(truth, mean)["mae"] for mean in means]
        return score(truth, self._mean(means)) | {"member_mae": members}

    def fit_held_out(
        self, X, y=None, *, weigh: bool = True, criterion: str = "nll", coverage: float = 0.95
    ) -> dict:
        """On held-out ``X`` (validation data): :meth:`weigh` the members (unless ``weigh``
        is false), :meth:`recalibrate` and record the validation metrics, with every member
        predicting ``X`` once (the three alone would predict it three times). Returns
        :attr:`recalibration`."""
        truth = self.held_out_targets(X, y, "weighing" if weigh else "recalibrating")
        means, own = self._member_moments(X)
        if weigh:
            self._fit_weights(truth, means)
        record = self.recalibrate_on(truth, *self._components(means, own), criterion, coverage)
        self.metrics["val"] = self._scores(truth, means)
        return record

    def card(self) -> dict:
        member = self.members[0].card()
        return {
            "family": self.family,
            "model": self.name,
            "input": self.input_kind,
            "output": member.get("output", "value"),
            "target": member["target"],
            "representation": member.get("representation"),
            "members": {
                "family": member["family"],
                "k": len(self.members),
                "families": [m.family for m in self.members],
                "weights": [float(w) for w in self.weights],
            },
            "training": self.training,
            "metrics": self.metrics,
        }

    def save_state(self, path: Path) -> None:
        from deepmat.train.saved import save_model

        for i, member in enumerate(self.members):
            save_model(member, path / MEMBERS / str(i))

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> Self:
        from deepmat.train.saved import load_model

        k, weights = card["members"]["k"], card["members"].get("weights")
        members = [load_model(path / MEMBERS / str(i)) for i in range(k)]
        ensemble = cls(members, card["model"], weights)
        ensemble.restore_record(card)
        return ensemble


def predict_moments(model: Estimator, X, options: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """``model``'s predictions for ``X`` and their variance (None where it gives none);
    ``options`` go to its ``predict``."""
    try:
        mean, std = model.predict(X, return_std=True, **options)
        return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64) ** 2
    except UncertaintyUnavailable:
        return np.asarray(model.predict(X, **options), dtype=np.float64), None


def _checked_weights(weights: Sequence[float] | None, k: int) -> np.ndarray:
    """Weights of ``k`` members: equal when None, else non-negative and normalised."""
    if weights is None:
        return np.full(k, 1.0 / k)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (k,) or not np.all(np.isfinite(weights) & (weights >= 0)):
        raise ConfigError(
            f"an ensemble of {k} members needs {k} non-negative weights, got {weights}"
        )
    if weights.sum() <= 0:
        raise ConfigError("an ensemble's weights must not all be zero")
    return weights / weights.sum()


def _fit_and_save(member: Estimator, where: Path, X, y, val, threads: int, options: dict) -> Path:
    """One member trained in a worker process and saved to ``where/trained``."""
    import torch

    from deepmat.train.saved import save_model

    torch.set_num_threads(threads)
    member.fit(X, y, val=val, workdir=where, **options)
    return save_model(member, where / "trained")


def _fit_in_processes(members, places, X, y, val, jobs: int, options: dict) -> list[Estimator]:
    """The members trained ``jobs`` at a time in spawned processes, read back from disk."""
    from deepmat.train.saved import load_model

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(_fit_and_save, member, where, X, y, val, threads, options)
            for member, where in zip(members, places, strict=True)
        ]
        return [load_model(future.result()) for future in futures]
