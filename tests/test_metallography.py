"""Particles, fractions, denuded zones and distribution tests on label images drawn here."""

import numpy as np
import pytest

from deepmat.errors import DataError
from deepmat.physics.metallography import (
    area_fractions,
    compare_distributions,
    denuded_zone_widths,
    particles,
    summary,
)


def disc_image(centres, radius, size=64):
    rows, cols = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.uint8)
    for r, c in centres:
        labels[(rows - r) ** 2 + (cols - c) ** 2 <= radius**2] = 1
    return labels


def test_discs_have_their_diameter_unit_aspect_ratio_and_count_per_area():
    labels = disc_image([(16, 16), (16, 48), (48, 32)], radius=6)
    table = particles(labels, 1, pixel_size=0.5)
    assert len(table["particle"]) == 3 and not table["touches_border"].any()
    np.testing.assert_allclose(table["equivalent_diameter"], 6.0, rtol=0.05)  # 12 px × 0.5 µm
    np.testing.assert_allclose(table["aspect_ratio"], 1.0, atol=0.05)
    result = summary(labels, 1, pixel_size=0.5)
    assert result["count"] == 3 and result["per_area"] == pytest.approx(3 / (64 * 64 * 0.25))
    assert result["unit"] == "µm" and result["d50"] == pytest.approx(6.0, rel=0.05)


def test_an_ellipse_has_its_axes_ratio_and_orientation():
    rows, cols = np.mgrid[:64, :64]
    labels = (((rows - 32) / 6.0) ** 2 + ((cols - 32) / 18.0) ** 2 <= 1).astype(np.uint8)
    table = particles(labels, 1)
    assert table["aspect_ratio"][0] == pytest.approx(3.0, rel=0.05)
    assert abs(table["orientation_deg"][0]) == pytest.approx(90.0, abs=1.0)  # along the columns


def test_border_particles_are_flagged_and_left_out_of_the_distribution():
    labels = disc_image([(32, 32), (0, 10)], radius=5)
    assert particles(labels, 1)["touches_border"].tolist() == [True, False]
    result = summary(labels, 1)
    assert (result["count"], result["count_inside"]) == (2, 1) and result["unit"] == "px"


def test_fractions_and_the_zone_between_a_reference_band_and_particles():
    labels = np.zeros((40, 40), np.uint8)
    labels[:, :5] = 2  # a network band along the left edge
    labels[:, 15] = 1  # a line of particles 10 pixels from its boundary (column 4)
    assert area_fractions(labels, ["matrix", "particle", "network"]) == pytest.approx(
        {"matrix": 34 / 40, "particle": 1 / 40, "network": 5 / 40}
    )
    widths = denuded_zone_widths(labels, reference=2, particle_class=1, pixel_size=2.0)
    assert len(widths) == 40 and np.allclose(widths, 22.0)  # 11 px from column 4 to 15
    with pytest.raises(DataError, match="class 3 is absent"):
        denuded_zone_widths(labels, reference=3, particle_class=1)


def test_distributions_compare_by_kolmogorov_smirnov():
    rng = np.random.default_rng(0)
    same = compare_distributions(rng.normal(size=400), rng.normal(size=400))
    shifted = compare_distributions(rng.normal(size=400), rng.normal(1.0, size=400))
    assert same["ks_pvalue"] > 0.01 > shifted["ks_pvalue"]
    with pytest.raises(DataError, match="0 predicted"):
        compare_distributions([1.0], [])
    with pytest.raises(DataError, match="2-D and not empty"):
        particles(np.zeros(5), 1)
