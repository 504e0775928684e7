"""Tiled prediction covers any image and equals the network's own output where it is local."""

import numpy as np
import pytest
import torch

from deepmat.errors import ConfigError
from deepmat.train.tiling import predict_tiled, window_starts


def pointwise(x: torch.Tensor) -> torch.Tensor:
    """A network whose output at a pixel depends on that pixel only: tiling cannot change it."""
    return torch.cat([x.mean(1, keepdim=True), 1 - x.mean(1, keepdim=True)], dim=1)


def test_windows_cover_the_length_and_the_last_ends_at_the_border():
    assert window_starts(100, 40, 10) == [0, 30, 60]
    assert window_starts(30, 40, 10) == [0]
    for length in (64, 77, 512, 1000):
        starts = window_starts(length, 64, 16)
        assert starts[0] == 0 and starts[-1] + 64 == length
        assert all(np.diff(starts) <= 48)


@pytest.mark.parametrize("shape", [(1, 50, 70), (3, 20, 90), (1, 16, 16)])
def test_a_pointwise_network_gives_the_same_scores_tiled(shape):
    image = torch.rand(shape)
    tiled = predict_tiled(pointwise, image, tile=32, overlap=8, batch_size=3)
    assert tiled.shape == (2, *shape[1:])
    torch.testing.assert_close(tiled, pointwise(image[None])[0])


def test_blending_removes_the_seams_of_a_position_dependent_network():
    def edgy(x):  # an output that depends on where the pixel sits in its window
        rows = torch.linspace(0, 1, x.shape[-2])[None, None, :, None]
        return torch.cat([rows.expand(x.shape[0], 1, -1, x.shape[-1])] * 2, dim=1)

    tiled = predict_tiled(edgy, np.zeros((1, 100, 40), np.float32), tile=40, overlap=20)
    jumps = tiled[0].diff(dim=0).abs().max()
    assert jumps < 0.2  # a single window's rows step by 1/39; seams would jump by ~1
    with pytest.raises(ConfigError, match="overlap in"):
        predict_tiled(pointwise, torch.rand(1, 8, 8), tile=16, overlap=16)
