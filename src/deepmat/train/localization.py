"""Localization estimators: two-phase voxel microstructure → local strain field ε11.

Under a macroscopic uniaxial strain ε̄11 every voxel of a linear-elastic composite takes a
local strain ε11(x); the three models compared here, as by Yang et al. (2019), learn that
map from solved examples:

* :class:`MKSRegressor`: the first-order materials knowledge systems (MKS) localization,
  a linear convolution of the phase indicators with influence coefficients calibrated
  independently at each spatial frequency; no network.
* :class:`SliceCNNRegressor`: a :class:`~deepmat.models.localization.SliceCNN` on the 11³
  periodic neighbourhood of each voxel, trained on a random subset of voxels per volume
  element and applied to every voxel to predict a field.
* :class:`FCN3DRegressor`: a :class:`~deepmat.models.localization.StrainFCN`, a periodic
  fully convolutional 3-D network that predicts whole fields, trained on whole fields; by
  default (:data:`~deepmat.models.localization.STRAIN_FNO`) each of its blocks adds a
  global spectral convolution to the local one, so every voxel sees the whole cell.

They follow the estimator protocol (:mod:`deepmat.train.estimator`):
``fit(microstructures, strain, val=(x, e), macro_strain=None)``, ``predict(microstructures)``
→ (n, n1, n2, n3) fields of ε11, ``evaluate(microstructures, strain)`` → MASE (%), MAE, RMSE,
n and n_voxels, and ``save``; none gives standard deviations. Microstructures are
(n, n1, n2, n3) arrays of phase indices 0/1; strain is the ε11 fields, (n, n1, n2, n3), or
the stored Mandel fields (n, 6, n1, n2, n3) of which component 0 is taken. Models learn
ε11 / ε̄11 (the problem is linear, so the field scales with the load): ``macro_strain`` is
ε̄11, by default the mean of the training fields, which for periodic fields is exactly the
imposed macroscopic strain; ``predict`` scales back by it or by the value it is given.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from deepmat.errors import ConfigError, DataError, ModelFormatError
from deepmat.models.localization import (
    SLICE_CNN_PAPER,
    SLICE_CNN_SMALL,
    STRAIN_FNO,
    SliceCNN,
    SliceCNNSpec,
    StrainFCN,
    StrainFCNSpec,
)
from deepmat.physics.elasticity import IsotropicPhase
from deepmat.represent.neighbourhoods import neighbourhoods, sample_voxels
from deepmat.represent.phase_maps import check_fields, check_phase_maps, volume_fractions
from deepmat.represent.physics_inputs import strain_estimates
from deepmat.train.config import FitResult, TrainConfig
from deepmat.train.estimator import Estimator
from deepmat.train.metrics import mean_absolute_strain_error
from deepmat.train.microstructure import (
    MicrostructureRegressor,
    c11_symmetries,
    microstructure_card,
    training_record,
)
from deepmat.train.trainer import inputs_only
from deepmat.train.voxel_network import VoxelNetwork
from deepmat.train.weights import require_file, restore_network

Validation = tuple[np.ndarray, np.ndarray] | None
TARGET = "e11"
PREDICT_VOXELS = 8192
FIELD_BATCH = 16
MKS_CHUNK = 256
MKS_FILE = "mks.npz"


def _card_arguments(card: dict) -> dict:
    """Constructor arguments every localization family stores alike."""
    arguments = MicrostructureRegressor.card_arguments(card)
    return {"phases": arguments["phases"], "name": arguments["name"]}


def strain_component(strain: np.ndarray) -> np.ndarray:
    """ε11 fields: component 0 of (n, 6, n1, n2, n3) Mandel fields, or ``strain`` as given."""
    array = np.asarray(strain)
    if array.ndim == 5 and array.shape[1] == 6:
        return array[:, 0]
    return array


def localization_metrics(
    truth: np.ndarray, prediction: np.ndarray, macro_strain: float
) -> dict[str, float]:
    """MASE (%), MAE and RMSE of the strain over all voxels, the fields n and voxels n_voxels."""
    error = np.asarray(prediction, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return {
        "mase": mean_absolute_strain_error(truth, prediction, macro_strain),
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "n": len(error),
        "n_voxels": int(error.size),
    }


def neighbourhood_symmetries(x: torch.Tensor) -> torch.Tensor:
    """Each (s, s, s) neighbourhood of a batch reflected along each axis with probability
    1/2 and its axes 2 and 3 swapped with probability 1/2.

    These map the loading axis 1 to ±itself and keep the centre voxel, so under uniaxial
    ε̄11 they leave the centre's ε11 unchanged (ε'11 = Q11² ε11 = ε11).
    """
    b = len(x)
    for axis in (1, 2, 3):
        flip = torch.rand(b, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(axis), x)
    swap = torch.rand(b, device=x.device) < 0.5
    return torch.where(swap[:, None, None, None], x.transpose(2, 3), x)


def strain_symmetries(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random symmetry of :func:`~deepmat.train.microstructure.c11_symmetries` (a
    periodic translation, reflections, the 2↔3 swap) applied to each phase map and its field.

    The solution of the transformed structure is the transformed field: these symmetries
    keep the uniaxial load ε̄11 and the component ε11, so (x, y) ↦ (g x, g y) is exact.
    """
    both = c11_symmetries(torch.cat([x.float(), y], dim=1))
    return both[:, : x.shape[1]], both[:, x.shape[1] :]


class LocalizationRegressor(Estimator):
    """Shared behaviour: input checks, normalisation by ε̄11, evaluation and the card."""

    input_kind: ClassVar[str] = "microstructure"
    output_kind: ClassVar[str] = "field"
    target = TARGET

    def __init__(self, name: str, phases: Sequence[IsotropicPhase] = ()):
        self.name = name
        self.phases = tuple(phases)
        if not all(isinstance(p, IsotropicPhase) for p in self.phases):
            raise ConfigError("phases must be IsotropicPhase objects (phase 0, then phase 1)")
        self.grid: tuple[int, ...] | None = None
        self.macro_strain: float | None = None
        self.training: dict = {}
        self.metrics: dict = {}

    def predict(
        self, X: np.ndarray, return_std: bool = False, *, macro_strain: float | None = None
    ) -> np.ndarray:
        """Predicted ε11 fields, float64 (n, n1, n2, n3), under ε̄11 = ``macro_strain``
        (the training value when None)."""
        if return_std:
            raise self.no_uncertainty(
                "it is deterministic; train an ensemble of networks (--model fcn3d --ensemble 5)"
            )
        scale = self._scale(macro_strain)
        return scale * self._predict_normalised(check_phase_maps(X))

    def evaluate(
        self, X: np.ndarray, y: np.ndarray | None = None, *, macro_strain: float | None = None
    ) -> dict[str, float]:
        """MASE (%), MAE, RMSE, n and n_voxels of the predicted ε11 fields of ``X`` against
        the strain fields ``y``."""
        x, e = self._check(X, y)
        prediction = self._scale(macro_strain) * self._predict_normalised(x)
        return self.score(e, prediction, macro_strain=macro_strain)

    def score(
        self, truth: np.ndarray, prediction: np.ndarray, *, macro_strain: float | None = None
    ) -> dict:
        """MASE (%), MAE, RMSE, n and n_voxels of ε11 fields under ε̄11 = ``macro_strain``."""
        return localization_metrics(truth, prediction, self._scale(macro_strain))

    def targets_of(self, X, y=None) -> np.ndarray:
        """The ε11 fields of the strain fields ``y`` (Mandel component 0 of six)."""
        if y is None:
            raise DataError(f"{self.name} needs the strain fields y of its microstructures X")
        return self._check(X, y)[1]

    def _predict_normalised(self, x: np.ndarray) -> np.ndarray:
        """ε11 / ε̄11 fields for checked microstructures."""
        raise NotImplementedError

    def _scale(self, macro_strain: float | None) -> float:
        value = self.macro_strain if macro_strain is None else float(macro_strain)
        if value is None:
            raise ConfigError(f"{self.name} is not fitted: call fit first")
        if value == 0 or not np.isfinite(value):
            raise DataError(f"macro_strain must be finite and non-zero, got {value}")
        return value

    @staticmethod
    def _check(
        microstructures: np.ndarray, strain: np.ndarray, prefix: str = ""
    ) -> tuple[np.ndarray, np.ndarray]:
        x = check_phase_maps(microstructures, f"{prefix}microstructures")
        return x, check_fields(strain_component(strain), x.shape, f"{prefix}strain")

    def _check_val(self, val: Validation) -> Validation:
        if val is None:
            return None
        if len(val) != 2:
            raise DataError("val must be a pair (microstructures, strain)")
        return self._check(*val, prefix="val ")

    def _prepare(
        self,
        microstructures: np.ndarray,
        strain: np.ndarray,
        val: Validation,
        macro_strain: float | None,
    ) -> tuple[np.ndarray, np.ndarray, Validation]:
        """Checked training data and validation pair; sets the grid and ε̄11."""
        x, e = self._check(microstructures, strain)
        val = self._check_val(val)
        if val is not None and val[0].shape[1:] != x.shape[1:]:
            raise DataError(
                f"val microstructures have grid {val[0].shape[1:]}, training {x.shape[1:]}"
            )
        self.macro_strain = self._scale(float(e.mean()) if macro_strain is None else macro_strain)
        self.grid = tuple(int(n) for n in x.shape[1:])
        return x, e, val

    def _record_training(
        self, x: np.ndarray, e: np.ndarray, val: Validation, seconds: float, extra: dict
    ) -> None:
        self.training = training_record(x, e, val, seconds, extra)
        if val is not None:
            self.metrics["val"] = self.evaluate(*val)

    def card(self) -> dict:
        target = {
            "name": TARGET,
            "component": "Mandel 0 of the local strain",
            "macro_strain": self.macro_strain,
            "unit": "",
        }
        return microstructure_card(self, target, output="strain field")

    def restore_record(self, card: dict) -> None:
        super().restore_record(card)
        self.grid = tuple(card["grid"]) if card.get("grid") else None
        self.macro_strain = card["target"].get("macro_strain")


class MKSRegressor(LocalizationRegressor):
    """First-order MKS localization: ε = Σ_h α_h ⊛ m_h, calibrated frequency by frequency.

    With the indicators m_0 = 1 − m, m_1 = m of the two phases and a periodic convolution
    ⊛, the prediction in Fourier space is, at each frequency k,

    .. math::

        \\hat\\varepsilon(k) = \\hat\\alpha_0(k)\\,\\hat m_0(k) + \\hat\\alpha_1(k)\\,\\hat m_1(k).

    The indicators are redundant: m_0 + m_1 = 1, so :math:`\\hat m_0(k) = -\\hat m_1(k)` at
    every k ≠ 0 and only β = α_1 − α_0 is identifiable there. It is calibrated over the
    training fields j by a 1×1 ridge solve per frequency,

    .. math::

        \\hat\\beta(k) = \\frac{\\sum_j \\overline{\\hat m_{1j}(k)}\\,\\hat\\varepsilon_j(k)}
        {\\sum_j |\\hat m_{1j}(k)|^2 + \\lambda \\langle \\sum_j |\\hat m_{1j}|^2 \\rangle_k},

    (λ = ``ridge`` relative to the mean power, which only matters at frequencies the
    training structures hardly excite); at k = 0 the mean strains ε̄_j are fitted as
    c + β̂(0) φ_j by least squares over the volume fractions φ_j. The coefficients stored
    are α̂_0(k) = c and α̂_1(k) = c + β̂(k), i.e. in real space α_0(r) = c δ(r): an exact
    rewriting of ε = c + β ⊛ m_1 in the two local states. Fields learned are ε11 / ε̄11;
    structures to predict must have the training grid.
    """

    family = "mks"
    presets: ClassVar[dict] = {"default": {}, "paper": {}, "benchmark": {}}

    def __init__(
        self, ridge: float = 1e-10, phases: Sequence[IsotropicPhase] = (), name: str = "mks"
    ):
        super().__init__(name, phases)
        if not ridge >= 0:
            raise ConfigError(f"ridge must be non-negative, got {ridge}")
        self.ridge = float(ridge)
        self.influence: np.ndarray | None = None

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray | None = None,
        *,
        val: Validation = None,
        workdir: str | Path | None = None,
        macro_strain: float | None = None,
    ) -> MKSRegressor:
        """Calibrate the influence coefficients (``workdir`` unused: one linear solve)."""
        start = time.perf_counter()
        x, e, val = self._prepare(X, y, val, macro_strain)
        axes = (1, 2, 3)
        numerator, power = 0.0, 0.0
        for i in range(0, len(x), MKS_CHUNK):
            m_hat = np.fft.rfftn(x[i : i + MKS_CHUNK], axes=axes)
            e_hat = np.fft.rfftn(e[i : i + MKS_CHUNK] / self.macro_strain, axes=axes)
            numerator = numerator + np.sum(np.conj(m_hat) * e_hat, axis=0)
            power = power + np.sum(np.abs(m_hat) ** 2, axis=0)
        scale = float(power.mean()) or 1.0
        beta = numerator / (power + self.ridge * scale)
        design = np.column_stack([np.ones(len(x)), volume_fractions(x)])
        means = e.reshape(len(e), -1).mean(axis=1) / self.macro_strain
        (constant, slope), *_ = np.linalg.lstsq(design, means, rcond=None)
        beta[0, 0, 0] = slope
        spectra = np.stack([np.full_like(beta, constant), constant + beta])
        self.influence = np.fft.irfftn(spectra, s=self.grid, axes=axes)
        self._record_training(
            x, e, val, time.perf_counter() - start, {"hyperparameters": {"ridge": self.ridge}}
        )
        return self

    def _predict_normalised(self, x: np.ndarray) -> np.ndarray:
        if self.influence is None:
            raise ConfigError(f"{self.name} is not fitted: call fit first")
        if x.shape[1:] != self.grid:
            raise DataError(
                f"{self.name} was calibrated on the grid {self.grid}; got microstructures of "
                f"grid {x.shape[1:]} (MKS coefficients are defined on one grid)"
            )
        axes = (1, 2, 3)
        alpha = np.fft.rfftn(self.influence, axes=axes)
        out = np.empty(x.shape, dtype=np.float64)
        for i in range(0, len(x), MKS_CHUNK):
            m1 = x[i : i + MKS_CHUNK].astype(np.float64)
            m_hat = np.fft.rfftn(np.stack([1 - m1, m1], axis=1), axes=(2, 3, 4))
            field = np.sum(alpha * m_hat, axis=1)
            out[i : i + MKS_CHUNK] = np.fft.irfftn(field, s=self.grid, axes=axes)
        return out

    def card(self) -> dict:
        card = super().card()
        card["representation"] = {"name": "local-state indicators", "states": 2}
        card["hyperparameters"] = {"ridge": self.ridge}
        return card

    def save_state(self, path: Path) -> None:
        if self.influence is None:
            raise ModelFormatError(f"cannot save {self.name}: it is not fitted")
        np.savez(path / MKS_FILE, influence=self.influence)

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> MKSRegressor:
        model = cls(**card["hyperparameters"], **_card_arguments(card))
        with np.load(require_file(path, MKS_FILE), allow_pickle=False) as stored:
            model.influence = stored["influence"]
        model.restore_record(card)
        return model


class NetworkLocalizationRegressor(VoxelNetwork, LocalizationRegressor):
    """A network trained by :func:`fit_network` on ε11 / ε̄11, standardised, with early
    stopping on validation volume elements (a random ``val_fraction`` of the training ones
    when ``val`` is not given).

    With ``mean_correction`` each predicted field is shifted by a constant so that its mean
    is exactly ε̄11, which the strain of a periodic volume element always satisfies.
    """

    family = "localization-network"
    spec: SliceCNNSpec | StrainFCNSpec

    def __init__(
        self,
        net: torch.nn.Module,
        config: TrainConfig,
        augment: bool,
        mean_correction: bool,
        val_fraction: float,
        phases: Sequence[IsotropicPhase],
        name: str,
    ):
        super().__init__(name, phases)
        self._set_network(net, config, augment, val_fraction)
        self.mean_correction = mean_correction

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray | None = None,
        *,
        val: Validation = None,
        workdir: str | Path | None = None,
        resume: bool = True,
        macro_strain: float | None = None,
    ) -> NetworkLocalizationRegressor:
        """Train; checkpoints go to ``workdir`` (a temporary directory when None)."""
        start = time.perf_counter()
        x, e, val = self._prepare(X, y, val, macro_strain)
        if val is None:
            x, e, val = self._hold_out(x, e)
        y, y_val = e / self.macro_strain, val[1] / self.macro_strain
        self.scaler = self.starting_scaler(y)
        with self._training_dir(workdir) as where:
            self.fit_result = self._train(x, y, val[0], y_val, where, resume)
        self._record_training(
            x,
            e,
            val,
            time.perf_counter() - start,
            self.fit_result.record(self.config) | {"augment": self.augment},
        )
        return self

    def _train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_val: np.ndarray,
        y_val: np.ndarray,
        workdir: Path,
        resume: bool,
    ) -> FitResult:
        raise NotImplementedError

    def _finish(self, z: np.ndarray, base: np.ndarray | float = 0.0) -> np.ndarray:
        """Standardised network output (plus ``base``) → ε11 / ε̄11 fields (mean-corrected
        if asked)."""
        fields = self.scaler.inverse(z.astype(np.float64)) + base
        if self.mean_correction:
            fields += 1 - fields.mean(axis=(1, 2, 3), keepdims=True)
        return fields

    def card(self) -> dict:
        return self._network_card(super().card()) | {"mean_correction": self.mean_correction}

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> NetworkLocalizationRegressor:
        """The subclass named by ``architecture.kind`` (one family, two architectures)."""
        kind = card["architecture"].get("kind")
        if kind not in NETWORK_KINDS:
            raise ModelFormatError(f"{path}: unknown localization architecture {kind!r}")
        network = NETWORK_KINDS[kind]
        model = network(
            network.spec_type.from_dict(card["architecture"]),
            cls.saved_config(card),
            augment=card.get("augment", True),
            mean_correction=card["mean_correction"],
            **_card_arguments(card),
            **network.card_options(card),
        )
        restore_network(model, path, card)
        return model

    @staticmethod
    def card_options(card: dict) -> dict:
        """Constructor arguments only this architecture stores in its card."""
        return {}


class SliceCNNRegressor(NetworkLocalizationRegressor):
    """The slice CNN of Yang et al. (2019) on periodic neighbourhoods of single voxels.

    Training samples are ``voxels_per_sample`` random voxels of each training volume element
    (their neighbourhoods extracted once, uint8, ``spec.size``³ bytes each); validation
    samples are drawn likewise from the validation elements. With ``augment`` each training
    batch is passed through :func:`neighbourhood_symmetries`. Prediction runs every voxel of
    a few volume elements at a time.

    Presets: ``default`` the small network, 30 epochs; ``paper`` Yang et al.'s network size;
    ``benchmark`` the small network with one-cycle 2e-3 for 20 epochs (the committed run).
    """

    spec_type = SliceCNNSpec
    presets: ClassVar[dict] = {
        "default": {
            "spec": SLICE_CNN_SMALL,
            "config": {"epochs": 30, "batch_size": 1024, "lr": 2e-3, "patience": 10},
        },
        "paper": {
            "spec": SLICE_CNN_PAPER,
            "config": {"epochs": 30, "batch_size": 1024, "lr": 2e-3, "patience": 10},
        },
        "benchmark": {
            "spec": SLICE_CNN_SMALL,
            "config": {
                "epochs": 20,
                "batch_size": 1024,
                "lr": 2e-3,
                "schedule": "onecycle",
                "patience": 20,
            },
        },
    }

    def __init__(
        self,
        spec: SliceCNNSpec = SLICE_CNN_SMALL,
        config: TrainConfig | None = None,
        voxels_per_sample: int = 500,
        augment: bool = True,
        mean_correction: bool = True,
        val_fraction: float = 0.15,
        phases: Sequence[IsotropicPhase] = (),
        name: str = "cnn-slices",
    ):
        if voxels_per_sample < 1:
            raise ConfigError(f"voxels_per_sample must be at least 1, got {voxels_per_sample}")
        config = config or TrainConfig(**self.presets["default"]["config"])
        torch.manual_seed(config.seed)
        super().__init__(
            SliceCNN(spec), config, augment, mean_correction, val_fraction, phases, name
        )
        self.spec, self.voxels_per_sample = spec, voxels_per_sample

    def samples(self, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Neighbourhoods of ``voxels_per_sample`` random voxels per element, and their y."""
        voxels = sample_voxels(len(x), x.shape[1:], self.voxels_per_sample, seed)
        return neighbourhoods(x, self.spec.size, voxels), y[tuple(voxels.T)]

    def _train(self, x, y, x_val, y_val, workdir, resume) -> FitResult:
        from deepmat.train.trainer import fit_network

        inputs, targets = self.samples(x, y, self.config.seed)
        val_inputs, val_targets = self.samples(x_val, y_val, self.config.seed + 1)
        return fit_network(
            self.net,
            inputs,
            targets,
            val_inputs,
            val_targets,
            self.config,
            workdir,
            self.scaler,
            resume,
            augment=inputs_only(neighbourhood_symmetries) if self.augment else None,
        )

    @torch.inference_mode()
    def _predict_normalised(self, x: np.ndarray) -> np.ndarray:
        self.net.eval()
        per_element = int(np.prod(x.shape[1:]))
        step = max(1, PREDICT_VOXELS // per_element)
        out = []
        for i in range(0, len(x), step):
            blocks = torch.from_numpy(neighbourhoods(x[i : i + step], self.spec.size))
            z = torch.cat(
                [
                    self.net(blocks[j : j + PREDICT_VOXELS])
                    for j in range(0, len(blocks), PREDICT_VOXELS)
                ]
            )
            out.append(z.reshape(-1, *x.shape[1:]).numpy())
        return self._finish(np.concatenate(out))

    def card(self) -> dict:
        card = super().card()
        card["representation"] = {"name": "neighbourhoods", "size": self.spec.size}
        card["voxels_per_sample"] = self.voxels_per_sample
        return card

    @staticmethod
    def card_options(card: dict) -> dict:
        return {"voxels_per_sample": card["voxels_per_sample"]}


class FCN3DRegressor(NetworkLocalizationRegressor):
    """A periodic fully convolutional 3-D network trained on whole fields.

    With ``augment`` each training batch of (phase map, field) pairs passes through
    :func:`strain_symmetries`: the same random translation, reflections and axis swap for
    both, which maps a solved example to another solved example.

    Presets: ``default`` the spectral network, 100 epochs; ``paper`` (no published
    counterpart: the same); ``benchmark`` one-cycle 2e-3 for 40 epochs (the committed run).
    """

    spec_type = StrainFCNSpec
    presets: ClassVar[dict] = {
        "default": {"config": {"epochs": 100, "batch_size": 8, "lr": 2e-3, "patience": 20}},
        "paper": {"config": {"epochs": 100, "batch_size": 8, "lr": 2e-3, "patience": 20}},
        "benchmark": {
            "config": {
                "epochs": 40,
                "batch_size": 8,
                "lr": 2e-3,
                "schedule": "onecycle",
                "patience": 40,
            }
        },
    }

    def __init__(
        self,
        spec: StrainFCNSpec = STRAIN_FNO,
        config: TrainConfig | None = None,
        augment: bool = True,
        mean_correction: bool = True,
        val_fraction: float = 0.15,
        phases: Sequence[IsotropicPhase] = (),
        name: str = "fcn3d",
    ):
        config = config or TrainConfig(**self.presets["default"]["config"])
        torch.manual_seed(config.seed)
        super().__init__(
            StrainFCN(spec), config, augment, mean_correction, val_fraction, phases, name
        )
        self.spec = spec

    def field_inputs(
        self, x: np.ndarray, refuse_converged: bool = False
    ) -> tuple[np.ndarray, np.ndarray | float]:
        """The network's inputs for the phase maps ``x``, (n, channels, n1, n2, n3), and the
        field (ε11 / ε̄11) its output is added to: here the phase maps alone, and nothing.
        ``refuse_converged`` (the training inputs) matters only to a hybrid."""
        return x[:, None], 0.0

    def _train(self, x, y, x_val, y_val, workdir, resume) -> FitResult:
        from deepmat.train.trainer import fit_network

        inputs, base = self.field_inputs(x, refuse_converged=True)
        val_inputs, val_base = self.field_inputs(x_val)
        self.scaler = self.starting_scaler(y - base)
        return fit_network(
            self.net,
            inputs,
            (y - base)[:, None],
            val_inputs,
            (y_val - val_base)[:, None],
            self.config,
            workdir,
            self.scaler,
            resume,
            augment=strain_symmetries if self.augment else None,
            val_batch_size=FIELD_BATCH,
        )

    @torch.inference_mode()
    def _predict_normalised(self, x: np.ndarray) -> np.ndarray:
        self.net.eval()
        inputs, base = self.field_inputs(x)
        z = [
            self.net(torch.from_numpy(inputs[i : i + FIELD_BATCH]))[:, 0]
            for i in range(0, len(x), FIELD_BATCH)
        ]
        return self._finish(torch.cat(z).numpy(), base=base)

    def card(self) -> dict:
        card = super().card()
        card["representation"] = {"name": "voxels"}
        return card


class HybridFCNRegressor(FCN3DRegressor):
    """The FFT solver's strain after a few CG iterations, corrected by a periodic FCN.

    With ε^(k) the field after ``iterations`` conjugate-gradient iterations of
    :func:`~deepmat.physics.elasticity.partial_solve` (computed for every input, so the
    phases are required), the network reads the phase map and ε^(k)/ε̄11 − 1 as two channels
    and predicts the remaining correction,

    .. math::

        \\hat\\varepsilon / \\bar\\varepsilon_{11} = \\varepsilon^{(k)} / \\bar\\varepsilon_{11}
        + \\mathrm{FCN}(m, \\varepsilon^{(k)} / \\bar\\varepsilon_{11} - 1),

    which is smaller and more local than the field itself. Its cost is k solver iterations
    plus one network pass; the benchmark compares it with the solver stopped at equal time.

    Presets: as :class:`FCN3DRegressor`, with 4 iterations.
    """

    presets: ClassVar[dict] = {
        name: preset | {"iterations": 4} for name, preset in FCN3DRegressor.presets.items()
    }

    def __init__(
        self,
        spec: StrainFCNSpec = STRAIN_FNO,
        config: TrainConfig | None = None,
        augment: bool = True,
        mean_correction: bool = True,
        val_fraction: float = 0.15,
        phases: Sequence[IsotropicPhase] = (),
        name: str = "hybrid",
        iterations: int = 4,
    ):
        if len(phases) != 2:
            raise ConfigError(
                "the hybrid runs the solver on every input: give the two phases (phases=...)"
            )
        if not isinstance(iterations, int) or iterations < 1:
            raise ConfigError(f"iterations must be a positive integer, got {iterations!r}")
        spec = replace(spec, in_channels=2)
        super().__init__(spec, config, augment, mean_correction, val_fraction, phases, name)
        self.iterations = iterations
        # A zero read-out starts training from the solver's estimate itself.
        torch.nn.init.zeros_(self.net.readout.weight)
        torch.nn.init.zeros_(self.net.readout.bias)

    def field_inputs(
        self, x: np.ndarray, refuse_converged: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The phase maps and ε^(k)/ε̄11 − 1 as two channels, and the solver's ε^(k)/ε̄11;
        training refuses k when the solver converges on every input (``refuse_converged``)."""
        estimate = strain_estimates(x, self.phases, self.iterations, len(x) > 100, refuse_converged)
        stacked = np.stack([x.astype(np.float32), (estimate - 1).astype(np.float32)], axis=1)
        return stacked, estimate

    def card(self) -> dict:
        card = super().card()
        card["architecture"]["kind"] = "hybrid-fcn"
        card["representation"] = {"name": "voxels+strain-estimate", "iterations": self.iterations}
        return card

    @staticmethod
    def card_options(card: dict) -> dict:
        return {"iterations": card["representation"]["iterations"]}


NETWORK_KINDS = {
    "slice-cnn": SliceCNNRegressor,
    "strain-fcn": FCN3DRegressor,
    "hybrid-fcn": HybridFCNRegressor,
}
