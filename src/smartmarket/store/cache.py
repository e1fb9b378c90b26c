"""Hot tail cache: the last few thousand candles of each series in memory, for ``Store.latest``.

Each series' tail is one candle frame (its numbers live in two numpy blocks: ``ts`` int64 and the five
float64 columns). ``latest(n)`` slices it; pandas copy-on-write makes the returned frame independent, so a
caller modifying it cannot touch the cache.

Coherence (the cache must never serve data older than the store it belongs to):

- the owning store calls ``appended`` after committing candles that all lie after the stored last ``ts``
  (the live path: the tail is extended), and ``invalidate`` after any other write, overwrite or delete;
- both bump the cache's *generation*; a tail loaded from the database is kept only if no write happened
  while it was being read (``generation`` before the read, ``store`` after it), so a slow load racing a
  write through another store object on the same file cannot install a stale tail.

Writes made by *other processes*: the owning store tells the cache what state the database is in whenever it
looks (``sync(token)``, e.g. a DuckDB file's header, size and modification times); a token that differs from
the one the tails were read in drops them all. After its own writes the store calls ``adopt(token)`` (the
tails already follow those). A PostgreSQL server offers no such cheap token, which is why ``PostgresStore``
leaves the cache off by default.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

SeriesKey = tuple[str, str]

DEFAULT_CAPACITY = 4096


@dataclass(frozen=True, slots=True)
class _Tail:
    frame: pd.DataFrame  # the last ``len(frame)`` candles of the series, ascending, RangeIndex
    complete: bool  # True when ``frame`` holds the whole series (fewer candles than the capacity)


class TailCache:
    """Per-series tails, shared by every store object of one database in this process."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._tails: dict[SeriesKey, _Tail] = {}
        self._generation = 0  # bumped by every write; see the module docstring
        self._token: object = None  # the database state the tails were read in (see ``sync``)
        self._lock = threading.Lock()

    def get(self, key: SeriesKey, n: int) -> pd.DataFrame | None:
        """The last ``n`` candles if the cached tail can answer, else ``None`` (the caller reads the store)."""
        tail = self._tails.get(key)
        if tail is None:
            return None
        frame = tail.frame
        size = len(frame)
        if n >= size:
            if not tail.complete and n > size:
                return None
            return frame.copy(deep=False)
        return frame.iloc[size - n :].reset_index(drop=True)

    def generation(self) -> int:
        """Read before loading a tail from the database; pass to ``store``."""
        with self._lock:
            return self._generation

    def store(self, key: SeriesKey, frame: pd.DataFrame, generation: int) -> None:
        """Keep a tail read from the database (ascending, the last ``len(frame)`` candles), unless a write
        happened since ``generation`` was read."""
        with self._lock:
            if self._generation != generation:
                return
            complete = len(frame) < self.capacity
            frame = frame.iloc[-self.capacity :].reset_index(drop=True)
            self._tails[key] = _Tail(frame=frame, complete=complete)

    def appended(self, key: SeriesKey, frame: pd.DataFrame) -> None:
        """Candles in ``frame`` (ascending) were committed after the last stored candle of the series."""
        with self._lock:
            self._generation += 1
            tail = self._tails.get(key)
            if tail is None:
                return
            if len(frame) and len(tail.frame) and int(frame["ts"].iloc[0]) <= int(tail.frame["ts"].iloc[-1]):
                # The tail already holds some of these rows (loaded after the commit): start over.
                del self._tails[key]
                return
            joined = pd.concat([tail.frame, frame], ignore_index=True) if len(tail.frame) else frame
            complete = tail.complete and len(joined) <= self.capacity
            self._tails[key] = _Tail(frame=joined.iloc[-self.capacity :].reset_index(drop=True), complete=complete)

    def after_write(
        self,
        key: SeriesKey,
        written: Mapping[str, np.ndarray],
        previous_last_ts: int | None,
        inserted: int,
        overwritten: int,
    ) -> None:
        """Keep the cache coherent after a committed write of the candle columns ``written`` (sorted by ``ts``)
        to a series whose last ``ts`` was ``previous_last_ts``: extend the tail when the write only added
        candles after it, else drop the tail. Only the last ``capacity`` rows are ever copied."""
        if inserted == 0 and overwritten == 0:
            return  # nothing changed
        if overwritten == 0:
            ts = written["ts"]
            first_new = 0 if previous_last_ts is None else int(np.searchsorted(ts, previous_last_ts, side="right"))
            if len(ts) - first_new == inserted:  # every inserted candle is newer than the old tail
                keep = max(first_new, len(ts) - self.capacity)
                self.appended(key, pd.DataFrame({c: np.array(v[keep:]) for c, v in written.items()}))
                return
        self.invalidate(key)

    def invalidate(self, key: SeriesKey) -> None:
        """Forget the tail of one series (after an overwrite, a delete or an out-of-order write)."""
        with self._lock:
            self._generation += 1
            self._tails.pop(key, None)

    def sync(self, token: object) -> None:
        """The database is in state ``token`` (read while no other process could write): drop every tail when
        that is not the state they were read in (another process wrote meanwhile)."""
        with self._lock:
            if token != self._token:
                self._generation += 1
                self._tails.clear()
                self._token = token

    def adopt(self, token: object) -> None:
        """The database reached state ``token`` by this process's own writes, which the tails already follow."""
        with self._lock:
            self._token = token

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._tails.clear()


__all__ = ["DEFAULT_CAPACITY", "SeriesKey", "TailCache"]
