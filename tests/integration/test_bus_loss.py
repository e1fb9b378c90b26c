"""The live path when its bus loses everything, when a stage breaks, and when Redis outlives the event store.

- a test-owned ``redis-server`` without persistence restarted EMPTY mid-run, and ``FLUSHALL`` mid-run: the run
  completes with every signal and the orders of a clean replay (or fails naming the cause; never a silent success);
- the same with stages in separate ``worker`` processes, each of which stops within 10 s of SIGTERM;
- a run's streams deleted mid-run: recovered in seconds;
- a new event store on a Redis database an earlier run used: every candle is processed again;
- a stage that raises on every message, a stage task that dies: ``run`` raises ``PipelineError`` naming it;
- the recorder stopped while a read is in flight finishes (the shutdown race behind a hung fault test).

A CPU-bound process runs beside the pipeline tests (``cpu_hog``), as on a loaded machine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from redis_server import PrivateRedis
from smartmarket.bus.base import Delivery
from smartmarket.bus.inprocess import InProcessBus, InProcessSubscription
from smartmarket.bus.redis_streams import RedisStreamsBus
from smartmarket.bus.topics import CANDLES, EXECUTIONS, ORDERS, TOPICS
from smartmarket.core.errors import PipelineError
from smartmarket.core.events import Message, SignalGenerated, from_msgpack
from smartmarket.core.types import Timeframe
from smartmarket.data.synthetic import generate_market
from smartmarket.models.labels import LabelConfig
from smartmarket.pipeline.live import LivePipeline, RunOptions
from smartmarket.pipeline.replay import replay
from smartmarket.pipeline.sources import FileSource
from smartmarket.pipeline.stages import ArtifactEngines, EventLog, PipelineSpec, TradingConfig, candle_closed
from smartmarket.pipeline.stages.recorder import Recorder
from smartmarket.signals.fit import default_system_config, fit_artifact, save_artifact
from smartmarket.signals.members import SMCMember, TechnicalMember
from smartmarket.store.url import open_store

SYMBOL = "BTCUSDT"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    registry = tmp_path_factory.mktemp("registry")
    candles = generate_market(1_800, seed=11)
    config = default_system_config(
        ensemble="stacking", strength_targets=(0.0, 0.0, 0.0), regime_target=0.0, z=0.0, min_count=5,
        require_skill=False,  # synthetic members have no skill; orders must flow
    )  # fmt: skip
    artifact = fit_artifact(
        candles.iloc[:1_500], [TechnicalMember(), SMCMember()], symbol=SYMBOL, timeframe="1m",
        label_config=LabelConfig(horizon=12), config=config,
    )  # fmt: skip
    save_artifact(artifact, registry)
    return registry, candles.iloc[1_500:].reset_index(drop=True)


def spec_for(registry: Path) -> PipelineSpec:
    return PipelineSpec.build([SYMBOL], "1m", ArtifactEngines(registry, "1m"), TradingConfig(limits=None))


@pytest.fixture
def empty_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def recorded_signal_ts(store: Any) -> list[int]:
    return sorted(
        {e.message.ts for e in store.read_events(types=["SignalGenerated"]) if isinstance(e.message, SignalGenerated)}
    )


def assert_complete(store: Any, spec: PipelineSpec, frame: pd.DataFrame) -> None:
    """Every candle signalled once, and the orders a clean replay of the log makes (the reference run)."""
    assert recorded_signal_ts(store) == frame["ts"].tolist()
    report = replay(store, spec)
    assert report.identical, [d.describe() for d in report.differences[:5]]
    assert report.compared.get("SubmitOrder", 0) > 0


async def _wait_signals(store_log: EventLog, at_least: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while len(await store_log.read(types=["SignalGenerated"])) < at_least:
        assert time.monotonic() < deadline, "the run never got going"
        await asyncio.sleep(0.05)


# --- the bus loses everything mid-run ---------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["restart_empty", "flushall"])
def test_a_run_survives_its_redis_losing_everything(
    loss: str, setup: tuple[Path, pd.DataFrame], empty_redis: PrivateRedis, tmp_path: Path, cpu_hog: None
) -> None:
    registry, frame = setup
    spec = spec_for(registry)
    store = open_store(f"duckdb:///{tmp_path / 'events.duckdb'}")

    async def go() -> tuple[Any, int]:
        bus = RedisStreamsBus(empty_redis.url, reconnect_timeout_s=30)
        pipeline = LivePipeline(spec, store, bus, options=RunOptions(drain_timeout_s=60))
        task = asyncio.create_task(pipeline.run(FileSource({SYMBOL: frame}, speed=3_000)))  # ~6 s of candles
        try:
            deadline = time.monotonic() + 60
            while pipeline.summary.candles < 100:
                assert time.monotonic() < deadline and not task.done(), "the run never got going"
                await asyncio.sleep(0.02)
            if loss == "restart_empty":
                await asyncio.to_thread(empty_redis.stop)
                await asyncio.sleep(0.3)
                await asyncio.to_thread(empty_redis.start)
            else:
                raw = redis.Redis.from_url(empty_redis.url)
                raw.flushall()
                raw.close()
            played_at_loss = pipeline.summary.candles
            summary = await asyncio.wait_for(task, 120)
            return summary, played_at_loss
        finally:
            await bus.close()

    summary, played_at_loss = asyncio.run(go())
    assert 0 < played_at_loss < len(frame)  # the loss happened mid-run
    assert summary.drained and summary.candles == len(frame)
    assert_complete(store, spec, frame)
    store.close()


def test_streams_deleted_mid_run_are_recovered_in_seconds(
    setup: tuple[Path, pd.DataFrame], redis_server: str, tmp_path: Path, cpu_hog: None
) -> None:
    registry, frame = setup
    spec = spec_for(registry)
    store = open_store(f"duckdb:///{tmp_path / 'events.duckdb'}")
    ns = f"t{uuid.uuid4().hex[:10]}"

    async def go() -> tuple[Any, float]:
        bus = RedisStreamsBus(redis_server, namespace=ns)
        try:
            pipeline = LivePipeline(spec, store, bus, options=RunOptions(drain_timeout_s=60))
            task = asyncio.create_task(pipeline.run(FileSource({SYMBOL: frame}, speed=3_000)))
            while pipeline.summary.candles < 100:
                assert not task.done()
                await asyncio.sleep(0.02)
            raw = redis.Redis.from_url(redis_server)
            streams = [bus.names.stream(t, SYMBOL) for t in TOPICS]
            raw.delete(*streams)  # every stream of the run, the epoch key kept
            raw.close()
            lost_at = time.monotonic()
            summary = await asyncio.wait_for(task, 120)
            return summary, time.monotonic() - lost_at
        finally:
            await bus.delete_namespace()
            await bus.close()

    summary, after_loss_s = asyncio.run(go())
    assert summary.drained
    assert_complete(store, spec, frame)
    # the rest of the file plays in ~5 s at this speed: recovering must not add the old 60 s
    assert after_loss_s < 40, after_loss_s
    store.close()


def test_a_process_back_from_an_outage_republishes_what_it_lost_though_another_recovered_first(
    empty_redis: PrivateRedis,
) -> None:
    """The stall behind a flaky worker test: Redis restarts empty, and another process reconnects first and
    recovers (new epoch, every group recreated). The risk worker then meets no NOGROUP and has nothing new to
    append, so nothing told it that its last order was lost: it waited for ever for that order's answer. Its
    consumers now catch up after every outage (``Subscription.reconnected``)."""

    async def scenario() -> tuple[list[str], int]:
        ns = f"t{uuid.uuid4().hex[:8]}"
        risk, front = RedisStreamsBus(empty_redis.url, namespace=ns), RedisStreamsBus(empty_redis.url, namespace=ns)
        try:
            for bus in (risk, front):  # every process declares the deployment's groups (the stage table)
                await bus.ensure_group(ORDERS, SYMBOL, "execution")
                await bus.ensure_group(EXECUTIONS, SYMBOL, "risk")
            order = candle_closed(SYMBOL, Timeframe.parse("1m"), 0, 1.0, 1.0, 1.0, 1.0, 1.0)
            await risk.publish(ORDERS, SYMBOL, order)  # not read yet: it stays in the risk process's outbox
            answers = risk.subscription(EXECUTIONS, SYMBOL, "risk", "risk-1")
            empty_redis.stop()
            empty_redis.start()  # empty
            await front.recover(SYMBOL, "test")  # the other process first: new epoch, groups recreated
            stream = risk.names.stream(ORDERS, SYMBOL)
            raw = redis.Redis.from_url(empty_redis.url)
            try:
                before = [from_msgpack(f[b"p"]).event_id for _, f in raw.xrange(stream)]
                await answers.reconnected()  # what the risk process's consumer now runs once Redis answers again
                after = [from_msgpack(f[b"p"]).event_id for _, f in raw.xrange(stream)]
            finally:
                raw.close()
            assert after == [order.event_id], after
            return before, risk.republished
        finally:
            await risk.delete_namespace()
            await risk.close()
            await front.close()

    before, republished = asyncio.run(scenario())
    assert before == [] and republished == 1


# --- separate worker processes ----------------------------------------------------------------------------


def start_worker(stage: str, bus_url: str, store_url: str, registry: Path, home: Path) -> subprocess.Popen[bytes]:
    """The worker's stderr goes to ``home/../STAGE.log``: an unread pipe fills with the reconnection warnings of a
    lost bus (64 KiB) and then blocks the worker, which stalls the run."""
    cmd = [
        sys.executable, "-m", "smartmarket.cli.app", "--store", store_url, "--home", str(home),
        "worker", stage, "--bus", bus_url, "--symbols", SYMBOL, "--timeframe", "1m", "--registry", str(registry),
        "--artifact", "latest", "--no-risk-checks", "--claim-idle-ms", "1500", "--consumer", f"w-{stage}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with open(worker_log(home, stage), "wb") as stderr:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def worker_log(home: Path, stage: str) -> Path:
    return home.parent / f"{stage}.log"


def log_tail(home: Path, stage: str) -> str:
    path = worker_log(home, stage)
    return path.read_text(errors="replace")[-1500:] if path.exists() else ""


def test_workers_survive_redis_restarted_empty_and_stop_on_sigterm(
    setup: tuple[Path, pd.DataFrame], empty_redis: PrivateRedis, pg_url: str, tmp_path: Path, cpu_hog: None
) -> None:
    registry, frame = setup
    spec = spec_for(registry)
    worker_stages = ("features", "predictions", "signals", "risk")
    workers = {s: start_worker(s, empty_redis.url, pg_url, registry, tmp_path / "home") for s in worker_stages}
    store = open_store(pg_url)
    client = redis.Redis.from_url(empty_redis.url)
    try:

        def reading(stage: str, topic: str) -> bool:
            try:
                return any(
                    c["name"] == f"w-{stage}".encode()
                    for c in client.xinfo_consumers(f"sm:{{{SYMBOL}}}:{topic}", stage)
                )
            except redis.ResponseError:
                return False

        deadline = time.monotonic() + 120
        inputs = {"features": "candles", "predictions": "features", "signals": "predictions", "risk": "signals"}
        while not all(reading(s, t) for s, t in inputs.items()):
            dead = [s for s, p in workers.items() if p.poll() is not None]
            assert not dead, {s: log_tail(tmp_path / "home", s) for s in dead}
            assert time.monotonic() < deadline, "workers never started reading"
            time.sleep(0.1)

        async def scenario() -> Any:
            bus = RedisStreamsBus(empty_redis.url, reconnect_timeout_s=30)
            # here: the candles, execution, portfolio and the recorder; the four stages above in their own processes
            front = LivePipeline(spec, store, bus, options=RunOptions(
                stages=("candles", "execution", "portfolio", "recorder"), drain_timeout_s=60))  # fmt: skip
            task = asyncio.create_task(front.run(FileSource({SYMBOL: frame}, speed=3_000)))
            try:
                while front.summary.candles < 100:
                    assert not task.done()
                    await asyncio.sleep(0.02)
                await asyncio.to_thread(empty_redis.stop)
                await asyncio.sleep(0.3)
                await asyncio.to_thread(empty_redis.start)
                return await asyncio.wait_for(task, 180)
            finally:
                await bus.close()

        summary = asyncio.run(scenario())
        assert summary.drained, (summary.not_idle, {s: log_tail(tmp_path / "home", s) for s in workers})
        assert_complete(store, spec, frame)

        # the bus away again: every worker still stops within 10 s of SIGTERM
        empty_redis.stop()
        for proc in workers.values():
            proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        codes = {s: p.wait(30) for s, p in workers.items()}
        assert time.monotonic() - t0 < 10, codes
        assert all(code == 0 for code in codes.values()), codes
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        client.close()
        store.close()


# --- idempotency belongs to the store ---------------------------------------------------------------------


def test_a_new_store_on_a_used_redis_database_processes_every_candle(
    setup: tuple[Path, pd.DataFrame], redis_server: str, tmp_path: Path
) -> None:
    registry, frame = setup
    spec = spec_for(registry)
    ns = f"t{uuid.uuid4().hex[:10]}"
    part = frame.iloc[:150].reset_index(drop=True)

    async def run_into(path: Path) -> Any:
        bus = RedisStreamsBus(redis_server, namespace=ns)
        store = open_store(f"duckdb:///{path}")
        try:
            summary = await LivePipeline(spec, store, bus, options=RunOptions(drain_timeout_s=60)).run(
                FileSource({SYMBOL: part})
            )
            return summary, recorded_signal_ts(store)
        finally:
            store.close()
            await bus.close()

    async def go() -> tuple[Any, list[int], Any, list[int], Any]:
        first, first_ts = await run_into(tmp_path / "first.duckdb")
        second, second_ts = await run_into(tmp_path / "second.duckdb")  # fresh store, same Redis namespace
        again, _ = await run_into(tmp_path / "second.duckdb")  # the same store again: nothing new to record
        bus = RedisStreamsBus(redis_server, namespace=ns)
        await bus.delete_namespace()
        await bus.close()
        return first, first_ts, second, second_ts, again

    first, first_ts, second, second_ts, again = asyncio.run(go())
    assert first.drained and second.drained and again.drained
    assert first_ts == second_ts == part["ts"].tolist()
    assert second.recorded > len(part)  # candles, features, predictions, signals...
    assert again.recorded == 0


# --- failing loudly ---------------------------------------------------------------------------------------


def test_a_stage_that_raises_on_every_message_fails_the_run_naming_it(
    setup: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    registry, frame = setup
    store = open_store(f"duckdb:///{tmp_path / 'events.duckdb'}")
    pipeline = LivePipeline(spec_for(registry), store, InProcessBus(), options=RunOptions(drain_timeout_s=60))
    signals = next(s for s in pipeline.stages if s.name == "signals")

    async def broken(message: Message) -> list[Message]:
        raise ZeroDivisionError("this stage cannot digest anything")

    signals.handle = broken  # type: ignore[method-assign]
    t0 = time.monotonic()
    with pytest.raises(PipelineError, match=r"stage signals .*ZeroDivisionError: this stage cannot digest"):
        asyncio.run(pipeline.run(FileSource({SYMBOL: frame})))
    assert time.monotonic() - t0 < 30
    store.close()


class _DyingBus(InProcessBus):
    """An in-process bus whose ``risk`` reads blow up after a few batches (a task dying from a bug)."""

    def subscription(self, topic: str, symbol: str, group: str, consumer: str) -> InProcessSubscription:
        sub = super().subscription(topic, symbol, group, consumer)
        if group == "risk":
            reads = 0
            original = sub.read_new

            async def read_new(count: int, block_ms: int) -> list[Delivery]:
                nonlocal reads
                reads += 1
                if reads > 3:
                    raise RuntimeError("reply parser crashed")
                return await original(count, block_ms)

            sub.read_new = read_new  # type: ignore[method-assign]
        return sub


def test_a_dying_stage_task_fails_the_run_within_seconds(setup: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    registry, frame = setup
    store = open_store(f"duckdb:///{tmp_path / 'events.duckdb'}")
    pipeline = LivePipeline(spec_for(registry), store, _DyingBus(), options=RunOptions(drain_timeout_s=60))
    t0 = time.monotonic()
    with pytest.raises(PipelineError, match=r"stage risk failed: RuntimeError: reply parser crashed"):
        asyncio.run(pipeline.run(FileSource({SYMBOL: frame}, speed=600)))  # ~30 s of candles if it went on
    assert time.monotonic() - t0 < 15
    store.close()


def test_a_drained_run_missing_derived_events_is_a_failure(setup: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    registry, frame = setup
    store = open_store(f"duckdb:///{tmp_path / 'events.duckdb'}")
    pipeline = LivePipeline(spec_for(registry), store, InProcessBus(), options=RunOptions(drain_timeout_s=60))
    features = next(s for s in pipeline.stages if s.name == "features")
    handle = features.handle

    async def lossy(message: Message) -> list[Message]:  # the events of every 7th candle vanish on the way
        out = await handle(message)
        return [] if getattr(message, "ts", 0) // 60_000 % 7 == 0 else out

    features.handle = lossy  # type: ignore[method-assign]
    with pytest.raises(
        PipelineError, match=r"did not record every derived event: BTCUSDT FeaturesComputed: \d+ of 300"
    ):
        asyncio.run(pipeline.run(FileSource({SYMBOL: frame})))
    store.close()


# --- the shutdown race --------------------------------------------------------------------------------------


class _StopDuringReadBus(InProcessBus):
    """Its recorder reads call ``stop`` and then wait, so the flusher sees "stopping, nothing queued" first."""

    recorder: Recorder | None = None

    def subscription(self, topic: str, symbol: str, group: str, consumer: str) -> InProcessSubscription:
        sub = super().subscription(topic, symbol, group, consumer)
        original = sub.read_new

        async def read_new(count: int, block_ms: int) -> list[Delivery]:
            got = await original(count, block_ms)
            if got and self.recorder is not None:
                self.recorder.stop()
                await asyncio.sleep(0.5)  # the flusher looks at its queue meanwhile
            return got

        sub.read_new = read_new  # type: ignore[method-assign]
        return sub


def test_the_recorder_stopped_during_a_read_still_finishes(tmp_path: Path) -> None:
    store = open_store(f"duckdb:///{tmp_path / 'events.duckdb'}")
    bus = _StopDuringReadBus()
    log = EventLog(store)
    recorder = bus.recorder = Recorder(bus, log, [CANDLES], [SYMBOL], "c1", flush_ms=10)
    events = [candle_closed(SYMBOL, Timeframe.M1, 1_699_999_980_000 + i * 60_000, 1, 1, 1, 1, 1) for i in range(5)]

    async def go() -> None:
        await bus.ensure_group(CANDLES, SYMBOL, "recorder")
        await bus.publish_many(CANDLES, SYMBOL, events)
        await asyncio.wait_for(recorder.run(), 10)  # before the fix: waited forever on a flusher that had left

    asyncio.run(go())
    assert recorder.recorded == 5
    assert len(store.read_events(types=["CandleClosed"])) == 5
    log.close()
    store.close()
