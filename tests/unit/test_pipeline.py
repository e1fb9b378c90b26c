"""Feature pipeline: causality of every column, batch = streaming, closed higher-timeframe bars only, NaN and gaps."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from smartmarket.core.errors import ConfigError, ValidationError
from smartmarket.core.types import HOUR_MS, Timeframe
from smartmarket.features import FeaturePipeline, FeatureSet, MultiTimeframeSpec, make_derived
from smartmarket.features.indicators import make_indicator
from smartmarket.features.multitimeframe import HigherTimeframe
from smartmarket.features.pipeline import FeatureGroup

BASE_TS = 1_704_067_200_000  # 2024-01-01T00:00Z, a 4h and 1d bucket start


@pytest.fixture(scope="module")
def btc(shared_data: Path) -> pd.DataFrame:
    """A real 4,000-row slice of BTCUSDT 1h (it contains real gaps: 2019-2020)."""
    with gzip.open(shared_data / "BTCUSDT-1h.csv.gz", "rt") as fh:
        frame = pd.read_csv(fh)
    return frame.iloc[12_000:16_000].reset_index(drop=True)


def same(a: pd.DataFrame | np.ndarray, b: pd.DataFrame | np.ndarray) -> None:
    """Bit-identical, NaN equal to NaN."""
    np.testing.assert_array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))


def test_every_column_of_the_default_set_is_causal(btc: pd.DataFrame) -> None:
    pipeline = FeaturePipeline("default", "1h")
    full = pipeline.batch(btc)
    assert list(full.columns) == ["ts", *pipeline.columns]
    assert full.iloc[-1].notna().all()  # every column is defined on this slice
    cuts = sorted({*np.linspace(50, len(btc) - 2, 25).astype(int), 459, 460, 461, 462, 463, 1001, 1002, 1003})
    for t in cuts:
        head = pipeline.batch(btc.iloc[: t + 1])
        same(head, full.iloc[: t + 1])


def test_smc_columns_of_the_full_set_are_causal(btc: pd.DataFrame) -> None:
    pipeline = FeaturePipeline("full", "1h")
    frame = btc.iloc[:1500]
    full = pipeline.batch(frame)
    assert "smc_trend" in full.columns
    for t in (200, 777, 1200):
        same(pipeline.batch(frame.iloc[: t + 1]), full.iloc[: t + 1])


@pytest.mark.parametrize("name", ["minimal", "default", "full"])
def test_batch_equals_streaming_bit_for_bit(btc: pd.DataFrame, name: str) -> None:
    frame = btc.iloc[:2500] if name == "full" else btc
    pipeline = FeaturePipeline(name, "1h")
    batch = pipeline.batch(frame)
    stream = pipeline.stream(frame)
    assert list(batch.columns) == list(stream.columns)
    same(batch, stream)
    # Live use: the values returned by update() for the last candle are the last row of the batch frame.
    pipeline.reset()
    for row in frame.itertuples(index=False):
        values = pipeline.update(row.ts, row.open, row.high, row.low, row.close, row.volume)
    same(np.array(values), batch.iloc[-1, 1:].to_numpy())


def test_nan_candle_in_the_middle(btc: pd.DataFrame) -> None:
    frame = btc.iloc[:2000].copy()
    bad = 1201  # an hour inside a 4h bucket (not its last hour)
    assert int(frame["ts"].iloc[bad]) % (4 * HOUR_MS) != 3 * HOUR_MS
    frame.loc[bad, "close"] = np.nan
    pipeline = FeaturePipeline("default", "1h")
    out = pipeline.batch(frame)
    same(out, pipeline.stream(frame))
    bar_level = [c for c in pipeline.columns if not c.startswith("htf_")]
    htf = [c for c in pipeline.columns if c.startswith("htf_")]
    assert out.loc[bad, bar_level].isna().all()  # the bar itself has no value...
    assert out.loc[bad, htf].notna().all()  # ...while the closed 4h values are carried
    assert out.loc[bad + 1].notna().all()
    # Everything else is as if the bad candle had never existed.
    without = pipeline.batch(frame.drop(index=bad).reset_index(drop=True))
    same(out.drop(index=bad), without)


def test_gaps_are_invisible_to_bar_features_and_close_htf_buckets(btc: pd.DataFrame) -> None:
    ts = btc["ts"].to_numpy()
    gaps = np.flatnonzero(np.diff(ts) > HOUR_MS)
    assert len(gaps) > 0  # the real slice has gaps
    pipeline = FeaturePipeline("minimal", "1h")
    with_gap = pipeline.batch(btc)
    shifted = btc.copy()
    shifted["ts"] = BASE_TS + np.arange(len(btc)) * HOUR_MS  # same candles, no gaps
    same(with_gap.iloc[:, 1:], pipeline.batch(shifted).iloc[:, 1:])


def hourly(closes: list[float], start: int = BASE_TS) -> pd.DataFrame:
    c = np.asarray(closes, dtype=np.float64)
    return pd.DataFrame(
        {
            "ts": start + np.arange(len(c), dtype=np.int64) * HOUR_MS,
            "open": c,
            "high": c + 1.0,
            "low": c - 1.0,
            "close": c,
            "volume": np.ones(len(c)),
        }
    )


def htf_close_feature(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """4h close (sma_1) and high/low (donchian_1) of the last closed 4h bar, on a 1h frame; batch and stream."""
    inner = FeatureGroup([make_indicator("sma_1"), make_indicator("donchian_1")])
    feature = HigherTimeframe(Timeframe.H1, Timeframe.H4, inner, "tf4h_")
    batch = feature.batch(frame).to_numpy()
    stream = feature.stream(frame).to_numpy()
    same(batch, stream)
    return batch[:, 0], batch[:, 1:3]


def test_only_closed_higher_timeframe_bars_are_used() -> None:
    closes = [10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33]  # three complete 4h buckets
    close, high_low = htf_close_feature(hourly(closes))
    same(close, [np.nan] * 3 + [13] * 4 + [23] * 4 + [33])
    same(high_low[3], [14, 9])  # max high / min low of the first bucket
    # Changing the hours of a bucket that is still forming does not change anything before it closes.
    changed = closes.copy()
    changed[8:11] = [1000, 1, 500]
    close2, _ = htf_close_feature(hourly(changed))
    same(close2[:11], close[:11])
    assert close2[11] == 33  # it closed: now its close is used...
    _, high_low2 = htf_close_feature(hourly(changed))
    same(high_low2[11], [1001, 0])  # ...with the extremes of the hours that were not visible before


def test_htf_bucket_with_missing_last_candle_closes_on_the_next_bucket() -> None:
    frame = hourly([10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33])
    frame = frame.drop(index=7).reset_index(drop=True)  # 07:00, the last hour of the second bucket, is missing
    close, _ = htf_close_feature(frame)
    # rows 00 01 02 03 | 04 05 06 | 08 09 10 11: the 04-07 bucket closes on 08, the first row that can see it
    same(close, [np.nan] * 3 + [13] * 4 + [22] * 3 + [33])


def test_htf_nan_candle_is_left_out_of_the_bucket_but_still_closes_it() -> None:
    frame = hourly([10, 11, 12, 13, 20, 21, 22, 23])
    frame.loc[7, "close"] = np.nan  # the bucket's last candle is bad: the bucket closes there, without it
    frame.loc[5, "high"] = np.nan  # a bad candle inside: left out of max high / min low
    close, high_low = htf_close_feature(frame)
    same(close, [np.nan] * 3 + [13] * 4 + [22])
    same(high_low[7], [23, 19])


def test_default_set_htf_matches_resampled_4h_frame(btc: pd.DataFrame) -> None:
    frame = btc.iloc[:1200]
    out = FeaturePipeline("default", "1h").batch(frame)
    four_hour = frame.assign(bucket=frame["ts"] // (4 * HOUR_MS) * (4 * HOUR_MS)).groupby("bucket")
    htf = pd.DataFrame(
        {
            "ts": four_hour.size().index,
            "open": four_hour["open"].first(),
            "high": four_hour["high"].max(),
            "low": four_hour["low"].min(),
            "close": four_hour["close"].last(),
            "volume": four_hour["volume"].sum(),
        }
    ).reset_index(drop=True)
    rsi = make_indicator("rsi_14").batch(htf)["rsi_14"].to_numpy()
    # The 1h row at the last hour of each complete bucket carries that bucket's 4h RSI.
    last_hours = np.flatnonzero(frame["ts"].to_numpy() % (4 * HOUR_MS) == 3 * HOUR_MS)
    buckets = np.searchsorted(htf["ts"].to_numpy(), frame["ts"].to_numpy()[last_hours] - 3 * HOUR_MS)
    complete = four_hour.size().to_numpy()[buckets] == 4
    got = out["htf_rsi_14"].to_numpy()[last_hours[complete]]
    assert np.isfinite(got[-100:]).all()
    np.testing.assert_allclose(got[-100:], rsi[buckets[complete]][-100:], rtol=1e-9)


def test_derived_features_match_their_definitions(btc: pd.DataFrame) -> None:
    close, high, low, volume = (btc[c].to_numpy() for c in ("close", "high", "low", "volume"))
    np.testing.assert_allclose(make_derived("logret_5").batch(btc)["logret_5"][5:], np.log(close[5:] / close[:-5]))
    ema = talib.EMA(close, 50)
    atr = talib.ATR(high, low, close, 14)
    np.testing.assert_allclose(make_derived("emadist_50").batch(btc)["emadist_50"], (close - ema) / atr, rtol=1e-9)
    lv = pd.Series(np.log1p(volume))
    z = (lv - lv.rolling(20).mean()) / lv.rolling(20).std()
    np.testing.assert_allclose(make_derived("volz_20").batch(btc)["volz_20"], z, rtol=1e-7, atol=1e-12)
    shape = make_derived("shape").batch(btc)
    np.testing.assert_allclose(shape["hlrange"], (high - low) / close)
    with pytest.raises(ConfigError):
        make_derived("nope_3")


def test_declaration_errors_and_strict_time_order(btc: pd.DataFrame) -> None:
    with pytest.raises(ConfigError):
        FeaturePipeline("no-such-set", "1h")
    with pytest.raises(ConfigError):
        FeaturePipeline("default", "1w")  # no higher timeframe above 1w
    with pytest.raises(ConfigError):
        FeaturePipeline(FeatureSet("x", multi_timeframe=(MultiTimeframeSpec("3m", ("rsi_14",)),)), "5m")
    with pytest.raises(ConfigError):
        FeaturePipeline(FeatureSet("dup", indicators=("rsi_14", "rsi_14")), "1h")
    explicit = FeaturePipeline(FeatureSet("x", multi_timeframe=(MultiTimeframeSpec("1d", ("rsi_14",)),)), "1h")
    assert explicit.columns == ("tf1d_rsi_14",)
    pipeline = FeaturePipeline("minimal", "1h")
    with pytest.raises(ValidationError):
        pipeline.batch(btc.iloc[[0, 2, 1]])
    pipeline.update(BASE_TS, 1, 1, 1, 1, 1)
    with pytest.raises(ValidationError):
        pipeline.update(BASE_TS, 1, 1, 1, 1, 1)
