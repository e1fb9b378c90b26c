"""The embedded default store: one DuckDB file holding candles, series metadata and the event log.

URLs: ``duckdb:///relative/file.duckdb`` (relative to the working directory), ``duckdb:////absolute/file.duckdb``,
``duckdb:///:memory:``. Opening with ``create=False`` (what reading commands do) refuses a file that does not exist
and creates nothing; otherwise a missing file (and its folders) is created and ``created`` tells so.

Design choices (measured on the 2-core development machine with 5 M one-minute candles):

- ``candles`` has **no PRIMARY KEY**. An ART index on ``(symbol, timeframe, ts)`` cuts bulk ingest from
  ~4.5 M to ~1 M rows/s and nearly triples the file size. Uniqueness is enforced by the write path instead
  (every write of a series runs under this store's lock and checks overlaps before inserting), and range
  reads rely on DuckDB's zone maps (per row-group min/max of ``ts``), which stay tight because candles of a
  series arrive in time order.
- Writes are set-based: the incoming frame is registered as an Arrow table and inserted with one
  ``INSERT … SELECT``. A frame lying entirely after the stored last candle of the series (the common case:
  history loads in order, live candles), or entirely before its first (a backfill), skips the overlap
  check altogether; otherwise one join against the stored rows in the frame's ``ts`` range classifies
  every incoming candle as new, unchanged or conflicting.
- ``series`` keeps count, first/last ``ts`` and the synthetic flag of every series, maintained by each write
  and delete, so listing series and planning reads never scan candles.
- **Short-lived connections, so many processes share one file.** DuckDB lets one process open a file
  read-write, or many read-only, never both. No store object keeps the file open while idle: each operation
  (or a batch in ``connection()``) opens it, read-only for reads and read-write for writes, and closes it;
  ``serve``, ``run``, ``ingest`` and every reading command then take turns on the file (an open costs
  ~5-10 ms). An open that meets the lock of another process retries with backoff for up to
  ``lock_timeout`` seconds (``SMARTMARKET_STORE_LOCK_TIMEOUT``, default 30), says so in one stderr line when
  the wait lasts, and fails with one ``StoreError`` line when the time runs out. A write ends with a
  ``CHECKPOINT`` (what closing would do anyway), so the next process opens a file with no WAL to replay.
- ``latest`` is served from a ``TailCache`` shared by every store object opened on the same file in this
  process. Another process may write between two calls, so the tails are tagged with the file's state
  (``FileWatch``: its header blocks, where DuckDB writes a new header at every checkpoint, plus size and
  modification time of the file and its WAL): any difference drops them. A look costs two ``stat``s and a
  12 KiB ``pread`` through a descriptor kept open (closing one would drop this process's lock on the file).
- Calls are serialised by a lock shared per database file in this process; a thread nesting operations
  inside ``connection()`` reuses the open connection.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from smartmarket.core.config import store_lock_timeout
from smartmarket.core.errors import ConfigError, NotFoundError, SmartMarketError, StoreError
from smartmarket.core.events import Message, from_json, to_json
from smartmarket.core.frame import CANDLE_COLUMNS, empty_candles
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.store.base import OnConflict, SeriesInfo, Store, StoredEvent, WriteResult
from smartmarket.store.cache import DEFAULT_CAPACITY, TailCache
from smartmarket.store.common import (
    STORED_COLUMNS,
    VALUE_COLUMNS,
    check_event_delete,
    event_filters,
    prepare_candles,
)
from smartmarket.store.resample import MAX_TS, MIN_TS, plan_resample, series_not_found, source_timeframe

_INCOMING = "_sm_incoming"  # name under which a frame being written is registered with DuckDB
_EVENTS_IN = "_sm_events_in"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS candles (
    symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, ts BIGINT NOT NULL,
    open DOUBLE NOT NULL, high DOUBLE NOT NULL, low DOUBLE NOT NULL, close DOUBLE NOT NULL, volume DOUBLE NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, synthetic BOOLEAN NOT NULL,
    count BIGINT NOT NULL, first_ts BIGINT NOT NULL, last_ts BIGINT NOT NULL,
    PRIMARY KEY (symbol, timeframe)
);
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT PRIMARY KEY, event_id VARCHAR NOT NULL UNIQUE, type VARCHAR NOT NULL,
    ts_event BIGINT NOT NULL, ts_init BIGINT NOT NULL, correlation_id VARCHAR NOT NULL, causation_id VARCHAR,
    payload VARCHAR NOT NULL
);
CREATE INDEX IF NOT EXISTS events_correlation ON events (correlation_id);
"""

_EVENT_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("ts_event", pa.int64()),
        ("ts_init", pa.int64()),
        ("correlation_id", pa.string()),
        ("causation_id", pa.string()),
        ("payload", pa.string()),
    ]
)


def database_path(url: str) -> str:
    """The file (or ``:memory:``) named by a ``duckdb:///…`` URL (SQLAlchemy style: 4 slashes = absolute)."""
    prefix = "duckdb:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(
            f"invalid DuckDB URL {url!r}",
            hint="use duckdb:///relative.duckdb, duckdb:////abs/path or duckdb:///:memory:",
        )
    return url[len(prefix) :].split("?", 1)[0]


def missing_store_error(url: str) -> NotFoundError:
    """The one-line error for a DuckDB store that does not exist (nothing is created)."""
    path = Path(database_path(url))
    shown = path.resolve()
    relative = "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
    return NotFoundError(
        f"no DuckDB store at {shown}{relative}",
        where=url,
        hint="check the path: duckdb:///name.duckdb is relative to the working directory, duckdb:////abs/name.duckdb "
        "is absolute; commands that write (ingest, generate, run, serve, migrate --to, restore) create a store",
    )


@dataclass
class _Held:
    """The connection a thread of this process holds open on a file (see ``DuckDBStore.connection``)."""

    con: duckdb.DuckDBPyConnection
    write: bool


@dataclass
class _SharedState:
    """What every store object on one database file in this process shares."""

    cache: TailCache
    watch: FileWatch | None = None  # None in memory
    lock: threading.RLock = field(default_factory=threading.RLock)
    held: _Held | None = None


_SHARED: weakref.WeakValueDictionary[str, _SharedState] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def _shared_state(path: str, capacity: int) -> _SharedState:
    if path == ":memory:":  # every in-memory connection is its own database
        return _SharedState(cache=TailCache(capacity))
    key = str(Path(path).resolve())
    with _SHARED_LOCK:
        state = _SHARED.get(key)
        if state is None:
            watch = FileWatch(key)
            state = _SharedState(cache=TailCache(capacity), watch=watch)
            # The last store object on the file is gone, so no connection is open: closing the descriptor is safe.
            weakref.finalize(state, watch.close)
            _SHARED[key] = state
        return state


ANNOUNCE_AFTER_S = 0.5
"""A wait for another process's lock shorter than this is normal turn-taking and is not announced."""
_ANNOUNCE_EVERY_S = 10.0  # at most one "waiting" line per process in this many seconds (serve answers many calls)
_last_announced = [-_ANNOUNCE_EVERY_S]


def _lock_holder(text: str) -> str | None:
    """The PID named by DuckDB's lock error, "" when it names none; None when ``text`` is not a lock error."""
    if "lock" not in text.lower():
        return None
    pid = re.search(r"PID (\d+)", text)
    return pid.group(1) if pid else ""


def _announce_wait(path: str, pid: str, timeout: float) -> None:
    now = time.monotonic()
    if now - _last_announced[0] < _ANNOUNCE_EVERY_S:
        return
    _last_announced[0] = now
    holder = f", PID {pid}" if pid else ""
    sys.stderr.write(
        f"waiting for the store (locked by another smartmarket process{holder}) … up to {timeout:g} s "
        f"(SMARTMARKET_STORE_LOCK_TIMEOUT): {path}\n"
    )
    sys.stderr.flush()


def _connect(path: str, *, read_only: bool = False, lock_timeout: float = 0.0) -> duckdb.DuckDBPyConnection:
    """Open ``path``; while another process holds a conflicting lock, retry with backoff up to ``lock_timeout`` s."""
    if path != ":memory:" and not read_only:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    started: float | None = None
    delay = 0.005
    announced = False
    while True:
        try:
            # DuckDB creates a missing file; callers decided before (``DuckDBStore(create=…)``) whether it may.
            return duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as exc:
            text = str(exc)
            pid = _lock_holder(text)
            if pid is None:
                raise StoreError(f"cannot open DuckDB file: {text}", where=path) from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open DuckDB file: {exc}", where=path) from None
        now = time.monotonic()
        started = now if started is None else started
        waited = now - started
        if waited >= lock_timeout:
            holder = f" (PID {pid})" if pid else ""
            raise StoreError(
                f"the DuckDB file is locked by another process{holder}, still after {waited:.1f} s",
                where=path,
                hint="let the other command finish or stop it, raise SMARTMARKET_STORE_LOCK_TIMEOUT (seconds), "
                "or use --store postgresql://… for heavy shared access",
            ) from None
        if not announced and waited >= ANNOUNCE_AFTER_S:
            _announce_wait(path, pid, lock_timeout)
            announced = True
        time.sleep(min(delay, max(lock_timeout - waited, 0.001)))
        delay = min(delay * 2, 0.1)


class FileWatch:
    """Reads the state of a DuckDB file: what changes whenever a committed write reaches it (its header blocks,
    as a checkpoint writes a new database header; its size, modification time and inode; its WAL's size and
    modification time). ``()`` while there is no file.

    The file is read through one descriptor kept open, never opened and closed per look: closing *any*
    descriptor of a file drops every POSIX lock this process holds on it, DuckDB's own lock included."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def state(self) -> tuple[object, ...]:
        try:
            st = os.stat(self.path)
            if self._fd is None or os.fstat(self._fd).st_ino != st.st_ino:
                old, self._fd = self._fd, os.open(self.path, os.O_RDONLY)
                if old is not None:
                    os.close(old)  # a file since replaced: closing it drops no lock on this one
            head = os.pread(self._fd, 3 * 4096, 0)
        except FileNotFoundError:
            return ()
        try:
            wal = os.stat(self.path + ".wal")
            wal_state: tuple[int, int] | None = (wal.st_size, wal.st_mtime_ns)
        except FileNotFoundError:
            wal_state = None
        return (head, st.st_size, st.st_mtime_ns, st.st_ino, wal_state)

    def close(self) -> None:
        """Only once no connection of this process is open on the file (see the class docstring)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _one_row(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """The first row, consuming the whole result (DuckDB refuses other work while a result is unfinished)."""
    rows = result.fetchall()
    return rows[0] if rows else None


def _conflict_frame(df: pd.DataFrame | None = None) -> pd.DataFrame:
    columns = [*CANDLE_COLUMNS, *STORED_COLUMNS]
    if df is None or df.empty:
        return pd.DataFrame({c: pd.Series(dtype=np.int64 if c == "ts" else np.float64) for c in columns})
    return df[columns].reset_index(drop=True)


class DuckDBStore(Store):
    """Candles and events in one DuckDB file (or in memory), opened per operation (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        cache_capacity: int = DEFAULT_CAPACITY,
        create: bool = True,
        lock_timeout: float | None = None,
    ) -> None:
        self.url = url
        self.path = database_path(url)
        self.lock_timeout = store_lock_timeout() if lock_timeout is None else float(lock_timeout)
        """Seconds an open waits for another process's lock on the file before failing."""
        exists = self.path == ":memory:" or Path(self.path).exists()
        if not exists and not create:
            raise missing_store_error(url)
        self.created = not exists
        """True when this object created the database file (it did not exist)."""
        self._closed = False
        self._shared = _shared_state(self.path, cache_capacity)
        self._cache = self._shared.cache
        # An in-memory database lives as long as its one connection; a file is opened per operation.
        self._memory = _connect(self.path) if self.path == ":memory:" else None
        if create:
            with self._errors(), self.connection(write=True) as con:
                con.execute(_SCHEMA)

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def connection(self, *, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one operation or a batch of them, holding this process's lock on the file.

        The file is opened read-only (``write=False``: other processes may read meanwhile) or read-write (no
        other process may open it), and closed on exit, after a ``CHECKPOINT`` when writable. Store methods
        called inside by the same thread reuse it; a write inside a read-only batch is refused."""
        if self._closed:
            raise StoreError("the store is closed", where=self.path)
        shared = self._shared
        with shared.lock:
            if self._memory is not None:
                yield self._memory
                return
            held = shared.held
            if held is not None:
                if write and not held.write:
                    raise StoreError("a write inside a read-only store batch", where=self.path,
                                     hint="open the batch with connection(write=True)")  # fmt: skip
                yield held.con
                return
            con = _connect(self.path, read_only=not write, lock_timeout=self.lock_timeout)
            shared.held = _Held(con, write)
            try:
                self._cache.sync(self._state())  # another process may have written since we last looked
                yield con
                if write:
                    con.execute("CHECKPOINT")  # what closing would do; then the file's state is final
                    self._cache.adopt(self._state())  # our own writes: the cache followed them
            finally:
                shared.held = None
                con.close()

    def _state(self) -> tuple[object, ...]:
        watch = self._shared.watch
        return () if watch is None else watch.state()

    def batch(self, *, write: bool = False) -> AbstractContextManager[object]:
        return self.connection(write=write)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Run under the shared lock; turn DuckDB errors into one-line ``StoreError``s."""
        with self._shared.lock:
            try:
                yield
            except SmartMarketError:
                raise
            except duckdb.Error as exc:
                raise StoreError(f"DuckDB: {exc}", where=self.path) from None

    @contextmanager
    def _transaction(self, con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
        con.begin()
        try:
            yield con
        except BaseException:
            con.rollback()
            raise
        try:
            con.commit()  # constraint violations (a duplicate event id) surface here, at commit
        except BaseException:
            con.rollback()  # otherwise the connection stays in an aborted transaction
            raise

    def _query_frame(
        self, con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object], *, ensure_sorted: bool = False
    ) -> pd.DataFrame:
        """Run a query returning candle columns. ``ensure_sorted`` sorts by ``ts`` in numpy when needed, so
        a full read can skip SQL ``ORDER BY`` (rows come back in insertion order, normally already sorted)."""
        arrays = con.sql(sql, params=list(params)).fetchnumpy()
        if len(arrays["ts"]) == 0:
            return empty_candles()
        cols = {c: np.asarray(arrays[c], dtype=np.int64 if c == "ts" else np.float64) for c in CANDLE_COLUMNS}
        ts = cols["ts"]
        if ensure_sorted and len(ts) > 1 and not bool(np.all(ts[1:] > ts[:-1])):
            order = np.argsort(ts, kind="stable")
            cols = {c: v[order] for c, v in cols.items()}
        return pd.DataFrame(cols)

    def _stored(self, con: duckdb.DuckDBPyConnection, symbol: str) -> dict[Timeframe, tuple[int, int, int]]:
        """Stored timeframes of ``symbol`` → (count, first_ts, last_ts)."""
        rows = con.execute(
            "SELECT timeframe, count, first_ts, last_ts FROM series WHERE symbol = ?", [symbol]
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
            return WriteResult(inserted=0, unchanged=0, conflicts=_conflict_frame())
        key = (symbol, tf.value)
        with self._errors(), self.connection(write=True) as con:
            info = self._stored(con, symbol).get(tf)
            con.register(_INCOMING, pa.table(cols))
            try:
                with self._transaction(con):
                    if info is None or int(ts[0]) > info[2] or int(ts[-1]) < info[1]:  # no overlap possible
                        result = self._insert_all(con, symbol, tf, cols, synthetic)
                    else:
                        result = self._merge(con, symbol, tf, cols, info[2], on_conflict, synthetic)
            except BaseException:
                self._cache.invalidate(key)
                raise
            finally:
                con.unregister(_INCOMING)
            previous_last = info[2] if info is not None else None
            self._cache.after_write(key, cols, previous_last, result.inserted, result.overwritten)
        return result

    def _insert_all(
        self, con: duckdb.DuckDBPyConnection, symbol: str, tf: Timeframe, cols: dict[str, np.ndarray], synthetic: bool
    ) -> WriteResult:
        """Fast path: no incoming candle can exist yet (all after the stored last one, or all before the first)."""
        con.execute(
            f"INSERT INTO candles SELECT ?, ?, ts, open, high, low, close, volume FROM {_INCOMING}",
            [symbol, tf.value],
        )
        ts = cols["ts"]
        self._add_to_series(con, symbol, tf, len(ts), int(ts[0]), int(ts[-1]), synthetic)
        return WriteResult(inserted=len(ts), unchanged=0, conflicts=_conflict_frame())

    def _merge(
        self,
        con: duckdb.DuckDBPyConnection,
        symbol: str,
        tf: Timeframe,
        cols: dict[str, np.ndarray],
        last_ts: int,
        on_conflict: OnConflict,
        synthetic: bool,
    ) -> WriteResult:
        """Overlap path: classify each incoming candle (0 new, 1 unchanged, 2 conflict) in one join."""
        ts = cols["ts"]
        same = " AND ".join(f"i.{c} IS NOT DISTINCT FROM c.{c}" for c in VALUE_COLUMNS)
        stored = ", ".join(f"c.{c} AS stored_{c}" for c in VALUE_COLUMNS)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _sm_write_plan AS
            SELECT i.*, {stored},
                   CASE WHEN c.ts IS NULL THEN 0 WHEN {same} THEN 1 ELSE 2 END AS status
            FROM {_INCOMING} i LEFT JOIN (
                SELECT ts, open, high, low, close, volume FROM candles
                WHERE symbol = ? AND timeframe = ? AND ts BETWEEN ? AND ?
            ) c ON i.ts = c.ts""",
            [symbol, tf.value, int(ts[0]), int(ts[-1])],
        )
        try:
            counts = {
                int(status): (int(n), int(lo), int(hi))
                for status, n, lo, hi in con.execute(
                    "SELECT status, count(*), min(ts), max(ts) FROM _sm_write_plan GROUP BY status"
                ).fetchall()
            }
            inserted, first_new, last_new = counts.get(0, (0, 0, 0))
            unchanged = counts.get(1, (0, 0, 0))[0]
            n_conflicts = counts.get(2, (0, 0, 0))[0]
            if inserted:
                con.execute(
                    "INSERT INTO candles SELECT ?, ?, ts, open, high, low, close, volume "
                    "FROM _sm_write_plan WHERE status = 0 ORDER BY ts",
                    [symbol, tf.value],
                )
            self._add_to_series(con, symbol, tf, inserted, first_new, last_new, synthetic)
            conflicts = _conflict_frame()
            overwritten = 0
            if n_conflicts and on_conflict == "overwrite":
                sets = ", ".join(f"{c} = p.{c}" for c in VALUE_COLUMNS)
                con.execute(
                    f"""UPDATE candles SET {sets} FROM _sm_write_plan p
                    WHERE p.status = 2 AND candles.symbol = ? AND candles.timeframe = ? AND candles.ts = p.ts""",
                    [symbol, tf.value],
                )
                overwritten = n_conflicts
            elif n_conflicts:
                conflicts = _conflict_frame(
                    con.execute("SELECT * FROM _sm_write_plan WHERE status = 2 ORDER BY ts").df()
                )
        finally:
            con.execute("DROP TABLE IF EXISTS _sm_write_plan")
        return WriteResult(inserted=inserted, unchanged=unchanged, overwritten=overwritten, conflicts=conflicts)

    def _add_to_series(
        self,
        con: duckdb.DuckDBPyConnection,
        symbol: str,
        tf: Timeframe,
        inserted: int,
        first_ts: int,
        last_ts: int,
        synthetic: bool,
    ) -> None:
        if inserted:
            con.execute(
                """INSERT INTO series VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (symbol, timeframe) DO UPDATE SET
                   synthetic = series.synthetic OR excluded.synthetic, count = series.count + excluded.count,
                   first_ts = least(series.first_ts, excluded.first_ts),
                   last_ts = greatest(series.last_ts, excluded.last_ts)""",
                [symbol, tf.value, synthetic, inserted, first_ts, last_ts],
            )
        elif synthetic:
            con.execute("UPDATE series SET synthetic = true WHERE symbol = ? AND timeframe = ?", [symbol, tf.value])

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
        with self._errors(), self.connection() as con:
            stored = self._stored(con, symbol)
            if tf in stored:
                order = "" if limit is None else f" ORDER BY ts{limit_sql}"
                return self._query_frame(
                    con,
                    "SELECT ts, open, high, low, close, volume FROM candles "
                    f"WHERE symbol = ? AND timeframe = ? AND ts >= ? AND ts < ?{order}",
                    [symbol, tf.value, lo, hi],
                    ensure_sorted=limit is None,
                )
            source = source_timeframe(tf, stored)
            if source is None:
                raise series_not_found(symbol, tf, stored)
            plan = plan_resample(source, tf, start, end, stored[source][2], include_partial=include_partial)
            return self._query_frame(
                con,
                f"""SELECT bucket AS ts, arg_min(open, ts) AS open, max(high) AS high, min(low) AS low,
                       arg_max(close, ts) AS close, sum(volume) AS volume
                FROM (SELECT {plan.bucket_sql("duckdb")} AS bucket, ts, open, high, low, close, volume FROM candles
                      WHERE symbol = ? AND timeframe = ? AND ts >= ? AND ts < ?)
                GROUP BY bucket HAVING bucket >= ? AND bucket < ? ORDER BY bucket{limit_sql}""",
                [symbol, source.value, plan.src_start, plan.src_end, lo, hi],
            )

    def latest(self, symbol: str, timeframe: Timeframe, n: int) -> pd.DataFrame:
        symbol, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
        if n <= 0:
            return empty_candles()
        key = (symbol, tf.value)
        with self._shared.lock:
            if self._shared.watch is not None:
                self._cache.sync(self._state())  # another process may have written since
            hit = self._cache.get(key, n)
        if hit is not None:
            return hit
        with self._errors(), self.connection() as con:
            generation = self._cache.generation()
            stored = self._stored(con, symbol)
            if tf not in stored:
                raise series_not_found(symbol, tf, ())
            count, _, last_ts = stored[tf]
            want = max(n, self._cache.capacity)
            tail = self._read_tail(con, symbol, tf, want, last_ts, count)
            self._cache.store(key, tail, generation)
        return tail.iloc[-n:].reset_index(drop=True)

    def latest_uncached(self, symbol: str, timeframe: Timeframe, n: int) -> pd.DataFrame:
        """``latest`` straight from the database, bypassing the tail cache (for benchmarks and checks)."""
        symbol, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
        with self._errors(), self.connection() as con:
            stored = self._stored(con, symbol)
            if tf not in stored:
                raise series_not_found(symbol, tf, ())
            count, _, last_ts = stored[tf]
            return self._read_tail(con, symbol, tf, n, last_ts, count)

    def _read_tail(
        self, con: duckdb.DuckDBPyConnection, symbol: str, tf: Timeframe, want: int, last_ts: int, count: int
    ) -> pd.DataFrame:
        """The last ``want`` candles, ascending. A lower ``ts`` bound (right when there are no gaps) lets zone
        maps skip old row groups; with gaps it may return too few rows, and the query is redone unbounded."""
        sql = (
            "SELECT ts, open, high, low, close, volume FROM candles WHERE symbol = ? AND timeframe = ? "
            f"AND ts >= ? ORDER BY ts DESC LIMIT {int(want)}"
        )
        frame = self._query_frame(con, sql, [symbol, tf.value, last_ts - (want - 1) * tf.ms])
        if len(frame) < min(want, count):
            frame = self._query_frame(con, sql, [symbol, tf.value, MIN_TS])
        return frame.iloc[::-1].reset_index(drop=True)

    def list_series(self) -> list[SeriesInfo]:
        with self._errors(), self.connection() as con:
            rows = con.execute("SELECT symbol, timeframe, count, first_ts, last_ts, synthetic FROM series").fetchall()
        infos = [
            SeriesInfo(
                symbol=s, timeframe=Timeframe(tf), count=int(n), first_ts=int(a), last_ts=int(b), synthetic=bool(syn)
            )
            for s, tf, n, a, b, syn in rows
        ]
        return sorted(infos, key=lambda i: (i.symbol, i.timeframe.ms))

    def series_info(self, symbol: str, timeframe: Timeframe) -> SeriesInfo | None:
        symbol, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
        with self._errors(), self.connection() as con:
            row = _one_row(
                con.execute(
                    "SELECT count, first_ts, last_ts, synthetic FROM series WHERE symbol = ? AND timeframe = ?",
                    [symbol, tf.value],
                )
            )
        if row is None:
            return None
        n, first, last, syn = row
        return SeriesInfo(symbol, tf, int(n), int(first), int(last), bool(syn))

    def delete_range(self, symbol: str, timeframe: Timeframe, start: int | None = None, end: int | None = None) -> int:
        symbol, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
        lo = MIN_TS if start is None else int(start)
        hi = MAX_TS if end is None else int(end)
        with self._errors(), self.connection(write=True) as con:
            try:
                with self._transaction(con):
                    deleted_row = _one_row(
                        con.execute(
                            "DELETE FROM candles WHERE symbol = ? AND timeframe = ? AND ts >= ? AND ts < ?",
                            [symbol, tf.value, lo, hi],
                        )
                    )
                    deleted = int(deleted_row[0]) if deleted_row else 0
                    if deleted:
                        self._refresh_series(con, symbol, tf)
            finally:
                self._cache.invalidate((symbol, tf.value))
        return deleted

    def _refresh_series(self, con: duckdb.DuckDBPyConnection, symbol: str, tf: Timeframe) -> None:
        """Recount a series after a delete; a series left with no candle disappears."""
        row = _one_row(
            con.execute(
                "SELECT count(*), min(ts), max(ts) FROM candles WHERE symbol = ? AND timeframe = ?",
                [symbol, tf.value],
            )
        )
        n, first, last = row if row else (0, None, None)
        if not n:
            con.execute("DELETE FROM series WHERE symbol = ? AND timeframe = ?", [symbol, tf.value])
        else:
            con.execute(
                "UPDATE series SET count = ?, first_ts = ?, last_ts = ? WHERE symbol = ? AND timeframe = ?",
                [int(n), int(first), int(last), symbol, tf.value],
            )

    # ------------------------------------------------------------------ events

    def last_seq(self) -> int:
        with self._errors(), self.connection() as con:
            row = _one_row(con.execute("SELECT coalesce(max(seq), 0) FROM events"))
        return int(row[0]) if row else 0

    def append_events(self, events: Iterable[Message]) -> list[int]:
        messages = list(events)
        if not messages:
            return []
        with self._errors(), self.connection(write=True) as con, self._transaction(con):
            row = _one_row(con.execute("SELECT coalesce(max(seq), 0) FROM events"))
            first = (int(row[0]) if row else 0) + 1
            seqs = list(range(first, first + len(messages)))
            self._insert_events(con, seqs, messages)
        return seqs

    def import_events(self, events: Sequence[StoredEvent]) -> int:
        if not events:
            return 0
        seqs = [e.seq for e in events]
        if any(b <= a for a, b in itertools.pairwise(seqs)):
            raise StoreError("imported events must have strictly increasing sequence numbers", where=self.path)
        with self._errors(), self.connection(write=True) as con, self._transaction(con):
            row = _one_row(con.execute("SELECT coalesce(max(seq), 0) FROM events"))
            last = int(row[0]) if row else 0
            if seqs[0] <= last:
                raise StoreError(
                    f"cannot import event seq {seqs[0]}: the log already reaches seq {last}",
                    where=self.path,
                    hint="import into an empty log, or only the events after its last seq",
                )
            self._insert_events(con, seqs, [e.message for e in events])
        return len(seqs)

    def _insert_events(self, con: duckdb.DuckDBPyConnection, seqs: list[int], messages: list[Message]) -> None:
        table = pa.Table.from_pydict(
            {
                "seq": seqs,
                "event_id": [m.event_id for m in messages],
                "type": [m.type_name for m in messages],
                "ts_event": [m.ts_event for m in messages],
                "ts_init": [m.ts_init for m in messages],
                "correlation_id": [m.correlation_id for m in messages],
                "causation_id": [m.causation_id for m in messages],
                "payload": [to_json(m) for m in messages],
            },
            schema=_EVENT_SCHEMA,
        )
        con.register(_EVENTS_IN, table)
        try:
            con.execute(f"INSERT INTO events SELECT * FROM {_EVENTS_IN} ORDER BY seq")
        finally:
            con.unregister(_EVENTS_IN)

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
        where, params = event_filters(from_seq, to_seq, start, end, types, correlation_id, placeholder="?")
        sql = f"SELECT seq, payload FROM events {where} ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {max(int(limit), 0)}"
        with self._errors(), self.connection() as con:
            rows = con.execute(sql, params).fetchall()
        return [StoredEvent(seq=int(seq), message=from_json(payload)) for seq, payload in rows]

    def nth_newest_seq(self, n: int) -> int | None:
        with self._errors(), self.connection() as con:
            row = _one_row(
                con.execute("SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?", [max(int(n), 1) - 1])
            )
        return int(row[0]) if row else None

    def delete_events_through(self, seq: int, *, expected: int | None = None) -> int:
        with self._errors(), self.connection(write=True) as con, self._transaction(con):
            row = _one_row(
                con.execute("SELECT coalesce(max(seq), 0), count(*) FILTER (WHERE seq <= ?) FROM events", [int(seq)])
            )
            last, deleting = (int(row[0]), int(row[1])) if row else (0, 0)
            check_event_delete(int(seq), last, deleting, expected, self.path)
            if deleting:
                con.execute("DELETE FROM events WHERE seq <= ?", [int(seq)])
        return deleting

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Nothing stays open between operations; an in-memory database is dropped with its connection."""
        with self._shared.lock:
            self._closed = True
            if self._memory is not None:
                self._memory.close()
                self._memory = None


__all__ = ["ANNOUNCE_AFTER_S", "DuckDBStore", "FileWatch", "database_path", "missing_store_error"]
