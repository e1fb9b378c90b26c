"""Every stream and key name of the bus is built here, nowhere else.

One stream per (topic, symbol). The symbol is wrapped in a Redis Cluster *hash tag* (``{BTCUSDT}``) so all
keys of one symbol live in the same slot: a symbol's streams, its dead-letter stream and the "processed"
sets of its consumer groups can then be written in one atomic MULTI even on a cluster, and different
symbols shard across the cluster's nodes.

    sm:{BTCUSDT}:candles                 the stream of topic ``candles`` for BTCUSDT
    sm:{BTCUSDT}:dlq                     dead letters of every topic of BTCUSDT
    sm:{BTCUSDT}:candles:done:features   event ids group ``features`` already processed (sorted set)
    sm:{BTCUSDT}:candles:done:features:S the same within scope S (bound to the event store a deployment records into)
    sm:{BTCUSDT}:epoch                   the symbol's bus epoch: gone or changed = its streams were lost
    sm:run                               the deployment's scope token and the probe event that binds it to a store

``namespace`` (default ``sm``) prefixes every name, so tests and parallel deployments never collide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smartmarket.core.errors import ConfigError
from smartmarket.core.events import (
    CancelOrder,
    CandleClosed,
    FeaturesComputed,
    Message,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    PositionChanged,
    PredictionMade,
    RiskRejected,
    ShadowPredictionMade,
    ShadowSignalGenerated,
    SignalGenerated,
    SubmitOrder,
    TradingHalted,
)
from smartmarket.core.types import normalize_symbol

# The pipeline's topics, in the order a candle travels through them.
CANDLES = "candles"
FEATURES = "features"
PREDICTIONS = "predictions"
SIGNALS = "signals"
ORDERS = "orders"
RISK = "risk"
EXECUTIONS = "executions"
POSITIONS = "positions"
SHADOW = "shadow"  # a shadow candidate's predictions and would-be signals: recorded, read by no trading stage

TOPICS: tuple[str, ...] = (CANDLES, FEATURES, PREDICTIONS, SIGNALS, ORDERS, RISK, EXECUTIONS, POSITIONS, SHADOW)

# Which topic each message type is published on by default.
TOPIC_OF_TYPE: dict[type[Message], str] = {
    CandleClosed: CANDLES,
    FeaturesComputed: FEATURES,
    PredictionMade: PREDICTIONS,
    SignalGenerated: SIGNALS,
    SubmitOrder: ORDERS,
    CancelOrder: ORDERS,
    RiskRejected: RISK,
    OrderSubmitted: EXECUTIONS,
    OrderRejected: EXECUTIONS,
    OrderFilled: EXECUTIONS,
    OrderCancelled: EXECUTIONS,
    TradingHalted: RISK,
    PositionChanged: POSITIONS,
    ShadowPredictionMade: SHADOW,
    ShadowSignalGenerated: SHADOW,
}

DEFAULT_NAMESPACE = "sm"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


def check_name(kind: str, value: str) -> str:
    """A topic, group or namespace: lower-case letters, digits, ``_`` and ``-`` (no ``:`` or braces)."""
    if not _NAME_RE.match(value):
        raise ConfigError(f"invalid {kind} name {value!r}", hint="use lower-case letters, digits, '_' or '-'")
    return value


def topic_for(message: Message) -> str:
    """The default topic of a message (by its type)."""
    try:
        return TOPIC_OF_TYPE[type(message)]
    except KeyError:
        raise ConfigError(f"no topic for message type {type(message).__name__}") from None


@dataclass(frozen=True, slots=True)
class StreamNames:
    """Builds the names of one namespace."""

    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        check_name("namespace", self.namespace)

    def stream(self, topic: str, symbol: str) -> str:
        """``sm:{BTCUSDT}:candles``."""
        return f"{self.namespace}:{{{normalize_symbol(symbol)}}}:{check_name('topic', topic)}"

    def dead_letters(self, symbol: str) -> str:
        """``sm:{BTCUSDT}:dlq``: one dead-letter stream per symbol (same slot as the symbol's streams)."""
        return f"{self.namespace}:{{{normalize_symbol(symbol)}}}:dlq"

    def processed(self, topic: str, symbol: str, group: str, scope: str = "") -> str:
        """``sm:{BTCUSDT}:candles:done:features[:scope]``: ids the group has processed (sorted set, score = ms)."""
        key = f"{self.stream(topic, symbol)}:done:{check_name('group', group)}"
        return f"{key}:{check_name('scope', scope)}" if scope else key

    def epoch(self, symbol: str) -> str:
        """``sm:{BTCUSDT}:epoch``: a token naming the current life of the symbol's streams (same slot)."""
        return f"{self.namespace}:{{{normalize_symbol(symbol)}}}:epoch"

    def run_marker(self) -> str:
        """``sm:run``: the deployment's scope token and its probe event (a hash)."""
        return f"{self.namespace}:run"

    def pattern(self) -> str:
        """A ``SCAN MATCH`` pattern covering every key of this namespace."""
        return f"{self.namespace}:*"


__all__ = [
    "CANDLES",
    "DEFAULT_NAMESPACE",
    "EXECUTIONS",
    "FEATURES",
    "ORDERS",
    "POSITIONS",
    "PREDICTIONS",
    "RISK",
    "SHADOW",
    "SIGNALS",
    "TOPICS",
    "TOPIC_OF_TYPE",
    "StreamNames",
    "check_name",
    "topic_for",
]
