"""The live runner: stages wired on one bus, a candle source in front, the recorder behind.

``LivePipeline(spec, store, bus).run(source)`` runs, in one process, the stages named in ``options.stages``
(all by default) as bus consumers, plus the recorder writing every event to the ``EventStore``, and publishes
the source's candles. With a finite source (a file) it returns once the source is consumed and the pipeline
has *drained*: every group of every stream has acknowledged everything and no stage holds a half-joined
candle. ``stop()`` (SIGINT/SIGTERM with ``install_signal_handlers``) is graceful: the source stops, each
consumer finishes and commits its current batch, whatever was not handled stays pending on the bus for the
next run or another worker. Nothing is lost either way: entries leave the bus only once recorded.

Stages can run in separate processes instead (``smartmarket worker STAGE --bus redis://…``): each process
runs a subset; every process declares the groups of the whole pipeline, so backpressure and draining count
the stages running elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from smartmarket.bus.base import Bus, Delivery
from smartmarket.bus.consumer import Consumer, ConsumerConfig, default_consumer_name
from smartmarket.bus.inprocess import InProcessBus
from smartmarket.bus.topics import CANDLES, EXECUTIONS, FEATURES, ORDERS, PREDICTIONS, SIGNALS, TOPICS, topic_for
from smartmarket.core.events import Message, SignalGenerated, SubmitOrder
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.engine.observability import PipelineMetrics, event_fields
from smartmarket.engine.sources import CandleSource, FileSource
from smartmarket.engine.stages import CONSUMER_STAGES, SHADOW_STAGE, STAGE_NAMES, build_stages
from smartmarket.engine.stages.base import EventLog, Stage
from smartmarket.engine.stages.candles import CandleCache, candle_closed
from smartmarket.engine.stages.execution import ExecutionStage
from smartmarket.engine.stages.recorder import GROUP as RECORDER_GROUP
from smartmarket.engine.stages.recorder import Recorder
from smartmarket.engine.stages.spec import FactoryEngines, PipelineSpec, TradingConfig
from smartmarket.execution.broker import Broker
from smartmarket.store.base import EventStore

if TYPE_CHECKING:
    from smartmarket.signals.engine import SignalEngine

log = logging.getLogger(__name__)

STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "features": (CANDLES,),
    "predictions": (FEATURES,),
    "signals": (FEATURES, PREDICTIONS),
    "risk": (SIGNALS,),
    "execution": (ORDERS, CANDLES),
    "portfolio": (EXECUTIONS,),
    SHADOW_STAGE: (CANDLES,),
    RECORDER_GROUP: TOPICS,
}


@dataclass(frozen=True)
class RunOptions:
    """Which stages run here, and how they consume. ``pipeline``: the stages of the whole deployment."""

    stages: tuple[str, ...] = STAGE_NAMES
    pipeline: tuple[str, ...] = STAGE_NAMES
    consumer: str | None = None
    batch_size: int = 200
    block_ms: int = 100
    max_attempts: int = 5
    claim_min_idle_ms: int = 30_000
    claim_every_ms: int = 5_000
    drain_timeout_s: float = 120.0
    sample_every_s: float = 1.0


@dataclass
class RunSummary:
    """What a run did."""

    candles: int = 0
    published: dict[str, int] = field(default_factory=dict)
    handled: dict[str, int] = field(default_factory=dict)
    recorded: int = 0
    dead_lettered: int = 0
    handler_failures: int = 0
    claimed: int = 0
    caught_up: int = 0
    orders_waiting: int = 0
    drained: bool = False
    stopped: bool = False
    seconds: float = 0.0
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    not_idle: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def with_shadow(options: RunOptions, spec: PipelineSpec) -> RunOptions:
    """With a shadow candidate in ``spec`` the deployment has a shadow stage, run here when this process runs the
    whole pipeline (a worker runs it with ``stages=("shadow",)``)."""
    if spec.shadow is None or SHADOW_STAGE in options.pipeline:
        return options
    stages = (*options.stages, SHADOW_STAGE) if options.stages == options.pipeline else options.stages
    return replace(options, stages=stages, pipeline=(*options.pipeline, SHADOW_STAGE))


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """``{"n", "p50_ms", "p99_ms", "max_ms"}`` of latency samples in ms (empty: n = 0)."""
    if not samples:
        return {"n": 0}
    arr = np.asarray(samples, dtype=np.float64)
    return {
        "n": len(arr),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "max_ms": round(float(arr.max()), 3),
    }


class LivePipeline:
    """Stages on one bus (see the module docstring)."""

    def __init__(
        self, spec: PipelineSpec, store: EventStore | None, bus: Bus, *, options: RunOptions | None = None,
        broker: Broker | None = None, metrics: PipelineMetrics | None = None,
    ) -> None:  # fmt: skip
        self.spec = spec
        self.bus = bus
        self.options = with_shadow(options or RunOptions(), spec)
        self.metrics = metrics or PipelineMetrics()
        self.log = EventLog(store) if store is not None else None
        self.candles = CandleCache()
        local = [s for s in self.options.stages if s in CONSUMER_STAGES or s == SHADOW_STAGE]
        self.stages: list[Stage] = build_stages(local, spec, self.log, candles=self.candles, broker=broker)
        self.consumer_name = self.options.consumer or default_consumer_name()
        self.consumers: list[Consumer] = []
        self.recorder: Recorder | None = None
        if RECORDER_GROUP in self.options.stages:
            if self.log is None:
                raise ValueError("the recorder needs an event store")
            self.recorder = Recorder(
                bus, self.log, TOPICS, spec.symbols, self.consumer_name, metrics=self.metrics,
                claim_min_idle_ms=self.options.claim_min_idle_ms,
            )  # fmt: skip
        self._stopping = asyncio.Event()
        self.summary = RunSummary()

    # ----------------------------------------------------------------------------------------- control
    def stop(self) -> None:
        """Graceful stop: no more candles; consumers finish and commit their batch; the run returns."""
        self._stopping.set()

    def install_signal_handlers(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, self.stop)

    # ----------------------------------------------------------------------------------------- running
    async def declare_groups(self) -> None:
        """Every group of the deployment on every stream it reads (before anything is published)."""
        for name in self.options.pipeline:
            for topic in STAGE_INPUTS.get(name, ()):
                for symbol in self.spec.symbols:
                    await self.bus.ensure_group(topic, symbol, name)

    async def run(self, source: CandleSource | None = None) -> RunSummary:
        """Run until the source is consumed and everything drained (finite source) or until ``stop()``."""
        started = time.perf_counter()
        await self.declare_groups()
        tasks = [asyncio.create_task(self._consume(stage), name=stage.name) for stage in self.stages]
        if self.recorder is not None:
            tasks.append(asyncio.create_task(self.recorder.run(), name="recorder"))
        sampler = asyncio.create_task(self._sample_pending(), name="pending sampler")
        try:
            for consumer in self.consumers:
                await consumer.wait_ready()
            if source is not None:
                await self._play(source)
            if source is not None and source.finite and not self._stopping.is_set():
                # a source-only process has published everything: the other processes drain the rest
                self.summary.drained = await self._wait_drained() if self.stages or self.recorder else True
            else:
                await self._stopping.wait()
        finally:
            self.summary.stopped = self._stopping.is_set()
            for consumer in self.consumers:
                consumer.stop()
            if self.recorder is not None:
                self.recorder.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            if self.log is not None:
                self.log.close()
        self._summarise(time.perf_counter() - started)
        return self.summary

    async def _consume(self, stage: Stage) -> None:
        opts = self.options
        config = ConsumerConfig(
            group=stage.name, consumer=self.consumer_name, batch_size=opts.batch_size, block_ms=opts.block_ms,
            max_attempts=opts.max_attempts, claim_min_idle_ms=opts.claim_min_idle_ms,
            claim_every_ms=opts.claim_every_ms,
        )  # fmt: skip
        handler = self._handler(stage)
        consumers = [Consumer(self.bus, topic, self.spec.symbols, handler, config) for topic in stage.inputs]
        self.consumers.extend(consumers)
        await asyncio.gather(*(c.run() for c in consumers))

    def _handler(self, stage: Stage):  # type: ignore[no-untyped-def]
        metrics = self.metrics

        async def handle(message: Message, delivery: Delivery) -> None:
            t0 = time.perf_counter()
            try:
                outputs = await stage.handle(message)
            except Exception:
                metrics.errors.labels(stage.name).inc()
                log.info("%s failed on %s (attempt %d)", stage.name, message.type_name, delivery.attempt,
                         extra=event_fields(message), exc_info=True)  # fmt: skip
                raise
            metrics.handled.labels(stage.name, message.type_name).inc()
            if outputs:
                await self._publish(stage.name, outputs)
            metrics.handler_seconds.labels(stage.name).observe(time.perf_counter() - t0)

        return handle

    async def _publish(self, stage: str, outputs: Sequence[Message]) -> None:
        """Publish in order, one round trip per run of events bound for the same stream."""
        run: list[Message] = []
        key: tuple[str, str] | None = None
        for message in outputs:
            k = (topic_for(message), getattr(message, "symbol", ""))
            if key is not None and k != key:
                await self.bus.publish_many(key[0], key[1], run)
                run = []
            key = k
            run.append(message)
        if key is not None and run:
            await self.bus.publish_many(key[0], key[1], run)
        for message in outputs:
            self.metrics.published.labels(stage, message.type_name).inc()
            if isinstance(message, SignalGenerated):
                self.metrics.signal_published(message.correlation_id, message.event_id)
            elif isinstance(message, SubmitOrder):
                self.metrics.order_published(message.causation_id)

    async def _play(self, source: CandleSource) -> None:
        tf = self.spec.timeframe
        symbols = set(self.spec.symbols)
        async for symbol, bar in source.candles():
            if self._stopping.is_set():
                break
            if symbol not in symbols:
                continue
            event = candle_closed(symbol, tf, bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume)
            self.candles.put(event)
            self.metrics.published_at(event.event_id)
            await self.bus.publish(CANDLES, symbol, event)
            self.metrics.published.labels("candles", "CandleClosed").inc()
            self.summary.candles += 1

    async def _backlog(self) -> int:
        total = 0
        for topic in TOPICS:
            for symbol in self.spec.symbols:
                total += await self.bus.backlog(topic, symbol)
        return total

    async def _wait_drained(self) -> bool:
        """True once every stream is acknowledged by every group and every stage is idle (twice in a row).

        Gives up after ``drain_timeout_s`` without progress (the backlog not shrinking), so a long backlog on a
        busy machine drains while a stuck stage is still reported."""
        deadline = time.monotonic() + self.options.drain_timeout_s
        calm = 0
        smallest = None
        while not self._stopping.is_set():
            busy = [s.name for s in self.stages if not s.idle()]
            backlog = await self._backlog()
            if smallest is None or backlog < smallest:
                smallest = backlog
                deadline = time.monotonic() + self.options.drain_timeout_s
            if not busy and backlog == 0:
                calm += 1
                if calm >= 2:
                    return True
            else:
                calm = 0
            if time.monotonic() > deadline:
                self.summary.not_idle = busy or ["bus backlog"]
                log.warning("pipeline made no progress draining for %.0fs: %s", self.options.drain_timeout_s, busy)
                return False
            await asyncio.sleep(0.02)
        return False

    async def _sample_pending(self) -> None:
        while True:
            for topic in TOPICS:
                for symbol in self.spec.symbols:
                    with contextlib.suppress(Exception):
                        self.metrics.pending.labels(topic, symbol).set(await self.bus.backlog(topic, symbol))
            await asyncio.sleep(self.options.sample_every_s)

    def _summarise(self, seconds: float) -> None:
        s = self.summary
        s.seconds = round(seconds, 3)
        for metric in self.metrics.published.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    t = sample.labels["type"]
                    s.published[t] = s.published.get(t, 0) + int(sample.value)
        s.handled = self.metrics.counts()
        for consumer in self.consumers:
            s.dead_lettered += consumer.stats.dead_lettered
            s.handler_failures += consumer.stats.handler_failures
            s.claimed += consumer.stats.claimed
        if self.recorder is not None:
            s.recorded = self.recorder.recorded
            s.dead_lettered += self.recorder.dead_lettered
        for stage in self.stages:
            fold = getattr(stage, "fold", None)
            s.caught_up += int(getattr(fold, "caught_up", 0))
            if isinstance(stage, ExecutionStage):
                s.orders_waiting = stage.waiting()
        s.latency_ms = {name: percentiles(list(v)) for name, v in self.metrics.latency_ms.items()}


async def run_file(
    spec: PipelineSpec, store: EventStore | None, bus: Bus, frames: dict[str, pd.DataFrame], *,
    speed: float = 0.0, options: RunOptions | None = None,
) -> RunSummary:  # fmt: skip
    """Play candle frames through the whole pipeline until drained (tests, demos, benchmarks)."""
    pipeline = LivePipeline(spec, store, bus, options=options)
    return await pipeline.run(FileSource(frames, speed=speed))


def demo_paper_trading(
    store: EventStore, candles: pd.DataFrame, symbol: str, timeframe: Timeframe | str, engine: SignalEngine,
    *, trading: TradingConfig | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Paper-trade ``candles`` of one symbol through the whole pipeline on the in-process bus.

    ``engine`` is copied (the caller's stays untouched); every event lands in ``store``. Returns the run
    summary plus the final position (quantity, realised P&L, cash) from the last ``PositionChanged``.
    """
    symbol = normalize_symbol(symbol)
    template = copy.deepcopy(engine)
    spec = PipelineSpec.build(
        [symbol], timeframe, FactoryEngines(lambda _s: copy.deepcopy(template), "demo"),
        trading or TradingConfig(limits=None),
    )  # fmt: skip
    summary = asyncio.run(run_file(spec, store, InProcessBus(), {symbol: candles}))
    positions = [
        e.message for e in store.read_events(types=["PositionChanged"]) if getattr(e.message, "symbol", "") == symbol
    ]
    out = summary.to_dict()
    if positions:
        last = positions[-1].to_dict()
        out["position"] = {k: last[k] for k in ("quantity", "avg_price", "realized_pnl", "cash")}
    return out


__all__ = [
    "STAGE_INPUTS",
    "LivePipeline",
    "RunOptions",
    "RunSummary",
    "demo_paper_trading",
    "percentiles",
    "run_file",
    "with_shadow",
]
