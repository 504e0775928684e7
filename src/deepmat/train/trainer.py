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

Training scales past one device with ``devices``, ``num_nodes`` and ``strategy``
(Lightning's names). Four GPUs on each of two machines::

    TrainConfig(devices=4, num_nodes=2, strategy="ddp")

launched as Lightning documents for multi-node runs: ``torchrun --nnodes=2
--nproc_per_node=4 --rdzv_endpoint=HOST:PORT script.py`` on each machine, or ``srun``
under SLURM (``#SBATCH --nodes=2 --ntasks-per-node=4``). With ``"ddp"`` every process
runs the whole calling script, so code after training that writes files should run on
rank 0 only (``lightning.pytorch.utilities.rank_zero_only``). ``"ddp_spawn"`` starts
the processes itself from one calling process (slower to start; the network, loss and
``augment`` must pickle, so no local functions) and suits one machine or a test.
``batch_size`` stays the global batch: each of N processes takes 1/N of every batch, so
N devices take the same optimisation steps as one (raise ``batch_size`` and ``lr`` to
keep large devices busy); each process sees a disjoint shard of every epoch's batches,
the validation MAE that early stopping and checkpoints follow is reduced over the
whole validation set, and checkpoints are written once, by rank 0. Afterwards the
network in the calling process holds the best weights, whichever strategy ran. Loaders
handed to :func:`fit_loaders` must come from :func:`batch_loader` (or shard themselves).
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher
from rich.console import Console
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    TensorDataset,
)

from deepmat.errors import ConfigError, DeepmatError
from deepmat.train.config import FitResult, TargetScaler, TrainConfig


class TrainingInterrupted(DeepmatError):
    """Training stopped by the user; the last completed epoch is checkpointed."""


_EXTRA_CALLBACKS: ContextVar[tuple[Callback, ...]] = ContextVar("extra_callbacks", default=())


@contextmanager
def training_callbacks(*callbacks: Callback) -> Iterator[None]:
    """Run ``callbacks`` (Lightning callbacks) in every fit inside this block besides the
    trainer's own, whichever estimator calls it: how an architecture search watches each
    epoch's validation MAE and stops a poor trial early without a hook in every ``fit``."""
    token = _EXTRA_CALLBACKS.set(_EXTRA_CALLBACKS.get() + callbacks)
    try:
        yield
    finally:
        _EXTRA_CALLBACKS.reset(token)


Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def inputs_only(transform: Callable[[torch.Tensor], torch.Tensor]) -> Augment:
    """An :data:`Augment` that transforms the inputs and leaves the targets as they are:
    for a random symmetry under which the target is invariant (C11 under reflections)."""

    def augment(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return transform(x), y

    return augment


class HeteroscedasticNLL(nn.Module):
    """A negative log-likelihood of targets given predictions (..., 2) holding μ and ln σ:
    the loss of a heteroscedastic network, the mean over records of :meth:`terms`.

    ``beta``: each record's term weighted by :meth:`beta_weight`, held constant (β-NLL,
    Seitzer et al., ICLR 2022): the mean then trains as on the distribution's point loss,
    whatever σ, and σ still converges to its likelihood optimum; for a σ added to a
    trained network."""

    def __init__(self, beta: bool = False):
        super().__init__()
        self.beta = beta

    def terms(self, error: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        """Each record's negative log-likelihood of the error y − μ (constants left out)."""
        raise NotImplementedError

    def beta_weight(self, log_std: torch.Tensor) -> torch.Tensor:
        """The weight with which ``beta`` turns the mean's gradient into the point loss's."""
        raise NotImplementedError

    def forward(self, prediction: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mean, log_std = prediction[..., 0], prediction[..., 1].clamp(-10, 10)
        nll = self.terms(y - mean, log_std)
        if self.beta:
            nll = nll * self.beta_weight(log_std).detach()
        return nll.mean()


class GaussianNLL(HeteroscedasticNLL):
    """Under N(μ, σ²): ½ ((y − μ)/σ)² + ln σ. With ``beta`` each term is weighted by σ²
    (β = 1): the mean trains as on the squared error, σ² goes to the mean squared error."""

    def terms(self, error: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        return 0.5 * (error * torch.exp(-log_std)) ** 2 + log_std

    def beta_weight(self, log_std: torch.Tensor) -> torch.Tensor:
        return torch.exp(2 * log_std)


class LaplaceNLL(HeteroscedasticNLL):
    """Under a Laplace distribution of mean μ and standard deviation σ: √2 |y − μ| / σ +
    ln σ, Roost's robust L1 loss. With ``beta`` each term is weighted by σ/√2: the mean
    trains exactly as on the L1 loss, σ goes to √2 times the mean absolute error."""

    def terms(self, error: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        return math.sqrt(2) * error.abs() * torch.exp(-log_std) + log_std

    def beta_weight(self, log_std: torch.Tensor) -> torch.Tensor:
        return torch.exp(log_std) / math.sqrt(2)


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
        self.heteroscedastic = config.heteroscedastic and loss is None
        losses = {
            "l1": nn.L1Loss,
            "mse": nn.MSELoss,
            "gaussian-nll": GaussianNLL,
            "laplace-nll": LaplaceNLL,
            "gaussian-beta-nll": partial(GaussianNLL, beta=True),
            "laplace-beta-nll": partial(LaplaceNLL, beta=True),
        }
        self.loss_fn = loss or losses[config.loss]()

    def _error(self, prediction: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The score logged as ``*_mae``: the mean absolute error in target units, or the
        custom loss itself (a disorientation angle, say) when one was given."""
        if self.custom_loss:
            return self.loss_fn(prediction, y)
        mean = prediction[..., 0] if self.heteroscedastic else prediction
        return (mean - y).abs().mean() * self.scaler.std

    def forward(self, x) -> torch.Tensor:
        """The network on a batch: tensors as float32, other inputs (graphs) as they come."""
        return self.net(x.float() if isinstance(x, torch.Tensor) else x)

    def _predict(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The network's output, shaped as the targets unless a custom loss pairs outputs and
        targets of different shapes (an orientation embedding against quaternions)."""
        prediction = self(x)
        if self.heteroscedastic:
            if prediction.numel() != 2 * y.numel():
                raise ConfigError(
                    f"the loss {self.config.loss} needs a network with two outputs, μ and ln σ, "
                    "per target; this one has one (heteroscedastic networks: the composition "
                    "networks and the mean-pooling CGCNNs, with --heteroscedastic)"
                )
            return prediction.reshape(*y.shape, 2)
        return prediction if self.custom_loss else prediction.reshape(y.shape)

    def training_step(self, batch, _):
        x, y = batch
        if self.augment is not None:
            x, y = self.augment(x.float(), y)
        prediction = self._predict(x, y)
        loss = self.loss_fn(prediction, y)
        train_mae = loss.detach() if self.custom_loss else self._error(prediction.detach(), y)
        for name, value in (("train_loss", loss), ("train_mae", train_mae)):
            self.log(name, value, on_epoch=True, on_step=False, batch_size=len(y), sync_dist=True)
        return loss

    def setup(self, stage: str) -> None:
        quiet_lightning()  # in every process, spawned ones included

    def on_validation_epoch_start(self) -> None:
        self._val_total = torch.zeros(2, device=self.device)  # sum of errors x sizes, size

    def validation_step(self, batch, _):
        x, y = batch
        error = self._error(self._predict(x, y), y).detach().float()
        self._val_total += torch.stack([error * len(y), error.new_tensor(float(len(y)))])

    def on_validation_epoch_end(self) -> None:
        """``val_mae`` over the whole validation set: every process holds a shard, so the
        sums and counts are added up across processes before dividing (a mean of the
        processes' means would weigh unequal shards wrongly)."""
        total = self.trainer.strategy.reduce(self._val_total, reduce_op="sum")
        self.log("val_mae", total[0] / total[1], prog_bar=True, sync_dist=True)

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
        self.restored = 0  # rows restored from a checkpoint

    def state_dict(self) -> dict:
        # "restored" lets a process that did not train (ddp_spawn's caller) tell from the
        # last checkpoint how many of its epochs the fit ran itself
        return {"history": self.history, "restored": self.restored}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
        self.restored = len(self.history)

    def __getstate__(self) -> dict:
        # a console holds locks, which do not pickle (ddp_spawn pickles the callbacks)
        return self.__dict__ | {"console": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.console = Console(stderr=True)
        quiet_lightning()  # unpickled first thing in a spawned process

    def on_train_epoch_start(self, trainer, pl_module):
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        row = {"epoch": trainer.current_epoch + 1}
        row |= {k: float(v) for k, v in trainer.callback_metrics.items()}
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        row["epoch_seconds"] = time.perf_counter() - self.started
        self.history.append(row)
        self.epochs_here += 1
        if trainer.is_global_zero:
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


def _loader(
    x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, seed: int | None = None
) -> DataLoader:
    """Whole batches indexed straight out of in-memory tensors: no per-sample collation.

    uint8 inputs (voxel images) stay uint8 in memory, a quarter of float32, and are
    converted batch by batch in :class:`RegressionTask`.
    """
    inputs = torch.from_numpy(x) if x.dtype == np.uint8 else torch.as_tensor(x, dtype=torch.float32)
    return batch_loader(
        TensorDataset(inputs, torch.as_tensor(y, dtype=torch.float32)), batch_size, shuffle, seed
    )


def batch_loader(
    data: Dataset, batch_size: int, shuffle: bool, seed: int | None = None
) -> DataLoader:
    """A loader that asks ``data`` for whole batches: ``data[list_of_indices]`` must
    return the batch (tensors index that way; graph sets gather their arrays). Under
    distributed training each process gets its shard (see :class:`ShardedBatches`)."""
    return DataLoader(
        data, sampler=ShardedBatches(len(data), batch_size, shuffle, seed), batch_size=None
    )


def _world() -> tuple[int, int]:
    """(number of processes, rank of this one) of the distributed run, (1, 0) outside one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class ShardedBatches(Sampler[list[int]]):
    """Batches of indices into a data set of ``n`` samples, sharded across the processes
    of a distributed run (asked of ``torch.distributed`` when iterated, so the loader can
    be built before the processes exist).

    In one process the batches are those of ``BatchSampler(RandomSampler)`` (shuffled,
    from the global random state) or of a sequential sampler. In ``world`` processes:

    * shuffled (training): every process draws the same permutation, from ``seed`` (by
      default Lightning's global seed) plus the epoch that Lightning sets, cuts it into the
      global batches of ``batch_size`` and takes its own 1/world part of each batch. The
      parts are disjoint, every process takes the same number of steps (which gradient
      averaging needs) and the steps are those of one process with the same batch size.
      A last batch smaller than ``world`` is topped up with samples from the start.
    * sequential (evaluation): process ``r`` takes samples ``r, r + world, ...`` in
      batches of ``batch_size``, each sample once over all processes; a set smaller than
      ``world`` goes whole to every process, so that none has nothing to evaluate.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int | None = None):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch: a new permutation each epoch."""
        self.epoch = epoch

    def batches(self, world: int, rank: int) -> list[list[int]]:
        """This epoch's batches for process ``rank`` of ``world`` (for ``world > 1``)."""
        if not self.shuffle:
            shard = range(rank, self.n, world) if self.n >= world else range(self.n)
            return [
                list(shard[i : i + self.batch_size]) for i in range(0, len(shard), self.batch_size)
            ]
        seed = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        generator = torch.Generator().manual_seed(seed + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        out = []
        for start in range(0, self.n, self.batch_size):
            batch = order[start : start + self.batch_size]
            if len(batch) < world:  # every process needs a step
                batch += [order[i % self.n] for i in range(world - len(batch))]
            out.append(batch[rank::world])
        return out

    def __iter__(self):
        world, rank = _world()
        if world > 1:
            return iter(self.batches(world, rank))
        sampler = RandomSampler(range(self.n)) if self.shuffle else SequentialSampler(range(self.n))
        return iter(BatchSampler(sampler, self.batch_size, drop_last=False))

    def __len__(self) -> int:
        world, rank = _world()
        if world == 1 or self.shuffle:
            return math.ceil(self.n / self.batch_size)
        return math.ceil(
            len(range(rank, self.n, world) if self.n >= world else range(self.n)) / self.batch_size
        )


def quiet_lightning() -> None:
    """Silence Lightning's info logs and its warnings that do not apply here."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings(
        "ignore", message=".*(LeafSpec|does not have many workers|exists and is not empty).*"
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
        _loader(x_train, scaler.transform(y_train), config.batch_size, True, config.seed),
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
    torch.set_flush_denormal(True)  # subnormal floats slow CPU arithmetic a hundredfold
    L.seed_everything(config.seed, workers=True, verbose=False)
    quiet_lightning()
    net.train()  # Lightning keeps the mode it is given: a network that predicted is in eval
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
    stopper = EarlyStopping(monitor="val_mae", patience=config.patience)
    callbacks = [best, latest, report, stopper, *_EXTRA_CALLBACKS.get()]
    if config.dropout_until < 1.0:
        callbacks.append(DropoutCutoff(config.dropout_until))
    if config.progress:
        callbacks.append(RichProgressBar(leave=False))
    trainer = L.Trainer(
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        # getattr: a TrainConfig may predate these settings (one process then)
        devices=getattr(config, "devices", 1),
        num_nodes=getattr(config, "num_nodes", 1),
        strategy=getattr(config, "strategy", "auto"),
        use_distributed_sampler=False,  # batch_loader's samplers shard themselves
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
    last_stamp = _stamp(last)
    saved = _saved_callbacks(last) if resume_from else {}
    if resume_from and _finished(saved, config, report, stopper):
        # every epoch (or early stopping) is behind it: fitting again would step a one-cycle
        # schedule past its end; the result is read from the checkpoints
        _restore_callbacks(saved, _EXTRA_CALLBACKS.get())
        result = _spawned_result(last, last_stamp, report, best, saved)
        return _best_weights(task, net, result.pop("best_path"), resume_from, result)
    trainer.fit(task, train_dataloaders=train, val_dataloaders=val, ckpt_path=resume_from)
    if trainer.interrupted:
        raise TrainingInterrupted(
            f"training interrupted after {trainer.current_epoch} completed epochs; run the "
            f"same command again to resume from {last}"
        )
    if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher):
        # ddp_spawn: training ran in child processes; what they did is in the checkpoints
        result = _spawned_result(last, last_stamp, report, best, _saved_callbacks(last))
        best_path = result.pop("best_path")
    else:
        best_path, best_score = best.best_model_path, best.best_model_score
        result = {
            "history": report.history,
            "best_val_mae": float(best_score) if best_score is not None else math.nan,
            "epochs_run": trainer.current_epoch,
            "epochs_trained": report.epochs_here,
        }
    return _best_weights(task, net, best_path, resume_from, result)


def _best_weights(task, net: nn.Module, best_path, resume_from, result: dict) -> FitResult:
    """Load the best checkpoint's weights into ``net`` (in evaluation mode) and wrap up.
    With several machines the best checkpoint is on rank 0's disk; the other ranks keep the
    last weights, identical in every process."""
    if best_path and Path(best_path).is_file():
        state = torch.load(best_path, map_location="cpu", weights_only=True)
        task.load_state_dict(state["state_dict"])
    net.cpu().eval()
    return FitResult(resumed_from=resume_from, **result)


def _saved_callbacks(last: Path) -> dict:
    """The callbacks' states saved in the checkpoint ``last`` ({} when there is none)."""
    if not last.exists():
        return {}
    return torch.load(last, map_location="cpu", weights_only=True).get("callbacks", {})


def _finished(saved: dict, config: TrainConfig, report: EpochReport, stopper) -> bool:
    """Whether the run whose callbacks saved ``saved`` trained all its epochs or stopped
    early."""
    history = saved.get(report.state_key, {}).get("history", [])
    waited = saved.get(stopper.state_key, {}).get("wait_count", 0)
    return len(history) >= config.epochs or waited >= config.patience


def _restore_callbacks(saved: dict, callbacks) -> None:
    """Give ``callbacks`` the states ``saved`` in the last checkpoint: a finished run fitted
    again trains nothing, so Lightning restores nothing (a learning curve would come back
    empty)."""
    for callback in callbacks:
        if callback.state_key in saved:
            callback.load_state_dict(saved[callback.state_key])


def _stamp(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


def _spawned_result(
    last: Path, stamp: int | None, report: EpochReport, best: ModelCheckpoint, saved: dict
) -> dict:
    """History, scores and the best checkpoint's path of a fit that ran in spawned
    processes, read from the callbacks' states ``saved`` in the last checkpoint (written by
    rank 0 after every epoch)."""
    if not last.exists():
        return {
            "history": [],
            "best_val_mae": math.nan,
            "epochs_run": 0,
            "epochs_trained": 0,
            "best_path": "",
        }
    reported = saved.get(report.state_key, {})
    kept = saved.get(best.state_key, {})
    history = list(reported.get("history", []))
    score = kept.get("best_model_score")
    rewritten = _stamp(last) != stamp  # unchanged when a resumed fit had no epochs left
    return {
        "history": history,
        "best_val_mae": float(score) if score is not None else math.nan,
        "epochs_run": int(history[-1]["epoch"]) if history else 0,
        "epochs_trained": len(history) - reported.get("restored", 0) if rewritten else 0,
        "best_path": _moved_with(last, kept.get("best_model_path", "")),
    }


def _moved_with(last: Path, best_path: str) -> str:
    """The best checkpoint beside ``last``: a checkpoint records the absolute path it was
    written to, which points elsewhere (or at another run's file) once the run folder moves."""
    return str(last.parent / Path(best_path).name) if best_path else ""
