"""Helpers shared by the SQL store adapters: candle frame preparation and event-log filters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.core.errors import StoreError, ValidationError
from smartmarket.core.frame import CANDLE_COLUMNS
from smartmarket.core.types import Timeframe

VALUE_COLUMNS = CANDLE_COLUMNS[1:]  # open, high, low, close, volume
STORED_COLUMNS = tuple(f"stored_{c}" for c in VALUE_COLUMNS)


def prepare_candles(frame: pd.DataFrame, timeframe: Timeframe, where: str) -> dict[str, np.ndarray]:
    """The columns of a candle frame to write: typed, sorted by ``ts``, exact duplicate rows dropped.

    Raises ``ValidationError`` for missing columns, two different rows with one ``ts``, or a ``ts`` that is
    not a candle open time of ``timeframe`` (either would corrupt reads and resampling).
    """
    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValidationError(f"candle frame lacks columns {missing}", where=where)
    cols = {c: frame[c].to_numpy(dtype=np.int64 if c == "ts" else np.float64, copy=False) for c in CANDLE_COLUMNS}
    ts = cols["ts"]
    if len(ts) > 1 and not bool(np.all(ts[1:] > ts[:-1])):
        order = np.argsort(ts, kind="stable")
        cols = {c: v[order] for c, v in cols.items()}
        ts = cols["ts"]
        same = np.flatnonzero(ts[1:] == ts[:-1])
        if len(same):
            values = np.column_stack([cols[c] for c in VALUE_COLUMNS])
            differs = ~((values[same] == values[same + 1]) | (np.isnan(values[same]) & np.isnan(values[same + 1])))
            if differs.any():
                raise ValidationError(
                    f"{int(differs.any(axis=1).sum())} timestamps appear twice with different values",
                    where=where,
                    hint="validate the frame first (duplicates are quarantined by the ingest validation)",
                )
            keep = np.ones(len(ts), dtype=bool)
            keep[same + 1] = False
            cols = {c: v[keep] for c, v in cols.items()}
            ts = cols["ts"]
    misaligned = timeframe.bucket_starts(ts) != ts
    if misaligned.any():
        raise ValidationError(
            f"{int(misaligned.sum())} candles do not open on a {timeframe} boundary "
            f"(first ts={int(ts[misaligned][0])})",
            where=where,
            hint="ts must be the UTC epoch ms of the candle open",
        )
    return cols


def event_filters(
    from_seq: int | None,
    to_seq: int | None,
    start: int | None,
    end: int | None,
    types: Sequence[str] | None,
    correlation_id: str | None,
    *,
    placeholder: str,
) -> tuple[str, list[Any]]:
    """``WHERE`` clause and parameters for ``read_events`` (seq range inclusive, ``ts_event`` half-open)."""
    clauses: list[str] = []
    params: list[Any] = []
    for sql, value in (
        ("seq >= {p}", from_seq),
        ("seq <= {p}", to_seq),
        ("ts_event >= {p}", start),
        ("ts_event < {p}", end),
        ("correlation_id = {p}", correlation_id),
    ):
        if value is not None:
            clauses.append(sql.format(p=placeholder))
            params.append(value if isinstance(value, str) else int(value))
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not names:
            clauses.append("false")
        else:
            clauses.append(f"type IN ({', '.join([placeholder] * len(names))})")
            params.extend(names)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def check_event_delete(seq: int, last: int, deleting: int, expected: int | None, where: str) -> None:
    """Refuse a ``delete_events_through(seq)`` (before anything is deleted) that would remove the newest event
    ``last`` (the next sequence number continues from it) or ``deleting`` events when ``expected`` differ."""
    if last and seq >= last:
        raise StoreError(
            f"cannot delete events through seq {seq}: the newest event (seq {last}) must stay",
            where=where,
            hint=f"sequence numbers continue from the newest event: trim at most through seq {last - 1}",
        )
    if expected is not None and deleting != expected:
        raise StoreError(
            f"refusing to delete events through seq {seq}: {deleting} stored, {expected} expected (archived)",
            where=where,
            hint="the log changed since it was archived: run the retention again",
        )


__all__ = ["STORED_COLUMNS", "VALUE_COLUMNS", "check_event_delete", "event_filters", "prepare_candles"]
