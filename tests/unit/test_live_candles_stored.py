"""Live candles are stored candles — as their own series only where that does not hide a finer stored one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from smartmarket.core.types import Timeframe
from smartmarket.data.synthetic import generate_market
from smartmarket.pipeline.stages.base import store_candles
from smartmarket.pipeline.stages.candles import candle_closed
from smartmarket.store.url import open_store

M1, M15 = Timeframe.parse("1m"), Timeframe.parse("15m")


def events(frame, symbol: str, tf: Timeframe) -> list:  # type: ignore[no-untyped-def]
    return [candle_closed(symbol, tf, int(r.ts), r.open, r.high, r.low, r.close, r.volume) for r in frame.itertuples()]


def test_a_new_series_is_stored_once_and_a_revised_candle_is_reported_not_overwritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(f"duckdb:///{tmp_path / 's.duckdb'}")
    frame = generate_market(50, seed=2)
    assert store_candles(store, events(frame, "SOLUSDT", M1)) == 50
    assert store_candles(store, events(frame, "SOLUSDT", M1)) == 0  # idempotent
    revised = frame.copy()
    revised.loc[10, "close"] += 1.0
    with caplog.at_level(logging.WARNING):
        assert store_candles(store, events(revised.iloc[10:12], "SOLUSDT", M1)) == 0
    assert "1 live SOLUSDT 1m candle(s) differ from the stored ones" in caplog.text
    assert store.read_candles("SOLUSDT", M1)["close"].tolist() == frame["close"].tolist()
    store.close()


def test_a_timeframe_resampled_from_a_finer_stored_series_is_not_stored_beside_it(tmp_path: Path) -> None:
    store = open_store(f"duckdb:///{tmp_path / 's.duckdb'}")
    minutes = generate_market(600, seed=3)
    store.write_candles("SOLUSDT", M1, minutes)
    resampled = store.read_candles("SOLUSDT", M15)
    assert len(resampled) == 40
    assert store_candles(store, events(resampled.iloc[-5:], "SOLUSDT", M15)) == 0
    assert [s.timeframe for s in store.list_series()] == [M1]  # the 15m history still comes from the 1m
    assert len(store.read_candles("SOLUSDT", M15)) == 40
    store.close()
