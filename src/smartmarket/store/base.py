"""Store ports: ``CandleStore`` and ``EventStore``. Adapters (DuckDB, PostgreSQL, QuestDB) implement both.

Conventions every adapter follows (checked by the contract suite in ``tests/integration/test_store_contract.py``):

- Candles are keyed by ``(symbol, timeframe, ts)``; ``ts`` is UTC epoch ms of the candle open.
- ``write_candles`` is idempotent: identical rows already stored are counted as ``unchanged``; a row whose
  key exists with *different* values is a *conflict*: by default it is not written and is returned in
  ``WriteResult.conflicts`` (incoming values plus the stored ones) so the caller can quarantine or report it;
  with ``on_conflict="overwrite"`` it replaces the stored row.
- ``read_candles`` for a timeframe that is not stored but can be built from a finer stored one resamples on
  the fly: first open, max high, min low, last close, summed volume, UTC-aligned buckets (weeks start
  Monday); the trailing bucket not yet covered by source data is excluded unless ``include_partial``.
- Ranges are half-open: ``start <= ts < end``.
- ``EventStore.append`` assigns strictly increasing sequence numbers starting at 1 (the next one is the
  log's highest plus one, so retention, which deletes a prefix of the log, always keeps the newest event).
- ``batch()`` groups several calls: the embedded DuckDB store, which opens its file per call so that other
  processes can use it in between, then opens it once for the group; server stores need nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pandas as pd

from smartmarket.core.events import Message
from smartmarket.core.types import Timeframe

OnConflict = Literal["report", "overwrite"]


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """What is stored for one (symbol, timeframe)."""

    symbol: str
    timeframe: Timeframe
    count: int
    first_ts: int
    last_ts: int
    synthetic: bool = False


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of ``write_candles``.

    ``conflicts`` has the candle columns (incoming values) plus ``stored_open … stored_volume``.
    """

    inserted: int
    unchanged: int
    overwritten: int = 0
    conflicts: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def conflict_count(self) -> int:
        return len(self.conflicts)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as kept in the log: its sequence number plus the message."""

    seq: int
    message: Message


class Batching:
    """``batch()``, shared by both ports (see the module docstring)."""

    def batch(self, *, write: bool = False) -> AbstractContextManager[object]:
        """Run the calls made inside as one batch: one open of an embedded file (read-write when ``write``),
        holding its lock against other processes meanwhile, so keep batches short. A no-op for servers."""
        return nullcontext()


class CandleStore(Batching, ABC):
    """Candles at rest."""

    url: str

    @abstractmethod
    def write_candles(
        self,
        symbol: str,
        timeframe: Timeframe,
        frame: pd.DataFrame,
        *,
        on_conflict: OnConflict = "report",
        synthetic: bool = False,
    ) -> WriteResult:
        """Store a candle frame (see ``smartmarket.core.frame``) for one series."""

    @abstractmethod
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
        """Candles with ``start <= ts < end`` in ascending order; ``limit`` keeps the *first* N.

        Resamples from a finer stored timeframe when ``timeframe`` itself is not stored. Raises
        ``NotFoundError`` when neither the series nor a finer one exists.
        """

    @abstractmethod
    def latest(self, symbol: str, timeframe: Timeframe, n: int) -> pd.DataFrame:
        """The last ``n`` stored candles of the series, ascending (the hot path of live signalling)."""

    @abstractmethod
    def list_series(self) -> list[SeriesInfo]:
        """Every stored series, sorted by symbol then timeframe length."""

    @abstractmethod
    def delete_range(self, symbol: str, timeframe: Timeframe, start: int | None = None, end: int | None = None) -> int:
        """Delete candles with ``start <= ts < end``; returns how many were deleted."""

    def series_info(self, symbol: str, timeframe: Timeframe) -> SeriesInfo | None:
        for info in self.list_series():
            if info.symbol == symbol and info.timeframe == timeframe:
                return info
        return None

    def close(self) -> None:
        """Release connections and files."""


class EventStore(Batching, ABC):
    """The durable, ordered event log."""

    @abstractmethod
    def append_events(self, events: Iterable[Message]) -> list[int]:
        """Append in order; returns the sequence numbers assigned (strictly increasing)."""

    @abstractmethod
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
        """Events with ``from_seq <= seq <= to_seq`` and ``start <= ts_event < end``, in sequence order."""

    @abstractmethod
    def import_events(self, events: Sequence[StoredEvent]) -> int:
        """Insert events keeping their sequence numbers (migration, restore). Every ``seq`` must be greater
        than ``last_seq()`` and strictly increasing; returns how many were inserted."""

    @abstractmethod
    def last_seq(self) -> int:
        """The highest sequence number stored, 0 when the log is empty."""

    trims_events: ClassVar[bool] = True
    """Whether ``delete_events_through`` is supported (retention trims the log only where it is)."""

    @abstractmethod
    def nth_newest_seq(self, n: int) -> int | None:
        """The sequence number of the ``n``-th newest event (``n = 1``: the newest), None when the log holds
        fewer than ``n`` events."""

    @abstractmethod
    def delete_events_through(self, seq: int, *, expected: int | None = None) -> int:
        """Delete every event with sequence number ``<= seq`` in one transaction (retention, after the events
        were archived); returns how many. Refused with ``StoreError``, deleting nothing, when ``seq`` reaches
        the newest event (sequence numbers continue from it) or when ``expected`` is given and the count
        differs from it."""


class Store(CandleStore, EventStore, ABC):
    """One backend holding both candles and events (what ``open_store(url)`` returns)."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "Batching",
    "CandleStore",
    "EventStore",
    "OnConflict",
    "SeriesInfo",
    "Store",
    "StoredEvent",
    "WriteResult",
]
