"""Random periodic microstructures: exact fractions, periodicity, anisotropy, seeds, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepmat.data.microstructures import (
    MicrostructureSpec,
    gaussian_random_field,
    generate,
    periodic_gaussian_filter,
    random_inclusions,
    threshold_at_fraction,
)
from deepmat.errors import DataError


def autocorrelation(structure: np.ndarray) -> np.ndarray:
    """Periodic two-point autocorrelation of phase 1, S2(r), by FFT."""
    spectrum = np.fft.fftn(structure.astype(np.float64))
    return np.fft.ifftn(spectrum * spectrum.conj()).real / structure.size


@pytest.mark.parametrize(
    ("shape", "fraction"),
    [((16, 16), 0.5), ((9, 9, 9), 0.3), ((7, 10, 13), 0.17), ((20, 11), 0.9)],
)
def test_grf_hits_the_volume_fraction_to_the_voxel(shape, fraction):
    structure = gaussian_random_field(shape, fraction, 2.0, seed=1)
    assert structure.dtype == np.uint8 and structure.shape == shape
    assert set(np.unique(structure)) == {0, 1}
    assert structure.sum() == round(fraction * structure.size)


def test_grf_filter_commutes_with_periodic_shifts():
    noise = np.random.default_rng(0).standard_normal((12, 10, 9))
    shift, axes = (5, -3, 4), (0, 1, 2)
    smoothed = periodic_gaussian_filter(noise, (2.0, 1.0, 3.0))
    rolled = periodic_gaussian_filter(np.roll(noise, shift, axes), (2.0, 1.0, 3.0))
    np.testing.assert_allclose(rolled, np.roll(smoothed, shift, axes), atol=1e-12)
    structure = threshold_at_fraction(smoothed, 0.4)
    np.testing.assert_array_equal(
        threshold_at_fraction(rolled, 0.4), np.roll(structure, shift, axes)
    )


def test_grf_is_as_smooth_across_the_cell_faces_as_inside():
    structure = gaussian_random_field((64, 64), 0.5, 3.0, seed=2)
    inside = np.mean(structure[1:] == structure[:-1])
    across = np.mean(structure[0] == structure[-1])
    assert inside > 0.85 and across > 0.8


def test_larger_feature_size_along_an_axis_gives_longer_correlation_along_it():
    structure = gaussian_random_field((96, 96), 0.5, (6.0, 1.5), seed=3)
    s2 = autocorrelation(structure)
    assert s2[4, 0] > s2[0, 4] + 0.05
    wide = gaussian_random_field((96, 96), 0.5, 6.0, seed=3)
    assert autocorrelation(wide)[4, 0] > s2[0, 4]


def test_same_seed_same_structure_other_seed_other_structure():
    spec = MicrostructureSpec("grf", (9, 9, 9), 0.4, 1.5)
    np.testing.assert_array_equal(spec.sample(7), spec.sample(7))
    assert not np.array_equal(spec.sample(7), spec.sample(8))


def test_generate_does_not_depend_on_chunking_or_scheduler():
    spec = MicrostructureSpec("sphere", (10, 10), (0.2, 0.4), 1.5)
    reference = generate(spec, 7, seed=5, chunk_size=7, scheduler="synchronous")
    for chunk_size, workers in ((1, 2), (3, 2), (4, 1)):
        np.testing.assert_array_equal(
            generate(spec, 7, seed=5, chunk_size=chunk_size, workers=workers), reference
        )
    seeds = np.random.SeedSequence(5).spawn(7)
    np.testing.assert_array_equal(reference[3], spec.sample(seeds[3]))
    fractions = reference.mean(axis=(1, 2))
    assert len(set(fractions)) > 1 and np.all((fractions > 0.1) & (fractions < 0.5))


def test_generate_on_a_distributed_cluster_matches_local():
    distributed = pytest.importorskip("distributed")
    spec = MicrostructureSpec("grf", (8, 8, 8), 0.5, 1.5)
    local = generate(spec, 5, seed=11, chunk_size=2, scheduler="synchronous")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        np.testing.assert_array_equal(generate(spec, 5, seed=11, client=client), local)
        by_address = generate(spec, 5, seed=11, client=cluster.scheduler_address, chunk_size=3)
        np.testing.assert_array_equal(by_address, local)


@pytest.mark.parametrize(
    ("kind", "size", "options"),
    [
        ("sphere", 2.0, {}),
        ("sphere", 1.5, {"overlap": False}),
        ("ellipsoid", (3.0, 1.5, 1.0), {}),
        ("fibre", 1.2, {"length": 8.0}),
        ("fibre", 1.0, {"direction": (0, 0, 1)}),
    ],
)
def test_inclusions_reach_the_fraction_within_half_an_inclusion(kind, size, options):
    result = random_inclusions((16, 16, 16), 0.25, kind, size, seed=4, **options)
    structure = result.structure
    assert structure.dtype == np.uint8 and structure.shape == (16, 16, 16)
    assert result.volume_fraction == structure.mean()
    assert result.count > 1
    if kind == "fibre":
        volume = np.pi * size**2 * options.get("length", 16)
    else:
        volume = 4 / 3 * np.pi * np.prod(np.broadcast_to(size, 3))
    # half an inclusion, with a margin for voxelisation
    assert abs(result.volume_fraction - 0.25) <= 0.75 * volume / structure.size


def test_fibres_along_an_axis_are_continuous_through_the_periodic_cell():
    structure = random_inclusions((12, 12, 12), 0.3, "fibre", 1.5, 0, direction=(0, 0, 1))
    columns = structure.structure
    assert np.all(columns == columns[:, :, :1])


def test_inclusions_wrap_around_the_cell_faces():
    wrapped = 0
    for seed in range(20):
        result = random_inclusions((16, 16), 0.05, "fibre", 2.5, seed, direction=(1, 0))
        assert result.count == 1
        occupied = np.flatnonzero(result.structure.any(axis=0))
        assert np.all(result.structure[:, occupied] == 1)
        # a strip 5 columns wide, circularly contiguous: wrapped when it holds columns 0 and 15
        assert len(occupied) == 5
        gaps = np.diff(np.r_[occupied, occupied[0] + 16])
        assert np.sum(gaps != 1) == 1
        wrapped += bool(0 in occupied and 15 in occupied)
    assert wrapped > 0


def test_aligned_ellipsoids_correlate_longer_along_their_long_axis():
    result = random_inclusions((48, 48), 0.3, "ellipsoid", (6.0, 1.5), 1, direction=(1, 0))
    s2 = autocorrelation(result.structure)
    assert s2[4, 0] > s2[0, 4] + 0.05


def test_spec_round_trips_through_json_and_samples_in_range():
    spec = MicrostructureSpec(
        "ellipsoid", [12, 12, 12], [0.2, 0.3], [3, 1.5, 1.5], direction=[1, 1, 0]
    )
    assert spec.shape == (12, 12, 12) and spec.volume_fraction == (0.2, 0.3)
    again = MicrostructureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    structure = again.sample(3)
    np.testing.assert_array_equal(structure, spec.sample(3))
    assert 0.15 < structure.mean() < 0.35
    grf = MicrostructureSpec("grf", (9, 9), 0.5, (2.0, 2.0))
    assert grf.feature_size == 2.0


BAD_CALLS = [
    (lambda: gaussian_random_field((9,), 0.5, 2.0), "shape must be 2-D"),
    (lambda: gaussian_random_field((4, 4, 4, 4), 0.5, 2.0), "shape must be 2-D"),
    (lambda: gaussian_random_field((9, 0), 0.5, 2.0), "positive integer sizes"),
    (lambda: gaussian_random_field((9, 9.5), 0.5, 2.0), "positive integer sizes"),
    (lambda: gaussian_random_field((9, 9), 0.0, 2.0), "strictly between 0 and 1"),
    (lambda: gaussian_random_field((9, 9), 1.0, 2.0), "strictly between 0 and 1"),
    (lambda: gaussian_random_field((9, 9), float("nan"), 2.0), "strictly between 0 and 1"),
    (lambda: gaussian_random_field((9, 9), "half", 2.0), "strictly between 0 and 1"),
    (lambda: gaussian_random_field((9, 9), 0.5, 0.0), "feature_size must be positive"),
    (lambda: gaussian_random_field((9, 9), 0.5, -1.0), "feature_size must be positive"),
    (lambda: gaussian_random_field((9, 9, 9), 0.5, (1, 2)), "one value or 3"),
    (lambda: gaussian_random_field((4, 4), 0.01, 1.0), "rounds to 0 of the 16 voxels"),
    (lambda: random_inclusions((9, 9), 0.3, "cube", 2.0), "inclusion kind must be one of"),
    (lambda: random_inclusions((9, 9), 0.3, "sphere", (1, 2)), "a sphere's size is one radius"),
    (lambda: random_inclusions((9, 9), 0.3, "sphere", -2.0), "sphere radius"),
    (lambda: random_inclusions((9, 9), 0.3, "sphere", 2.0, length=4), "fibres only"),
    (lambda: random_inclusions((9, 9), 0.3, "fibre", 1.0, length=0), "fibre length"),
    (lambda: random_inclusions((9, 9), 0.3, "fibre", 1.0, direction=(0, 0)), "non-zero 2-vector"),
    (lambda: random_inclusions((9, 9), 0.3, "fibre", 1.0, direction=(1, 0, 0)), "2-vector"),
    (
        lambda: random_inclusions((9, 9, 9), 0.9, "sphere", 3.0, 0, overlap=False),
        "allow overlap or use smaller inclusions",
    ),
    (lambda: MicrostructureSpec("foam", (9, 9), 0.5), "kind must be one of"),
    (lambda: MicrostructureSpec("grf", (9, 9), (0.6, 0.4)), "has min above max"),
    (lambda: MicrostructureSpec("grf", (9, 9), (0.1, 0.2, 0.3)), r"must be \(min, max\)"),
    (lambda: MicrostructureSpec("grf", (9, 9), (0.0, 0.5)), "strictly between 0 and 1"),
    (lambda: MicrostructureSpec("sphere", (9, 9), 0.5, (1, 2)), "one radius"),
    (lambda: MicrostructureSpec.from_dict({"kind": "grf", "shape": [9, 9], "vf": 1}), "'vf'"),
    (lambda: MicrostructureSpec.from_dict({"kind": "grf"}), "lacks shape"),
    (lambda: MicrostructureSpec.from_dict([1, 2]), "must be a mapping"),
    (lambda: generate(MicrostructureSpec("grf", (9, 9)), 0), "positive integer, got 0"),
    (lambda: generate(MicrostructureSpec("grf", (9, 9)), 2, seed=-1), "non-negative integer"),
    (lambda: generate(MicrostructureSpec("grf", (9, 9)), 2, chunk_size=0), "chunk_size"),
    (lambda: generate({"kind": "grf"}, 2), "must be a MicrostructureSpec"),
]


@pytest.mark.parametrize(("call", "message"), BAD_CALLS)
def test_bad_inputs_are_named(call, message):
    with pytest.raises(DataError, match=message):
        call()
