"""Delivery of events: a port (``Bus``) with an in-process adapter (default) and a Redis Streams adapter.

    bus = open_bus("redis://127.0.0.1:6379/0")        # or open_bus() for the in-process bus
    await bus.publish(CANDLES, "BTCUSDT", candle_closed)
    consumer = Consumer(bus, CANDLES, ["BTCUSDT"], handler, ConsumerConfig(group="features"))
    await consumer.run()                               # until consumer.stop()

Stream names come from ``topics``; the consumer loop (idempotency, retries, dead letters, recovery) from
``consumer``.
"""

from smartmarket.bus.base import (
    Bus,
    BusUnavailableError,
    DeadLetter,
    Delivery,
    Handler,
    Processed,
    Subscription,
)
from smartmarket.bus.consumer import Consumer, ConsumerConfig, ConsumerStats, stop_on_signals
from smartmarket.bus.topics import (
    CANDLES,
    EXECUTIONS,
    FEATURES,
    ORDERS,
    POSITIONS,
    PREDICTIONS,
    RISK,
    SIGNALS,
    TOPICS,
    StreamNames,
    topic_for,
)
from smartmarket.bus.url import DEFAULT_BUS_URL, open_bus

__all__ = [
    "CANDLES",
    "DEFAULT_BUS_URL",
    "EXECUTIONS",
    "FEATURES",
    "ORDERS",
    "POSITIONS",
    "PREDICTIONS",
    "RISK",
    "SIGNALS",
    "TOPICS",
    "Bus",
    "BusUnavailableError",
    "Consumer",
    "ConsumerConfig",
    "ConsumerStats",
    "DeadLetter",
    "Delivery",
    "Handler",
    "Processed",
    "StreamNames",
    "Subscription",
    "open_bus",
    "stop_on_signals",
    "topic_for",
]
