"""What decides how a network is trained, how its targets are scaled and what training
produced: plain dataclasses, importable without Lightning (a saved model's card holds them).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from deepmat.errors import ConfigError, DataError

SCHEDULES = ("constant", "onecycle", "cosine", "plateau")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_notebook", "ddp_find_unused_parameters_true", "fsdp")


#: the losses of a heteroscedastic network: two outputs per record, the mean μ and ln σ,
#: trained on the negative log-likelihood of a Gaussian, or of a Laplace distribution of
#: standard deviation σ (Roost's robust L1 loss: as forgiving of outliers as the L1 loss);
#: their "beta" forms train the mean as the squared error and the L1 loss do, whatever σ
HETEROSCEDASTIC_LOSSES = ("gaussian-nll", "laplace-nll", "gaussian-beta-nll", "laplace-beta-nll")
LOSSES = ("l1", "mse", *HETEROSCEDASTIC_LOSSES)


def heteroscedastic_loss(given: str | None) -> str:
    """The loss of a heteroscedastic network: ``given`` where it is one of
    :data:`HETEROSCEDASTIC_LOSSES`, the Gaussian NLL where none is given."""
    if given is None:
        return "gaussian-nll"
    if given not in HETEROSCEDASTIC_LOSSES:
        raise ConfigError(
            f"a heteroscedastic network trains on one of {', '.join(HETEROSCEDASTIC_LOSSES)}, "
            f"not {given!r}"
        )
    return given


@dataclass
class TrainConfig:
    """Everything that decides how a network is trained (saved in the model card)."""

    epochs: int = 300
    batch_size: int = 256
    lr: float = 1e-4
    schedule: str = "constant"
    weight_decay: float = 0.0
    patience: int = 30
    loss: str = "l1"
    seed: int = 0
    accelerator: str = "auto"
    precision: str = "32-true"
    dropout_until: float = 1.0
    progress: bool = True
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    #: a saved or pretrained model whose weights (and target scaling) training starts from
    init: str | None = None
    #: how many of the network's leading layers keep the weights of ``init`` (not trained)
    freeze: int = 0

    def __post_init__(self) -> None:
        if not (_whole(self.freeze) and self.freeze >= 0):
            raise ConfigError(f"freeze {self.freeze!r} is not a whole number >= 0")
        if self.freeze and not self.init:
            raise ConfigError(
                f"freeze {self.freeze} keeps layers of a model training starts from: give init"
            )
        if self.devices != "auto" and not (_whole(self.devices) and self.devices >= 1):
            raise ConfigError(f"devices {self.devices!r} is not a whole number >= 1 or 'auto'")
        if not (_whole(self.num_nodes) and self.num_nodes >= 1):
            raise ConfigError(f"num_nodes {self.num_nodes!r} is not a whole number >= 1")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy {self.strategy!r} is not one of {STRATEGIES}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if not 0.0 <= self.dropout_until <= 1.0:
            raise ConfigError(f"dropout_until {self.dropout_until} is not between 0 and 1")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule {self.schedule!r} is not one of {SCHEDULES}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss {self.loss!r} is not one of {LOSSES}")

    @property
    def heteroscedastic(self) -> bool:
        """Whether the loss trains a network that predicts its own σ."""
        return self.loss in HETEROSCEDASTIC_LOSSES

    def check_outputs(self, name: str, out_features: int) -> None:
        """Refuse a network whose outputs do not fit the loss: a heteroscedastic network
        has 2 (μ and ln σ), any other 1."""
        if self.heteroscedastic != (out_features == 2):
            raise ConfigError(
                f"{name}: the loss {self.loss!r} with {out_features} outputs; a heteroscedastic "
                f"network (a loss among {', '.join(HETEROSCEDASTIC_LOSSES)}) has 2 outputs, μ and "
                "ln σ, and only it has"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def _whole(value) -> bool:
    """An int that is not a bool (True is an int to Python, not a device count)."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class TargetScaler:
    """Standardisation of targets: the network learns (y - mean) / std.

    With ``log`` the network learns (ln y - mean) / std instead, for positive targets
    spanning orders of magnitude (a stiffness at high phase contrast): an error in log
    space is a relative error, which is what a percentage metric scores.
    """

    mean: float = 0.0
    std: float = 1.0
    log: bool = False

    @classmethod
    def fit(cls, y: np.ndarray, log: bool = False) -> TargetScaler:
        if log and np.any(np.asarray(y) <= 0):
            raise DataError("a log target scaler needs positive targets")
        values = np.log(y) if log else y
        std = float(np.std(values))
        return cls(float(np.mean(values)), std if std > 0 else 1.0, log)

    def transform(self, y: np.ndarray) -> np.ndarray:
        return ((np.log(y) if self.log else y) - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        values = z * self.std + self.mean
        return np.exp(values) if self.log else values

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "log": self.log}

    @classmethod
    def from_dict(cls, entry: dict) -> TargetScaler:
        """The scaling saved in a card's ``target`` entry (linear unless ``log``)."""
        return cls(entry["mean"], entry["std"], entry.get("log", False))


@dataclass
class FitResult:
    """What training produced besides the weights: per-epoch history and the best score.
    ``epochs_trained`` counts the epochs this fit ran itself: ``epochs_run`` less those a
    resumed run restored from its checkpoint (what a training time divides by)."""

    history: list[dict] = field(default_factory=list)
    best_val_mae: float = math.nan
    epochs_run: int = 0
    resumed_from: str | None = None
    epochs_trained: int = 0

    def record(self, config: TrainConfig) -> dict:
        """The part of a model card's ``training`` entry that training itself decides;
        ``epoch_seconds`` sums the training epochs' times over every run that trained them,
        so a card written by a resumed run (or by a run that found its training finished)
        still says how long training took."""
        return {
            "config": config.to_dict(),
            "epochs_run": self.epochs_run,
            "epochs_trained": self.epochs_trained,
            "epoch_seconds": round(sum(row.get("epoch_seconds", 0.0) for row in self.history), 2),
            "best_val_mae": self.best_val_mae,
            "resumed_from": self.resumed_from,
        }
