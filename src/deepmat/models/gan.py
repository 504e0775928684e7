"""A generator and a critic for periodic two-phase microstructure images (a DCGAN layout).

The generator G maps a latent vector z ∈ ℝᵈ (d ≈ 16, as in Yang et al., J. Mech. Des. 140,
111416, 2018) to the logits of phase 1 on an s × s grid: a linear layer to 4 × 4 feature
maps, then log₂(s/4) blocks of (nearest ×2 upsampling, 3 × 3 convolution, batch norm, ReLU)
and a last 3 × 3 convolution to one channel. The critic D maps an image x ∈ [0, 1]^{s×s} to one
score: log₂(s/4) blocks of (4 × 4 convolution with stride 2, LeakyReLU 0.2), no batch norm (the
gradient penalty is per sample), and a linear layer. Every convolution pads circularly, so both
networks treat the image as one periodic cell, as the generated structures and the FFT
solver that labels them do.

Training (:mod:`deepmat.train.generative`) uses the Wasserstein loss with gradient penalty
(Gulrajani et al. 2017),

    L_D = E[D(G(z))] − E[D(x)] + λ E[(‖∇_x̂ D(x̂)‖ − 1)²],   L_G = −E[D(G(z))],

where x̂ lies on segments between real and generated images, or the hinge loss
L_D = E[relu(1 − D(x))] + E[relu(1 + D(G(z)))] with the same penalty.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn


def check_image_size(size: int) -> int:
    """``size`` when it is a power of two of at least 16 (the networks halve it to 4)."""
    if size < 16 or size & (size - 1):
        raise ValueError(f"image size must be a power of two of at least 16, got {size}")
    return size


class Generator(nn.Module):
    """z (n, latent_dim) → logits of phase 1, (n, 1, size, size)."""

    def __init__(self, latent_dim: int = 16, size: int = 64, width: int = 32):
        super().__init__()
        self.latent_dim, self.size = latent_dim, check_image_size(size)
        blocks = int(math.log2(size // 4))
        channels = [width * 2 ** (blocks - i) for i in range(blocks + 1)]
        self.stem = nn.Linear(latent_dim, channels[0] * 16)
        layers: list[nn.Module] = [nn.BatchNorm2d(channels[0]), nn.ReLU()]
        for c_in, c_out in itertools.pairwise(channels):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="circular", bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
        layers.append(nn.Conv2d(channels[-1], 1, 3, padding=1, padding_mode="circular"))
        self.body = nn.Sequential(*layers)
        self.start = channels[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(z).view(len(z), self.start, 4, 4))


def downsampling(size: int, width: int) -> tuple[nn.Sequential, int]:
    """Images (n, 1, size, size) → flat features (n, features), and the number of features:
    log₂(size/4) blocks of (4 × 4 circular convolution with stride 2, LeakyReLU 0.2), widths
    doubling from ``width``; the critic's body, and the VAE encoder's."""
    blocks = int(math.log2(check_image_size(size) // 4))
    channels = [1] + [width * 2**i for i in range(blocks)]
    layers: list[nn.Module] = []
    for c_in, c_out in itertools.pairwise(channels):
        layers += [
            nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, padding_mode="circular"),
            nn.LeakyReLU(0.2),
        ]
    return nn.Sequential(*layers, nn.Flatten()), channels[-1] * 16


class Critic(nn.Module):
    """Images (n, 1, size, size) in [0, 1] → scores (n,)."""

    def __init__(self, size: int = 64, width: int = 32):
        super().__init__()
        self.body, features = downsampling(size, width)
        self.head = nn.Linear(features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(-1)


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(‖∇_x̂ D(x̂)‖ − 1)²] at x̂ drawn uniformly on the segments from fake to real images."""
    t = torch.rand(len(real), 1, 1, 1, device=real.device)
    mixed = (t * real + (1 - t) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
