"""Focal, Dice + cross-entropy and class weights on hand-made logits."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from deepmat.errors import ConfigError
from deepmat.train.segmentation_losses import (
    IGNORE,
    SegmentationLoss,
    inverse_frequency_weights,
)


def test_focal_with_gamma_zero_and_no_weights_is_cross_entropy():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5))
    focal = SegmentationLoss("focal", gamma=0.0)(logits, labels)
    torch.testing.assert_close(focal, F.cross_entropy(logits, labels))


def test_focal_weighs_confident_pixels_less_than_cross_entropy_does():
    logits = torch.tensor([[[[4.0, 0.0]], [[0.0, 0.0]]]])  # pixel 0 confident, pixel 1 not
    labels = torch.tensor([[[0, 0]]])
    per_pixel = F.cross_entropy(logits, labels, reduction="none")[0, 0]
    p = torch.softmax(logits, dim=1)[0, 0, 0]
    expected = ((1 - p) ** 2 * per_pixel).mean()
    torch.testing.assert_close(SegmentationLoss("focal")(logits, labels), expected)


def test_inverse_frequency_weights_favour_rare_classes_and_ignore_unlabelled_pixels():
    labels = np.array([[0, 0, 0, 1], [0, 0, 0, IGNORE]])
    weights = inverse_frequency_weights([labels], 3)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[1] == pytest.approx(6 * weights[0])  # 6 pixels of class 0, 1 of class 1
    assert weights[2] > weights[1]  # absent: the floor's weight


def test_dice_ce_is_near_zero_for_a_perfect_prediction_and_ignores_unlabelled_pixels():
    labels = torch.tensor([[[0, 1], [1, IGNORE]]])
    logits = F.one_hot(labels.where(labels != IGNORE, 0), 2).movedim(-1, 1).float() * 50
    assert float(SegmentationLoss("dice_ce")(logits, labels)) < 1e-3
    assert float(SegmentationLoss("ce", weights=[1.0, 3.0])(logits, labels)) < 1e-3
    with pytest.raises(ConfigError, match="'lovasz' is not one of"):
        SegmentationLoss("lovasz")
