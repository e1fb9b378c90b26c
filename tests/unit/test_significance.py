"""The A/B significance tests: they find a planted difference in skill and, at the stated level, no more than
``level`` false alarms between equally skilled forecasters; identical forecasters are never "different"."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from smartmarket.analytics.significance import diebold_mariano, newey_west_variance, paired_block_bootstrap
from smartmarket.data.synthetic import generate_market
from smartmarket.models.labels import LabelConfig
from smartmarket.ops.abtest import Forecasts, candle_outcomes, compare, per_candle_pnl


def brier(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sum((p - np.eye(3)[y]) ** 2, axis=1)


def world(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """True class probabilities per sample and outcomes drawn from them."""
    p = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    y = np.array([rng.choice(3, p=row) for row in p])
    return p, y


def test_newey_west_matches_a_hand_computation() -> None:
    d = np.array([1.0, -1.0, 2.0, 0.0])
    c = d - d.mean()  # [0.5, -1.5, 1.5, -0.5]
    gamma0 = float(c @ c) / 4
    gamma1 = float(c[1:] @ c[:-1]) / 4
    assert newey_west_variance(d, 0) == pytest.approx(gamma0)
    assert newey_west_variance(d, 1) == pytest.approx(gamma0 + 2 * 0.5 * gamma1)


def test_known_different_skill_is_detected() -> None:
    rng = np.random.default_rng(1)
    p, y = world(800, rng)
    skilled, uniform = p, np.full_like(p, 1 / 3)
    test = diebold_mariano(brier(skilled, y), brier(uniform, y))
    assert test.significant and test.mean_difference < 0 and test.p_value < 1e-4
    # swapping the roles flips the sign, not the p-value
    swapped = diebold_mariano(brier(uniform, y), brier(skilled, y))
    assert swapped.mean_difference > 0 and swapped.p_value == pytest.approx(test.p_value)
    boot = paired_block_bootstrap(brier(skilled, y), brier(uniform, y), block=5)
    assert boot.significant and boot.ci_high < 0


def test_identical_forecasters_are_never_different() -> None:
    rng = np.random.default_rng(2)
    p, y = world(300, rng)
    loss = brier(p, y)
    for test in (diebold_mariano(loss, loss.copy(), horizon=12), paired_block_bootstrap(loss, loss.copy(), block=12)):
        assert test.p_value == 1.0 and not test.significant and test.mean_difference == 0.0


def test_equal_skill_false_alarm_rate_is_near_the_level() -> None:
    """Two different forecasters of the same quality: DM rejects in about ``level`` of independent worlds."""
    rng = np.random.default_rng(3)
    rejections = 0
    trials = 300
    for _ in range(trials):
        p, y = world(200, rng)
        a = 0.5 * p + 0.5 * rng.dirichlet([1, 1, 1], size=len(p))
        b = 0.5 * p + 0.5 * rng.dirichlet([1, 1, 1], size=len(p))
        rejections += diebold_mariano(brier(a, y), brier(b, y), level=0.05).significant
    rate = rejections / trials
    assert 0.01 <= rate <= 0.10, rate  # binomial(300, 0.05): 95% of runs fall in [0.027, 0.077]


def test_overlapping_outcomes_widen_the_interval() -> None:
    """Autocorrelated differentials (overlapping horizons): the HAC variance is larger than the plain one."""
    rng = np.random.default_rng(4)
    d = np.convolve(rng.normal(size=2_000), np.ones(12) / 12, mode="valid")
    plain, hac = diebold_mariano(d, np.zeros_like(d), horizon=1), diebold_mariano(d, np.zeros_like(d), horizon=12)
    assert (hac.ci_high - hac.ci_low) > 2 * (plain.ci_high - plain.ci_low)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="one length"):
        diebold_mariano([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        paired_block_bootstrap([1.0, math.nan], [1.0, 2.0])


# ------------------------------------------------------------------------------------ the A/B comparison


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, LabelConfig, np.ndarray, np.ndarray]:
    candles = generate_market(3_000, seed=7)
    config = LabelConfig(horizon=12)
    ts, outcomes = candle_outcomes(candles, config)
    known = outcomes.t1 >= 0
    return candles, config, ts[known], outcomes.y[known].astype(int)


def planted(ts: np.ndarray, y: np.ndarray, skill: float, seed: int) -> Forecasts:
    """Probabilities that put ``skill`` of extra mass on the true class (noise elsewhere)."""
    rng = np.random.default_rng(seed)
    noise = rng.dirichlet([2.0, 2.0, 2.0], size=len(y))
    probs = (1 - skill) * noise + skill * np.eye(3)[y]
    return Forecasts.from_probabilities(f"skill {skill}", None, ts, probs)


def test_compare_finds_the_better_candidate_and_its_pnl(market: tuple) -> None:
    candles, config, ts, y = market
    strong, weak = planted(ts, y, 0.3, 1), planted(ts, y, 0.0, 2)
    doc = compare(weak, strong, candles, config, fee=0.001)
    assert doc["verdict"] == "candidate better" and doc["candles"] == len(ts)
    assert doc["candidate"]["brier"] < doc["production"]["brier"]
    assert doc["candidate"]["hit_rate"] > doc["production"]["hit_rate"]
    reverse = compare(strong, weak, candles, config, fee=0.001)
    assert reverse["verdict"] == "production better"
    same = compare(strong, strong, candles, config, fee=0.001)
    assert same["verdict"] == "no significant difference" and same["test"]["p_value"] == 1.0


def test_compare_pnl_is_direction_times_return_after_fees(market: tuple) -> None:
    candles, config, ts, y = market
    f = planted(ts, y, 0.3, 3)
    doc = compare(Forecasts.uniform(ts), f, candles, config, fee=0.002)
    _, outcomes = candle_outcomes(candles, config)
    known = np.flatnonzero(outcomes.t1 >= 0)
    expected = per_candle_pnl(f.direction, outcomes.ret[known], 0.002).sum()
    assert doc["candidate"]["pnl_after_fees"] == pytest.approx(expected)
    assert doc["production"]["signals"] == 0 and doc["production"]["pnl_after_fees"] == 0.0


def test_compare_waits_for_enough_outcomes(market: tuple) -> None:
    candles, config, ts, y = market
    doc = compare(planted(ts[:10], y[:10], 0.3, 4), planted(ts[:10], y[:10], 0.0, 5), candles, config)
    assert doc["verdict"] == "not enough outcomes yet" and doc["candidate"] is None
