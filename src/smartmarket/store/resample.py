"""On-the-fly resampling shared by the store adapters.

A timeframe that is not stored is built from the *coarsest* stored timeframe that tiles it exactly
(``Timeframe.divides``): first open, max high, min low, last close, summed volume, per UTC-aligned bucket
(weeks open Monday 00:00 UTC, see ``Timeframe.offset_ms``; 3d buckets tile the epoch; ``1M`` buckets are
calendar months, from any stored timeframe that tiles a day).

Rules, identical in SQL (``ResamplePlan`` + ``bucket_sql``) and in the pandas reference (``resample_frame``):

- ``start``/``end`` filter *bucket open times* (half-open ``start <= bucket < end``); a bucket is built from
  all of its source candles even when ``start`` falls inside the previous bucket.
- The trailing bucket whose close lies beyond the close of the series' last source candle is *partial* and
  is left out unless ``include_partial``.
- Buckets with gaps inside history are still emitted from the source candles that exist (a day missing two
  hourly candles is a day built from 22); a bucket with no source candle at all is not emitted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from smartmarket.core.errors import NotFoundError
from smartmarket.core.frame import CANDLE_COLUMNS, empty_candles
from smartmarket.core.types import Timeframe

# Stand-ins for "no bound" so the SQL text stays the same whatever bounds are given.
MIN_TS = -(2**62)
MAX_TS = 2**62


def source_timeframe(target: Timeframe, stored: Iterable[Timeframe]) -> Timeframe | None:
    """The coarsest stored timeframe, strictly finer than ``target``, that tiles it; ``None`` if none does."""
    candidates = [tf for tf in stored if tf is not target and tf.ms < target.ms and tf.divides(target)]
    return max(candidates, key=lambda tf: tf.ms) if candidates else None


def series_not_found(symbol: str, target: Timeframe, stored: Iterable[Timeframe]) -> NotFoundError:
    """The error every adapter raises when neither the series nor a finer stored one can serve a request."""
    have = sorted(stored, key=lambda tf: tf.ms)
    what = f"no {symbol} {target} candles stored"
    if have:
        names = ", ".join(tf.value for tf in have)
        what += f" and none of the stored timeframes ({names}) can be resampled to {target}"
    return NotFoundError(what, hint="run `smartmarket symbols` to see what is stored")


Dialect = Literal["duckdb", "postgres"]


def bucket_sql(ts_column: str, target: Timeframe, dialect: Dialect = "duckdb") -> str:
    """SQL (DuckDB or PostgreSQL, BIGINT) for the open time of the ``target`` bucket containing ``ts_column``.

    Fixed timeframes: the same arithmetic in both, written with a double ``mod`` so it floors correctly for
    negative values too (SQL's remainder truncates); ``mod()`` rather than ``%`` keeps the text free of
    characters drivers treat as placeholders. Calendar months: ``date_trunc('month', …)`` on a UTC timestamp,
    spelled per dialect.
    """
    if target.is_calendar:
        if dialect == "duckdb":  # epoch_ms(BIGINT) is a TIMESTAMP without time zone: UTC, whatever the session's
            return f"epoch_ms(date_trunc('month', epoch_ms({ts_column})))"
        utc = f"(to_timestamp({ts_column} / 1000.0) AT TIME ZONE 'UTC')"
        return f"CAST(round(extract(epoch FROM date_trunc('month', {utc})) * 1000) AS BIGINT)"
    size, off = target.ms, target.offset_ms
    return f"({ts_column} - mod(mod({ts_column} - {off}, {size}) + {size}, {size}))"


def first_bucket_at_or_after(target: Timeframe, ts: int) -> int:
    """Open time of the first ``target`` bucket that opens at or after ``ts``."""
    start = target.bucket_start(ts)
    return start if start >= ts else target.next_open(ts)


@dataclass(frozen=True, slots=True)
class ResamplePlan:
    """Bounds on the *source* candles to aggregate: ``src_start <= ts < src_end`` (both always set)."""

    source: Timeframe
    target: Timeframe
    src_start: int
    src_end: int

    @property
    def bucket_expr(self) -> str:
        """The bucket SQL in DuckDB's spelling (the same text as PostgreSQL's for fixed timeframes)."""
        return bucket_sql("ts", self.target)

    def bucket_sql(self, dialect: Dialect) -> str:
        return bucket_sql("ts", self.target, dialect)


def plan_resample(
    source: Timeframe,
    target: Timeframe,
    start: int | None,
    end: int | None,
    last_source_ts: int,
    *,
    include_partial: bool = False,
) -> ResamplePlan:
    """Translate bucket-open bounds and the partial-bucket rule into source-candle bounds.

    ``last_source_ts`` is the open time of the last stored candle of the *whole* source series.
    """
    src_start = MIN_TS if start is None else first_bucket_at_or_after(target, start)
    # Buckets opening before ``end`` are those up to the one containing ``end - 1``.
    src_end = MAX_TS if end is None else target.next_open(end - 1)
    if not include_partial:
        last_bucket = target.bucket_start(last_source_ts)
        bucket_end = target.next_open(last_source_ts)
        complete = bucket_end <= source.next_open(last_source_ts)
        src_end = min(src_end, bucket_end if complete else last_bucket)
    return ResamplePlan(source=source, target=target, src_start=src_start, src_end=src_end)


def resample_frame(
    frame: pd.DataFrame,
    source: Timeframe,
    target: Timeframe,
    *,
    include_partial: bool = False,
) -> pd.DataFrame:
    """Pandas reference implementation: resample a whole stored ``source`` series to ``target``.

    Used by the tests to check the SQL of each adapter; deliberately plain (``groupby`` + named aggregations).
    """
    if not source.divides(target):
        raise ValueError(f"{source} does not tile {target}")
    if frame.empty:
        return empty_candles()
    ts = frame["ts"].to_numpy(dtype=np.int64)
    buckets = target.bucket_starts(ts)
    grouped = frame.assign(bucket=buckets).groupby("bucket", sort=True)
    out = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
    ).reset_index(names="ts")
    if not include_partial:
        last_close = source.next_open(int(ts.max()))
        opens = out["ts"].to_numpy(dtype=np.int64)
        closes = np.array([target.next_open(int(t)) for t in opens]) if target.is_calendar else opens + target.ms
        out = out[closes <= last_close]
    out["ts"] = out["ts"].astype(np.int64)
    return out[list(CANDLE_COLUMNS)].reset_index(drop=True)


__all__ = [
    "MAX_TS",
    "MIN_TS",
    "Dialect",
    "ResamplePlan",
    "bucket_sql",
    "first_bucket_at_or_after",
    "plan_resample",
    "resample_frame",
    "series_not_found",
    "source_timeframe",
]
