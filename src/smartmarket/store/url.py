"""Open a store from its URL: ``duckdb:///path``, ``postgresql://…``, ``questdb://host:9000``.

``duckdb:///relative/file.duckdb`` is relative to the working directory, ``duckdb:////absolute/file.duckdb``
is absolute (SQLAlchemy style: the fourth slash starts the path). ``create=False`` (reading) refuses a DuckDB
file that does not exist and creates nothing; server stores are never created by SmartMarket (only its tables).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from smartmarket.core.errors import ConfigError
from smartmarket.core.redaction import redact_url
from smartmarket.store.base import Store

SCHEMES = ("duckdb", "postgresql", "postgres", "questdb")
URL_HELP = (
    "duckdb:///relative/file.duckdb (relative to the working directory), duckdb:////absolute/file.duckdb, "
    "postgresql://user@host:5432/db or questdb://host:9000"
)


def open_store(url: str, *, create: bool = True) -> Store:
    """Return the adapter for ``url``. Adapters are imported lazily so each needs only its own driver.

    With ``create=False`` a DuckDB file that does not exist raises ``NotFoundError`` (nothing is created)."""
    scheme = urlparse(url).scheme
    if scheme == "duckdb":
        from smartmarket.store.duckdb_store import DuckDBStore

        return DuckDBStore(url, create=create)
    if scheme in ("postgresql", "postgres"):
        from smartmarket.store.postgres_store import PostgresStore

        return PostgresStore(url)
    if scheme == "questdb":
        from smartmarket.store.questdb_store import QuestDBStore

        return QuestDBStore(url)
    raise ConfigError(f"unsupported store URL {redact_url(url)!r}", hint=f"use {URL_HELP}")


def store_created(store: Store) -> str | None:
    """The absolute path of the DuckDB file ``store`` created when it was opened, else ``None``."""
    if getattr(store, "created", False):
        return str(Path(getattr(store, "path", "")).resolve())
    return None


__all__ = ["SCHEMES", "URL_HELP", "open_store", "store_created"]
