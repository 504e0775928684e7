"""Networks from a two-phase microstructure to its local strain field (localization).

Under a macroscopic uniaxial strain ε̄11 a linear-elastic composite carries a local strain
field ε11(x) that depends on the whole structure, but mostly on the neighbourhood of x.
Two ways to learn the map:

:class:`SliceCNN`, after Yang et al. (Acta Mater. 166, 335, 2019), predicts one voxel at a
time from its periodic s×s×s neighbourhood N (see :mod:`deepmat.represent.neighbourhoods`).
The s slices perpendicular to the loading axis 1 become the s channels of an s×s image, so
2-D convolutions see the whole block at a fraction of the cost of 3-D ones:

.. math::

    h_0 = (N[a, :, :])_{a=0}^{s-1},\\qquad
    h_l = P\\big(\\mathrm{ReLU}(K_l * h_{l-1} + \\beta_l)\\big),\\qquad
    \\hat\\varepsilon = W_{out}\\,\\mathrm{MLP}(\\mathrm{vec}\\, h_L) + b_{out},

with zero-padded "same" k×k convolutions K_l (the block is not periodic; its edges are the
edges of the neighbourhood), 2×2 max pooling P of stride 2 and ReLU fully connected layers.
The paper's best network had six layers, two convolutional and two fully connected;
:data:`SLICE_CNN_PAPER` is this reconstruction's size for it (the widths are not given in
the review), :data:`SLICE_CNN_SMALL` one that trains on two CPU cores.

:class:`StrainFCN` predicts the whole field at once: a fully convolutional 3-D network of
circular (periodic) convolutions, so its output commutes with every periodic translation of
the input. A 3×3×3 lifting convolution is followed by residual blocks of dilated 3×3×3
convolutions and a 1×1×1 read-out,

.. math::

    h_0 = \\mathrm{ReLU}(K_0 \\circledast m),\\qquad
    h_l = h_{l-1} + \\mathrm{ReLU}(K_l \\circledast_{d_l} h_{l-1} + \\beta_l),\\qquad
    \\hat\\varepsilon(x) = w^\\top h_L(x) + b,

where :math:`(K \\circledast_d h)(x) = \\sum_{|t|_\\infty \\le k/2} K(t)\\, h((x + d\\,t)
\\bmod n)`. Its receptive field has the edge 1 + 2⌊k/2⌋(1 + Σ d_l): 33 voxels for the default
dilations (1, 2, 4, 8), more than the 11³ neighbourhood of the slice CNN and the whole 21³
cell. Weights start from He (Kaiming) normal initialisation, biases from zero.

A local kernel, however dilated, sees the rest of the cell only through a few sparse taps,
while the strain of a stiff inclusion is a long-range elastic interaction: the
first-order MKS localization is exactly a convolution over the whole cell. With
``modes = m > 0`` every block therefore adds a global spectral convolution, as in the
Fourier neural operator (Li et al., ICLR 2021),

.. math::

    h_l = h_{l-1} + \\mathrm{ReLU}\\big(K_l \\circledast_{d_l} h_{l-1}
        + \\mathcal{F}^{-1}[R_l(k)\\, \\mathcal{F}[h_{l-1}](k)] + \\beta_l\\big),

with a learned complex channel-mixing matrix :math:`R_l(k)` at every frequency with
:math:`|k_1|, |k_2| \\le m`, :math:`0 \\le k_3 \\le m` (the others are left to the local
kernel). It is periodic by construction, so the network still commutes with translations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from deepmat.errors import ConfigError
from deepmat.models.layers import dense_layers, he_init


@dataclass(frozen=True)
class SliceCNNSpec:
    """Neighbourhood edge, 2-D convolution channels, kernel size, hidden FC widths, dropout."""

    size: int = 11
    channels: tuple[int, ...] = (16, 32)
    fc_widths: tuple[int, ...] = (128, 64)
    kernel_size: int = 3
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.size < 1 or self.size % 2 == 0:
            raise ConfigError(f"size must be a positive odd integer, got {self.size}")
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(f"channels must be positive integers, got {self.channels}")
        if self.fc_widths and min(self.fc_widths) < 1:
            raise ConfigError(f"fc_widths must be positive integers, got {self.fc_widths}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd, got {self.kernel_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout {self.dropout} is not in [0, 1)")

    def to_dict(self) -> dict:
        return {"kind": "slice-cnn"} | asdict(self)

    @classmethod
    def from_dict(cls, spec: dict) -> SliceCNNSpec:
        spec = {k: v for k, v in spec.items() if k != "kind"}
        spec["channels"] = tuple(spec["channels"])
        spec["fc_widths"] = tuple(spec["fc_widths"])
        return cls(**spec)


SLICE_CNN_PAPER = SliceCNNSpec(size=11, channels=(128, 256), fc_widths=(2048, 1024))
SLICE_CNN_SMALL = SliceCNNSpec()


class SliceCNN(nn.Module):
    """(batch, s, s, s) neighbourhoods → (batch, 1) strain of the centre voxel."""

    def __init__(self, spec: SliceCNNSpec = SLICE_CNN_SMALL):
        super().__init__()
        self.spec = spec
        widths = (spec.size, *spec.channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, spec.kernel_size, padding=spec.kernel_size // 2)
            for a, b in pairwise(widths)
        )
        edge = spec.size
        for _ in spec.channels:
            edge = max(edge // 2, 1)
        width = spec.channels[-1] * edge * edge
        self.head = nn.Sequential(
            nn.Flatten(), *dense_layers(width, spec.fc_widths, spec.dropout, 1)
        )
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-3:] != (self.spec.size,) * 3:
            raise ValueError(
                f"SliceCNN expects (batch, {self.spec.size}, {self.spec.size}, "
                f"{self.spec.size}) neighbourhoods, got {tuple(x.shape)}"
            )
        h = x.float()
        for conv in self.convs:
            h = torch.relu(conv(h))
            window = min(2, h.shape[-1])
            h = F.max_pool2d(h, window, window)
        return self.head(h)


@dataclass(frozen=True)
class StrainFCNSpec:
    """Feature channels, dilations of the residual blocks, kernel size, Fourier modes kept
    by each block's spectral convolution (0: none), input channels (1: the phase map; 2 for
    the hybrid, which also reads the solver's strain estimate)."""

    channels: int = 12
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    kernel_size: int = 3
    modes: int = 0
    in_channels: int = 1

    def __post_init__(self) -> None:
        if self.channels < 1 or self.in_channels < 1:
            raise ConfigError(
                "channels and in_channels must be positive integers, "
                f"got {self.channels} and {self.in_channels}"
            )
        if self.modes < 0:
            raise ConfigError(f"modes must be a non-negative integer, got {self.modes}")
        if not self.dilations or min(self.dilations) < 1:
            raise ConfigError(f"dilations must be positive integers, got {self.dilations}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd, got {self.kernel_size}")

    def to_dict(self) -> dict:
        return {"kind": "strain-fcn"} | asdict(self)

    @classmethod
    def from_dict(cls, spec: dict) -> StrainFCNSpec:
        spec = {k: v for k, v in spec.items() if k != "kind"}
        spec["dilations"] = tuple(spec["dilations"])
        return cls(**spec)

    @property
    def receptive_field(self) -> int:
        """Edge, in voxels, of the block of input voxels that one output voxel sees through
        the local convolutions (with ``modes > 0`` the spectral ones see the whole cell)."""
        return 1 + 2 * (self.kernel_size // 2) * (1 + sum(self.dilations))


STRAIN_FCN_SMALL = StrainFCNSpec()
STRAIN_FNO = StrainFCNSpec(channels=16, dilations=(1, 2, 4, 1, 2, 4), modes=4)


def circular_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Wrap ``pad`` voxels around each of the last three axes (any pad, even beyond n)."""
    for axis in (-3, -2, -1):
        n = x.shape[axis]
        x = x.index_select(axis, torch.arange(-pad, n + pad, device=x.device) % n)
    return x


class PeriodicConv3d(nn.Conv3d):
    """A 3-D convolution on one period of a periodic field: output grid = input grid."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(circular_pad(x, self.dilation[0] * (self.kernel_size[0] // 2)))


class SpectralConv3d(nn.Module):
    """A periodic convolution whose kernel is band-limited to the lowest ``modes``
    frequencies per axis, applied as a product in Fourier space (float32 FFTs).

    On a grid too coarse to hold them all, an axis keeps the frequencies it has (up to
    ⌊(n − 1)/2⌋ on the first two axes, ⌊n/2⌋ on the last), so any grid works.
    """

    def __init__(self, channels: int, modes: int):
        super().__init__()
        self.modes = modes
        size = (channels, channels, 2 * modes + 1, 2 * modes + 1, modes + 1, 2)
        self.weight = nn.Parameter(torch.randn(size) / channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        grid, m = h.shape[-3:], self.modes
        m1, m2 = (min(m, (n - 1) // 2) for n in grid[:2])
        m3 = min(m, grid[2] // 2)
        k1, k2 = (
            torch.arange(-k, k + 1, device=h.device) % n
            for k, n in zip((m1, m2), grid[:2], strict=True)
        )
        index = (k1[:, None, None], k2[None, :, None], torch.arange(m3 + 1, device=h.device))
        weight = torch.view_as_complex(self.weight)[
            :, :, m - m1 : m + m1 + 1, m - m2 : m + m2 + 1, : m3 + 1
        ]
        spectrum = torch.fft.rfftn(h.float(), dim=(-3, -2, -1))
        mixed = torch.einsum("bixyz,oixyz->boxyz", spectrum[(..., *index)], weight)
        out = torch.zeros_like(spectrum)
        out[(..., *index)] = mixed
        return torch.fft.irfftn(out, s=grid, dim=(-3, -2, -1))


class StrainFCN(nn.Module):
    """(batch, in_channels, n1, n2, n3) phase map (and inputs) → (batch, 1, n1, n2, n3)
    strain field."""

    def __init__(self, spec: StrainFCNSpec = STRAIN_FCN_SMALL):
        super().__init__()
        self.spec = spec
        c, k = spec.channels, spec.kernel_size
        self.lift = PeriodicConv3d(spec.in_channels, c, k)
        self.blocks = nn.ModuleList(PeriodicConv3d(c, c, k, dilation=d) for d in spec.dilations)
        self.spectral = nn.ModuleList(
            SpectralConv3d(c, spec.modes) for _ in spec.dilations if spec.modes > 0
        )
        self.readout = nn.Conv3d(c, 1, 1)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.lift(x.float()))
        for i, block in enumerate(self.blocks):
            update = block(h)
            if self.spectral:
                update = update + self.spectral[i](h)
            h = h + torch.relu(update)
        return self.readout(h)
