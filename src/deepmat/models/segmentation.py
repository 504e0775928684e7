"""Segmentation networks on the VGG-19 trunk: a U-Net and PixelNet's hypercolumns.

Both read images in [0, 1] of one (grey) or three channels and any size, and give class
scores (logits) per pixel. Their encoder is :class:`~deepmat.models.vgg.VGG19Features`,
from ImageNet weights (installed offline) or randomly initialised (``pretrained=False``,
the from-scratch baseline of the same architecture).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deepmat.errors import ModelFormatError
from deepmat.models.vgg import (
    BLOCKS,
    IMAGENET_MEAN_BGR,
    VGG19_WIDTHS,
    VGG19Features,
    vgg19_weights,
)

#: the last ReLU of each VGG-19 block: the U-Net's skip connections and PixelNet's hypercolumn
STAGES = tuple(f"relu{block}_{convs}" for block, convs in enumerate(BLOCKS, start=1))


def vgg19_encoder(
    pretrained: bool,
    widths: tuple[int, ...] = VGG19_WIDTHS,
    periodic: bool = False,
    blocks: int = len(BLOCKS),
) -> VGG19Features:
    """The first ``blocks`` blocks of the trunk with ImageNet weights (installed on first
    use), or with blocks of ``widths`` channels initialised at random (Kaiming normal, zero
    biases, ImageNet's mean kept for the input; nothing to install): the from-scratch
    baseline, and the skeleton a saved model's weights are loaded into."""
    if pretrained:
        return VGG19Features(vgg19_weights(), pooling="max", periodic=periodic, blocks=blocks)
    weights = {"mean_bgr": torch.tensor(IMAGENET_MEAN_BGR)}
    channels, k = 3, 0
    for width, convs in zip(widths[:blocks], BLOCKS[:blocks], strict=True):
        for _ in range(convs):
            kernel = torch.empty(width, channels, 3, 3)
            weights[f"conv{k}.weight"] = nn.init.kaiming_normal_(kernel, nonlinearity="relu")
            weights[f"conv{k}.bias"] = torch.zeros(width)
            channels, k = width, k + 1
    return VGG19Features(weights, pooling="max", periodic=periodic, blocks=blocks)


def _conv_block(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(n_in, n_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(n_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(n_out, n_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(n_out),
        nn.ReLU(inplace=True),
    )


class VGGUNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) with VGG-19's first D blocks as its encoder (D the
    encoder's blocks, 2–5).

    With e_b the last activation of encoder block b (resolution H/2^(b−1)), the decoder runs
    d_D = e_D and d_b = ConvBlock([Up(d_{b+1}), e_b]) for b = D−1 … 1 (Up: bilinear ×2,
    [·,·]: channel concatenation, ConvBlock: two 3×3 convolutions with batch norm and ReLU,
    of the last D−1 widths of ``decoder``), and the logits are a 1×1 convolution of d₁.
    Images are padded (reflection) to a multiple of 2^(D−1) and the logits cropped back.
    """

    def __init__(
        self,
        n_classes: int,
        encoder: VGG19Features,
        decoder: tuple[int, ...] = (256, 128, 64, 32),
    ):
        super().__init__()
        self.encoder = encoder
        widths = encoder.widths
        if not 2 <= len(widths) <= len(decoder) + 1:
            raise ModelFormatError(
                f"a U-Net on {len(widths)} encoder blocks needs {len(widths) - 1} decoder "
                f"widths (2 to 5 blocks); got {decoder}"
            )
        self.stages = STAGES[: len(widths)]
        blocks, below = [], widths[-1]
        for skip, width in zip(reversed(widths[:-1]), decoder[1 - len(widths) :], strict=True):
            blocks.append(_conv_block(below + skip, width))
            below = width
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(below, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        multiple = 2 ** (len(self.stages) - 1)
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        features = self.encoder(x, self.stages)
        h = features[self.stages[-1]]
        for block, stage in zip(self.decoder, reversed(self.stages[:-1]), strict=True):
            skip = features[stage]
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], dim=1))
        return self.head(h)[..., :height, :width]


class HypercolumnNet(nn.Module):
    """PixelNet (Bansal et al. 2017), as DeCost et al. segmented steel micrographs.

    A pixel's *hypercolumn* is the concatenation of the encoder's activations at its
    position at the end of every encoder block (bilinearly interpolated from the coarser maps);
    an MLP (1,024 → 1,024 units, ReLU, dropout) maps it to class logits. Training samples a
    subset of pixels per image (``pixels``), which is what makes it affordable; inference
    runs on every pixel in chunks of rows.
    """

    def __init__(
        self, n_classes: int, encoder: VGG19Features, hidden: int = 1024, dropout: float = 0.5
    ):
        super().__init__()
        self.encoder = encoder
        self.stages = STAGES[: len(encoder.widths)]
        self.mlp = nn.Sequential(
            nn.Linear(sum(encoder.widths), hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )

    def hypercolumns(self, features: dict, points: torch.Tensor, size) -> torch.Tensor:
        """(B, P, ΣC) features at ``points`` (B, P, 2) of (row, column) pixel coordinates
        of an image of ``size`` (H, W)."""
        height, width = size
        grid = torch.stack(
            [(points[..., 1] + 0.5) / width * 2 - 1, (points[..., 0] + 0.5) / height * 2 - 1],
            dim=-1,
        ).unsqueeze(1)
        sampled = [
            F.grid_sample(features[s], grid, mode="bilinear", align_corners=False)
            for s in self.stages
        ]
        return torch.cat(sampled, dim=1).squeeze(2).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, pixels: torch.Tensor | None = None, rows_per_chunk: int = 32
    ) -> torch.Tensor:
        """Logits (B, P, K) at ``pixels`` (B, P, 2), or (B, K, H, W) at every pixel."""
        size = x.shape[-2:]
        features = self.encoder(x, self.stages)
        if pixels is not None:
            return self.mlp(self.hypercolumns(features, pixels.to(x.dtype), size))
        height, width = size
        columns = torch.arange(width, device=x.device, dtype=x.dtype)
        chunks = []
        for start in range(0, height, rows_per_chunk):
            rows = torch.arange(start, min(start + rows_per_chunk, height), device=x.device)
            grid = torch.stack(torch.meshgrid(rows.to(x.dtype), columns, indexing="ij"), -1)
            points = grid.reshape(1, -1, 2).expand(x.shape[0], -1, -1)
            logits = self.mlp(self.hypercolumns(features, points, size))
            chunks.append(logits.transpose(1, 2).reshape(x.shape[0], -1, len(rows), width))
        return torch.cat(chunks, dim=2)
