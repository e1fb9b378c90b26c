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

Failing loudly: the source, every stage and the recorder run as tasks watched together; the first one that dies
(or returns while nobody asked it to stop) stops everything and ``run`` raises ``PipelineError`` naming it and
the cause. A finite run that drained must also have *recorded* what its stages produce for every candle it
published (a ``FeaturesComputed`` and a ``SignalGenerated``, and as many ``PredictionMade`` as the fullest
candle): fewer is a ``PipelineError``, never "drained". Every shutdown wait is bounded (``stop_timeout_s``, then
the tasks are cancelled); a second SIGINT/SIGTERM cancels at once.

A process that only publishes candles returns once every candle it published was acknowledged by every group
(until then it keeps them, and re-publishes them if the bus loses its streams). The processed-id marks on the bus
are scoped to the event store this deployment records into (``Bus.bind_scope``).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from smartmarket.bus.base import Bus, BusUnavailableError, Delivery
from smartmarket.bus.consumer import Consumer, ConsumerConfig, default_consumer_name
from smartmarket.bus.inprocess import InProcessBus
from smartmarket.bus.topics import CANDLES, TOPICS, topic_for
from smartmarket.core.errors import ConfigError, PipelineError, SmartMarketError
from smartmarket.core.events import CandleClosed, Message, SignalGenerated, SubmitOrder
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.execution.broker import Broker
from smartmarket.pipeline.observability import PipelineMetrics, event_fields
from smartmarket.pipeline.run_record import run_started_event
from smartmarket.pipeline.sources import CandleSource, FileSource
from smartmarket.pipeline.stages import CONSUMER_STAGES, SHADOW_STAGE, STAGE_NAMES, build_stages, stage_inputs
from smartmarket.pipeline.stages.base import EventLog, Stage, by_symbol, derived_id
from smartmarket.pipeline.stages.candles import CandleCache, candle_closed
from smartmarket.pipeline.stages.execution import ExecutionStage
from smartmarket.pipeline.stages.portfolio import PortfolioStage
from smartmarket.pipeline.stages.recorder import GROUP as RECORDER_GROUP
from smartmarket.pipeline.stages.recorder import Recorder
from smartmarket.pipeline.stages.spec import FactoryEngines, PipelineSpec, TradingConfig
from smartmarket.store.base import EventStore

if TYPE_CHECKING:
    from smartmarket.signals.engine import SignalEngine

log = logging.getLogger(__name__)


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
    stop_timeout_s: float = 5.0
    max_failed_in_row: int = 10
    broker: str | None = None  # the deployment's broker as recorded (``broker_name``), for every worker of it: only
    # the execution worker holds the broker, but the risk stage must know it is live and ``RunStarted`` must say so


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


def broker_name(broker: Broker | None) -> str:
    """How a run records its broker: ``paper``, or ``ccxt:<exchange>`` (a live broker: fills not replayable)."""
    if broker is None:
        return "paper"
    exchange = getattr(getattr(broker, "exchange", None), "id", None)
    return f"ccxt:{exchange}" if exchange else f"live:{type(broker).__name__}"


class LivePipeline:
    """Stages on one bus (see the module docstring)."""

    def __init__(
        self, spec: PipelineSpec, store: EventStore | None, bus: Bus, *, options: RunOptions | None = None,
        broker: Broker | None = None, metrics: PipelineMetrics | None = None,
    ) -> None:  # fmt: skip
        self.spec = spec
        self.bus = bus
        options = options or RunOptions()  # a pipeline trading a named strategy has no signal stages:
        options = replace(options, stages=spec.stage_names(options.stages), pipeline=spec.stage_names(options.pipeline))
        self.options = with_shadow(options, spec)
        self.inputs = stage_inputs(spec)
        self.metrics = metrics or PipelineMetrics()
        self.log = EventLog(store) if store is not None else None
        self.candles = CandleCache()
        local = [s for s in self.options.stages if s in CONSUMER_STAGES or s == SHADOW_STAGE]
        self.broker_name = self.options.broker or broker_name(broker)
        live = self.broker_name != "paper"
        self.stages: list[Stage] = build_stages(local, spec, self.log, candles=self.candles, broker=broker,
                                                live_broker=live)  # fmt: skip
        self.consumer_name = self.options.consumer or default_consumer_name()
        self.consumers: list[Consumer] = []
        self.recorder: Recorder | None = None
        if RECORDER_GROUP in self.options.stages:
            if self.log is None:
                raise ConfigError("the recorder needs an event store", hint="give --store (or run it in a worker)")
            self.recorder = Recorder(
                bus, self.log, TOPICS, spec.symbols, self.consumer_name, metrics=self.metrics,
                claim_min_idle_ms=self.options.claim_min_idle_ms,
            )  # fmt: skip
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()
        self._played: dict[str, list[int]] = {}
        self.summary = RunSummary()

    # ----------------------------------------------------------------------------------------- control
    def stop(self) -> None:
        """Graceful stop: no more candles; consumers finish and commit their batch; the run returns.

        A second call cancels whatever has not stopped yet, without waiting ``stop_timeout_s``."""
        if self._stopping.is_set():
            self._force.set()
        self._stopping.set()

    def install_signal_handlers(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, self.stop)

    # ----------------------------------------------------------------------------------------- running
    async def declare_groups(self) -> None:
        """Every group of the deployment on every stream it reads (before anything is published)."""
        for name in self.options.pipeline:
            for topic in self.inputs.get(name, ()):
                for symbol in self.spec.symbols:
                    await self.bus.ensure_group(topic, symbol, name)

    async def _holds(self, event_id: str, ts_event: int) -> bool:
        assert self.log is not None
        return any(e.message.event_id == event_id for e in await self.log.read(start=ts_event, end=ts_event + 1))

    async def run(self, source: CandleSource | None = None) -> RunSummary:
        """Run until the source is consumed and everything drained (finite source) or until ``stop()``.

        Raises ``PipelineError`` when a stage, the recorder or the source dies, or when a drained run did not
        record every event its stages must produce."""
        started = time.perf_counter()
        tasks: dict[asyncio.Task[Any], str] = {}
        driver: asyncio.Task[None] | None = None
        sampler: asyncio.Task[None] | None = None
        failure: BaseException | None = None
        try:
            await self._until_stopped(self._prepare())
            if self.log is not None and source is not None:  # the process feeding candles records what runs
                await self._record_run_started()
            for stage in self.stages:
                consumers = self._consumers(stage)
                tasks[asyncio.create_task(self._consume(consumers), name=stage.name)] = stage.name
            if self.recorder is not None:
                tasks[asyncio.create_task(self.recorder.run(), name=RECORDER_GROUP)] = RECORDER_GROUP
            sampler = asyncio.create_task(self._sample_pending(), name="pending sampler")
            driver = asyncio.create_task(self._drive(source), name="source")
            failure = await self._supervise(driver, tasks)
        finally:
            self.summary.stopped = self._stopping.is_set()
            await self._shutdown(driver, tasks, sampler)
            if self.log is not None:
                self.log.close()
        self._summarise(time.perf_counter() - started)
        if failure is not None:
            raise failure
        return self.summary

    async def _record_run_started(self) -> None:
        """``RunStarted`` once per configuration (its id is its content; its time is the first start)."""
        assert self.log is not None
        event = run_started_event(self.spec, broker=self.broker_name)
        if not any(e.message.event_id == event.event_id for e in await self.log.read(types=["RunStarted"])):
            await self.log.append([event])

    async def _prepare(self) -> None:
        """Declare the deployment's groups and bind the processed-id scope to this process's event store."""
        while True:
            try:
                await self.declare_groups()
                await self.bus.bind_scope(self._holds if self.log is not None else None)
                return
            except BusUnavailableError as exc:
                log.warning("bus unavailable at start (%s); retrying", exc.what)
                await asyncio.sleep(0.5)

    async def _until_stopped(self, work: Any) -> None:
        """Await ``work`` unless ``stop()`` comes first (then it is cancelled)."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        error = task.exception() if task.done() and not task.cancelled() else None
        if error is not None:
            raise error

    async def _supervise(self, driver: asyncio.Task[None], tasks: dict[asyncio.Task[Any], str]) -> BaseException | None:
        """Until the driver ends or something dies: the error to raise, None for a clean end."""
        watched: set[asyncio.Task[Any]] = {driver, *tasks}
        while True:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if driver in done:
                if driver.cancelled():
                    return None
                exc = driver.exception()
                if exc is None or isinstance(exc, PipelineError):
                    return exc
                return _failed("the candle source", exc)
            for task in done:
                watched.discard(task)
                if task.cancelled() or task.exception() is None:
                    if self._stopping.is_set():
                        continue  # stopped as asked
                    return PipelineError(f"stage {tasks[task]} quit without being asked to stop",
                                         hint="see the log above for why")  # fmt: skip
                return _failed(f"stage {tasks[task]}", task.exception() or RuntimeError("unknown"))

    async def _shutdown(
        self, driver: asyncio.Task[None] | None, tasks: dict[asyncio.Task[Any], str], sampler: asyncio.Task[None] | None
    ) -> None:
        """Stop every task; wait at most ``stop_timeout_s`` (none after a second stop), then cancel the rest."""
        self._stopping.set()
        for consumer in self.consumers:
            consumer.stop()
        if self.recorder is not None:
            self.recorder.stop()
        running: set[asyncio.Task[Any]] = {t for t in (driver, *tasks) if t is not None and not t.done()}
        deadline = time.monotonic() + self.options.stop_timeout_s
        force = asyncio.create_task(self._force.wait())
        while running and not self._force.is_set() and time.monotonic() < deadline:
            await asyncio.wait({*running, force}, timeout=deadline - time.monotonic(),
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            running = {t for t in running if not t.done()}
        force.cancel()
        if running:
            names = sorted(tasks.get(t, "source") for t in running)
            log.warning("not stopped within %.1fs, cancelling: %s", self.options.stop_timeout_s, ", ".join(names))
            for task in running:
                task.cancel()
            await asyncio.wait(running, timeout=self.options.stop_timeout_s)
        for task in [t for t in (driver, *tasks) if t is not None]:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: reported by _supervise, not by asyncio at exit
        if sampler is not None:
            sampler.cancel()
            await asyncio.wait({sampler}, timeout=self.options.stop_timeout_s)  # bounded, like every shutdown wait

    async def _drive(self, source: CandleSource | None) -> None:
        """Play the source; then wait until drained (finite source) or until stopped."""
        await self._until_stopped(self._all_ready())
        if source is not None and not self._stopping.is_set():
            await self._play(source)
        if source is not None and source.finite and not self._stopping.is_set():
            if self.stages or self.recorder:
                self.summary.drained = await self._wait_drained()
            else:  # a source-only process: the other processes drain the rest once they hold every candle
                self.summary.drained = await self._wait_taken()
            if self.summary.drained:
                await self._verify_recorded()
        else:
            await self._stopping.wait()

    async def _all_ready(self) -> None:
        for consumer in self.consumers:
            await consumer.wait_ready()

    def _consumers(self, stage: Stage) -> list[Consumer]:
        opts = self.options
        config = ConsumerConfig(
            group=stage.name, consumer=self.consumer_name, batch_size=opts.batch_size, block_ms=opts.block_ms,
            max_attempts=opts.max_attempts, claim_min_idle_ms=opts.claim_min_idle_ms,
            claim_every_ms=opts.claim_every_ms, max_failed_in_row=opts.max_failed_in_row,
        )  # fmt: skip
        handler = self._handler(stage)
        stage.publisher = functools.partial(self._publish, stage.name)
        settle = stage.settle if self.bus.outlives_process else None  # in-process entries die with the process
        consumers = [
            Consumer(self.bus, topic, self.spec.symbols, handler, config, settle=settle) for topic in stage.inputs
        ]
        self.consumers.extend(consumers)
        return consumers

    async def _consume(self, consumers: Sequence[Consumer]) -> None:
        tasks = [asyncio.create_task(c.run(), name=f"{c.config.group} {c.topic}") for c in consumers]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _handler(self, stage: Stage):  # type: ignore[no-untyped-def]
        metrics = self.metrics

        async def handle(message: Message, delivery: Delivery) -> None:
            t0 = time.perf_counter()
            if stage.name == "features" and isinstance(message, CandleClosed):  # the signal chain starts here
                metrics.candle_taken(message.event_id)
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
            self._played.setdefault(symbol, []).append(event.ts)
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
            try:
                backlog = await self._backlog()
            except BusUnavailableError:
                backlog = -1  # away for a moment: neither calm nor progress
            if backlog < 0:
                calm = 0
                await asyncio.sleep(0.1)
                continue
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

    async def _wait_taken(self) -> bool:
        """A source-only process: True once every group acknowledged every candle it published."""
        deadline = time.monotonic() + self.options.drain_timeout_s
        smallest: int | None = None
        while not self._stopping.is_set():
            try:
                left = await self.bus.unacknowledged()
            except BusUnavailableError:
                left = smallest if smallest is not None else 1
            if left == 0:
                return True
            if smallest is None or left < smallest:
                smallest, deadline = left, time.monotonic() + self.options.drain_timeout_s
            if time.monotonic() > deadline:
                self.summary.not_idle = ["bus backlog"]
                return False
            await asyncio.sleep(0.05)
        return False

    async def _verify_recorded(self) -> None:
        """A drained run recorded, for every candle it published, what the deployment's stages produce."""
        if self.log is None or self.recorder is None:
            return
        wanted = [t for stage, t in (("features", "FeaturesComputed"), ("predictions", "PredictionMade"),
                                     ("signals", "SignalGenerated")) if stage in self.options.pipeline]  # fmt: skip
        if not wanted:  # a named strategy: only orders, which are not made at every candle
            return
        tf = self.spec.timeframe
        problems: list[str] = []
        for symbol, played in self._played.items():
            version = self.spec.signal_version(symbol)
            start, end = min(played) + tf.ms, max(played) + tf.ms + 1
            for type_name in wanted:
                found = by_symbol(await self.log.read(types=[type_name], start=start, end=end), symbol, tf)
                per_ts: dict[int, int] = {}
                for m in found:
                    ts = int(getattr(m, "ts", -1))
                    extra = (m.member,) if type_name == "PredictionMade" else ()  # type: ignore[attr-defined]
                    if m.event_id == derived_id(type_name, symbol, tf, ts, version, *extra):
                        per_ts[ts] = per_ts.get(ts, 0) + 1
                full = max(per_ts.values(), default=1)
                short = sorted(ts for ts in set(played) if per_ts.get(ts, 0) < full)
                if short:
                    problems.append(f"{symbol} {type_name}: {len(set(played)) - len(short)} of {len(set(played))} "
                                    f"candles (first missing ts {short[0]})")  # fmt: skip
        if problems:
            raise PipelineError(
                f"the run published {self.summary.candles} candles but did not record every derived event: "
                + "; ".join(problems),
                hint="events were lost (see the warnings above); run the same source again to complete the log",
            )

    async def _sample_pending(self) -> None:
        this = asyncio.current_task()
        while True:
            for topic in TOPICS:
                for symbol in self.spec.symbols:
                    try:
                        self.metrics.pending.labels(topic, symbol).set(await self.bus.backlog(topic, symbol))
                    except Exception:
                        # A client library may turn our cancellation into its own error; swallowing it here
                        # would keep the sampler alive for ever and the shutdown waiting on it (a run hung so).
                        if this is not None and this.cancelling():
                            raise asyncio.CancelledError from None
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
            if isinstance(stage, PortfolioStage):  # folds fills, not candles: its own count
                s.caught_up += stage.caught_up
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
    *, artifact_id: str, trading: TradingConfig | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Paper-trade ``candles`` of one symbol through the whole pipeline on the in-process bus.

    ``engine`` is copied (the caller's stays untouched); every event lands in ``store``, its signals and orders
    naming ``artifact_id``, the ensemble artifact the engine was built from. Returns the run summary plus the
    final position (quantity, realised P&L, cash) from the last ``PositionChanged``.
    """
    symbol = normalize_symbol(symbol)
    template = copy.deepcopy(engine)
    spec = PipelineSpec.build(
        [symbol], timeframe, FactoryEngines(lambda _s: copy.deepcopy(template), artifact_id),
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


def _failed(what: str, exc: BaseException) -> PipelineError:
    """``PipelineError`` naming what died and why, in one line."""
    if isinstance(exc, PipelineError) and what.startswith("stage") and "stage" in exc.what:
        return exc
    cause = exc.one_line() if isinstance(exc, SmartMarketError) else f"{type(exc).__name__}: {exc}"
    cause = cause.splitlines()[0] if cause else type(exc).__name__
    error = PipelineError(f"{what} failed: {cause}", hint="see the log for the traceback; fix it, then run again")
    error.__cause__ = exc
    return error


__all__ = [
    "LivePipeline",
    "RunOptions",
    "RunSummary",
    "demo_paper_trading",
    "percentiles",
    "run_file",
    "with_shadow",
]
