"""Training augmentation of micrograph tiles, with albumentations.

Each tile and its labels take one of the square's eight symmetries (``D4``: micrographs
have no preferred orientation); the image alone then takes a random brightness and
contrast, gamma, local histogram equalisation (CLAHE), Gaussian blur and Gaussian noise,
so that a model sees the detector and imaging conditions vary as they do between
sessions. Intensities stay in [0, 1]; padding labels (255) move with the image.
"""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch


def micrograph_transform(seed: int | None = None) -> A.Compose:
    """The albumentations pipeline applied to every training tile, its draws seeded."""
    return A.Compose(
        [
            A.D4(p=1.0),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.2, p=0.8),
            A.RandomGamma(gamma_limit=(80, 125), p=0.5),
            A.CLAHE(clip_limit=(1.0, 3.0), p=0.2),
            A.GaussianBlur(sigma_limit=(0.3, 1.0), p=0.2),
            A.GaussNoise(std_range=(0.0, 0.03), p=0.5),
        ],
        seed=seed,
    )


class MicrographAugment:
    """A batch of tiles (B, C, H, W) in [0, 1] and labels (B, H, W) through
    :func:`micrograph_transform`, one draw per tile (picklable, as the trainer needs);
    a ``seed`` makes a training run repeatable."""

    def __init__(self, seed: int | None = None) -> None:
        self.transform = micrograph_transform(seed)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for image, mask in zip(x.cpu().numpy(), y.cpu().numpy(), strict=True):
            out = self.transform(image=np.ascontiguousarray(image.transpose(1, 2, 0)), mask=mask)
            image = np.clip(out["image"], 0.0, 1.0)
            images.append(image.reshape((*image.shape[:2], -1)))
            labels.append(out["mask"])
        x_out = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())
        return x_out.to(x.device), torch.from_numpy(np.stack(labels)).to(y.device)
