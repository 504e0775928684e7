"""Reading micrographs and masks, class maps, and the named micrograph sets."""

import numpy as np
import pytest
from PIL import Image

from deepmat.data.micrographs import (
    METALDAM_VAL,
    NASA_SUPER,
    ClassMap,
    load_micrographs,
    read_image,
    read_pairs,
)
from deepmat.data.registry import find_dataset_file
from deepmat.errors import DataError, DataNotFoundError

GREY = ClassMap(("a", "b", "c"), (0, 1, 2))


def save(array, path):
    Image.fromarray(array).save(path)
    return path


def superalloy_pair(folder, name="s1", size=8):
    """An SEM image and a NASA-style mask: red and blue precipitates painted over the image."""
    rng = np.random.default_rng(0)
    grey = rng.integers(60, 200, size=(size, size), dtype=np.uint8)
    (folder / "train").mkdir(parents=True, exist_ok=True)
    (folder / "train_annot").mkdir(exist_ok=True)
    save(np.stack([grey] * 3, axis=-1), folder / "train" / f"{name}.tif")
    mask = np.stack([grey] * 3, axis=-1)
    mask[:2, :2] = (255, 0, 0)
    mask[-3:, -3:] = (0, 0, 255)
    save(mask, folder / "train_annot" / f"{name}_mask.tif")
    return grey


def test_nasa_masks_paint_precipitates_and_every_other_colour_is_the_matrix(tmp_path):
    grey = superalloy_pair(tmp_path)
    (pair,) = read_pairs(tmp_path / "train", tmp_path / "train_annot", NASA_SUPER, "_mask")
    assert pair.image.shape == (8, 8) and pair.image.dtype == np.float32  # RGB of equal channels
    np.testing.assert_allclose(pair.image, grey / 255, atol=1e-6)
    assert (pair.labels[:2, :2] == 1).all() and (pair.labels[-3:, -3:] == 2).all()
    assert np.bincount(pair.labels.ravel()).tolist() == [64 - 4 - 9, 4, 9]


def test_unknown_mask_values_are_reported_with_their_pixel_counts(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "m").mkdir()
    save(np.zeros((4, 5), np.uint8), tmp_path / "im" / "x.png")
    mask = np.zeros((4, 5), np.uint8)
    mask[0, :3] = 7
    mask[1, 0] = 9
    save(mask, tmp_path / "m" / "x.png")
    with pytest.raises(DataError, match=r"x\.png: 4 pixels .*\(2 values; 7: 3 px, 9: 1 px\)"):
        read_pairs(tmp_path / "im", tmp_path / "m", GREY)


def test_sizes_crops_and_missing_or_unreadable_files_are_clear_errors(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "m").mkdir()
    save(np.zeros((10, 6), np.uint8), tmp_path / "im" / "x.png")
    save(np.ones((8, 6), np.uint8), tmp_path / "m" / "x.png")
    with pytest.raises(DataError, match=r"the image is 10×6 .* mask x\.png is 8×6"):
        read_pairs(tmp_path / "im", tmp_path / "m", GREY)
    (pair,) = read_pairs(tmp_path / "im", tmp_path / "m", GREY, crop_bottom=2)
    assert pair.image.shape == (8, 6) and (pair.labels == 1).all()
    (pair,) = read_pairs(tmp_path / "im", tmp_path / "m", GREY, crop_to_mask=True)
    assert pair.image.shape == (8, 6)
    with pytest.raises(DataError, match="cannot crop 10 rows"):
        read_image(tmp_path / "im" / "x.png", crop_bottom=10)
    save(np.zeros((10, 6), np.uint8), tmp_path / "im" / "y.png")
    with pytest.raises(DataNotFoundError, match=r"y\.png: no mask y\.\*"):
        read_pairs(tmp_path / "im", tmp_path / "m", GREY, crop_to_mask=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        read_pairs(tmp_path / "empty", tmp_path / "m", GREY)
    (tmp_path / "im" / "z.png").write_text("not an image")
    with pytest.raises(DataError, match=r"z\.png: not a readable image"):
        read_image(tmp_path / "im" / "z.png")


def test_16_bit_tiffs_scale_to_one_and_a_physical_resolution_gives_the_pixel_size(tmp_path):
    array = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    path = tmp_path / "deep.tif"
    Image.fromarray(array).save(path, resolution=10_000.0, resolution_unit=3)  # px per cm
    micrograph = read_image(path)
    np.testing.assert_allclose(micrograph.image, array / 65535, atol=1e-6)
    assert micrograph.pixel_size == pytest.approx(1.0)  # 10,000 px per cm: 1 µm
    Image.fromarray(array).save(tmp_path / "plain.tif", dpi=(72, 72))
    assert read_image(tmp_path / "plain.tif").pixel_size is None  # a writer's default


def test_colour_images_stay_rgb_and_a_map_refuses_masks_of_the_other_kind(tmp_path):
    rgb = np.zeros((3, 3, 3), np.uint8)
    rgb[..., 0] = 200
    assert read_image(save(rgb, tmp_path / "c.png")).image.shape == (3, 3, 3)
    with pytest.raises(DataError, match="grey mask, but the class map names RGB"):
        NASA_SUPER.labels(np.zeros((3, 3), np.uint8), "m.png")
    with pytest.raises(DataError, match="colour mask, but the class map names grey"):
        GREY.labels(rgb, "m.png")
    assert ClassMap.from_dict(NASA_SUPER.to_dict()) == NASA_SUPER


def test_named_sets_are_found_in_the_data_folder(tmp_path, monkeypatch):
    superalloy_pair(tmp_path / "micrographs" / "nasa" / "Super1", "a")
    monkeypatch.setenv("DEEPMAT_DATA_DIR", str(tmp_path))
    (pair,) = load_micrographs("nasa-super1", "train")
    assert pair.name == "a" and set(np.unique(pair.labels)) == {0, 1, 2}
    with pytest.raises(DataError, match="splits train, val, not 'test'"):
        load_micrographs("nasa-super1", "test")
    with pytest.raises(DataNotFoundError, match="nasa/Super2"):
        load_micrographs("nasa-super2", "train")


@pytest.mark.skipif(
    find_dataset_file("micrographs/metaldam/labels") is None,
    reason="MetalDAM not in the data folders (set DEEPMAT_DATA_DIR to ../shared/data)",
)
def test_metaldam_splits_into_27_and_7_with_the_information_band_cut_to_the_labels():
    train, val = load_micrographs("metaldam", "train"), load_micrographs("metaldam", "val")
    assert (len(train), len(val)) == (27, 7)
    assert {m.name for m in val} == set(METALDAM_VAL)
    assert all(m.image.ndim == 2 and m.image.shape == m.labels.shape for m in train + val)
