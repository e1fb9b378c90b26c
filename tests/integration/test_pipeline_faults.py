"""Pipeline-level faults on the real Redis bus: a risk worker killed mid-stream, a poison event, a graceful stop.

(Bus-level faults — a Redis restart, a 100k burst — are tested in ``test_bus_faults.py``; losing the bus in
``test_bus_loss.py``.) Each test has its own stream namespace; the worker-kill test its own PostgreSQL schema
(several processes share that event store). A CPU-bound process runs beside every test here: the worker-kill test
once hung for 20 minutes on a loaded machine (the recorder's flusher could leave before a stream loop's last batch).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import redis

from smartmarket.bus.redis_streams import RedisStreamsBus
from smartmarket.bus.topics import SIGNALS, StreamNames
from smartmarket.core.events import SignalGenerated, SubmitOrder
from smartmarket.data.synthetic import generate_market
from smartmarket.models.labels import LabelConfig
from smartmarket.pipeline.live import LivePipeline, RunOptions
from smartmarket.pipeline.replay import replay
from smartmarket.pipeline.sources import FileSource
from smartmarket.pipeline.stages import ArtifactEngines, PipelineSpec, TradingConfig
from smartmarket.signals.fit import default_system_config, fit_artifact, save_artifact
from smartmarket.signals.members import SMCMember, TechnicalMember
from smartmarket.store.url import open_store

SYMBOL = "BTCUSDT"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    registry = tmp_path_factory.mktemp("registry")
    candles = generate_market(1_800, seed=9)
    config = default_system_config(
        ensemble="stacking",
        strength_targets=(0.0, 0.0, 0.0),
        regime_target=0.0,
        z=0.0,
        min_count=5,
        require_skill=False,  # synthetic members have no skill; these tests need orders to flow
    )
    artifact = fit_artifact(
        candles.iloc[:1_500], [TechnicalMember(), SMCMember()], symbol=SYMBOL, timeframe="1m",
        label_config=LabelConfig(horizon=12), config=config,
    )  # fmt: skip
    save_artifact(artifact, registry)
    return registry, candles.iloc[1_500:].reset_index(drop=True)


pytestmark = pytest.mark.usefixtures("cpu_hog")  # each test with a CPU-bound job beside it (a loaded machine)


def spec_for(registry: Path) -> PipelineSpec:
    return PipelineSpec.build([SYMBOL], "1m", ArtifactEngines(registry, "1m"), TradingConfig(limits=None))


def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def start_worker(stage: str, name: str, bus_url: str, store_url: str, registry: Path, home: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "smartmarket.cli.app", "--store", store_url, "--home", str(home),
        "worker", stage, "--bus", bus_url, "--symbols", SYMBOL, "--timeframe", "1m", "--registry", str(registry),
        "--artifact", "latest", "--no-risk-checks", "--claim-idle-ms", "1500", "--consumer", name,
    ]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with open(home.parent / f"{name}.log", "wb") as stderr:  # a file: an unread pipe can fill and block the worker
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def wait_until(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def leg_kind(order: SubmitOrder) -> str:
    return "exit" if order.order_type != "market" else "close" if order.reduce_only else "target"


def test_a_killed_risk_worker_loses_no_signal_and_duplicates_no_order(
    setup: tuple[Path, pd.DataFrame], redis_server: str, pg_url: str, tmp_path: Path
) -> None:
    registry, frame = setup
    spec = spec_for(registry)
    ns = namespace()
    bus_url = f"{redis_server}?namespace={ns}"
    client = redis.Redis.from_url(redis_server)
    signals_stream = StreamNames(ns).stream(SIGNALS, SYMBOL)
    workers = {n: start_worker("risk", n, bus_url, pg_url, registry, tmp_path / "home") for n in ("w1", "w2")}
    store = open_store(pg_url)
    try:

        def consumers() -> set[str]:
            try:
                return {c["name"].decode() for c in client.xinfo_consumers(signals_stream, "risk")}
            except redis.ResponseError:
                return set()

        wait_until(lambda: consumers() >= {"w1", "w2"}, 90, "both risk workers to read")

        async def scenario() -> int:
            bus = RedisStreamsBus(redis_server, namespace=ns)
            # everything but risk here; no recorder yet, so the workers' first signals wait for their candles
            front_stages = ("features", "predictions", "signals", "execution", "portfolio")
            front = LivePipeline(spec, None, bus, options=RunOptions(stages=front_stages, drain_timeout_s=120))
            recorder = LivePipeline(spec, store, bus, options=RunOptions(stages=("recorder",)))
            front_task = asyncio.create_task(front.run(FileSource({SYMBOL: frame})))

            def w1_pending() -> int:
                return len(client.xpending_range(signals_stream, "risk", "-", "+", 1000, consumername="w1"))

            deadline = time.monotonic() + 60
            while w1_pending() == 0:
                assert time.monotonic() < deadline, "w1 never held a signal"
                await asyncio.sleep(0.02)
            held = w1_pending()
            workers["w1"].send_signal(signal.SIGKILL)  # mid-stream: its signals are delivered, not acknowledged
            workers["w1"].wait(10)
            recorder_task = asyncio.create_task(recorder.run(None))
            summary = await front_task
            assert summary.drained, summary.not_idle
            recorder.stop()
            await recorder_task
            assert client.xpending(signals_stream, "risk")["pending"] == 0
            await bus.close()  # the namespace is deleted once the workers have stopped (they would see it lost)
            return held

        held = asyncio.run(scenario())
        assert held > 0
        signals = [e.message for e in store.read_events(types=["SignalGenerated"])]
        orders = [e.message for e in store.read_events(types=["SubmitOrder"])]
        assert len({s.ts for s in signals if isinstance(s, SignalGenerated)}) == len(frame)
        assert len(orders) > 4
        # at most one order per signal and leg: a protective exit (a stop or limit order), a reversal's close, the
        # target (a signal whose candle took an exit and that trades on is two orders: exit, then target)
        legs = [(o.causation_id, leg_kind(o)) for o in orders if isinstance(o, SubmitOrder)]
        assert len(legs) == len(set(legs)), sorted(legs)
        assert {"exit", "target"} <= {kind for _, kind in legs}  # protective exits too, caught up by the successor
        report = replay(store, spec)  # and none lost: the log holds exactly the orders a clean run makes
        assert report.identical, [d.describe() for d in report.differences[:5]]
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for key in client.scan_iter(match=StreamNames(ns).pattern(), count=1000):
            client.delete(key)
        store.close()
        client.close()
    assert workers["w2"].returncode == 0, (tmp_path / "w2.log").read_text(errors="replace")[-2000:]


def test_a_poison_event_is_dead_lettered_and_the_pipeline_keeps_going(
    setup: tuple[Path, pd.DataFrame], redis_server: str, tmp_path: Path
) -> None:
    registry, frame = setup
    spec = spec_for(registry)
    store = open_store(f"duckdb:///{tmp_path / 'events.duckdb'}")

    async def go() -> tuple[list[tuple[str, str]], bool]:
        bus = RedisStreamsBus(redis_server, namespace=namespace())
        try:
            pipeline = LivePipeline(spec, store, bus, options=RunOptions(drain_timeout_s=60))
            task = asyncio.create_task(pipeline.run(FileSource({SYMBOL: frame}, speed=6_000)))  # ~3 s of candles
            await asyncio.sleep(1.0)
            await bus.publish_raw(SIGNALS, SYMBOL, [b"\xc1 not an event"])
            summary = await task
            letters = await bus.read_dead_letters(SYMBOL)
            return sorted((d.group, d.reason) for d in letters), summary.drained
        finally:
            await bus.delete_namespace()
            await bus.close()

    letters, drained = asyncio.run(go())
    assert drained
    assert letters == [("recorder", "undecodable"), ("risk", "undecodable")]
    assert replay(store, spec).identical  # every candle after the poison still went all the way
    store.close()


def test_a_graceful_stop_leaves_nothing_lost_and_a_restart_completes(
    setup: tuple[Path, pd.DataFrame], redis_server: str, tmp_path: Path
) -> None:
    registry, frame = setup
    spec = spec_for(registry)
    store = open_store(f"duckdb:///{tmp_path / 'events.duckdb'}")
    ns = namespace()

    async def go() -> tuple[int, int]:
        bus = RedisStreamsBus(redis_server, namespace=ns)
        options = RunOptions(drain_timeout_s=60, claim_min_idle_ms=1_000, claim_every_ms=200)
        try:
            first = LivePipeline(spec, store, bus, options=options)
            task = asyncio.create_task(first.run(FileSource({SYMBOL: frame}, speed=4_000)))  # ~4.5 s of candles
            await asyncio.sleep(1.5)
            first.stop()  # as SIGTERM does
            stopped = await task
            assert stopped.stopped and 0 < stopped.candles < len(frame)
            second = LivePipeline(spec, store, bus, options=options)
            resumed = await second.run(FileSource({SYMBOL: frame}))
            assert resumed.drained
            return stopped.candles, resumed.caught_up
        finally:
            await bus.delete_namespace()
            await bus.close()

    played, caught_up = asyncio.run(go())
    assert caught_up > 0  # the second run's stages rebuilt their state from the log
    signals = [e.message for e in store.read_events(types=["SignalGenerated"])]
    assert sorted(s.ts for s in signals if isinstance(s, SignalGenerated)) == frame["ts"].tolist()
    report = replay(store, spec)
    assert report.identical, [d.describe() for d in report.differences[:5]]
    assert played > 0
    store.close()
