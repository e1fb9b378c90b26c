"""The store contract: one suite run against every adapter (DuckDB on a temp file, the real PostgreSQL).

What every adapter must do is written in ``smartmarket/store/base.py``; each test here checks one rule.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import ConfigError, NotFoundError, StoreError, StoreUnavailableError, ValidationError
from smartmarket.core.events import CandleClosed, OrderFilled, SignalGenerated
from smartmarket.core.frame import CANDLE_COLUMNS
from smartmarket.core.types import DAY_MS, HOUR_MS, MINUTE_MS, WEEK_MS, Timeframe
from smartmarket.store.base import Store, StoredEvent
from smartmarket.store.cache import TailCache
from smartmarket.store.duckdb_store import DuckDBStore
from smartmarket.store.postgres_store import PostgresStore
from smartmarket.store.resample import resample_frame
from smartmarket.store.url import open_store

MONDAY = 1_704_067_200_000  # 2024-01-01T00:00Z, a Monday
M1, M5, H1, H4, D1, W1 = Timeframe.M1, Timeframe.M5, Timeframe.H1, Timeframe.H4, Timeframe.D1, Timeframe.W1


def candles(n: int, tf: Timeframe = M1, start: int = MONDAY, seed: int = 0) -> pd.DataFrame:
    """A deterministic random-walk candle frame of ``n`` consecutive candles."""
    rng = np.random.default_rng(seed)
    close = 100 + rng.standard_normal(n).cumsum()
    open_ = np.r_[100.0, close[:-1]]
    return pd.DataFrame(
        {
            "ts": start + np.arange(n, dtype=np.int64) * tf.ms,
            "open": open_,
            "high": np.maximum(open_, close) + rng.random(n),
            "low": np.minimum(open_, close) - rng.random(n),
            "close": close,
            "volume": rng.random(n) * 10,
        }
    )


def url_for(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "duckdb":
        return f"duckdb:///{tmp_path / 'store.duckdb'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(kind, request, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with open_store(url) as s:
        yield s


def assert_candles_equal(got: pd.DataFrame, want: pd.DataFrame, *, exact: bool = True) -> None:
    """Same candles; ``exact=False`` allows summation-order rounding in volume only."""
    want = want.reset_index(drop=True)
    assert list(got.columns) == list(CANDLE_COLUMNS)
    assert isinstance(got.index, pd.RangeIndex)
    if exact:
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        return
    pd.testing.assert_frame_equal(got.drop(columns="volume"), want.drop(columns="volume"), check_exact=True)
    np.testing.assert_allclose(got["volume"].to_numpy(), want["volume"].to_numpy(), rtol=1e-12, atol=1e-9)


# --------------------------------------------------------------------------- write / read


def test_round_trip_is_exact(store: Store) -> None:
    frame = candles(500)
    frame.loc[0, ["open", "high", "low", "close", "volume"]] = [0.1 + 0.2, 1e300, 5e-324, 1 / 3, 0.0]
    result = store.write_candles("BTCUSDT", M1, frame)
    assert (result.inserted, result.unchanged, result.conflict_count) == (500, 0, 0)
    got = store.read_candles("BTCUSDT", M1)
    assert got["ts"].dtype == np.int64
    assert_candles_equal(got, frame)


def test_symbols_are_normalised_and_unsorted_input_is_sorted(store: Store) -> None:
    frame = candles(50)
    store.write_candles("btc/usdt", M1, frame.sample(frac=1.0, random_state=1))
    assert_candles_equal(store.read_candles("BTCUSDT", M1), frame)
    assert_candles_equal(store.read_candles("BTC-USDT", "1m"), frame)


def test_ranges_are_half_open_and_limit_keeps_the_first(store: Store) -> None:
    frame = candles(100)
    store.write_candles("ETHUSDT", M1, frame)
    ts = frame["ts"]
    got = store.read_candles("ETHUSDT", M1, start=int(ts[10]), end=int(ts[20]))
    assert got["ts"].tolist() == ts[10:20].tolist()
    unaligned = store.read_candles("ETHUSDT", M1, start=int(ts[10]) + 1, end=int(ts[20]) + 1)
    assert unaligned["ts"].tolist() == ts[11:21].tolist()
    assert store.read_candles("ETHUSDT", M1, start=int(ts[10]), limit=5)["ts"].tolist() == ts[10:15].tolist()
    assert store.read_candles("ETHUSDT", M1, end=int(ts[0])).empty
    assert list(store.read_candles("ETHUSDT", M1, start=int(ts[99]) + 1).columns) == list(CANDLE_COLUMNS)
    assert store.read_candles("ETHUSDT", M1, limit=0).empty


def test_rewrite_is_idempotent(store: Store) -> None:
    frame = candles(350)
    store.write_candles("BTCUSDT", M1, frame.iloc[:300])
    again = store.write_candles("BTCUSDT", M1, frame.iloc[:300])
    assert (again.inserted, again.unchanged, again.overwritten, again.conflict_count) == (0, 300, 0, 0)
    partly_new = store.write_candles("BTCUSDT", M1, frame)
    assert (partly_new.inserted, partly_new.unchanged) == (50, 300)
    info = store.series_info("BTCUSDT", M1)
    assert info is not None and info.count == 350
    assert_candles_equal(store.read_candles("BTCUSDT", M1), frame)


def test_conflicts_are_reported_not_written_then_overwritten(store: Store) -> None:
    frame = candles(100)
    store.write_candles("BTCUSDT", M1, frame)
    changed = pd.concat([frame, candles(5, start=MONDAY + 100 * MINUTE_MS)], ignore_index=True)  # 5 new at the end
    changed.loc[[3, 40], "close"] += 1.5
    result = store.write_candles("BTCUSDT", M1, changed)
    assert (result.inserted, result.unchanged, result.overwritten) == (5, 98, 0)
    conflicts = result.conflicts
    assert list(conflicts.columns) == [
        *CANDLE_COLUMNS,
        "stored_open",
        "stored_high",
        "stored_low",
        "stored_close",
        "stored_volume",
    ]
    assert conflicts["ts"].tolist() == [int(frame["ts"][3]), int(frame["ts"][40])]
    assert conflicts["close"].tolist() == changed.loc[[3, 40], "close"].tolist()
    assert conflicts["stored_close"].tolist() == frame.loc[[3, 40], "close"].tolist()
    kept = store.read_candles("BTCUSDT", M1)
    assert kept.loc[[3, 40], "close"].tolist() == frame.loc[[3, 40], "close"].tolist()  # not written

    result = store.write_candles("BTCUSDT", M1, changed, on_conflict="overwrite")
    assert (result.inserted, result.unchanged, result.overwritten, result.conflict_count) == (0, 103, 2, 0)
    assert_candles_equal(store.read_candles("BTCUSDT", M1), changed)
    info = store.series_info("BTCUSDT", M1)
    assert info is not None and info.count == 105


def test_backfill_before_the_stored_history(store: Store) -> None:
    frame = candles(200)
    store.write_candles("BTCUSDT", M1, frame.iloc[100:])
    assert_candles_equal(store.latest("BTCUSDT", M1, 3), frame.iloc[197:])
    assert store.write_candles("BTCUSDT", M1, frame.iloc[:100]).inserted == 100  # older candles, written later
    assert_candles_equal(store.read_candles("BTCUSDT", M1), frame)
    assert_candles_equal(store.latest("BTCUSDT", M1, 150), frame.iloc[50:])
    info = store.series_info("BTCUSDT", M1)
    assert info is not None and (info.count, info.first_ts, info.last_ts) == (200, MONDAY, int(frame["ts"][199]))
    ts = frame["ts"].to_numpy()
    assert_candles_equal(store.read_candles("BTCUSDT", M5, start=ts[10], end=ts[60]),
                         resample_frame(frame, M1, M5).iloc[2:12], exact=False)  # fmt: skip


def test_invalid_frames_are_refused(store: Store) -> None:
    frame = candles(10)
    twice = pd.concat([frame, frame.iloc[[4]].assign(close=1.0)], ignore_index=True)
    with pytest.raises(ValidationError, match="twice"):
        store.write_candles("BTCUSDT", M1, twice)
    with pytest.raises(ValidationError, match="boundary"):
        store.write_candles("BTCUSDT", M1, frame.assign(ts=frame["ts"] + 1))
    exact_copy = pd.concat([frame, frame.iloc[[4]]], ignore_index=True)
    assert store.write_candles("BTCUSDT", M1, exact_copy).inserted == 10  # exact duplicate rows collapse
    assert store.write_candles("BTCUSDT", M1, frame.iloc[:0]).inserted == 0


# --------------------------------------------------------------------------- series


def test_list_series_counts_ranges_and_synthetic_flag(store: Store) -> None:
    store.write_candles("ETHUSDT", H1, candles(48, H1))
    store.write_candles("BTCUSDT", D1, candles(10, D1))
    store.write_candles("BTCUSDT", M1, candles(120))
    store.write_candles("SYNUSDT", M5, candles(30, M5), synthetic=True)
    infos = store.list_series()
    assert [(i.symbol, i.timeframe, i.count, i.synthetic) for i in infos] == [
        ("BTCUSDT", M1, 120, False),
        ("BTCUSDT", D1, 10, False),
        ("ETHUSDT", H1, 48, False),
        ("SYNUSDT", M5, 30, True),
    ]
    eth = infos[2]
    assert (eth.first_ts, eth.last_ts) == (MONDAY, MONDAY + 47 * HOUR_MS)
    assert store.series_info("ETHUSDT", H1) == eth
    assert store.series_info("ETHUSDT", D1) is None


def test_delete_range(store: Store) -> None:
    frame = candles(100)
    store.write_candles("BTCUSDT", M1, frame)
    ts = frame["ts"]
    assert store.delete_range("BTCUSDT", M1, int(ts[10]), int(ts[20])) == 10
    assert store.delete_range("BTCUSDT", M1, int(ts[10]), int(ts[20])) == 0
    left = store.read_candles("BTCUSDT", M1)
    assert left["ts"].tolist() == ts[:10].tolist() + ts[20:].tolist()
    assert store.delete_range("BTCUSDT", M1, start=int(ts[90])) == 10
    info = store.series_info("BTCUSDT", M1)
    assert info is not None and (info.count, info.first_ts, info.last_ts) == (80, int(ts[0]), int(ts[89]))
    assert store.delete_range("BTCUSDT", M1) == 80
    assert store.series_info("BTCUSDT", M1) is None
    with pytest.raises(NotFoundError):
        store.read_candles("BTCUSDT", M1)


# --------------------------------------------------------------------------- latest and the cache


def test_latest_and_cache_coherence(store: Store) -> None:
    frame = candles(300)
    store.write_candles("BTCUSDT", M1, frame.iloc[:200])
    assert_candles_equal(store.latest("BTCUSDT", M1, 50), frame.iloc[150:200])
    assert_candles_equal(store.latest("BTCUSDT", M1, 1000), frame.iloc[:200])  # fewer stored than asked

    store.write_candles("BTCUSDT", M1, frame.iloc[200:300])  # live append
    assert_candles_equal(store.latest("BTCUSDT", M1, 50), frame.iloc[250:300])

    changed = frame.copy()
    changed.loc[299, "close"] = 1.0
    store.write_candles("BTCUSDT", M1, changed.iloc[290:], on_conflict="overwrite")
    assert store.latest("BTCUSDT", M1, 1)["close"].tolist() == [1.0]

    store.delete_range("BTCUSDT", M1, start=int(frame["ts"][295]))
    assert_candles_equal(store.latest("BTCUSDT", M1, 10), changed.iloc[285:295])

    store.write_candles("BTCUSDT", M1, frame.iloc[[295, 296]].assign(close=7.0))  # rows that were deleted
    assert store.latest("BTCUSDT", M1, 2)["close"].tolist() == [7.0, 7.0]

    store.delete_range("BTCUSDT", M1, int(frame["ts"][100]), int(frame["ts"][110]))  # a hole inside history
    assert len(store.latest("BTCUSDT", M1, 1000)) == 287
    store.write_candles("BTCUSDT", M1, frame.iloc[100:110])  # filling it is not an append
    assert len(store.latest("BTCUSDT", M1, 1000)) == 297


def test_latest_result_is_independent_of_the_cache(store: Store) -> None:
    store.write_candles("BTCUSDT", M1, candles(20))
    first = store.latest("BTCUSDT", M1, 5)
    first.loc[0, "close"] = -1.0
    assert store.latest("BTCUSDT", M1, 5)["close"].iloc[0] != -1.0


def test_latest_with_a_small_cache_beyond_capacity(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = url_for(kind, request, tmp_path)
    small: Store = (
        DuckDBStore(url, cache_capacity=64)
        if kind == "duckdb"
        else PostgresStore(url, tail_cache=True, cache_capacity=64)
    )
    with small:
        frame = candles(400)
        small.write_candles("BTCUSDT", M1, frame.iloc[:300])
        assert_candles_equal(small.latest("BTCUSDT", M1, 10), frame.iloc[290:300])
        assert_candles_equal(small.latest("BTCUSDT", M1, 200), frame.iloc[100:300])  # beyond the cached tail
        small.write_candles("BTCUSDT", M1, frame.iloc[300:])
        assert_candles_equal(small.latest("BTCUSDT", M1, 64), frame.iloc[336:400])
        assert_candles_equal(small.latest("BTCUSDT", M1, 65), frame.iloc[335:400])


def test_latest_of_a_missing_series(store: Store) -> None:
    with pytest.raises(NotFoundError, match="smartmarket symbols"):
        store.latest("NOPE", M1, 10)


# --------------------------------------------------------------------------- resampling


def test_resampling_by_hand(store: Store) -> None:
    rows = [  # open, high, low, close, volume of 1m candles from MONDAY 00:00
        (10, 12, 9, 11, 1),
        (11, 15, 10, 14, 2),
        (14, 14, 8, 9, 3),
        (9, 10, 9, 10, 4),
        (10, 11, 7, 8, 5),
        (8, 9, 8, 9, 6),
        (9, 20, 9, 19, 7),
        (19, 19, 18, 18, 8),
        (18, 18, 1, 2, 9),
        (2, 3, 2, 3, 10),
    ]
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close", "volume"], dtype=float)
    frame.insert(0, "ts", MONDAY + np.arange(len(rows), dtype=np.int64) * MINUTE_MS)
    store.write_candles("BTCUSDT", M1, frame)
    five = store.read_candles("BTCUSDT", M5)
    assert five.to_dict("records") == [
        {"ts": MONDAY, "open": 10.0, "high": 15.0, "low": 7.0, "close": 8.0, "volume": 15.0},
        {"ts": MONDAY + 5 * MINUTE_MS, "open": 8.0, "high": 20.0, "low": 1.0, "close": 3.0, "volume": 40.0},
    ]
    assert store.read_candles("BTCUSDT", H1).empty  # the hour is not complete
    hour = store.read_candles("BTCUSDT", H1, include_partial=True)
    assert hour.to_dict("records") == [
        {"ts": MONDAY, "open": 10.0, "high": 20.0, "low": 1.0, "close": 3.0, "volume": 55.0}
    ]


def test_weekly_resampling_by_hand_starts_on_monday(store: Store) -> None:
    hours = 14 * 24
    frame = pd.DataFrame(
        {
            "ts": MONDAY + np.arange(hours, dtype=np.int64) * HOUR_MS,
            "open": np.arange(hours, dtype=float),
            "high": np.arange(hours, dtype=float) + 10,
            "low": np.arange(hours, dtype=float) - 10,
            "close": np.arange(hours, dtype=float) + 1,
            "volume": np.ones(hours),
        }
    )
    store.write_candles("BTCUSDT", H1, frame)
    weeks = store.read_candles("BTCUSDT", W1)
    assert weeks.to_dict("records") == [
        {"ts": MONDAY, "open": 0.0, "high": 177.0, "low": -10.0, "close": 168.0, "volume": 168.0},
        {"ts": MONDAY + WEEK_MS, "open": 168.0, "high": 345.0, "low": 158.0, "close": 336.0, "volume": 168.0},
    ]
    assert pd.Timestamp(int(weeks["ts"][1]), unit="ms").day_name() == "Monday"


@pytest.mark.parametrize(
    ("source", "target", "n"),
    [(M1, M5, 3000), (M1, H1, 3000), (M1, D1, 3 * 1440 + 77), (H1, H4, 500), (H1, D1, 500), (H1, W1, 24 * 7 * 5 + 30)],
)
def test_resampling_matches_the_pandas_reference(store: Store, source: Timeframe, target: Timeframe, n: int) -> None:
    start = MONDAY + 3 * DAY_MS + 5 * source.ms  # not aligned on the target: the first bucket is partial too
    frame = candles(n, source, start=start, seed=n)
    rng = np.random.default_rng(1)
    frame = frame.drop(index=rng.choice(n, size=n // 20, replace=False).tolist()).reset_index(drop=True)  # gaps
    store.write_candles("BTCUSDT", source, frame)
    for include_partial in (False, True):
        got = store.read_candles("BTCUSDT", target, include_partial=include_partial)
        want = resample_frame(frame, source, target, include_partial=include_partial)
        assert len(got) > 1
        assert_candles_equal(got, want, exact=False)
    # start/end select bucket open times; limit keeps the first buckets.
    full = resample_frame(frame, source, target)
    lo, hi = int(full["ts"][1]), int(full["ts"].iloc[-1])
    got = store.read_candles("BTCUSDT", target, start=lo - 1, end=hi)
    assert_candles_equal(got, full[(full["ts"] >= lo) & (full["ts"] < hi)], exact=False)
    assert store.read_candles("BTCUSDT", target, start=lo, limit=1)["ts"].tolist() == [lo]


def test_resampling_partial_and_gaps(store: Store) -> None:
    frame = candles(60 * 3 - 3)  # 3 hours less the last 3 minutes
    frame = frame.drop(index=list(range(70, 80))).reset_index(drop=True)  # 10 minutes missing in hour 2
    store.write_candles("BTCUSDT", M1, frame)
    hours = store.read_candles("BTCUSDT", H1)
    assert hours["ts"].tolist() == [MONDAY, MONDAY + HOUR_MS]  # the hour with a gap is still emitted
    second = frame[(frame["ts"] >= MONDAY + HOUR_MS) & (frame["ts"] < MONDAY + 2 * HOUR_MS)]
    assert hours["volume"][1] == pytest.approx(second["volume"].sum(), rel=1e-12)
    assert hours["open"][1] == second["open"].iloc[0] and hours["close"][1] == second["close"].iloc[-1]
    with_partial = store.read_candles("BTCUSDT", H1, include_partial=True)
    assert with_partial["ts"].tolist() == [MONDAY, MONDAY + HOUR_MS, MONDAY + 2 * HOUR_MS]
    store.write_candles("BTCUSDT", M1, candles(180).iloc[177:])  # the last hour completes
    assert len(store.read_candles("BTCUSDT", H1)) == 3


def test_resampling_uses_the_coarsest_stored_source(store: Store) -> None:
    minutes = candles(8 * 60)
    store.write_candles("BTCUSDT", M1, minutes)
    hours = resample_frame(minutes, M1, H1)
    hours["volume"] *= 1000  # distinguishable from what the minutes would give
    store.write_candles("BTCUSDT", H1, hours)
    four = store.read_candles("BTCUSDT", H4)
    assert four["volume"].tolist() == pytest.approx(resample_frame(hours, H1, H4)["volume"].tolist(), rel=1e-12)
    assert_candles_equal(store.read_candles("BTCUSDT", H1), hours)  # stored timeframes are read as stored


def test_not_found(store: Store) -> None:
    store.write_candles("BTCUSDT", D1, candles(10, D1))
    with pytest.raises(NotFoundError, match="smartmarket symbols"):
        store.read_candles("NOPEUSDT", H1)
    with pytest.raises(NotFoundError, match="1d"):
        store.read_candles("BTCUSDT", H1)  # only coarser data
    assert len(store.read_candles("BTCUSDT", W1, include_partial=True)) == 2


def test_real_btc_hours_resample_to_the_real_days(store: Store, shared_data: Path) -> None:
    hours = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz")
    days = pd.read_csv(shared_data / "BTCUSDT-1d.csv.gz")
    assert store.write_candles("BTCUSDT", H1, hours).inserted == len(hours)
    got = store.read_candles("BTCUSDT", D1)
    assert_candles_equal(got, resample_frame(hours, H1, D1), exact=False)

    per_day = (hours["ts"] // DAY_MS * DAY_MS).value_counts()
    complete_days = set(per_day[per_day == 24].index)
    both = got.merge(days, on="ts", suffixes=("", "_real"))
    both = both[both["ts"].isin(complete_days)]
    assert len(both) > 2000
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(both[col].to_numpy(), both[f"{col}_real"].to_numpy(), err_msg=col)
    np.testing.assert_allclose(both["volume"].to_numpy(), both["volume_real"].to_numpy(), rtol=1e-6)


# --------------------------------------------------------------------------- events


def _events(
    n: int, correlation: str = "c1", start_ts: int = MONDAY
) -> list[CandleClosed | SignalGenerated | OrderFilled]:
    out: list[CandleClosed | SignalGenerated | OrderFilled] = []
    for i in range(n):
        ts = start_ts + i * MINUTE_MS
        if i % 3 == 0:
            out.append(
                CandleClosed(
                    ts_event=ts,
                    ts_init=ts + 1,
                    correlation_id=correlation,
                    symbol="BTCUSDT",
                    timeframe=M1,
                    ts=ts - MINUTE_MS,
                    open=0.1 + 0.2,
                    high=1e300,
                    low=5e-324,
                    close=1 / 3,
                    volume=0.0,
                )
            )
        elif i % 3 == 1:
            out.append(
                SignalGenerated(
                    ts_event=ts,
                    ts_init=ts,
                    correlation_id=correlation,
                    causation_id="x" * 32,
                    symbol="BTCUSDT",
                    timeframe=H1,
                    ts=ts,
                    direction="long",
                    confidence=0.7,
                    strength="strong",
                    regime="trend",
                    member_probabilities={"a": {"up": 0.6}},
                    member_weights={"a": 1.0},
                    reason="é ünïcode",
                )
            )
        else:
            out.append(
                OrderFilled(
                    ts_event=ts,
                    ts_init=ts,
                    correlation_id=correlation,
                    symbol="BTCUSDT",
                    side="buy",
                    quantity=0.5,
                    price=42000.5,
                    fee=0.01,
                    client_order_id=f"o{i}",
                )
            )
    return out


def test_event_sequence_and_round_trip(store: Store) -> None:
    assert store.last_seq() == 0
    assert store.append_events([]) == []
    first = _events(6)
    assert store.append_events(first) == [1, 2, 3, 4, 5, 6]
    more = _events(3, correlation="c2", start_ts=MONDAY + DAY_MS)
    assert store.append_events(iter(more)) == [7, 8, 9]
    assert store.last_seq() == 9
    stored = store.read_events()
    assert [e.seq for e in stored] == list(range(1, 10))
    assert [e.message for e in stored] == first + more  # exact, every field and type


def test_event_filters(store: Store) -> None:
    store.append_events(_events(9))
    store.append_events(_events(6, correlation="c2", start_ts=MONDAY + DAY_MS))
    assert [e.seq for e in store.read_events(3, 5)] == [3, 4, 5]
    assert [e.seq for e in store.read_events(from_seq=14)] == [14, 15]
    assert [e.seq for e in store.read_events(start=MONDAY + MINUTE_MS, end=MONDAY + 3 * MINUTE_MS)] == [2, 3]
    assert [e.seq for e in store.read_events(types=["OrderFilled"])] == [3, 6, 9, 12, 15]
    assert [e.seq for e in store.read_events(types=["OrderFilled", "CandleClosed"], limit=3)] == [1, 3, 4]
    assert store.read_events(types=[]) == []
    numpy_seq: int = np.int64(6)  # type: ignore[assignment]  # numpy integers are accepted too
    assert [e.seq for e in store.read_events(types="OrderFilled", to_seq=numpy_seq)] == [3, 6]
    assert [e.seq for e in store.read_events(correlation_id="c2")] == list(range(10, 16))
    assert [e.seq for e in store.read_events(5, correlation_id="c2", types=["CandleClosed"], limit=1)] == [10]


def test_import_events_keeps_sequence_numbers(store: Store) -> None:
    messages = _events(3)
    imported = [StoredEvent(seq=s, message=m) for s, m in zip([5, 7, 20], messages, strict=True)]
    assert store.import_events(imported) == 3
    assert store.last_seq() == 20
    assert store.read_events() == imported
    assert store.append_events(_events(1, correlation="after")) == [21]
    with pytest.raises(StoreError, match="already reaches"):
        store.import_events([StoredEvent(seq=21, message=_events(1, "dup")[0])])
    with pytest.raises(StoreError, match="strictly increasing"):
        store.import_events([StoredEvent(seq=30, message=messages[0]), StoredEvent(seq=30, message=messages[1])])
    assert store.last_seq() == 21


def test_duplicate_event_id_is_refused(store: Store) -> None:
    event = _events(1)[0]
    store.append_events([event])
    with pytest.raises(StoreError):
        store.append_events([event])
    assert store.last_seq() == 1
    assert store.append_events(_events(2)[1:]) == [2]  # the store stays usable after the refusal


# --------------------------------------------------------------------------- adapter specifics


def test_duckdb_store_objects_on_one_file_share_a_coherent_cache(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'shared.duckdb'}"
    frame = candles(100)
    with DuckDBStore(url) as a, DuckDBStore(url) as b:
        a.write_candles("BTCUSDT", M1, frame.iloc[:50])
        assert_candles_equal(b.latest("BTCUSDT", M1, 5), frame.iloc[45:50])
        a.write_candles("BTCUSDT", M1, frame.iloc[50:])
        assert_candles_equal(b.latest("BTCUSDT", M1, 5), frame.iloc[95:100])
        a.delete_range("BTCUSDT", M1, start=int(frame["ts"][90]))
        assert_candles_equal(b.latest("BTCUSDT", M1, 5), frame.iloc[85:90])


def test_duckdb_in_memory_and_bad_urls() -> None:
    with open_store("duckdb:///:memory:") as mem:
        mem.write_candles("BTCUSDT", M1, candles(5))
        assert len(mem.read_candles("BTCUSDT", M1)) == 5
    with pytest.raises(ConfigError, match="invalid DuckDB URL"):
        DuckDBStore("duckdb://")


def test_tail_cache_refuses_a_load_that_raced_a_write() -> None:
    cache = TailCache(capacity=10)
    key = ("BTCUSDT", "1m")
    generation = cache.generation()
    cache.invalidate(key)  # a write committed while the tail was being read
    cache.store(key, candles(5), generation)
    assert cache.get(key, 1) is None
    cache.store(key, candles(5), cache.generation())
    hit = cache.get(key, 2)
    assert hit is not None and hit["ts"].tolist() == candles(5)["ts"][3:].tolist()


@pytest.mark.postgres
def test_postgres_unreachable_server() -> None:
    with pytest.raises(StoreUnavailableError, match="cannot reach PostgreSQL") as info:
        PostgresStore("postgresql://postgres:secret@127.0.0.1:1/test", connect_timeout=2)
    assert info.value.hint and "--store" in info.value.hint
    assert "secret" not in str(info.value)


@pytest.mark.postgres
def test_postgres_respects_search_path_and_concurrent_appenders(pg_url: str) -> None:
    import psycopg

    schema = pg_url.rsplit("%3D", 1)[1]
    stores = [PostgresStore(pg_url) for _ in range(3)]
    try:
        with psycopg.connect(pg_url.split("?")[0]) as conn:
            row = conn.execute("SELECT to_regclass(%s)", [f"{schema}.events"]).fetchone()
            assert row is not None and row[0] is not None

        assigned: list[list[int]] = []
        errors: list[BaseException] = []

        def append(store: PostgresStore, tag: str) -> None:
            try:
                for i in range(10):
                    assigned.append(store.append_events(_events(3, correlation=f"{tag}{i}")))
                    time.sleep(0.001)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=append, args=(s, f"t{k}-")) for k, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sorted(seq for batch in assigned for seq in batch) == list(range(1, 91))
        assert all(batch == list(range(batch[0], batch[0] + 3)) for batch in assigned)  # each batch contiguous
        assert [e.seq for e in stores[0].read_events()] == list(range(1, 91))
    finally:
        for s in stores:
            s.close()
