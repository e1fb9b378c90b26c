"""The execution stage acknowledges an order only once the event log holds it (``ExecutionStage.settle``).

A paper order waits in the execution worker's memory for its fill candle. The recorder writes behind the bus, so
before this rule a worker killed between acknowledging such an order and the recorder's next flush took the order
with it: its successor rebuilt the waiting orders from a log that lacked it, the order was never filled, and the
risk stage waited for its answer for good (seen as a stalled run in the kill -9 test of ``test_replay_fills``).
Here, on a real Redis and PostgreSQL with no recorder running, the order stays pending (redelivered to a successor)
until the test itself records it.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import redis

from execution_scenario import SYMBOL, candle, spec
from smartmarket.bus.redis_streams import RedisStreamsBus
from smartmarket.bus.topics import CANDLES, ORDERS, StreamNames
from smartmarket.core.events import SubmitOrder
from smartmarket.pipeline.live import LivePipeline, RunOptions
from smartmarket.pipeline.stages import ExecutionStage
from smartmarket.store.url import open_store


def test_an_order_waiting_for_its_fill_candle_is_acknowledged_only_once_the_log_holds_it(
    redis_server: str, pg_url: str
) -> None:
    ns = f"t{uuid.uuid4().hex[:10]}"
    names = StreamNames(ns)
    client = redis.Redis.from_url(redis_server)
    store = open_store(pg_url)
    first = candle(0)
    order = SubmitOrder(ts_event=first.ts_event, symbol=SYMBOL, side="buy", quantity=0.5, client_order_id="o-1")

    def pending(topic: str) -> int:
        return int(client.xpending(names.stream(topic, SYMBOL), "execution")["pending"])

    async def until(condition: object, what: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        bus = RedisStreamsBus(redis_server, namespace=ns)
        options = RunOptions(stages=("execution",), pipeline=("execution",), block_ms=20)
        pipeline = LivePipeline(spec(), store, bus, options=options)
        (stage,) = pipeline.stages
        assert isinstance(stage, ExecutionStage)
        run = asyncio.create_task(pipeline.run())
        try:
            await pipeline.declare_groups()
            store.append_events([first])  # the candle is durable: the worker recovers and takes it
            await bus.publish(CANDLES, SYMBOL, first)

            def candles_handled() -> int:
                return sum(c.stats.handled for c in pipeline.consumers if c.topic == CANDLES)

            await until(lambda: candles_handled() == 1, "the candle to be handled")
            await until(lambda: pending(CANDLES) == 0, "the candle to be acknowledged")
            assert stage.waiting() == 0

            await bus.publish(ORDERS, SYMBOL, order)  # its fill candle (the next open) is not known yet
            await until(lambda: stage.waiting() == 1, "the order to wait for its fill candle")
            await asyncio.sleep(1.0)  # ample time for a premature acknowledgement
            assert pending(ORDERS) == 1, "acknowledged before the log held it: a killed worker would lose it"

            store.append_events([order])  # what the recorder does
            await until(lambda: pending(ORDERS) == 0, "the order to be acknowledged once recorded")
            assert stage.waiting() == 1  # still waiting for its fill candle: settled, not filled
        finally:
            pipeline.stop()
            await asyncio.wait_for(run, 30)
            await bus.delete_namespace()
            await bus.close()

    try:
        asyncio.run(scenario())
    finally:
        store.close()
        client.close()
