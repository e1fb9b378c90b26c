"""Decisions, orders and fills: the records that flow from a strategy to the portfolio.

A strategy returns a :class:`Decision` (a *target position*: long, flat or short, optionally sized and with
protective levels). Sizing and risk turn it into an :class:`Order` for a *target fraction of equity*; the
broker resolves that fraction into a quantity when the order fills (at the next bar's open in a backtest,
at the current price live), so the quantity always matches the price actually paid. Each execution is a
:class:`Fill`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from smartmarket.core.errors import ValidationError
from smartmarket.core.types import Direction

Liquidity = Literal["maker", "taker"]
OrderStatus = Literal["pending", "filled", "cancelled", "skipped"]
ExitReason = Literal["signal", "stop_loss", "take_profit", "trailing_stop", "end_of_data"]

DIRECTION_SIGN: dict[str, int] = {"long": 1, "flat": 0, "short": -1}
DirectionName = Literal["long", "flat", "short"]
"""A direction as strategies may spell it: ``Decision("long")`` is ``Decision(Direction.LONG)``."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What a strategy wants after seeing a closed bar: a target position, not an order.

    ``size`` is a fraction of equity (``1.0`` = all of it); ``None`` lets the sizer decide. ``stop_loss`` and
    ``take_profit`` are absolute prices; ``trailing_stop`` is a fraction (``0.02`` trails 2 % behind the best
    price since entry). A decision repeating the current direction without a new ``size`` does not trade;
    any protective levels it carries replace the current ones. ``direction`` is stored as a ``Direction``.
    """

    direction: Direction | DirectionName
    size: float | None = None
    confidence: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    reason: str = "signal"

    def __post_init__(self) -> None:
        if not isinstance(self.direction, Direction):
            if self.direction not in DIRECTION_SIGN:
                raise ValidationError(f"unknown direction {self.direction!r}", hint="use long, flat or short")
            object.__setattr__(self, "direction", Direction(self.direction))

    @property
    def sign(self) -> int:
        """+1 long, 0 flat, -1 short."""
        return DIRECTION_SIGN[self.direction]


@dataclass(slots=True)
class Order:
    """A request to hold ``target_fraction`` of equity in ``symbol`` (signed: negative = short).

    Created at the close of bar ``created_bar`` (the symbol's own bar counter) and fillable from the open of bar
    ``fill_bar`` (``created_bar + 1 + latency``). ``quantity``: the signed position wanted after the fill, fixed at
    the decision close; ``None`` (``KernelConfig.size_at="fill_open"``) sizes at the fill. ``status`` moves from
    ``pending`` to ``filled``, ``cancelled`` (replaced by a newer decision) or ``skipped`` (nothing to trade when it
    came due).
    """

    order_id: int
    symbol: str
    target_fraction: float
    created_ts: int
    created_bar: int
    fill_bar: int
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    reason: str = "signal"
    status: OrderStatus = "pending"
    filled_ts: int | None = None
    quantity: float | None = None

    @property
    def target_sign(self) -> int:
        return (self.target_fraction > 0) - (self.target_fraction < 0)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution: ``quantity`` > 0 units bought (``side="buy"``) or sold at ``price`` (slippage included)."""

    order_id: int  # -1 for exits triggered by protective stops or the end of data
    symbol: str
    ts: int
    bar: int
    side: Literal["buy", "sell"]
    quantity: float
    price: float
    fee: float
    liquidity: Liquidity
    reason: str

    @property
    def notional(self) -> float:
        return self.quantity * self.price

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.side == "buy" else -self.quantity


__all__ = ["DIRECTION_SIGN", "Decision", "ExitReason", "Fill", "Liquidity", "Order", "OrderStatus"]
