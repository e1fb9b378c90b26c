"""The bus port: publish events on (topic, symbol) streams, consume them through consumer groups.

The model is Redis Streams' and both adapters (``inprocess``, ``redis_streams``) follow it exactly:

- A *stream* per (topic, symbol) holds entries in order; each entry has an id (``"<ms>-<seq>"``) and a
  payload (the msgpack of one ``Message``).
- A *consumer group* (one per pipeline stage) reads every entry of the stream once; the group's consumers
  share the work. An entry delivered to a consumer stays *pending* (in the group's PEL) until acknowledged.
- A pending entry of a consumer that died is *claimed* by another after it has been idle long enough.
  Every delivery counts: ``Delivery.attempt`` is how many times the entry has been handed out.
- Acknowledging an entry and remembering its event id as processed (``Subscription.commit``) happen in
  one atomic step, so a redelivered event whose processing was committed is skipped, never re-applied.
- Entries that cannot be processed go to the symbol's dead-letter stream, acknowledged in the same step.

Delivery is at least once; with the processed-id check and handlers whose effect is keyed by event id
(deterministic downstream ids, unique constraints) every event takes effect once. ``consumer.Consumer``
runs the loop (retries, dead letters, recovery, shutdown) on top of a ``Subscription``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from smartmarket.bus.topics import StreamNames
from smartmarket.core.errors import RetryableError
from smartmarket.core.events import Message, to_msgpack


class BusUnavailableError(RetryableError):
    """The bus server could not be reached (restarting, network): the same call may succeed later."""


def parse_entry_id(entry_id: str) -> tuple[int, int]:
    """``"1700000000000-3"`` → ``(1700000000000, 3)`` (ids compare as these tuples)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def next_entry_id(entry_id: str) -> str:
    """The smallest id greater than ``entry_id``."""
    ms, seq = parse_entry_id(entry_id)
    return f"{ms}-{seq + 1}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One entry handed to a consumer.

    ``payload`` is ``None`` when the entry was trimmed from the stream before this (re)delivery.
    ``attempt`` is the group's delivery count of this entry: 1 on the first delivery.
    """

    stream: str
    entry_id: str
    payload: bytes | None
    attempt: int


@dataclass(frozen=True, slots=True)
class Processed:
    """A delivery whose handler succeeded, with the event id to remember as processed."""

    delivery: Delivery
    event_id: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry that could not be processed, as kept in the dead-letter stream."""

    entry_id: str
    stream: str
    group: str
    consumer: str
    original_id: str
    attempts: int
    reason: str
    error: str
    payload: bytes
    ts_ms: int


# A stage's handler: the decoded message plus where it came from. Raising means "failed, retry later".
Handler = Callable[[Message, Delivery], Awaitable[None]]

# Why an entry was dead-lettered.
REASON_UNDECODABLE = "undecodable"
REASON_HANDLER_ERROR = "handler_error"
REASON_TOO_MANY_DELIVERIES = "too_many_deliveries"


class Subscription(ABC):
    """One consumer of one consumer group on one stream: the primitives ``consumer.Consumer`` is built on."""

    stream: str
    group: str
    consumer: str

    @abstractmethod
    async def ensure_group(self) -> None:
        """Create the group (reading from the stream's first entry) if it does not exist."""

    @abstractmethod
    async def read_new(self, count: int, block_ms: int) -> list[Delivery]:
        """Up to ``count`` entries never delivered to the group; waits up to ``block_ms`` for the first."""

    @abstractmethod
    async def read_pending(self, after: str, count: int) -> list[Delivery]:
        """Redeliver this consumer's own pending entries with id > ``after`` (``"0"``: all), counting it."""

    @abstractmethod
    async def claim_stale(self, min_idle_ms: int, count: int) -> int:
        """Move up to ``count`` entries pending for at least ``min_idle_ms`` (any consumer's) to this one.

        Claimed entries are not redelivered here: the next ``read_pending`` returns them. Returns how many.
        """

    @abstractmethod
    async def processed(self, event_ids: Sequence[str]) -> list[bool]:
        """For each id: has this group already committed it (within the remembered window)?"""

    @abstractmethod
    async def commit(self, done: Sequence[Processed], ack_only: Sequence[Delivery] = ()) -> None:
        """Atomically remember ``done`` event ids as processed and acknowledge ``done`` and ``ack_only``."""

    @abstractmethod
    async def dead_letter(self, delivery: Delivery, reason: str, error: str) -> None:
        """Atomically copy the entry (payload, reason, error) to the dead-letter stream and acknowledge it."""

    async def reconnected(self) -> None:  # noqa: B027 - optional hook
        """The bus is reachable again after an outage: make up for what the server may have lost meanwhile."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what this subscription holds (connections)."""


class Bus(ABC):
    """Streams of events per (topic, symbol), read by consumer groups.

    ``scope`` keys the groups' processed-id sets: ``bind_scope`` ties it to the event store a deployment records
    into, so marks left by a run on another store never make this one skip an event.
    """

    url: str
    names: StreamNames
    scope: str = ""
    outlives_process: bool = True
    """Entries outlive the publishing and consuming processes (a restarted worker is redelivered what was not
    acknowledged). False for the in-process bus, whose entries die with the process."""

    @abstractmethod
    async def publish_raw(self, topic: str, symbol: str, payloads: Sequence[bytes]) -> list[str]:
        """Append encoded payloads in order; returns their entry ids. Waits while the backlog is full."""

    async def publish(self, topic: str, symbol: str, message: Message) -> str:
        """Append one message (msgpack); returns its entry id."""
        return (await self.publish_raw(topic, symbol, [to_msgpack(message)]))[0]

    async def publish_many(self, topic: str, symbol: str, messages: Sequence[Message]) -> list[str]:
        """Append messages in order in one round trip; returns their entry ids."""
        return await self.publish_raw(topic, symbol, [to_msgpack(m) for m in messages])

    @abstractmethod
    def subscription(self, topic: str, symbol: str, group: str, consumer: str) -> Subscription:
        """A reader for ``consumer`` in ``group`` on the (topic, symbol) stream (call ``ensure_group`` first)."""

    async def ensure_group(self, topic: str, symbol: str, group: str) -> None:
        """Declare a consumer group before publishing, so backpressure counts it from the first entry."""
        sub = self.subscription(topic, symbol, group, "declare")
        try:
            await sub.ensure_group()
        finally:
            await sub.close()

    @abstractmethod
    async def backlog(self, topic: str, symbol: str) -> int:
        """The largest number of entries any group has not acknowledged yet (0 without groups)."""

    @abstractmethod
    async def stream_length(self, topic: str, symbol: str) -> int:
        """How many entries the stream holds (0 when it does not exist)."""

    @abstractmethod
    async def trim_acknowledged(self, topic: str, symbol: str, durable_upto: str) -> int:
        """Drop entries with id <= ``durable_upto`` that every group has acknowledged; returns how many.

        The caller passes the last entry id it knows is in the durable ``EventStore``: the bus never drops
        an entry the store does not hold, nor one a group still has to process.
        """

    @abstractmethod
    async def read_dead_letters(self, symbol: str, count: int = 100) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of a symbol."""

    @abstractmethod
    async def delete_namespace(self) -> int:
        """Delete every stream and key of this bus's namespace (tests, resets); returns how many."""

    async def bind_scope(self, holds: Callable[[str, int], Awaitable[bool]] | None = None) -> str:
        """Choose the processed-id scope for this deployment (a bus that dies with its process needs none).

        ``holds(event_id, ts_event)``: whether the deployment's event store holds that event."""
        return self.scope

    async def set_probe(self, event_id: str, ts_event: int) -> None:  # noqa: B027 - optional hook
        """Remember one event recorded under the current scope (what ``bind_scope`` checks a store against)."""

    async def unacknowledged(self) -> int:
        """Entries this process published that some declared group has not acknowledged yet (0: all taken)."""
        return 0

    async def ping(self) -> None:  # noqa: B027 - optional hook: the in-process bus is always reachable
        """Return when the bus answers; ``BusUnavailableError`` when it does not."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


__all__ = [
    "REASON_HANDLER_ERROR",
    "REASON_TOO_MANY_DELIVERIES",
    "REASON_UNDECODABLE",
    "Bus",
    "BusUnavailableError",
    "DeadLetter",
    "Delivery",
    "Handler",
    "Processed",
    "Subscription",
    "next_entry_id",
    "parse_entry_id",
]
