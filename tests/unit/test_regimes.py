"""Regime labeller: hand-built markets, agreement with the synthetic true regimes, hysteresis, batch = stream."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import ConfigError
from smartmarket.data.synthetic import Regime, simulate_market
from smartmarket.features.regimes import (
    REGIME_COLUMNS,
    RegimeConfig,
    RegimeFeature,
    RegimeLabel,
    label_regimes,
    regime_names,
)

HOUR = 3_600_000


def candles_from_log_closes(log_close: np.ndarray, wick: float = 0.001) -> pd.DataFrame:
    close = np.exp(log_close)
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame(
        {
            "ts": np.arange(len(close), dtype=np.int64) * HOUR,
            "open": open_,
            "high": np.maximum(open_, close) * (1 + wick),
            "low": np.minimum(open_, close) * (1 - wick),
            "close": close,
            "volume": np.ones(len(close)),
        }
    )


def random_walk(n: int, sigma: float, seed: int, drift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.log(100.0) + np.cumsum(drift + sigma * rng.standard_normal(n))


def mean_reverting(n: int, sigma: float, seed: int, pull: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = x[i - 1] * (1 - pull) + sigma * rng.standard_normal()
    return np.log(100.0) + x


def share(labels: pd.Series, name: str) -> float:
    return float((labels == name).mean())


def test_clear_uptrend_after_a_range_is_trending_up() -> None:
    calm = mean_reverting(600, 0.004, seed=1)
    trend = calm[-1] + np.cumsum(0.003 + 0.004 * np.random.default_rng(2).standard_normal(300))
    labels = label_regimes(candles_from_log_closes(np.concatenate([calm, trend])))
    assert share(labels.iloc[400:600], "ranging") > 0.8
    assert share(labels.iloc[660:900], "trending_up") > 0.8


def test_clear_downtrend_is_trending_down() -> None:
    calm = mean_reverting(600, 0.004, seed=3)
    trend = calm[-1] + np.cumsum(-0.003 + 0.004 * np.random.default_rng(4).standard_normal(300))
    labels = label_regimes(candles_from_log_closes(np.concatenate([calm, trend])))
    assert share(labels.iloc[660:900], "trending_down") > 0.8
    assert share(labels.iloc[660:900], "trending_up") == 0.0


def test_range_is_ranging_and_volatility_burst_is_volatile() -> None:
    calm = mean_reverting(1500, 0.004, seed=5)
    burst = calm[-1] + mean_reverting(80, 0.025, seed=6)
    after = burst[-1] + mean_reverting(300, 0.004, seed=7)
    labels = label_regimes(candles_from_log_closes(np.concatenate([calm, burst, after])))
    warmup = RegimeConfig().warmup
    assert (labels.iloc[: warmup - 1] == "unknown").all()  # the first label needs `warmup` candles
    assert (labels.iloc[warmup - 1 :] != "unknown").all()
    assert share(labels.iloc[300:1500], "ranging") > 0.9
    assert share(labels.iloc[1510:1580], "volatile") > 0.9
    assert share(labels.iloc[1700:], "volatile") < 0.2  # it calms down again


def test_agreement_with_the_synthetic_markets_true_regimes() -> None:
    market = simulate_market(60_000, timeframe="1h", seed=11)
    codes = RegimeFeature().batch_array(market.candles)[:, 0]
    known = ~np.isnan(codes)
    pred, true = codes[known].astype(int), market.regimes[known]

    def rate(label: RegimeLabel, given: Regime) -> float:
        return float(np.mean(pred[true == given] == label))

    # Each label is far more frequent in its own true regime than in the others (lagging, but meaningful).
    assert rate(RegimeLabel.TRENDING_UP, Regime.TREND_UP) > 3 * rate(RegimeLabel.TRENDING_UP, Regime.TREND_DOWN)
    assert rate(RegimeLabel.TRENDING_DOWN, Regime.TREND_DOWN) > 3 * rate(RegimeLabel.TRENDING_DOWN, Regime.TREND_UP)
    assert rate(RegimeLabel.TRENDING_UP, Regime.TREND_UP) > 2 * rate(RegimeLabel.TRENDING_UP, Regime.RANGE)
    assert rate(RegimeLabel.VOLATILE, Regime.VOLATILE) > 1.5 * rate(RegimeLabel.VOLATILE, Regime.RANGE)
    assert rate(RegimeLabel.RANGING, Regime.RANGE) > 0.5
    # Overall agreement beats always answering the most frequent true regime.
    assert np.mean(pred == true) > np.bincount(true).max() / len(true)


def test_labels_do_not_flicker() -> None:
    config = RegimeConfig()
    codes = RegimeFeature(config).batch_array(simulate_market(20_000, timeframe="1h", seed=12).candles)[:, 0]
    codes = codes[~np.isnan(codes)]
    change = np.flatnonzero(np.diff(codes) != 0) + 1
    runs = np.diff(np.concatenate([[0], change, [len(codes)]]))
    assert len(runs) > 50  # it does switch
    assert runs[:-1].min() >= config.min_dwell  # every completed run lasted the minimum dwell
    bars = RegimeFeature(config).batch(simulate_market(3_000, timeframe="1h", seed=12).candles)["regime_bars"]
    assert bars.dropna().min() == 1


def test_regression_columns_match_numpy() -> None:
    frame = simulate_market(3_000, timeframe="1h", seed=13).candles
    config = RegimeConfig()
    out = RegimeFeature(config).batch(frame)
    log_close = np.log(frame["close"].to_numpy())
    returns = np.diff(log_close)
    w, n = config.trend_window, config.vol_window
    for t in (400, 1234, 2999):
        y = log_close[t - w + 1 : t + 1]
        slope, _ = np.polyfit(np.arange(w), y, 1)
        r2 = np.corrcoef(np.arange(w), y)[0, 1] ** 2
        vol = returns[t - n : t].std(ddof=1)
        assert out["regime_r2"].iloc[t] == pytest.approx(r2, rel=1e-7)
        assert out["regime_trend"].iloc[t] == pytest.approx(slope * np.sqrt(w) / vol, rel=1e-7)
        assert 0.0 <= out["regime_vol_pct"].iloc[t] <= 1.0
    one_hot = out[[c for c in REGIME_COLUMNS if c.startswith("regime_") and c[7:] in regime_names([0, 1, 2, 3])]]
    labelled = out["regime"].notna()
    assert (one_hot[labelled].sum(axis=1) == 1).all()
    assert (one_hot[labelled].to_numpy().argmax(axis=1) == out["regime"][labelled].to_numpy()).all()


def test_batch_equals_stream_with_bad_candles_and_is_causal() -> None:
    frame = simulate_market(2_500, timeframe="1h", seed=14).candles
    frame.loc[[700, 701, 1500], "close"] = np.nan
    frame.loc[900, "high"] = np.inf
    feature = RegimeFeature()
    batch = feature.batch(frame)
    stream = feature.stream(frame)
    np.testing.assert_array_equal(batch.to_numpy(), stream.to_numpy())
    assert batch.loc[[700, 701, 900, 1500]].isna().all().all()
    assert batch.loc[702].notna().all()
    for t in (300, 700, 1499, 2000):
        np.testing.assert_array_equal(feature.batch(frame.iloc[: t + 1]).to_numpy(), batch.iloc[: t + 1].to_numpy())


def test_label_names_and_config_checks() -> None:
    assert list(regime_names([np.nan, 0, 1, 2, 3])) == [
        "unknown", "ranging", "trending_up", "trending_down", "volatile",
    ]  # fmt: skip
    feature = RegimeFeature()
    assert feature.label is RegimeLabel.UNKNOWN and not feature.ready
    with pytest.raises(ConfigError):
        RegimeConfig(adx_enter=10.0, adx_exit=20.0)
    with pytest.raises(ConfigError):
        RegimeConfig(vol_lookback=10, vol_sample_every=8)
