"""The recorder: a consumer group on every stream that appends each event to the durable ``EventStore``.

Stages never wait for the database: they publish, and the recorder writes behind them in batches (one append for
what all streams delivered within ``flush_ms``), acknowledging entries only after the append, so an event is never
acknowledged before it is durable. Events already stored (same id: a redelivery, a second publication, a re-run
of the same candles) are skipped. Undecodable entries go to the dead-letter stream. Every ``trim_every`` batches
it lets the bus drop entries every group has acknowledged up to what is durable (``Bus.trim_acknowledged``).
After its first append it leaves one recorded event as the bus scope's probe (``Bus.set_probe``), which binds the
groups' processed-id marks to this event store.

Shutdown: ``stop()`` ends the stream loops after their current batch; the flusher keeps flushing until every
stream loop has returned (a loop waiting on a batch is never left without a flusher).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from smartmarket.bus.base import REASON_UNDECODABLE, Bus, BusUnavailableError, Delivery, Processed, Subscription
from smartmarket.core.errors import DataFormatError, SmartMarketError
from smartmarket.core.events import Message, from_msgpack
from smartmarket.pipeline.observability import PipelineMetrics
from smartmarket.pipeline.stages.base import EventLog

log = logging.getLogger(__name__)

GROUP = "recorder"


class Recorder:
    """Records every event of ``topics`` × ``symbols`` (see the module docstring)."""

    def __init__(
        self, bus: Bus, log_: EventLog, topics: Sequence[str], symbols: Sequence[str], consumer: str,
        *, metrics: PipelineMetrics | None = None, batch: int = 500, block_ms: int = 100,
        claim_min_idle_ms: int = 30_000, trim_every: int = 20, flush_ms: int = 100,
    ) -> None:  # fmt: skip
        self.bus = bus
        self.log = log_
        self.streams = [(t, s) for t in topics for s in symbols]
        self.consumer = consumer
        self.metrics = metrics
        self.batch = batch
        self.block_ms = block_ms
        self.claim_min_idle_ms = claim_min_idle_ms
        self.trim_every = trim_every
        self.recorded = 0
        self.dead_lettered = 0
        self.flush_ms = flush_ms
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._queued: list[_Batch] = []
        self._streams_done = False
        self._probed = False

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Record until ``stop()``; raises when a stream loop dies (the others are cancelled first)."""
        flusher = asyncio.create_task(self._flush_loop(), name="recorder flush")
        streams = [asyncio.create_task(self._stream(t, s), name=f"record {t} {s}") for t, s in self.streams]
        try:
            await asyncio.gather(*streams)
        finally:
            self._stopping.set()
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
            self._streams_done = True
            self._wake.set()
            await flusher

    async def _stream(self, topic: str, symbol: str) -> None:
        sub = self.bus.subscription(topic, symbol, GROUP, self.consumer)
        cursor: str | None = "0"
        batches = 0
        last_durable: str | None = None
        next_claim = 0.0
        ready = False
        try:
            while not self._stopping.is_set():
                try:
                    if not ready:
                        await sub.ensure_group()
                        ready = True
                    if time.monotonic() >= next_claim:
                        next_claim = time.monotonic() + 5.0
                        if await sub.claim_stale(self.claim_min_idle_ms, self.batch):
                            cursor = "0"
                    if cursor is not None:
                        deliveries = await sub.read_pending(cursor, self.batch)
                        if not deliveries:
                            cursor = None
                            continue
                        cursor = deliveries[-1].entry_id
                    else:
                        deliveries = await sub.read_new(self.batch, self.block_ms)
                    if not deliveries:
                        continue
                    await self._record(sub, deliveries)
                    last_durable = deliveries[-1].entry_id
                    batches += 1
                    if batches % self.trim_every == 0:
                        await self.bus.trim_acknowledged(topic, symbol, last_durable)
                except (BusUnavailableError, SmartMarketError, OSError) as exc:
                    log.warning("recorder %s/%s: %s; retrying", topic, symbol, exc)
                    cursor = "0"  # whatever was read stays pending: read it again
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), 0.2)
            if last_durable is not None:
                with contextlib.suppress(BusUnavailableError):
                    await self.bus.trim_acknowledged(topic, symbol, last_durable)
        finally:
            await sub.close()

    async def _record(self, sub: Subscription, deliveries: Sequence[Delivery]) -> None:
        """Decode a batch and hand it to the flusher; returns once it is appended and acknowledged."""
        messages: list[tuple[Delivery, Message]] = []
        ack_only: list[Delivery] = []
        for delivery in deliveries:
            if delivery.payload is None:
                ack_only.append(delivery)
                continue
            try:
                messages.append((delivery, from_msgpack(delivery.payload)))
            except DataFormatError as exc:
                await sub.dead_letter(delivery, REASON_UNDECODABLE, exc.what)
                self.dead_lettered += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append(_Batch(sub, messages, ack_only, done))
        self._wake.set()
        await done

    async def _flush_loop(self) -> None:
        """Append what every stream queued in one go (at most every ``flush_ms``, sooner when ``batch`` is reached),
        then acknowledge each stream's entries. Fewer, larger appends keep the database off the stages' cores."""
        while not (self._streams_done and not self._queued):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.2)
            self._wake.clear()
            if not self._queued:
                continue
            deadline = time.monotonic() + self.flush_ms / 1000
            while sum(len(b.messages) for b in self._queued) < self.batch and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            batches, self._queued = self._queued, []
            try:
                # one store batch: the events, and the live candles among them into the candle store
                added = await self.log.record([m for b in batches for _, m in b.messages])
            except Exception as exc:
                for b in batches:
                    _settle(b.done, exc)
                continue
            self.recorded += added
            if self.metrics is not None:
                self.metrics.recorded.inc(added)
            await self._probe(batches)
            for b in batches:
                try:
                    await b.sub.commit([Processed(d, m.event_id) for d, m in b.messages], b.ack_only)
                    _settle(b.done, None)
                except Exception as exc:
                    _settle(b.done, exc)

    async def _probe(self, batches: Sequence[_Batch]) -> None:
        """Once: name a recorded event as the bus scope's probe (binds the processed-id marks to this store)."""
        if self._probed:
            return
        first = next((m for b in batches for _, m in b.messages), None)
        if first is None:
            return
        try:
            await self.bus.set_probe(first.event_id, first.ts_event)
            self._probed = True
        except BusUnavailableError:
            pass  # next flush


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    """Resolve a batch's future unless its stream loop was cancelled meanwhile."""
    if done.done():
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)


@dataclass
class _Batch:
    sub: Subscription
    messages: list[tuple[Delivery, Message]]
    ack_only: list[Delivery]
    done: asyncio.Future[None]


__all__ = ["GROUP", "Recorder"]
