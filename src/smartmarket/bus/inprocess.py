"""In-process bus (the default): asyncio, no server, the same semantics as the Redis Streams adapter.

Each (topic, symbol) stream is an ordered log of entries with, per consumer group, a read cursor and a
pending-entries list (consumer, delivery count, delivery time): acknowledgement, redelivery of one's own
pending entries, claiming a dead consumer's entries, delivery counts, dead letters and the processed-id
check behave as on Redis, so a stage behaves the same on both.

Bounded: ``publish`` awaits while a group of the stream has ``max_backlog`` or more unacknowledged
entries (backpressure), and an entry is dropped from memory once every group has acknowledged it. All
of it lives and dies with the process and one event loop; the durable record is the ``EventStore``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from smartmarket.bus.base import (
    Bus,
    DeadLetter,
    Delivery,
    Processed,
    Subscription,
    parse_entry_id,
)
from smartmarket.bus.topics import DEFAULT_NAMESPACE, StreamNames
from smartmarket.core.errors import ConfigError
from smartmarket.core.timeutil import now_ms

DEFAULT_MAX_BACKLOG = 10_000


def _entry_id(seq: int) -> str:
    return f"0-{seq}"


def _seq(entry_id: str) -> int:
    ms, seq = parse_entry_id(entry_id)
    return seq if ms == 0 else 2**62  # an id from another clock is "after everything" here


@dataclass(slots=True)
class _Pending:
    consumer: str
    deliveries: int
    delivered_at: float  # time.monotonic()


@dataclass(slots=True)
class _Group:
    last_delivered: int = 0
    pending: dict[int, _Pending] = field(default_factory=dict)  # seq ascending (delivery order)
    processed: dict[str, float] = field(default_factory=dict)  # event id -> time.monotonic() of commit


@dataclass(slots=True)
class _Stream:
    name: str
    dlq: str
    entries: deque[bytes] = field(default_factory=deque)  # payloads of seq first_seq, first_seq + 1, ...
    first_seq: int = 1
    groups: dict[str, _Group] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def next_seq(self) -> int:
        return self.first_seq + len(self.entries)

    def get(self, seq: int) -> bytes | None:
        return self.entries[seq - self.first_seq] if self.first_seq <= seq < self.next_seq else None

    def append(self, payload: bytes) -> int:
        self.entries.append(payload)
        return self.next_seq - 1

    def drop_before(self, seq: int) -> int:
        """Forget entries with a sequence number below ``seq``; returns how many."""
        n = max(0, min(seq, self.next_seq) - self.first_seq)
        for _ in range(n):
            self.entries.popleft()
        self.first_seq += n
        return n

    def group_backlog(self, group: _Group) -> int:
        return len(group.pending) + (self.next_seq - 1 - group.last_delivered)

    def backlog(self) -> int:
        return max((self.group_backlog(g) for g in self.groups.values()), default=0)

    def oldest_needed(self) -> int:
        """The smallest sequence number some group has not acknowledged yet."""
        return min(min(g.pending, default=g.last_delivered + 1) for g in self.groups.values())

    def drop_acknowledged(self) -> None:
        """Forget entries every group has acknowledged (kept while no group exists, as on Redis)."""
        if self.groups:
            self.drop_before(self.oldest_needed())


class InProcessSubscription(Subscription):
    def __init__(self, bus: InProcessBus, stream: _Stream, group: str, consumer: str) -> None:
        self._bus = bus
        self._stream = stream
        self.stream = stream.name
        self.group = group
        self.consumer = consumer

    def _group(self) -> _Group:
        try:
            return self._stream.groups[self.group]
        except KeyError:
            raise ConfigError(f"no consumer group {self.group!r} on {self.stream}", hint="ensure_group first") from None

    async def ensure_group(self) -> None:
        if self.group not in self._stream.groups:
            self._stream.groups[self.group] = _Group(last_delivered=self._stream.first_seq - 1)

    async def read_new(self, count: int, block_ms: int) -> list[Delivery]:
        stream, group = self._stream, self._group()

        def has_new() -> bool:
            return stream.next_seq - 1 > group.last_delivered

        async with stream.changed:
            if not has_new() and block_ms > 0:
                try:
                    await asyncio.wait_for(stream.changed.wait_for(has_new), block_ms / 1000)
                except TimeoutError:
                    return []
            out: list[Delivery] = []
            now = time.monotonic()
            seq = group.last_delivered + 1
            while seq < stream.next_seq and len(out) < count:
                payload = stream.get(seq)
                if payload is not None:
                    group.pending[seq] = _Pending(self.consumer, 1, now)
                    out.append(Delivery(self.stream, _entry_id(seq), payload, 1))
                group.last_delivered = seq
                seq += 1
            return out

    async def read_pending(self, after: str, count: int) -> list[Delivery]:
        group = self._group()
        floor = 0 if after in ("0", "0-0") else _seq(after)
        out: list[Delivery] = []
        now = time.monotonic()
        for seq in sorted(group.pending):
            if len(out) >= count:
                break
            entry = group.pending[seq]
            if seq <= floor or entry.consumer != self.consumer:
                continue
            entry.deliveries += 1
            entry.delivered_at = now
            out.append(Delivery(self.stream, _entry_id(seq), self._stream.get(seq), entry.deliveries))
        return out

    async def claim_stale(self, min_idle_ms: int, count: int) -> int:
        group = self._group()
        now = time.monotonic()
        claimed = 0
        for entry in group.pending.values():
            if claimed >= count:
                break
            if (now - entry.delivered_at) * 1000 >= min_idle_ms:
                entry.consumer = self.consumer
                entry.delivered_at = now
                claimed += 1
        return claimed

    async def processed(self, event_ids: Sequence[str]) -> list[bool]:
        seen = self._group().processed
        return [eid in seen for eid in event_ids]

    async def commit(self, done: Sequence[Processed], ack_only: Sequence[Delivery] = ()) -> None:
        group = self._group()
        now = time.monotonic()
        for item in done:
            group.processed[item.event_id] = now
        self._bus.forget_expired(group, now)
        await self._ack([p.delivery for p in done] + list(ack_only))

    async def _ack(self, deliveries: Sequence[Delivery]) -> None:
        group = self._group()
        for d in deliveries:
            group.pending.pop(_seq(d.entry_id), None)
        self._stream.drop_acknowledged()
        async with self._stream.changed:
            self._stream.changed.notify_all()

    async def dead_letter(self, delivery: Delivery, reason: str, error: str) -> None:
        letters = self._bus.dead_letters.setdefault(self._stream.dlq, [])
        letters.append(
            DeadLetter(
                entry_id=_entry_id(len(letters) + 1),
                stream=self.stream,
                group=self.group,
                consumer=self.consumer,
                original_id=delivery.entry_id,
                attempts=delivery.attempt,
                reason=reason,
                error=error,
                payload=delivery.payload or b"",
                ts_ms=now_ms(),
            )
        )
        await self._ack([delivery])


class InProcessBus(Bus):
    """Streams in this process's memory. ``max_backlog``: unacknowledged entries per group before publish waits."""

    outlives_process = False

    def __init__(
        self,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        max_backlog: int | None = DEFAULT_MAX_BACKLOG,
        processed_ttl_s: float = 24 * 3600,
    ) -> None:
        if max_backlog is not None and max_backlog < 1:
            raise ConfigError(f"max_backlog must be >= 1, got {max_backlog}")
        self.names = StreamNames(namespace)
        self.url = f"memory://?namespace={namespace}"
        self.max_backlog = max_backlog
        self.processed_ttl_s = processed_ttl_s
        self.dead_letters: dict[str, list[DeadLetter]] = {}
        self._streams: dict[str, _Stream] = {}
        self._last_expiry = time.monotonic()

    def _stream(self, topic: str, symbol: str) -> _Stream:
        name = self.names.stream(topic, symbol)
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream(name, self.names.dead_letters(symbol))
        return stream

    def forget_expired(self, group: _Group, now: float) -> None:
        """Drop processed ids older than the TTL (checked at most once a minute)."""
        if now - self._last_expiry < 60:
            return
        self._last_expiry = now
        horizon = now - self.processed_ttl_s
        for eid in [eid for eid, t in group.processed.items() if t < horizon]:
            del group.processed[eid]

    async def publish_raw(self, topic: str, symbol: str, payloads: Sequence[bytes]) -> list[str]:
        stream = self._stream(topic, symbol)
        ids: list[str] = []
        limit = self.max_backlog
        async with stream.changed:
            for payload in payloads:
                if limit is not None and stream.backlog() >= limit:
                    stream.changed.notify_all()
                    await stream.changed.wait_for(lambda: stream.backlog() < limit)
                ids.append(_entry_id(stream.append(bytes(payload))))
            stream.changed.notify_all()
        return ids

    def subscription(self, topic: str, symbol: str, group: str, consumer: str) -> InProcessSubscription:
        self.names.processed(topic, symbol, group)  # validates the group name
        return InProcessSubscription(self, self._stream(topic, symbol), group, consumer)

    async def backlog(self, topic: str, symbol: str) -> int:
        return self._stream(topic, symbol).backlog()

    async def stream_length(self, topic: str, symbol: str) -> int:
        return len(self._stream(topic, symbol).entries)

    async def trim_acknowledged(self, topic: str, symbol: str, durable_upto: str) -> int:
        stream = self._stream(topic, symbol)
        upto = _seq(durable_upto) + 1
        if stream.groups:
            upto = min(upto, stream.oldest_needed())
        return stream.drop_before(upto)

    async def read_dead_letters(self, symbol: str, count: int = 100) -> list[DeadLetter]:
        return list(self.dead_letters.get(self.names.dead_letters(symbol), []))[:count]

    async def delete_namespace(self) -> int:
        n = len(self._streams) + len(self.dead_letters)
        self._streams.clear()
        self.dead_letters.clear()
        return n


__all__ = ["DEFAULT_MAX_BACKLOG", "InProcessBus", "InProcessSubscription"]
