"""Neighbour pattern averaging (NLPAR) of EBSD maps: noise down inside grains, no mixing
across their boundaries, and clear errors for what is not a map."""

import numpy as np
import pytest
from orix.quaternion import Rotation

from deepmat.data.ebsd import PatternDataset
from deepmat.data.ebsd_simulation import DetectorSpec, simulate_patterns
from deepmat.errors import ConfigError, DataError
from deepmat.represent.pattern_averaging import NeighbourAveraging, average_neighbours
from deepmat.workflows.ebsd import Scan, average_scan, index_with_dictionary, prepare_scan

DETECTOR = DetectorSpec(shape=(20, 20))
ROWS, COLUMNS = 4, 6  # columns 0-2 show grain A, 3-5 grain B


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pattern of ``a`` with the one of ``b``."""
    a = a - a.mean(axis=(-2, -1), keepdims=True)
    b = b - b.mean(axis=(-2, -1), keepdims=True)
    return (a * b).sum(axis=(-2, -1)) / np.sqrt(
        (a * a).sum(axis=(-2, -1)) * (b * b).sum(axis=(-2, -1))
    )


@pytest.fixture(scope="module")
def two_grains():
    """A 4×6 map of two grains 40° apart: clean patterns, and the same with Gaussian noise of
    the clean patterns' own standard deviation."""
    grains = Rotation.from_axes_angles([[1, 2, 3], [3, -1, 2]], np.radians([10, 50]))
    grain = np.tile(np.repeat([0, 1], COLUMNS // 2), ROWS)
    clean = simulate_patterns(grains[grain], DETECTOR)
    noise = np.random.default_rng(0).normal(size=clean.shape) * clean.std()
    return grain, grains[grain], clean, (clean + noise).astype(np.float32), clean.std()


def test_averaging_lifts_each_pattern_towards_its_grains_clean_one(two_grains):
    grain, _, clean, noisy, sigma = two_grains
    averaged = average_neighbours(noisy, (ROWS, COLUMNS))
    before = np.sqrt(((noisy - clean) ** 2).mean(axis=(1, 2)))
    after = np.sqrt(((averaged.patterns - clean) ** 2).mean(axis=(1, 2)))
    assert (after < 0.6 * before).all()
    assert np.allclose(averaged.noise, sigma, rtol=0.25)
    assert (averaged.self_weight < 0.5).all() and 0.05 < averaged.lam < 10
    other = clean[np.where(grain == 0, COLUMNS // 2, 0)]  # a clean pattern of the other grain
    assert (
        correlation(averaged.patterns, clean) > correlation(averaged.patterns, other) + 0.3
    ).all()


def test_a_given_lambda_is_kept_and_a_wider_window_averages_more(two_grains):
    _, _, _, noisy, _ = two_grains
    near = average_neighbours(noisy, (ROWS, COLUMNS), NeighbourAveraging(lam=1.0, search_radius=1))
    wide = average_neighbours(noisy, (ROWS, COLUMNS), NeighbourAveraging(lam=1.0, search_radius=2))
    assert near.lam == wide.lam == 1.0
    assert (wide.self_weight <= near.self_weight + 1e-9).all()
    assert wide.self_weight.mean() < near.self_weight.mean()


def test_a_map_read_a_few_rows_at_a_time_averages_as_a_whole(two_grains):
    _, _, _, noisy, _ = two_grains
    spec = NeighbourAveraging(search_radius=2)
    whole = average_neighbours(noisy, (ROWS, COLUMNS), spec)
    for rows in (1, 3):
        blocks = average_neighbours(noisy, (ROWS, COLUMNS), spec, block_rows=rows)
        assert blocks.lam == pytest.approx(whole.lam, rel=1e-6)
        np.testing.assert_allclose(blocks.patterns, whole.patterns, rtol=1e-5, atol=1e-4)
    compared = average_neighbours(noisy, (ROWS, COLUMNS), spec, compare=lambda p: 2 * p + 1)
    np.testing.assert_allclose(compared.self_weight, whole.self_weight, rtol=1e-4)


def test_an_averaged_scan_indexes_better_and_says_what_was_done(two_grains):
    _, rotations, clean, noisy, _ = two_grains
    scan = Scan(noisy, "two grains", (ROWS, COLUMNS), DETECTOR, rotations)
    averaged = average_scan(scan)
    assert averaged.patterns.shape == noisy.shape and scan.patterns is noisy
    prepare_scan(averaged)
    assert averaged.corrections[0].startswith("neighbour patterns averaged (NLPAR, λ")
    dictionary = PatternDataset(clean, rotations, DETECTOR)
    scores = [index_with_dictionary(dictionary, s).scores for s in (scan, averaged)]
    assert scores[1].mean() > scores[0].mean() + 0.1


def test_what_is_not_a_map_or_a_spec_is_refused(two_grains):
    _, _, _, noisy, _ = two_grains
    with pytest.raises(DataError, match=r"needs a map .* holding its 24 patterns, got scan shape"):
        average_neighbours(noisy, (24,), name="set.h5")
    with pytest.raises(DataError, match="needs a map"):
        average_neighbours(noisy, (5, 5))
    flat = np.repeat(noisy[:1], 4, axis=0)
    with pytest.raises(DataError, match="every pattern equals its neighbours"):
        average_neighbours(flat, (2, 2))
    with pytest.raises(DataError, match=r"compare gave patterns of shape \(10, 10\) for"):
        average_neighbours(noisy, (ROWS, COLUMNS), compare=lambda p: p[:, ::2, ::2])
    for bad, match in (
        ({"search_radius": 0}, "search_radius must be a positive integer"),
        ({"self_weight": 1.0}, r"self_weight must lie within \(0, 1\)"),
        ({"lam": -1.0}, "lam must be positive"),
    ):
        with pytest.raises(ConfigError, match=match):
            NeighbourAveraging(**bad)
    spec = NeighbourAveraging(lam=0.7, search_radius=2)
    assert NeighbourAveraging.from_dict(spec.to_dict()) == spec
