"""Calibration metrics agree with uncertainty-toolbox's definitions, tell calibrated from
over- and under-confident predictions, and refuse unusable standard deviations."""

from __future__ import annotations

import numpy as np
import pytest
import uncertainty_toolbox as uct

from deepmat.errors import DataError
from deepmat.train.calibration import (
    CALIBRATION_KEYS,
    calibration_curve,
    calibration_metrics,
    fit_component_scales,
    fit_std_scale,
)


def gaussian_predictions(scale: float, n: int = 2000, seed: int = 0):
    """Means and claimed σ, and truths drawn with ``scale`` × the claimed σ."""
    rng = np.random.default_rng(seed)
    mean, std = rng.normal(size=n), rng.uniform(0.5, 1.5, n)
    return mean + scale * std * rng.normal(size=n), mean, std


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_metrics_match_uncertainty_toolbox(scale):
    truth, mean, std = gaussian_predictions(scale)
    ours = calibration_metrics(truth, mean, std)
    assert set(ours) == set(CALIBRATION_KEYS)
    assert ours["miscalibration_area"] == pytest.approx(uct.miscalibration_area(mean, std, truth))
    assert ours["rms_calibration_error"] == pytest.approx(
        uct.root_mean_squared_calibration_error(mean, std, truth)
    )
    assert ours["sharpness"] == pytest.approx(uct.sharpness(std))
    assert ours["nll"] == pytest.approx(uct.nll_gaussian(mean, std, truth))


def test_calibrated_predictions_cover_as_claimed_and_others_do_not():
    calibrated = calibration_metrics(*gaussian_predictions(1.0))
    overconfident = calibration_metrics(*gaussian_predictions(2.0))
    underconfident = calibration_metrics(*gaussian_predictions(0.5))
    assert calibrated["miscalibration_area"] < 0.03
    assert 0.93 <= calibrated["coverage_95"] <= 0.97 and 0.65 <= calibrated["coverage_68"] <= 0.71
    assert overconfident["coverage_95"] < 0.8 and underconfident["coverage_68"] > 0.9
    for other in (overconfident, underconfident):
        assert other["miscalibration_area"] > 0.15
    expected, observed = calibration_curve(*gaussian_predictions(1.0), bins=11)
    assert expected[0] == 0 and expected[-1] == 1 and observed[-1] == 1
    assert np.all(np.diff(observed) >= 0)


def test_a_few_gross_errors_move_the_mean_nll_not_the_median():
    truth, mean, std = gaussian_predictions(1.0)
    clean = calibration_metrics(truth, mean, std)
    truth[:5] = mean[:5] + 100 * std[:5]  # 5 of 2,000 truths 100 σ off
    spoiled = calibration_metrics(truth, mean, std)
    assert spoiled["nll"] > clean["nll"] + 10
    assert spoiled["median_nll"] == pytest.approx(clean["median_nll"], abs=0.02)


def test_unusable_standard_deviations_are_refused_with_the_record():
    truth, mean, std = gaussian_predictions(1.0, n=10)
    std[3] = 0.0
    with pytest.raises(DataError, match=r"standard deviation 3 is 0\.0"):
        calibration_metrics(truth, mean, std)
    with pytest.raises(DataError, match="one mean and one standard deviation per truth"):
        calibration_metrics(truth, mean[:5], np.ones(10))


def test_either_criterion_recovers_the_scale_of_gaussian_errors_and_the_area_wins_on_heavy_tails():
    truth, mean, std = gaussian_predictions(2.0, n=4000)
    for criterion in ("nll", "miscalibration"):
        assert fit_std_scale(truth, mean, std, criterion)[0] == pytest.approx(2.0, rel=0.05)
    rng = np.random.default_rng(1)  # Laplace errors of standard deviation σ: heavy tails
    laplace = mean + std * rng.laplace(scale=1 / np.sqrt(2), size=len(mean))
    areas = {
        criterion: calibration_metrics(
            laplace, mean, fit_std_scale(laplace, mean, std, criterion)[0] * std
        )["miscalibration_area"]
        for criterion in ("nll", "miscalibration")
    }
    assert areas["miscalibration"] < areas["nll"] - 0.01
    with pytest.raises(DataError, match="criterion 'median' is not one of"):
        fit_std_scale(truth, mean, std, "median")


def test_the_coverage_criterion_makes_95_percent_intervals_hold_on_new_heavy_tailed_errors():
    rng = np.random.default_rng(2)
    n = 4000
    mean, std = np.zeros(n), rng.uniform(0.5, 2.0, size=n)
    held = mean + std * rng.laplace(scale=1 / np.sqrt(2), size=n)
    new = mean + std * rng.laplace(scale=1 / np.sqrt(2), size=n)
    scale, method = fit_std_scale(held, mean, std, "coverage")
    assert "conformal" in method
    assert scale > 1.0  # the tails of a Laplace need a wider 95 % interval than a Gaussian's
    assert 0.93 <= calibration_metrics(new, mean, scale * std)["coverage_95"] <= 0.97


def test_a_coverage_outside_zero_to_one_is_refused():
    truth, mean, std = gaussian_predictions(1.0, n=200)
    with pytest.raises(DataError, match="must lie in"):
        fit_std_scale(truth, mean, std, "coverage", coverage=1.2)
    low = fit_std_scale(truth, mean, std, "coverage", coverage=0.9)[0]
    assert low < fit_std_scale(truth, mean, std, "coverage")[0]


def test_weighing_an_understated_spread_calibrates_both_intervals_where_one_factor_cannot():
    """Members whose own σ is right but whose spread understates the epistemic error 3×:
    the errors, pooled, have heavy tails that no one factor on σ² fits at 68 % and 95 %."""
    rng = np.random.default_rng(3)

    def draw(n: int):
        own = rng.uniform(0.5, 1.0, n) ** 2
        spread = np.where(rng.random(n) < 0.15, rng.uniform(2.0, 4.0, n), 0.05) ** 2
        truth = rng.normal(0.0, np.sqrt(own + spread))
        return truth, np.zeros(n), {"aleatoric": own, "epistemic": spread / 9}

    held, mean, parts = draw(6000)
    new, _, new_parts = draw(6000)
    scales, method = fit_component_scales(held, mean, parts, "coverage")
    assert "mix of aleatoric and epistemic" in method
    assert scales["aleatoric"] == pytest.approx(1.0, rel=0.15)
    assert scales["epistemic"] == pytest.approx(3.0, rel=0.15)
    mixed = np.sqrt(sum(scales[k] ** 2 * new_parts[k] for k in parts))
    metrics = calibration_metrics(new, mean, mixed)
    assert metrics["miscalibration_area"] < 0.02
    assert 0.93 <= metrics["coverage_95"] <= 0.97

    total = np.sqrt(parts["aleatoric"] + parts["epistemic"])
    single = fit_std_scale(held, mean, total, "coverage")[0]
    new_total = np.sqrt(new_parts["aleatoric"] + new_parts["epistemic"])
    assert calibration_metrics(new, mean, single * new_total)["miscalibration_area"] > 0.04
    one = fit_component_scales(held, mean, {"total": total**2}, "coverage")[0]
    assert one == {"total": pytest.approx(single)}
    with pytest.raises(DataError, match="one or two variance parts"):
        fit_component_scales(held, mean, parts | {"third": parts["aleatoric"]})
