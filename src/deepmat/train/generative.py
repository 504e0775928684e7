"""Generative models of two-phase microstructures with a small latent space: a GAN here, a
VAE in :mod:`deepmat.train.vae`, both a :class:`LatentGenerator`.

A generator G: z ∈ ℝᵈ → image (:mod:`deepmat.models.gan`) is learnt from square periodic
images of phase 0 and phase 1, so that a design loop can search the d-dimensional latent
space instead of pixels (Yang et al., J. Mech. Des. 140, 111416, 2018;
:mod:`deepmat.workflows.design`). Every generator follows the estimator protocol: ``fit`` on
structures, ``predict`` maps latent vectors to structures, ``evaluate`` compares generated
structures with held-out ones. Which epoch is kept, and which model wins in the benchmark,
is decided on validation structures by the same statistics: the mean squared difference of
the mean 2-point correlation S₂ of phase 1 and the difference of mean volume fractions.

:class:`MicrostructureGAN` trains in Lightning with manual optimisation (``n_critic`` critic
steps per generator step, Adam with β = (0, 0.9) as Gulrajani et al.); every generator logs
per-epoch metrics, keeps a checkpoint per epoch in ``workdir`` and resumes from the last one.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from scipy import stats

from deepmat.errors import ConfigError, DataError, ModelFormatError
from deepmat.models.gan import Critic, Generator, check_image_size, gradient_penalty
from deepmat.represent.descriptors import two_point
from deepmat.train.config import TrainConfig
from deepmat.train.estimator import Estimator
from deepmat.train.trainer import EpochReport, quiet_lightning
from deepmat.train.weights import load_weights, save_weights

LOSSES = ("wgan-gp", "hinge")
#: structures generated per validation epoch (at most; fewer when validation is smaller)
VAL_SAMPLES = 256


@dataclass(frozen=True)
class GANSpec:
    """The networks and the adversarial game: latent dimension, image side (a power of two),
    base width of both networks, loss (``wgan-gp`` or ``hinge``, both with the gradient
    penalty of weight ``penalty``) and critic steps per generator step."""

    latent_dim: int = 16
    size: int = 32
    width: int = 32
    loss: str = "wgan-gp"
    penalty: float = 10.0
    n_critic: int = 5

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"GAN loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        try:
            check_image_size(self.size)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.latent_dim < 1 or self.width < 1 or self.n_critic < 1 or self.penalty < 0:
            raise ConfigError(f"invalid GAN settings: {self}")


def structure_statistics(structures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Volume fractions (n,) and periodic S₂ of phase 1 (n, 2r + 1, 2r + 1), r = side / 4."""
    x = torch.as_tensor(np.asarray(structures), dtype=torch.float32)
    s2 = two_point(x, x.shape[-1] // 4)
    return x.mean(dim=(1, 2)).numpy(), s2.numpy()


def distribution_distance(real: np.ndarray, generated: np.ndarray) -> dict:
    """How far ``generated`` structures are from ``real`` ones, as populations: ``s2_mse``
    between their mean S₂, ``s2_std_ratio`` of the pixel-wise spread of S₂ (below 1: less
    varied, e.g. mode collapse), ``volume_fraction_error`` between mean fractions,
    ``volume_fraction_ks`` (Kolmogorov–Smirnov distance of the fractions) and ``n``."""
    f_real, s2_real = structure_statistics(real)
    f_gen, s2_gen = structure_statistics(generated)
    return {
        "s2_mse": float(np.mean((s2_real.mean(0) - s2_gen.mean(0)) ** 2)),
        "s2_std_ratio": float(s2_gen.std(0).mean() / max(s2_real.std(0).mean(), 1e-12)),
        "volume_fraction_error": float(abs(f_real.mean() - f_gen.mean())),
        "volume_fraction_ks": float(stats.ks_2samp(f_real, f_gen).statistic),
        "n": len(real),
    }


def check_structures(structures, size: int | None = None, what: str = "structures") -> np.ndarray:
    """``structures`` as uint8 (n, s, s) of phases 0/1, or a DataError naming the record."""
    x = np.asarray(structures)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1] != x.shape[2] or len(x) == 0:
        raise DataError(f"{what} must be square images (n, s, s), got shape {x.shape}")
    if size is not None and x.shape[1] != size:
        raise DataError(f"{what} are {x.shape[1]}² pixels; this model makes {size}² images")
    bad = np.flatnonzero(~np.isin(x, (0, 1)).all(axis=(1, 2)))
    if len(bad):
        values = np.unique(x[bad[0]])
        raise DataError(
            f"{what}: {len(bad)} records are not two-phase; record {bad[0]} holds the values "
            f"{values[:8].tolist()} (phases must be 0 and 1)"
        )
    return x.astype(np.uint8)


class GeneratorTask(L.LightningModule):
    """What the training of every latent generative model shares: the generator (z → logits
    of phase 1) and, after each epoch, the comparison of structures generated from a fixed
    set of latent vectors with the validation structures (``val_s2_mse`` picks the epoch)."""

    def __init__(self, spec, config: TrainConfig, val: np.ndarray):
        super().__init__()
        self.spec, self.config = spec, config
        self.generator = Generator(spec.latent_dim, spec.size, spec.width)
        self.val = val
        seed = torch.Generator().manual_seed(config.seed)
        self.register_buffer(
            "val_z", torch.randn(min(len(val), VAL_SAMPLES), spec.latent_dim, generator=seed)
        )

    def validation_step(self, batch, _):
        """Nothing per batch: the epoch's end compares a fixed set of generated structures."""

    def on_validation_epoch_end(self) -> None:
        self.generator.eval()
        with torch.no_grad():
            made = (self.generator(self.val_z) > 0).squeeze(1).cpu().numpy()
        self.generator.train()
        distance = distribution_distance(self.val, made.astype(np.uint8))
        self.log("val_s2_mse", distance["s2_mse"])
        self.log("val_volume_fraction_error", distance["volume_fraction_error"])


class _GANTask(GeneratorTask):
    """The adversarial game in Lightning's manual optimisation."""

    def __init__(self, spec: GANSpec, config: TrainConfig, val: np.ndarray):
        super().__init__(spec, config, val)
        self.critic = Critic(spec.size, spec.width)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        (real,) = batch
        real = real.unsqueeze(1)
        critic_opt, generator_opt = self.optimizers()
        z = torch.randn(len(real), self.spec.latent_dim, device=real.device)
        fake = torch.sigmoid(self.generator(z)).detach()
        real_score, fake_score = self.critic(real), self.critic(fake)
        if self.spec.loss == "wgan-gp":
            critic_loss = fake_score.mean() - real_score.mean()
        else:
            critic_loss = torch.relu(1 - real_score).mean() + torch.relu(1 + fake_score).mean()
        critic_loss = critic_loss + self.spec.penalty * gradient_penalty(self.critic, real, fake)
        critic_opt.zero_grad()
        self.manual_backward(critic_loss)
        critic_opt.step()
        self.log("critic_loss", critic_loss, on_epoch=True, on_step=False)
        critic_steps = self.current_epoch * self.trainer.num_training_batches + batch_idx + 1
        if critic_steps % self.spec.n_critic == 0:
            z = torch.randn(len(real), self.spec.latent_dim, device=real.device)
            generator_loss = -self.critic(torch.sigmoid(self.generator(z))).mean()
            generator_opt.zero_grad()
            self.manual_backward(generator_loss)
            generator_opt.step()
            self.log("generator_loss", generator_loss, on_epoch=True, on_step=False)

    def configure_optimizers(self):
        betas = (0.0, 0.9)
        return (
            torch.optim.Adam(self.critic.parameters(), lr=self.config.lr, betas=betas),
            torch.optim.Adam(self.generator.parameters(), lr=self.config.lr, betas=betas),
        )


def generator_presets(lr: float, paper: dict) -> dict:
    """A generator's presets: 30 epochs of batches of 64 at learning rate ``lr`` (default and
    benchmark), and the paper's preset with the changes ``paper``."""
    config = {"epochs": 30, "batch_size": 64, "lr": lr}
    return {
        "default": {"spec": {}, "config": config},
        "paper": {"spec": {}, "config": config | paper},
        "benchmark": {"spec": {}, "config": dict(config)},
    }


class LatentGenerator(Estimator):
    """Generative model of square periodic two-phase microstructures with a small latent
    space: a generator z ∈ ℝᵈ → image, trained by a subclass's ``task_class`` from the
    settings of its ``spec_class``. ``predict(z)`` decodes latent vectors (n, latent_dim)
    into structures (n, size, size) of phases 0/1; :meth:`probabilities` gives phase 1's
    probability per pixel, from which :meth:`decode` can impose an exact volume fraction."""

    input_kind: ClassVar[str] = "latent"
    output_kind: ClassVar[str] = "labels"
    spec_class: ClassVar[type]
    task_class: ClassVar[type[GeneratorTask]]

    def __init__(self, spec=None, config: TrainConfig | None = None, name: str | None = None):
        self.spec = spec if isinstance(spec, self.spec_class) else self.spec_class(**(spec or {}))
        self.config = config or TrainConfig(**self.presets["default"]["config"])
        self.name = name or self.family
        self.generator = Generator(self.spec.latent_dim, self.spec.size, self.spec.width).eval()
        self.training, self.metrics = {}, {}

    @property
    def latent_dim(self) -> int:
        return self.spec.latent_dim

    def fit(self, X, y=None, *, val=None, workdir: str | Path | None = None) -> LatentGenerator:
        """Train on structures ``X`` (n, s, s); ``val`` (held-out structures) picks the
        epoch kept. ``workdir`` keeps a checkpoint per epoch; a fit started again with the
        same ``workdir`` resumes from the last one."""
        if y is not None:
            raise DataError(f"{self.name} learns structures alone; it takes no targets y")
        train = check_structures(X, self.spec.size, "training structures")
        if val is None:
            raise DataError(f"{self.name} needs validation structures (val=) to pick its epoch")
        val = check_structures(val, self.spec.size, "validation structures")
        if len(train) < self.config.batch_size:
            raise DataError(
                f"{len(train)} training structures are fewer than one batch "
                f"({self.config.batch_size}); generate more or lower the batch size"
            )
        quiet_lightning()
        L.seed_everything(self.config.seed, verbose=False)
        task = self.task_class(self.spec, self.config, val)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(workdir or scratch)
            last = folder / "last.ckpt"
            report = EpochReport()
            best = ModelCheckpoint(
                dirpath=folder, filename="best", monitor="val_s2_mse", mode="min", save_last=True
            )
            callbacks = [report, best]
            if self.config.progress:
                callbacks.append(RichProgressBar(leave=False))
            trainer = L.Trainer(
                max_epochs=self.config.epochs,
                accelerator=self.config.accelerator,
                precision="32-true",
                callbacks=callbacks,
                logger=False,
                enable_progress_bar=self.config.progress,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                default_root_dir=folder,
            )
            loader = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(torch.as_tensor(train, dtype=torch.float32)),
                batch_size=self.config.batch_size,
                shuffle=True,
                drop_last=True,
            )
            placeholder = torch.utils.data.DataLoader([torch.zeros(1)])
            start = time.perf_counter()
            trainer.fit(task, loader, placeholder, ckpt_path=last if last.exists() else None)
            seconds = time.perf_counter() - start
            state = torch.load(best.best_model_path, weights_only=False)["state_dict"]
        self.generator.load_state_dict(
            {
                k.removeprefix("generator."): v
                for k, v in state.items()
                if k.startswith("generator.")
            }
        )
        self.generator.eval()
        history = report.history
        best_row = min(history, key=lambda r: r.get("val_s2_mse", np.inf))
        self.training = {
            "config": self.config.to_dict(),
            "data": {"n_train": len(train), "n_val": len(val), "size": self.spec.size},
            "epochs_run": len(history),
            "epochs_trained": report.epochs_here,
            "best_epoch": best_row["epoch"],
            "train_seconds": seconds,
            "history": history,
        }
        self.metrics = {"val": self.evaluate(val)}
        return self

    def latents(self, n: int, seed: int | None = 0) -> np.ndarray:
        """``n`` latent vectors drawn from the prior N(0, I), float32 (n, latent_dim)."""
        rng = np.random.default_rng(seed)
        return rng.standard_normal((n, self.latent_dim)).astype(np.float32)

    def probabilities(self, z) -> np.ndarray:
        """Phase 1's probability per pixel, float32 (n, size, size), for latent vectors z."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise DataError(f"latent vectors must have shape (n, {self.latent_dim}), got {z.shape}")
        with torch.no_grad():
            logits = self.generator(torch.from_numpy(z))
        return torch.sigmoid(logits).squeeze(1).numpy()

    def decode(self, z, volume_fraction: float | None = None) -> np.ndarray:
        """Structures uint8 (n, size, size): phase 1 where its probability exceeds ½, or,
        given ``volume_fraction``, on exactly that share of pixels (the most probable)."""
        from deepmat.data.microstructures import threshold_at_fraction

        p = self.probabilities(z)
        if volume_fraction is None:
            return (p > 0.5).astype(np.uint8)
        return np.stack([threshold_at_fraction(image, volume_fraction) for image in p])

    def predict(self, X, return_std: bool = False) -> np.ndarray:
        if return_std:
            raise self.no_uncertainty("a generator draws structures; it predicts no values")
        return self.decode(X)

    def sample(self, n: int, seed: int | None = 0) -> np.ndarray:
        """``n`` structures drawn from the prior."""
        return self.decode(self.latents(n, seed))

    def evaluate(self, X, y=None) -> dict:
        """:func:`distribution_distance` between structures ``X`` and as many generated
        from latent vectors of seed 0."""
        real = check_structures(X, self.spec.size)
        return distribution_distance(real, self.sample(len(real), seed=0))

    def card(self) -> dict:
        return {
            "family": self.family,
            "model": self.name,
            "input": "latent",
            "output": "microstructure",
            "architecture": asdict(self.spec),
            "training": self.training,
            "metrics": self.metrics,
        }

    def save_state(self, path: Path) -> None:
        save_weights(self.generator, path)

    @classmethod
    def from_saved(cls, path: Path, card: dict) -> LatentGenerator:
        try:
            spec = cls.spec_class(**card["architecture"])
        except (KeyError, TypeError) as exc:
            raise ModelFormatError(f"{path}: unreadable generator architecture ({exc})") from None
        model = cls(spec, cls.saved_config(card), name=card["model"])
        load_weights(model.generator, path)
        model.restore_record(card)
        return model


class MicrostructureGAN(LatentGenerator):
    """A GAN of two-phase microstructures (see the module docstring)."""

    family: ClassVar[str] = "microstructure-gan"
    spec_class: ClassVar[type] = GANSpec
    task_class: ClassVar[type[GeneratorTask]] = _GANTask
    presets: ClassVar[dict] = generator_presets(2e-4, {"epochs": 100, "lr": 1e-4})
