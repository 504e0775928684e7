"""Segmentation scores against hand counts and segmentation-models-pytorch's pooled IoU."""

import numpy as np
import pytest

from deepmat.errors import DataError
from deepmat.train.segmentation_metrics import confusion_matrix, segmentation_metrics


def test_iou_per_class_their_mean_and_pixel_accuracy_by_hand():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    prediction = np.array([[0, 1, 1, 1], [0, 0, 1, 2]])
    scores = segmentation_metrics([truth], [prediction], ["a", "b", "c"])
    # a: 3 hits, union 4; b: 3 hits, union 5; c: 0 hits, union 1
    assert scores["per_class_iou"] == pytest.approx({"a": 0.75, "b": 0.6, "c": 0.0})
    assert scores["miou"] == pytest.approx(0.45)
    assert scores["pixel_accuracy"] == pytest.approx(6 / 8)


def test_pixels_pool_over_images_and_absent_classes_do_not_count():
    a = segmentation_metrics([np.zeros((2, 2), int)], [np.zeros((2, 2), int)], ["x", "y"])
    assert a["per_class_iou"] == {"x": 1.0, "y": None} and a["miou"] == 1.0
    big, small = np.zeros((10, 10), int), np.ones((1, 2), int)
    scores = segmentation_metrics([big, small], [big, np.zeros((1, 2), int)], ["x", "y"])
    assert scores["per_class_iou"]["x"] == pytest.approx(100 / 102)
    assert scores["n_pixels"] == 102 and scores["n"] == 2


def test_pooled_iou_is_the_one_hot_iou_summed_over_channels_and_pixels():
    rng = np.random.default_rng(0)
    truth, prediction = rng.integers(0, 3, (2, 16, 16)), rng.integers(0, 3, (2, 16, 16))
    one_hot_truth, one_hot_prediction = np.eye(3)[truth], np.eye(3)[prediction]
    intersection = (one_hot_truth * one_hot_prediction).sum()
    union = one_hot_truth.sum() + one_hot_prediction.sum() - intersection
    scores = segmentation_metrics(list(truth), list(prediction), ["a", "b", "c"])
    assert scores["pooled_iou"] == pytest.approx(intersection / union)


def test_shape_and_label_mismatches_are_named():
    with pytest.raises(DataError, match=r"image 0: the prediction is \(2, 3\)"):
        confusion_matrix([np.zeros((2, 2), int)], [np.zeros((2, 3), int)], 2)
    with pytest.raises(DataError, match=r"prediction has labels outside 0…1: \[5\]"):
        confusion_matrix([np.zeros((2, 2), int)], [np.full((2, 2), 5)], 2)
