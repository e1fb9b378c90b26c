"""Fault tests of the Redis Streams bus against real Redis servers: nothing lost, nothing applied twice.

1. a consumer process killed with SIGKILL mid-batch: another consumer claims its pending entries (XAUTOCLAIM);
2. the Redis server stopped and started again (AOF, fsync always) while a producer and a consumer run;
3. poison entries (undecodable bytes, a handler that always raises) go to the dead-letter stream;
4. a burst of 100k events: backpressure and trimming keep the stream and its backlog bounded.

Handler effects are recorded in Redis or in test memory keyed by event id, together with how many times each
handler ran, so a lost event or a repeated effect shows. This file doubles as the consumer script of test 1
(``python test_bus_faults.py worker …``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from redis_server import PrivateRedis
from smartmarket.bus import CANDLES, Bus, Consumer, ConsumerConfig, Delivery, open_bus, stop_on_signals
from smartmarket.bus.redis_streams import RedisStreamsBus
from smartmarket.core.events import CandleClosed, Message, deterministic_event_id, from_msgpack
from smartmarket.core.types import Timeframe

SYMBOL = "BTCUSDT"
GROUP = "stage"


def candle(i: int, run: str = "") -> CandleClosed:
    ts = 1_700_000_000_000 + i * 60_000
    return CandleClosed(
        event_id=deterministic_event_id("fault-test", run, i),
        ts_event=ts + 60_000, symbol=SYMBOL, timeframe=Timeframe.M1, ts=ts,
        open=100.0, high=101.0, low=99.0, close=100.5, volume=1.0,
    )  # fmt: skip


def run_async(test: Callable[..., Coroutine[object, object, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def wrapper(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


async def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` (sync or async); the timeout only guards against a hang."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def isolated_bus(url: str, namespace: str | None = None, **options: Any) -> AsyncIterator[Bus]:
    bus = open_bus(url, namespace=namespace or f"t{uuid.uuid4().hex[:12]}", **options)
    try:
        yield bus
    finally:
        try:
            await bus.delete_namespace()
        finally:
            await bus.close()


@asynccontextmanager
async def consuming(consumer: Consumer) -> AsyncIterator[None]:
    task = asyncio.create_task(consumer.run())
    await consumer.wait_ready()
    try:
        yield
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 20)


def effect_keys(namespace: str) -> tuple[str, str]:
    """(set of applied event ids, hash event id -> handler runs) for a test namespace."""
    return f"{namespace}:test:effects", f"{namespace}:test:calls"


def redis_effect_handler(url: str, namespace: str, consumer: str) -> Callable[[Message, Delivery], Any]:
    """The effect of test 1: SADD the event id (idempotent) and count the handler runs, per consumer too."""
    client = aioredis.Redis.from_url(url)
    effects, calls = effect_keys(namespace)

    async def handler(message: Message, delivery: Delivery) -> None:
        pipe = client.pipeline(transaction=True)
        pipe.sadd(effects, message.event_id)
        pipe.hincrby(calls, message.event_id, 1)
        pipe.hincrby(f"{calls}:{consumer}", message.event_id, 1)
        await pipe.execute()

    return handler


# --- 1. a consumer process killed with SIGKILL -----------------------------------------------------------


async def _worker(url: str, namespace: str, consumer: str, stall_after: int) -> None:
    """The victim of test 1: applies effects, and after ``stall_after`` events hangs inside its handler."""
    bus = open_bus(url, namespace=namespace)
    apply = redis_effect_handler(url, namespace, consumer)
    flag = aioredis.Redis.from_url(url)
    handled = 0

    async def handler(message: Message, delivery: Delivery) -> None:
        nonlocal handled
        await apply(message, delivery)
        handled += 1
        if handled == stall_after:
            await flag.set(f"{namespace}:test:stalled", message.event_id)
            await asyncio.Event().wait()  # hang until killed: effect applied, batch not committed

    cfg = ConsumerConfig(group=GROUP, consumer=consumer, batch_size=50, block_ms=100)
    worker = Consumer(bus, CANDLES, SYMBOL, handler, cfg)
    stop_on_signals(worker)  # SIGTERM: finish and commit the batch, then exit 0
    await worker.run()
    await bus.close()


def _spawn_worker(url: str, namespace: str, consumer: str, stall_after: int) -> subprocess.Popen[bytes]:
    args = ["worker", "--url", url, "--namespace", namespace, "--consumer", consumer, "--stall-after", str(stall_after)]
    # The script imports the shared test helpers (tests/redis_server.py), which pytest puts on its path but a
    # plain ``python file.py`` does not.
    tests_dir = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, __file__, *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@run_async
async def test_sigkilled_consumer_process_pending_events_are_claimed_once(redis_server: str) -> None:
    n = 2_000
    async with isolated_bus(redis_server) as bus:
        ns = bus.names.namespace
        stream = bus.names.stream(CANDLES, SYMBOL)
        events = [candle(i, ns) for i in range(n)]
        await bus.ensure_group(CANDLES, SYMBOL, GROUP)
        await bus.publish_many(CANDLES, SYMBOL, events)
        raw: Any = redis.Redis.from_url(redis_server)
        victim = _spawn_worker(redis_server, ns, "victim", stall_after=275)  # mid-way through its 6th batch
        try:
            await wait_until(lambda: raw.exists(f"{ns}:test:stalled") or victim.poll() is not None, "the stall")
            assert victim.poll() is None, (victim.stderr.read() if victim.stderr else b"").decode()
            victim.send_signal(signal.SIGKILL)
            assert victim.wait(10) == -signal.SIGKILL
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait()
        stalled_id = raw.get(f"{ns}:test:stalled").decode()
        pending = raw.xpending_range(stream, GROUP, min="-", max="+", count=1_000, consumername="victim")
        pending_entry_ids = {p["message_id"] for p in pending}
        pending_event_ids = {
            from_msgpack(fields[b"p"]).event_id for eid, fields in raw.xrange(stream) if eid in pending_entry_ids
        }
        effects_key, calls_key = effect_keys(ns)
        victim_calls = {k.decode(): int(v) for k, v in raw.hgetall(f"{calls_key}:victim").items()}
        assert len(pending) == 50  # its whole last batch was delivered and not acknowledged
        assert stalled_id in pending_event_ids
        assert len(victim_calls) == 275

        rescuer = Consumer(
            bus,
            CANDLES,
            SYMBOL,
            redis_effect_handler(redis_server, ns, "rescuer"),
            ConsumerConfig(group=GROUP, consumer="rescuer", block_ms=50, claim_min_idle_ms=200, claim_every_ms=100),
        )
        async with consuming(rescuer):
            await wait_until(lambda: raw.scard(effects_key) == n and not raw.xpending(stream, GROUP)["pending"], "all")

        calls = {k.decode(): int(v) for k, v in raw.hgetall(calls_key).items()}
        assert raw.smembers(effects_key) == {e.event_id.encode() for e in events}  # every event took effect
        assert rescuer.stats.claimed == 50
        # A handler ran twice only where the victim had run it and died before committing its batch.
        rerun = {eid for eid, count in calls.items() if count > 1}
        assert rerun == set(victim_calls) & pending_event_ids
        assert len(rerun) == 25  # entries 251..275 of the stalled batch
        assert all(count <= 2 for count in calls.values())
        assert await bus.read_dead_letters(SYMBOL) == []
        assert await bus.backlog(CANDLES, SYMBOL) == 0
        raw.close()


@run_async
async def test_sigterm_stops_a_consumer_process_after_committing(redis_server: str) -> None:
    n = 20_000
    async with isolated_bus(redis_server, max_backlog=None) as bus:  # (no consumer yet while publishing)
        ns = bus.names.namespace
        stream = bus.names.stream(CANDLES, SYMBOL)
        await bus.ensure_group(CANDLES, SYMBOL, GROUP)
        await bus.publish_many(CANDLES, SYMBOL, [candle(i, ns) for i in range(n)])
        raw: Any = redis.Redis.from_url(redis_server)
        effects_key, _ = effect_keys(ns)
        worker = _spawn_worker(redis_server, ns, "graceful", stall_after=0)
        try:
            await wait_until(lambda: raw.scard(effects_key) >= 500 or worker.poll() is not None, "some progress")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(20) == 0, (worker.stderr.read() if worker.stderr else b"").decode()
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        applied = raw.scard(effects_key)
        assert applied < n  # it stopped mid-stream
        assert raw.xpending(stream, GROUP)["pending"] == 0  # everything it took was committed
        assert await bus.backlog(CANDLES, SYMBOL) == n - applied  # the rest waits for the next consumer
        raw.close()


# --- 2. the Redis server restarted mid-run ---------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found")
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@run_async
async def test_redis_restart_mid_run_loses_nothing(own_redis: PrivateRedis) -> None:
    n = 3_000
    async with isolated_bus(own_redis.url, reconnect_timeout_s=30) as bus:
        events = [candle(i, bus.names.namespace) for i in range(n)]
        effects: Counter[str] = Counter()

        async def handler(message: Message, delivery: Delivery) -> None:
            effects[message.event_id] += 1

        async def produce() -> None:
            for start in range(0, n, 25):
                await bus.publish_many(CANDLES, SYMBOL, events[start : start + 25])
                await asyncio.sleep(0.002)

        consumer = Consumer(bus, CANDLES, SYMBOL, handler, ConsumerConfig(group=GROUP, consumer="c1", block_ms=100))
        async with consuming(consumer):
            producer = asyncio.create_task(produce())
            await wait_until(lambda: len(effects) >= n // 3, "a third of the run")
            assert not producer.done()
            await asyncio.to_thread(own_redis.stop)
            stopped_at = len(effects)
            await asyncio.sleep(0.3)  # down for a moment: producer and consumer both hit closed connections
            await asyncio.to_thread(own_redis.start)
            restored = redis.Redis.from_url(own_redis.url)
            length_after_restart = restored.xlen(bus.names.stream(CANDLES, SYMBOL))
            restored.close()
            await producer
            await wait_until(lambda: len(effects) == n, "every event after the restart")
        assert stopped_at < n  # the outage happened mid-run
        assert consumer.stats.reconnects >= 1  # and the consumer saw it
        assert length_after_restart >= stopped_at  # the stream came back from the append-only file
        assert set(effects) == {e.event_id for e in events}
        assert max(effects.values()) == 1  # none applied twice
        assert await bus.read_dead_letters(SYMBOL) == []
        assert await bus.backlog(CANDLES, SYMBOL) == 0


# --- 3. poison events ------------------------------------------------------------------------------------


@run_async
async def test_poison_events_go_to_the_dead_letter_stream(redis_server: str) -> None:
    async with isolated_bus(redis_server) as bus:
        ns = bus.names.namespace
        poison = candle(1, ns)
        before, after = [candle(0, ns)], [candle(i, ns) for i in range(2, 200)]
        runs: Counter[str] = Counter()

        async def handler(message: Message, delivery: Delivery) -> None:
            runs[message.event_id] += 1
            if message.event_id == poison.event_id:
                raise ZeroDivisionError("a candle this stage cannot digest")

        cfg = ConsumerConfig(group=GROUP, consumer="c1", block_ms=50, max_attempts=3, retry_delay_ms=5)
        consumer = Consumer(bus, CANDLES, SYMBOL, handler, cfg)
        async with consuming(consumer):
            await bus.publish_many(CANDLES, SYMBOL, before)
            undecodable_id = (await bus.publish_raw(CANDLES, SYMBOL, [b"\xff\x00garbage"]))[0]
            poison_id = await bus.publish(CANDLES, SYMBOL, poison)
            await bus.publish_many(CANDLES, SYMBOL, after)
            await wait_until(lambda: consumer.stats.handled == 199 and consumer.stats.dead_lettered == 2, "done")

        letters = {d.original_id: d for d in await bus.read_dead_letters(SYMBOL)}
        assert set(letters) == {undecodable_id, poison_id}
        assert letters[undecodable_id].reason == "undecodable"
        assert letters[undecodable_id].payload == b"\xff\x00garbage"
        assert letters[poison_id].reason == "handler_error"
        assert letters[poison_id].attempts == 3
        assert "ZeroDivisionError: a candle this stage cannot digest" in letters[poison_id].error
        assert from_msgpack(letters[poison_id].payload) == poison
        assert letters[poison_id].stream == bus.names.stream(CANDLES, SYMBOL)
        assert runs[poison.event_id] == 3
        assert all(runs[e.event_id] == 1 for e in before + after)
        assert await bus.backlog(CANDLES, SYMBOL) == 0  # the poison entries were acknowledged


# --- 4. a burst of 100k events ---------------------------------------------------------------------------


@run_async
async def test_burst_of_100k_stays_bounded_and_is_fully_processed(redis_server: str) -> None:
    n, bound = 100_000, 5_000
    async with isolated_bus(redis_server, max_backlog=bound) as bus:
        assert isinstance(bus, RedisStreamsBus)
        ns = bus.names.namespace
        seen: set[str] = set()
        handled = 0
        last_entry = ""

        async def handler(message: Message, delivery: Delivery) -> None:
            """Trim what was 'stored' as a store-writer stage would, every 100 events: XTRIM drops only entries
            every group acknowledged, so the stream holds the backlog plus at most one committed batch. (A
            sampling task that trimmed instead fell behind on a loaded machine: 7,000 entries > 6,750.)"""
            nonlocal handled, last_entry
            if handled % 100 == 0 and last_entry:
                await bus.trim_acknowledged(CANDLES, SYMBOL, last_entry)
            seen.add(message.event_id)
            handled += 1
            last_entry = delivery.entry_id  # as a store-writer stage: this entry is now durable

        highest_backlog = highest_length = 0
        producing = True

        async def watch() -> None:
            """Sample the backlog and the stream length."""
            nonlocal highest_backlog, highest_length
            while producing or handled < n:
                highest_backlog = max(highest_backlog, await bus.backlog(CANDLES, SYMBOL))
                highest_length = max(highest_length, await bus.stream_length(CANDLES, SYMBOL))
                await asyncio.sleep(0.01)

        consumer = Consumer(
            bus, CANDLES, SYMBOL, handler, ConsumerConfig(group=GROUP, consumer="c1", batch_size=500, block_ms=50)
        )
        async with consuming(consumer):
            watcher = asyncio.create_task(watch())
            for start in range(0, n, 10_000):
                await bus.publish_many(CANDLES, SYMBOL, [candle(i, ns) for i in range(start, start + 10_000)])
            producing = False
            await wait_until(lambda: handled >= n, "all 100k events", timeout=60)
            await watcher
        slack = bus.backlog_check_every + bus.pipeline_chunk  # one check interval and one pipelined chunk
        assert bus.backpressure_waits > 0  # the producer was held back
        assert highest_backlog <= bound + slack
        assert highest_length <= bound + slack + consumer.config.batch_size
        assert len(seen) == n and handled == n
        assert await bus.backlog(CANDLES, SYMBOL) == 0


# --- the consumer script of test 1 ----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["worker"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--stall-after", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(_worker(args.url, args.namespace, args.consumer, args.stall_after))


if __name__ == "__main__":
    main()
