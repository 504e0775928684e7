"""The encoder of a variational autoencoder of periodic two-phase microstructure images.

A VAE (Kingma & Welling, ICLR 2014) pairs an encoder q(z | x) = N(μ(x), diag σ²(x)) with a
decoder p(x | z), here the GAN's generator (:class:`~deepmat.models.gan.Generator`, Bernoulli
logits per pixel), and maximises the evidence lower bound of each image x,

    ELBO(x) = E_q[log p(x | z)] − β KL(q(z | x) ‖ N(0, I)),

    KL = ½ Σⱼ (μⱼ² + σⱼ² − 1 − log σⱼ²),

estimating the expectation by one draw z = μ + σ ⊙ ε, ε ~ N(0, I) (the reparameterisation
trick). The encoder is the critic's body (circular convolutions with stride 2) and a linear
layer to (μ, log σ²). Unlike a GAN's, the latent space is tied to the data by the encoder
and kept smooth by the KL term: nearby latent vectors decode to similar structures, which is
what a Gaussian-process search over it needs.
"""

from __future__ import annotations

import torch
from torch import nn

from deepmat.models.gan import downsampling


class Encoder(nn.Module):
    """Images (n, 1, size, size) in [0, 1] → (μ, log σ²), each (n, latent_dim)."""

    def __init__(self, latent_dim: int = 16, size: int = 64, width: int = 32):
        super().__init__()
        self.body, features = downsampling(size, width)
        self.head = nn.Linear(features, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.head(self.body(x)).chunk(2, dim=-1)
        return mu, log_var


def elbo_terms(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reconstruction term −log p(x | z) (binary cross-entropy summed over pixels) and the
    KL term, each averaged over the batch: −ELBO = reconstruction + β KL."""
    reconstruction = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum()
    return reconstruction / len(x), kl / len(x)
