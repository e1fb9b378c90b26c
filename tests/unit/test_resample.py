"""Resampling helpers: source choice, bucket SQL, source bounds, and the pandas reference implementation."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import NotFoundError
from smartmarket.core.types import DAY_MS, HOUR_MS, MINUTE_MS, Timeframe
from smartmarket.store.resample import (
    MAX_TS,
    bucket_sql,
    first_bucket_at_or_after,
    plan_resample,
    resample_frame,
    series_not_found,
    source_timeframe,
)

MONDAY = 1_704_067_200_000  # 2024-01-01T00:00Z, a Monday


def test_source_timeframe_picks_the_coarsest_divisor() -> None:
    stored = [Timeframe.M1, Timeframe.M5, Timeframe.H1, Timeframe.D1]
    assert source_timeframe(Timeframe.H4, stored) is Timeframe.H1
    assert source_timeframe(Timeframe.M15, stored) is Timeframe.M5
    assert source_timeframe(Timeframe.W1, stored) is Timeframe.D1
    assert source_timeframe(Timeframe.M3, stored) is Timeframe.M1
    assert source_timeframe(Timeframe.M1, stored) is None  # nothing finer
    assert source_timeframe(Timeframe.H1, [Timeframe.H1]) is None  # itself is not a source
    assert source_timeframe(Timeframe.M5, [Timeframe.M3]) is None  # 3m does not tile 5m


@pytest.mark.parametrize("tf", list(Timeframe))
def test_bucket_sql_matches_bucket_start(tf: Timeframe) -> None:
    rng = np.random.default_rng(3)
    values = [int(v) for v in rng.integers(-(10**12), 3 * 10**12, size=200)] + [0, -1, MONDAY, MONDAY - 1]
    con = duckdb.connect()
    got = [
        row[0]
        for row in con.execute(
            f"SELECT {bucket_sql('ts', tf)} FROM (SELECT unnest(?::BIGINT[]) AS ts)", [values]
        ).fetchall()
    ]
    assert got == [tf.bucket_start(v) for v in values]


def test_weekly_buckets_open_on_monday() -> None:
    con = duckdb.connect()
    sunday_noon = MONDAY + 6 * DAY_MS + 12 * HOUR_MS
    sql = f"SELECT {bucket_sql('ts', Timeframe.W1)} FROM (SELECT ?::BIGINT AS ts)"
    row = con.execute(sql, [sunday_noon]).fetchone()
    assert row == (MONDAY,)


def test_first_bucket_at_or_after() -> None:
    assert first_bucket_at_or_after(Timeframe.H1, 10 * HOUR_MS) == 10 * HOUR_MS
    assert first_bucket_at_or_after(Timeframe.H1, 10 * HOUR_MS + 1) == 11 * HOUR_MS


def test_plan_bounds_translate_bucket_filters_to_source_filters() -> None:
    last = MONDAY + 10 * DAY_MS - HOUR_MS  # last hourly candle closes exactly at the end of day 10
    plan = plan_resample(Timeframe.H1, Timeframe.D1, MONDAY + 1, MONDAY + 3 * DAY_MS + 1, last)
    assert plan.src_start == MONDAY + DAY_MS  # the day opening before start is not wanted
    assert plan.src_end == MONDAY + 4 * DAY_MS  # the day opening just before end is wanted, whole
    open_plan = plan_resample(Timeframe.H1, Timeframe.D1, None, None, last)
    assert open_plan.src_end == MONDAY + 10 * DAY_MS  # day 10 is complete: kept


def test_plan_excludes_the_partial_trailing_bucket_unless_asked() -> None:
    last = MONDAY + 10 * DAY_MS - 2 * HOUR_MS  # 23:00 of day 10 is missing: day 10 is partial
    assert plan_resample(Timeframe.H1, Timeframe.D1, None, None, last).src_end == MONDAY + 9 * DAY_MS
    assert plan_resample(Timeframe.H1, Timeframe.D1, None, None, last, include_partial=True).src_end == MAX_TS


def _minutes(values: list[tuple[float, float, float, float, float]], start: int = MONDAY) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": np.array([start + i * MINUTE_MS for i in range(len(values))], dtype=np.int64),
            **{c: [v[k] for v in values] for k, c in enumerate(("open", "high", "low", "close", "volume"))},
        }
    )


def test_reference_resample_by_hand() -> None:
    frame = _minutes(
        [
            (10, 12, 9, 11, 1),
            (11, 15, 10, 14, 2),
            (14, 14, 8, 9, 3),
            (9, 10, 9, 10, 4),
            (10, 11, 7, 8, 5),
            (8, 9, 8, 9, 6),
            (9, 20, 9, 19, 7),
        ]
    )
    out = resample_frame(frame, Timeframe.M1, Timeframe.M5)
    assert out.to_dict("records") == [
        {"ts": MONDAY, "open": 10.0, "high": 15.0, "low": 7.0, "close": 8.0, "volume": 15.0}
    ]  # the second bucket (2 of 5 minutes, at the end of the data) is partial
    partial = resample_frame(frame, Timeframe.M1, Timeframe.M5, include_partial=True)
    assert partial.iloc[1].to_dict() == {
        "ts": MONDAY + 5 * MINUTE_MS,
        "open": 8.0,
        "high": 20.0,
        "low": 8.0,
        "close": 19.0,
        "volume": 13.0,
    }
    assert partial["ts"].dtype == np.int64


def test_reference_resample_keeps_buckets_with_gaps_and_skips_empty_ones() -> None:
    frame = _minutes([(1, 2, 0.5, 1.5, 1.0)] * 15)
    frame = frame.drop(index=[1, 2, 5, 6, 7, 8, 9]).reset_index(drop=True)  # bucket 2 (minutes 5-9) is empty
    out = resample_frame(frame, Timeframe.M1, Timeframe.M5)
    assert out["ts"].tolist() == [MONDAY, MONDAY + 10 * MINUTE_MS]
    assert out["volume"].tolist() == [3.0, 5.0]


def test_series_not_found_has_a_hint() -> None:
    err = series_not_found("BTCUSDT", Timeframe.M1, [Timeframe.H1])
    assert isinstance(err, NotFoundError)
    assert "smartmarket symbols" in err.one_line()
    assert "1h" in err.one_line()
