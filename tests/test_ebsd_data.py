"""EBSD pattern data: detector and noise specs, orientation sampling, simulation, the HDF5
format and its checks, and the dictionary-indexing baseline (tiny 20×20 detectors)."""

from __future__ import annotations

import shutil

import h5py
import kikuchipy as kp
import numpy as np
import pytest
from orix.quaternion import Orientation, Rotation
from orix.quaternion.orientation_region import OrientationRegion
from orix.quaternion.symmetry import Oh

from deepmat.data.ebsd import (
    PatternDataset,
    combine_pattern_sets,
    read_pattern_dataset,
    save_pattern_dataset,
    write_pattern_dataset,
)
from deepmat.data.ebsd_simulation import (
    DetectorSpec,
    NoiseSpec,
    apply_noise,
    master_pattern,
    sample_orientations,
    simulate_patterns,
)
from deepmat.data.voxels import write_voxel_dataset
from deepmat.errors import ConfigError, DataError
from deepmat.train.dictionary import dictionary_index

SPEC = DetectorSpec(shape=(20, 20))
NOISE = NoiseSpec(counts=50, gaussian_sigma=0.05, background=0.5)


def in_fundamental_zone(rotations: Rotation) -> np.ndarray:
    return rotations < OrientationRegion.from_symmetry(Oh)


@pytest.fixture(scope="module")
def grid() -> tuple[Rotation, np.ndarray]:
    """A 10° grid over the m-3m zone (791 rotations) and its clean 20×20 patterns."""
    rotations = sample_orientations(resolution_deg=10)
    return rotations, simulate_patterns(rotations, SPEC)


@pytest.fixture(scope="module")
def pattern_file(tmp_path_factory) -> tuple:
    """Five noisy patterns written in three chunks by two threads."""
    rotations = sample_orientations(n=5, seed=1)
    path = tmp_path_factory.mktemp("ebsd") / "set.h5"
    report = write_pattern_dataset(
        path, rotations, SPEC, NOISE, seed=3, chunk_size=2, workers=2, progress=False
    )
    return path, rotations, report


def test_detector_spec_round_trip_and_detector():
    spec = DetectorSpec()
    assert spec.shape == (60, 60) and spec.pc == (0.425, 0.213, 0.501)
    assert DetectorSpec.from_dict(SPEC.to_dict()) == SPEC
    detector = SPEC.detector()
    assert isinstance(detector, kp.detectors.EBSDDetector)
    assert detector.shape == (20, 20) and detector.sample_tilt == 70
    np.testing.assert_allclose(detector.pc[0], SPEC.pc)
    with pytest.raises(ConfigError, match="detector shape must be 2 positive"):
        DetectorSpec(shape=(0, 20))
    with pytest.raises(ConfigError, match="PCz must be positive"):
        DetectorSpec(pc=(0.5, 0.5, 0.0))
    with pytest.raises(ConfigError, match=r"unknown detector spec keys \['pcx'\]"):
        DetectorSpec.from_dict({"pcx": 0.5})


def test_simulated_patterns_shape_dtype_and_determinism():
    rotations = sample_orientations(n=4, seed=1)
    patterns = simulate_patterns(rotations, SPEC)
    assert patterns.shape == (4, 20, 20) and patterns.dtype == np.float32
    assert np.isfinite(patterns).all() and (patterns.std(axis=(1, 2)) > 1).all()
    np.testing.assert_array_equal(patterns, simulate_patterns(rotations, SPEC))
    assert not np.allclose(patterns[0], patterns[1])
    with pytest.raises(DataError, match="rotations must be an orix Rotation"):
        simulate_patterns(np.zeros((2, 4)), SPEC)


def test_noise_identity_noisy_and_reproducible():
    clean = simulate_patterns(sample_orientations(n=3, seed=2), SPEC)
    np.testing.assert_array_equal(apply_noise(clean, NoiseSpec()), clean)
    np.testing.assert_array_equal(apply_noise(clean, None), clean)
    noisy = apply_noise(clean, NOISE, seed=7)
    assert noisy.dtype == np.float32 and not np.allclose(noisy, clean)
    np.testing.assert_array_equal(noisy, apply_noise(clean, NOISE, seed=7))
    assert not np.allclose(noisy, apply_noise(clean, NOISE, seed=8))
    camera = apply_noise(clean, NoiseSpec(counts=20, output="uint8"))
    assert camera.dtype == np.uint8 and camera.min() == 0 and camera.max() == 255
    assert NoiseSpec.from_dict(NOISE.to_dict()) == NOISE and NoiseSpec().is_identity
    with pytest.raises(ConfigError, match="counts must be positive"):
        NoiseSpec(counts=0)
    with pytest.raises(ConfigError, match="output must be one of float, uint8"):
        NoiseSpec(output="uint16")
    with pytest.raises(DataError, match="pattern 1 holds NaN"):
        apply_noise(np.where(np.arange(3)[:, None, None] == 1, np.nan, clean), NOISE)


def test_fundamental_zone_sampling():
    coarse, fine = sample_orientations(resolution_deg=15), sample_orientations(resolution_deg=10)
    assert 0 < coarse.size < fine.size
    assert in_fundamental_zone(coarse).all() and in_fundamental_zone(fine).all()
    drawn = sample_orientations(n=50, seed=4)
    assert drawn.shape == (50,) and in_fundamental_zone(drawn).all()
    np.testing.assert_array_equal(drawn.data, sample_orientations(n=50, seed=4).data)
    assert not np.allclose(drawn.data, sample_orientations(n=50, seed=5).data)
    with pytest.raises(ConfigError, match="exactly one of resolution_deg"):
        sample_orientations(resolution_deg=10, n=5)
    with pytest.raises(ConfigError, match="exactly one of resolution_deg"):
        sample_orientations()
    with pytest.raises(ConfigError, match="must name a crystallographic point group"):
        sample_orientations(n=5, symmetry="cubic-ish")


def test_dataset_round_trip_equals_direct_simulation(pattern_file):
    path, rotations, report = pattern_file
    data = read_pattern_dataset(path)
    assert len(data) == report.n == 5 and "5 EBSD patterns of 20×20" in report.summary()
    np.testing.assert_array_equal(
        data.patterns, simulate_patterns(rotations, SPEC, noise=NOISE, seed=3)
    )
    np.testing.assert_array_equal(data.rotations.data, rotations.data)
    assert data.detector == SPEC and data.noise == NOISE
    assert data.attrs["format"] == "deepmat-ebsd-patterns" and data.attrs["complete"]
    assert data.attrs["symmetry"] == "m-3m" and data.attrs["master"]["phase"] == "ni"
    with h5py.File(path) as file:
        assert file["patterns"].chunks[1:] == (20, 20)


def test_a_set_assembled_in_memory_saves_and_reads_back_as_it_is(pattern_file, tmp_path):
    """Two noise levels in one set (the EBSD benchmark's validation set) keep their patterns,
    rotations, detector and attributes through the file."""
    path, rotations, _ = pattern_file
    noisy = read_pattern_dataset(path)
    clean = simulate_patterns(rotations, SPEC)
    mixed = np.where(np.arange(5)[:, None, None] % 2 == 0, clean, noisy.patterns)
    attrs = noisy.attrs | {"noise_levels": ["none", "counts_50"]}
    dataset = PatternDataset(mixed.astype(np.float32), rotations, SPEC, attrs=attrs)
    back = read_pattern_dataset(save_pattern_dataset(tmp_path / "mixed.h5", dataset))
    np.testing.assert_array_equal(back.patterns, dataset.patterns)
    np.testing.assert_array_equal(back.rotations.data, rotations.data)
    assert back.detector == SPEC and back.noise is None
    assert back.attrs["noise_levels"] == ["none", "counts_50"] and back.attrs["complete"]


def replace(name: str, array: np.ndarray):
    def mutate(file: h5py.File) -> None:
        del file[name]
        file[name] = array

    return mutate


def set_pixel_nan(file: h5py.File) -> None:
    file["patterns"][2, 3, 4] = np.nan


def truncate(*names: str):
    def mutate(file: h5py.File) -> None:
        for name in names:
            file[name].resize(0 if len(names) == 2 else 4, axis=0)

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (replace("patterns", np.zeros((5, 400), np.float32)), r"must be \(n, height, width\)"),
        (replace("patterns", np.zeros((5, 10, 10), np.float32)), "are 10×10 but the detector"),
        (set_pixel_nan, "pattern 2 holds NaN"),
        (truncate("patterns", "rotations"), "holds no patterns"),
        (truncate("rotations"), "'patterns' has 5 patterns but 'rotations' has 4 rows"),
    ],
)
def test_bad_dataset_errors_name_the_file(pattern_file, tmp_path, mutate, message):
    path = tmp_path / "bad.h5"
    shutil.copy(pattern_file[0], path)
    with h5py.File(path, "r+") as file:
        mutate(file)
    with pytest.raises(DataError, match=message) as error:
        read_pattern_dataset(path)
    assert str(path) in str(error.value)


def test_not_a_pattern_dataset(tmp_path):
    with pytest.raises(DataError, match=r"missing\.h5: no such file"):
        read_pattern_dataset(tmp_path / "missing.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(DataError, match=r"text\.h5: not an HDF5 file"):
        read_pattern_dataset(text)
    voxels = write_voxel_dataset(tmp_path / "voxels.h5", np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(DataError, match=r"not an EBSD pattern data set \(format 'deepmat-voxels'"):
        read_pattern_dataset(voxels)


def test_master_pattern_default_and_bad_files(tmp_path):
    master = master_pattern()
    assert master.projection == "lambert" and master.hemisphere == "both"
    assert master.phase.point_group.name == "m-3m"
    with pytest.raises(DataError, match=r"nowhere\.h5: no such file"):
        master_pattern(tmp_path / "nowhere.h5")
    ebsd = tmp_path / "ebsd.h5"
    kp.signals.EBSD(np.zeros((2, 5, 5), np.float32)).save(ebsd)
    with pytest.raises(DataError, match=r"ebsd\.h5: holds EBSD, not an EBSD master pattern"):
        master_pattern(ebsd)


def test_dictionary_indexing_recovers_grid_orientations(grid):
    rotations, patterns = grid
    chosen = [3, 100, 400]
    result = dictionary_index(patterns[chosen], (patterns, rotations), keep_n=2)
    np.testing.assert_array_equal(result.indices[:, 0], chosen)
    np.testing.assert_allclose(result.scores[:, 0], 1, atol=1e-5)
    assert (result.scores[:, 1] < 0.99).all()
    np.testing.assert_allclose(result.best.data, rotations[chosen].data)
    assert result.rotations.shape == (3, 2)
    assert result.settings == {
        "metric": "ncc",
        "keep_n": 2,
        "dictionary_size": rotations.size,
        "n_per_iteration": rotations.size,
    }


def test_dictionary_indexing_off_grid_finds_nearest_neighbour(grid):
    rotations, patterns = grid
    nudge = Rotation.from_axes_angles([1, 2, 3], 4, degrees=True)
    query = nudge * rotations[[50, 300]]
    dictionary = PatternDataset(patterns, rotations, SPEC)
    result = dictionary_index(simulate_patterns(query, SPEC), dictionary, n_per_iteration=200)
    angles = Orientation(rotations, Oh).angle_with_outer(Orientation(query, Oh), degrees=True)
    # 4° off the grid point, the next grid point 5.1° and 6.2° away: an imperfect match
    np.testing.assert_array_equal(result.indices[:, 0], angles.argmin(axis=0))
    assert (result.scores[:, 0] < 0.9).all()


def test_dictionary_indexing_shape_mismatch(grid):
    rotations, patterns = grid
    small = simulate_patterns(rotations[:2], DetectorSpec(shape=(10, 10)))
    with pytest.raises(DataError, match="query patterns are 10×10 but the dictionary's are 20×20"):
        dictionary_index(small, (patterns, rotations))
    with pytest.raises(DataError, match="791 patterns but 2 rotations"):
        dictionary_index(patterns[:1], (patterns, rotations[:2]))


def test_pattern_sets_of_one_detector_combine_and_others_are_refused():
    rotations = Rotation.identity(3)
    attrs = {"symmetry": "m-3m"}
    clean = PatternDataset(
        np.ones((3, 4, 4), np.float32), rotations, DetectorSpec((4, 4)), None, attrs
    )
    noisy = PatternDataset(
        np.full((3, 4, 4), 7, np.uint8), rotations, DetectorSpec((4, 4)), NoiseSpec(counts=5), attrs
    )
    both = combine_pattern_sets([clean, noisy], ["clean.h5", "noisy.h5"])
    assert both.patterns.shape == (6, 4, 4) and both.patterns.dtype == np.float32
    assert both.rotations.size == 6 and both.noise is None and both.attrs == attrs
    assert combine_pattern_sets([noisy, noisy], ["a", "b"]).noise == NoiseSpec(counts=5)
    moved = PatternDataset(
        clean.patterns, rotations, DetectorSpec((4, 4), pc=(0.5, 0.5, 0.5)), attrs=attrs
    )
    with pytest.raises(DataError, match=r"moved.h5: projection centre .* differs from clean.h5"):
        combine_pattern_sets([clean, moved], ["clean.h5", "moved.h5"])
    hexagonal = PatternDataset(
        clean.patterns, rotations, clean.detector, attrs={"symmetry": "6/mmm"}
    )
    with pytest.raises(DataError, match=r"hex.h5: point group 6/mmm is not clean.h5's m-3m"):
        combine_pattern_sets([clean, hexagonal], ["clean.h5", "hex.h5"])


def test_dictionary_indexer_is_an_estimator_like_the_cnn(grid, tmp_path):
    """Fit keeps the dictionary; predict gives reduced orix Orientations; evaluate the
    CNN's disorientation statistics; the saved model indexes as the fitted one."""
    import deepmat
    from deepmat.train import DictionaryIndexer, UncertaintyUnavailable

    rotations, patterns = grid
    chosen = [3, 100, 400]
    indexer = DictionaryIndexer().fit(
        patterns, rotations, val=(patterns[chosen], rotations[chosen])
    )
    assert indexer.metrics["val"]["mean_disorientation_deg"] < 1e-3
    found = indexer.predict(patterns[chosen])
    assert found.symmetry.name == "m-3m" and found.size == 3
    assert indexer.evaluate(patterns[chosen], rotations[chosen])["within_1deg"] == 1.0
    loaded = deepmat.load(indexer.save(tmp_path / "dictionary"))
    np.testing.assert_allclose(loaded.predict(patterns[chosen]).data, found.data)
    with pytest.raises(UncertaintyUnavailable):
        indexer.predict(patterns[chosen], return_std=True)
