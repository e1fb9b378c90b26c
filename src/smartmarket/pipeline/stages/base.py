"""What every pipeline stage shares: the stage port, deterministic ids, the event log and ordered folds.

A stage is a bus consumer: ``inputs`` (topics) in, ``handle(message) -> outputs`` out; the runner
(``pipeline.live``) publishes the outputs on their topics (``bus.topics.topic_for``). Each stage keeps its
per-symbol state as a deterministic *fold* over its inputs in candle order (``OrderedFold``), so:

- ids of derived events are ``deterministic_event_id(type, symbol, timeframe, candle ts, version)``: a
  redelivered input, a second worker or a replay regenerates the same event, and consumers skip copies;
- a worker that starts late, restarts, or shares a consumer group with others rebuilds the state it lacks
  from the durable log (``EventLog``) before handling the next input (event sourcing): the inputs it did not
  see are folded in order and their outputs published again (a process that stopped or died may not have
  published them; where another worker did, consumers and the recorder skip the copies by id).

``EventLog`` is the pipeline's only door to the ``EventStore``: one worker thread (the event loop never blocks
on the database), appends that skip ids already stored, and ``wait_recorded`` (the recorder writes behind
the bus, so a stage that needs history first waits until its current input is durable).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pandas as pd

from smartmarket.core.errors import RetryableError, StoreError
from smartmarket.core.events import CandleClosed, Message, deterministic_event_id
from smartmarket.core.types import Timeframe
from smartmarket.store.base import CandleStore, EventStore, StoredEvent

log = logging.getLogger(__name__)

U = TypeVar("U")
T = TypeVar("T")

CANDLE_KEYS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
"""``FeaturesComputed.features`` carries the candle's OHLCV under these keys next to the feature columns."""


def derived_id(type_name: str, symbol: str, timeframe: Timeframe | str, ts: int, version: str, *extra: object) -> str:
    """The id of an event derived from the candle ``ts`` of ``symbol`` by pipeline ``version``."""
    return deterministic_event_id(type_name, symbol, str(timeframe), int(ts), version, *extra)


def candle_event_id(symbol: str, timeframe: Timeframe | str, ts: int) -> str:
    """The id of the ``CandleClosed`` of one candle: the same from a file, an exchange or a replay."""
    return deterministic_event_id("CandleClosed", symbol, str(timeframe), int(ts))


def same_payload(a: Message, b: Message) -> bool:
    """Equal in every field but ``ts_init`` (NaN equals NaN): what replay and parity compare."""
    return _equal(_comparable(a), _comparable(b))


def _comparable(message: Message) -> dict[str, Any]:
    data = message.to_dict()
    data.pop("ts_init", None)
    return data


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def differing_fields(a: Message, b: Message) -> list[str]:
    """Names of the fields (``ts_init`` aside) whose values differ."""
    da, db = _comparable(a), _comparable(b)
    return sorted(k for k in da.keys() | db.keys() if not _equal(da.get(k), db.get(k)))


class NotRecordedError(RetryableError):
    """The event log does not (yet) hold an event a stage needs: the handler fails and is retried."""


def _is_duplicate(exc: StoreError) -> bool:
    text = str(exc).lower()
    return "duplicate" in text or "unique" in text or "constraint" in text


class EventLog:
    """Async access to the durable ``EventStore`` through one worker thread."""

    def __init__(self, store: EventStore, *, poll_s: float = 0.005) -> None:
        self.store = store
        self.poll_s = poll_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-log")

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def append(self, messages: Sequence[Message]) -> int:
        """Append in order, skipping events whose id the log already holds; returns how many were new."""
        return await self._call(lambda: append_new(self.store, messages))

    async def read(self, **filters: Any) -> list[StoredEvent]:
        return await self._call(lambda: self.store.read_events(**filters))

    async def is_recorded(self, message: Message) -> bool:
        found = await self.read(types=[message.type_name], start=message.ts_event, end=message.ts_event + 1)
        return any(e.message.event_id == message.event_id for e in found)

    async def wait_recorded(self, message: Message, timeout_s: float = 30.0) -> None:
        """Until ``message`` is in the log (then every earlier event of its stream is too)."""
        deadline = time.monotonic() + timeout_s
        delay = self.poll_s
        while not await self.is_recorded(message):
            if time.monotonic() > deadline:
                raise NotRecordedError(f"{message.type_name} {message.event_id} is not in the event log")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def record(self, messages: Sequence[Message]) -> int:
        """``append`` then ``store_candles`` in one store batch (the embedded store's file is opened once, so
        a long run holds its lock only briefly per flush); returns how many events were new."""
        store = self.store

        def both() -> int:
            with store.batch(write=True):
                added = append_new(store, messages)
                candles = [m for m in messages if isinstance(m, CandleClosed)]
                if candles and isinstance(store, CandleStore):
                    store_candles(store, candles)
                return added

        return await self._call(both)

    async def store_candles(self, messages: Sequence[Message]) -> int:
        """Write the ``CandleClosed`` among ``messages`` to the candle store, when the event store is one too."""
        candles = [m for m in messages if isinstance(m, CandleClosed)]
        store = self.store
        if not candles or not isinstance(store, CandleStore):
            return 0
        return await self._call(lambda: store_candles(store, candles))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def stores_natively(store: CandleStore, symbol: str, timeframe: Timeframe) -> bool:
    """Whether live ``timeframe`` candles of ``symbol`` belong in the store as their own series: yes when that
    series exists, or when no finer series does. Otherwise reads of ``timeframe`` are resampled from the finer
    stored series, and a partial native copy would hide that history."""
    series = store.list_series()
    if any(s.symbol == symbol and s.timeframe == timeframe for s in series):
        return True
    return not any(s.symbol == symbol and s.timeframe.ms < timeframe.ms for s in series)


def store_candles(store: CandleStore, candles: Iterable[CandleClosed]) -> int:
    """Write ``candles`` to the candle store (idempotent); returns how many were new. Conflicts are logged; a
    timeframe the store serves by resampling a finer series is left to that series (``stores_natively``)."""
    series: dict[tuple[str, Timeframe], dict[int, CandleClosed]] = {}
    for c in candles:
        series.setdefault((c.symbol, c.timeframe), {})[c.ts] = c
    inserted = 0
    for (symbol, timeframe), by_ts in series.items():
        if not stores_natively(store, symbol, timeframe):
            continue
        rows = [by_ts[ts] for ts in sorted(by_ts)]
        frame = pd.DataFrame(
            {"ts": [c.ts for c in rows], "open": [c.open for c in rows], "high": [c.high for c in rows],
             "low": [c.low for c in rows], "close": [c.close for c in rows], "volume": [c.volume for c in rows]},
        )  # fmt: skip
        frame["ts"] = frame["ts"].astype("int64")
        result = store.write_candles(symbol, timeframe, frame, on_conflict="report")
        inserted += result.inserted
        if result.conflict_count:
            log.warning("%d live %s %s candle(s) differ from the stored ones (kept the stored; first ts %d)",
                        result.conflict_count, symbol, timeframe, int(result.conflicts["ts"].iloc[0]))  # fmt: skip
    return inserted


def append_new(store: EventStore, messages: Sequence[Message]) -> int:
    """``store.append_events`` that skips events already stored (same id): idempotent re-recording."""
    if not messages:
        return 0
    unique = list({m.event_id: m for m in messages}.values())
    # Skip ids already stored before appending: a failed append must not be relied on (DuckDB reports a
    # unique violation at commit, which leaves the store's connection in an aborted transaction).
    stored = store.read_events(
        start=min(m.ts_event for m in unique), end=max(m.ts_event for m in unique) + 1,
        types=sorted({m.type_name for m in unique}),
    )  # fmt: skip
    known = {e.message.event_id for e in stored}
    unique = [m for m in unique if m.event_id not in known]
    if not unique:
        return 0
    try:
        store.append_events(unique)
        return len(unique)
    except StoreError as exc:
        if not _is_duplicate(exc):
            raise
    added = 0
    for message in unique:  # some were stored already: one at a time, skipping those
        try:
            store.append_events([message])
            added += 1
        except StoreError as exc:
            if not _is_duplicate(exc):
                raise
    return added


Publisher = Callable[[Sequence[Message]], Awaitable[None]]


class Stage(ABC):
    """A pipeline stage: a consumer group reading ``inputs`` and emitting derived events."""

    name: str
    inputs: tuple[str, ...]
    publisher: Publisher | None = None
    """Set by the live pipeline: publishes events at once, for a stage that must send some before its handler
    returns (the risk stage's orders held back for a protective exit, whose answers it then waits for)."""

    @abstractmethod
    async def handle(self, message: Message) -> list[Message]:
        """Process one input event; return the events to publish (possibly none)."""

    def idle(self) -> bool:
        """True when nothing is waiting inside the stage (used to decide that a run has drained)."""
        return True

    async def settle(self, handled: Sequence[Message]) -> None:  # noqa: B027 - optional hook
        """Awaited before ``handled`` inputs are acknowledged on a bus whose entries outlive the process: a stage
        that keeps in memory what a restarted worker must rebuild from the log waits here until the log holds
        it (an acknowledged input is never delivered again). Most stages rebuild from their inputs alone."""


# --------------------------------------------------------------------------------------------- folds


@dataclass
class _SymbolFold(Generic[U]):
    last_ts: int | None = None
    outputs: OrderedDict[int, list[Message]] = field(default_factory=OrderedDict)


HistoryLoader = Callable[[str, int | None, Sequence[Message]], Awaitable[list[tuple[int, U]]]]
"""``(symbol, after_ts, current_inputs) -> [(ts, unit), ...]``: the units after ``after_ts`` (None: from the
start) and before the current one, read from the event log in order once ``current_inputs`` are recorded."""


class OrderedFold(Generic[U]):
    """Per-symbol state advanced by one *unit* (everything a stage needs about one candle) at a time.

    ``step(symbol, unit)`` must be deterministic. Units arrive in candle order from the bus; when one does not
    follow the last folded unit (a fresh or restarted worker, another worker took some, a gap in the data),
    ``history`` supplies the missing ones from the event log first. A unit at or before the last folded one
    (a redelivery, or one folded from history) returns the outputs computed for it then.
    """

    def __init__(
        self, timeframe: Timeframe, step: Callable[[str, U], list[Message]], history: HistoryLoader[U] | None,
        *, contiguous: bool = True, publish_history: bool = True, remembered: int = 10_000,
    ) -> None:  # fmt: skip
        self.timeframe = timeframe
        self.contiguous = contiguous  # units come every candle: a jump means something was missed
        self.publish_history = publish_history  # also return the outputs of units folded from history
        self.step = step
        self.history = history
        self.remembered = remembered
        self.caught_up = 0  # units folded from history
        self._symbols: dict[str, _SymbolFold[U]] = {}

    def folded(self, symbol: str, ts: int) -> list[Message] | None:
        """The outputs of an already folded unit (``[]`` when forgotten); None when ``ts`` is not folded yet."""
        state = self._symbols.get(symbol)
        if state is None or state.last_ts is None or ts > state.last_ts:
            return None
        return list(state.outputs.get(ts, []))

    def last_ts(self, symbol: str) -> int | None:
        state = self._symbols.get(symbol)
        return state.last_ts if state is not None else None

    async def advance(self, symbol: str, ts: int, unit: U, inputs: Sequence[Message]) -> list[Message]:
        """Fold ``unit`` (candle ``ts``) made of ``inputs``; returns its outputs (see the class docstring)."""
        state = self._symbols.setdefault(symbol, _SymbolFold())
        if state.last_ts is not None and ts <= state.last_ts:
            return list(state.outputs.get(ts, []))
        missed: list[Message] = []
        gap = self.contiguous and state.last_ts is not None and ts != state.last_ts + self.timeframe.ms
        if self.history is not None and (state.last_ts is None or gap):
            for past_ts, past in await self.history(symbol, state.last_ts, inputs):
                if state.last_ts is None or past_ts > state.last_ts:
                    missed.extend(self._fold(state, symbol, past_ts, past))
                    self.caught_up += 1
        outputs = self._fold(state, symbol, ts, unit)
        return [*missed, *outputs] if self.publish_history else list(outputs)

    def _fold(self, state: _SymbolFold[U], symbol: str, ts: int, unit: U) -> list[Message]:
        outputs = self.step(symbol, unit)
        state.last_ts = ts
        state.outputs[ts] = outputs
        if len(state.outputs) > self.remembered:
            state.outputs.popitem(last=False)
        return outputs


async def read_history(
    log: EventLog, types: Sequence[str], symbol: str, timeframe: Timeframe, after_ts: int | None,
    inputs: Sequence[Message],
) -> list[Message]:  # fmt: skip
    """Events of ``types`` for one symbol about candles after ``after_ts`` and before the current ``inputs``
    (candle-stamped: ``ts_event`` = the candle's close), once every one of ``inputs`` is recorded."""
    for message in inputs:
        await log.wait_recorded(message)
    start = None if after_ts is None else after_ts + timeframe.ms + 1
    end = min(m.ts_event for m in inputs)
    return by_symbol(await log.read(types=list(types), start=start, end=end), symbol, timeframe)


def by_symbol(events: Iterable[StoredEvent], symbol: str, timeframe: Timeframe | None = None) -> list[Message]:
    """The messages of one symbol (and timeframe, when the type has one), in log order."""
    out = []
    for stored in events:
        m = stored.message
        if getattr(m, "symbol", None) != symbol:
            continue
        if timeframe is not None and getattr(m, "timeframe", timeframe) != timeframe:
            continue
        out.append(m)
    return out


__all__ = [
    "CANDLE_KEYS",
    "EventLog",
    "HistoryLoader",
    "NotRecordedError",
    "OrderedFold",
    "Publisher",
    "Stage",
    "append_new",
    "by_symbol",
    "candle_event_id",
    "derived_id",
    "differing_fields",
    "read_history",
    "same_payload",
    "store_candles",
    "stores_natively",
]
