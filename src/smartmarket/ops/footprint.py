"""Storage footprint: bytes a store needs on disk for its candles, and the size of their Parquet backup.

- DuckDB: the database file plus its write-ahead log after a ``CHECKPOINT`` (so the figure does not depend
  on when DuckDB last flushed). The whole file counts: it also holds the series and events tables, and
  blocks freed by deletes stay in the file until it is rewritten.
- PostgreSQL: ``pg_total_relation_size`` of the ``candles`` table of the connection's current schema: heap,
  TOAST, free-space and visibility maps, and every index (the primary key on ``(symbol, timeframe, ts)``).
- Parquet: the candle files ``smartmarket backup`` would write for the same data (zstd, see
  ``smartmarket.ops.parquet_io``), written to a temporary directory and measured.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from smartmarket.core.errors import ConfigError, StoreError
from smartmarket.ops.backup import export_series
from smartmarket.ops.parquet_io import DEFAULT_ZSTD_LEVEL
from smartmarket.store.base import Store
from smartmarket.store.duckdb_store import DuckDBStore


def bytes_on_disk(store: Store) -> int:
    """Bytes the store occupies on disk (see the module docstring for what each backend counts)."""
    from smartmarket.store.postgres_store import PostgresStore

    if isinstance(store, DuckDBStore):
        return duckdb_bytes(store)
    if isinstance(store, PostgresStore):
        return postgres_candle_bytes(store.url)
    raise ConfigError(f"no footprint measure for {type(store).__name__}", hint="use a DuckDB or PostgreSQL store")


def duckdb_bytes(store: DuckDBStore) -> int:
    """Size of a DuckDB store's file plus its ``.wal`` after a ``CHECKPOINT``."""
    if store.path == ":memory:":
        raise ConfigError("an in-memory DuckDB store has no size on disk", hint="use duckdb:///file.duckdb")
    with store.connection(write=True) as con:
        con.execute("CHECKPOINT")
    database = Path(store.path)
    wal = database.with_name(database.name + ".wal")
    return database.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def postgres_candle_bytes(url: str, table: str = "candles") -> int:
    """``pg_total_relation_size`` of ``table`` in the current schema of the connection made from ``url``."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size(format('%%I.%%I', current_schema(), %s::text)::regclass)", [table]
        ).fetchone()
    if row is None or row[0] is None:
        raise StoreError(f"table {table} not found in the current schema", where=url)
    return int(row[0])


def parquet_bytes(
    store: Store, *, workdir: Path | None = None, zstd_level: int = DEFAULT_ZSTD_LEVEL, chunk_rows: int = 200_000
) -> int:
    """Total size of the candle Parquet files a backup of ``store`` would write (events not included)."""
    with tempfile.TemporaryDirectory(prefix="sm-footprint-", dir=workdir) as tmp:
        total = 0
        for info in store.list_series():
            entry = export_series(store, info, Path(tmp), chunk_rows=chunk_rows, zstd_level=zstd_level)
            total += entry.file.bytes
        return total


def candle_count(store: Store) -> int:
    """How many candles the store holds (all series)."""
    return sum(info.count for info in store.list_series())


def bytes_per_candle(nbytes: int, candles: int) -> float:
    """``nbytes / candles`` (0.0 for an empty store)."""
    return nbytes / candles if candles else 0.0


__all__ = [
    "bytes_on_disk",
    "bytes_per_candle",
    "candle_count",
    "duckdb_bytes",
    "parquet_bytes",
    "postgres_candle_bytes",
]
