"""The generic consumer loop every pipeline stage runs, on either bus adapter.

For each symbol's stream, one asyncio task repeats:

1. recover: at start, after a reconnect and every ``claim_every_ms``, claim entries other consumers left
   pending for ``claim_min_idle_ms`` (a crashed process), then redeliver this consumer's own pending
   entries (id ``0``) before reading new ones (``>``);
2. decode each entry (msgpack ``Message``); undecodable bytes go straight to the dead-letter stream (no
   retry can change them), so does an entry already delivered more than ``max_attempts`` times (a crash
   loop);
3. skip an event whose id this group already processed (a bounded in-memory LRU, then the bus's durable
   processed set), so a redelivered or twice-published event takes effect once;
4. run the handler; if it raises, the entry stays pending and is redelivered after a backoff
   (``retry_delay_ms`` doubling); on the ``max_attempts``-th failure it is dead-lettered;
5. settle (optional): await ``settle(handled messages)`` before committing, for a stage whose in-memory state
   a restarted worker rebuilds from the event log: it waits there until the log holds what the batch taught the
   stage. If settling fails the batch stays pending and is handled again after the retry delay;
6. commit the batch: processed ids remembered and entries acknowledged in one atomic step. If the
   connection drops, the commit is kept and retried first after reconnecting, so no handler runs twice
   for that.

``max_failed_in_row``: that many handler failures dead-lettered in a row, with no success in between, mean the
stage is broken rather than the events: the consumer raises ``PipelineError`` instead of dead-lettering everything.
A stream or group that vanished (a Redis server restarted empty) is recovered by the subscription itself.

``stop()`` is graceful: the current batch finishes and commits, then the loop returns (within ``block_ms``).
The remaining window for a second handler run is a process killed between its handler and its commit:
handlers keep their effects keyed by event id (deterministic ids, unique keys) to stay exactly-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from smartmarket.bus.base import (
    REASON_HANDLER_ERROR,
    REASON_TOO_MANY_DELIVERIES,
    REASON_UNDECODABLE,
    Bus,
    BusUnavailableError,
    Delivery,
    Handler,
    Processed,
    Subscription,
)
from smartmarket.bus.topics import check_name
from smartmarket.core.errors import ConfigError, DataFormatError, PipelineError
from smartmarket.core.events import Message, from_msgpack

log = logging.getLogger(__name__)

Settle = Callable[[Sequence[Message]], Awaitable[None]]
"""Awaited with a batch's handled messages before the batch is acknowledged (see the module docstring)."""


def default_consumer_name() -> str:
    """Unique per process: ``host-pid-random``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """How one stage consumes. ``group`` names the stage; every process of the stage uses the same group."""

    group: str
    consumer: str = field(default_factory=default_consumer_name)
    batch_size: int = 200
    block_ms: int = 500
    max_attempts: int = 5
    retry_delay_ms: int = 100
    max_retry_delay_ms: int = 5_000
    claim_min_idle_ms: int = 30_000
    claim_every_ms: int = 5_000
    remembered_ids: int = 100_000
    reconnect_delay_ms: int = 50
    max_reconnect_delay_ms: int = 2_000
    max_failed_in_row: int | None = None

    def __post_init__(self) -> None:
        check_name("group", self.group)
        if self.batch_size < 1 or self.max_attempts < 1 or self.block_ms < 0:
            raise ConfigError("batch_size and max_attempts must be >= 1, block_ms >= 0")
        if self.max_failed_in_row is not None and self.max_failed_in_row < 1:
            raise ConfigError(f"max_failed_in_row must be >= 1, got {self.max_failed_in_row}")

    def retry_delay_s(self, attempt: int) -> float:
        return min(self.retry_delay_ms * 2 ** max(0, attempt - 1), self.max_retry_delay_ms) / 1000


@dataclass(slots=True)
class ConsumerStats:
    """Counters of one consumer (all its streams)."""

    handled: int = 0
    duplicates_skipped: int = 0
    handler_failures: int = 0
    dead_lettered: int = 0
    claimed: int = 0
    reconnects: int = 0


class RecentIds:
    """A bounded set of the most recently processed event ids (least recently added dropped first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def discard(self, event_id: str) -> None:
        self._ids.pop(event_id, None)


class _Unsaved(Exception):
    """Internal: the bus went away after handlers ran; carries the commit still owed."""

    def __init__(self, done: list[Processed], ack_only: list[Delivery], cause: BusUnavailableError) -> None:
        super().__init__(str(cause))
        self.done = done
        self.ack_only = ack_only
        self.cause = cause


class Consumer:
    """Runs ``handler`` for every event of ``topic`` on each of ``symbols``, in group ``config.group``."""

    def __init__(
        self, bus: Bus, topic: str, symbols: str | Sequence[str], handler: Handler, config: ConsumerConfig,
        *, settle: Settle | None = None,
    ) -> None:  # fmt: skip
        self.bus = bus
        self.topic = topic
        self.symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        self.handler = handler
        self.settle = settle
        self.config = config
        self.stats = ConsumerStats()
        self.recent = RecentIds(config.remembered_ids)
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._ready_count = 0
        self._failed_in_row = 0

    def stop(self) -> None:
        """Ask every stream loop to finish its current batch, commit it and return."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def wait_ready(self) -> None:
        """Until every stream's group exists (then publishing cannot outrun the group's creation)."""
        await self._ready.wait()

    async def run(self) -> None:
        """Consume until ``stop()``. Returns when every stream loop has committed and stopped."""
        tasks = [asyncio.create_task(self._run_stream(symbol), name=f"consume {symbol}") for symbol in self.symbols]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pause(self, seconds: float) -> None:
        """Sleep, waking early when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=max(seconds, 0.0))

    async def _run_stream(self, symbol: str) -> None:
        cfg = self.config
        sub = self.bus.subscription(self.topic, symbol, cfg.group, cfg.consumer)
        reconnect_delay = cfg.reconnect_delay_ms / 1000
        while True:
            try:
                await sub.ensure_group()
                break
            except BusUnavailableError as exc:
                log.warning("%s: %s; retrying", sub.stream, exc.what)
                await self._pause(reconnect_delay)
                if self.stopping:
                    await sub.close()
                    return
        self._ready_count += 1
        if self._ready_count == len(self.symbols):
            self._ready.set()

        pel_cursor: str | None = "0"  # own pending entries first: they survive our crash or a lost reply
        retry_at: float | None = None  # when failed entries are due again
        next_claim = 0.0
        owed: _Unsaved | None = None
        outage = False  # the bus was unreachable: once it answers again, the subscription catches up on losses
        try:
            while not self.stopping:
                try:
                    if outage:
                        await sub.reconnected()
                        outage = False
                    if owed is not None:
                        await sub.commit(owed.done, owed.ack_only)
                        owed = None
                    now = time.monotonic()
                    if now >= next_claim:
                        next_claim = now + cfg.claim_every_ms / 1000
                        claimed = await sub.claim_stale(cfg.claim_min_idle_ms, cfg.batch_size)
                        if claimed:
                            self.stats.claimed += claimed
                            pel_cursor = "0"
                    if pel_cursor is None and retry_at is not None and now >= retry_at:
                        pel_cursor, retry_at = "0", None
                    if pel_cursor is not None:
                        batch = await sub.read_pending(pel_cursor, cfg.batch_size)
                        if not batch:
                            pel_cursor = None
                            continue
                        pel_cursor = batch[-1].entry_id
                    else:
                        wake = min(next_claim, retry_at if retry_at is not None else next_claim)
                        block = min(cfg.block_ms, max(0, int((wake - now) * 1000)))
                        batch = await sub.read_new(cfg.batch_size, block)
                    failed_attempt = await self._process(sub, batch)
                    if failed_attempt:
                        due = time.monotonic() + cfg.retry_delay_s(failed_attempt)
                        retry_at = due if retry_at is None else min(retry_at, due)
                    reconnect_delay = cfg.reconnect_delay_ms / 1000
                except (BusUnavailableError, _Unsaved) as exc:
                    if isinstance(exc, _Unsaved):
                        owed = exc  # handlers ran: commit their results first once the bus is back
                    self.stats.reconnects += 1
                    outage = True
                    log.warning("%s: bus unavailable (%s); reconnecting in %.2fs", sub.stream, exc, reconnect_delay)
                    await self._pause(reconnect_delay)
                    reconnect_delay = min(reconnect_delay * 2, cfg.max_reconnect_delay_ms / 1000)
                    pel_cursor = "0"  # a read whose reply was lost left its entries in our pending list
            if owed is not None:  # stopping while the bus is away: one last try, else redelivery later
                try:
                    await sub.commit(owed.done, owed.ack_only)
                except BusUnavailableError:
                    log.warning("%s: could not commit %d entries before stopping", sub.stream, len(owed.done))
        finally:
            await sub.close()

    async def _process(self, sub: Subscription, batch: list[Delivery]) -> int:
        """Handle one batch and commit it. Returns the highest attempt among failed entries (0: none)."""
        cfg = self.config
        done: list[Processed] = []
        ack_only: list[Delivery] = []
        handled: list[Message] = []
        failed_attempt = 0
        try:
            decoded: list[tuple[Delivery, Message]] = []
            for delivery in batch:
                if delivery.payload is None:  # trimmed or deleted from the stream: nothing left to deliver
                    ack_only.append(delivery)
                elif delivery.attempt > cfg.max_attempts:
                    await self._dead_letter(
                        sub, delivery, REASON_TOO_MANY_DELIVERIES, f"delivered {delivery.attempt} times"
                    )
                else:
                    try:
                        decoded.append((delivery, from_msgpack(delivery.payload)))
                    except DataFormatError as exc:
                        await self._dead_letter(sub, delivery, REASON_UNDECODABLE, exc.what)

            unknown = [m.event_id for _, m in decoded if m.event_id not in self.recent]
            already = {eid for eid, seen in zip(unknown, await sub.processed(unknown), strict=True) if seen}
            for delivery, message in decoded:
                if message.event_id in self.recent:  # handled here already: commit (again), idempotently
                    done.append(Processed(delivery, message.event_id))
                    self.stats.duplicates_skipped += 1
                    continue
                if message.event_id in already:
                    ack_only.append(delivery)
                    self.stats.duplicates_skipped += 1
                    continue
                try:
                    await self.handler(message, delivery)
                except BusUnavailableError:
                    raise
                except Exception as exc:
                    self.stats.handler_failures += 1
                    if delivery.attempt >= cfg.max_attempts:
                        error = "".join(traceback.format_exception(exc))
                        await self._dead_letter(sub, delivery, REASON_HANDLER_ERROR, error)
                        self._failed_in_row += 1
                        if cfg.max_failed_in_row is not None and self._failed_in_row >= cfg.max_failed_in_row:
                            await sub.commit(done, ack_only)
                            raise PipelineError(
                                f"stage {cfg.group} failed on {self._failed_in_row} {self.topic} events in a row "
                                f"(dead-lettered), last: {type(exc).__name__}: {exc}",
                                hint="see the dead-letter stream and the log; fix the stage, then run again",
                            ) from exc
                    else:
                        log.info("%s %s attempt %d failed: %r", sub.stream, delivery.entry_id, delivery.attempt, exc)
                        failed_attempt = max(failed_attempt, delivery.attempt)
                    continue
                self.recent.add(message.event_id)
                done.append(Processed(delivery, message.event_id))
                handled.append(message)
                self.stats.handled += 1
                self._failed_in_row = 0
            if handled and self.settle is not None:
                try:
                    await self.settle(handled)
                except BusUnavailableError:
                    raise
                except Exception as exc:  # handled again after the retry delay, then settled again
                    log.warning("%s: could not settle %d handled entries (%s); they stay pending", sub.stream,
                                len(handled), exc)  # fmt: skip
                    for message in handled:
                        self.recent.discard(message.event_id)
                    unsettled = {m.event_id for m in handled}
                    attempts = [p.delivery.attempt for p in done if p.event_id in unsettled]
                    done = [p for p in done if p.event_id not in unsettled]
                    failed_attempt = max(failed_attempt, *attempts)
            await sub.commit(done, ack_only)
        except BusUnavailableError as exc:
            if done or ack_only:
                raise _Unsaved(done, ack_only, exc) from exc
            raise
        return failed_attempt

    async def _dead_letter(self, sub: Subscription, delivery: Delivery, reason: str, error: str) -> None:
        log.warning("%s %s dead-lettered (%s): %s", sub.stream, delivery.entry_id, reason, error.splitlines()[-1:])
        await sub.dead_letter(delivery, reason, error)
        self.stats.dead_lettered += 1


def stop_on_signals(consumer: Consumer, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Make SIGTERM/SIGINT stop ``consumer`` gracefully (call from inside the running event loop)."""
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, consumer.stop)


__all__ = [
    "Consumer",
    "ConsumerConfig",
    "ConsumerStats",
    "RecentIds",
    "default_consumer_name",
    "stop_on_signals",
]
