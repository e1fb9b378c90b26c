"""Open a store from its URL: ``duckdb:///path``, ``postgresql://…``, ``questdb://host:9000``."""

from __future__ import annotations

from urllib.parse import urlparse

from smartmarket.core.errors import ConfigError
from smartmarket.store.base import Store

SCHEMES = ("duckdb", "postgresql", "postgres", "questdb")


def open_store(url: str) -> Store:
    """Return the adapter for ``url``. Adapters are imported lazily so each needs only its own driver."""
    scheme = urlparse(url).scheme
    if scheme == "duckdb":
        from smartmarket.store.duckdb_store import DuckDBStore

        return DuckDBStore(url)
    if scheme in ("postgresql", "postgres"):
        from smartmarket.store.postgres_store import PostgresStore

        return PostgresStore(url)
    if scheme == "questdb":
        from smartmarket.store.questdb_store import QuestDBStore

        return QuestDBStore(url)
    raise ConfigError(
        f"unsupported store URL {url!r}",
        hint="use duckdb:///path/file.duckdb, postgresql://user@host:5432/db or questdb://host:9000",
    )


__all__ = ["SCHEMES", "open_store"]
