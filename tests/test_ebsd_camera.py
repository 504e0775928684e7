"""The camera model of simulated EBSD patterns (CameraSpec: ranges each pattern draws from),
the one preprocessing of simulated and real patterns (PreprocessSpec) and how orientation
models and the indexing workflow carry it (tiny 20×20 and 30×30 detectors, kikuchipy's 3×3
nickel scan)."""

from __future__ import annotations

import json
from dataclasses import replace

import h5py
import kikuchipy as kp
import numpy as np
import pytest
from orix.quaternion import Rotation

import deepmat
from deepmat.data import ebsd_simulation
from deepmat.data.ebsd import read_pattern_dataset, write_pattern_dataset
from deepmat.data.ebsd_camera import (
    CAMERA_PRESETS,
    REALISTIC_CAMERA,
    REALISTIC_CORRECTED_CAMERA,
    CameraSpec,
    camera_draws,
)
from deepmat.data.ebsd_simulation import (
    DetectorSpec,
    NoiseSpec,
    apply_noise,
    sample_orientations,
    simulate_patterns,
)
from deepmat.errors import ConfigError, DataError
from deepmat.models.ebsd import OrientationCNNSpec
from deepmat.represent.patterns import (
    BACKGROUND_CORRECTION,
    STANDARDIZE,
    PreprocessSpec,
    standardize_patterns,
)
from deepmat.train.config import TrainConfig
from deepmat.train.ebsd import OrientationCNNRegressor
from deepmat.train.saved import save_model
from deepmat.workflows.ebsd import index_with_model, prepare_scan, scan_from_signal

SPEC = DetectorSpec(shape=(30, 30))
TINY = OrientationCNNSpec(pattern_shape=(20, 20), channels=(8, 16), fc_widths=(32,))
CAMERA = CameraSpec(
    background=(1.0, 4.0),
    background_x=(-0.3, 0.3),
    blur=(0.0, 1.0),
    counts=(100.0, 1000.0),
    read_noise=(0.0, 0.02),
    hot_pixels=(0.0, 0.01),
    pc_jitter=(0.01, 0.01, 0.01),
    tilt_jitter=1.0,
    binning=2,
    output="uint8",
)


@pytest.fixture(scope="module")
def clean() -> tuple[Rotation, np.ndarray]:
    rotations = sample_orientations(n=6, seed=2)
    return rotations, simulate_patterns(rotations, SPEC)


@pytest.fixture(scope="module")
def nickel() -> kp.signals.EBSD:
    return kp.data.nickel_ebsd_small()


def high_frequency_energy(patterns: np.ndarray) -> float:
    """Mean squared difference of neighbouring pixels, on standardised patterns."""
    x = standardize_patterns(patterns)[:, 0]
    return float(np.mean(np.diff(x, axis=1) ** 2) + np.mean(np.diff(x, axis=2) ** 2))


def ncc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of pattern pairs."""
    return (standardize_patterns(a)[:, 0] * standardize_patterns(b)[:, 0]).mean(axis=(1, 2))


# ------------------------------------------------------------------ camera: off and on


def test_a_camera_with_every_range_off_changes_nothing(clean):
    rotations, patterns = clean
    hump_only = CameraSpec(background_x=(-0.5, 0.5), background_width=(0.3, 2.0), gain=1.0)
    for camera in (CameraSpec(), CAMERA_PRESETS["off"], hump_only):
        assert camera.is_identity and not camera.has_geometry
        np.testing.assert_array_equal(apply_noise(patterns, camera, seed=4), patterns)
        np.testing.assert_array_equal(simulate_patterns(rotations, SPEC, noise=camera), patterns)
    assert not REALISTIC_CAMERA.is_identity and REALISTIC_CAMERA.has_geometry
    assert not CameraSpec(gamma=(1.0, 1.2)).is_identity


def test_a_noise_spec_is_the_camera_it_converts_to_bit_for_bit(clean):
    _, patterns = clean
    for noise in (
        NoiseSpec(counts=50, gaussian_sigma=0.05, background=0.5),
        NoiseSpec(counts=20, output="uint8"),
        NoiseSpec(gaussian_sigma=0.1, background=2.0, output="uint8"),
    ):
        camera = noise.to_camera()
        assert camera.counts in (None, (noise.counts, noise.counts))
        np.testing.assert_array_equal(
            apply_noise(patterns, noise, seed=7), apply_noise(patterns, camera, seed=7)
        )


def test_each_pattern_draws_its_own_values_within_the_ranges():
    draws = camera_draws(REALISTIC_CAMERA, 50, seed=3)
    for name in ("background", "blur", "counts", "gain", "gamma", "vignetting"):
        values = np.array([getattr(d, name) for d in draws])
        low, high = getattr(REALISTIC_CAMERA, name)
        assert (values >= low).all() and (values <= high).all() and np.ptp(values) > 0
    shifts = np.array([d.pc_shift for d in draws])
    assert (np.abs(shifts) <= 0.005).all() and (shifts.std(axis=0) > 0).all()
    assert camera_draws(REALISTIC_CAMERA, 5, seed=3, start=45) == draws[45:]
    # one range's width never moves another's values: the same numbers feed every field
    narrower = replace(REALISTIC_CAMERA, counts=None, gamma=(1.0, 1.0))
    assert [d.blur for d in camera_draws(narrower, 50, seed=3)] == [d.blur for d in draws]
    assert camera_draws(narrower, 1, seed=3)[0].counts is None


# ------------------------------------------------------------------ each effect


def test_the_background_hump_sits_where_drawn_and_scales_with_the_amplitude(clean):
    flat = np.ones((2, 30, 30))
    right = apply_noise(flat, CameraSpec(background=2.0, background_x=0.6))
    column = right[0].mean(axis=0)
    assert column.argmax() > 20 and right[0].max() == pytest.approx(3, rel=0.01)
    _, patterns = clean
    brighter = apply_noise(patterns, CameraSpec(background=3.0))
    assert (brighter.mean(axis=(1, 2)) > patterns.mean(axis=(1, 2)) + patterns.max() / 2).all()
    tilted = apply_noise(flat, CameraSpec(background=1.0, background_gradient=0.5), seed=1)
    assert not np.allclose(tilted[0], tilted[0].T)  # the plane breaks the hump's symmetry


def test_blur_lowers_the_high_frequency_energy(clean):
    _, patterns = clean
    blurred = apply_noise(patterns, CameraSpec(blur=1.5))
    assert high_frequency_energy(blurred) < 0.5 * high_frequency_energy(patterns)


def test_vignetting_darkens_the_corners_by_the_fraction_asked():
    out = apply_noise(np.ones((1, 31, 31)), CameraSpec(vignetting=0.3))[0]
    assert out[15, 15] == pytest.approx(1.0)
    assert out[0, 0] == pytest.approx(0.7) and out[-1, -1] == pytest.approx(0.7)


def test_shot_noise_and_read_noise_and_gain(clean):
    _, patterns = clean
    peak = patterns.max(axis=(1, 2), keepdims=True)

    def deviation(camera: CameraSpec) -> float:
        return float(np.abs(apply_noise(patterns, camera, seed=5) - patterns).mean())

    assert deviation(CameraSpec(counts=10_000)) < 0.2 * deviation(CameraSpec(counts=30))
    read = apply_noise(patterns, CameraSpec(read_noise=0.05), seed=5) - patterns
    np.testing.assert_allclose((read / peak).std(), 0.05, rtol=0.05)
    # gain acts before the read-out noise: a high gain lifts the signal above it
    noisy = [
        apply_noise(patterns, CameraSpec(read_noise=0.2, gain=gain), seed=5) for gain in (0.25, 4)
    ]
    errors = [
        np.abs(standardize_patterns(n) - standardize_patterns(patterns)).mean() for n in noisy
    ]
    assert errors[1] < 0.3 * errors[0]


def test_gamma_moves_the_histogram_the_expected_way(clean):
    _, patterns = clean

    def mean_fraction(gamma: float) -> float:
        out = apply_noise(patterns, CameraSpec(gamma=gamma))
        return float((out / out.max(axis=(1, 2), keepdims=True)).mean())

    assert mean_fraction(2.0) < mean_fraction(1.0) < mean_fraction(0.5)


def test_hot_and_dead_pixels_appear_at_about_the_fraction_asked():
    patterns = simulate_patterns(sample_orientations(n=20, seed=3), SPEC)
    assert patterns.min() > 0  # so pixels at exactly 0 are dead ones
    out = apply_noise(patterns, CameraSpec(hot_pixels=0.02, dead_pixels=0.01), seed=2)
    saturated = np.mean(out == out.max(axis=(1, 2), keepdims=True))
    assert saturated == pytest.approx(0.02, abs=0.006)
    assert np.mean(out == 0) == pytest.approx(0.01, abs=0.004)
    eight_bit = apply_noise(patterns, CameraSpec(hot_pixels=0.02, output="uint8"), seed=2)
    assert np.mean(eight_bit == 255) == pytest.approx(0.02, abs=0.006)


def neighbour_correlation(images: np.ndarray) -> float:
    """The mean correlation of horizontally neighbouring pixels."""
    return float(np.mean([np.corrcoef(x[:, :-1].ravel(), x[:, 1:].ravel())[0, 1] for x in images]))


def test_texture_adds_a_correlated_field_of_the_amplitude_asked(clean):
    _, patterns = clean
    added = {}
    for width in (0.5, 2.0):
        camera = CameraSpec(texture=0.2, texture_width=width)
        added[width] = apply_noise(patterns, camera, seed=1).astype(np.float64) - patterns
        spread = added[width].std(axis=(1, 2)) / patterns.max(axis=(1, 2))
        np.testing.assert_allclose(spread, 0.2, rtol=1e-6)
    assert neighbour_correlation(added[2.0]) > 0.8 > neighbour_correlation(added[0.5]) > 0.2


def test_static_removal_takes_the_background_and_its_bad_pixels_away(clean):
    _, patterns = clean
    camera = CameraSpec(background=(2.0, 4.0), hot_pixels=0.01, blur=0.5)
    kept = apply_noise(patterns, camera, seed=1)
    removed = apply_noise(patterns, replace(camera, static_removed=True), seed=1)
    blurred = apply_noise(patterns, CameraSpec(blur=0.5), seed=1)
    assert ncc(removed, blurred).min() > 0.999 and ncc(kept, blurred).max() < 0.8
    assert (kept == kept.max(axis=(1, 2), keepdims=True)).sum() > 0.005 * kept.size
    off = replace(camera, static_removed=True, static_mismatch=1.1)
    assert ncc(apply_noise(patterns, off, seed=1), blurred).max() < 0.95
    # vignetting and gamma act on bands and background together: the bands stay modulated
    shaded = replace(camera, vignetting=0.2, gamma=1.25, static_removed=True)
    assert 0.8 < ncc(apply_noise(patterns, shaded, seed=1), blurred).min() < 0.999


def test_projection_centre_jitter_moves_each_pattern_onto_its_drawn_centre(clean):
    rotations, patterns = clean
    still = CameraSpec(pc_jitter=(0.0, 0.0, 0.0), blur=0.0)
    np.testing.assert_array_equal(simulate_patterns(rotations, SPEC, noise=still), patterns)
    jitter = CameraSpec(pc_jitter=(0.02, 0.02, 0.02))
    moved = simulate_patterns(rotations, SPEC, noise=jitter, seed=9)
    assert (np.abs(moved - patterns).max(axis=(1, 2)) > 1).all()
    for i, draw in enumerate(camera_draws(jitter, rotations.size, seed=9)):
        centre = tuple(np.add(SPEC.pc, draw.pc_shift))
        expected = simulate_patterns(rotations[i : i + 1], replace(SPEC, pc=centre))
        np.testing.assert_allclose(moved[i], expected[0], rtol=1e-5, atol=1e-3)


def test_tilt_jitter_is_kikuchipy_detector_tilt(clean):
    rotations, patterns = clean
    tilted = simulate_patterns(rotations, SPEC, noise=CameraSpec(tilt_jitter=2.0), seed=1)
    assert not np.allclose(tilted, patterns)
    for i, draw in enumerate(camera_draws(CameraSpec(tilt_jitter=2.0), rotations.size, seed=1)):
        assert 0 < abs(draw.tilt) <= 2
        expected = simulate_patterns(rotations[i : i + 1], replace(SPEC, tilt=draw.tilt))
        np.testing.assert_allclose(tilted[i], expected[0], rtol=1e-5, atol=1e-3)


def test_binning_averages_a_finer_projection(clean):
    rotations, patterns = clean
    binned = simulate_patterns(rotations, SPEC, noise=CameraSpec(binning=2))
    finer = simulate_patterns(rotations, SPEC, noise=CameraSpec(binning=4))
    assert binned.shape == patterns.shape and not np.allclose(binned, patterns)
    # the same bands, area-averaged: aligned with the point-sampled pattern, converging
    # as the projection gets finer, with less pixel-scale aliasing
    assert (ncc(binned, patterns) > 0.85).all() and (ncc(binned, finer) > 0.98).all()
    assert high_frequency_energy(binned) < high_frequency_energy(patterns)
    with pytest.raises(ConfigError, match="apply it while simulating"):
        apply_noise(patterns, CameraSpec(binning=2))


# ------------------------------------------------------------------ sets and specs


def test_a_camera_set_is_the_same_however_chunked_and_records_its_ranges(tmp_path):
    rotations = sample_orientations(n=5, seed=1)
    path = tmp_path / "camera.h5"
    write_pattern_dataset(
        path, rotations, SPEC, CAMERA, seed=3, chunk_size=2, workers=2, progress=False
    )
    whole = simulate_patterns(rotations, SPEC, noise=CAMERA, seed=3)
    data = read_pattern_dataset(path)
    assert data.patterns.dtype == np.uint8
    np.testing.assert_array_equal(data.patterns, whole)
    assert data.noise == CAMERA and data.attrs["noise"] is None
    assert data.attrs["camera"] == CAMERA.to_dict()
    with h5py.File(path) as file:
        recorded = json.loads(file.attrs["camera"])
    assert recorded["pc_jitter"] == [0.01, 0.01, 0.01] and recorded["counts"] == [100.0, 1000.0]
    assert CameraSpec.from_dict(recorded) == CAMERA


def test_simulation_in_memory_goes_chunk_by_chunk_with_the_same_patterns(monkeypatch):
    rotations = sample_orientations(n=5, seed=1)
    whole = simulate_patterns(rotations, SPEC, noise=CAMERA, seed=3)
    monkeypatch.setattr(ebsd_simulation, "SIMULATION_CHUNK", 2)
    np.testing.assert_array_equal(simulate_patterns(rotations, SPEC, noise=CAMERA, seed=3), whole)


def test_files_from_before_the_camera_model_read_back_their_noise_spec(tmp_path):
    path = tmp_path / "old.h5"
    noise = NoiseSpec(counts=100, background=0.5)
    write_pattern_dataset(path, sample_orientations(n=2, seed=1), SPEC, noise, progress=False)
    with h5py.File(path, "r+") as file:
        assert json.loads(file.attrs["camera"]) is None
        del file.attrs["camera"]  # as written before the camera model
    assert read_pattern_dataset(path).noise == noise


def test_camera_spec_round_trips_and_rejects_bad_ranges():
    assert CameraSpec.from_dict(json.loads(json.dumps(REALISTIC_CAMERA.to_dict()))) == (
        REALISTIC_CAMERA
    )
    assert CameraSpec.preset("realistic") is REALISTIC_CAMERA
    assert CameraSpec.preset("realistic-corrected") is REALISTIC_CORRECTED_CAMERA
    corrected = REALISTIC_CORRECTED_CAMERA.to_dict()
    assert CameraSpec.from_dict(json.loads(json.dumps(corrected))) == REALISTIC_CORRECTED_CAMERA
    assert CameraSpec(blur=0.5).blur == (0.5, 0.5)
    for bad, message in (
        ({"blur": (1.0, 0.5)}, "runs backwards"),
        ({"background": -1.0}, "within"),
        ({"vignetting": 1.5}, "within"),
        ({"gain": 0.0}, "gain must be positive"),
        ({"counts": (0.0, 10.0)}, "counts must be positive"),
        ({"hot_pixels": 0.6, "dead_pixels": 0.6}, "must not exceed 1"),
        ({"pc_jitter": (0.1, -0.1, 0.0)}, "must not be negative"),
        ({"binning": 0}, "binning must be"),
        ({"output": "uint16"}, "output must be one of"),
        ({"texture_width": 0.0}, "texture_width must be positive"),
        ({"static_removed": "yes"}, "static_removed must be true or false"),
        ({"blur": "sharp"}, "blur"),
    ):
        with pytest.raises(ConfigError, match=message):
            CameraSpec(**bad)
    with pytest.raises(ConfigError, match=r"unknown camera spec keys \['noise'\]"):
        CameraSpec.from_dict({"noise": 1})
    with pytest.raises(ConfigError, match="unknown camera preset 'studio'"):
        CameraSpec.preset("studio")


def test_the_realistic_camera_covers_the_real_nickel_patterns(nickel):
    """At the real patterns' orientations, the realistic camera's patterns match their clean
    projections (after dynamic background removal) about as well as the real ones do (after
    static and dynamic removal): the real values sit inside the camera's spread."""
    rotations = Rotation(nickel.xmap.rotations.data)
    detector = DetectorSpec(pc=tuple(nickel.detector.pc_average))
    projections = simulate_patterns(rotations, detector)
    raw = nickel.data.reshape(9, 60, 60)
    dynamic = PreprocessSpec(dynamic="subtract")
    clean_ref = dynamic.apply(projections)
    real = ncc(BACKGROUND_CORRECTION.apply(raw, nickel.static_background), clean_ref)
    camera = replace(REALISTIC_CAMERA, pc_jitter=(0.0, 0.0, 0.0))
    repeated = Rotation(np.tile(rotations.data, (4, 1)))
    simulated = simulate_patterns(repeated, detector, noise=camera, seed=0)
    assert simulated.dtype == np.uint8
    camera_ncc = ncc(dynamic.apply(simulated), np.tile(clean_ref, (4, 1, 1)))
    low, high = np.percentile(camera_ncc, [5, 95])
    assert low < np.median(real) < high


def test_the_corrected_camera_covers_the_real_patterns_once_their_static_background_goes(nickel):
    """After static and dynamic background removal, the real patterns match their clean
    projections to an NCC the corrected camera's spread covers, and what the projection
    leaves is correlated between neighbouring pixels about as much (white noise: 0)."""
    rotations = Rotation(nickel.xmap.rotations.data)
    detector = DetectorSpec(pc=tuple(nickel.detector.pc_average))
    clean_ref = PreprocessSpec(dynamic="subtract").apply(simulate_patterns(rotations, detector))
    real = BACKGROUND_CORRECTION.apply(nickel.data.reshape(9, 60, 60), nickel.static_background)
    camera = replace(REALISTIC_CORRECTED_CAMERA, pc_jitter=(0.0, 0.0, 0.0))
    repeated = Rotation(np.tile(rotations.data, (4, 1)))
    simulated = BACKGROUND_CORRECTION.apply(simulate_patterns(repeated, detector, noise=camera))
    references = np.tile(clean_ref, (4, 1, 1))
    low, high = np.percentile(ncc(simulated, references), [5, 95])
    assert low < np.median(ncc(real, clean_ref)) < high

    def left(images: np.ndarray, references: np.ndarray) -> np.ndarray:
        scale = (images * references).sum(axis=(1, 2)) / (references**2).sum(axis=(1, 2))
        return images - scale[:, None, None] * references

    real_left = neighbour_correlation(left(real, clean_ref))
    assert abs(neighbour_correlation(left(simulated, references)) - real_left) < 0.1
    assert real_left > 0.25


# ------------------------------------------------------------------ preprocessing


def test_the_default_preprocessing_is_standardisation_alone(clean):
    _, patterns = clean
    np.testing.assert_array_equal(STANDARDIZE.apply(patterns), standardize_patterns(patterns)[:, 0])
    assert PreprocessSpec() == STANDARDIZE and STANDARDIZE.steps() == []
    assert not STANDARDIZE.removes_background and BACKGROUND_CORRECTION.removes_background


def test_simulated_and_real_patterns_both_come_out_at_zero_mean_unit_std(nickel):
    simulated = simulate_patterns(sample_orientations(n=4, seed=1), SPEC, noise=CAMERA, seed=2)
    raw = nickel.data.reshape(9, 60, 60)
    full = PreprocessSpec(static="subtract", dynamic="subtract", equalize=True)
    for patterns, static in ((simulated, None), (raw, nickel.static_background)):
        for spec in (BACKGROUND_CORRECTION, full, PreprocessSpec(dynamic="divide")):
            out = spec.apply(patterns, static)
            assert out.shape == patterns.shape and out.dtype == np.float32
            np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-5)
            np.testing.assert_allclose(out.std(axis=(1, 2)), 1, atol=1e-4)
    np.testing.assert_array_equal(raw, nickel.data.reshape(9, 60, 60))  # input untouched
    # the same as kikuchipy's own static and dynamic removal of the 8-bit scan
    reference = nickel.deepcopy()
    reference.remove_static_background(show_progressbar=False)
    reference.remove_dynamic_background(show_progressbar=False)
    ours = BACKGROUND_CORRECTION.apply(raw, nickel.static_background)
    assert (ncc(ours, reference.data.reshape(9, 60, 60)) > 0.999).all()
    assert BACKGROUND_CORRECTION.steps(True)[0] == "static background removed (subtract)"


def test_constant_patterns_stay_zeros_through_the_background_steps(clean):
    _, patterns = clean
    mixed = np.concatenate([patterns[:2], np.full((1, 30, 30), 5.0, np.float32)])
    out = BACKGROUND_CORRECTION.apply(mixed)
    assert np.all(out[2] == 0) and np.isfinite(out).all()


def test_preprocess_spec_round_trips_and_bad_options_are_clear_errors(clean):
    _, patterns = clean
    spec = PreprocessSpec(
        static="divide", dynamic="subtract", dynamic_std=3.0, equalize=True,
        equalize_kernel=(5, 5), equalize_clip=0.01, equalize_bins=64,
    )  # fmt: skip
    assert PreprocessSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ConfigError, match="static must be one of subtract, divide, off"):
        PreprocessSpec(static="median")
    with pytest.raises(ConfigError, match="filter_domain must be one of"):
        PreprocessSpec(filter_domain="wavelet")
    with pytest.raises(ConfigError, match="dynamic_std must be positive"):
        PreprocessSpec(dynamic_std=0)
    with pytest.raises(ConfigError, match="equalize_kernel must be two positive integers"):
        PreprocessSpec(equalize_kernel=(4,))
    with pytest.raises(ConfigError, match=r"unknown preprocess spec keys \['clahe'\]"):
        PreprocessSpec.from_dict({"dynamic": "subtract", "clahe": True})
    with pytest.raises(DataError, match="static background is 20×20 but the patterns are 30×30"):
        BACKGROUND_CORRECTION.apply(patterns, np.ones((20, 20)))
    with pytest.raises(DataError, match="pixel"):
        PreprocessSpec(static="divide").apply(patterns, np.zeros((30, 30)))
    with pytest.raises(DataError, match=r"patterns\[0\] has negative intensities"):
        PreprocessSpec(dynamic="divide").apply(patterns - patterns.max())


# ------------------------------------------------------------------ models and indexing


@pytest.fixture(scope="module")
def trained() -> tuple[OrientationCNNRegressor, np.ndarray]:
    """A 20×20 network trained one epoch on camera patterns through background removal."""
    rotations = sample_orientations(n=96, seed=4)
    camera = replace(CAMERA, binning=1)
    patterns = simulate_patterns(rotations, DetectorSpec(shape=(20, 20)), noise=camera, seed=1)
    config = TrainConfig(epochs=1, batch_size=32, progress=False)
    spec = PreprocessSpec(dynamic="subtract", dynamic_std=3.0)
    model = OrientationCNNRegressor(TINY, config, preprocess=spec)
    return model.fit(patterns[:64], rotations[:64]), patterns[64:]


def test_the_card_round_trips_the_preprocessing_and_predict_applies_it(trained, tmp_path):
    model, patterns = trained
    card = model.card()
    assert card["preprocess"] == model.preprocess.to_dict() and card["preprocess"]["dynamic"]
    json.dumps(card)
    loaded = deepmat.load(save_model(model, tmp_path / "cnn"))
    assert loaded.preprocess == model.preprocess
    np.testing.assert_allclose(
        loaded.predict(patterns).data, model.predict(patterns).data, rtol=1e-8, atol=1e-9
    )
    # predict prepares the patterns: the same network given them prepared, standardising only
    plain = deepmat.load(tmp_path / "cnn")
    plain.preprocess = STANDARDIZE
    prepared = model.preprocess.apply(patterns)
    np.testing.assert_allclose(
        plain.predict(prepared).data, model.predict(patterns).data, rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ConfigError, match="preprocess must be a PreprocessSpec"):
        OrientationCNNRegressor(TINY, preprocess={"dynamic": "subtract"})


def test_a_card_from_before_the_preprocessing_loads_as_standardisation(trained, tmp_path):
    model, patterns = trained
    path = save_model(model, tmp_path / "old")
    card = json.loads((path / "card.json").read_text())
    del card["preprocess"]
    (path / "card.json").write_text(json.dumps(card))
    old = deepmat.load(path)
    assert old.preprocess == STANDARDIZE
    # the same weights, given the patterns standardised only (not background-corrected)
    standardising = deepmat.load(save_model(model, tmp_path / "new"))
    standardising.preprocess = STANDARDIZE
    np.testing.assert_allclose(
        old.predict(patterns).data, standardising.predict(patterns).data, rtol=1e-8, atol=1e-9
    )
    shipped = deepmat.load("ebsd-cnn-ni")  # trained on background-corrected patterns
    assert shipped.preprocess == BACKGROUND_CORRECTION


def test_scans_are_prepared_once_by_the_model_or_else_corrected_as_before(nickel):
    raw = nickel.data.reshape(9, 60, 60)
    static = nickel.static_background
    scan = scan_from_signal(nickel.deepcopy(), "nickel")
    np.testing.assert_array_equal(scan.patterns, raw)  # read as stored
    assert scan.experimental and scan.static_background.shape == (60, 60)
    # a dictionary or a standardising model: corrected here, as before the spec
    patterns, given = prepare_scan(scan, STANDARDIZE)
    assert given is None
    np.testing.assert_array_equal(patterns, BACKGROUND_CORRECTION.apply(raw, static))
    assert "static background removed (subtract)" in scan.corrections
    # a model that removes backgrounds itself: the raw patterns and the static background
    own = PreprocessSpec(static="divide", dynamic="divide")
    patterns, given = prepare_scan(scan, own)
    assert patterns is scan.patterns and given is scan.static_background
    assert scan.corrections == own.steps(True)
    scan.correct_background = False
    assert prepare_scan(scan)[0] is scan.patterns and scan.corrections == []


def test_a_scan_of_another_detector_shape_is_refused_naming_both(trained, nickel):
    model, _ = trained
    scan = scan_from_signal(nickel.deepcopy(), "nickel.h5")
    with pytest.raises(DataError, match=r"nickel.h5: patterns are 60×60 pixels but .* takes 20×20"):
        index_with_model(model, scan)
    with pytest.raises(DataError, match=r"patterns are 60×60 pixels but .* takes 20×20"):
        model.predict(scan.patterns, static_background=scan.static_background)
