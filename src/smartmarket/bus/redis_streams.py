"""Redis Streams adapter (redis-py asyncio): the bus shared by processes and machines.

- ``XADD`` without ``MAXLEN``: entries are dropped only by ``trim_acknowledged`` (``XTRIM MINID``), driven
  by the caller that knows what the durable ``EventStore`` holds, and never past an entry a group still needs.
- One consumer group per stage (``XGROUP CREATE … 0 MKSTREAM``), ``XREADGROUP … BLOCK``, ``XACK``.
- Recovery: ``XAUTOCLAIM … JUSTID`` moves a dead consumer's idle entries to this one; ``read_pending``
  (``XREADGROUP`` from id ``0``) redelivers them with their delivery count (``XPENDING``).
- The processed-id set of a group is a sorted set (score = commit time, ms, pruned after a TTL) in the
  same hash slot as the stream, so "mark processed + XACK" and "XADD dead letter + XACK" are each one MULTI.
- Batches go through three small Lua scripts (append many, read many, which-ids-were-processed), each one
  round trip with one flat reply: redis-py's pure-Python reply parser costs tens of µs per entry of a
  nested reply, which would cap the bus far below its target. Blocking waits still use ``XREADGROUP BLOCK``.
- Backpressure: ``publish`` waits while a group's un-acked backlog (``XINFO GROUPS`` pending + lag)
  exceeds ``max_backlog`` (checked every ``backlog_check_every`` entries).
- Timeouts: redis-py 8 defaults ``socket_timeout`` to 5 s, which would cut a longer ``XREADGROUP BLOCK``
  short, so blocking reads use their own client whose timeout exceeds the longest block (``max_block_ms``).
- redis-py's own retries are off: a lost connection surfaces as ``BusUnavailableError``. Publishing retries
  with backoff for up to ``reconnect_timeout_s``; ``consumer.Consumer`` reconnects and re-reads its pending
  entries first. A publish retried after a lost reply may append an entry twice: consumers skip the second
  copy by its event id.
- Losing the streams (a server restarted *empty*, ``FLUSHALL``, a deleted stream): every publisher keeps an
  *outbox* of the entries it appended that some declared group has not acknowledged yet. Each symbol has an
  *epoch* key; the append script refuses to write when the epoch changed or vanished, or when a stream holding
  outbox entries vanished or was recreated empty (its last generated id behind this writer's last unacknowledged
  entry: another consumer's recovery re-creates groups with ``MKSTREAM``), and an append never runs while this
  process recovers, so nothing new lands before what was lost. ``recover`` (run on that refusal and on
  ``NOGROUP``/``UNBLOCKED`` in any read, claim or pending call) recreates every declared group from the
  stream's first entry, re-publishes the outbox of the lost streams in order and logs a WARNING with counts.
- Processed-id sets are keyed by ``scope``, a token bound to the event store the deployment records into
  (``bind_scope``), so a new store on an old Redis database never inherits "already processed" marks.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from smartmarket.bus.base import (
    Bus,
    BusUnavailableError,
    DeadLetter,
    Delivery,
    Processed,
    Subscription,
    next_entry_id,
    parse_entry_id,
)
from smartmarket.bus.topics import DEFAULT_NAMESPACE, StreamNames, check_name
from smartmarket.core.errors import ConfigError
from smartmarket.core.redaction import redact_text, redact_url, url_secrets
from smartmarket.core.timeutil import now_ms
from smartmarket.core.types import normalize_symbol

T = TypeVar("T")
log = logging.getLogger(__name__)

# KEYS[1] stream, KEYS[2] the symbol's epoch key; ARGV[1] the epoch this writer knows, ARGV[2] the id of the last
# entry this writer appended that some group has not acknowledged yet ('' when none), ARGV[3..] payloads. Refuses
# (SMLOST) when the epoch changed or vanished, or when that entry was lost: the stream is gone, or was recreated
# (``XGROUP CREATE … MKSTREAM`` by a recovering consumer makes an empty stream whose last generated id is 0-0,
# and trimming never lowers it). What was lost must be re-published before anything new. Returns the ids.
APPEND_SCRIPT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('SMLOST epoch')
end
if ARGV[2] ~= '' then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('SMLOST stream')
  end
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  local generated = '0-0'
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then generated = info[i + 1] end
  end
  local gms, gseq = string.match(generated, '(%d+)-(%d+)')
  local wms, wseq = string.match(ARGV[2], '(%d+)-(%d+)')
  gms, gseq, wms, wseq = tonumber(gms), tonumber(gseq), tonumber(wms), tonumber(wseq)
  if gms < wms or (gms == wms and gseq < wseq) then
    return redis.error_reply('SMLOST stream')
  end
end
local ids = {}
for i = 3, #ARGV do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'p', ARGV[i])
end
return table.concat(ids, ' ')
"""

# KEYS[1] the run marker; ARGV[1] the scope token, ARGV[2] the probe ("event_id ts"). Sets the probe once, and only
# while the marker still names this scope.
PROBE_SCRIPT = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return redis.call('HSETNX', KEYS[1], 'probe', ARGV[2])
end
return 0
"""

# KEYS[1] the run marker; ARGV[1] the token found stale, ARGV[2] the new one. Replaces the scope only if no other
# process replaced it first; returns the token now in force.
RESCOPE_SCRIPT = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('HSETNX', KEYS[1], 'token', ARGV[2])
return redis.call('HGET', KEYS[1], 'token')
"""

# KEYS[1] stream; ARGV group, consumer, count. XREADGROUP '>' without blocking; returns a msgpack array
# [id1, payload1, id2, payload2, ...] or false when nothing is new.
READ_NEW_SCRIPT = """
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
if not reply then return false end
local flat = {}
for _, entry in ipairs(reply[1][2]) do
  flat[#flat + 1] = entry[1]
  flat[#flat + 1] = entry[2][2]
end
return cmsgpack.pack(flat)
"""

# KEYS[1] processed set; ARGV event ids. Returns one character per id: '1' processed, '0' not.
PROCESSED_SCRIPT = """
local scores = redis.call('ZMSCORE', KEYS[1], unpack(ARGV))
local flags = {}
for i = 1, #ARGV do
  flags[i] = scores[i] and '1' or '0'
end
return table.concat(flags)
"""

DEFAULT_MAX_BACKLOG = 10_000
DEFAULT_OUTBOX_LIMIT = 100_000  # entries kept per stream for re-publication (beyond: the oldest are forgotten)
PAYLOAD_FIELD = b"p"  # the entry field holding the payload (the scripts use 'p' too)
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stream_entries(reply: Any) -> list[tuple[str, dict[bytes, bytes] | None]]:
    """Entries of an ``XREADGROUP`` reply (``[[stream, entries]]``; a deleted entry has no fields)."""
    if not reply:
        return []
    per_stream = list(reply.values()) if isinstance(reply, dict) else [entries for _, entries in reply]
    return [(_text(entry_id), fields or None) for entries in per_stream for entry_id, fields in entries]


def _group_lost(exc: ResponseError) -> bool:
    """The stream or its group is gone (deleted, or a server restarted without persistence)."""
    text = str(exc)
    return "NOGROUP" in text or "UNBLOCKED" in text


def _token() -> str:
    return uuid.uuid4().hex[:12]


def _dead_letter(entry_id: bytes | str, fields: dict[Any, Any]) -> DeadLetter:
    """A dead-letter stream entry as written by ``RedisSubscription.dead_letter``."""
    f = {_text(k): v for k, v in fields.items()}
    return DeadLetter(
        entry_id=_text(entry_id),
        stream=_text(f["stream"]),
        group=_text(f["group"]),
        consumer=_text(f["consumer"]),
        original_id=_text(f["id"]),
        attempts=int(f["attempts"]),
        reason=_text(f["reason"]),
        error=_text(f["error"]),
        payload=bytes(f["payload"]),
        ts_ms=int(f["ts"]),
    )


def _min_id(a: str, b: str) -> str:
    return a if parse_entry_id(a) <= parse_entry_id(b) else b


class RedisSubscription(Subscription):
    def __init__(self, bus: RedisStreamsBus, topic: str, symbol: str, group: str, consumer: str) -> None:
        self._bus = bus
        self.stream = bus.names.stream(topic, symbol)
        self.group = group
        self.consumer = consumer
        self.topic = topic
        self.symbol = normalize_symbol(symbol)
        self._dlq = bus.names.dead_letters(symbol)
        self._last_prune = 0.0

    @property
    def _done_key(self) -> str:
        return self._bus.names.processed(self.topic, self.symbol, self.group, self._bus.scope)

    async def ensure_group(self) -> None:
        self._bus.declared.add((self.topic, self.symbol, self.group))
        await self._bus.create_group(self.stream, self.group)
        await self._bus.epoch(self.symbol)

    async def _lost(self, exc: ResponseError) -> None:
        """``NOGROUP``/``UNBLOCKED``: the stream or the group vanished. Recover, then read from the stream's start."""
        if not _group_lost(exc):
            raise exc
        await self._bus.recover(self.symbol, f"{self.stream} lost group {self.group!r}")
        await self.ensure_group()

    async def reconnected(self) -> None:
        """After an outage the server may have restarted empty and another process may have recovered first: it
        recreated the groups and a new epoch, so no read here meets ``NOGROUP`` and no refused append would
        tell this process. Its outbox (an order it published, lost with the server) must be re-published all the
        same, or whoever waits for that order's answer waits for ever. ``recover`` compares the epoch; cheap
        when nothing was lost."""
        await self._bus.recover(self.symbol, f"{self.stream}: reconnected")

    def _delivery(self, entry_id: str, fields: dict[bytes, bytes] | None, attempt: int) -> Delivery:
        payload = None if fields is None else fields.get(PAYLOAD_FIELD)
        return Delivery(self.stream, entry_id, payload, attempt)

    async def read_new(self, count: int, block_ms: int) -> list[Delivery]:
        try:
            blob = await self._bus.guarded(
                self._bus.read_new_script(keys=[self.stream], args=[self.group, self.consumer, count])
            )
            if blob:
                flat = msgpack.unpackb(blob, raw=True)
                return [Delivery(self.stream, _text(flat[i]), flat[i + 1], 1) for i in range(0, len(flat), 2)]
            if block_ms <= 0:
                return []
            block = min(block_ms, self._bus.max_block_ms)
            reply = await self._bus.guarded(
                self._bus.reader.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=count, block=block)
            )
        except ResponseError as exc:
            await self._lost(exc)  # the server lost the group (restarted without persistence, flushed)
            return []
        return [self._delivery(eid, fields, 1) for eid, fields in _stream_entries(reply)]

    async def read_pending(self, after: str, count: int) -> list[Delivery]:
        start = "-" if after in ("0", "0-0") else f"({after}"
        pipe = self._bus.client.pipeline(transaction=True)
        pipe.xreadgroup(self.group, self.consumer, {self.stream: after}, count=count)
        pipe.xpending_range(self.stream, self.group, min=start, max="+", count=count, consumername=self.consumer)
        try:
            reply, pending = await self._bus.guarded(pipe.execute())
        except ResponseError as exc:
            await self._lost(exc)
            return []
        counts = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return [self._delivery(eid, fields, counts.get(eid, 1)) for eid, fields in _stream_entries(reply)]

    async def claim_stale(self, min_idle_ms: int, count: int) -> int:
        try:
            claimed = await self._bus.guarded(
                self._bus.client.xautoclaim(
                    self.stream, self.group, self.consumer, min_idle_ms, start_id="0-0", count=count, justid=True
                )
            )
        except ResponseError as exc:
            await self._lost(exc)
            return 0
        return len(claimed)

    async def processed(self, event_ids: Sequence[str]) -> list[bool]:
        if not event_ids:
            return []
        flags = await self._bus.guarded(self._bus.processed_script(keys=[self._done_key], args=list(event_ids)))
        return [flag == ord("1") for flag in flags]

    async def commit(self, done: Sequence[Processed], ack_only: Sequence[Delivery] = ()) -> None:
        entry_ids = [p.delivery.entry_id for p in done] + [d.entry_id for d in ack_only]
        if not entry_ids:
            return
        now = now_ms()
        ttl_ms = int(self._bus.processed_ttl_s * 1000)
        pipe = self._bus.client.pipeline(transaction=True)
        if done:
            pipe.zadd(self._done_key, {p.event_id: now for p in done})
            pipe.pexpire(self._done_key, ttl_ms)
        pipe.xack(self.stream, self.group, *entry_ids)
        prune = time.monotonic() - self._last_prune > 60  # forget ids older than the TTL, once a minute
        if prune:
            pipe.zremrangebyscore(self._done_key, "-inf", now - ttl_ms)
        await self._bus.guarded(pipe.execute())
        if prune:
            self._last_prune = time.monotonic()

    async def dead_letter(self, delivery: Delivery, reason: str, error: str) -> None:
        fields: dict[Any, Any] = {
            "stream": self.stream,
            "group": self.group,
            "consumer": self.consumer,
            "id": delivery.entry_id,
            "attempts": delivery.attempt,
            "reason": reason,
            "error": error[:8000],
            "payload": delivery.payload or b"",
            "ts": now_ms(),
        }
        pipe = self._bus.client.pipeline(transaction=True)
        pipe.xadd(self._dlq, fields)
        pipe.xack(self.stream, self.group, delivery.entry_id)
        await self._bus.guarded(pipe.execute())


class RedisStreamsBus(Bus):
    """The bus on a Redis server (``redis://host:port/db``)."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        max_backlog: int | None = DEFAULT_MAX_BACKLOG,
        backlog_check_every: int | None = None,
        socket_timeout_s: float = 5.0,
        max_block_ms: int = 5_000,
        reconnect_timeout_s: float = 30.0,
        processed_ttl_s: float = 24 * 3600,
        pipeline_chunk: int = 1_000,
        outbox_limit: int = DEFAULT_OUTBOX_LIMIT,
        outbox_prune_s: float = 1.0,
    ) -> None:
        if max_backlog is not None and max_backlog < 1:
            raise ConfigError(f"max_backlog must be >= 1, got {max_backlog}")
        self.url = url
        self._secrets = url_secrets(url)  # masked in driver messages (the one rule: core.redaction)
        self.names = StreamNames(namespace)
        self.max_backlog = max_backlog
        self.backlog_check_every = backlog_check_every or max(1, (max_backlog or 0) // 20)
        self.max_block_ms = max_block_ms
        self.reconnect_timeout_s = reconnect_timeout_s
        self.processed_ttl_s = processed_ttl_s
        self.pipeline_chunk = pipeline_chunk
        self.backpressure_waits = 0
        self.outbox_limit = outbox_limit
        self.outbox_prune_s = outbox_prune_s
        self.declared: set[tuple[str, str, str]] = set()  # (topic, symbol, group) this process declared or reads
        self.recoveries = 0
        self.republished = 0
        self._unchecked: dict[str, int] = {}
        self._epochs: dict[str, str] = {}  # symbol -> the epoch this process's outbox belongs to
        self._outbox: dict[str, deque[tuple[str, bytes]]] = {}  # stream -> (entry id, payload) not acked by all
        self._outbox_symbol: dict[str, str] = {}
        self._outbox_pruned: dict[str, float] = {}
        self._overflowing: set[str] = set()  # streams whose outbox overflowed (warned once)
        self._recovering = asyncio.Lock()
        no_retry = Retry(NoBackoff(), 0)
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s, retry=no_retry
        )
        self.reader: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=max_block_ms / 1000 + socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            retry=no_retry,
        )
        self.append_script = self.client.register_script(APPEND_SCRIPT)
        self.probe_script = self.client.register_script(PROBE_SCRIPT)
        self.rescope_script = self.client.register_script(RESCOPE_SCRIPT)
        self.read_new_script = self.client.register_script(READ_NEW_SCRIPT)
        self.processed_script = self.client.register_script(PROCESSED_SCRIPT)

    async def guarded(self, call: Awaitable[T]) -> T:
        """Await a Redis call, turning a lost connection into ``BusUnavailableError``."""
        try:
            return await call
        except _UNAVAILABLE as exc:
            raise BusUnavailableError(
                f"Redis unavailable ({redact_text(str(exc), also=self._secrets)})", where=redact_url(self.url)
            ) from exc

    async def ping(self) -> None:
        await self.guarded(self.client.ping())

    async def with_reconnect(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Retry ``attempt`` with exponential backoff while Redis is unavailable, up to the reconnect timeout."""
        deadline = time.monotonic() + self.reconnect_timeout_s
        delay = 0.05
        while True:
            try:
                return await attempt()
            except BusUnavailableError:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def publish_raw(self, topic: str, symbol: str, payloads: Sequence[bytes]) -> list[str]:
        stream = self.names.stream(topic, symbol)
        symbol = normalize_symbol(symbol)
        ids: list[str] = []
        for start in range(0, len(payloads), self.pipeline_chunk):
            chunk = list(payloads[start : start + self.pipeline_chunk])
            await self._wait_for_room(stream, len(chunk))

            async def append(chunk: Sequence[bytes] = chunk) -> list[str]:
                return await self._append(stream, symbol, chunk)

            for _ in range(10):  # each refusal runs a recovery first; more than a few in a row is a flapping server
                try:
                    # never between a recovery's recreated (empty) stream and its re-published outbox: the new
                    # entries would land before the lost ones
                    async with self._recovering:
                        appended = await self.with_reconnect(append)
                        self._remember(stream, symbol, appended, chunk)
                    break
                except ResponseError as exc:
                    if "SMLOST" not in str(exc):
                        raise
                    await self.recover(symbol, f"{stream}: {str(exc).split(' ', 1)[-1]} lost")
            else:
                raise BusUnavailableError(f"{stream} keeps losing its entries", where=redact_url(self.url))
            ids.extend(appended)
        await self._maybe_prune(stream)
        return ids

    async def _append(self, stream: str, symbol: str, chunk: Sequence[bytes]) -> list[str]:
        epoch = await self.epoch(symbol)
        box = self._outbox.get(stream)
        last_unacknowledged = box[-1][0] if box else ""
        reply = await self.guarded(
            self.append_script(keys=[stream, self.names.epoch(symbol)], args=[epoch, last_unacknowledged, *chunk])
        )
        return _text(reply).split(" ")

    def _remember(self, stream: str, symbol: str, ids: Sequence[str], payloads: Sequence[bytes]) -> None:
        """Keep appended entries until every declared group has acknowledged them (re-published if lost)."""
        box = self._outbox.setdefault(stream, deque())
        self._outbox_symbol[stream] = symbol
        box.extend(zip(ids, payloads, strict=True))
        overflow = len(box) - self.outbox_limit
        if overflow > 0:
            for _ in range(overflow):
                box.popleft()
            if stream not in self._overflowing:  # once per episode: a long backlog would repeat it every chunk
                self._overflowing.add(stream)
                log.warning("%s: outbox over %d entries (no group acknowledges them); the oldest cannot be "
                            "re-published if the stream is lost", stream, self.outbox_limit)  # fmt: skip
        else:
            self._overflowing.discard(stream)

    async def _maybe_prune(self, stream: str) -> None:
        now = time.monotonic()
        if now - self._outbox_pruned.get(stream, 0.0) >= self.outbox_prune_s:
            self._outbox_pruned[stream] = now
            await self.prune_outbox(stream)

    async def prune_outbox(self, stream: str | None = None) -> int:
        """Forget outbox entries every declared group has acknowledged; returns how many entries remain."""
        for name in [stream] if stream is not None else list(self._outbox):
            box = self._outbox.get(name)
            if not box:
                continue
            keep_from = await self._acknowledged_below(name)
            if keep_from is None:
                continue
            bound = parse_entry_id(keep_from)
            while box and parse_entry_id(box[0][0]) < bound:
                box.popleft()
        return sum(len(b) for b in self._outbox.values())

    async def _acknowledged_below(self, stream: str) -> str | None:
        """The smallest entry id some group of ``stream`` still needs; None when a declared group is missing
        (lost, or not created yet): then nothing can be called acknowledged."""
        try:
            groups = await self.guarded(self.client.xinfo_groups(stream))
        except ResponseError:
            return None
        present = {_text(g["name"]) for g in groups}
        wanted = {g for t, s, g in self.declared if self.names.stream(t, s) == stream}
        if not groups or not wanted <= present:
            return None
        keep_from: str | None = None
        for group in groups:
            candidate = next_entry_id(_text(group["last-delivered-id"]))
            summary = await self.guarded(self.client.xpending(stream, group["name"]))
            if summary.get("min"):
                candidate = _min_id(candidate, _text(summary["min"]))
            keep_from = candidate if keep_from is None else _min_id(keep_from, candidate)
        return keep_from

    async def unacknowledged(self) -> int:
        box = await self.with_reconnect(lambda: self.prune_outbox())
        return box

    # ------------------------------------------------------------------------------------ losing the streams
    async def create_group(self, stream: str, group: str) -> None:
        """``XGROUP CREATE stream group 0 MKSTREAM`` (an existing group is left as it is)."""
        try:
            await self.guarded(self.client.xgroup_create(stream, group, id="0", mkstream=True))
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def ensure_group(self, topic: str, symbol: str, group: str) -> None:
        self.declared.add((topic, normalize_symbol(symbol), group))
        await self.create_group(self.names.stream(topic, symbol), group)
        await self.epoch(symbol)

    async def epoch(self, symbol: str) -> str:
        """The symbol's epoch as this process knows it (read, or created, on first use)."""
        known = self._epochs.get(symbol)
        if known is None:
            known = self._epochs[symbol] = await self._current_epoch(symbol)
        return known

    async def _current_epoch(self, symbol: str) -> str:
        key, token = self.names.epoch(symbol), _token()
        await self.guarded(self.client.set(key, token, nx=True))
        found: Any = await self.guarded(self.client.get(key))
        return token if found is None else _text(found)

    async def recover(self, symbol: str, why: str) -> None:
        """After a loss on ``symbol``'s streams: recreate every declared group, re-publish the lost outboxes.

        Idempotent and cheap when nothing was lost (another consumer of this process recovered already)."""
        symbol = normalize_symbol(symbol)
        async with self._recovering:
            await self.with_reconnect(lambda: self._recover(symbol, why))

    async def _recover(self, symbol: str, why: str) -> None:
        previous = self._epochs.get(symbol)
        current = await self._current_epoch(symbol)
        epoch_lost = previous is not None and previous != current
        groups = 0
        for topic, sym, group in sorted(self.declared):
            if sym == symbol:
                await self.create_group(self.names.stream(topic, sym), group)
                groups += 1
        republished = streams = 0
        for stream, box in self._outbox.items():
            if self._outbox_symbol.get(stream) != symbol or not box:
                continue
            if not epoch_lost:
                first = box[0][0]
                if await self.guarded(self.client.xrange(stream, min=first, max=first, count=1)):
                    continue  # still there: this stream lost nothing
            entries = list(box)
            box.clear()
            for start in range(0, len(entries), self.pipeline_chunk):
                part = entries[start : start + self.pipeline_chunk]
                payloads = [p for _, p in part]
                reply = await self.guarded(
                    self.append_script(keys=[stream, self.names.epoch(symbol)], args=[current, "", *payloads])
                )
                box.extend(zip(_text(reply).split(" "), payloads, strict=True))
            republished += len(entries)
            streams += 1
        self._epochs[symbol] = current
        if self.scope:
            await self.guarded(self.client.hsetnx(self.names.run_marker(), "token", self.scope))
        if epoch_lost or republished:
            self.recoveries += 1
            self.republished += republished
            log.warning(
                "bus lost %s's streams (%s; Redis restarted empty, flushed, or streams deleted): recreated %d "
                "groups, re-published %d entries on %d streams", symbol, why, groups, republished, streams,
            )  # fmt: skip

    # -------------------------------------------------------------------------------------- scope
    async def bind_scope(self, holds: Callable[[str, int], Awaitable[bool]] | None = None) -> str:
        """The processed-id scope of this deployment (``sm:run``), bound to its event store.

        ``holds(event_id, ts_event)`` tells whether the store holds an event: when the marker's probe event is
        not in this store, the processed sets belong to another store and a new scope starts."""
        key = self.names.run_marker()

        async def bind() -> str:
            data = {_text(k): _text(v) for k, v in (await self.guarded(self.client.hgetall(key))).items()}
            token = data.get("token")
            probe = data.get("probe")
            if token and probe and holds is not None:
                event_id, _, ts = probe.partition(" ")
                if not await holds(event_id, int(ts)):
                    fresh = _text(await self.guarded(self.rescope_script(keys=[key], args=[token, _token()])))
                    log.warning("the bus's processed-event marks belong to another event store: new scope %s", fresh)
                    return fresh
            if not token:
                token = _token()
                await self.guarded(self.client.hsetnx(key, "token", token))
                found: Any = await self.guarded(self.client.hget(key, "token"))
                token = token if found is None else _text(found)
            return token

        self.scope = check_name("scope", await self.with_reconnect(bind))
        return self.scope

    async def set_probe(self, event_id: str, ts_event: int) -> None:
        if self.scope:
            marker = self.names.run_marker()
            await self.guarded(self.probe_script(keys=[marker], args=[self.scope, f"{event_id} {int(ts_event)}"]))

    async def _wait_for_room(self, stream: str, adding: int) -> None:
        """Backpressure: wait while some group's backlog is at the bound (checked every N entries)."""
        if self.max_backlog is None:
            return
        unchecked = self._unchecked.get(stream, 0) + adding
        if unchecked < self.backlog_check_every:
            self._unchecked[stream] = unchecked
            return
        self._unchecked[stream] = 0
        delay = 0.002
        while await self.with_reconnect(lambda: self._stream_backlog(stream)) >= self.max_backlog:
            self.backpressure_waits += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _stream_backlog(self, stream: str) -> int:
        try:
            groups = await self.guarded(self.client.xinfo_groups(stream))
        except ResponseError:
            return 0  # no such stream yet
        worst = 0
        for group in groups:
            lag: Any = group.get("lag")
            if lag is None:  # Redis cannot tell (entries deleted in the middle): count the whole stream
                lag = await self.guarded(self.client.xlen(stream))
            worst = max(worst, int(group["pending"]) + int(lag))
        return worst

    def subscription(self, topic: str, symbol: str, group: str, consumer: str) -> RedisSubscription:
        return RedisSubscription(self, topic, symbol, group, consumer)

    async def backlog(self, topic: str, symbol: str) -> int:
        return await self._stream_backlog(self.names.stream(topic, symbol))

    async def stream_length(self, topic: str, symbol: str) -> int:
        return int(await self.guarded(self.client.xlen(self.names.stream(topic, symbol))))

    async def trim_acknowledged(self, topic: str, symbol: str, durable_upto: str) -> int:
        stream = self.names.stream(topic, symbol)
        keep_from = next_entry_id(durable_upto)  # XTRIM MINID drops ids below this
        needed = await self._acknowledged_below(stream)
        if needed is None:  # no group, or a declared group missing (lost): it would need everything
            return 0
        keep_from = _min_id(keep_from, needed)
        trimmed: Any = await self.guarded(self.client.xtrim(stream, minid=keep_from, approximate=False))
        return int(trimmed)

    async def read_dead_letters(self, symbol: str, count: int = 100) -> list[DeadLetter]:
        entries: Any = await self.guarded(self.client.xrange(self.names.dead_letters(symbol), count=count))
        return [_dead_letter(entry_id, fields) for entry_id, fields in entries]

    # Dead-letter retention (``smartmarket.ops.retention``): dead letters are never trimmed by the bus itself;
    # retention archives the old ones to Parquet, verifies the archive, then deletes exactly those entries.

    async def dead_letter_symbols(self) -> list[str]:
        """The symbols that have a dead-letter stream in this namespace, sorted."""
        prefix = f"{self.names.namespace}:{{"
        symbols: set[str] = set()
        async for key in self.client.scan_iter(match=f"{self.names.namespace}:*:dlq", count=1000, _type="stream"):
            name = _text(key)
            if name.startswith(prefix) and name.endswith("}:dlq"):
                symbols.add(name[len(prefix) : -len("}:dlq")])
        return sorted(symbols)

    async def read_dead_letters_before(
        self, symbol: str, before_ms: int, *, after: str | None = None, count: int = 1_000
    ) -> list[DeadLetter]:
        """Up to ``count`` dead letters of ``symbol`` added before ``before_ms`` (entry id time), oldest first,
        starting after entry id ``after`` when given."""
        entries: Any = await self.guarded(
            self.client.xrange(
                self.names.dead_letters(symbol),
                min=f"({after}" if after else "-",
                max=f"({int(before_ms)}-0",
                count=count,
            )
        )
        return [_dead_letter(entry_id, fields) for entry_id, fields in entries]

    async def delete_dead_letters(self, symbol: str, entry_ids: Sequence[str], *, chunk: int = 1_000) -> int:
        """``XDEL`` exactly these entries from the dead-letter stream of ``symbol``; returns how many existed."""
        stream = self.names.dead_letters(symbol)
        deleted = 0
        for start in range(0, len(entry_ids), chunk):
            deleted += int(await self.guarded(self.client.xdel(stream, *entry_ids[start : start + chunk])))
        return deleted

    async def delete_namespace(self) -> int:
        deleted = 0
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=self.names.pattern(), count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(await self.client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(await self.client.delete(*batch))
        return deleted

    async def close(self) -> None:
        await self.client.aclose()
        await self.reader.aclose()


__all__ = ["DEFAULT_MAX_BACKLOG", "DEFAULT_OUTBOX_LIMIT", "PAYLOAD_FIELD", "RedisStreamsBus", "RedisSubscription"]
