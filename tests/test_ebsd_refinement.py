"""Orientation refinement against the master pattern (kikuchipy): perturbed orientations of
tiny simulated patterns come back, after the CNN or a dictionary alike, and a master pattern
of another phase or patterns of another detector are refused."""

import numpy as np
import pytest
from orix.crystal_map import Phase
from orix.quaternion import Rotation

from deepmat.data.ebsd import write_pattern_dataset
from deepmat.data.ebsd_simulation import (
    DetectorSpec,
    master_pattern,
    sample_orientations,
    simulate_patterns,
)
from deepmat.errors import DataError
from deepmat.physics.orientations import disorientation_angle
from deepmat.workflows import ebsd_refinement
from deepmat.workflows.ebsd import Indexed, index_file, read_scan
from deepmat.workflows.ebsd_refinement import in_doubt, refine_indexed, refine_orientations

DETECTOR = DetectorSpec(shape=(30, 30))
FAST = {"global_region_deg": 0}  # local searches alone: 0.2 s for three 30×30 patterns


@pytest.fixture(scope="module")
def truth() -> Rotation:
    return sample_orientations(n=3, seed=0)


@pytest.fixture(scope="module")
def patterns(truth) -> np.ndarray:
    return simulate_patterns(truth, DETECTOR)


def perturbed(rotations: Rotation, degrees: float = 2.0) -> Rotation:
    axes = np.random.default_rng(0).normal(size=(rotations.size, 3))
    return Rotation.from_axes_angles(axes, np.radians(degrees)) * rotations


def degrees_off(truth: Rotation, found) -> np.ndarray:
    return np.degrees(disorientation_angle(truth, found, "m-3m"))


def test_refinement_brings_perturbed_orientations_back(truth, patterns):
    start = perturbed(truth)
    assert np.allclose(degrees_off(truth, start), 2.0, atol=1e-6)
    refined, scores = refine_orientations(patterns, start, DETECTOR, **FAST)
    assert degrees_off(truth, refined).max() < 0.05
    assert scores.shape == (3,) and scores.min() > 0.99
    assert refined.symmetry.name == "m-3m"


def test_global_search_reaches_orientations_beyond_the_local_trust_region(truth, patterns):
    start = perturbed(truth, 8.0)[[0, 2]]
    local, _ = refine_orientations(patterns[[0, 2]], start, DETECTOR, global_region_deg=0)
    found, scores = refine_orientations(patterns[[0, 2]], start, DETECTOR)
    assert degrees_off(truth[[0, 2]], local).min() > 2.0
    assert degrees_off(truth[[0, 2]], found).max() < 0.1
    assert scores.min() > 0.99


def test_only_doubtful_matches_are_searched_again_and_thorough_finds_the_same(truth, patterns):
    start = perturbed(truth, 8.0)
    start.data[1] = perturbed(truth, 1.0).data[1]  # near enough for the first search alone
    found, scores = refine_orientations(patterns, start, DETECTOR)
    everything, all_scores = refine_orientations(patterns, start, DETECTOR, thorough=True)
    assert degrees_off(truth, found).max() < 0.1
    assert np.allclose(scores, all_scores, atol=1e-3)
    assert degrees_off(everything, found).max() < 0.05


def test_doubt_is_a_poor_match_or_a_search_that_ended_at_the_trust_region_edge(truth):
    moved = Rotation.from_axes_angles([0, 0, 1], np.radians([0.5, 4.5, 0.5])) * truth
    scores = np.array([0.9, 0.9, 0.5])
    assert in_doubt(moved, scores, truth, 5.0).tolist() == [False, True, True]


def test_chunks_of_a_scan_are_refined_alike(truth, patterns, monkeypatch):
    start = perturbed(truth)
    whole, whole_scores = refine_orientations(patterns, start, DETECTOR, **FAST)
    monkeypatch.setattr(ebsd_refinement, "CHUNK", 2)  # chunks of 2 and 1, with a progress bar
    parts, part_scores = refine_orientations(patterns, start, DETECTOR, progress=True, **FAST)
    assert degrees_off(whole, parts).max() < 1e-3
    assert np.allclose(whole_scores, part_scores, atol=1e-4)


def test_a_lone_pattern_is_refined(truth, patterns):
    refined, scores = refine_orientations(patterns[:1], perturbed(truth[:1]), DETECTOR, **FAST)
    assert refined.size == 1 and scores.shape == (1,)
    assert degrees_off(truth[:1], refined).max() < 0.05


def other_phase_master(**phase):
    master = master_pattern(None).deepcopy()
    master.phase = Phase(**phase)
    return master


@pytest.mark.parametrize(
    ("master", "phase", "words"),
    [
        (other_phase_master(name="ni", point_group="m-3"), None, "point group m-3"),
        (None, "iron", "phase 'ni'"),
    ],
)
def test_master_pattern_of_another_phase_is_refused(truth, patterns, master, phase, words):
    with pytest.raises(DataError, match=words):
        refine_orientations(patterns, truth, DETECTOR, master, phase=phase, **FAST)


def test_patterns_of_another_detector_are_refused(truth, patterns):
    with pytest.raises(DataError, match="30×30 pixels but the detector is 20×20"):
        refine_orientations(patterns, truth, DetectorSpec(shape=(20, 20)), **FAST)


def test_refinement_after_dictionary_indexing_of_a_file(tmp_path):
    grid, test = tmp_path / "grid.h5", tmp_path / "test.h5"
    orientations = sample_orientations(resolution_deg=15)
    write_pattern_dataset(grid, orientations, DETECTOR, progress=False)
    write_pattern_dataset(test, perturbed(orientations[[0, 50, 100]]), DETECTOR, progress=False)
    scan, indexed = index_file(test, dictionary=grid)
    assert scan.phase == "ni"
    refined = refine_indexed(indexed, scan, **FAST)
    assert refined.method == "dictionary_refined"
    assert refined.seconds > indexed.seconds
    assert np.allclose(degrees_off(scan.reference, indexed.orientations), 2.0, atol=1e-3)
    assert degrees_off(scan.reference, refined.orientations).max() < 0.5


def test_refinement_refuses_a_scan_of_another_phase(tmp_path, truth, patterns):
    path = tmp_path / "test.h5"
    write_pattern_dataset(path, truth, DETECTOR, progress=False)
    scan = read_scan(path)
    scan.phase = "iron"
    indexed = Indexed(scan.reference, "cnn", "m-3m", 1.0)
    with pytest.raises(DataError, match=r"test\.h5: the master pattern is of the phase .*'iron'"):
        refine_indexed(indexed, scan, **FAST)
