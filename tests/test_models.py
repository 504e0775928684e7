"""Networks described by data: the ElemNet spec and the MLP built from any spec."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

from deepmat.models import ELEMNET, MLP, Block, MLPSpec

ELEMNET_WIDTHS = [86] + [1024] * 4 + [512] * 3 + [256] * 3 + [128] * 3 + [64] * 2 + [32, 1]


def test_elemnet_spec():
    assert ELEMNET.in_features == 86
    assert ELEMNET.out_features == 1
    assert ELEMNET.n_layers == 17
    assert len(ELEMNET_WIDTHS) - 1 == 17


def test_elemnet_network_layers_and_parameters():
    net = MLP(ELEMNET)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 17
    assert [m.in_features for m in linears] == ELEMNET_WIDTHS[:-1]
    assert [m.out_features for m in linears] == ELEMNET_WIDTHS[1:]
    expected = sum(a * b + b for a, b in itertools.pairwise(ELEMNET_WIDTHS))
    assert sum(p.numel() for p in net.parameters()) == expected
    assert round(expected / 1e6, 2) == 4.63


def test_elemnet_dropout_order():
    net = MLP(ELEMNET)
    dropouts = [m.p for m in net.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.2, 0.1, 0.3, 0.2]
    # dropout follows the last layer of its block (after the 4th, 7th, 10th, 13th layers)
    kinds = [type(m).__name__ for m in net.layers]
    linear_count, after = 0, []
    for kind in kinds:
        linear_count += kind == "Linear"
        if kind == "Dropout":
            after.append(linear_count)
    assert after == [4, 7, 10, 13]
    assert kinds[-1] == "Linear"  # no activation on the output


def test_spec_round_trip():
    spec = MLPSpec(10, (Block(8, 2, 0.1), Block(4)), out_features=2)
    data = json.loads(json.dumps(spec.to_dict()))  # as stored in a model card
    assert data == {
        "in_features": 10,
        "blocks": [
            {"width": 8, "depth": 2, "dropout": 0.1},
            {"width": 4, "depth": 1, "dropout": 0.0},
        ],
        "out_features": 2,
    }
    assert MLPSpec.from_dict(data) == spec
    assert MLPSpec.from_dict(spec.to_dict()) == spec
    assert MLPSpec.from_dict(ELEMNET.to_dict()) == ELEMNET


def test_output_shape():
    torch.manual_seed(0)
    net = MLP(MLPSpec(86, (Block(16, 2, 0.2), Block(8))))
    assert net(torch.rand(5, 86)).shape == (5, 1)
    two = MLP(MLPSpec(3, (Block(4),), out_features=2))
    assert two(torch.rand(7, 3)).shape == (7, 2)
    assert MLP(ELEMNET).eval()(torch.rand(3, 86)).shape == (3, 1)


def test_eval_mode_is_deterministic():
    torch.manual_seed(0)
    net = MLP(MLPSpec(6, (Block(16, 1, 0.5),))).eval()
    x = torch.rand(4, 6)
    assert torch.equal(net(x), net(x))


def test_he_initialisation_keeps_the_signal_through_seventeen_layers():
    torch.manual_seed(0)
    net = MLP(ELEMNET).eval()
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    for m in linears:
        assert m.weight.std().item() == pytest.approx((2 / m.in_features) ** 0.5, rel=0.1)
    x = torch.rand(2048, 86)
    x = x / x.sum(1, keepdim=True)
    scales = []
    h = x
    with torch.no_grad():
        for layer in net.layers:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                scales.append(h.pow(2).mean().sqrt().item())
    # PyTorch's default initialisation shrinks this ratio below 1e-4 over 16 layers
    assert 0.1 < scales[-1] / scales[0] < 10
