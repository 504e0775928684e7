"""Building blocks every network here shares: the fully connected head and He initialisation.

The convolutional networks (3-D homogenization CNN, slice CNN, orientation CNN) all end in
fully connected ReLU layers with optional dropout and a linear output, and every network
starts from He (Kaiming) normal weights with zero biases, which keeps the variance of ReLU
activations constant through depth at initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def dense_layers(
    width: int, hidden: Sequence[int], dropout: float, out_features: int
) -> list[nn.Module]:
    """Linear+ReLU (+ dropout) for each of the ``hidden`` widths, then a linear output."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, out_features))
    return layers


def he_init(net: nn.Module) -> None:
    """He (Kaiming) normal weights for ReLU and zero biases on every linear and conv layer."""
    for module in net.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
