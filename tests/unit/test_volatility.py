"""Volatility forecaster: the target's time window, QLIKE, HAR-RV by hand, skill on GARCH data, scale invariance."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Timeframe
from smartmarket.data.synthetic import garch_candles, generate_market
from smartmarket.execution.sizing import EWMA_DECAY, EWMA_LOOKBACK, ewma_volatility
from smartmarket.features import FeaturePipeline, model_inputs
from smartmarket.models.volatility import (
    EWMAForecaster,
    HARForecaster,
    check_kinds,
    forward_realised_variance,
    qlike,
    squared_log_error,
    volatility_data,
    volatility_forecaster,
)
from smartmarket.models.volatility_compare import diebold_mariano, evaluate_volatility, newey_west_se


def random_closes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n) * rng.uniform(0.5, 2.0, n)))


def test_qlike_known_values() -> None:
    log_real = np.log([1.0, 2.0, 1.0, 4.0])
    log_hat = np.log([1.0, 1.0, 2.0, 1.0])
    expected = [0.0, 2.0 - math.log(2.0) - 1.0, 0.5 + math.log(2.0) - 1.0, 4.0 - math.log(4.0) - 1.0]
    assert qlike(log_real, log_hat) == pytest.approx(expected, abs=1e-12)
    assert qlike(log_real, log_hat)[1] == pytest.approx(0.306853, abs=1e-6)  # under-forecast by half
    squared = [0.0, math.log(2) ** 2, math.log(2) ** 2, math.log(4) ** 2]
    assert squared_log_error(log_real, log_hat) == pytest.approx(squared)


def test_target_uses_bars_t_plus_1_to_t_plus_h_only() -> None:
    close, h = random_closes(60, seed=1), 5
    rv = forward_realised_variance(close, h)
    r = np.diff(np.log(close))  # r[i] = log(close[i+1] / close[i])
    for t in range(len(close) - h):
        assert rv[t] == pytest.approx(sum(r[t + k - 1] ** 2 for k in range(1, h + 1)), rel=1e-12)
    assert np.isnan(rv[-h:]).all() and np.isfinite(rv[:-h]).all()
    t = 20
    for moved in range(t - 3, t + h + 4):  # one close moved: it enters r[moved] and r[moved + 1]
        shifted = close.copy()
        shifted[moved] *= 1.05
        changed = forward_realised_variance(shifted, h)[t] != pytest.approx(rv[t], rel=1e-9)
        assert changed is (t <= moved <= t + h), moved  # the closes t..t+H, i.e. the returns of bars t+1..t+H


def test_inputs_at_t_use_no_bar_after_t() -> None:
    close, h, t = random_closes(400, seed=2), 4, 300
    data = volatility_data(close, h, har_days=(1, 5, 22))
    future = close.copy()
    future[t + 1 :] *= np.exp(np.random.default_rng(3).normal(0, 0.05, len(close) - t - 1)).cumprod()
    other = volatility_data(future, h, har_days=(1, 5, 22))
    assert np.array_equal(data.har[: t + 1], other.har[: t + 1], equal_nan=True)
    rows = np.arange(EWMA_LOOKBACK, t + 1)
    assert np.array_equal(EWMAForecaster().predict(data, rows), EWMAForecaster().predict(other, rows))
    assert not np.array_equal(data.target[t - h : t + 1], other.target[t - h : t + 1])  # the target does look ahead


def test_ewma_forecast_is_the_sizers_estimate() -> None:
    close, h, t = random_closes(200, seed=4), 6, 150
    data = volatility_data(close, h)
    vol = ewma_volatility(close[t - EWMA_LOOKBACK : t + 1].tolist(), EWMA_DECAY)
    assert EWMAForecaster().predict(data, np.array([t]))[0] == pytest.approx(math.log(h * vol**2), rel=1e-12)


def test_har_rv_hand_checked_on_a_short_series() -> None:
    """Components, target and the OLS fit recomputed with loops and the normal equations on 40 closes."""
    close, h, days = random_closes(40, seed=5), 2, (1, 2, 3)
    data = volatility_data(close, h, har_days=days)
    r = [math.log(close[i] / close[i - 1]) for i in range(1, len(close))]  # r[i-1] is the return into bar i
    rows, x, y = [], [], []
    for t in range(3 * h, len(close) - h):
        comps = [math.log(sum(r[i - 1] ** 2 for i in range(t - d * h + 1, t + 1)) / (d * h) * h) for d in days]
        target = math.log(sum(r[t + k - 1] ** 2 for k in range(1, h + 1)))
        assert data.har[t] == pytest.approx(comps, rel=1e-12)
        assert data.target[t] == pytest.approx(target, rel=1e-12)
        rows.append(t)
        x.append([1.0, *comps])
        y.append(target)
    xm, ym = np.array(x), np.array(y)
    beta = np.linalg.solve(xm.T @ xm, xm.T @ ym)  # the normal equations
    smearing = math.log(sum(math.exp(v) for v in ym - xm @ beta) / len(ym))
    model = HARForecaster().fit(data, np.array(rows))
    assert model.coef == pytest.approx(beta, rel=1e-8, abs=1e-10)
    assert model.smearing == pytest.approx(smearing, rel=1e-8)
    assert model.predict(data, np.array(rows[-3:])) == pytest.approx(xm[-3:] @ beta + smearing, rel=1e-8)
    plain = HARForecaster(log=False).fit(data, np.array(rows))
    xp = np.column_stack([np.ones(len(rows)), np.exp(xm[:, 1:])])
    beta_plain = np.linalg.solve(xp.T @ xp, xp.T @ np.exp(ym))
    assert plain.coef == pytest.approx(beta_plain, rel=1e-6)


@pytest.fixture(scope="module")
def garch_losses() -> dict[str, dict[str, np.ndarray]]:
    candles = garch_candles(12_000, annual_vol=0.6, alpha=0.1, beta=0.85, timeframe="1h", seed=7)
    data = volatility_data(candles["close"].to_numpy(), 8)
    rows, pooled, _ = evaluate_volatility(data, folds=3, kinds=("constant", "ewma", "har"))
    assert {r["fold"] for r in rows} == {0, 1, 2}
    return pooled


@pytest.mark.parametrize("kind", ["ewma", "har"])
def test_forecasters_beat_the_unconditional_variance_on_garch(
    garch_losses: dict[str, dict[str, np.ndarray]], kind: str
) -> None:
    dm = diebold_mariano(garch_losses[kind]["qlike"], garch_losses["constant"]["qlike"], lag=40)
    assert dm["mean_difference"] < 0 and dm["z"] < -2.0, dm  # lower QLIKE, significantly


def test_newey_west_reduces_to_the_plain_standard_error_at_lag_zero() -> None:
    d = np.random.default_rng(0).normal(size=500)
    assert newey_west_se(d, 0) == pytest.approx(d.std(ddof=0) / math.sqrt(d.size))
    persistent = np.repeat(np.random.default_rng(1).normal(size=50), 10)  # blocks of 10 equal values
    assert newey_west_se(persistent, 20) > 2 * newey_west_se(persistent, 0)


def rescaled(candles: pd.DataFrame, price: float = 10.0, volume: float = 7.0) -> pd.DataFrame:
    out = candles.copy()
    for column in ("open", "high", "low", "close"):
        out[column] = out[column] * price
    out["volume"] = out["volume"] * volume
    return out


TINY_NET = {"epochs": 2, "steps_per_epoch": 5, "batch_size": 16}


@pytest.mark.parametrize("kind", ["constant", "ewma", "har", "har_plain", "lightgbm", "transformer"])
def test_forecasts_are_scale_free(kind: str) -> None:
    candles = generate_market(2_500, timeframe=Timeframe.H1, seed=3)
    data = []
    for frame in (candles, rescaled(candles)):
        with_features = kind in ("lightgbm", "transformer")
        features = model_inputs(FeaturePipeline("minimal", Timeframe.H1).batch(frame)) if with_features else None
        data.append(volatility_data(frame["close"].to_numpy(), 6, features, har_days=(1, 5, 10)))
    options = TINY_NET if kind == "transformer" else {}
    context = 256 if kind == "transformer" else 1
    eligible = np.flatnonzero(data[0].eligible(context))
    assert np.array_equal(eligible, np.flatnonzero(data[1].eligible(context)))
    train, test = eligible[:1500], eligible[1600:]
    a = volatility_forecaster(kind, **options).fit(data[0], train, test[:200]).predict(data[0], test)
    b = volatility_forecaster(kind, **options).fit(data[1], train, test[:200]).predict(data[1], test)
    assert np.isfinite(a).all()
    # the network computes in float32: features equal to ~1e-12 give forecasts equal to float32 rounding
    tolerance = 1e-5 if kind == "transformer" else 1e-9
    assert a == pytest.approx(b, rel=tolerance, abs=tolerance)


def test_transformer_forecaster_trains_on_full_windows_at_the_right_level() -> None:
    """On GARCH data a short training gives finite, varying forecasts at the level of the training variance."""
    candles = garch_candles(3_000, annual_vol=0.6, timeframe="1h", seed=2)
    data = volatility_data(candles["close"].to_numpy(), 6, har_days=(1, 5, 10))
    eligible = np.flatnonzero(data.eligible(256))
    assert eligible[0] >= 255  # a full 256-bar window of complete inputs
    train, val, test = eligible[:1800], eligible[1850:2200], eligible[2250:]
    model = volatility_forecaster("transformer", epochs=3, steps_per_epoch=30, batch_size=32)
    forecast = model.fit(data, train, val).predict(data, test)
    assert np.isfinite(forecast).all() and forecast.std() > 0
    assert abs(forecast.mean() - np.log(np.mean(np.exp(data.target[train])))) < 1.0  # the right level, in logs


def test_user_errors_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown volatility forecaster"):
        volatility_forecaster("garch")
    with pytest.raises(ConfigError, match="positive"):
        volatility_data(np.array([1.0, 0.0, 2.0]), 1)
    with pytest.raises(ConfigError, match="horizon"):
        forward_realised_variance(np.array([1.0, 2.0, 3.0]), 0)
    with pytest.raises(ConfigError, match="fewer --folds"):
        evaluate_volatility(volatility_data(random_closes(300), 4, har_days=(1, 2)), folds=5)
    with pytest.raises(ConfigError, match="price level"):
        volatility_data(random_closes(50), 2, pd.DataFrame({"sma_20": np.ones(50)}))


def test_on_iid_returns_har_does_not_beat_the_constant() -> None:
    """The control: with constant volatility there is nothing to forecast, and HAR-RV finds nothing."""
    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(0).normal(0.0, 0.01, 12_000)))
    _, pooled, _ = evaluate_volatility(volatility_data(close, 8), folds=3, kinds=("constant", "har"))
    dm = diebold_mariano(pooled["har"]["qlike"], pooled["constant"]["qlike"], lag=40)
    assert dm["z"] > -2.0, dm


def test_forecaster_names_are_checked_before_any_work() -> None:
    assert check_kinds(["har", " ewma", "har", ""]) == ("har", "ewma")
    with pytest.raises(ConfigError, match="unknown volatility forecaster 'garch'"):
        check_kinds(["har", "garch"])
    with pytest.raises(ConfigError, match="no volatility forecaster"):
        check_kinds([" "])
