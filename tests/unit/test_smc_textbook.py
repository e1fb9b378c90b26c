"""SMC detectors on hand-built candle sequences whose answers are worked out by hand (see docs/smc.md).

Each bearish case is the bullish case mirrored (price p -> K - p, high and low swapped), so both sides are
checked with the same known answers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import ValidationError
from smartmarket.features.smc import SMC_COLUMNS, EventKind, SMCConfig, SMCEvent, SMCFeatures, detect_events

HOUR = 3_600_000
T0 = 1_700_000_000_000


def candles(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    """A candle frame from (open, high, low, close) rows, one hour apart."""
    o, h, lo, c = (list(col) for col in zip(*rows, strict=True))
    ts = [T0 + i * HOUR for i in range(len(rows))]
    return pd.DataFrame({"ts": ts, "open": o, "high": h, "low": lo, "close": c, "volume": 1.0})


def mirror(frame: pd.DataFrame, k: float = 40.0) -> pd.DataFrame:
    """Reflect prices (p -> k - p): highs become lows, bullish candles bearish."""
    return frame.assign(open=k - frame["open"], close=k - frame["close"], high=k - frame["low"], low=k - frame["high"])


def of_kind(events: list[SMCEvent], kind: EventKind) -> list[tuple[int, int, int, float]]:
    """(direction, emitted index, reference index, price) of the events of one kind."""
    return [(e.direction, e.index, e.ref_index, round(e.price, 9)) for e in events if e.kind == kind]


def zones_of(events: list[SMCEvent], kind: EventKind) -> list[tuple[int, int, int, float, float]]:
    return [(e.direction, e.index, e.ref_index, round(e.top, 9), round(e.bottom, 9)) for e in events if e.kind == kind]


# --- fair value gaps ------------------------------------------------------------------------------------------

FVG_ROWS = [
    (10.0, 11.0, 9.0, 10.5),
    (10.5, 14.0, 10.4, 13.8),  # displacement candle: the gap belongs to it
    (13.8, 15.0, 12.0, 14.5),  # low 12 > high two bars back (11): bullish gap [11, 12] known here
    (14.5, 15.5, 13.0, 15.0),  # stays above the gap
    (15.0, 15.2, 11.5, 12.0),  # trades into the gap: partial fill
    (12.0, 13.1, 10.8, 11.0),  # low reaches the gap bottom: filled
]


def test_bullish_fvg_emitted_at_third_candle_then_partially_and_fully_filled() -> None:
    frame = candles(FVG_ROWS)
    events = detect_events(frame, swing_length=1)
    assert zones_of(events, EventKind.FVG) == [(+1, 2, 1, 12.0, 11.0)]
    assert of_kind(events, EventKind.FVG_PARTIAL_FILL) == [(+1, 4, 1, 12.0)]
    assert of_kind(events, EventKind.FVG_FILLED) == [(+1, 5, 1, 12.0)]

    out = SMCFeatures(swing_length=1).batch(frame)
    assert out["smc_fvg_bull"].tolist()[2:] == [1, 0, 0, 0]
    assert out["smc_fvg_bull_open"].tolist()[2:] == [1, 1, 1, 0]
    assert out["smc_fvg_bull_filled"].tolist()[2:] == [0, 0, 0, 1]
    assert out["smc_fvg_bear"].tolist()[2:] == [0, 0, 0, 0]
    # close 14.5 above the gap top 12: the gap lies below, distance (12 - 14.5) / 14.5
    assert out["smc_dist_fvg_bull"].iloc[2] == pytest.approx((12.0 - 14.5) / 14.5)
    assert out["smc_dist_fvg_bull"].iloc[4] == 0.0  # close 12.0 sits on the gap top
    assert math.isnan(out["smc_dist_fvg_bull"].iloc[5])


def test_bearish_fvg_mirrors_the_bullish_one() -> None:
    frame = mirror(candles(FVG_ROWS))
    events = detect_events(frame, swing_length=1)
    assert zones_of(events, EventKind.FVG) == [(-1, 2, 1, 29.0, 28.0)]
    assert of_kind(events, EventKind.FVG_PARTIAL_FILL) == [(-1, 4, 1, 28.0)]
    assert of_kind(events, EventKind.FVG_FILLED) == [(-1, 5, 1, 28.0)]
    out = SMCFeatures(swing_length=1).batch(frame)
    assert out["smc_fvg_bear"].tolist()[2:] == [1, 0, 0, 0]
    assert out["smc_fvg_bear_open"].tolist()[2:] == [1, 1, 1, 0]
    assert out["smc_fvg_bull"].tolist()[2:] == [0, 0, 0, 0]


def test_fvg_min_size_filters_small_gaps() -> None:
    frame = candles(FVG_ROWS)  # gap of 1.0 at close 14.5 is ~6.9 % of price
    assert of_kind(detect_events(frame, swing_length=1, fvg_min_size=0.05), EventKind.FVG)
    assert not of_kind(detect_events(frame, swing_length=1, fvg_min_size=0.10), EventKind.FVG)


# --- swings, BOS, CHoCH, order blocks, premium/discount (swing_length = 2) ----------------------------------

STRUCTURE_ROWS = [
    (10.0, 10.5, 9.5, 10.0),  # 0
    (10.0, 11.0, 9.8, 10.8),  # 1
    (10.8, 12.0, 10.5, 11.8),  # 2  swing high 12 (confirmed at 4)
    (11.8, 11.9, 10.8, 11.0),  # 3
    (11.0, 11.2, 10.0, 10.2),  # 4
    (10.2, 10.4, 9.0, 9.2),  # 5  swing low 9 (confirmed at 7); last bearish candle before the rally
    (9.2, 10.5, 9.1, 10.4),  # 6
    (10.4, 11.5, 10.2, 11.4),  # 7
    (11.4, 12.6, 11.3, 12.5),  # 8  close 12.5 > 12: BOS up; bullish OB = candle 5 [9, 10.4]
    (12.5, 13.0, 12.3, 12.8),  # 9  swing high 13 (confirmed at 11)
    (12.8, 12.9, 11.8, 12.0),  # 10
    (12.0, 12.2, 11.0, 11.2),  # 11
    (11.2, 11.5, 10.6, 10.8),  # 12 last bearish candle before the next rally
    (10.8, 11.0, 10.5, 10.9),  # 13 swing low 10.5 (confirmed at 15)
    (10.9, 12.0, 10.7, 11.8),  # 14
    (11.8, 12.5, 11.6, 12.4),  # 15
    (12.4, 13.5, 12.3, 13.4),  # 16 close 13.4 > 13: BOS up; bullish OB = candle 12 [10.6, 11.5]
    (13.4, 13.6, 12.8, 13.0),  # 17 swing high 13.6 (confirmed at 19)
    (13.0, 13.1, 11.5, 11.7),  # 18 low 11.5 touches OB [10.6, 11.5]
    (11.7, 11.9, 10.9, 11.0),  # 19
    (11.0, 11.1, 10.2, 10.3),  # 20 close 10.3 < 10.5: CHoCH down; OB [10.6, 11.5] mitigated; OB [9, 10.4] touched
    (10.3, 10.5, 9.5, 9.7),  # 21
    (9.7, 9.8, 8.5, 9.2),  # 22 wick below 9 (mitigates OB [9, 10.4] by wick), close back above 9
]


def test_swings_are_emitted_at_the_confirming_bar_with_their_own_time_and_price() -> None:
    frame = candles(STRUCTURE_ROWS)
    events = detect_events(frame, swing_length=2)
    assert of_kind(events, EventKind.SWING_HIGH) == [(+1, 4, 2, 12.0), (+1, 11, 9, 13.0), (+1, 19, 17, 13.6)]
    assert of_kind(events, EventKind.SWING_LOW) == [(-1, 7, 5, 9.0), (-1, 15, 13, 10.5)]
    swing = next(e for e in events if e.kind == EventKind.SWING_HIGH)
    assert (swing.ts, swing.ref_ts) == (T0 + 4 * HOUR, T0 + 2 * HOUR)

    out = SMCFeatures(swing_length=2).batch(frame)
    assert out["smc_swing_high"].notna().to_numpy().nonzero()[0].tolist() == [4, 11, 19]
    assert out["smc_swing_high"].iloc[11] == 13.0
    assert out["smc_swing_low"].notna().to_numpy().nonzero()[0].tolist() == [7, 15]
    assert out.iloc[:4].isna().all().all()  # warm-up: 2 * swing_length + 1 candles


def test_bos_then_choch_are_close_based_and_emitted_at_the_break_bar() -> None:
    frame = candles(STRUCTURE_ROWS)
    events = detect_events(frame, swing_length=2)
    assert of_kind(events, EventKind.BOS) == [(+1, 8, 2, 12.0), (+1, 16, 9, 13.0)]
    assert of_kind(events, EventKind.CHOCH) == [(-1, 20, 13, 10.5)]

    out = SMCFeatures(swing_length=2).batch(frame)
    bos, choch, trend = (out[c].to_numpy() for c in ("smc_bos", "smc_choch", "smc_trend"))
    assert np.flatnonzero(bos[4:]).tolist() == [8 - 4, 16 - 4]
    assert np.flatnonzero(choch[4:]).tolist() == [20 - 4]
    assert choch[20] == -1
    assert trend[4:].tolist() == [0] * 4 + [1] * 12 + [-1] * 3


def test_bearish_structure_mirrors_the_bullish_one() -> None:
    events = detect_events(mirror(candles(STRUCTURE_ROWS)), swing_length=2)
    assert of_kind(events, EventKind.BOS) == [(-1, 8, 2, 28.0), (-1, 16, 9, 27.0)]
    assert of_kind(events, EventKind.CHOCH) == [(+1, 20, 13, 29.5)]
    assert zones_of(events, EventKind.ORDER_BLOCK) == [
        (-1, 8, 5, 31.0, 29.6),
        (-1, 16, 12, 29.4, 28.5),
        (+1, 20, 16, 27.7, 26.5),
    ]


def test_order_blocks_created_at_the_break_then_touched_and_mitigated() -> None:
    frame = candles(STRUCTURE_ROWS)
    events = detect_events(frame, swing_length=2)
    assert zones_of(events, EventKind.ORDER_BLOCK) == [
        (+1, 8, 5, 10.4, 9.0),  # last bearish candle before the first rally
        (+1, 16, 12, 11.5, 10.6),
        (-1, 20, 16, 13.5, 12.3),  # last bullish candle before the drop that made the CHoCH
    ]
    assert of_kind(events, EventKind.ORDER_BLOCK_TOUCHED) == [(+1, 18, 12, 11.5), (+1, 20, 5, 10.4)]
    assert of_kind(events, EventKind.ORDER_BLOCK_MITIGATED) == [(+1, 20, 12, 11.5), (+1, 22, 5, 10.4)]

    out = SMCFeatures(swing_length=2).batch(frame)
    assert out["smc_ob_bull_new"].iloc[8] == 1 and out["smc_ob_bull_new"].iloc[4:8].eq(0).all()
    assert math.isnan(out["smc_ob_bull_top"].iloc[7])  # nothing before the break
    assert (out["smc_ob_bull_top"].iloc[8], out["smc_ob_bull_bottom"].iloc[8]) == (10.4, 9.0)
    # at bar 17 (close 13.0) the nearer active bullish block is [10.6, 11.5]
    assert (out["smc_ob_bull_top"].iloc[17], out["smc_ob_bull_bottom"].iloc[17]) == (11.5, 10.6)
    assert out["smc_dist_ob_bull"].iloc[17] == pytest.approx((11.5 - 13.0) / 13.0)
    assert out["smc_ob_bull_active"].iloc[17] == 2
    assert out["smc_ob_bull_mitigated"].iloc[20] == 1
    assert out["smc_ob_bull_active"].iloc[20] == 1
    assert out["smc_ob_bull_top"].iloc[20] == 10.4
    assert out["smc_ob_bear_new"].iloc[20] == 1
    assert (out["smc_ob_bear_top"].iloc[21], out["smc_ob_bear_bottom"].iloc[21]) == (13.5, 12.3)
    assert out["smc_dist_ob_bear"].iloc[21] == pytest.approx((12.3 - 9.7) / 9.7)
    assert out["smc_ob_bull_mitigated"].iloc[22] == 1
    assert math.isnan(out["smc_ob_bull_top"].iloc[22])


def test_close_based_mitigation_ignores_a_wick_through_the_block() -> None:
    events = detect_events(candles(STRUCTURE_ROWS), swing_length=2, ob_mitigation="close")
    # bar 20 closes (10.3) below 10.6, bar 22 only wicks below 9 and closes at 9.2
    assert of_kind(events, EventKind.ORDER_BLOCK_MITIGATED) == [(+1, 20, 12, 11.5)]


def test_premium_discount_is_the_close_position_in_the_last_swing_range() -> None:
    out = SMCFeatures(swing_length=2).batch(candles(STRUCTURE_ROWS))
    pd_, high, low = (out[c] for c in ("smc_premium_discount", "smc_range_high", "smc_range_low"))
    assert pd_.iloc[4:7].isna().all()  # only a swing high so far
    assert high.iloc[6] == 12.0 and math.isnan(low.iloc[6])
    assert pd_.iloc[7] == pytest.approx((11.4 - 9.0) / (12.0 - 9.0))
    assert pd_.iloc[8] == 1.0  # close above the range high is clipped
    assert pd_.iloc[12] == pytest.approx((10.8 - 9.0) / (13.0 - 9.0))
    assert pd_.iloc[15] == pytest.approx((12.4 - 10.5) / (13.0 - 10.5))
    assert pd_.iloc[21] == 0.0  # below the range low
    assert (high.iloc[19], low.iloc[19]) == (13.6, 10.5)


# --- liquidity: equal highs and their sweep (swing_length = 2) -------------------------------------------------

EQUAL_HIGHS_ROWS = [
    (18.0, 18.5, 17.5, 18.2),  # 0
    (18.2, 19.0, 18.0, 18.8),  # 1
    (18.8, 20.0, 18.6, 19.5),  # 2  swing high 20.00 (confirmed at 4)
    (19.5, 19.6, 18.5, 18.7),  # 3
    (18.7, 18.9, 17.8, 18.0),  # 4
    (18.0, 18.6, 17.5, 18.4),  # 5
    (18.4, 19.5, 18.3, 19.3),  # 6
    (19.3, 20.05, 19.1, 19.8),  # 7  swing high 20.05 (confirmed at 9): equal highs with bar 2
    (19.8, 19.9, 19.0, 19.2),  # 8
    (19.2, 19.4, 18.6, 18.8),  # 9
    (18.8, 19.5, 18.5, 19.3),  # 10
    (19.3, 20.3, 19.2, 19.9),  # 11 trades above 20.05, closes back below: sweep
    (19.9, 20.0, 19.0, 19.1),  # 12
]
LIQUIDITY = SMCConfig(swing_length=2, atr_length=3, liquidity_tolerance_atr=0.1)  # tolerance ~0.11


def test_equal_highs_form_a_pool_when_the_second_swing_is_confirmed_and_a_sweep_is_reported() -> None:
    frame = candles(EQUAL_HIGHS_ROWS)
    events = detect_events(frame, LIQUIDITY)
    assert zones_of(events, EventKind.EQUAL_HIGHS) == [(+1, 9, 7, 20.05, 20.0)]
    assert of_kind(events, EventKind.LIQUIDITY_SWEEP) == [(+1, 11, 7, 20.05)]
    assert not of_kind(events, EventKind.LIQUIDITY_TAKEN)
    assert not of_kind(events, EventKind.BOS)  # a sweep closes back: no break of structure

    out = SMCFeatures(LIQUIDITY).batch(frame)
    assert out["smc_eqh"].tolist()[4:] == [0, 0, 0, 0, 0, 2, 0, 0, 0]
    assert out["smc_liq_high"].iloc[8:12].isna().tolist() == [True, False, False, True]
    assert out["smc_liq_high"].iloc[9] == 20.05
    assert out["smc_dist_liq_high"].iloc[10] == pytest.approx((20.05 - 19.3) / 19.3)
    assert out["smc_sweep_high"].tolist()[4:] == [0, 0, 0, 0, 0, 0, 0, 1, 0]


def test_a_close_above_the_pool_takes_the_liquidity_instead_of_sweeping_it() -> None:
    rows = list(EQUAL_HIGHS_ROWS)
    rows[11] = (19.3, 20.3, 19.2, 20.2)
    events = detect_events(candles(rows), LIQUIDITY)
    assert of_kind(events, EventKind.LIQUIDITY_TAKEN) == [(+1, 11, 7, 20.05)]
    assert not of_kind(events, EventKind.LIQUIDITY_SWEEP)
    assert of_kind(events, EventKind.BOS) == [(+1, 11, 7, 20.05)]


def test_equal_lows_and_their_sweep_mirror_the_highs() -> None:
    frame = mirror(candles(EQUAL_HIGHS_ROWS))
    events = detect_events(frame, LIQUIDITY)
    assert zones_of(events, EventKind.EQUAL_LOWS) == [(-1, 9, 7, 20.0, 19.95)]
    assert of_kind(events, EventKind.LIQUIDITY_SWEEP) == [(-1, 11, 7, 19.95)]
    out = SMCFeatures(LIQUIDITY).batch(frame)
    assert out["smc_eql"].iloc[9] == 2 and out["smc_sweep_low"].iloc[11] == 1


def test_swings_further_apart_than_the_tolerance_are_not_equal() -> None:
    events = detect_events(candles(EQUAL_HIGHS_ROWS), LIQUIDITY, liquidity_tolerance_atr=0.01)
    assert not of_kind(events, EventKind.EQUAL_HIGHS)
    assert not of_kind(events, EventKind.LIQUIDITY_SWEEP)


# --- NaN candles, time gaps, order ------------------------------------------------------------------------------


def test_a_nan_candle_is_skipped_its_row_is_nan_and_later_events_shift_by_one_row() -> None:
    frame = candles(STRUCTURE_ROWS)
    nan_row = pd.DataFrame({"ts": [0], "open": [np.nan], "high": [np.nan], "low": [np.nan], "close": [np.nan]})
    with_nan = pd.concat([frame.iloc[:10], nan_row.assign(volume=np.nan), frame.iloc[10:]], ignore_index=True)
    with_nan["ts"] = [T0 + i * HOUR for i in range(len(with_nan))]

    plain = SMCFeatures(swing_length=2)
    expected = plain.batch(frame)
    holey = SMCFeatures(swing_length=2)
    got = holey.batch(with_nan)
    assert got.iloc[10].isna().all()
    assert holey.ready
    np.testing.assert_array_equal(got.drop(index=10).to_numpy(), expected.to_numpy())
    shift = [(e.kind, e.index + (e.index >= 10), e.ref_index + (e.ref_index >= 10)) for e in plain.events]
    assert [(e.kind, e.index, e.ref_index) for e in holey.events] == shift


def test_time_gaps_do_not_change_the_outputs_windows_count_candles() -> None:
    frame = candles(STRUCTURE_ROWS)
    gappy = frame.assign(ts=frame["ts"] + np.where(np.arange(len(frame)) >= 9, 50 * HOUR, 0))
    np.testing.assert_array_equal(
        SMCFeatures(swing_length=2).batch(gappy).to_numpy(), SMCFeatures(swing_length=2).batch(frame).to_numpy()
    )


def test_out_of_order_candles_are_refused() -> None:
    features = SMCFeatures()
    features.update(T0, 1.0, 2.0, 0.5, 1.5, 1.0)
    with pytest.raises(ValidationError):
        features.update(T0, 1.0, 2.0, 0.5, 1.5, 1.0)


def test_columns_and_reset() -> None:
    features = SMCFeatures(swing_length=2)
    assert features.columns == SMC_COLUMNS and len(set(SMC_COLUMNS)) == len(SMC_COLUMNS)
    first = features.batch(candles(STRUCTURE_ROWS))
    assert len(features.values) == len(SMC_COLUMNS) and features.ready
    features.reset()
    assert not features.ready and features.events == [] and all(math.isnan(v) for v in features.values)
    np.testing.assert_array_equal(features.batch(candles(STRUCTURE_ROWS)).to_numpy(), first.to_numpy())
