"""Calibration: measures on hand-checked cases, known-probability data, and miscalibrated inputs repaired."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smartmarket.signals.calibration import (
    CalibrationMethod,
    IsotonicCalibrator,
    PlattCalibrator,
    TemperatureCalibrator,
    brier_score,
    calibration_report,
    choose_method,
    expected_calibration_error,
    fit_calibrator,
    log_loss,
    reliability_diagram,
)


def sample_classes(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One class per row drawn from its probabilities (the *true* probabilities of the data)."""
    u = rng.random(len(probs))[:, None]
    return (u > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, probs.shape[1] - 1)


def true_three_class(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    signal = rng.normal(size=n)
    logits = np.column_stack([-1.2 * signal, np.full(n, 0.3), 1.2 * signal])
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return p, sample_classes(rng, p)


def sharpen(p: np.ndarray, power: float) -> np.ndarray:
    """An over-confident (power > 1) or under-confident (power < 1) version of ``p``."""
    q = p**power
    return q / q.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------- measures


def test_brier_and_log_loss_by_hand() -> None:
    assert brier_score(np.array([0.8, 0.3]), np.array([1, 0])) == pytest.approx((0.04 + 0.09) / 2)
    p3 = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    y3 = np.array([2, 1])
    assert brier_score(p3, y3) == pytest.approx(((0.04 + 0.09 + 0.25) + (0.36 + 0.64 + 0.04)) / 2)
    assert log_loss(p3, y3) == pytest.approx(-(math.log(0.5) + math.log(0.2)) / 2)
    assert log_loss(np.array([0.8, 0.3]), np.array([1, 0])) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)


def test_reliability_bins_account_for_every_sample() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(1003)
    y = (rng.random(1003) < p).astype(int)
    for binning in ("equal_mass", "equal_width"):
        diagram = reliability_diagram(p, y, n_bins=10, binning=binning)
        assert diagram.count.sum() == 1003
        assert np.all(diagram.low <= diagram.mean_predicted) and np.all(diagram.mean_predicted <= diagram.high)
        assert len(diagram.rows()) == len(diagram.count)
    mass = reliability_diagram(p, y, n_bins=10)
    assert mass.count.max() - mass.count.min() <= 1  # equal mass
    width = reliability_diagram(p, y, n_bins=10, binning="equal_width")
    assert np.all(width.high - width.low <= 0.1 + 1e-12)  # each bin inside one tenth


def test_ece_of_a_constant_wrong_forecast_is_its_error() -> None:
    y = np.array([1] * 30 + [0] * 70)
    assert expected_calibration_error(np.full(100, 0.9), y) == pytest.approx(0.6)
    assert expected_calibration_error(np.full(100, 0.3), y, binning="equal_width") == pytest.approx(0.0)


def test_known_probabilities_have_small_ece() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, 20_000)
    y = (rng.random(p.size) < p).astype(int)
    assert expected_calibration_error(p, y) < 0.02
    assert expected_calibration_error(p, y, binning="equal_width") < 0.02
    p3, y3 = true_three_class(rng, 20_000)
    assert expected_calibration_error(p3, y3) < 0.02
    # The same data with a wrong forecast: the measure can tell.
    assert expected_calibration_error(sharpen(p3, 3.0), y3) > 0.05


# ---------------------------------------------------------------------------------------- calibrators


@pytest.mark.parametrize(("method", "n_fit"), [("temperature", 500), ("platt", 500), ("isotonic", 5000)])
@pytest.mark.parametrize("power", [3.0, 0.4])
def test_calibration_repairs_miscalibrated_probabilities(method: str, n_fit: int, power: float) -> None:
    rng = np.random.default_rng(2)
    p, y = true_three_class(rng, n_fit + 20_000)
    raw = sharpen(p, power)
    fit, test = slice(0, n_fit), slice(n_fit, None)  # fitted on an earlier slice, judged on a later one
    calibrator = fit_calibrator(raw[fit], y[fit], method=method)  # type: ignore[arg-type]
    fixed = calibrator.predict_proba(raw[test])
    assert calibrator.method == method
    assert np.allclose(fixed.sum(axis=1), 1.0)
    ece_raw = expected_calibration_error(raw[test], y[test])
    ece_fixed = expected_calibration_error(fixed, y[test])
    assert ece_raw > 0.05
    assert ece_fixed < 0.03
    assert ece_fixed < ece_raw / 2
    assert log_loss(fixed, y[test]) < log_loss(raw[test], y[test])


def test_temperature_recovers_the_sharpening_power() -> None:
    rng = np.random.default_rng(3)
    p, y = true_three_class(rng, 30_000)
    calibrator = TemperatureCalibrator().fit(sharpen(p, 2.0), y)
    assert calibrator.temperature == pytest.approx(2.0, rel=0.08)


@pytest.mark.parametrize("calibrator", [PlattCalibrator(2), IsotonicCalibrator(2)])
def test_binary_score_calibration(calibrator: PlattCalibrator | IsotonicCalibrator) -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(0.05, 0.95, 24_000)
    y = (rng.random(p.size) < p).astype(int)
    score = 1 / (1 + np.exp(-3 * np.log(p / (1 - p))))  # P(up) score, far too confident
    calibrator.fit(score[:4000], y[:4000])
    fixed = calibrator.predict_proba(score[4000:])
    assert fixed.shape == (20_000, 2)
    assert expected_calibration_error(score[4000:], y[4000:]) > 0.08
    assert expected_calibration_error(fixed[:, 1], y[4000:]) < 0.02


def test_a_p_up_score_maps_onto_three_classes() -> None:
    rng = np.random.default_rng(5)
    p, y = true_three_class(rng, 12_000)
    score = p[:, 2] / (p[:, 0] + p[:, 2])  # a member that only says P(up vs down)
    methods: tuple[CalibrationMethod, ...] = ("platt", "isotonic")
    for method in methods:
        calibrator = fit_calibrator(score[:4000], y[:4000], n_classes=3, method=method)
        fixed = calibrator.predict_proba(score[4000:])
        assert fixed.shape == (8000, 3)
        assert expected_calibration_error(fixed, y[4000:]) < 0.03
        # Down becomes less likely as the score rises: the direction was learned, not assumed.
        order = np.argsort(score[4000:])
        assert fixed[order[:500], 0].mean() > fixed[order[-500:], 0].mean() + 0.3


def test_auto_method_and_input_checks() -> None:
    assert choose_method(999, 2) == "temperature"
    assert choose_method(999, 1) == "platt"
    assert choose_method(1000, 2) == "isotonic"
    rng = np.random.default_rng(6)
    p, y = true_three_class(rng, 300)
    assert fit_calibrator(p, y).method == "temperature"
    assert fit_calibrator(p[:, 2], y, n_classes=3).method == "platt"
    with pytest.raises(ValueError, match="1-D score"):
        TemperatureCalibrator(3).fit(p[:, 2], y)
    with pytest.raises(ValueError, match="y outside"):
        PlattCalibrator(2).fit(p[:, 2], y)
    report = calibration_report(p, y)
    assert set(report) == {"n", "brier", "log_loss", "ece", "ece_equal_width"}


def test_calibrated_probabilities_are_never_certain() -> None:
    score = np.array([0.0, 0.0, 1.0, 1.0] * 50)
    y = np.array([0, 0, 1, 1] * 50)
    out = IsotonicCalibrator(2).fit(score, y).predict_proba(score)
    assert out.min() > 0 and np.isfinite(log_loss(out, y))
