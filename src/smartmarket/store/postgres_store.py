"""PostgreSQL store (psycopg 3): candles, series metadata and the event log in the connection's schema.

URL: ``postgresql://user[:password]@host:5432/db`` (any libpq parameter, e.g. ``?options=-csearch_path%3Dmy``
to use another schema: tables are created unqualified, in the first schema of the search path).

How it is made fast without giving up a real key:

- ``candles`` has ``PRIMARY KEY (symbol, timeframe, ts)``; range reads and ``latest`` are index scans.
- Writes stream the frame with ``COPY … FROM STDIN (FORMAT BINARY)`` into a per-connection temporary staging
  table (the binary rows are built by numpy in one go, no per-row Python), then one ``INSERT … SELECT``:
  plain when the frame lies after the stored last candle, else ``ON CONFLICT DO NOTHING`` after a join that
  finds unchanged rows and conflicts (``ON CONFLICT DO UPDATE`` style overwrite when asked).
- Reads come back as ``COPY (SELECT …) TO STDOUT (FORMAT BINARY)`` parsed by numpy.
- Writers of one series are serialised across processes by a transaction-level advisory lock; appenders
  to the event log by ``LOCK TABLE events IN EXCLUSIVE MODE`` (readers are not blocked), so sequence
  numbers become visible in order.
- The tail cache for ``latest`` is off by default: other processes may write to a shared server, and the
  cache only sees writes made through this process. Pass ``tail_cache=True`` when this store is the only
  writer.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from smartmarket.core.errors import ConfigError, SmartMarketError, StoreError, StoreUnavailableError
from smartmarket.core.events import Message, from_json, to_json
from smartmarket.core.frame import CANDLE_COLUMNS, empty_candles
from smartmarket.core.redaction import redact_text, redact_url, url_secrets
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.store.base import OnConflict, SeriesInfo, Store, StoredEvent, WriteResult
from smartmarket.store.cache import DEFAULT_CAPACITY, TailCache

# Shared, driver-free helpers kept beside the embedded adapter (importing it loads the duckdb package, a
# hard dependency of SmartMarket anyway).
from smartmarket.store.common import (
    STORED_COLUMNS,
    VALUE_COLUMNS,
    check_event_delete,
    event_filters,
    prepare_candles,
)
from smartmarket.store.resample import MAX_TS, MIN_TS, plan_resample, series_not_found, source_timeframe

_SCHEMA = """
CREATE TABLE IF NOT EXISTS candles (
    symbol text NOT NULL, timeframe text NOT NULL, ts bigint NOT NULL,
    open float8 NOT NULL, high float8 NOT NULL, low float8 NOT NULL, close float8 NOT NULL,
    volume float8 NOT NULL,
    PRIMARY KEY (symbol, timeframe, ts)
);
CREATE TABLE IF NOT EXISTS series (
    symbol text NOT NULL, timeframe text NOT NULL, synthetic boolean NOT NULL,
    count bigint NOT NULL, first_ts bigint NOT NULL, last_ts bigint NOT NULL,
    PRIMARY KEY (symbol, timeframe)
);
CREATE TABLE IF NOT EXISTS events (
    seq bigint PRIMARY KEY, event_id text NOT NULL UNIQUE, type text NOT NULL,
    ts_event bigint NOT NULL, ts_init bigint NOT NULL, correlation_id text NOT NULL, causation_id text,
    payload text NOT NULL
);
CREATE INDEX IF NOT EXISTS events_type_seq ON events (type, seq);
CREATE INDEX IF NOT EXISTS events_ts_event ON events (ts_event);
CREATE INDEX IF NOT EXISTS events_correlation ON events (correlation_id);
"""

_STAGING = "_sm_staging"
ANALYZE_AFTER_ROWS = 100_000  # a write inserting this many rows refreshes the planner statistics
_STAGING_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (ts bigint, open float8, high float8, low float8, "
    "close float8, volume float8) ON COMMIT DELETE ROWS"
)

# --- PostgreSQL binary COPY format (header, tuples of length-prefixed big-endian fields, trailer) ---------
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"
_ROW_DTYPE = np.dtype(
    [("nfields", ">i2")]
    + [item for c in CANDLE_COLUMNS for item in ((f"len_{c}", ">i4"), (c, ">i8" if c == "ts" else ">f8"))]
)


def encode_copy_binary(cols: dict[str, np.ndarray]) -> bytes:
    """Candle columns as a ``COPY … FROM STDIN (FORMAT BINARY)`` stream (ts int8, values float8)."""
    rows = np.empty(len(cols["ts"]), dtype=_ROW_DTYPE)
    rows["nfields"] = len(CANDLE_COLUMNS)
    for c in CANDLE_COLUMNS:
        rows[f"len_{c}"] = 8
        rows[c] = cols[c].astype(_ROW_DTYPE[c])  # byte-swap contiguously first: twice as fast as in place
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


def decode_copy_binary(data: bytes) -> pd.DataFrame:
    """Parse a ``COPY (SELECT ts, open, high, low, close, volume …) TO STDOUT (FORMAT BINARY)`` stream."""
    if not data:
        return empty_candles()
    if not data.startswith(_COPY_HEADER[:11]):
        raise StoreError("unexpected COPY BINARY header from PostgreSQL")
    ext_len = int.from_bytes(data[15:19], "big")
    body = memoryview(data)[19 + ext_len : len(data) - len(_COPY_TRAILER)]
    if len(body) % _ROW_DTYPE.itemsize:
        raise StoreError("unexpected COPY BINARY row layout from PostgreSQL (NULL values?)")
    rows = np.frombuffer(body, dtype=_ROW_DTYPE)
    if len(rows) == 0:
        return empty_candles()
    return pd.DataFrame({c: rows[c].astype(np.int64 if c == "ts" else np.float64) for c in CANDLE_COLUMNS})


class PostgresStore(Store):
    """Candles and events in a PostgreSQL database (the schema first in the connection's search path)."""

    def __init__(
        self, url: str, *, tail_cache: bool = False, cache_capacity: int = DEFAULT_CAPACITY, connect_timeout: int = 5
    ) -> None:
        self.url = url
        self._where = redact_url(url)
        self._secrets = url_secrets(url)  # masked in driver messages, which may quote them outside URL form
        self._connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._cache = TailCache(cache_capacity) if tail_cache else None
        self._closed = False
        self._conn = self._connect()

    # ------------------------------------------------------------------ plumbing

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self._connect_timeout)
        except psycopg.OperationalError as exc:
            text = self._driver_text(exc)
            first_line = text.splitlines()[0] if text else type(exc).__name__
            raise StoreUnavailableError(
                f"cannot reach PostgreSQL: {first_line}",
                where=self._where,
                hint="start the server or fix --store / SMARTMARKET_STORE (postgresql://user@host:5432/db)",
            ) from None
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {self._driver_text(exc)}", where=self._where) from None
        try:
            with conn.transaction():
                # Serialise concurrent first-time schema creation (CREATE … IF NOT EXISTS can race).
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '.smartmarket', 0))")
                conn.execute(_SCHEMA)
            conn.execute(_STAGING_DDL)
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(
                f"cannot create the SmartMarket tables: {self._driver_text(exc)}",
                where=self._where,
                hint="check that the schema in search_path exists and the user may create tables in it",
            ) from None
        return conn

    @contextmanager
    def _errors(self) -> Iterator[psycopg.Connection[Any]]:
        """Run under this store's lock with a live connection; turn driver errors into SmartMarket errors."""
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed", where=self._where)
            if self._conn.broken or self._conn.closed:
                self._conn = self._connect()
            try:
                yield self._conn
            except SmartMarketError:
                raise
            except psycopg.OperationalError as exc:
                raise StoreUnavailableError(f"PostgreSQL: {self._driver_text(exc)}", where=self._where) from None
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL: {self._driver_text(exc)}", where=self._where) from None

    def _driver_text(self, exc: BaseException) -> str:
        """A driver's message, stripped, with this URL's secrets masked (the rest is masked by the error)."""
        return redact_text(str(exc).strip(), also=self._secrets)

    def _copy_out(self, conn: psycopg.Connection[Any], select_sql: str, params: Sequence[object]) -> pd.DataFrame:
        chunks: list[bytes] = []
        with conn.cursor() as cur, cur.copy(f"COPY ({select_sql}) TO STDOUT (FORMAT BINARY)", params) as copy:
            for chunk in copy:
                chunks.append(bytes(chunk))
        return decode_copy_binary(b"".join(chunks))

    def _stored(self, conn: psycopg.Connection[Any], symbol: str) -> dict[Timeframe, tuple[int, int, int]]:
        rows = conn.execute(
            "SELECT timeframe, count, first_ts, last_ts FROM series WHERE symbol = %s", [symbol]
        ).fetchall()
        return {Timeframe(tf): (int(n), int(first), int(last)) for tf, n, first, last in rows}

    # ------------------------------------------------------------------ candles

    def write_candles(
        self,
        symbol: str,
        timeframe: Timeframe,
        frame: pd.DataFrame,
        *,
        on_conflict: OnConflict = "report",
        synthetic: bool = False,
    ) -> WriteResult:
        """Insert new candles; identical ones count as ``unchanged``; different ones are conflicts, returned
        (not written) unless ``on_conflict="overwrite"``, which replaces them (and returns no conflicts)."""
        if on_conflict not in ("report", "overwrite"):
            raise ConfigError(f"unknown on_conflict {on_conflict!r}", hint="use 'report' or 'overwrite'")
        symbol, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
        cols = prepare_candles(frame, tf, where=f"{symbol} {tf}")
        ts = cols["ts"]
        if len(ts) == 0:
            return WriteResult(inserted=0, unchanged=0, conflicts=_conflict_frame([]))
        key = (symbol, tf.value)
        with self._errors() as conn:
            try:
                with conn.transaction():
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || %s || ':' || %s, 0))",
                        [symbol, tf.value],
                    )
                    info = self._stored(conn, symbol).get(tf)
                    with conn.cursor() as cur, cur.copy(f"COPY {_STAGING} FROM STDIN (FORMAT BINARY)") as copy:
                        copy.write(encode_copy_binary(cols))
                    if info is None or int(ts[0]) > info[2] or int(ts[-1]) < info[1]:  # no overlap possible
                        conn.execute(
                            f"INSERT INTO candles SELECT %s, %s, ts, open, high, low, close, volume FROM {_STAGING}",
                            [symbol, tf.value],
                        )
                        self._add_to_series(conn, symbol, tf, len(ts), int(ts[0]), int(ts[-1]), synthetic)
                        result = WriteResult(inserted=len(ts), unchanged=0, conflicts=_conflict_frame([]))
                    else:
                        if len(ts) >= ANALYZE_AFTER_ROWS // 10:
                            conn.execute(f"ANALYZE {_STAGING}")  # so the joins below are planned on real sizes
                        result = self._merge(conn, symbol, tf, on_conflict, synthetic)
            except BaseException:
                if self._cache is not None:
                    self._cache.invalidate(key)
                raise
            if result.inserted >= ANALYZE_AFTER_ROWS:
                # Fresh statistics right away (autovacuum may take a minute): without them the planner
                # under-estimates a freshly loaded series and picks bitmap scans + sorts over the primary key.
                conn.execute("ANALYZE candles")
        if self._cache is not None:
            previous_last = info[2] if info is not None else None
            self._cache.after_write(key, cols, previous_last, result.inserted, result.overwritten)
        return result

    def _merge(
        self, conn: psycopg.Connection[Any], symbol: str, tf: Timeframe, on_conflict: OnConflict, synthetic: bool
    ) -> WriteResult:
        """Overlap path: compare with the stored rows by primary key, insert only the new ones."""
        series = [symbol, tf.value]
        incoming = ", ".join(f"s.{c}" for c in VALUE_COLUMNS)
        stored = ", ".join(f"c.{c}" for c in VALUE_COLUMNS)
        join = f"FROM {_STAGING} s JOIN candles c ON c.symbol = %s AND c.timeframe = %s AND c.ts = s.ts"
        row = conn.execute(f"SELECT count(*) {join}", series).fetchone()
        matched = int(row[0]) if row else 0
        conflict_rows = conn.execute(
            f"SELECT s.ts, {incoming}, {stored} {join} WHERE ({incoming}) IS DISTINCT FROM ({stored}) ORDER BY s.ts",
            series,
        ).fetchall()
        row = conn.execute(
            f"""WITH ins AS (
                INSERT INTO candles SELECT %s, %s, ts, open, high, low, close, volume FROM {_STAGING}
                ON CONFLICT (symbol, timeframe, ts) DO NOTHING RETURNING ts
            ) SELECT count(*), min(ts), max(ts) FROM ins""",
            series,
        ).fetchone()
        inserted, first_new, last_new = (int(row[0]), row[1], row[2]) if row else (0, None, None)
        self._add_to_series(conn, symbol, tf, inserted, first_new or 0, last_new or 0, synthetic)
        overwritten = 0
        if conflict_rows and on_conflict == "overwrite":
            sets = ", ".join(f"{c} = s.{c}" for c in VALUE_COLUMNS)
            cur = conn.execute(
                f"""UPDATE candles c SET {sets} FROM {_STAGING} s
                WHERE c.symbol = %s AND c.timeframe = %s AND c.ts = s.ts
                  AND ({incoming}) IS DISTINCT FROM ({stored})""",
                series,
            )
            overwritten = cur.rowcount
            conflict_rows = []
        return WriteResult(
            inserted=inserted,
            unchanged=matched - len(conflict_rows) - overwritten,
            overwritten=overwritten,
            conflicts=_conflict_frame(conflict_rows),
        )

    def _add_to_series(
        self,
        conn: psycopg.Connection[Any],
        symbol: str,
        tf: Timeframe,
        inserted: int,
        first_ts: int,
        last_ts: int,
        synthetic: bool,
    ) -> None:
        if inserted:
            conn.execute(
                """INSERT INTO series VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (symbol, timeframe) DO UPDATE SET
                   synthetic = series.synthetic OR excluded.synthetic, count = series.count + excluded.count,
                   first_ts = least(series.first_ts, excluded.first_ts),
                   last_ts = greatest(series.last_ts, excluded.last_ts)""",
                [symbol, tf.value, synthetic, inserted, first_ts, last_ts],
            )
        elif synthetic:
            conn.execute("UPDATE series SET synthetic = true WHERE symbol = %s AND timeframe = %s", [symbol, tf.value])

    def read_candles(
        self,
        symbol: str,
        timeframe: Timeframe,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        *,
        include_partial: bool = False,
    ) -> pd.DataFrame:
        symbol, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
        if limit is not None and limit <= 0:
            return empty_candles()
        start, end = (None if start is None else int(start)), (None if end is None else int(end))
        lo = MIN_TS if start is None else start
        hi = MAX_TS if end is None else end
        limit_sql = "" if limit is None else f" LIMIT {int(limit)}"
        with self._errors() as conn:
            stored = self._stored(conn, symbol)
            if tf in stored:
                return self._copy_out(
                    conn,
                    "SELECT ts, open, high, low, close, volume FROM candles "
                    f"WHERE symbol = %s AND timeframe = %s AND ts >= %s AND ts < %s ORDER BY ts{limit_sql}",
                    [symbol, tf.value, lo, hi],
                )
            source = source_timeframe(tf, stored)
            if source is None:
                raise series_not_found(symbol, tf, stored)
            plan = plan_resample(source, tf, start, end, stored[source][2], include_partial=include_partial)
            return self._copy_out(
                conn,
                f"""SELECT bucket AS ts, (array_agg(open ORDER BY ts))[1] AS open, max(high) AS high,
                       min(low) AS low, (array_agg(close ORDER BY ts DESC))[1] AS close, sum(volume) AS volume
                FROM (SELECT {plan.bucket_sql("postgres")} AS bucket, ts, open, high, low, close, volume FROM candles
                      WHERE symbol = %s AND timeframe = %s AND ts >= %s AND ts < %s) src
                GROUP BY bucket HAVING bucket >= %s AND bucket < %s ORDER BY bucket{limit_sql}""",
                [symbol, source.value, plan.src_start, plan.src_end, lo, hi],
            )

    def latest(self, symbol: str, timeframe: Timeframe, n: int) -> pd.DataFrame:
        symbol, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
        if n <= 0:
            return empty_candles()
        key = (symbol, tf.value)
        if self._cache is not None:
            hit = self._cache.get(key, n)
            if hit is not None:
                return hit
        want = n if self._cache is None else max(n, self._cache.capacity)
        generation = self._cache.generation() if self._cache is not None else 0
        tail = self.latest_uncached(symbol, tf, want)
        if self._cache is not None:
            self._cache.store(key, tail, generation)
        return tail.iloc[-n:].reset_index(drop=True)

    def latest_uncached(self, symbol: str, timeframe: Timeframe, n: int) -> pd.DataFrame:
        """``latest`` straight from the database (an index scan backwards), bypassing any tail cache."""
        symbol, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
        with self._errors() as conn:
            tail = self._copy_out(
                conn,
                "SELECT * FROM (SELECT ts, open, high, low, close, volume FROM candles "
                f"WHERE symbol = %s AND timeframe = %s ORDER BY ts DESC LIMIT {int(n)}) t ORDER BY ts",
                [symbol, tf.value],
            )
            if tail.empty and tf not in self._stored(conn, symbol):
                raise series_not_found(symbol, tf, ())
        return tail

    def list_series(self) -> list[SeriesInfo]:
        with self._errors() as conn:
            rows = conn.execute("SELECT symbol, timeframe, count, first_ts, last_ts, synthetic FROM series").fetchall()
        infos = [SeriesInfo(s, Timeframe(tf), int(n), int(a), int(b), bool(syn)) for s, tf, n, a, b, syn in rows]
        return sorted(infos, key=lambda i: (i.symbol, i.timeframe.ms))

    def series_info(self, symbol: str, timeframe: Timeframe) -> SeriesInfo | None:
        symbol, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
        with self._errors() as conn:
            row = conn.execute(
                "SELECT count, first_ts, last_ts, synthetic FROM series WHERE symbol = %s AND timeframe = %s",
                [symbol, tf.value],
            ).fetchone()
        if row is None:
            return None
        n, first, last, syn = row
        return SeriesInfo(symbol, tf, int(n), int(first), int(last), bool(syn))

    def delete_range(self, symbol: str, timeframe: Timeframe, start: int | None = None, end: int | None = None) -> int:
        symbol, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
        lo = MIN_TS if start is None else int(start)
        hi = MAX_TS if end is None else int(end)
        series = [symbol, tf.value]
        with self._errors() as conn:
            try:
                with conn.transaction():
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || %s || ':' || %s, 0))",
                        series,
                    )
                    deleted = conn.execute(
                        "DELETE FROM candles WHERE symbol = %s AND timeframe = %s AND ts >= %s AND ts < %s",
                        [*series, lo, hi],
                    ).rowcount
                    if deleted:
                        row = conn.execute(
                            "SELECT count(*), min(ts), max(ts) FROM candles WHERE symbol = %s AND timeframe = %s",
                            series,
                        ).fetchone()
                        if row is None or not row[0]:
                            conn.execute("DELETE FROM series WHERE symbol = %s AND timeframe = %s", series)
                        else:
                            conn.execute(
                                "UPDATE series SET count = %s, first_ts = %s, last_ts = %s "
                                "WHERE symbol = %s AND timeframe = %s",
                                [int(row[0]), int(row[1]), int(row[2]), *series],
                            )
            finally:
                if self._cache is not None:
                    self._cache.invalidate((symbol, tf.value))
        return int(deleted)

    # ------------------------------------------------------------------ events

    def last_seq(self) -> int:
        with self._errors() as conn:
            row = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        return int(row[0]) if row else 0

    def append_events(self, events: Iterable[Message]) -> list[int]:
        messages = list(events)
        if not messages:
            return []
        with self._errors() as conn, conn.transaction():
            first = self._lock_events(conn) + 1
            seqs = list(range(first, first + len(messages)))
            self._insert_events(conn, seqs, messages)
        return seqs

    def import_events(self, events: Sequence[StoredEvent]) -> int:
        if not events:
            return 0
        seqs = [e.seq for e in events]
        if any(b <= a for a, b in itertools.pairwise(seqs)):
            raise StoreError("imported events must have strictly increasing sequence numbers", where=self._where)
        with self._errors() as conn, conn.transaction():
            last = self._lock_events(conn)
            if seqs[0] <= last:
                raise StoreError(
                    f"cannot import event seq {seqs[0]}: the log already reaches seq {last}",
                    where=self._where,
                    hint="import into an empty log, or only the events after its last seq",
                )
            self._insert_events(conn, seqs, [e.message for e in events])
        return len(seqs)

    def _lock_events(self, conn: psycopg.Connection[Any]) -> int:
        """Take the appenders' lock (held until commit, readers not blocked); return the last seq."""
        conn.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        row = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        return int(row[0]) if row else 0

    def _insert_events(self, conn: psycopg.Connection[Any], seqs: list[int], messages: list[Message]) -> None:
        columns = "seq, event_id, type, ts_event, ts_init, correlation_id, causation_id, payload"
        with conn.cursor() as cur, cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
            for seq, m in zip(seqs, messages, strict=True):
                copy.write_row(
                    (seq, m.event_id, m.type_name, m.ts_event, m.ts_init, m.correlation_id, m.causation_id, to_json(m))
                )

    def read_events(
        self,
        from_seq: int | None = None,
        to_seq: int | None = None,
        *,
        start: int | None = None,
        end: int | None = None,
        types: Sequence[str] | None = None,
        correlation_id: str | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        where, params = event_filters(from_seq, to_seq, start, end, types, correlation_id, placeholder="%s")
        sql = f"SELECT seq, payload FROM events {where} ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {max(int(limit), 0)}"
        with self._errors() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [StoredEvent(seq=int(seq), message=from_json(payload)) for seq, payload in rows]

    def nth_newest_seq(self, n: int) -> int | None:
        with self._errors() as conn:
            row = conn.execute(
                "SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET %s", [max(int(n), 1) - 1]
            ).fetchone()
        return int(row[0]) if row else None

    def delete_events_through(self, seq: int, *, expected: int | None = None) -> int:
        with self._errors() as conn, conn.transaction():
            last = self._lock_events(conn)  # appenders wait; readers see the log before or after, never half
            row = conn.execute("SELECT count(*) FROM events WHERE seq <= %s", [int(seq)]).fetchone()
            deleting = int(row[0]) if row else 0
            check_event_delete(int(seq), last, deleting, expected, self._where)
            if deleting:
                conn.execute("DELETE FROM events WHERE seq <= %s", [int(seq)])
        return deleting

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


def _conflict_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    columns = [*CANDLE_COLUMNS, *STORED_COLUMNS]
    data = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    return pd.DataFrame(
        {c: np.asarray(v, dtype=np.int64 if c == "ts" else np.float64) for c, v in zip(columns, data, strict=True)}
    )


__all__ = ["PostgresStore", "decode_copy_binary", "encode_copy_binary"]
