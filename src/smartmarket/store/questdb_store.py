"""QuestDB adapter: writes over ILP/HTTP with the official ``questdb`` client, reads over the PostgreSQL wire.

URL: ``questdb://[user:password@]host[:http_port][?option=value&…]``; the host port is QuestDB's HTTP port
(ILP ingestion, default 9000). Options:

- ``pg_port`` (8812), ``user`` (admin), ``password`` (quest), ``dbname`` (qdb): the PostgreSQL wire login;
- ``http_user``/``http_password`` or ``http_token``: ILP/HTTP authentication, only if the server wants it;
- ``protocol_version`` (1 or 2; default: negotiated with the server);
- ``table_prefix`` (empty): tables are ``<prefix>candles`` and ``<prefix>events``;
- ``connect_timeout`` (5 s) and ``wal_timeout`` (30 s, how long to wait for written rows to become visible).

Semantics and their limits (see ``docs/questdb.md``):

- Tables are WAL tables with ``DEDUP UPSERT KEYS``: the server silently keeps the last write of a key. To keep
  the port's "report conflicts" contract, ``write_candles`` first reads the stored rows of the incoming range
  and compares. A writer racing between that read and the write is not detected (last write wins).
- WAL writes become visible asynchronously; after each write the adapter waits until ``wal_tables()`` shows
  the table's writer caught up with the sequencer, so a read right after a write sees it.
- Event sequence numbers are assigned client-side as ``max(seq) + 1``: one writer at a time per event table.
- QuestDB has no ``DELETE``: ``delete_range`` rebuilds the affected day partitions (not atomic; run it with
  no concurrent writers).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

import numpy as np
import pandas as pd
import psycopg
from questdb import QuestDBError, QuestDBErrorCode, Sender, TimestampMicros, TimestampNanos

from smartmarket.core.errors import (
    ConfigError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    ValidationError,
)
from smartmarket.core.events import Message, from_json, to_json
from smartmarket.core.frame import CANDLE_COLUMNS, as_candle_frame, empty_candles
from smartmarket.core.redaction import redact_text
from smartmarket.core.types import DAY_MS, Timeframe, normalize_symbol
from smartmarket.store import questdb_sql as sql
from smartmarket.store.base import OnConflict, SeriesInfo, Store, StoredEvent, WriteResult

ILP_CHUNK_ROWS = 50_000
_OPTIONS = {
    "pg_port",
    "user",
    "password",
    "dbname",
    "http_user",
    "http_password",
    "http_token",
    "protocol_version",
    "table_prefix",
    "connect_timeout",
    "wal_timeout",
}
_UNREACHABLE_CODES = {"SocketError", "CouldNotResolveAddr", "ConnectTimeout", "ProtocolVersionError"}


# --------------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class QuestDBConfig:
    """Everything a ``questdb://`` URL says."""

    host: str = "localhost"
    http_port: int = 9000
    pg_port: int = 8812
    user: str = "admin"
    password: str = "quest"
    dbname: str = "qdb"
    http_user: str | None = None
    http_password: str | None = None
    http_token: str | None = None
    protocol_version: int | None = None
    table_prefix: str = ""
    connect_timeout: float = 5.0
    wal_timeout: float = 30.0

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values to mask in any driver message (the one redaction rule masks URLs and ``password=``)."""
        return tuple(v for v in (self.password, self.http_password, self.http_token) if v)

    @property
    def candles_table(self) -> str:
        return sql.table_name(f"{self.table_prefix}candles")

    @property
    def events_table(self) -> str:
        return sql.table_name(f"{self.table_prefix}events")


def _number(name: str, text: str, kind: type[int] | type[float]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"QuestDB URL option {name}={text!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"QuestDB URL option {name} must be positive, got {text!r}")
    return value


def parse_questdb_url(url: str) -> QuestDBConfig:
    """Read a ``questdb://host:9000?pg_port=8812&user=admin&password=quest`` URL (unknown options refused)."""
    parts = urlparse(url)
    if parts.scheme != "questdb":
        raise ConfigError(f"not a QuestDB URL: {url!r}", hint="use questdb://host:9000")
    try:
        http_port = parts.port or 9000
    except ValueError:
        raise ConfigError(f"bad port in QuestDB URL {url!r}") from None
    values: dict[str, Any] = {"host": parts.hostname or "localhost", "http_port": http_port}
    if parts.username:
        values["user"] = unquote(parts.username)
    if parts.password:
        values["password"] = unquote(parts.password)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _OPTIONS:
            raise ConfigError(f"unknown QuestDB URL option {key!r}", hint="known: " + ", ".join(sorted(_OPTIONS)))
        if key == "pg_port":
            values[key] = _number(key, value, int)
        elif key in ("connect_timeout", "wal_timeout"):
            values[key] = _number(key, value, float)
        elif key == "protocol_version":
            if value not in ("1", "2"):
                raise ConfigError(f"protocol_version must be 1 or 2, got {value!r}")
            values[key] = int(value)
        else:
            values[key] = value
    config = QuestDBConfig(**values)
    config.candles_table  # noqa: B018 - validates the prefix early
    return config


def _conf_value(text: str) -> str:
    return text.replace(";", ";;")


def ilp_conf(config: QuestDBConfig) -> str:
    """The ILP/HTTP configuration string for ``Sender.from_conf`` (auto-flush off: we flush explicitly)."""
    conf = f"http::addr={config.host}:{config.http_port};auto_flush=off;"
    if config.http_token:
        conf += f"token={_conf_value(config.http_token)};"
    elif config.http_user:
        conf += f"username={_conf_value(config.http_user)};password={_conf_value(config.http_password or '')};"
    if config.protocol_version is not None:
        conf += f"protocol_version={config.protocol_version};"
    return conf


def ilp_error(config: QuestDBConfig, exc: QuestDBError) -> StoreError | StoreUnavailableError:
    """Map a ``questdb`` client error: unreachable server → ``StoreUnavailableError``, anything else →
    ``StoreError``."""
    where = f"{config.host}:{config.http_port}"
    code = exc.code.name if isinstance(exc.code, QuestDBErrorCode) else str(exc.code)
    if code in _UNREACHABLE_CODES:
        return StoreUnavailableError(
            f"cannot reach QuestDB's HTTP (ILP) port ({_first_line(exc, config.secrets)})",
            where=where,
            hint=f"is QuestDB running at {where}?",
        )
    return StoreError(f"QuestDB refused the write: {_first_line(exc, config.secrets)}", where=where)


def open_ilp_sender(config: QuestDBConfig) -> Sender:
    """An established ILP/HTTP sender. Without a fixed ``protocol_version`` this asks the server's
    ``/settings``, so an unreachable server fails here."""
    try:
        sender = Sender.from_conf(ilp_conf(config))
        sender.establish()
    except QuestDBError as exc:
        raise ilp_error(config, exc) from None
    return sender


# --------------------------------------------------------------------------------------------- ILP rows


def add_candle_rows(
    buffer: Any, table: str, symbol: str, timeframe: Timeframe, frame: pd.DataFrame, *, synthetic: bool = False
) -> None:
    """Append one ILP line per candle to a ``questdb`` buffer: symbols ``symbol``/``timeframe``, DOUBLE
    fields, BOOLEAN ``synthetic``, designated timestamp ``ts`` (sent in nanoseconds)."""
    rows = pd.DataFrame(
        {
            "symbol": [symbol] * len(frame),
            "timeframe": [timeframe.value] * len(frame),
            **{c: frame[c].to_numpy(dtype=np.float64) for c in sql.CANDLE_VALUE_COLUMNS},
            "synthetic": np.full(len(frame), synthetic, dtype=bool),
            "ts": frame["ts"].to_numpy(dtype=np.int64).astype("datetime64[ms]").astype("datetime64[ns]"),
        }
    )
    buffer.dataframe(rows, table_name=table, symbols=["symbol", "timeframe"], at="ts")


def add_event_rows(buffer: Any, table: str, events: Iterable[StoredEvent]) -> None:
    """Append one ILP line per event: symbol ``type``; ``seq``, ids, ``ts_init`` and the JSON ``payload`` as
    fields; designated timestamp ``ts_event`` (ms → ns)."""
    for stored in events:
        msg = stored.message
        buffer.row(
            table,
            symbols={"type": msg.type_name},
            columns={
                "seq": int(stored.seq),
                "event_id": msg.event_id,
                "ts_init": TimestampMicros(msg.ts_init * 1000),
                "correlation_id": msg.correlation_id,
                "causation_id": msg.causation_id,
                "payload": to_json(msg),
            },
            at=TimestampNanos(msg.ts_event * 1_000_000),
        )


# --------------------------------------------------------------------------------------------- frames


def rows_to_candles(rows: Sequence[tuple[Any, ...]]) -> pd.DataFrame:
    """``(ts_us, open, high, low, close, volume)`` rows → the canonical candle frame (ts in epoch ms)."""
    if not rows:
        return empty_candles()
    raw = pd.DataFrame.from_records(list(rows), columns=list(CANDLE_COLUMNS))
    raw["ts"] = raw["ts"].to_numpy(dtype=np.int64) // 1000
    return as_candle_frame(raw)


def fold_candles(frame: pd.DataFrame, timeframe: Timeframe) -> pd.DataFrame:
    """Merge ascending finer candles into ``timeframe`` buckets: first open, max high, min low, last close,
    summed volume (used to build Monday-aligned weeks from daily buckets)."""
    if frame.empty:
        return empty_candles()
    ts = frame["ts"].to_numpy(dtype=np.int64)
    keys = timeframe.bucket_starts(ts)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    return as_candle_frame(
        pd.DataFrame(
            {
                "ts": keys[starts],
                "open": frame["open"].to_numpy()[starts],
                "high": np.maximum.reduceat(frame["high"].to_numpy(), starts),
                "low": np.minimum.reduceat(frame["low"].to_numpy(), starts),
                "close": frame["close"].to_numpy()[ends],
                "volume": np.add.reduceat(frame["volume"].to_numpy(), starts),
            }
        )
    )


def plan_candle_write(
    incoming: pd.DataFrame, stored: pd.DataFrame, on_conflict: OnConflict
) -> tuple[pd.DataFrame, WriteResult]:
    """Compare incoming candles with the stored rows of the same keys: the rows to send and the outcome.

    New rows are always sent; identical ones never; differing ones only with ``on_conflict="overwrite"``
    (DEDUP UPSERT then replaces them), otherwise they are reported in ``WriteResult.conflicts``.
    """
    merged = incoming.merge(stored, on="ts", how="left", suffixes=("", "_stored"), indicator=True)
    exists = (merged["_merge"] == "both").to_numpy()
    same = np.ones(len(merged), dtype=bool)
    for col in sql.CANDLE_VALUE_COLUMNS:
        same &= _same(merged[col].to_numpy(), merged[f"{col}_stored"].to_numpy())
    is_new, unchanged, differs = ~exists, exists & same, exists & ~same
    inserted, kept = int(is_new.sum()), int(unchanged.sum())
    if on_conflict == "overwrite":
        to_write = incoming[is_new | differs].reset_index(drop=True)
        return to_write, WriteResult(inserted=inserted, unchanged=kept, overwritten=int(differs.sum()))
    conflicts = merged[differs].rename(columns={f"{c}_stored": f"stored_{c}" for c in sql.CANDLE_VALUE_COLUMNS})
    conflicts = conflicts[[*CANDLE_COLUMNS, *(f"stored_{c}" for c in sql.CANDLE_VALUE_COLUMNS)]]
    result = WriteResult(inserted=inserted, unchanged=kept, conflicts=conflicts.reset_index(drop=True))
    return incoming[is_new].reset_index(drop=True), result


def drop_partial_tail(buckets: pd.DataFrame, target: Timeframe, covered_until: int) -> pd.DataFrame:
    """Drop the last bucket if the source data (which ends at ``covered_until``, exclusive) does not reach
    its close."""
    if buckets.empty or target.next_open(int(buckets["ts"].iloc[-1])) <= covered_until:
        return buckets
    return buckets.iloc[:-1].reset_index(drop=True)


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise equality where NaN equals NaN."""
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _align_up(ts: int | None, timeframe: Timeframe) -> int | None:
    if ts is None:
        return None
    start = timeframe.bucket_start(ts)
    return start if start == ts else timeframe.next_open(ts)


# --------------------------------------------------------------------------------------------- the store


def _no_event_trim(url: str) -> StoreError:
    """QuestDB has no row ``DELETE``: only whole partitions (days of ``ts_event``) can be dropped, which cannot
    cut the log at a sequence number."""
    return StoreError(
        "event retention is not supported by the QuestDB store (QuestDB has no row DELETE; its partitions are "
        "days of ts_event, not ranges of sequence numbers)",
        where=url,
        hint="archive the log with `smartmarket backup`, or keep the event log in DuckDB or PostgreSQL",
    )


class QuestDBStore(Store):
    """Candles and events in a QuestDB server (see the module docstring for the semantics)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.config = parse_questdb_url(url)
        self._candles = self.config.candles_table
        self._events = self.config.events_table
        self._last_seq_written = 0
        self._conn = self._connect_pg()
        try:
            self._execute(sql.candles_ddl(self._candles))
            self._execute(sql.events_ddl(self._events))
            self._sender = open_ilp_sender(self.config)
        except BaseException:
            self._conn.close()
            raise

    # ----------------------------------------------------------------------------------------- plumbing

    def _where_pg(self) -> str:
        return f"{self.config.host}:{self.config.pg_port}"

    def _connect_pg(self) -> psycopg.Connection[Any]:
        cfg = self.config
        try:
            conn = psycopg.connect(
                host=cfg.host,
                port=cfg.pg_port,
                user=cfg.user,
                password=cfg.password,
                dbname=cfg.dbname,
                autocommit=True,
                connect_timeout=max(1, round(cfg.connect_timeout)),
            )
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(
                f"cannot reach QuestDB's PostgreSQL wire port ({_first_line(exc, cfg.secrets)})",
                where=self._where_pg(),
                hint=f"is QuestDB running at {self._where_pg()}?",
            ) from None
        conn.prepare_threshold = None  # plain extended-protocol queries, no named server-side statements
        return conn

    def _execute(self, text: str) -> None:
        self._fetch(sql.SqlQuery(text), fetch=False)

    def _fetch(self, query: sql.SqlQuery, *, fetch: bool = True, binary: bool = False) -> list[tuple[Any, ...]]:
        try:
            with self._conn.cursor(binary=binary) as cur:
                cur.execute(query.text, query.params or None)  # no parameters: simple query protocol
                return cur.fetchall() if fetch else []
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(
                f"lost QuestDB's PostgreSQL wire connection ({_first_line(exc, self.config.secrets)})",
                where=self._where_pg(),
                hint=f"is QuestDB running at {self._where_pg()}?",
            ) from None
        except psycopg.Error as exc:
            raise StoreError(
                f"QuestDB rejected a query: {_first_line(exc, self.config.secrets)}",
                where=self._where_pg(),
                hint=f"the query was: {query.text[:160]}",
            ) from None

    def _flush(self, buffer: Any) -> None:
        try:
            self._sender.flush(buffer, transactional=True)
        except QuestDBError as exc:
            raise ilp_error(self.config, exc) from None

    def wait_visible(self, table: str) -> None:
        """Block until every WAL transaction committed to ``table`` so far is applied (visible to queries)."""
        rows = self._fetch(sql.wal_status_sql(table))
        if not rows:
            return
        target = int(rows[0][2])
        deadline = time.monotonic() + self.config.wal_timeout
        delay = 0.005
        while True:
            suspended, writer_txn, _ = rows[0]
            if suspended:
                raise StoreError(
                    f"QuestDB table {table} is suspended (a WAL transaction failed to apply)",
                    where=self._where_pg(),
                    hint=f"see the server log, then ALTER TABLE {table} RESUME WAL",
                )
            if int(writer_txn) >= target:
                return
            if time.monotonic() > deadline:
                raise StoreUnavailableError(
                    f"rows written to {table} not visible after {self.config.wal_timeout:g} s",
                    where=self._where_pg(),
                    hint="QuestDB's WAL apply is lagging; raise wal_timeout in the store URL or retry",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
            rows = self._fetch(sql.wal_status_sql(table))

    # ----------------------------------------------------------------------------------------- candles

    def write_candles(
        self,
        symbol: str,
        timeframe: Timeframe,
        frame: pd.DataFrame,
        *,
        on_conflict: OnConflict = "report",
        synthetic: bool = False,
    ) -> WriteResult:
        symbol, timeframe = normalize_symbol(symbol), Timeframe.parse(timeframe)
        incoming = as_candle_frame(frame)
        if incoming.empty:
            return WriteResult(inserted=0, unchanged=0)
        if incoming["ts"].duplicated().any():
            raise ValidationError(f"candle frame for {symbol} {timeframe} has duplicate timestamps")
        first, last = int(incoming["ts"].iloc[0]), int(incoming["ts"].iloc[-1])
        stored = self._read_stored(symbol, timeframe, first, last + 1)
        to_write, result = plan_candle_write(incoming, stored, on_conflict)
        for lo in range(0, len(to_write), ILP_CHUNK_ROWS):
            buffer = self._sender.new_buffer()
            chunk = to_write.iloc[lo : lo + ILP_CHUNK_ROWS]
            add_candle_rows(buffer, self._candles, symbol, timeframe, chunk, synthetic=synthetic)
            self._flush(buffer)
        if len(to_write):
            self.wait_visible(self._candles)
        return result

    def _read_stored(
        self, symbol: str, timeframe: Timeframe, start: int | None, end: int | None, limit: int | None = None
    ) -> pd.DataFrame:
        query = sql.read_candles_sql(self._candles, symbol, timeframe, start, end, limit)
        return rows_to_candles(self._fetch(query, binary=True))

    def _stored_timeframes(self, symbol: str) -> set[Timeframe]:
        found = set()
        for (name,) in self._fetch(sql.stored_timeframes_sql(self._candles, symbol)):
            try:
                found.add(Timeframe(name))
            except ValueError:
                continue  # a timeframe written by something else: ignore
        return found

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
        symbol, timeframe = normalize_symbol(symbol), Timeframe.parse(timeframe)
        direct = self._read_stored(symbol, timeframe, start, end, limit)
        if not direct.empty:
            return direct
        stored = self._stored_timeframes(symbol)
        if timeframe in stored:
            return direct
        sources = [tf for tf in stored if tf.ms < timeframe.ms and tf.divides(timeframe)]
        if not sources:
            raise NotFoundError(
                f"no {timeframe} candles for {symbol}, and no finer timeframe to build them from",
                hint="ingest the series first (smartmarket ingest …)",
            )
        source = max(sources, key=lambda tf: tf.ms)
        return self._resample(symbol, source, timeframe, start, end, limit, include_partial)

    def _resample(
        self,
        symbol: str,
        source: Timeframe,
        target: Timeframe,
        start: int | None,
        end: int | None,
        limit: int | None,
        include_partial: bool,
    ) -> pd.DataFrame:
        lo, hi = _align_up(start, target), _align_up(end, target)
        if lo is not None and hi is not None and lo >= hi:
            return empty_candles()
        stride_tf = target if sql.is_sampled(target) else Timeframe.D1
        rows = self._fetch(
            sql.sample_by_sql(self._candles, symbol, source, sql.sample_unit(stride_tf), lo, hi), binary=True
        )
        buckets = rows_to_candles(rows)
        misaligned = [ts for ts in buckets["ts"].tolist() if not stride_tf.is_aligned(ts)]
        if misaligned:
            raise StoreError(
                f"QuestDB returned {stride_tf} buckets not aligned to UTC (first at ts={misaligned[0]})",
                hint="this QuestDB aligns SAMPLE BY differently from what the adapter expects; nothing was returned",
            )
        if stride_tf is not target:
            buckets = fold_candles(buckets, target)
        if not include_partial and not buckets.empty:
            newest = self.latest(symbol, source, 1)
            covered_until = source.next_open(int(newest["ts"].iloc[-1])) if not newest.empty else 0
            buckets = drop_partial_tail(buckets, target, covered_until)
        return buckets.head(limit).reset_index(drop=True) if limit is not None else buckets

    def latest(self, symbol: str, timeframe: Timeframe, n: int) -> pd.DataFrame:
        symbol, timeframe = normalize_symbol(symbol), Timeframe.parse(timeframe)
        if n <= 0:
            return empty_candles()
        rows = self._fetch(sql.latest_sql(self._candles, symbol, timeframe, n), binary=True)
        return rows_to_candles(rows[::-1])

    def list_series(self) -> list[SeriesInfo]:
        infos = []
        for symbol, tf_name, count, first_us, last_us, n_synthetic in self._fetch(sql.list_series_sql(self._candles)):
            try:
                timeframe = Timeframe(tf_name)
            except ValueError:
                continue
            infos.append(
                SeriesInfo(
                    symbol=symbol,
                    timeframe=timeframe,
                    count=int(count),
                    first_ts=int(first_us) // 1000,
                    last_ts=int(last_us) // 1000,
                    synthetic=bool(n_synthetic),
                )
            )
        return sorted(infos, key=lambda i: (i.symbol, i.timeframe.ms))

    def delete_range(self, symbol: str, timeframe: Timeframe, start: int | None = None, end: int | None = None) -> int:
        """Rebuild the UTC days holding the doomed rows without them (QuestDB has no DELETE).

        Not atomic: between dropping the day partitions and re-inserting the kept rows, readers see those days
        empty, and rows other writers add to those days meanwhile are lost. If the process dies in between, the
        kept rows are still in the scratch table ``<candles>_rebuild_<hex>``: ``INSERT INTO`` them back.
        """
        symbol, timeframe = normalize_symbol(symbol), Timeframe.parse(timeframe)
        self.wait_visible(self._candles)
        days = self._fetch(sql.days_with_rows_sql(self._candles, symbol, timeframe, start, end))
        doomed = sum(int(n) for _, n in days)
        if not doomed:
            return 0
        first_day, last_day = int(days[0][0]) // 1000, int(days[-1][0]) // 1000
        if first_day % DAY_MS or last_day % DAY_MS:
            raise StoreError("QuestDB returned daily buckets not aligned to UTC midnight; nothing was deleted")
        scratch = f"{self._candles}_rebuild_{uuid.uuid4().hex[:12]}"
        for statement in sql.delete_rebuild_statements(
            self._candles, scratch, symbol, timeframe, start, end, first_day, last_day
        ):
            self._execute(statement)
        self.wait_visible(self._candles)
        return doomed

    # ----------------------------------------------------------------------------------------- events

    def last_seq(self) -> int:
        rows = self._fetch(sql.last_seq_sql(self._events))
        stored = int(rows[0][0]) if rows and rows[0][0] is not None else 0
        return max(stored, self._last_seq_written)

    def append_events(self, events: Iterable[Message]) -> list[int]:
        messages = list(events)
        if not messages:
            return []
        first = self.last_seq() + 1
        stored = [StoredEvent(seq=first + i, message=m) for i, m in enumerate(messages)]
        self._write_events(stored)
        return [e.seq for e in stored]

    def import_events(self, events: Sequence[StoredEvent]) -> int:
        if not events:
            return 0
        previous = self.last_seq()
        for event in events:
            if event.seq <= previous:
                raise StoreError(
                    f"cannot import event seq {event.seq}: not above {previous}",
                    hint="import into an empty log, or only events newer than its last sequence number",
                )
            previous = event.seq
        self._write_events(events)
        return len(events)

    def _write_events(self, events: Sequence[StoredEvent]) -> None:
        for lo in range(0, len(events), ILP_CHUNK_ROWS):
            buffer = self._sender.new_buffer()
            add_event_rows(buffer, self._events, events[lo : lo + ILP_CHUNK_ROWS])
            self._flush(buffer)
        self._last_seq_written = max(self._last_seq_written, events[-1].seq)
        self.wait_visible(self._events)

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
        if types is not None and not types:
            return []
        query = sql.read_events_sql(
            self._events,
            from_seq,
            to_seq,
            start=start,
            end=end,
            types=types,
            correlation_id=correlation_id,
            limit=limit,
        )
        return [StoredEvent(seq=int(seq), message=from_json(payload)) for seq, payload in self._fetch(query)]

    trims_events = False

    def nth_newest_seq(self, n: int) -> int | None:
        raise _no_event_trim(self._where_pg())

    def delete_events_through(self, seq: int, *, expected: int | None = None) -> int:
        raise _no_event_trim(self._where_pg())

    # ----------------------------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        sender = getattr(self, "_sender", None)
        if sender is not None:
            sender.close(flush=False)
        if not self._conn.closed:
            self._conn.close()


def _first_line(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    text = redact_text(str(exc).strip(), also=secrets)
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "ILP_CHUNK_ROWS",
    "QuestDBConfig",
    "QuestDBStore",
    "add_candle_rows",
    "add_event_rows",
    "drop_partial_tail",
    "fold_candles",
    "ilp_conf",
    "ilp_error",
    "open_ilp_sender",
    "parse_questdb_url",
    "plan_candle_write",
    "rows_to_candles",
]
