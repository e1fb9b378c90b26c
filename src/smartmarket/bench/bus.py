"""``run_bus_benchmark``: throughput and latency of the event bus, Redis Streams and in-process.

Measured in one process (one event loop; the Redis server uses the machine's other core), on CandleClosed
events, through one stream with one consumer group:

- ``transport``: a producer appending pre-encoded payloads in pipelined batches while a reader of the
  group reads and acknowledges them in batches: the bus itself, first append to last acknowledgement;
- ``publish_only`` / ``consume_only``: the two halves alone (append everything, then drain the backlog);
- ``consumer_loop``: ``publish_many`` of ``Message`` objects (msgpack encoding) while the full
  ``Consumer`` runs (decoding, processed-id check, commit = mark processed + ack) with an empty handler;
- ``latency``: one event at a time, 2 ms apart, ``publish`` call to handler entry, p50/p99 (the consumer
  waits in its blocking read, as a live pipeline between candles does).

Target from the issue: ≥ 50k events/s through one Redis stream with a consumer group (``transport``).
Run it: ``python -m smartmarket.bench.bus --redis redis://127.0.0.1:6379/0``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from smartmarket.bench.timing import Latency
from smartmarket.bus.base import Bus, Delivery
from smartmarket.bus.consumer import Consumer, ConsumerConfig
from smartmarket.bus.inprocess import InProcessBus
from smartmarket.bus.redis_streams import RedisStreamsBus
from smartmarket.bus.topics import CANDLES
from smartmarket.core.events import CandleClosed, Message, to_msgpack
from smartmarket.core.types import Timeframe

TARGET_EVENTS_PER_S = 50_000
SYMBOL = "BENCHBTC"
GROUP = "bench"
BATCH = 1_000


def _candle(i: int) -> CandleClosed:
    start = 1_700_000_000_000
    return CandleClosed(
        ts_event=start + (i + 1) * 60_000, symbol=SYMBOL, timeframe=Timeframe.M1, ts=start + i * 60_000,
        open=30_000.0 + i % 97, high=30_050.0 + i % 97, low=29_950.0 + i % 97, close=30_010.0 + i % 97,
        volume=1.5 + i % 7,
    )  # fmt: skip


def _events(n: int) -> list[CandleClosed]:
    return [_candle(i) for i in range(n)]


async def _transport(bus: Bus, payloads: list[bytes]) -> float:
    """Producer and group reader concurrently; events/s from first append to last acknowledgement."""
    sub = bus.subscription(CANDLES, SYMBOL, GROUP, "reader")
    await sub.ensure_group()
    n = len(payloads)

    async def produce() -> None:
        for start in range(0, n, BATCH):
            await bus.publish_raw(CANDLES, SYMBOL, payloads[start : start + BATCH])

    async def consume() -> None:
        done = 0
        while done < n:
            batch = await sub.read_new(BATCH, 100)
            await sub.commit([], batch)
            done += len(batch)

    t0 = time.perf_counter()
    await asyncio.gather(produce(), consume())
    seconds = time.perf_counter() - t0
    await sub.close()
    return n / seconds


async def _publish_then_consume(bus: Bus, payloads: list[bytes]) -> tuple[float, float]:
    """Append everything (no reader), then drain the group's backlog: (publish events/s, consume events/s)."""
    await bus.ensure_group(CANDLES, SYMBOL, GROUP)
    n = len(payloads)
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        await bus.publish_raw(CANDLES, SYMBOL, payloads[start : start + BATCH])
    publish_rate = n / (time.perf_counter() - t0)
    sub = bus.subscription(CANDLES, SYMBOL, GROUP, "drainer")
    t0 = time.perf_counter()
    done = 0
    while done < n:
        batch = await sub.read_new(BATCH, 100)
        await sub.commit([], batch)
        done += len(batch)
    consume_rate = n / (time.perf_counter() - t0)
    await sub.close()
    return publish_rate, consume_rate


async def _consumer_loop(bus: Bus, events: list[CandleClosed]) -> float:
    """``publish_many`` + the full ``Consumer`` (decode, idempotency, commit); events/s end to end."""
    n = len(events)
    handled = 0
    all_done = asyncio.Event()

    async def handler(message: Message, delivery: Delivery) -> None:
        nonlocal handled
        handled += 1
        if handled == n:
            all_done.set()

    consumer = Consumer(
        bus, CANDLES, SYMBOL, handler, ConsumerConfig(group=GROUP, consumer="loop", batch_size=BATCH, block_ms=100)
    )
    task = asyncio.create_task(consumer.run())
    await consumer.wait_ready()
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        await bus.publish_many(CANDLES, SYMBOL, events[start : start + BATCH])
    await all_done.wait()
    seconds = time.perf_counter() - t0
    consumer.stop()
    await task
    return n / seconds


async def _latency(bus: Bus, events: list[CandleClosed], warmup: int = 200, gap_s: float = 0.002) -> Latency:
    """``publish`` to handler entry, one event in flight at a time, ``gap_s`` apart (the consumer is idle in
    its blocking read when an event comes, as between live candles)."""
    arrived = asyncio.Event()
    t_arrival = 0

    async def handler(message: Message, delivery: Delivery) -> None:
        nonlocal t_arrival
        t_arrival = time.perf_counter_ns()
        arrived.set()

    consumer = Consumer(bus, CANDLES, SYMBOL, handler, ConsumerConfig(group=GROUP, consumer="latency", block_ms=1_000))
    task = asyncio.create_task(consumer.run())
    await consumer.wait_ready()
    samples = []
    for i, event in enumerate(events):
        arrived.clear()
        t0 = time.perf_counter_ns()
        await bus.publish(CANDLES, SYMBOL, event)
        await arrived.wait()
        if i >= warmup:
            samples.append((t_arrival - t0) / 1000.0)
        await asyncio.sleep(gap_s)
    consumer.stop()
    await task
    arr = np.asarray(samples)
    return Latency(
        p50_us=round(float(np.percentile(arr, 50)), 1),
        p99_us=round(float(np.percentile(arr, 99)), 1),
        mean_us=round(float(arr.mean()), 1),
        runs=len(samples),
    )


def _fresh_namespace() -> str:
    return f"bench{uuid.uuid4().hex[:10]}"


async def _run(redis_url: str, events: int, latency_runs: int, log: Callable[[str], None]) -> dict[str, Any]:
    log(f"building {events:,} CandleClosed events")
    messages = _events(events)
    payloads = [to_msgpack(m) for m in messages]
    latency_events = _events(latency_runs + 200)
    result: dict[str, Any] = {
        "events": events,
        "payload_bytes": len(payloads[0]),
        "batch": BATCH,
        "target_events_per_s": TARGET_EVENTS_PER_S,
    }

    redis_figures: dict[str, Any] = {}
    for name in ("transport", "publish_then_consume", "consumer_loop", "latency"):
        bus = RedisStreamsBus(redis_url, namespace=_fresh_namespace(), max_backlog=None)
        try:
            log(f"redis: {name}")
            if name == "transport":
                redis_figures["transport_events_per_s"] = round(await _transport(bus, payloads))
            elif name == "publish_then_consume":
                pub, con = await _publish_then_consume(bus, payloads)
                redis_figures["publish_only_events_per_s"] = round(pub)
                redis_figures["consume_only_events_per_s"] = round(con)
            elif name == "consumer_loop":
                redis_figures["consumer_loop_events_per_s"] = round(await _consumer_loop(bus, messages))
            else:
                redis_figures["latency_us"] = asdict(await _latency(bus, latency_events))
                info = await bus.client.info("server")
                redis_figures["redis_version"] = info.get("redis_version")
        finally:
            await bus.delete_namespace()
            await bus.close()
    result["redis"] = redis_figures

    memory: dict[str, Any] = {}
    log("in-process: transport")
    memory["transport_events_per_s"] = round(await _transport(InProcessBus(max_backlog=None), payloads))
    log("in-process: consumer_loop")
    memory["consumer_loop_events_per_s"] = round(await _consumer_loop(InProcessBus(), messages))
    log("in-process: latency")
    memory["latency_us"] = asdict(await _latency(InProcessBus(), latency_events))
    result["inprocess"] = memory

    try:
        import hiredis  # noqa: F401

        result["redis_parser"] = "hiredis"
    except ImportError:
        result["redis_parser"] = "python (install hiredis for a faster reply parser)"
    result["target_met"] = redis_figures["transport_events_per_s"] >= TARGET_EVENTS_PER_S
    return result


def run_bus_benchmark(
    redis_url: str, events: int = 200_000, *, latency_runs: int = 2_000, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run every measure (see the module doc) and return the figures as a JSON-ready dict."""
    return asyncio.run(_run(redis_url, events, latency_runs, log or (lambda _msg: None)))


def main() -> None:
    parser = argparse.ArgumentParser(description="Bus benchmark: Redis Streams and in-process.")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--latency-runs", type=int, default=2_000)
    args = parser.parse_args()
    result = run_bus_benchmark(args.redis, args.events, latency_runs=args.latency_runs, log=print)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()


__all__ = ["TARGET_EVENTS_PER_S", "run_bus_benchmark"]
