"""``--vol-model``: the HAR-RV forecaster recovers a planted HAR, sees no later bar, and sizes inversely to it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Timeframe
from smartmarket.data.synthetic import garch_candles
from smartmarket.execution.orders import Decision
from smartmarket.execution.sizing import (
    EWMA_DECAY,
    EWMA_LOOKBACK,
    VolatilityTarget,
    annual_volatility_target,
    ewma_volatility,
    vol_model_option,
)
from smartmarket.execution.vol_forecast import EWMAVolatility, HARVolatility
from smartmarket.pipeline.run_record import trading_fields, trading_from_fields
from smartmarket.pipeline.stages.spec import TradingConfig

LONG = Decision("long")
PLANTED = np.array([-0.6, 0.35, 0.3, 0.2])  # constant, daily, weekly, monthly (log HAR, sum of slopes 0.85)
NOISE = 0.5


def har_closes(n: int, seed: int = 0) -> np.ndarray:
    """Closes whose squared daily log returns follow the log HAR ``PLANTED`` exactly (one bar a day)."""
    rng = np.random.default_rng(seed)
    y = np.full(n, -4.0)  # log r^2
    for t in range(22, n - 1):
        rv = np.exp(y[t - 21 : t + 1])
        x = np.array([1.0, y[t], math.log(rv[-5:].mean()), math.log(rv.mean())])
        y[t + 1] = x @ PLANTED + NOISE * rng.standard_normal()
    r = np.sqrt(np.exp(y)) * rng.choice([-1.0, 1.0], size=n)
    return 100.0 * np.exp(np.cumsum(r))


def har(day: int, **kw: int) -> HARVolatility:
    return HARVolatility(day, EWMAVolatility(EWMA_DECAY, EWMA_LOOKBACK), **kw)


def test_fit_recovers_the_planted_coefficients_and_smearing() -> None:
    closes = har_closes(8000)
    model = har(1, fit_days=10_000, min_fit_days=100)
    for c in closes:
        model.update(float(c))
    assert model.coef is not None
    np.testing.assert_allclose(model.coef[1:], PLANTED[1:], atol=0.05)  # the slopes
    assert model.coef[0] == pytest.approx(PLANTED[0], abs=0.12)
    assert model.smear == pytest.approx(NOISE**2 / 2, abs=0.03)  # log E[exp(e)] of Gaussian noise


def test_forecast_is_ewma_until_fitted_then_har() -> None:
    closes = garch_candles(400, seed=3)["close"].to_numpy()
    model = har(1, fit_days=200, min_fit_days=100)
    fits = []
    for i, c in enumerate(closes):
        model.update(float(c))
        if i >= EWMA_LOOKBACK and model.coef is None:
            assert model.forecast() == ewma_volatility(closes[i - EWMA_LOOKBACK : i + 1].tolist(), EWMA_DECAY)
        fits.append(model.coef is not None)
    # the first fit needs 22 days of regressors, 1 of target and 100 of samples
    assert fits.index(True) == 22 + 1 + 100 - 1


def test_a_forecast_at_bar_t_ignores_every_later_bar() -> None:
    a = garch_candles(3000, seed=1)["close"].to_numpy()
    cut = 2000
    b = a.copy()
    b[cut + 1 :] *= np.exp(np.cumsum(np.random.default_rng(9).normal(0, 0.05, a.size - cut - 1)))
    forecasts = []
    for closes in (a, b):
        model, out = har(6, fit_days=60, min_fit_days=20), []
        for c in closes:
            model.update(float(c))
            out.append(model.forecast())
        assert model.coef is not None
        forecasts.append(np.array(out))
    np.testing.assert_array_equal(forecasts[0][: cut + 1], forecasts[1][: cut + 1])
    assert not np.allclose(forecasts[0][cut + 1 :], forecasts[1][cut + 1 :])


def test_refits_at_most_once_a_day_of_bars() -> None:
    closes = garch_candles(2500, seed=2)["close"].to_numpy()
    model, changes, previous = har(24, fit_days=30, min_fit_days=10), [], None
    for i, c in enumerate(closes):
        model.update(float(c))
        if model.coef is not None and (previous is None or not np.array_equal(model.coef, previous)):
            changes.append(i)
            previous = model.coef.copy()
    assert len(changes) > 10 and set(np.diff(changes)) == {24}


def test_position_scales_inversely_with_the_forecast() -> None:
    sizer = annual_volatility_target(0.2, Timeframe.parse("1h"), max_leverage=5.0, model="har")
    assert sizer.bars_per_day == 24
    base = sizer.fraction(LONG, 100.0, (), vol=0.01)
    assert base == pytest.approx(sizer.target_vol / 0.01)
    assert sizer.fraction(LONG, 100.0, (), vol=0.02) == pytest.approx(base / 2)
    assert sizer.fraction(LONG, 100.0, (), vol=0.005) == pytest.approx(base * 2)
    assert sizer.fraction(LONG, 100.0, (), vol=1e-6) == 5.0  # capped at the leverage
    assert sizer.fraction(LONG, 100.0, (), vol=math.nan) == 0.0  # no forecast, no position
    tracker = sizer.tracker()
    assert isinstance(tracker, HARVolatility)
    for c in garch_candles(24 * 120, seed=4)["close"]:
        tracker.update(float(c))
    assert tracker.coef is not None
    assert sizer.fraction(LONG, 100.0, (), vol=tracker.forecast()) == pytest.approx(
        min(5.0, sizer.target_vol / tracker.forecast())
    )


def test_the_option_and_the_record() -> None:
    assert vol_model_option(None, None) == "ewma"
    assert vol_model_option("har", 0.2) == "har"
    with pytest.raises(ConfigError, match="--vol-model applies to --vol-target"):
        vol_model_option("har", None)
    with pytest.raises(ConfigError, match="unknown --vol-model 'garch'"):
        vol_model_option("garch", 0.2)
    ewma = annual_volatility_target(0.2, Timeframe.parse("4h"))
    assert "vol_model" not in repr(ewma)  # an EWMA run's fingerprint is the one it had before --vol-model
    assert isinstance(ewma.tracker(), EWMAVolatility) and ewma.warmup_bars() == EWMA_LOOKBACK + 1
    hars = annual_volatility_target(0.2, Timeframe.parse("4h"), model="har")
    assert "vol_model='har', bars_per_day=6" in repr(hars) and hars.warmup_bars() > 366 * 6
    trading = TradingConfig(sizer=hars)
    rebuilt = trading_from_fields(trading_fields(trading), trading.fingerprint())
    assert rebuilt.sizer == hars and TradingConfig(sizer=ewma).fingerprint() != trading.fingerprint()
    with pytest.raises(ConfigError, match="EWMA decay"):
        VolatilityTarget(vol_model="har", decay=None)
