"""Batch equals streaming bit for bit; NaN candles, short series, ``ready``/``reset`` and spec parsing."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import ConfigError
from smartmarket.core.frame import CANDLE_COLUMNS, as_candle_frame
from smartmarket.features.base import Feature
from smartmarket.features.indicators import (
    DEFAULT_SPECS,
    INDICATORS,
    IndicatorSet,
    make_indicator,
)

ALL_SPECS = (*DEFAULT_SPECS, "bb_20_2.5", "rvol_20_8760", "stoch_5_3_4", "macd_5_35_5", "keltner_10_1.5")

REQUIRED_COLUMNS = [
    "sma_20",
    "ema_20",
    "wma_20",
    "rsi_14",
    "macd_12_26_9",
    "macd_signal_12_26_9",
    "macd_hist_12_26_9",
    "bb_upper_20_2",
    "bb_middle_20_2",
    "bb_lower_20_2",
    "bb_width_20_2",
    "bb_pctb_20_2",
    "atr_14",
    "adx_14",
    "plus_di_14",
    "minus_di_14",
    "stoch_k_14_3_3",
    "stoch_d_14_3_3",
    "cci_20",
    "obv",
    "mfi_14",
    "vwap_20",
    "roc_10",
    "mom_10",
    "rvol_20",
    "chop_14",
    "donchian_upper_20",
    "donchian_lower_20",
    "donchian_mid_20",
    "keltner_upper_20_2",
    "keltner_middle_20_2",
    "keltner_lower_20_2",
]


def _bits(frame: pd.DataFrame) -> np.ndarray:
    return frame.to_numpy(dtype=np.float64).view(np.int64)


def _rows(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(CANDLE_COLUMNS)].to_numpy(dtype=np.float64)


def _update(feature: Feature, row: np.ndarray) -> None:
    ts, o, h, lo, c, v = row.tolist()
    feature.update(int(ts), o, h, lo, c, v)


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    return as_candle_frame(pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz").iloc[30_000:33_000])


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_batch_equals_stream_bit_for_bit(spec: str, candles: pd.DataFrame) -> None:
    indicator = make_indicator(spec)
    batch = indicator.batch(candles)
    streamed = indicator.stream(candles)
    assert list(batch.columns) == list(indicator.columns)
    assert np.array_equal(_bits(batch), _bits(streamed))
    assert batch.iloc[-1].notna().all()


def test_indicator_set_batch_equals_stream_and_members(candles: pd.DataFrame) -> None:
    indicators = IndicatorSet(ALL_SPECS)
    batch = indicators.batch(candles)
    assert np.array_equal(_bits(batch), _bits(indicators.stream(candles)))
    for member in indicators.indicators:  # the shared column-major block equals each member on its own
        assert np.array_equal(_bits(batch[list(member.columns)]), _bits(member.batch(candles)))


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_ready_follows_warmup_and_values_are_defined_once_ready(spec: str, candles: pd.DataFrame) -> None:
    indicator = make_indicator(spec)
    rows = candles.iloc[: indicator.warmup + 5]
    for i, row in enumerate(_rows(rows)):
        _update(indicator, row)
        assert indicator.ready == (i + 1 >= indicator.warmup)
        values = np.array(indicator.values)
        assert np.isfinite(values).all() == indicator.ready
        if i + 2 == indicator.warmup:
            assert np.isnan(values).any()


def test_reset_forgets_everything(candles: pd.DataFrame) -> None:
    indicators = IndicatorSet(ALL_SPECS)
    head = candles.iloc[:500]
    indicators.stream(candles.iloc[1000:1400])  # leaves state behind; stream() itself resets first
    first = indicators.stream(head)
    for row in _rows(candles.iloc[2000:2100]):
        _update(indicators, row)
    indicators.reset()
    assert not indicators.ready and all(np.isnan(indicators.values))
    again = pd.DataFrame([_feed(indicators, row) for row in _rows(head)], columns=first.columns)
    assert np.array_equal(_bits(again), _bits(first))


def _feed(indicator: Feature, row: np.ndarray) -> tuple[float, ...]:
    _update(indicator, row)
    return indicator.values


# --- NaN candles: skipped, NaN outputs on that bar, state untouched ----------------------------------------


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_nan_candle_is_skipped(spec: str, candles: pd.DataFrame) -> None:
    frame = candles.iloc[:1200].reset_index(drop=True)
    bad_rows = [3, 400, 401, 402, 777]
    dirty = frame.copy()
    dirty.loc[3, "close"] = np.nan
    dirty.loc[400, "volume"] = np.nan
    dirty.loc[401, "high"] = np.inf
    dirty.loc[402, ["open", "high", "low", "close", "volume"]] = np.nan
    dirty.loc[777, "low"] = -np.inf
    indicator = make_indicator(spec)

    out = indicator.batch(dirty)
    assert out.iloc[bad_rows].isna().all().all()
    assert np.array_equal(_bits(out), _bits(indicator.stream(dirty)))
    clean = indicator.batch(frame.drop(index=bad_rows).reset_index(drop=True))
    assert np.array_equal(_bits(out.drop(index=bad_rows)), _bits(clean))


def test_ready_stays_true_while_a_skipped_bar_outputs_nan(candles: pd.DataFrame) -> None:
    rsi = make_indicator("rsi_14")
    rsi.stream(candles.iloc[:50])
    assert rsi.ready
    rsi.update(0, np.nan, np.nan, np.nan, np.nan, np.nan)
    assert rsi.ready and np.isnan(rsi.values[0])


def test_rvol_skips_non_positive_close(candles: pd.DataFrame) -> None:
    frame = candles.iloc[:300].reset_index(drop=True)
    dirty = frame.copy()
    dirty.loc[100, "close"] = 0.0
    dirty.loc[150, "close"] = -1.0
    rvol = make_indicator("rvol_20")
    out = rvol.batch(dirty)
    assert out.iloc[[100, 150]].isna().all().all()
    clean = rvol.batch(frame.drop(index=[100, 150]).reset_index(drop=True))
    assert np.array_equal(_bits(out.drop(index=[100, 150])), _bits(clean))


# --- short series -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_short_series_is_all_nan_and_not_ready(spec: str, candles: pd.DataFrame) -> None:
    indicator = make_indicator(spec)
    short = candles.iloc[: indicator.warmup - 1]
    out = indicator.batch(short)
    assert out.shape == (len(short), len(indicator.columns))
    if len(short):  # empty for OBV, which is defined from the first bar
        assert out.iloc[-1].isna().any()
    streamed = indicator.stream(short)
    assert np.array_equal(_bits(out), _bits(streamed))
    assert not indicator.ready


def test_empty_frame(candles: pd.DataFrame) -> None:
    out = IndicatorSet(ALL_SPECS).batch(candles.iloc[:0])
    assert out.shape == (0, len(IndicatorSet(ALL_SPECS).columns))


def test_fewer_rows_than_period_gives_nan_not_partial_values(candles: pd.DataFrame) -> None:
    out = IndicatorSet(["sma_200", "ema_200", "bb_50_2", "donchian_100"]).batch(candles.iloc[:40])
    assert out.isna().all().all()


# --- documented edge cases on hand-made candles -------------------------------------------------------------


def _flat(n: int, price: float = 100.0, volume: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {"ts": np.arange(n, dtype=np.int64) * 60_000, "open": price, "high": price, "low": price, "close": price,
         "volume": volume}
    )  # fmt: skip


def test_flat_market_conventions() -> None:
    out = IndicatorSet(["rsi_14", "bb_20_2", "chop_14", "vwap_20", "mfi_14", "cci_20", "stoch_14_3_3"]).batch(_flat(60))
    last = out.iloc[-1]
    assert last["rsi_14"] == 0.0 and last["mfi_14"] == 0.0 and last["cci_20"] == 0.0 and last["stoch_k_14_3_3"] == 0.0
    assert np.isnan(last["bb_pctb_20_2"]) and last["bb_width_20_2"] == 0.0
    assert np.isnan(last["chop_14"]) and np.isnan(last["vwap_20"])


# --- registry and spec parsing ------------------------------------------------------------------------------


def test_default_set_has_every_required_column() -> None:
    columns = IndicatorSet(DEFAULT_SPECS).columns
    assert set(REQUIRED_COLUMNS) - {"ema_20"} <= set(columns)
    assert make_indicator("ema_20").columns == ("ema_20",)
    assert len(DEFAULT_SPECS) == 25


@pytest.mark.parametrize(
    ("spec", "columns"),
    [
        ("RSI_14", ("rsi_14",)),
        ("bb_20_2", tuple(f"bb_{p}_20_2" for p in ("upper", "middle", "lower", "width", "pctb"))),
        ("bb_20_2.5", tuple(f"bb_{p}_20_2.5" for p in ("upper", "middle", "lower", "width", "pctb"))),
        ("macd", ("macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9")),
        ("rvol_30_8760", ("rvol_30_8760",)),
        ("obv", ("obv",)),
    ],
)
def test_make_indicator_parses_specs(spec: str, columns: tuple[str, ...]) -> None:
    assert make_indicator(spec).columns == columns


@pytest.mark.parametrize(
    "spec", ["nope_14", "sma_x", "sma_0", "sma_2.5", "obv_3", "macd_26_12_9", "bb_20_-1", "rvol_1"]
)
def test_bad_specs_raise_config_error(spec: str) -> None:
    with pytest.raises(ConfigError):
        make_indicator(spec)


def test_registry_names_are_their_column_prefixes() -> None:
    for name in INDICATORS:
        assert make_indicator(name).columns[0].startswith(name)


def test_duplicate_columns_rejected() -> None:
    with pytest.raises(ConfigError):
        IndicatorSet(["sma_20", "sma_20"])


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_the_kernels_step_equals_the_batch_and_survives_pickling_midway(spec: str, candles: pd.DataFrame) -> None:
    """``step`` calls the compiled entry point directly; a pickled copy finds its own and goes on identically."""
    indicator = make_indicator(spec)
    rows = [tuple(map(float, r)) for r in candles[["open", "high", "low", "close", "volume"]].to_numpy()]
    half = len(rows) // 2
    stepped = [indicator.step(0, *r) for r in rows[:half]]
    copy = pickle.loads(pickle.dumps(indicator))
    rest, copied = [indicator.step(0, *r) for r in rows[half:]], [copy.step(0, *r) for r in rows[half:]]
    assert _bits(pd.DataFrame(rest)).tobytes() == _bits(pd.DataFrame(copied)).tobytes()
    expected = indicator.batch(candles).to_numpy()
    assert np.array_equal(_bits(pd.DataFrame(stepped + rest)), _bits(pd.DataFrame(expected)))


def test_an_integer_price_given_to_step_is_taken_as_a_float() -> None:
    by_int, by_float = make_indicator("sma_3"), make_indicator("sma_3")
    for first in (1.0, 1.5):  # the entry point is found for float64 prices
        by_float.step(0, first, first, first, first, 1.0)
        by_int.step(0, first, first, first, first, 1.0)
    for close in (2, 3):
        assert by_int.step(0, close, close, close, close, 1) == by_float.step(0, *[float(close)] * 4, 1.0)
    assert by_int.values == pytest.approx((6.5 / 3,))
