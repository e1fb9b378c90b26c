"""3d, 8h and calendar-month (1M) candles resampled by the stores from real stored candles, checked against
pandas' own ``resample`` (an independent implementation) on the real BTCUSDT history in ``../shared/data``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.frame import CANDLE_COLUMNS
from smartmarket.core.types import Timeframe
from smartmarket.data.parsers import parse_file
from smartmarket.store import open_store
from smartmarket.store.base import Store
from smartmarket.store.resample import resample_frame

D1, H1 = Timeframe.D1, Timeframe.H1


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"duckdb:///{tmp_path / 'store.duckdb'}" if request.param == "duckdb" else request.getfixturevalue("pg_url")
    with open_store(str(url)) as s:
        yield s


def real(shared_data: Path, name: str) -> pd.DataFrame:
    frame = parse_file(shared_data / name)
    return frame[list(CANDLE_COLUMNS)].reset_index(drop=True)


def pandas_resample(frame: pd.DataFrame, rule: str, source: Timeframe, **kwargs: str) -> pd.DataFrame:
    """pandas' resample (UTC), empty buckets dropped, the trailing bucket dropped unless the source reaches its end.

    The index is UTC without a time zone: pandas ignores ``origin`` for day rules on a tz-aware index."""
    indexed = frame.set_index(pd.to_datetime(frame["ts"], unit="ms"))
    out = (
        indexed.resample(rule, label="left", closed="left", **kwargs)  # type: ignore[arg-type]
        .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
        .dropna(subset=["open"])
    )
    opens = out.index.as_unit("ms").asi8
    bucket_ends = (out.index + pd.tseries.frequencies.to_offset(rule)).as_unit("ms").asi8
    covered = int(frame["ts"].iloc[-1]) + source.ms
    out = out[bucket_ends <= covered]
    result = pd.DataFrame({"ts": opens[: len(out)], **{c: out[c].to_numpy() for c in CANDLE_COLUMNS[1:]}})
    return result.astype({"ts": np.int64})


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got["ts"].tolist() == want["ts"].tolist()
    for column in ("open", "high", "low", "close"):
        assert got[column].tolist() == want[column].tolist(), column
    np.testing.assert_allclose(got["volume"].to_numpy(), want["volume"].to_numpy(), rtol=1e-12)


@pytest.mark.parametrize(
    ("target", "rule", "origin"),
    [(Timeframe.D3, "3D", "epoch"), (Timeframe.MO1, "MS", "start_day")],
    ids=["3d", "1M"],
)
def test_real_days_resample_like_pandas(
    store: Store, shared_data: Path, target: Timeframe, rule: str, origin: str
) -> None:
    days = real(shared_data, "BTCUSDT-1d.csv.gz")
    store.write_candles("BTCUSDT", D1, days)
    got = store.read_candles("BTCUSDT", target)
    want = pandas_resample(days, rule, D1, origin=origin)
    assert len(got) > (30 if target is Timeframe.MO1 else 500)
    assert_same(got, want)
    assert_same(got, resample_frame(days, D1, target))  # the adapters' SQL equals the reference implementation
    if target is Timeframe.MO1:  # the 1st of every month at 00:00 UTC, and every month of the history
        opens = pd.to_datetime(got["ts"], unit="ms", utc=True)
        assert (opens.dt.day == 1).all() and (opens.dt.hour == 0).all()
        assert (
            len(got) == (opens.iloc[-1].year - opens.iloc[0].year) * 12 + opens.iloc[-1].month - opens.iloc[0].month + 1
        )


def test_real_hours_resample_to_8h_and_months_like_pandas(store: Store, shared_data: Path) -> None:
    hours = real(shared_data, "BTCUSDT-1h.csv.gz")
    store.write_candles("BTCUSDT", H1, hours)
    assert_same(store.read_candles("BTCUSDT", Timeframe.H8), pandas_resample(hours, "8h", H1, origin="epoch"))
    months = store.read_candles("BTCUSDT", Timeframe.MO1)
    assert_same(months, pandas_resample(hours, "MS", H1, origin="start_day"))


def test_month_ranges_and_the_partial_month(store: Store, shared_data: Path) -> None:
    days = real(shared_data, "BTCUSDT-1d.csv.gz")
    cut = days[days["ts"] < pd.Timestamp("2024-02-15", tz="UTC").value // 10**6]  # February half stored
    store.write_candles("BTCUSDT", D1, cut)
    jan = pd.Timestamp("2024-01-01", tz="UTC").value // 10**6
    feb = pd.Timestamp("2024-02-01", tz="UTC").value // 10**6
    assert store.read_candles("BTCUSDT", Timeframe.MO1)["ts"].iloc[-1] == jan  # February is partial: left out
    partial = store.read_candles("BTCUSDT", Timeframe.MO1, include_partial=True)
    assert partial["ts"].iloc[-1] == feb
    assert partial["close"].iloc[-1] == cut["close"].iloc[-1]
    # start/end filter month open times, half-open: [mid-December, Feb) holds January only
    window = store.read_candles("BTCUSDT", Timeframe.MO1, start=jan - 15 * D1.ms, end=feb)
    assert window["ts"].tolist() == [jan]
    assert window["open"].iloc[0] == cut.loc[cut["ts"] == jan, "open"].iloc[0]
