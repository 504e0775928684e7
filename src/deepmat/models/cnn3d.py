"""3-D convolutional networks from a voxel microstructure to one effective property.

A :class:`CNN3DSpec` lists the channels of the convolution blocks, the kernel size, the
widths of the hidden fully connected layers and their dropout. Block ``b`` maps the
feature map :math:`h_{b-1}` (channels :math:`c_{b-1}`, :math:`h_0` the phase indicator
with one channel) to

.. math::

    h_b = P\\big(\\mathrm{ReLU}(\\mathrm{BN}(K_b \\circledast h_{b-1} + \\beta_b))\\big),
    \\qquad (K \\circledast h)_o(x) = \\sum_{c}\\sum_{|s|_\\infty \\le k/2}
    K_{o,c}(s)\\, h_c\\big((x + s) \\bmod n\\big),

a periodic ("circular") convolution, then :math:`2\\times2\\times2` max or average pooling
:math:`P` with stride 2 (the window is clipped to the grid once an axis is down to one
voxel, so any grid size works), with batch norm BN optional. A microstructure volume
element is one period of an infinite periodic medium, which the effective stiffness is
defined for: zero padding would invent a boundary that the physics does not have, and
circular padding makes every convolution commute with periodic translations. After the
last block a global average over the remaining voxels gives one vector per sample
(:math:`c_B` features, whatever the grid), and fully connected ReLU layers with dropout
map it to the output,

.. math::

    z_0 = \\tfrac{1}{|\\Omega_B|}\\textstyle\\sum_x h_B(x),\\qquad
    z_l = \\mathrm{dropout}(\\mathrm{ReLU}(W_l z_{l-1} + b_l)),\\qquad
    \\hat y = W_{out} z_L + b_{out}.

The global average makes the output exactly invariant to translations of the input by
multiples of the total pooling stride :math:`2^B`. Weights start from He (Kaiming)
normal initialisation, biases from zero, as in :mod:`deepmat.models.mlp`.

:data:`HOMOGENIZATION_PAPER` is the size of the homogenization network of Yang et al.
(Comput. Mater. Sci. 151, 278, 2018): five blocks of 3x3x3 convolutions with 16, 32, 64,
128 and 256 channels, each followed by 2x2x2 pooling, and two fully connected layers of
2048 and 1024 units; on a 51^3 grid the pooling leaves 51→25→12→6→3→1 voxels per axis
and the network has 3,801,505 weights, the "about 3.8 million" reported. (The channel
and layer widths are this reconstruction's, chosen to match that count and the 14-layer
description.) :data:`HOMOGENIZATION_SMALL` is a network of ~50 k weights that trains on
two CPU cores in minutes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from deepmat.errors import ConfigError
from deepmat.models.layers import dense_layers, he_init

POOLINGS = ("max", "avg")


@dataclass(frozen=True)
class CNN3DSpec:
    """Convolution channels per block, kernel size, pooling, hidden FC widths, dropout."""

    channels: tuple[int, ...]
    fc_widths: tuple[int, ...]
    kernel_size: int = 3
    pooling: str = "max"
    batch_norm: bool = False
    dropout: float = 0.0
    out_features: int = 1

    def __post_init__(self) -> None:
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(f"channels must be positive integers, got {self.channels}")
        if self.fc_widths and min(self.fc_widths) < 1:
            raise ConfigError(f"fc_widths must be positive integers, got {self.fc_widths}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(
                f"kernel_size must be odd (keeps the grid size), got {self.kernel_size}"
            )
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling {self.pooling!r} is not one of {POOLINGS}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout {self.dropout} is not in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, spec: dict) -> CNN3DSpec:
        spec = dict(spec)
        spec["channels"] = tuple(spec["channels"])
        spec["fc_widths"] = tuple(spec["fc_widths"])
        return cls(**spec)

    @property
    def stride(self) -> int:
        """Total pooling stride 2^blocks: shifts by its multiples leave the output unchanged."""
        return 2 ** len(self.channels)


HOMOGENIZATION_PAPER = CNN3DSpec(channels=(16, 32, 64, 128, 256), fc_widths=(2048, 1024))
HOMOGENIZATION_SMALL = CNN3DSpec(channels=(8, 16, 16, 32, 32), fc_widths=(64, 32))


class ConvBlock(nn.Module):
    """Circular convolution, optional batch norm, ReLU, then stride-2 pooling."""

    def __init__(self, in_channels: int, out_channels: int, spec: CNN3DSpec):
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            spec.kernel_size,
            padding=spec.kernel_size // 2,
            padding_mode="circular",
            bias=not spec.batch_norm,
        )
        self.norm = nn.BatchNorm3d(out_channels) if spec.batch_norm else nn.Identity()
        self.pool = F.max_pool3d if spec.pooling == "max" else F.avg_pool3d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm(self.conv(x)))
        window = tuple(min(2, n) for n in x.shape[-3:])
        return self.pool(x, window, window)


class HomogenizationCNN(nn.Module):
    """A 3-D CNN from a :class:`CNN3DSpec`: (batch, 1, n1, n2, n3) → (batch, out_features)."""

    def __init__(self, spec: CNN3DSpec = HOMOGENIZATION_SMALL):
        super().__init__()
        self.spec = spec
        widths = (1, *spec.channels)
        self.blocks = nn.Sequential(*(ConvBlock(a, b, spec) for a, b in pairwise(widths)))
        self.head = nn.Sequential(
            *dense_layers(spec.channels[-1], spec.fc_widths, spec.dropout, spec.out_features)
        )
        he_init(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's feature maps, (batch, channels[-1], m1, m2, m3)."""
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(-3, -2, -1)))


def count_parameters(net: nn.Module) -> int:
    """Number of trainable weights."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
