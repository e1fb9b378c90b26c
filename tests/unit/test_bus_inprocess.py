"""The in-process bus and the consumer loop: delivery, ack, retries, dead letters, idempotency, recovery,
backpressure, trimming, graceful stop; plus stream naming and ``open_bus``."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from smartmarket.bus import CANDLES, Consumer, ConsumerConfig, Delivery, Handler, StreamNames, open_bus, topic_for
from smartmarket.bus.consumer import RecentIds
from smartmarket.bus.inprocess import InProcessBus
from smartmarket.core.errors import ConfigError
from smartmarket.core.events import CandleClosed, Message, OrderFilled, from_msgpack
from smartmarket.core.types import Timeframe

SYMBOL = "BTCUSDT"


def candle(i: int, symbol: str = SYMBOL) -> CandleClosed:
    ts = 1_700_000_000_000 + i * 60_000
    return CandleClosed(
        ts_event=ts + 60_000, symbol=symbol, timeframe=Timeframe.M1, ts=ts,
        open=100.0 + i, high=101.0 + i, low=99.0 + i, close=100.5 + i, volume=1.0,
    )  # fmt: skip


def run_async(test: Callable[..., Coroutine[object, object, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop (no pytest plugin needed)."""

    @functools.wraps(test)
    def wrapper(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition``; the timeout only guards against a hang (it is not what the test measures)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def consuming(consumer: Consumer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(consumer.run())
    await consumer.wait_ready()
    try:
        yield task
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)


def config(**overrides: Any) -> ConsumerConfig:
    return ConsumerConfig(**{"group": "stage", "consumer": "c1", "block_ms": 20, "retry_delay_ms": 1, **overrides})


# --- naming ---------------------------------------------------------------------------------------------


def test_stream_names_are_hash_tagged_by_symbol() -> None:
    names = StreamNames()
    assert names.stream(CANDLES, "btc/usdt") == "sm:{BTCUSDT}:candles"
    assert names.dead_letters("BTCUSDT") == "sm:{BTCUSDT}:dlq"
    assert names.processed(CANDLES, "BTCUSDT", "features") == "sm:{BTCUSDT}:candles:done:features"
    assert StreamNames("t1").stream("signals", "ETHUSDT") == "t1:{ETHUSDT}:signals"


@pytest.mark.parametrize("bad", ["Candles", "can:dles", "{x}", "", "a b"])
def test_invalid_topic_names_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        StreamNames().stream(bad, SYMBOL)


def test_topic_of_a_message_type() -> None:
    fill = OrderFilled(ts_event=1, symbol=SYMBOL, side="buy", quantity=1.0, price=1.0, fee=0.0, client_order_id="o1")
    assert topic_for(candle(0)) == "candles"
    assert topic_for(fill) == "executions"


def test_open_bus_memory_url_parameters() -> None:
    bus = open_bus("memory://?namespace=paper&max_backlog=7")
    assert isinstance(bus, InProcessBus)
    assert bus.names.namespace == "paper"
    assert bus.max_backlog == 7
    assert isinstance(open_bus(), InProcessBus)
    with pytest.raises(ConfigError):
        open_bus("kafka://localhost")
    with pytest.raises(ConfigError):
        open_bus("memory://?max_backlog=many")


def test_recent_ids_is_bounded_and_forgets_the_oldest() -> None:
    recent = RecentIds(3)
    for eid in "abcd":
        recent.add(eid)
    assert len(recent) == 3
    assert "a" not in recent
    assert all(e in recent for e in "bcd")


# --- delivery -------------------------------------------------------------------------------------------


@run_async
async def test_every_event_is_handled_once_in_order_and_memory_is_released() -> None:
    bus = InProcessBus(max_backlog=50)
    seen: list[Message] = []

    async def handler(message: Message, delivery: Delivery) -> None:
        seen.append(message)

    consumer = Consumer(bus, CANDLES, SYMBOL, handler, config())
    events = [candle(i) for i in range(500)]
    async with consuming(consumer):
        await bus.publish_many(CANDLES, SYMBOL, events[:250])
        for event in events[250:]:
            await bus.publish(CANDLES, SYMBOL, event)
        await wait_until(lambda: len(seen) == 500, "500 events")
    assert [m.event_id for m in seen] == [e.event_id for e in events]
    assert seen == events  # decoded back equal to what was published
    assert await bus.backlog(CANDLES, SYMBOL) == 0
    assert await bus.stream_length(CANDLES, SYMBOL) == 0  # acknowledged by every group: dropped
    assert consumer.stats.handled == 500


@run_async
async def test_each_group_gets_every_event_and_consumers_of_a_group_share_them() -> None:
    bus = InProcessBus()
    per_group: dict[str, Counter[str]] = {"a": Counter(), "b": Counter()}

    def handler_for(group: str) -> Handler:
        async def handler(message: Message, delivery: Delivery) -> None:
            per_group[group][message.event_id] += 1
            await asyncio.sleep(0)

        return handler

    consumers = [
        Consumer(bus, CANDLES, SYMBOL, handler_for("a"), config(group="a", consumer="a1", batch_size=7)),
        Consumer(bus, CANDLES, SYMBOL, handler_for("a"), config(group="a", consumer="a2", batch_size=7)),
        Consumer(bus, CANDLES, SYMBOL, handler_for("b"), config(group="b", consumer="b1")),
    ]
    tasks = [asyncio.create_task(c.run()) for c in consumers]
    for c in consumers:
        await c.wait_ready()
    events = [candle(i) for i in range(300)]
    await bus.publish_many(CANDLES, SYMBOL, events)
    await wait_until(lambda: len(per_group["a"]) == 300 and len(per_group["b"]) == 300, "both groups")
    for c in consumers:
        c.stop()
    await asyncio.gather(*tasks)
    for group in ("a", "b"):
        assert set(per_group[group]) == {e.event_id for e in events}
        assert max(per_group[group].values()) == 1
    assert consumers[0].stats.handled > 0 and consumers[1].stats.handled > 0  # the work was shared


@run_async
async def test_a_republished_event_takes_effect_once() -> None:
    bus = InProcessBus()
    effects: Counter[str] = Counter()

    async def handler(message: Message, delivery: Delivery) -> None:
        effects[message.event_id] += 1

    event = candle(1)
    consumer = Consumer(bus, CANDLES, SYMBOL, handler, config())
    async with consuming(consumer):
        await bus.publish_many(CANDLES, SYMBOL, [event, event])  # same batch
        await bus.publish(CANDLES, SYMBOL, candle(2))
        await wait_until(lambda: consumer.stats.handled == 2, "two events")
        await bus.publish(CANDLES, SYMBOL, event)  # a later batch
        await wait_until(lambda: consumer.stats.duplicates_skipped == 2, "duplicates skipped")
    assert effects[event.event_id] == 1
    # A new consumer of the same group (fresh memory) still skips it: the group's processed set is durable.
    fresh = Consumer(bus, CANDLES, SYMBOL, handler, config(consumer="c2"))
    async with consuming(fresh):
        await bus.publish(CANDLES, SYMBOL, event)
        await wait_until(lambda: fresh.stats.duplicates_skipped == 1, "skip by the durable set")
    assert effects[event.event_id] == 1
    assert await bus.backlog(CANDLES, SYMBOL) == 0


# --- failures -------------------------------------------------------------------------------------------


@run_async
async def test_a_failing_handler_is_retried_then_succeeds() -> None:
    bus = InProcessBus()
    calls: list[int] = []
    done: list[str] = []
    flaky = candle(1)

    async def handler(message: Message, delivery: Delivery) -> None:
        if message.event_id == flaky.event_id:
            calls.append(delivery.attempt)
            if delivery.attempt < 3:
                raise RuntimeError("transient")
        done.append(message.event_id)

    events = [candle(0), flaky, candle(2)]
    consumer = Consumer(bus, CANDLES, SYMBOL, handler, config(max_attempts=5))
    async with consuming(consumer):
        await bus.publish_many(CANDLES, SYMBOL, events)
        await wait_until(lambda: len(done) == 3, "three events")
    assert calls == [1, 2, 3]
    assert sorted(done) == sorted(e.event_id for e in events)
    assert await bus.read_dead_letters(SYMBOL) == []
    assert consumer.stats.handler_failures == 2


@run_async
async def test_poison_events_are_dead_lettered_and_later_events_still_flow() -> None:
    bus = InProcessBus()
    poison = candle(1)
    calls: Counter[str] = Counter()

    async def handler(message: Message, delivery: Delivery) -> None:
        calls[message.event_id] += 1
        if message.event_id == poison.event_id:
            raise ValueError("cannot handle this candle")

    consumer = Consumer(bus, CANDLES, SYMBOL, handler, config(max_attempts=3))
    async with consuming(consumer):
        await bus.publish_raw(CANDLES, SYMBOL, [b"\xc1 not msgpack"])
        await bus.publish(CANDLES, SYMBOL, poison)
        later = [candle(i) for i in range(2, 12)]
        await bus.publish_many(CANDLES, SYMBOL, later)
        await wait_until(lambda: consumer.stats.dead_lettered == 2 and consumer.stats.handled == 10, "poison out")
    letters = await bus.read_dead_letters(SYMBOL)
    by_reason = {d.reason: d for d in letters}
    assert set(by_reason) == {"undecodable", "handler_error"}
    assert by_reason["undecodable"].payload == b"\xc1 not msgpack"
    assert by_reason["undecodable"].attempts == 1  # bytes cannot change: no retry
    assert from_msgpack(by_reason["handler_error"].payload) == poison
    assert by_reason["handler_error"].attempts == 3
    assert "cannot handle this candle" in by_reason["handler_error"].error
    assert calls[poison.event_id] == 3
    assert all(calls[e.event_id] == 1 for e in later)
    assert await bus.backlog(CANDLES, SYMBOL) == 0


@run_async
async def test_entries_of_a_dead_consumer_are_claimed_and_handled_once() -> None:
    bus = InProcessBus()
    events = [candle(i) for i in range(40)]
    crashed = bus.subscription(CANDLES, SYMBOL, "stage", "crashed")
    await crashed.ensure_group()
    await bus.publish_many(CANDLES, SYMBOL, events)
    taken = await crashed.read_new(15, 0)  # delivered, never acknowledged: the process "died"
    assert len(taken) == 15

    effects: Counter[str] = Counter()
    attempts: dict[str, int] = {}

    async def handler(message: Message, delivery: Delivery) -> None:
        effects[message.event_id] += 1
        attempts[message.event_id] = delivery.attempt

    rescuer = Consumer(bus, CANDLES, SYMBOL, handler, config(consumer="rescuer", claim_min_idle_ms=0))
    async with consuming(rescuer):
        await wait_until(lambda: len(effects) == 40, "all 40 events")
    assert set(effects) == {e.event_id for e in events}
    assert max(effects.values()) == 1
    assert rescuer.stats.claimed == 15
    assert sorted(attempts[from_msgpack(d.payload or b"").event_id] for d in taken) == [2] * 15
    assert await bus.backlog(CANDLES, SYMBOL) == 0


@run_async
async def test_a_batch_is_acknowledged_only_once_settled_and_an_unsettled_one_is_handled_again() -> None:
    """A stage that must see its inputs durable before they are acknowledged (``settle``): while settling fails,
    nothing is acknowledged and the entries come back; once it succeeds they are acknowledged, each settled."""
    bus = InProcessBus()
    events = [candle(i) for i in range(6)]
    handled: Counter[str] = Counter()
    settled: list[str] = []
    durable = asyncio.Event()  # "the log holds them": settling fails until then

    async def handler(message: Message, delivery: Delivery) -> None:
        handled[message.event_id] += 1

    async def settle(batch: Sequence[Message]) -> None:
        assert await bus.backlog(CANDLES, SYMBOL) == len(events)  # nothing acknowledged before settling
        if not durable.is_set():
            raise RuntimeError("not recorded yet")
        settled.extend(m.event_id for m in batch)

    consumer = Consumer(bus, CANDLES, SYMBOL, handler, config(max_attempts=10), settle=settle)
    async with consuming(consumer):
        await bus.publish_many(CANDLES, SYMBOL, events)
        await wait_until(lambda: min(handled.values(), default=0) >= 2, "a second delivery of every event")
        assert await bus.backlog(CANDLES, SYMBOL) == len(events)
        durable.set()
        await wait_until(lambda: len(settled) == len(events), "every event settled")
    assert sorted(settled) == sorted(e.event_id for e in events)
    assert await bus.backlog(CANDLES, SYMBOL) == 0
    assert await bus.read_dead_letters(SYMBOL) == []


@run_async
async def test_too_many_deliveries_are_dead_lettered_without_running_the_handler() -> None:
    bus = InProcessBus()
    sub = bus.subscription(CANDLES, SYMBOL, "stage", "c1")
    await sub.ensure_group()
    await bus.publish(CANDLES, SYMBOL, candle(0))
    assert len(await sub.read_new(10, 0)) == 1
    for _ in range(3):  # a consumer that keeps crashing on it
        assert len(await sub.read_pending("0", 10)) == 1
    ran: list[str] = []

    async def handler(message: Message, delivery: Delivery) -> None:
        ran.append(message.event_id)

    consumer = Consumer(bus, CANDLES, SYMBOL, handler, config(max_attempts=4))
    async with consuming(consumer):
        await wait_until(lambda: consumer.stats.dead_lettered == 1, "dead letter")
    assert ran == []
    [letter] = await bus.read_dead_letters(SYMBOL)
    assert letter.reason == "too_many_deliveries"
    assert letter.attempts == 5


# --- backpressure, trimming, shutdown -------------------------------------------------------------------


@run_async
async def test_backpressure_holds_the_publisher_at_the_bound() -> None:
    bus = InProcessBus(max_backlog=100)
    await bus.ensure_group(CANDLES, SYMBOL, "stage")
    publisher = asyncio.create_task(bus.publish_many(CANDLES, SYMBOL, [candle(i) for i in range(1_000)]))
    await wait_until(lambda: bus._stream(CANDLES, SYMBOL).next_seq == 101, "the bound")
    for _ in range(20):
        await asyncio.sleep(0)
    assert not publisher.done()  # nobody consumes: it must wait, not grow
    assert await bus.backlog(CANDLES, SYMBOL) == 100

    highest = 0
    handled = 0

    async def handler(message: Message, delivery: Delivery) -> None:
        nonlocal highest, handled
        highest = max(highest, await bus.backlog(CANDLES, SYMBOL))
        handled += 1

    consumer = Consumer(bus, CANDLES, SYMBOL, handler, config(batch_size=10))
    async with consuming(consumer):
        await publisher
        await wait_until(lambda: handled == 1_000, "all events")
    assert highest <= 100
    assert await bus.stream_length(CANDLES, SYMBOL) == 0


@run_async
async def test_trim_keeps_what_a_group_still_needs() -> None:
    bus = InProcessBus()
    await bus.ensure_group(CANDLES, SYMBOL, "slow")
    ids = await bus.publish_many(CANDLES, SYMBOL, [candle(i) for i in range(10)])
    assert await bus.trim_acknowledged(CANDLES, SYMBOL, ids[-1]) == 0  # nothing acknowledged yet
    sub = bus.subscription(CANDLES, SYMBOL, "slow", "c1")
    got = await sub.read_new(6, 0)
    await sub.commit([], got[:4])  # 4 acknowledged, 2 pending, 4 never delivered
    assert await bus.stream_length(CANDLES, SYMBOL) == 6

    nogroup = InProcessBus()
    kept = await nogroup.publish_many(CANDLES, SYMBOL, [candle(i) for i in range(10)])
    assert await nogroup.stream_length(CANDLES, SYMBOL) == 10  # no group yet: kept, as on Redis
    assert await nogroup.trim_acknowledged(CANDLES, SYMBOL, kept[3]) == 4  # durable up to the 4th
    assert await nogroup.stream_length(CANDLES, SYMBOL) == 6


@run_async
async def test_stop_finishes_and_commits_the_current_batch() -> None:
    bus = InProcessBus()
    started = asyncio.Event()
    release = asyncio.Event()
    handled: list[str] = []

    async def handler(message: Message, delivery: Delivery) -> None:
        started.set()
        await release.wait()
        handled.append(message.event_id)

    consumer = Consumer(bus, CANDLES, SYMBOL, handler, config(batch_size=5))
    task = asyncio.create_task(consumer.run())
    await consumer.wait_ready()
    await bus.publish_many(CANDLES, SYMBOL, [candle(i) for i in range(5)])
    await started.wait()
    consumer.stop()
    release.set()
    await asyncio.wait_for(task, 10)
    assert len(handled) == 5
    assert await bus.backlog(CANDLES, SYMBOL) == 0  # committed before returning


@run_async
async def test_one_consumer_reads_several_symbols_each_in_order() -> None:
    bus = InProcessBus()
    seen: dict[str, list[int]] = {"BTCUSDT": [], "ETHUSDT": []}

    async def handler(message: Message, delivery: Delivery) -> None:
        assert isinstance(message, CandleClosed)
        assert delivery.stream == bus.names.stream(CANDLES, message.symbol)
        seen[message.symbol].append(message.ts)

    consumer = Consumer(bus, CANDLES, ["BTCUSDT", "ETHUSDT"], handler, config())
    async with consuming(consumer):
        for symbol in seen:
            await bus.publish_many(CANDLES, symbol, [candle(i, symbol) for i in range(100)])
        await wait_until(lambda: consumer.stats.handled == 200, "both symbols")
    expected = [candle(i).ts for i in range(100)]
    assert seen == {"BTCUSDT": expected, "ETHUSDT": expected}
