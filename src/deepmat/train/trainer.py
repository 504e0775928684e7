"""One Lightning-based trainer for every regression network in deepmat.

:func:`fit_network` takes any ``nn.Module`` mapping a batch of feature tensors to
``(n, 1)`` predictions, or to fields of the targets' shape, and trains it on
standardised targets with early stopping on the validation MAE (in the target's own
units), checkpoints that allow resuming after an interruption, per-epoch metrics and a
progress bar. It runs on the CPU by default and on a GPU when one is present
(``accelerator="auto"``).

Two options matter for deep ReLU networks with dropout such as ElemNet:

* ``dropout_until``: the fraction of the epochs trained with dropout; the rest are
  trained without it. A network trained under dropout and evaluated without it sees
  activations of another variance than it learned on (the "variance shift"), which
  in a deep regression network biases every prediction; letting the last epochs
  settle without dropout removes the shift (on OQMD it lowered ElemNet's validation
  MAE by a quarter at equal epochs).
* ``precision="bf16-mixed"``: bfloat16 matrix products with float32 weights, about
  1.6x faster on CPUs with AVX-512 BF16 and on GPUs; the saved weights stay float32.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, RichProgressBar
from rich.console import Console
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from deepmat.errors import ConfigError, DataError, DeepmatError


class TrainingInterrupted(DeepmatError):
    """Training stopped by the user; the last completed epoch is checkpointed."""


SCHEDULES = ("constant", "onecycle", "cosine", "plateau")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


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

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if not 0.0 <= self.dropout_until <= 1.0:
            raise ConfigError(f"dropout_until {self.dropout_until} is not between 0 and 1")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule {self.schedule!r} is not one of {SCHEDULES}")
        if self.loss not in ("l1", "mse"):
            raise ConfigError(f"loss {self.loss!r} is not 'l1' or 'mse'")

    def to_dict(self) -> dict:
        return asdict(self)


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


Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def inputs_only(transform: Callable[[torch.Tensor], torch.Tensor]) -> Augment:
    """An :data:`Augment` that transforms the inputs and leaves the targets as they are:
    for a random symmetry under which the target is invariant (C11 under reflections)."""

    def augment(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return transform(x), y

    return augment


class RegressionTask(L.LightningModule):
    """Wraps a network with its loss, optimiser, schedule and target scaling.

    Targets may be one value per sample, shape (n,), or a field per sample such as
    (n, 1, n1, n2, n3); the network's output is reshaped to the targets' shape, so a
    (b, 1) output meets (b,) targets. ``augment``, when given, transforms every training
    batch ``(x, y)`` (never the validation batches): a random symmetry applied to the
    inputs and, for equivariant targets such as fields, to the targets alike.
    """

    def __init__(
        self,
        net: nn.Module,
        config: TrainConfig,
        scaler: TargetScaler,
        augment: Augment | None = None,
        loss: nn.Module | None = None,
    ):
        super().__init__()
        self.net, self.config, self.scaler = net, config, scaler
        self.augment = augment
        self.custom_loss = loss is not None
        self.loss_fn = loss or (nn.L1Loss() if config.loss == "l1" else nn.MSELoss())

    def _error(self, prediction: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The score logged as ``*_mae``: the mean absolute error in target units, or the
        custom loss itself (a disorientation angle, say) when one was given."""
        if self.custom_loss:
            return self.loss_fn(prediction, y)
        return (prediction - y).abs().mean() * self.scaler.std

    def forward(self, x) -> torch.Tensor:
        """The network on a batch: tensors as float32, other inputs (graphs) as they come."""
        return self.net(x.float() if isinstance(x, torch.Tensor) else x)

    def _predict(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The network's output, shaped as the targets unless a custom loss pairs outputs and
        targets of different shapes (an orientation embedding against quaternions)."""
        prediction = self(x)
        return prediction if self.custom_loss else prediction.reshape(y.shape)

    def training_step(self, batch, _):
        x, y = batch
        if self.augment is not None:
            x, y = self.augment(x.float(), y)
        prediction = self._predict(x, y)
        loss = self.loss_fn(prediction, y)
        train_mae = loss.detach() if self.custom_loss else self._error(prediction.detach(), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False, batch_size=len(y))
        self.log("train_mae", train_mae, on_epoch=True, on_step=False, batch_size=len(y))
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        error = self._error(self._predict(x, y), y)
        self.log("val_mae", error, on_epoch=True, prog_bar=True, batch_size=len(y))

    def configure_optimizers(self):
        c = self.config
        optimizer = torch.optim.Adam(self.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        if c.schedule == "constant":
            return optimizer
        if c.schedule == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=0.5, patience=max(c.patience // 3, 2)
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val_mae"},
            }
        steps = self.trainer.estimated_stepping_batches
        if c.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=c.lr, total_steps=steps, pct_start=0.15
            )
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


class EpochReport(Callback):
    """Prints one line of metrics per epoch and keeps the history (saved in checkpoints,
    so a resumed run reports every epoch, not just those since the restart); each row
    records the epoch's wall time, validation included."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.history: list[dict] = []
        self.started = time.perf_counter()
        self.epochs_here = 0  # trained in this process, not restored from a checkpoint

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))

    def on_train_epoch_start(self, trainer, pl_module):
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        row = {"epoch": trainer.current_epoch + 1}
        row |= {k: float(v) for k, v in trainer.callback_metrics.items()}
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        row["epoch_seconds"] = time.perf_counter() - self.started
        self.history.append(row)
        self.epochs_here += 1
        shown = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch")
        self.console.print(f"epoch {row['epoch']:>4}  {shown}")


class DropoutCutoff(Callback):
    """Switches dropout off from epoch ``ceil(dropout_until * max_epochs)`` onwards and
    restores the rates when training ends (so Monte-Carlo dropout still works)."""

    def __init__(self, dropout_until: float):
        self.dropout_until = dropout_until
        self.rates: dict[nn.Dropout, float] = {}

    def on_train_epoch_start(self, trainer, pl_module):
        if not self.rates:
            self.rates = {m: m.p for m in pl_module.modules() if isinstance(m, nn.Dropout)}
        cutoff = math.ceil(self.dropout_until * trainer.max_epochs)
        off = trainer.current_epoch >= cutoff
        for module, rate in self.rates.items():
            module.p = 0.0 if off else rate

    def on_train_end(self, trainer, pl_module):
        for module, rate in self.rates.items():
            module.p = rate


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
        """The part of a model card's ``training`` entry that training itself decides."""
        return {
            "config": config.to_dict(),
            "epochs_run": self.epochs_run,
            "epochs_trained": self.epochs_trained,
            "best_val_mae": self.best_val_mae,
            "resumed_from": self.resumed_from,
        }


def _loader(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool) -> DataLoader:
    """Whole batches indexed straight out of in-memory tensors: no per-sample collation.

    uint8 inputs (voxel images) stay uint8 in memory, a quarter of float32, and are
    converted batch by batch in :class:`RegressionTask`.
    """
    inputs = torch.from_numpy(x) if x.dtype == np.uint8 else torch.as_tensor(x, dtype=torch.float32)
    return batch_loader(
        TensorDataset(inputs, torch.as_tensor(y, dtype=torch.float32)), batch_size, shuffle
    )


def batch_loader(data: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
    """A loader that asks ``data`` for whole batches: ``data[list_of_indices]`` must
    return the batch (tensors index that way; graph sets gather their arrays)."""
    sampler = RandomSampler(data) if shuffle else SequentialSampler(data)
    return DataLoader(
        data, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None
    )


def fit_network(
    net: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    workdir: str | Path,
    scaler: TargetScaler | None = None,
    resume: bool = True,
    augment: Augment | None = None,
    val_batch_size: int = 4096,
    loss: nn.Module | None = None,
) -> FitResult:
    """Train ``net`` in place; the best weights by validation MAE are loaded at the end.

    ``x`` arrays may have any shape (n, ...) that ``net`` takes, such as (n, features)
    vectors or (n, 1, n1, n2, n3) voxel images; ``y`` arrays are (n,) values or (n, ...)
    fields matching the network's output. Checkpoints go to ``workdir/checkpoints``;
    with ``resume`` a run that finds ``last.ckpt`` there continues from it (same epoch,
    optimiser and schedule state). ``augment`` transforms each training batch ``(x, y)``
    (wrap an input-only transform with :func:`inputs_only`); ``val_batch_size`` bounds
    the memory of validation passes (3-D CNNs need it small). A ``loss`` module, such as a
    disorientation loss on quaternions, replaces ``config.loss`` and is then also the
    validation score that picks the best epoch; pass ``TargetScaler()`` (identity) for
    targets that must not be standardised.
    """
    scaler = scaler or TargetScaler.fit(y_train)
    return fit_loaders(
        net,
        _loader(x_train, scaler.transform(y_train), config.batch_size, True),
        _loader(x_val, scaler.transform(y_val), val_batch_size, False),
        config,
        workdir,
        scaler,
        resume,
        augment,
        loss,
    )


def fit_loaders(
    net: nn.Module,
    train: DataLoader,
    val: DataLoader,
    config: TrainConfig,
    workdir: str | Path,
    scaler: TargetScaler,
    resume: bool = True,
    augment: Augment | None = None,
    loss: nn.Module | None = None,
) -> FitResult:
    """:func:`fit_network` on ready loaders of ``(inputs, scaled targets)`` batches, for
    inputs that are not one array (crystal graphs); ``scaler`` is how the targets were
    scaled, so that the reported MAE is in target units."""
    L.seed_everything(config.seed, workers=True, verbose=False)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers).*")
    task = RegressionTask(net, config, scaler, augment, loss)
    ckpt_dir = Path(workdir) / "checkpoints"
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor="val_mae",
        mode="min",
        save_top_k=1,
        enable_version_counter=False,
    )
    latest = ModelCheckpoint(
        dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False
    )
    report = EpochReport()
    callbacks = [best, latest, report, EarlyStopping(monitor="val_mae", patience=config.patience)]
    if config.dropout_until < 1.0:
        callbacks.append(DropoutCutoff(config.dropout_until))
    if config.progress:
        callbacks.append(RichProgressBar(leave=False))
    trainer = L.Trainer(
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=1,
        precision=config.precision,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(workdir),
    )
    last = ckpt_dir / "last.ckpt"
    resume_from = str(last) if resume and last.exists() else None
    trainer.fit(task, train_dataloaders=train, val_dataloaders=val, ckpt_path=resume_from)
    if trainer.interrupted:
        raise TrainingInterrupted(
            f"training interrupted after {trainer.current_epoch} completed epochs; run the "
            f"same command again to resume from {last}"
        )
    if best.best_model_path:
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
        task.load_state_dict(state["state_dict"])
    net.cpu().eval()
    best_score = best.best_model_score
    return FitResult(
        history=report.history,
        best_val_mae=float(best_score) if best_score is not None else math.nan,
        epochs_run=trainer.current_epoch,
        resumed_from=resume_from,
        epochs_trained=report.epochs_here,
    )
