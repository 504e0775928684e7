"""A variational autoencoder of two-phase microstructures (:mod:`deepmat.models.vae`).

:class:`MicrostructureVAE` is a :class:`~deepmat.train.generative.LatentGenerator` like the
GAN: the same generator network decodes its latent vectors, the same validation statistics
pick its epoch, and a design loop searches its latent space the same way. It trains by
minimising −ELBO = reconstruction + β KL with Adam. Its latent space is smoother than a
GAN's, so a Gaussian process models an objective over it better; its structures are
smoother too (its samples are the means of blurred images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from deepmat.errors import ConfigError
from deepmat.models.gan import check_image_size
from deepmat.models.vae import Encoder, elbo_terms
from deepmat.train.config import TrainConfig
from deepmat.train.generative import GeneratorTask, LatentGenerator, generator_presets


@dataclass(frozen=True)
class VAESpec:
    """Latent dimension, image side (a power of two), base width of the encoder and the
    decoder, and β, the weight of the KL term (1: the ELBO itself)."""

    latent_dim: int = 16
    size: int = 32
    width: int = 32
    beta: float = 1.0

    def __post_init__(self) -> None:
        try:
            check_image_size(self.size)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.latent_dim < 1 or self.width < 1 or not self.beta > 0:
            raise ConfigError(f"invalid VAE settings: {self}")


class _VAETask(GeneratorTask):
    """−ELBO on each batch of structures, logged as its two terms."""

    def __init__(self, spec: VAESpec, config: TrainConfig, val: np.ndarray):
        super().__init__(spec, config, val)
        self.encoder = Encoder(spec.latent_dim, spec.size, spec.width)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        x = x.unsqueeze(1)
        mu, log_var = self.encoder(x)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
        reconstruction, kl = elbo_terms(self.generator(z), x, mu, log_var)
        self.log("reconstruction", reconstruction, on_epoch=True, on_step=False)
        self.log("kl", kl, on_epoch=True, on_step=False)
        return reconstruction + self.spec.beta * kl

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.config.lr)


class MicrostructureVAE(LatentGenerator):
    """A VAE of two-phase microstructures (see the module docstring)."""

    family: ClassVar[str] = "microstructure-vae"
    spec_class: ClassVar[type] = VAESpec
    task_class: ClassVar[type[GeneratorTask]] = _VAETask
    presets: ClassVar[dict] = generator_presets(1e-3, {"epochs": 60})
