"""The SQL that the QuestDB adapter sends over the PostgreSQL wire port: pure functions, no I/O.

Conventions:

- Every query function returns a ``SqlQuery`` (text with psycopg ``%s`` placeholders, plus the parameters).
  Free-form values (symbols, timeframes, event types, correlation ids) travel as bind parameters.
- Times are UTC epoch **milliseconds** in SmartMarket and microsecond ``TIMESTAMP`` columns in QuestDB.
  Range bounds are written as ISO-8601 literals (``'2024-01-01T00:00:00.000000Z'``), QuestDB's documented
  way to compare with a designated timestamp (it enables interval scans); they are built from ``int`` so
  nothing user-typed reaches the SQL text.
- Timestamps are read back as ``cast(ts AS LONG)``: epoch microseconds, converted to ms by the caller.
- Table names are validated identifiers (``[A-Za-z_][A-Za-z0-9_]*``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from smartmarket.core.errors import ConfigError
from smartmarket.core.types import DAY_MS, Timeframe

CANDLE_VALUE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SqlQuery(NamedTuple):
    """SQL text with ``%s`` placeholders and the values bound to them, in order."""

    text: str
    params: tuple[object, ...] = ()


def table_name(name: str) -> str:
    """``name`` if it is a safe SQL identifier, else ``ConfigError``."""
    if not _IDENT_RE.match(name) or len(name) > 100:
        raise ConfigError(f"invalid QuestDB table name {name!r}", hint="use letters, digits and underscores")
    return name


def ts_literal(ts_ms: int) -> str:
    """A QuestDB timestamp literal for epoch ms: ``'2024-01-01T00:00:00.000000Z'``."""
    moment = _EPOCH + timedelta(milliseconds=int(ts_ms))
    return "'" + moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z'"


def sample_unit(timeframe: Timeframe) -> str:
    """The ``SAMPLE BY`` stride for a timeframe whose calendar alignment equals SmartMarket's.

    Every stride up to a day divides 24 h, so QuestDB's ``ALIGN TO CALENDAR`` (UTC midnight) and SmartMarket's
    epoch alignment agree. Weeks are *not* mapped (SmartMarket weeks open on Monday; QuestDB's week alignment
    is not relied upon), nor are 3d and 1M: the adapter samples ``1d`` and folds days into them itself.
    """
    if not is_sampled(timeframe):
        raise ValueError(f"{timeframe} is folded from daily samples; there is no SAMPLE BY stride for it")
    return timeframe.value


def is_sampled(timeframe: Timeframe) -> bool:
    """Whether QuestDB samples ``timeframe`` itself (it tiles a UTC day); weeks, 3d and months are folded from
    ``1d`` samples by the adapter, whose alignment is SmartMarket's."""
    return not timeframe.is_calendar and DAY_MS % timeframe.ms == 0


# --------------------------------------------------------------------------------------------- DDL


def candles_ddl(table: str) -> str:
    """The candle table: designated ``ts``, one row per (ts, symbol, timeframe) kept by DEDUP UPSERT."""
    t = table_name(table)
    return (
        f"CREATE TABLE IF NOT EXISTS {t} ("
        "ts TIMESTAMP, symbol SYMBOL, timeframe SYMBOL, "
        "open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, synthetic BOOLEAN"
        ") TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, symbol, timeframe)"
    )


def events_ddl(table: str) -> str:
    """The event log: designated ``ts_event``; (ts_event, seq) deduplicated so a resent batch is harmless."""
    t = table_name(table)
    return (
        f"CREATE TABLE IF NOT EXISTS {t} ("
        "seq LONG, event_id VARCHAR, type SYMBOL, ts_event TIMESTAMP, ts_init TIMESTAMP, "
        "correlation_id VARCHAR, causation_id VARCHAR, payload VARCHAR"
        ") TIMESTAMP(ts_event) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts_event, seq)"
    )


# --------------------------------------------------------------------------------------------- candles


def _series_where(symbol: str, timeframe: Timeframe, start: int | None, end: int | None) -> tuple[str, list[object]]:
    clauses = ["symbol = %s", "timeframe = %s"]
    if start is not None:
        clauses.append(f"ts >= {ts_literal(start)}")
    if end is not None:
        clauses.append(f"ts < {ts_literal(end)}")
    return " AND ".join(clauses), [symbol, timeframe.value]


def read_candles_sql(
    table: str,
    symbol: str,
    timeframe: Timeframe,
    start: int | None = None,
    end: int | None = None,
    limit: int | None = None,
) -> SqlQuery:
    """Stored candles with ``start <= ts < end``, ascending, the first ``limit`` of them."""
    where, params = _series_where(symbol, timeframe, start, end)
    text = (
        f"SELECT cast(ts AS LONG) AS ts_us, open, high, low, close, volume FROM {table_name(table)} "
        f"WHERE {where} ORDER BY ts"
    )
    if limit is not None:
        text += f" LIMIT {int(limit)}"
    return SqlQuery(text, tuple(params))


def latest_sql(table: str, symbol: str, timeframe: Timeframe, n: int) -> SqlQuery:
    """The last ``n`` candles, newest first (the caller reverses them)."""
    where, params = _series_where(symbol, timeframe, None, None)
    text = (
        f"SELECT cast(ts AS LONG) AS ts_us, open, high, low, close, volume FROM {table_name(table)} "
        f"WHERE {where} ORDER BY ts DESC LIMIT {int(n)}"
    )
    return SqlQuery(text, tuple(params))


def sample_by_sql(
    table: str, symbol: str, source: Timeframe, stride: str, start: int | None = None, end: int | None = None
) -> SqlQuery:
    """OHLCV buckets of ``stride`` (``"1h"``, ``"1d"`` …) built from the stored ``source`` candles.

    ``start``/``end`` filter the *source* rows (the caller passes bucket-aligned bounds). Non-keyed
    ``SAMPLE BY`` (symbol and timeframe are WHERE filters, not selected), wrapped so the bucket time comes back
    as epoch microseconds.
    """
    where, params = _series_where(symbol, source, start, end)
    inner = (
        "SELECT ts, first(open) AS open, max(high) AS high, min(low) AS low, last(close) AS close, "
        f"sum(volume) AS volume FROM {table_name(table)} WHERE {where} "
        f"SAMPLE BY {stride} ALIGN TO CALENDAR"
    )
    text = f"SELECT cast(ts AS LONG) AS ts_us, open, high, low, close, volume FROM ({inner}) ORDER BY ts_us"
    return SqlQuery(text, tuple(params))


def list_series_sql(table: str) -> SqlQuery:
    """Per (symbol, timeframe): row count, first/last ts (µs) and how many rows are marked synthetic."""
    text = (
        "SELECT symbol, timeframe, count() AS n, cast(min(ts) AS LONG) AS first_us, "
        "cast(max(ts) AS LONG) AS last_us, sum(CASE WHEN synthetic THEN 1 ELSE 0 END) AS n_synthetic "
        f"FROM {table_name(table)} GROUP BY symbol, timeframe"
    )
    return SqlQuery(text)


def stored_timeframes_sql(table: str, symbol: str) -> SqlQuery:
    """The timeframes stored for one symbol."""
    return SqlQuery(f"SELECT DISTINCT timeframe FROM {table_name(table)} WHERE symbol = %s", (symbol,))


def days_with_rows_sql(
    table: str, symbol: str, timeframe: Timeframe, start: int | None = None, end: int | None = None
) -> SqlQuery:
    """UTC days (epoch µs) holding rows of the series in the range, with the row count of each day."""
    where, params = _series_where(symbol, timeframe, start, end)
    inner = f"SELECT ts, count() AS n FROM {table_name(table)} WHERE {where} SAMPLE BY 1d ALIGN TO CALENDAR"
    return SqlQuery(f"SELECT cast(ts AS LONG) AS day_us, n FROM ({inner}) ORDER BY day_us", tuple(params))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def delete_rebuild_statements(
    table: str,
    scratch: str,
    symbol: str,
    timeframe: Timeframe,
    start: int | None,
    end: int | None,
    first_day: int,
    last_day: int,
) -> list[str]:
    """Statements that delete a series range from a QuestDB table (which has no ``DELETE``).

    The UTC days ``first_day … last_day`` (epoch ms, day-aligned) holding doomed rows are rebuilt: the rows
    to *keep* are copied into a non-WAL scratch table, the day partitions are dropped, the kept rows are
    inserted back and the scratch table dropped. ``symbol`` and ``timeframe`` are inlined (DDL takes no bind
    parameters); the caller passes a normalised symbol, and they are quoted anyway.
    """
    t, s = table_name(table), table_name(scratch)
    day_lo, day_hi = ts_literal(first_day), ts_literal(last_day + DAY_MS)
    doomed = [f"symbol = {_quote(symbol)}", f"timeframe = {_quote(timeframe.value)}"]
    if start is not None:
        doomed.append(f"ts >= {ts_literal(start)}")
    if end is not None:
        doomed.append(f"ts < {ts_literal(end)}")
    columns = "ts, symbol, timeframe, open, high, low, close, volume, synthetic"
    return [
        f"CREATE TABLE {s} AS (SELECT {columns} FROM {t} WHERE ts >= {day_lo} AND ts < {day_hi} "
        f"AND NOT ({' AND '.join(doomed)})) TIMESTAMP(ts) PARTITION BY DAY BYPASS WAL",
        f"ALTER TABLE {t} DROP PARTITION WHERE ts >= {day_lo} AND ts < {day_hi}",
        f"INSERT INTO {t} ({columns}) SELECT {columns} FROM {s}",
        f"DROP TABLE {s}",
    ]


# --------------------------------------------------------------------------------------------- events


def last_seq_sql(table: str) -> SqlQuery:
    return SqlQuery(f"SELECT max(seq) FROM {table_name(table)}")


def read_events_sql(
    table: str,
    from_seq: int | None = None,
    to_seq: int | None = None,
    *,
    start: int | None = None,
    end: int | None = None,
    types: Sequence[str] | None = None,
    correlation_id: str | None = None,
    limit: int | None = None,
) -> SqlQuery:
    """Events by sequence range, ``ts_event`` range, types and correlation id, in sequence order."""
    clauses: list[str] = []
    params: list[object] = []
    if from_seq is not None:
        clauses.append("seq >= %s")
        params.append(int(from_seq))
    if to_seq is not None:
        clauses.append("seq <= %s")
        params.append(int(to_seq))
    if start is not None:
        clauses.append(f"ts_event >= {ts_literal(start)}")
    if end is not None:
        clauses.append(f"ts_event < {ts_literal(end)}")
    if types is not None:
        if not types:
            raise ValueError("an empty type filter matches nothing: do not query")
        clauses.append("type IN (" + ", ".join(["%s"] * len(types)) + ")")
        params.extend(types)
    if correlation_id is not None:
        clauses.append("correlation_id = %s")
        params.append(correlation_id)
    text = f"SELECT seq, payload FROM {table_name(table)}"
    if clauses:
        text += " WHERE " + " AND ".join(clauses)
    text += " ORDER BY seq"
    if limit is not None:
        text += f" LIMIT {int(limit)}"
    return SqlQuery(text, tuple(params))


# --------------------------------------------------------------------------------------------- WAL


def wal_status_sql(table: str) -> SqlQuery:
    """``suspended, writerTxn, sequencerTxn`` of a WAL table: rows are visible once writerTxn catches up."""
    return SqlQuery("SELECT suspended, writerTxn, sequencerTxn FROM wal_tables() WHERE name = %s", (table_name(table),))


__all__ = [
    "CANDLE_VALUE_COLUMNS",
    "SqlQuery",
    "candles_ddl",
    "days_with_rows_sql",
    "delete_rebuild_statements",
    "events_ddl",
    "is_sampled",
    "last_seq_sql",
    "latest_sql",
    "list_series_sql",
    "read_candles_sql",
    "read_events_sql",
    "sample_by_sql",
    "sample_unit",
    "stored_timeframes_sql",
    "table_name",
    "ts_literal",
    "wal_status_sql",
]
