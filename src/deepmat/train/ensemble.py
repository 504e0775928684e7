"""Deep ensembles: k estimators of one kind, trained from different seeds, as one model.

The ensemble predicts the mean μ̄ of its members' predictions μₘ and, as its standard
deviation, their spread together with the members' own variances σₘ² where they give
them (Monte-Carlo dropout, forests), after Lakshminarayanan et al. (NeurIPS 2017):

    σ² = (1/k) Σₘ (μₘ − μ̄)² + (1/k) Σₘ σₘ²

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


def _identity(card: dict) -> dict:
    """What members of one ensemble must share: family, input, target, representation."""
    return {
        "family": card.get("family"),
        "input": card.get("input"),
        "output": card.get("output", "value"),
        "target": card.get("target"),
        "representation": card.get("representation"),
    }


class Ensemble(Estimator):
    """k members of one family, one target and one representation (a clear error names the
    member that differs); ``fit`` trains each member in turn, member i in
    ``workdir/members/i``.

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

    def __init__(self, members: Sequence[Estimator], name: str | None = None):
        if len(members) < 2:
            raise ConfigError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = list(members)
        self.name = name or f"{self.members[0].name}-ensemble"
        first = _identity(self.members[0].card())
        if first["output"] == "orientation":
            raise ConfigError(
                "ensembles average values or fields; the mean of orientations needs their "
                f"crystal symmetry ({first['family']} predicts orientations)"
            )
        for i, member in enumerate(self.members[1:], start=1):
            identity = _identity(member.card())
            differing = [key for key, value in identity.items() if value != first[key]]
            if differing:
                raise ConfigError(
                    f"ensemble member {i} ({member.name}) differs from member 0 in "
                    f"{', '.join(differing)}: {identity[differing[0]]!r} vs "
                    f"{first[differing[0]]!r}"
                )
        self.input_kind = self.members[0].input_kind
        self.output_kind = self.members[0].output_kind
        self.target, self.unit = first["target"]["name"], first["target"].get("unit", "")
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
    def from_members(cls, members: Sequence[Estimator], val=None, name: str | None = None) -> Self:
        """An ensemble of members trained already (by separate runs, say, each resumable on
        its own), recorded as :meth:`fit` records one: with its metrics on ``val``."""
        return cls(members, name)._record(val)

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

    def _member_means(self, X, **options) -> np.ndarray:
        """The members' predictions, (k, n, …); ``options`` (a field model's ε̄11) go to
        each member's ``predict``."""
        return np.stack(
            [np.asarray(m.predict(X, **options), dtype=np.float64) for m in self.members]
        )

    def _member_moments(self, X, **options) -> tuple[np.ndarray, np.ndarray | None]:
        """The members' means (k, n, …) and variances, or None where they give none."""
        means, variances = [], []
        for member in self.members:
            try:
                mean, std = member.predict(X, return_std=True, **options)
                variances.append(np.asarray(std, dtype=np.float64) ** 2)
            except UncertaintyUnavailable:
                mean = member.predict(X, **options)
            means.append(np.asarray(mean, dtype=np.float64))
        own = np.stack(variances) if len(variances) == len(means) else None
        return np.stack(means), own

    def predict(self, X, return_std: bool = False, **options):
        """The members' mean; with ``return_std`` also σ (module docstring), recalibrated
        when :meth:`recalibrate` has fitted a factor. Without it, no member computes a
        spread (Monte-Carlo dropout would cost its passes for nothing)."""
        if not return_std:
            return self._member_means(X, **options).mean(axis=0)
        means, own = self._member_moments(X, **options)
        variance = means.var(axis=0) + (own.mean(axis=0) if own is not None else 0.0)
        return means.mean(axis=0), self.std_scale * np.sqrt(variance)

    def targets_of(self, X, y=None) -> np.ndarray:
        return self.members[0].targets_of(X, y)

    def embed(self, X) -> np.ndarray:
        """The first member's feature space (members share their inputs)."""
        return self.members[0].embed(X)

    def evaluate(self, X, y=None, **options) -> dict:
        """The members' metrics (:meth:`~deepmat.train.estimator.Estimator.score`) of the
        ensemble's mean, with each member's MAE."""
        truth = self.targets_of(X, y)
        means = self._member_means(X, **options)
        score = functools.partial(self.members[0].score, **options)
        members = [score(truth, mean)["mae"] for mean in means]
        return score(truth, means.mean(axis=0)) | {"member_mae": members}

    def card(self) -> dict:
        member = self.members[0].card()
        return {
            "family": self.family,
            "model": self.name,
            "input": self.input_kind,
            "output": member.get("output", "value"),
            "target": member["target"],
            "representation": member.get("representation"),
            "members": {"family": member["family"], "k": len(self.members)},
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

        k = card["members"]["k"]
        ensemble = cls([load_model(path / MEMBERS / str(i)) for i in range(k)], card["model"])
        ensemble.restore_record(card)
        return ensemble


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
