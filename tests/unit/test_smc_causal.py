"""SMC on real candles: causal (no look-ahead), emitted at the bar each item becomes knowable, batch == stream.

Uses a 5,000-row slice of real BTCUSDT 1h candles (it contains real time gaps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.features.smc import SMC_COLUMNS, EventKind, SMCEvent, SMCFeatures

SWING_LENGTH = 5


def feed(features: SMCFeatures, frame: pd.DataFrame) -> np.ndarray:
    """Feed ``frame`` row by row through ``update`` (no reset) and stack the values after each row."""
    rows = []
    columns = [frame[c].to_numpy().tolist() for c in ("ts", "open", "high", "low", "close", "volume")]
    for ts, o, h, lo, c, v in zip(*columns, strict=True):
        features.update(int(ts), o, h, lo, c, v)
        rows.append(features.values)
    return np.array(rows)


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    frame = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz").iloc[20_000:25_000].reset_index(drop=True)
    assert (np.diff(frame["ts"].to_numpy()) > 3_600_000).any()  # the slice has real gaps
    return frame


@pytest.fixture(scope="module")
def full(candles: pd.DataFrame) -> tuple[np.ndarray, list[SMCEvent]]:
    features = SMCFeatures(swing_length=SWING_LENGTH)
    return features.batch(candles).to_numpy(), features.events


def test_outputs_up_to_t_do_not_depend_on_later_candles(
    candles: pd.DataFrame, full: tuple[np.ndarray, list[SMCEvent]]
) -> None:
    values, events = full
    rng = np.random.default_rng(7)
    cuts = sorted({10, 11, 12, 50, len(candles) - 2, *rng.integers(13, len(candles) - 2, size=25).tolist()})
    for t in cuts:
        prefix = SMCFeatures(swing_length=SWING_LENGTH)
        got = prefix.batch(candles.iloc[: t + 1])
        np.testing.assert_array_equal(got.to_numpy(), values[: t + 1], err_msg=f"outputs differ at cut {t}")
        assert prefix.events == [e for e in events if e.index <= t], f"events differ at cut {t}"


def test_every_event_refers_to_the_past_and_is_emitted_no_earlier_than_knowable(
    full: tuple[np.ndarray, list[SMCEvent]],
) -> None:
    _, events = full
    assert {e.kind for e in events} == set(EventKind)  # the slice exercises every kind
    assert [e.index for e in events] == sorted(e.index for e in events)
    for e in events:
        assert e.ref_index <= e.index
        if e.kind in (EventKind.SWING_HIGH, EventKind.SWING_LOW):
            assert e.index - e.ref_index == SWING_LENGTH
        elif e.kind == EventKind.FVG:
            assert e.index - e.ref_index == 1
        elif e.kind in (EventKind.BOS, EventKind.CHOCH, EventKind.ORDER_BLOCK):
            assert e.ref_index < e.index


def test_swings_match_a_brute_force_definition_using_data_up_to_the_confirming_bar(
    candles: pd.DataFrame, full: tuple[np.ndarray, list[SMCEvent]]
) -> None:
    values, events = full
    high, low = candles["high"].to_numpy(), candles["low"].to_numpy()
    n = SWING_LENGTH
    expected_highs, expected_lows = [], []
    for confirm in range(2 * n, len(candles)):
        j = confirm - n  # the candidate bar; only bars <= confirm are looked at
        left, right = slice(j - n, j), slice(j + 1, confirm + 1)
        if high[j] > high[left].max() and high[j] >= high[right].max():
            expected_highs.append((confirm, j, high[j]))
        if low[j] < low[left].min() and low[j] <= low[right].min():
            expected_lows.append((confirm, j, low[j]))
    got_highs = [(e.index, e.ref_index, e.price) for e in events if e.kind == EventKind.SWING_HIGH]
    got_lows = [(e.index, e.ref_index, e.price) for e in events if e.kind == EventKind.SWING_LOW]
    assert got_highs == expected_highs and len(got_highs) > 100
    assert got_lows == expected_lows and len(got_lows) > 100
    column = values[:, SMC_COLUMNS.index("smc_swing_high")]
    assert np.flatnonzero(~np.isnan(column)).tolist() == [c for c, _, _ in expected_highs]


def test_fair_value_gaps_match_the_three_candle_rule_at_the_third_candle(
    candles: pd.DataFrame, full: tuple[np.ndarray, list[SMCEvent]]
) -> None:
    values, events = full
    high, low = candles["high"].to_numpy(), candles["low"].to_numpy()
    bull = np.flatnonzero(low[2:] > high[:-2]) + 2
    bear = np.flatnonzero(high[2:] < low[:-2]) + 2
    assert [e.index for e in events if e.kind == EventKind.FVG and e.direction > 0] == bull.tolist()
    assert [e.index for e in events if e.kind == EventKind.FVG and e.direction < 0] == bear.tolist()
    warm = 2 * SWING_LENGTH  # rows before this are warm-up NaN
    column = values[:, SMC_COLUMNS.index("smc_fvg_bull")]
    assert np.flatnonzero(column[warm:] == 1).tolist() == (bull[bull >= warm] - warm).tolist()


def test_structure_breaks_are_closes_beyond_swings_confirmed_earlier(
    candles: pd.DataFrame, full: tuple[np.ndarray, list[SMCEvent]]
) -> None:
    _, events = full
    close = candles["close"].to_numpy()
    swing_kinds = (EventKind.SWING_HIGH, EventKind.SWING_LOW)
    confirmed_at = {(e.ref_index, e.direction): e.index for e in events if e.kind in swing_kinds}
    breaks = [e for e in events if e.kind in (EventKind.BOS, EventKind.CHOCH)]
    assert len(breaks) > 50
    for e in breaks:
        assert confirmed_at[(e.ref_index, e.direction)] < e.index
        assert e.direction * (close[e.index] - e.price) > 0
        # the break bar is the first close beyond the level since the swing was confirmed
        since = slice(confirmed_at[(e.ref_index, e.direction)], e.index)
        assert (e.direction * (close[since] - e.price) <= 0).all()
    blocks = [e for e in events if e.kind == EventKind.ORDER_BLOCK]
    break_bars = {(e.index, e.direction) for e in breaks}
    assert blocks and all((b.index, b.direction) in break_bars and b.ref_index < b.index for b in blocks)


def test_batch_equals_streaming_bit_for_bit(candles: pd.DataFrame, full: tuple[np.ndarray, list[SMCEvent]]) -> None:
    values, events = full
    features = SMCFeatures(swing_length=SWING_LENGTH)
    streamed = features.stream(candles).to_numpy()  # the base-class reference loop
    assert streamed.tobytes() == values.tobytes()

    features.reset()
    assert feed(features, candles).tobytes() == values.tobytes()
    assert features.events == events


def test_batch_then_continue_streaming_equals_one_batch(
    candles: pd.DataFrame, full: tuple[np.ndarray, list[SMCEvent]]
) -> None:
    values, _ = full
    features = SMCFeatures(swing_length=SWING_LENGTH)
    head = features.batch(candles.iloc[:3_000]).to_numpy()
    tail = feed(features, candles.iloc[3_000:])
    assert np.vstack([head, tail]).tobytes() == values.tobytes()


def test_nan_candles_in_real_data_are_skipped_without_changing_other_rows(
    candles: pd.DataFrame, full: tuple[np.ndarray, list[SMCEvent]]
) -> None:
    values, _ = full
    holes = [700, 701, 2_500]
    extra = candles.iloc[holes].assign(open=np.nan, high=np.nan, low=np.nan, close=np.nan, volume=np.nan)
    extra["ts"] += 1  # a NaN candle squeezed in just after each chosen row
    holey = pd.concat([candles, extra]).sort_values("ts", kind="stable").reset_index(drop=True)
    got = SMCFeatures(swing_length=SWING_LENGTH).batch(holey).to_numpy()
    nan_rows = np.flatnonzero(holey["close"].isna().to_numpy())
    assert np.isnan(got[nan_rows]).all()
    assert np.delete(got, nan_rows, axis=0).tobytes() == values.tobytes()
