"""The segmentation estimator learns a rule on micrographs drawn here, saves and reloads."""

import dataclasses

import numpy as np
import pytest

import deepmat
from deepmat.data.micrographs import ClassMap, Micrograph
from deepmat.errors import DataError
from deepmat.train import save_model
from deepmat.train.estimator import UncertaintyUnavailable
from deepmat.train.segmentation import SegmentationModel, SegmentationSpec

CLASSES = ClassMap(("matrix", "particle"), (0, 1))
SMALL = SegmentationSpec(pretrained=False, widths=(4,) * 5, decoder=(8, 8, 8, 8), tile=32)


def micrographs(n, seed, size=(40, 56)):
    """Dark images with bright discs: the discs are the particles."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: size[0], : size[1]]
    out = []
    for k in range(n):
        labels = np.zeros(size, np.uint8)
        for _ in range(4):
            r, c, radius = rng.integers(0, size[0]), rng.integers(0, size[1]), rng.integers(3, 7)
            labels[(rows - r) ** 2 + (cols - c) ** 2 <= radius**2] = 1
        image = 0.25 + 0.5 * labels + 0.05 * rng.normal(size=size)
        out.append(Micrograph(f"m{k}", np.clip(image, 0, 1).astype(np.float32), labels))
    return out


def model(spec=SMALL, epochs=25, **options):
    return SegmentationModel.from_preset(
        "default",
        config={"epochs": epochs, "lr": 1e-2, "batch_size": 4, "progress": False},
        class_map=CLASSES,
        spec=spec,
        **options,
    )


def test_a_unet_learns_bright_particles_and_reloads_with_the_same_labels(tmp_path):
    train, val = micrographs(6, 0), micrographs(2, 1)
    fitted = model().fit(train, val=val, workdir=tmp_path / "work")
    scores = fitted.metrics["val"]
    assert scores["miou"] > 0.8 and scores["per_class_iou"]["particle"] > 0.7
    assert fitted.class_weights[1] > fitted.class_weights[0]  # focal α: particles are rarer
    curve = fitted.training["curve"]  # whole validation images every third epoch, and the last
    assert [p["epoch"] for p in curve] == [3, 6, 9, 12, 15, 18, 21, 24, 25]
    steps = [p["step"] for p in curve]
    assert steps == sorted(set(steps))
    assert curve[-1]["miou"] > 0.7 and 0 < curve[-1]["pooled_iou"] <= 1
    save_model(fitted, tmp_path / "seg")
    loaded = deepmat.load(tmp_path / "seg")
    big = micrographs(1, 2, size=(75, 90))[0]  # larger than a tile, not a multiple of it
    (mine,), (theirs,) = fitted.predict([big]), loaded.predict([big])
    assert mine.shape == (75, 90) and np.array_equal(mine, theirs)
    assert loaded.evaluate(val)["miou"] == pytest.approx(scores["miou"])
    with pytest.raises(UncertaintyUnavailable):
        loaded.predict([big], return_std=True)


def test_a_finished_run_fitted_again_keeps_its_learning_curve(tmp_path):
    train, val = micrographs(2, 0), micrographs(1, 1)
    first = model(epochs=4).fit(train, val=val, workdir=tmp_path, curve_points=2)
    again = model(epochs=4).fit(train, val=val, workdir=tmp_path, curve_points=2)
    assert [p["epoch"] for p in first.training["curve"]] == [2, 4]
    assert again.training["curve"] == first.training["curve"]


def test_pixelnet_trains_on_sampled_pixels_and_labels_whole_images(tmp_path):
    spec = dataclasses.replace(SMALL, kind="pixelnet", hidden=16, pixels=64)
    fitted = model(spec, epochs=2).fit(micrographs(2, 0), val=micrographs(1, 1), curve_points=0)
    assert fitted.training["curve"] == []
    (labels,) = fitted.predict([np.zeros((20, 33), np.float32)])
    assert labels.shape == (20, 33) and set(np.unique(labels)) <= {0, 1}


def test_a_model_on_resized_images_labels_every_pixel_of_the_originals(tmp_path):
    train, val = micrographs(6, 0, size=(80, 112)), micrographs(2, 1, size=(80, 112))
    half = dataclasses.replace(SMALL, scale=0.5)
    images, labels = model(half).tiles(train[:1], stride=32)
    assert images.shape == (4, 1, 32, 32) and labels.shape == (4, 32, 32)  # 40 × 56 px
    fitted = model(half, epochs=30).fit(train, val=val)
    (predicted,) = fitted.predict(val[:1])
    assert predicted.shape == (80, 112)
    assert fitted.metrics["val"]["per_class_iou"]["particle"] > 0.5  # 0.64-0.65 over seeds here


def test_augmentation_moves_labels_with_their_pixels_and_keeps_intensities_in_range():
    torch = pytest.importorskip("torch")
    from deepmat.train.segmentation_augment import MicrographAugment

    tiles = micrographs(8, 3, size=(32, 32))
    x = torch.from_numpy(np.stack([m.image[None] for m in tiles]))
    y = torch.from_numpy(np.stack([m.labels for m in tiles]))
    x_aug, y_aug = MicrographAugment()(x, y)
    assert x_aug.shape == x.shape and y_aug.shape == y.shape and y_aug.dtype == y.dtype
    assert float(x_aug.min()) >= 0.0 and float(x_aug.max()) <= 1.0
    for image, labels in zip(x_aug[:, 0].numpy(), y_aug.numpy(), strict=True):
        assert image[labels == 1].mean() > image[labels == 0].mean() + 0.1  # still on the discs
    assert np.array_equal(np.bincount(y_aug.numpy().ravel()), np.bincount(y.numpy().ravel()))


def test_bad_training_data_is_refused_with_the_image_named():
    estimator = model(epochs=1)
    with pytest.raises(DataError, match="needs labelled validation micrographs"):
        estimator.fit(micrographs(1, 0))
    unlabelled = Micrograph("u", np.zeros((32, 32), np.float32), source="u.png")
    with pytest.raises(DataError, match=r"u\.png: training needs its mask"):
        estimator.fit([unlabelled], val=micrographs(1, 0))
    wrong = micrographs(1, 0)[0]
    wrong.labels = wrong.labels * 3
    with pytest.raises(DataError, match="m0: label 3 for 2 classes"):
        estimator.fit([wrong], val=micrographs(1, 0))
    with pytest.raises(DataError, match=r"expected \(H, W\) grey or \(H, W, 3\) RGB"):
        estimator.predict([np.zeros((4, 5, 2), np.float32)])
