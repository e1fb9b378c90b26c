"""The bus contract on both adapters (in-process and the real Redis at 127.0.0.1:6379), plus what only the
Redis adapter has: stream layout, blocking reads longer than redis-py's socket timeout, trimming with
XTRIM MINID, backpressure from XINFO GROUPS, a group lost by the server."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest
import redis
from redis.crc import key_slot

from smartmarket.bus import CANDLES, Bus, Consumer, ConsumerConfig, Delivery, open_bus
from smartmarket.bus.redis_streams import RedisStreamsBus
from smartmarket.core.events import CandleClosed, Message, from_msgpack, to_msgpack
from smartmarket.core.types import Timeframe

SYMBOL = "BTCUSDT"


def run_async(test: Callable[..., Coroutine[object, object, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def wrapper(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def candle(i: int) -> CandleClosed:
    ts = 1_700_000_000_000 + i * 60_000
    return CandleClosed(
        ts_event=ts + 60_000, symbol=SYMBOL, timeframe=Timeframe.M1, ts=ts,
        open=100.0 + i, high=101.0 + i, low=99.0 + i, close=100.5 + i, volume=1.0,
    )  # fmt: skip


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``condition``; the timeout only guards against a hang."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def isolated_bus(url: str, **options: Any) -> AsyncIterator[Bus]:
    """A bus in a namespace of its own, every key of which is deleted afterwards."""
    bus = open_bus(url, namespace=f"t{uuid.uuid4().hex[:12]}", **options)
    try:
        yield bus
    finally:
        await bus.delete_namespace()
        await bus.close()


@asynccontextmanager
async def consuming(consumer: Consumer) -> AsyncIterator[None]:
    task = asyncio.create_task(consumer.run())
    await consumer.wait_ready()
    try:
        yield
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 15)


def config(**overrides: Any) -> ConsumerConfig:
    return ConsumerConfig(**{"group": "stage", "consumer": "c1", "block_ms": 50, "retry_delay_ms": 1, **overrides})


@pytest.fixture(params=["memory", "redis"])
def bus_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_server"))


# --- the contract, on both adapters ---------------------------------------------------------------------


@run_async
async def test_events_arrive_once_in_order_with_ids_increasing(bus_url: str) -> None:
    async with isolated_bus(bus_url) as bus:
        seen: list[Message] = []

        async def handler(message: Message, delivery: Delivery) -> None:
            seen.append(message)

        events = [candle(i) for i in range(2_500)]
        consumer = Consumer(bus, CANDLES, SYMBOL, handler, config(batch_size=300))
        async with consuming(consumer):
            ids = await bus.publish_many(CANDLES, SYMBOL, events[:2_000])
            ids += [await bus.publish(CANDLES, SYMBOL, e) for e in events[2_000:]]
            await wait_until(lambda: len(seen) == len(events), "every event")
        assert seen == events
        parsed = [tuple(map(int, i.split("-"))) for i in ids]
        assert parsed == sorted(set(parsed))  # unique, strictly increasing
        assert await bus.backlog(CANDLES, SYMBOL) == 0


@run_async
async def test_duplicates_are_skipped_across_batches_and_consumers(bus_url: str) -> None:
    async with isolated_bus(bus_url) as bus:
        effects: Counter[str] = Counter()

        async def handler(message: Message, delivery: Delivery) -> None:
            effects[message.event_id] += 1

        events = [candle(i) for i in range(50)]
        first = Consumer(bus, CANDLES, SYMBOL, handler, config(consumer="first"))
        async with consuming(first):
            await bus.publish_many(CANDLES, SYMBOL, events + events[:10])  # a publisher retried a batch
            await wait_until(lambda: first.stats.handled + first.stats.duplicates_skipped == 60, "60 entries")
        second = Consumer(bus, CANDLES, SYMBOL, handler, config(consumer="second"))  # fresh memory
        async with consuming(second):
            await bus.publish_many(CANDLES, SYMBOL, events[10:20])
            await wait_until(lambda: second.stats.duplicates_skipped == 10, "durable skips")
        assert set(effects) == {e.event_id for e in events}
        assert max(effects.values()) == 1
        assert second.stats.handled == 0


@run_async
async def test_retry_then_dead_letter_keeps_the_stream_flowing(bus_url: str) -> None:
    async with isolated_bus(bus_url) as bus:
        flaky, poison = candle(1), candle(2)
        calls: Counter[str] = Counter()

        async def handler(message: Message, delivery: Delivery) -> None:
            calls[message.event_id] += 1
            if message.event_id == poison.event_id or (message.event_id == flaky.event_id and delivery.attempt < 2):
                raise RuntimeError(f"boom {message.ts_event}")

        later = [candle(i) for i in range(3, 30)]
        consumer = Consumer(bus, CANDLES, SYMBOL, handler, config(max_attempts=4))
        async with consuming(consumer):
            await bus.publish_many(CANDLES, SYMBOL, [candle(0), flaky, poison])
            await bus.publish_raw(CANDLES, SYMBOL, [b"\x92\xc1"])  # msgpack with an invalid byte
            await bus.publish_many(CANDLES, SYMBOL, later)
            await wait_until(lambda: consumer.stats.dead_lettered == 2 and consumer.stats.handled == 29, "done")
        letters = {d.reason: d for d in await bus.read_dead_letters(SYMBOL)}
        assert set(letters) == {"handler_error", "undecodable"}
        assert from_msgpack(letters["handler_error"].payload) == poison
        assert letters["handler_error"].attempts == 4
        assert letters["handler_error"].group == "stage"
        assert letters["undecodable"].payload == b"\x92\xc1"
        assert calls[poison.event_id] == 4
        assert calls[flaky.event_id] == 2
        assert all(calls[e.event_id] == 1 for e in later)
        assert await bus.backlog(CANDLES, SYMBOL) == 0


@run_async
async def test_pending_entries_of_a_vanished_consumer_are_claimed(bus_url: str) -> None:
    async with isolated_bus(bus_url) as bus:
        events = [candle(i) for i in range(100)]
        ghost = bus.subscription(CANDLES, SYMBOL, "stage", "ghost")
        await ghost.ensure_group()
        await bus.publish_many(CANDLES, SYMBOL, events)
        assert len(await ghost.read_new(30, 0)) == 30  # never acknowledged
        effects: Counter[str] = Counter()

        async def handler(message: Message, delivery: Delivery) -> None:
            effects[message.event_id] += 1

        rescuer = Consumer(bus, CANDLES, SYMBOL, handler, config(consumer="rescuer", claim_min_idle_ms=0))
        async with consuming(rescuer):
            await wait_until(lambda: len(effects) == 100, "all events")
        assert max(effects.values()) == 1
        assert rescuer.stats.claimed == 30
        assert await bus.backlog(CANDLES, SYMBOL) == 0
        await ghost.close()


@run_async
async def test_trim_drops_only_acknowledged_durable_entries(bus_url: str) -> None:
    async with isolated_bus(bus_url) as bus:
        await bus.ensure_group(CANDLES, SYMBOL, "fast")
        await bus.ensure_group(CANDLES, SYMBOL, "slow")
        ids = await bus.publish_many(CANDLES, SYMBOL, [candle(i) for i in range(20)])
        fast = bus.subscription(CANDLES, SYMBOL, "fast", "f")
        slow = bus.subscription(CANDLES, SYMBOL, "slow", "s")
        await fast.commit([], await fast.read_new(20, 0))  # fast acknowledged everything
        got = await slow.read_new(12, 0)
        await slow.commit([], got[:8])  # slow: 8 acknowledged, 4 pending, 8 never delivered
        if isinstance(bus, RedisStreamsBus):  # (the in-process bus drops acknowledged entries by itself)
            assert await bus.trim_acknowledged(CANDLES, SYMBOL, ids[5]) == 6  # the store holds only 6
            assert await bus.stream_length(CANDLES, SYMBOL) == 14
        await bus.trim_acknowledged(CANDLES, SYMBOL, ids[-1])
        assert await bus.stream_length(CANDLES, SYMBOL) == 12  # what the slow group still needs
        pending = await slow.read_pending("0", 10)
        assert [d.entry_id for d in pending] == [d.entry_id for d in got[8:]]
        assert all(d.payload is not None for d in pending)
        await fast.close()
        await slow.close()


# --- Redis only -----------------------------------------------------------------------------------------


@run_async
async def test_redis_stream_layout_and_msgpack_payload(redis_server: str) -> None:
    async with isolated_bus(redis_server) as bus:
        assert isinstance(bus, RedisStreamsBus)
        await bus.ensure_group(CANDLES, SYMBOL, "features")
        event = candle(7)
        entry_id = await bus.publish(CANDLES, SYMBOL, event)
        stream = f"{bus.names.namespace}:{{BTCUSDT}}:candles"
        raw: Any = redis.Redis.from_url(redis_server)
        try:
            [(got_id, fields)] = raw.xrange(stream)
            assert got_id.decode() == entry_id
            assert fields == {b"p": to_msgpack(event)}
            assert msgpack.unpackb(fields[b"p"])["type"] == "CandleClosed"
            [group] = raw.xinfo_groups(stream)
            assert group["name"] == b"features"
        finally:
            raw.close()
        # One symbol's keys share a cluster slot (atomic MULTI on a cluster); symbols spread over slots.
        slots = {
            key_slot(name.encode())
            for name in (stream, bus.names.dead_letters(SYMBOL), bus.names.processed(CANDLES, SYMBOL, "features"))
        }
        assert slots == {key_slot(b"BTCUSDT")}
        assert len({key_slot(bus.names.stream(CANDLES, s).encode()) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")}) == 3


@run_async
async def test_blocking_read_longer_than_the_socket_timeout(redis_server: str) -> None:
    # redis-py 8 defaults socket_timeout to 5 s; here 0.3 s against a 1.2 s BLOCK. The reading client must
    # allow for the block, else this read would fail with a timeout instead of returning nothing.
    async with isolated_bus(redis_server, socket_timeout_s=0.3, max_block_ms=1_200) as bus:
        sub = bus.subscription(CANDLES, SYMBOL, "stage", "c1")
        await sub.ensure_group()
        assert await sub.read_new(10, 1_200) == []
        await bus.publish(CANDLES, SYMBOL, candle(1))
        assert len(await sub.read_new(10, 1_200)) == 1
        await sub.close()


@run_async
async def test_redis_backpressure_holds_the_publisher(redis_server: str) -> None:
    async with isolated_bus(redis_server, max_backlog=300, backlog_check_every=50) as bus:
        assert isinstance(bus, RedisStreamsBus)
        await bus.ensure_group(CANDLES, SYMBOL, "stage")
        bus.pipeline_chunk = 50
        events = [candle(i) for i in range(2_000)]
        publisher = asyncio.create_task(bus.publish_many(CANDLES, SYMBOL, events))
        await wait_until(lambda: bus.backpressure_waits > 0, "the publisher to wait")
        length = await bus.stream_length(CANDLES, SYMBOL)
        assert not publisher.done()
        assert 300 <= length <= 300 + 50 + 50  # the bound, plus one check interval and one chunk
        highest = 0
        handled = 0

        async def handler(message: Message, delivery: Delivery) -> None:
            nonlocal handled
            handled += 1

        async def watch() -> None:
            nonlocal highest
            while not publisher.done():
                highest = max(highest, await bus.backlog(CANDLES, SYMBOL))
                await asyncio.sleep(0.005)

        consumer = Consumer(bus, CANDLES, SYMBOL, handler, config(batch_size=50))
        async with consuming(consumer):
            await asyncio.gather(publisher, watch())
            await wait_until(lambda: handled == 2_000, "all events")
        assert highest <= 400
        assert await bus.backlog(CANDLES, SYMBOL) == 0


@run_async
async def test_consumer_recreates_a_group_the_server_lost(redis_server: str) -> None:
    async with isolated_bus(redis_server) as bus:
        handled: list[str] = []

        async def handler(message: Message, delivery: Delivery) -> None:
            handled.append(message.event_id)

        consumer = Consumer(bus, CANDLES, SYMBOL, handler, config())
        async with consuming(consumer):
            await bus.publish(CANDLES, SYMBOL, candle(0))
            await wait_until(lambda: len(handled) == 1, "first event")
            raw: Any = redis.Redis.from_url(redis_server)
            stream = bus.names.stream(CANDLES, SYMBOL)
            try:
                raw.delete(stream)  # stream and group gone, as after a restart without persistence
                await wait_until(lambda: bool(raw.exists(stream)), "the consumer to recreate its group")
                assert raw.xinfo_groups(stream)[0]["name"] == b"stage"
            finally:
                raw.close()
            later = candle(1)
            await bus.publish(CANDLES, SYMBOL, later)
            await wait_until(lambda: later.event_id in handled, "the event after the loss")
        assert len(handled) == 2


@run_async
async def test_unacknowledged_entries_lost_with_a_recreated_stream_are_republished_before_new_ones(
    redis_server: str,
) -> None:
    """The race behind a flaky replay: the stream is deleted and another process's consumer recreates its group at
    once (``XGROUP CREATE … MKSTREAM``: an empty stream exists again). The publisher's next append must not land
    before its entries that no group had acknowledged, or a stage would meet a later candle first."""
    async with isolated_bus(redis_server) as bus:
        assert isinstance(bus, RedisStreamsBus)
        await bus.ensure_group(CANDLES, SYMBOL, "stage")
        early = [candle(i) for i in range(3)]
        await bus.publish_many(CANDLES, SYMBOL, early)  # nobody has read them: they stay in the outbox
        raw: Any = redis.Redis.from_url(redis_server)
        stream = bus.names.stream(CANDLES, SYMBOL)
        try:
            raw.delete(stream)
            raw.xgroup_create(stream, "stage", id="0", mkstream=True)  # what a recovering consumer elsewhere does
            later = candle(3)
            await bus.publish(CANDLES, SYMBOL, later)
            order = [from_msgpack(fields[b"p"]).event_id for _, fields in raw.xrange(stream)]
        finally:
            raw.close()
        assert order == [c.event_id for c in [*early, later]]
        assert bus.recoveries == 1 and bus.republished == 3


def test_open_bus_redis_url_with_bus_parameters(redis_server: str) -> None:
    bus = open_bus(f"{redis_server}?namespace=paper&max_backlog=none")
    assert isinstance(bus, RedisStreamsBus)
    assert bus.names.namespace == "paper"
    assert bus.max_backlog is None
    assert "namespace" not in bus.url
    asyncio.run(bus.close())
