"""Time-series storage: ports and adapters (DuckDB embedded default, PostgreSQL, QuestDB)."""

from smartmarket.store.base import CandleStore, EventStore, SeriesInfo, Store, StoredEvent, WriteResult
from smartmarket.store.url import open_store

__all__ = ["CandleStore", "EventStore", "SeriesInfo", "Store", "StoredEvent", "WriteResult", "open_store"]
