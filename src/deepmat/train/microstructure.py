"""Homogenization estimators: two-phase voxel microstructure → effective property.

Three models of increasing knowledge of the structure, as compared by Yang et al. (2018)
for the effective stiffness C11 of contrast-50 composites:

* :class:`RuleOfMixtures`: volume fraction only, through the Voigt (uniform strain) or
  Reuss (uniform stress) estimate of the phases' stiffness; no fitting.
* :class:`TwoPointPCARegressor`: 2-point statistics in a window around r = 0, reduced by
  PCA and fed to a polynomial ridge regression, the materials-knowledge-systems recipe.
* :class:`VoxelCNNRegressor`: a :class:`~deepmat.models.cnn3d.HomogenizationCNN` on the
  voxels themselves, trained by :func:`~deepmat.train.trainer.fit_network`.

They follow the estimator protocol (:mod:`deepmat.train.estimator`):
``fit(microstructures, targets, val=(x, y), workdir=None)``, ``predict(microstructures)``,
``evaluate(microstructures, targets)`` (MAE, RMSE, R², n and MAPE in percent), ``save``.
None gives standard deviations. Microstructures are (n, n1, n2, n3) arrays of phase
indices 0/1 with phase 1 the stiff phase; targets are one float per microstructure.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from sklearn.compose import TransformedTargetRegressor
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from deepmat.errors import ConfigError, DataError, ModelFormatError
from deepmat.models.cnn3d import (
    HOMOGENIZATION_PAPER,
    HOMOGENIZATION_SMALL,
    CNN3DSpec,
    HomogenizationCNN,
)
from deepmat.physics.elasticity import IsotropicPhase, reuss_stiffness, voigt_stiffness
from deepmat.represent.phase_maps import check_phase_maps, check_targets, volume_fractions
from deepmat.represent.two_point import two_point_statistics
from deepmat.train.config import TrainConfig
from deepmat.train.estimator import Estimator
from deepmat.train.metrics import mean_absolute_percentage_error, regression_metrics
from deepmat.train.trainer import inputs_only
from deepmat.train.voxel_network import VoxelNetwork
from deepmat.train.weights import require_file, restore_network

Validation = tuple[np.ndarray, np.ndarray] | None
PREDICT_BATCH = 64
RULES = ("voigt", "reuss")


def microstructure_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R², n and the mean absolute percentage error ``mape`` (%)."""
    return regression_metrics(y_true, y_pred) | {
        "mape": mean_absolute_percentage_error(y_true, y_pred)
    }


def fingerprint(microstructures: np.ndarray, targets: np.ndarray) -> str:
    """SHA-256 of the voxels (with their shape) and targets: identifies the training data."""
    digest = hashlib.sha256(repr(microstructures.shape).encode())
    digest.update(np.ascontiguousarray(microstructures, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(targets, dtype=np.float64).tobytes())
    return digest.hexdigest()


def microstructure_card(model, target: dict, **extra: object) -> dict:
    """The card of a model on voxel microstructures: family, name, grid, phases, target,
    training record and metrics (``extra`` entries go after the input)."""
    return {
        "family": model.family,
        "model": model.name,
        "input": "microstructure",
        **extra,
        "grid": list(model.grid) if model.grid else None,
        "phases": [asdict(p) for p in model.phases],
        "target": target,
        "training": model.training,
        "metrics": model.metrics,
    }


def training_record(
    x: np.ndarray, y: np.ndarray, val: Validation, seconds: float, extra: dict
) -> dict:
    """The ``training`` entry of a microstructure model's card: what it learned from."""
    phi = volume_fractions(x)
    return {
        "data": {
            "fingerprint": fingerprint(x, y),
            "n_train": len(x),
            "n_val": len(val[0]) if val is not None else 0,
            "grid": [int(n) for n in x.shape[1:]],
            "volume_fraction": {"min": float(phi.min()), "max": float(phi.max())},
        },
        "seconds": round(seconds, 2),
    } | extra


class MicrostructureRegressor(Estimator):
    """Shared behaviour: input checks, evaluation, training record and the card."""

    input_kind: ClassVar[str] = "microstructure"

    def __init__(
        self,
        name: str,
        phases: Sequence[IsotropicPhase] = (),
        target: str = "C11",
        unit: str = "",
    ):
        self.name, self.target, self.unit = name, target, unit
        self.phases = tuple(phases)
        if not all(isinstance(p, IsotropicPhase) for p in self.phases):
            raise ConfigError("phases must be IsotropicPhase objects (phase 0, then phase 1)")
        self.grid: tuple[int, ...] | None = None
        self.training: dict = {}
        self.metrics: dict = {}

    def predict(self, X: np.ndarray, return_std: bool = False) -> np.ndarray:
        """Predicted targets, float64 of shape (n,), for (n, n1, n2, n3) microstructures."""
        if return_std:
            raise self.no_uncertainty(
                "it is deterministic; train an ensemble of 3-D CNNs (--model cnn3d --ensemble 5)"
            )
        return self._predict(check_phase_maps(X))

    def _predict(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def evaluate(self, X: np.ndarray, y: np.ndarray | None = None) -> dict[str, float]:
        """MAE, RMSE, R², n and MAPE (%) of the predictions for microstructures ``X``."""
        x, y = self._check(X, y)
        return self.score(y, self._predict(x))

    def score(self, truth: np.ndarray, prediction: np.ndarray) -> dict:
        """MAE, RMSE, R², n and MAPE (%)."""
        return microstructure_metrics(truth, prediction)

    @staticmethod
    def _check(
        microstructures: np.ndarray, targets: np.ndarray, prefix: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        x = check_phase_maps(microstructures, f"{prefix}microstructures")
        return x, check_targets(targets, len(x), f"{prefix}targets")

    def _check_val(self, val: Validation) -> Validation:
        if val is None:
            return None
        if len(val) != 2:
            raise DataError("val must be a pair (microstructures, targets)")
        return self._check(*val, prefix="val ")

    def _record_training(
        self, x: np.ndarray, y: np.ndarray, val: Validation, seconds: float, extra: dict
    ) -> None:
        self.grid = tuple(int(n) for n in x.shape[1:])
        self.training = training_record(x, y, val, seconds, extra)
        if val is not None:
            self.metrics["val"] = self.evaluate(*val)

    def card(self) -> dict:
        return microstructure_card(self, {"name": self.target, "unit": self.unit})

    @staticmethod
    def card_arguments(card: dict) -> dict:
        """Constructor arguments every family of this module stores alike."""
        return {"phases": [IsotropicPhase(**p) for p in card.get("phases", [])]} | (
            MicrostructureRegressor.saved_names(card)
        )

    def restore_record(self, card: dict) -> None:
        super().restore_record(card)
        self.grid = tuple(card["grid"]) if card.get("grid") else None


def c11_symmetries(x: torch.Tensor) -> torch.Tensor:
    """Each sample of a (b, 1, n1, n2, n3) batch under a random symmetry that keeps C11.

    A periodic translation (any shift), a reflection of each axis with probability 1/2
    and, on grids with n2 = n3, a swap of axes 2 and 3 with probability 1/2: the 16
    symmetries of the cube that map axis 1 to ±axis 1, times all translations. C11 = C1111
    picks up the factor Q11⁴ = 1 under each of them; the other 32 cube symmetries send
    axis 1 to axis 2 or 3 and would turn C11 into C22 or C33.
    """
    grid = x.shape[-3:]
    axes = (-3, -2, -1)
    out = torch.empty_like(x)
    for i, sample in enumerate(x):
        shifts = [int(s) for s in (torch.rand(3) * torch.tensor(grid)).long()]
        sample = torch.roll(sample, shifts, dims=axes)
        flips = [a for a, flip in zip(axes, torch.rand(3) < 0.5, strict=True) if flip]
        if flips:
            sample = sample.flip(flips)
        if grid[1] == grid[2] and torch.rand(()) < 0.5:
            sample = sample.transpose(-2, -1)
        out[i] = sample
    return out


class VoxelCNNRegressor(VoxelNetwork, MicrostructureRegressor):
    """A 3-D CNN on the voxels, trained on standardised targets with early stopping.

    Without ``val`` in :meth:`fit`, a random ``val_fraction`` of the training data is held
    out for early stopping. With ``augment`` every training batch passes through
    :func:`c11_symmetries` (periodic translations, reflections, the 2↔3 swap), which
    leaves C11 unchanged; switch it off for targets that are not invariant under them.
    With ``log_target`` the network learns ln C11 (see :class:`TargetScaler`), so the loss
    weighs relative errors, as the MAPE does, across a stiffness range of 1 : 50.
    """

    family = "voxel-network"
    presets: ClassVar[dict] = {
        "default": {
            "spec": HOMOGENIZATION_SMALL,
            "config": {"epochs": 100, "batch_size": 32, "lr": 1e-3, "patience": 20},
        },
        "paper": {
            "spec": HOMOGENIZATION_PAPER,
            "config": {"epochs": 100, "batch_size": 32, "lr": 1e-3, "patience": 20},
        },
        "benchmark": {
            "spec": HOMOGENIZATION_PAPER,
            "log_target": True,
            "config": {
                "epochs": 40,
                "batch_size": 16,
                "lr": 2e-3,
                "schedule": "onecycle",
                "patience": 40,
                "precision": "bf16-mixed",
            },
        },
    }

    def __init__(
        self,
        spec: CNN3DSpec = HOMOGENIZATION_SMALL,
        config: TrainConfig | None = None,
        augment: bool = True,
        log_target: bool = False,
        val_fraction: float = 0.15,
        phases: Sequence[IsotropicPhase] = (),
        name: str = "homogenization-cnn",
        target: str = "C11",
        unit: str = "",
    ):
        super().__init__(name, phases, target, unit)
        config = config or TrainConfig(**self.presets["default"]["config"])
        torch.manual_seed(config.seed)
        self.spec, self.log_target = spec, log_target
        self._set_network(HomogenizationCNN(spec), config, augment, val_fraction)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray | None = None,
        *,
        val: Validation = None,
        workdir: str | Path | None = None,
        resume: bool = True,
    ) -> VoxelCNNRegressor:
        """Train; checkpoints go to ``workdir`` (a temporary directory when None)."""
        from deepmat.train.trainer import fit_network

        start = time.perf_counter()
        x, y = self._check(X, y)
        val = self._check_val(val)
        if val is None:
            x, y, val = self._hold_out(x, y)
        self.scaler = self.starting_scaler(y, log=self.log_target)
        with self._training_dir(workdir) as where:
            self.fit_result = fit_network(
                self.net,
                x[:, None],
                y,
                val[0][:, None],
                val[1],
                self.config,
                where,
                self.scaler,
                resume,
                augment=inputs_only(c11_symmetries) if self.augment else None,
                val_batch_size=PREDICT_BATCH,
            )
        self._record_training(
            x,
            y,
            val,
            time.perf_counter() - start,
            self.fit_result.record(self.config) | {"augment": self.augment},
        )
        return self

    @torch.inference_mode()
    def _predict(self, x: np.ndarray) -> np.ndarray:
        self.net.eval()
        z = [
            self.net(torch.from_numpy(x[i : i + PREDICT_BATCH, None]).float())
            for i in range(0, len(x), PREDICT_BATCH)
        ]
        return self.scaler.inverse(torch.cat(z).squeeze(-1).numpy().astype(np.float64))

    def card(self) -> dict:
        return self._network_card(super().card() | {"representation": {"name": "voxels"}})

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> VoxelCNNRegressor:
        model = cls(
            CNN3DSpec.from_dict(card["architecture"]),
            cls.saved_config(card),
            augment=card.get("augment", True),
            log_target=card["target"].get("log", False),
            **cls.card_arguments(card),
        )
        restore_network(model, path, card)
        return model


class TwoPointPCARegressor(MicrostructureRegressor):
    """2-point statistics → PCA → polynomial ridge regression.

    The statistics are cropped to |r_i| ≤ ``r_max`` (along each axis reduced to what the
    training grid allows: none along x3 for 2-D structures extruded as (n1, n2, 1)),
    standardised PCA scores of ``n_components`` are expanded into all monomials up to
    ``degree`` and fitted by ridge regression with penalty ``alpha``; with ``log_target``
    the regression is fitted to ln C11 and its predictions exponentiated.
    """

    family = "two-point-pca"
    presets: ClassVar[dict] = {
        "default": {},
        "paper": {"n_components": 5, "degree": 2},
        "benchmark": {"log_target": True},
    }

    def __init__(
        self,
        n_components: int = 10,
        degree: int = 2,
        r_max: int = 8,
        alpha: float = 1e-6,
        log_target: bool = False,
        phases: Sequence[IsotropicPhase] = (),
        name: str = "two-point-pca",
        target: str = "C11",
        unit: str = "",
    ):
        super().__init__(name, phases, target, unit)
        if n_components < 1 or degree < 1 or r_max < 0 or alpha < 0:
            raise ConfigError(
                "n_components and degree must be at least 1, r_max and alpha non-negative; "
                f"got {n_components}, {degree}, {r_max}, {alpha}"
            )
        self.hyperparameters = {
            "n_components": n_components,
            "degree": degree,
            "r_max": r_max,
            "alpha": alpha,
            "log_target": log_target,
        }
        self.window: int | tuple[int, ...] = r_max
        self.pipeline: Pipeline | TransformedTargetRegressor | None = None

    def statistics_grid(self, grid: tuple[int, ...]) -> tuple[int, ...]:
        """The grid the 2-point statistics of microstructures on ``grid`` are taken on."""
        return grid

    def features(self, x: np.ndarray) -> np.ndarray:
        """Cropped 2-point statistics, one flattened row per microstructure."""
        return two_point_statistics(x, self.window).reshape(len(x), -1)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray | None = None,
        *,
        val: Validation = None,
        workdir: str | Path | None = None,
    ) -> TwoPointPCARegressor:
        """Fit PCA and the polynomial regression (``workdir`` unused: no checkpoints)."""
        start = time.perf_counter()
        x, y = self._check(X, y)
        val = self._check_val(val)
        grid = self.statistics_grid(x.shape[1:])
        radii = tuple(min(self.hyperparameters["r_max"], (n - 1) // 2) for n in grid)
        self.window = radii[0] if len(set(radii)) == 1 else radii
        components = self._fit_pipeline(x, y)
        extra = {"hyperparameters": self.hyperparameters, "n_components_used": components}
        self._record_training(x, y, val, time.perf_counter() - start, extra)
        return self

    def _fit_pipeline(self, x: np.ndarray, y: np.ndarray) -> int:
        """Fit :attr:`pipeline` on checked data; returns the PCA components used."""
        h = self.hyperparameters
        features = self.features(x)
        components = min(h["n_components"], *features.shape)
        self.pipeline = make_pipeline(
            PCA(components, random_state=0),
            StandardScaler(),
            PolynomialFeatures(h["degree"], include_bias=False),
            Ridge(alpha=h["alpha"]),
        )
        if h["log_target"]:
            if np.any(y <= 0):
                raise DataError("log_target needs positive targets")
            self.pipeline = TransformedTargetRegressor(
                self.pipeline, func=np.log, inverse_func=np.exp, check_inverse=False
            )
        self.pipeline.fit(features, y)
        return components

    def _predict(self, x: np.ndarray) -> np.ndarray:
        if self.pipeline is None:
            raise ConfigError(f"{self.name} is not fitted: call fit first")
        return self.pipeline.predict(self.features(x)).astype(np.float64)

    def embed(self, X: np.ndarray) -> np.ndarray:
        """The standardised PCA scores of the microstructures' 2-point statistics: the
        latent space the regression reads."""
        if self.pipeline is None:
            raise ConfigError(f"{self.name} is not fitted: call fit first")
        pipeline = getattr(self.pipeline, "regressor_", self.pipeline)
        return pipeline[:2].transform(self.features(check_phase_maps(X)))

    def card(self) -> dict:
        card = super().card()
        card["representation"] = {"name": "two-point", "r_max": self.window}
        card["hyperparameters"] = self.hyperparameters
        return card

    def save_state(self, path: Path) -> None:
        import joblib

        if self.pipeline is None:
            raise ModelFormatError(f"cannot save {self.name}: it is not fitted")
        joblib.dump(self.pipeline, path / "pipeline.joblib", compress=3)

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> TwoPointPCARegressor:
        import joblib

        model = cls(**card["hyperparameters"], **cls.card_arguments(card))
        model.window = card["representation"]["r_max"]
        model.pipeline = joblib.load(require_file(path, "pipeline.joblib"))
        model.restore_record(card)
        return model


class RuleOfMixtures(MicrostructureRegressor):
    """C11 from the volume fraction alone: the Voigt or the Reuss estimate.

    ``rule="voigt"``: (Σ f_i C_i)[0, 0], the arithmetic mean of the phases' C11 (upper
    bound); ``rule="reuss"``: ((Σ f_i C_i⁻¹)⁻¹)[0, 0] (lower bound). Phase 1 is
    ``phases[1]``. :meth:`fit` learns nothing: it checks the data and records it.
    """

    family = "mixture-rule"
    presets: ClassVar[dict] = {"default": {}, "paper": {}, "benchmark": {}}

    def __init__(
        self,
        phases: Sequence[IsotropicPhase],
        rule: str = "voigt",
        name: str | None = None,
        target: str = "C11",
        unit: str = "",
    ):
        super().__init__(name or f"{rule}-mixture", phases, target, unit)
        if len(self.phases) != 2:
            raise ConfigError("a rule of mixtures needs two IsotropicPhase objects (0 and 1)")
        if rule not in RULES:
            raise ConfigError(f"rule {rule!r} is not one of {RULES}")
        self.rule = rule

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray | None = None,
        *,
        val: Validation = None,
        workdir: str | Path | None = None,
    ) -> RuleOfMixtures:
        """Check and record the data (nothing is learned; ``workdir`` unused)."""
        start = time.perf_counter()
        x, y = self._check(X, y)
        val = self._check_val(val)
        self._record_training(x, y, val, time.perf_counter() - start, {})
        self.metrics["train"] = self.evaluate(x, y)
        return self

    def _predict(self, x: np.ndarray) -> np.ndarray:
        phi = volume_fractions(x)
        fractions = np.stack([1 - phi, phi], axis=-1)
        bound = voigt_stiffness if self.rule == "voigt" else reuss_stiffness
        return bound(self.phases, fractions)[:, 0, 0]

    def card(self) -> dict:
        card = super().card()
        card["representation"] = {"name": "volume-fraction"}
        card["rule"] = self.rule
        return card

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> RuleOfMixtures:
        model = cls(rule=card["rule"], **cls.card_arguments(card))
        model.restore_record(card)
        return model
