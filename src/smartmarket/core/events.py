"""Immutable, versioned domain events and commands with exact JSON and msgpack round-trips.

Events are facts in the past tense (``CandleClosed``, ``SignalGenerated``, ``OrderFilled``); commands are
imperative (``SubmitOrder``). Every message carries:

- ``event_id``: unique id (``new_event_id()``; pass a deterministic one where replay must reproduce it),
- ``ts_event``: when the thing happened, UTC epoch ms (a candle's close time, a fill's time),
- ``ts_init``: when this object was created, UTC epoch ms,
- ``correlation_id``: the id shared by a whole causal chain (candle → signal → order → fill),
- ``causation_id``: the ``event_id`` of the message that directly caused this one (``None`` for roots),
- ``version``: the schema version of this message type.

Serialised form (both codecs): a flat mapping with ``type`` (the class name) plus every field.
"""

from __future__ import annotations

import json
import uuid
from enum import Enum
from typing import Any, ClassVar, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field

from smartmarket.core.errors import DataFormatError
from smartmarket.core.timeutil import now_ms
from smartmarket.core.types import Candle, Direction, Timeframe

Side = Literal["buy", "sell"]


def new_event_id() -> str:
    """A random unique id (32 hex characters)."""
    return uuid.uuid4().hex


def deterministic_event_id(*parts: object) -> str:
    """An id derived from ``parts`` only, so a replay regenerates the same id for the same inputs."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "smartmarket:" + "|".join(map(str, parts))).hex


class Message(BaseModel):
    """Base of every event and command: immutable, strictly typed, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: str = Field(default_factory=new_event_id)
    ts_event: int
    ts_init: int = Field(default_factory=now_ms)
    correlation_id: str = ""
    causation_id: str | None = None
    version: int = 1

    @property
    def type_name(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="python")
        for key, value in data.items():  # timeframe, direction: their plain values
            if isinstance(value, Enum):
                data[key] = value.value
        return {"type": self.type_name, **data}


class CandleClosed(Message):
    """A candle closed. ``ts_event`` is its close time; ``ts`` its open time."""

    symbol: str
    timeframe: Timeframe
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def candle(self) -> Candle:
        """The candle itself, as the one candle type."""
        return Candle(self.ts, self.open, self.high, self.low, self.close, self.volume)


class FeaturesComputed(Message):
    """The feature vector for one closed candle."""

    symbol: str
    timeframe: Timeframe
    ts: int
    features: dict[str, float]


class PredictionFields(Message):
    """What a member's prediction carries (shared by the production and the shadow event; never sent itself).

    ``model_id``: the registry entry that produced the probabilities — the model's id for a model member, the
    ensemble artifact's id (which holds the rules' parameters) for a rule member.
    """

    symbol: str
    timeframe: Timeframe
    ts: int
    member: str
    model_id: str | None = None
    probabilities: dict[str, float]


class PredictionMade(PredictionFields):
    """One ensemble member's probabilities for one closed candle."""


class ShadowPredictionMade(PredictionFields):
    """A shadow candidate's member probabilities for one closed candle (recorded, never traded)."""


class SignalFields(Message):
    """What a signal carries (shared by the production and the shadow event; never sent itself).

    ``probabilities``: the ensemble's ``{down, flat, up}``; ``model_id``: the ensemble artifact that decided it.
    """

    symbol: str
    timeframe: Timeframe
    ts: int
    direction: Direction
    confidence: float
    strength: str
    regime: str
    probabilities: dict[str, float] = Field(default_factory=dict)
    member_probabilities: dict[str, dict[str, float]] = Field(default_factory=dict)
    member_weights: dict[str, float] = Field(default_factory=dict)
    reason: str = ""
    model_id: str | None = None


class SignalGenerated(SignalFields):
    """The ensemble's signal for one closed candle."""


class ShadowSignalGenerated(SignalFields):
    """The signal a shadow candidate would have produced for one closed candle. Published on its own topic,
    which no trading stage reads: it is recorded and compared (``ab-report``), never traded."""


class SubmitOrder(Message):
    """Command: place an order (issued by risk after approving a signal)."""

    symbol: str
    side: Side
    quantity: float
    order_type: Literal["market", "limit", "stop"] = "market"
    limit_price: float | None = None
    client_order_id: str
    reduce_only: bool = False  # only closes a position: a reversal's first leg, filled before the new side
    stop_price: float | None = None  # a stop order's trigger level (a protective exit: execution.risk)


class CancelOrder(Message):
    """Command: cancel an order's unfilled remainder (a resting protective stop being replaced or no longer
    wanted). The broker's ``OrderCancelled`` answers it; an order that filled first is not cancelled."""

    symbol: str
    client_order_id: str
    reason: str = ""


class RiskRejected(Message):
    """A signal or order was refused by a risk check."""

    symbol: str
    check: str
    reason: str


class OrderSubmitted(Message):
    """The broker accepted an order."""

    symbol: str
    side: Side
    quantity: float
    client_order_id: str
    broker_order_id: str = ""


class OrderRejected(Message):
    """The broker refused an order."""

    symbol: str
    client_order_id: str
    reason: str


class OrderFilled(Message):
    """An order (or part of it) was filled."""

    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    client_order_id: str
    broker_order_id: str = ""
    fee_currency: str = ""  # "" = the quote currency; else the asset the exchange charged the fee in


class OrderCancelled(Message):
    """An order's unfilled remainder was cancelled (by us or by the broker)."""

    symbol: str
    client_order_id: str
    reason: str = ""


class TradingHalted(Message):
    """New orders stopped: the book and the broker disagree (reconciliation) or an operator said so."""

    symbol: str = ""  # "" = every symbol
    reason: str
    details: dict[str, float] = Field(default_factory=dict)


class PositionChanged(Message):
    """The portfolio's position in a symbol changed."""

    symbol: str
    quantity: float
    avg_price: float
    realized_pnl: float
    cash: float


class RunStarted(Message):
    """A pipeline run started: everything ``replay`` needs to rebuild what it ran (``engine.run_record``).

    ``artifacts``: the ensemble artifact per symbol (empty when a named ``strategy`` trades, with its
    ``params``); ``broker``: ``paper`` or the exchange broker (``ccxt:binance``); ``trading``: the trading
    configuration's fields and ``fingerprint`` its hash (part of every order id); ``versions``: the pipeline's
    version strings (``{"signals"|"orders"|"shadow": {symbol: version}}``); ``ts_event``: when the run started.
    The id derives from the content, so recording the same run twice (a restart, several workers) adds one event.
    """

    run_id: str
    symbols: list[str]
    timeframe: Timeframe
    artifacts: dict[str, str] = Field(default_factory=dict)
    strategy: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    shadow: dict[str, str] = Field(default_factory=dict)
    broker: str = "paper"
    trading: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str = ""
    versions: dict[str, dict[str, str]] = Field(default_factory=dict)


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.__name__: cls
    for cls in (
        CandleClosed,
        FeaturesComputed,
        PredictionMade,
        SignalGenerated,
        ShadowPredictionMade,
        ShadowSignalGenerated,
        SubmitOrder,
        CancelOrder,
        RiskRejected,
        OrderSubmitted,
        OrderRejected,
        OrderFilled,
        OrderCancelled,
        TradingHalted,
        PositionChanged,
        RunStarted,
    )
}


def from_dict(data: dict[str, Any]) -> Message:
    """Rebuild a message from its serialised mapping (the inverse of ``Message.to_dict``)."""
    payload = dict(data)
    type_name = payload.pop("type", None)
    cls = MESSAGE_TYPES.get(str(type_name))
    if cls is None:
        raise DataFormatError(f"unknown event type {type_name!r}", hint="is this log from a newer version?")
    if payload.get("version", 1) > cls.SCHEMA_VERSION:
        raise DataFormatError(
            f"{type_name} has schema version {payload['version']}, this code reads up to {cls.SCHEMA_VERSION}"
        )
    return cls.model_validate(payload)


def to_json(message: Message) -> str:
    return json.dumps(message.to_dict(), separators=(",", ":"), allow_nan=True)


def from_json(text: str | bytes) -> Message:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DataFormatError(f"undecodable event JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DataFormatError("event JSON is not an object")
    return from_dict(data)


def to_msgpack(message: Message) -> bytes:
    return msgpack.packb(message.to_dict(), use_bin_type=True)


def from_msgpack(blob: bytes) -> Message:
    try:
        data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise DataFormatError(f"undecodable event msgpack: {exc}") from None
    if not isinstance(data, dict):
        raise DataFormatError("event msgpack is not a map")
    return from_dict(data)


__all__ = [
    "MESSAGE_TYPES",
    "CancelOrder",
    "CandleClosed",
    "Direction",
    "FeaturesComputed",
    "Message",
    "OrderCancelled",
    "OrderFilled",
    "OrderRejected",
    "OrderSubmitted",
    "PositionChanged",
    "PredictionFields",
    "PredictionMade",
    "RiskRejected",
    "RunStarted",
    "ShadowPredictionMade",
    "ShadowSignalGenerated",
    "Side",
    "SignalFields",
    "SignalGenerated",
    "SubmitOrder",
    "TradingHalted",
    "deterministic_event_id",
    "from_dict",
    "from_json",
    "from_msgpack",
    "new_event_id",
    "to_json",
    "to_msgpack",
]
