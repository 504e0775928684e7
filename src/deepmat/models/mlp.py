"""Fully connected networks described by data, ElemNet among them.

An :class:`MLPSpec` is a list of blocks ``(width, depth, dropout)``; the network is

.. math::

    h_0 = x,\\qquad h_{l} = \\mathrm{ReLU}(W_l h_{l-1} + b_l),\\qquad
    \\hat y = W_{out} h_L + b_{out},

with dropout (rate ``p``) applied after the last layer of every block that has
``dropout > 0``. A block with ``residual`` adds each layer's input to its output where
the two have the same width, :math:`h_l = h_{l-1} + \\mathrm{ReLU}(W_l h_{l-1} + b_l)`
(the weights keep their names, so a card without ``residual`` loads as before).

Weights start from He (Kaiming) normal initialisation,
:math:`W \\sim \\mathcal N(0, 2/n_{in})`, biases from zero: it keeps the variance of
the activations constant through ReLU layers, which a 17-layer network needs to
start learning at once (PyTorch's default shrinks the signal at every layer).
Because the architecture is plain data, a search can vary it and a saved model's
card can rebuild it.

ElemNet (Jha et al., Sci. Rep. 8, 17593, 2018) is the 17-layer spec
1024x4, 512x3, 256x3, 128x3, 64x2, 32x1, 1 with dropout rates 0.2, 0.1, 0.3, 0.2
(keep probabilities 0.8, 0.9, 0.7, 0.8) after the first four blocks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from deepmat.models.layers import he_init


@dataclass(frozen=True)
class Block:
    """``depth`` fully connected layers of ``width`` units, then dropout at ``dropout``;
    with ``residual``, skip connections around the layers whose input has ``width`` units."""

    width: int
    depth: int = 1
    dropout: float = 0.0
    residual: bool = False


@dataclass(frozen=True)
class MLPSpec:
    """Input size, hidden blocks and output size of a fully connected network."""

    in_features: int
    blocks: tuple[Block, ...]
    out_features: int = 1

    def to_dict(self) -> dict:
        """The spec as a card stores it (``residual`` only where a block has it)."""
        spec = asdict(self)
        for block in spec["blocks"]:
            if not block["residual"]:
                del block["residual"]
        return spec

    @classmethod
    def from_dict(cls, spec: dict) -> MLPSpec:
        blocks = tuple(Block(**b) for b in spec["blocks"])
        return cls(spec["in_features"], blocks, spec.get("out_features", 1))

    def build(self) -> MLP:
        return MLP(self)

    @property
    def n_layers(self) -> int:
        """Number of weight layers, the output layer included (ElemNet: 17)."""
        return sum(b.depth for b in self.blocks) + 1


ELEMNET_BLOCKS = (
    Block(1024, 4, 0.2),
    Block(512, 3, 0.1),
    Block(256, 3, 0.3),
    Block(128, 3, 0.2),
    Block(64, 2),
    Block(32, 1),
)
ELEMNET = MLPSpec(in_features=86, blocks=ELEMNET_BLOCKS)


class MLP(nn.Module):
    """A ReLU network built from an :class:`MLPSpec`; returns shape (n, out_features)."""

    def __init__(self, spec: MLPSpec):
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        #: positions in ``layers`` of the Linear layers whose input is added to their ReLU's output
        self.skips: frozenset[int] = frozenset()
        width = spec.in_features
        for block in spec.blocks:
            for _ in range(block.depth):
                if block.residual and width == block.width:
                    self.skips |= {len(layers)}
                layers += [nn.Linear(width, block.width), nn.ReLU()]
                width = block.width
            if block.dropout > 0:
                layers.append(nn.Dropout(block.dropout))
        layers.append(nn.Linear(width, spec.out_features))
        self.layers = nn.Sequential(*layers)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.skips:
            return self.layers(x)
        skipped = None
        for position, layer in enumerate(self.layers):
            if position in self.skips:
                skipped = x
            x = layer(x)
            if skipped is not None and isinstance(layer, nn.ReLU):
                x, skipped = x + skipped, None
        return x
