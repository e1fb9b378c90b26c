"""The 8h, 3d and calendar-month (1M) timeframes: bounds, tiling, SQL buckets, gaps, refusals where unsupported."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pytest

from smartmarket.core.errors import ConfigError
from smartmarket.core.types import DAY_MS, Candle, Timeframe
from smartmarket.data.ingest import ingest_file
from smartmarket.data.validation import find_gaps
from smartmarket.features.multitimeframe import HigherTimeframe
from smartmarket.pipeline.stages.spec import PipelineSpec, StrategyChoice
from smartmarket.store import open_store
from smartmarket.store.resample import bucket_sql, plan_resample, source_timeframe

MO1, D3, H8 = Timeframe.MO1, Timeframe.D3, Timeframe.H8


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def test_parse_keeps_month_and_minute_apart() -> None:
    assert Timeframe.parse("1M") is MO1 and Timeframe.parse("1m") is Timeframe.M1
    assert Timeframe.parse("1mo") is MO1 and Timeframe.parse("3D") is D3 and Timeframe.parse("8H") is H8


@pytest.mark.parametrize(
    ("ts", "start", "next_open"),
    [
        (ms(2024, 2, 29, 23, 59), ms(2024, 2, 1), ms(2024, 3, 1)),  # leap February
        (ms(2023, 2, 28, 12), ms(2023, 2, 1), ms(2023, 3, 1)),
        (ms(2024, 12, 31, 23), ms(2024, 12, 1), ms(2025, 1, 1)),  # year end
        (ms(2024, 3, 1), ms(2024, 3, 1), ms(2024, 4, 1)),  # a month's own open
        (ms(1969, 12, 15), ms(1969, 12, 1), ms(1970, 1, 1)),  # before the epoch
    ],
)
def test_month_bounds_follow_the_utc_calendar(ts: int, start: int, next_open: int) -> None:
    assert MO1.bucket_start(ts) == start
    assert MO1.next_open(ts) == next_open
    assert Candle(start, 1, 1, 1, 1, 1).close_ts(MO1) == next_open
    assert MO1.is_aligned(start) and not MO1.is_aligned(start + 1)


def test_fixed_timeframes_tile_the_epoch() -> None:
    assert D3.bucket_start(ms(1970, 1, 5, 7)) == ms(1970, 1, 4)
    assert D3.next_open(ms(1970, 1, 5)) == ms(1970, 1, 7)
    assert H8.bucket_start(ms(2024, 1, 1, 17, 30)) == ms(2024, 1, 1, 16)


def test_what_tiles_what() -> None:
    assert Timeframe.D1.divides(MO1) and H8.divides(MO1) and Timeframe.M1.divides(MO1)
    assert not Timeframe.W1.divides(MO1) and not D3.divides(MO1) and not MO1.divides(Timeframe.D1)
    assert Timeframe.D1.divides(D3) and Timeframe.H8.divides(D3) and not Timeframe.W1.divides(D3)
    assert Timeframe.H4.divides(H8) and not Timeframe.H6.divides(H8)
    stored = [Timeframe.H1, Timeframe.D1, Timeframe.W1]
    assert source_timeframe(MO1, stored) is Timeframe.D1
    assert source_timeframe(D3, stored) is Timeframe.D1
    assert source_timeframe(H8, stored) is Timeframe.H1


@pytest.mark.parametrize("tf", [MO1, D3, H8])
def test_duckdb_bucket_sql_equals_bucket_start(tf: Timeframe) -> None:
    values = [int(v) for v in np.random.default_rng(5).integers(-(10**12), 3 * 10**12, size=300)] + [0, -1]
    sql = f"SELECT {bucket_sql('ts', tf, 'duckdb')} FROM (SELECT unnest(?::BIGINT[]) AS ts)"
    got = [row[0] for row in duckdb.connect().execute(sql, [values]).fetchall()]
    assert got == [tf.bucket_start(v) for v in values]
    assert tf.bucket_starts(np.array(values)).tolist() == got


def test_month_plan_keeps_only_complete_months() -> None:
    last_day_of_feb = ms(2024, 2, 29)
    plan = plan_resample(Timeframe.D1, MO1, None, None, last_day_of_feb)
    assert plan.src_end == ms(2024, 3, 1)  # February is complete on its 29th day
    plan = plan_resample(Timeframe.D1, MO1, None, None, ms(2024, 2, 28))
    assert plan.src_end == ms(2024, 2, 1)  # one day short: February left out
    window = plan_resample(Timeframe.D1, MO1, ms(2023, 12, 15), ms(2024, 2, 1), ms(2024, 6, 1))
    assert (window.src_start, window.src_end) == (ms(2024, 1, 1), ms(2024, 2, 1))


def test_month_gaps_count_missing_months_not_milliseconds() -> None:
    opens = np.array([ms(2024, 1, 1), ms(2024, 2, 1), ms(2024, 3, 1), ms(2024, 7, 1), ms(2024, 8, 1)], dtype=np.int64)
    [gap] = find_gaps(opens, MO1)
    assert (gap.after_ts, gap.missing) == (ms(2024, 3, 1), 3)  # April, May, June
    assert find_gaps(opens[:3], MO1) == []  # 31, 29 days apart: no gap


def test_where_months_are_not_supported_it_says_so() -> None:
    with pytest.raises(ConfigError, match="calendar-month"):
        PipelineSpec.build(["BTCUSDT"], "1M", None, strategy=StrategyChoice("sma_cross"))
    with pytest.raises(ConfigError, match="calendar-month"):
        HigherTimeframe(Timeframe.D1, MO1, object(), "m")  # type: ignore[arg-type]


def test_a_monthly_file_ingests_without_false_gaps(tmp_path: Path) -> None:
    """Months of 28 to 31 days are consecutive candles: stored whole, no gap, nothing quarantined."""
    opens = [ms(2023, m, 1) for m in range(1, 13)] + [ms(2024, m, 1) for m in (1, 2, 3)]
    lines = ["ts,open,high,low,close,volume"] + [
        f"{t},{100 + i},{110 + i},{90 + i},{101 + i},5" for i, t in enumerate(opens)
    ]
    path = tmp_path / "BTCUSDT-1M.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as store:
        report = ingest_file(store, path, quarantine_dir=tmp_path / "q")
        assert (report.stored, report.quarantined, report.gaps) == (15, 0, [])
        assert store.read_candles("BTCUSDT", MO1)["ts"].tolist() == opens
    shifted = path.read_text(encoding="utf-8").replace(str(opens[4]), str(opens[4] + DAY_MS))
    path.write_text(shifted, encoding="utf-8")
    with open_store(f"duckdb:///{tmp_path / 't.duckdb'}") as store:
        assert ingest_file(store, path, quarantine_dir=tmp_path / "q2").quarantined == 1  # May 2nd is no month open
