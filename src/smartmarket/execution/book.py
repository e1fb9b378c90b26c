"""The trading book: an account's positions, cash and working orders, learnt only from the broker's answers.

The book never assumes an order fills. It records what it *sent* (``sent``) and then learns from the answers:

- ``OrderFilled`` (partial fills included) moves position and cash (``Portfolio.apply_fill``) and shrinks the
  order's unfilled remainder;
- ``OrderRejected`` (the broker refused it) and ``OrderCancelled`` end the order's remainder;
- ``OrderSubmitted`` only acknowledges it (the broker may fill less than was asked: its quantity is kept).

So after a partial fill of 40 % the position is 40 % of the order and the other 60 % is *working*: the next
order is sized from ``position + working``, and the risk checks see the working remainder as an open order.
A **resting** order (``sent(..., resting=True)``: a protective stop left on a live exchange) is tracked the same
way but counts neither toward the projected position nor as an open order: it fills only if its level trades,
and then its fill moves the position like any other.
A fill of an order the book did not send (another process, a manual trade) is booked too (it is real money)
and counted in ``unknown_fills``. Every answer is applied once (by event id), so redelivered answers are
harmless. Nothing here reads the wall clock.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from smartmarket.core.events import (
    Message,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Side,
    SubmitOrder,
)
from smartmarket.execution.portfolio import Portfolio
from smartmarket.execution.risk_checks import AccountState, EquityWatermarks, OpenOrder

log = logging.getLogger(__name__)

FILL_TOLERANCE = 1e-9
"""Relative remainder below which an order counts as completely filled (float sums of partial fills)."""

ANSWER_TYPES: tuple[str, ...] = ("OrderSubmitted", "OrderFilled", "OrderRejected", "OrderCancelled")
"""The broker answers a book learns from (event type names)."""
_ANSWER_RANK = {name: rank for rank, name in enumerate(ANSWER_TYPES)}


@dataclass(slots=True)
class WorkingOrder:
    """An order sent and not finished: ``quantity`` asked, ``filled`` so far."""

    client_order_id: str
    symbol: str
    side: Side
    quantity: float
    ts_sent: int
    filled: float = 0.0
    acknowledged: bool = False
    resting: bool = False  # a protective stop resting on the exchange (not part of the projected position)

    @property
    def remaining(self) -> float:
        return max(0.0, self.quantity - self.filled)

    @property
    def signed_remaining(self) -> float:
        return self.remaining if self.side == "buy" else -self.remaining

    @property
    def done(self) -> bool:
        return self.remaining <= FILL_TOLERANCE * self.quantity


class Book:
    """One account's truth as the broker told it (see the module docstring)."""

    def __init__(self, initial_cash: float, *, long_only: bool = False) -> None:
        self.portfolio = Portfolio(initial_cash, long_only=long_only)
        self.working: dict[str, WorkingOrder] = {}
        self.watermarks: EquityWatermarks | None = None
        self.unknown_fills = 0
        self.fills = 0
        self.rejections = 0
        self._applied: set[str] = set()
        self._finished: set[str] = set()  # client order ids answered for good
        self._sent_order: dict[str, int] = {}  # client order id -> its place among the orders sent

    # ------------------------------------------------------------------------------------------ orders out
    def sent(self, order: SubmitOrder, *, resting: bool = False) -> None:
        """``order`` left for the broker: its quantity is working until answered (``resting``: see above)."""
        if order.client_order_id in self.working or order.client_order_id in self._finished:
            return
        self._sent_order.setdefault(order.client_order_id, len(self._sent_order))
        self.working[order.client_order_id] = WorkingOrder(
            order.client_order_id, order.symbol, order.side, order.quantity, order.ts_event, resting=resting
        )

    def answer_order(self, answer: Message) -> tuple[int, int, int]:
        """Sort key of broker answers to apply them as the broker made them: by time, an acknowledgement before
        fills, fills before a rejection or cancellation, then in the order their orders were sent (a reversal's
        close leg before its new side, as the backtest books them; unknown orders last). A stable sort keeps the
        arrival order of partial fills of one order."""
        rank = _ANSWER_RANK.get(answer.type_name, len(_ANSWER_RANK))
        cid = str(getattr(answer, "client_order_id", ""))
        return answer.ts_event, rank, self._sent_order.get(cid, len(self._sent_order))

    def knows(self, client_order_id: str) -> bool:
        """Whether the order has left (working, or answered for good)."""
        return client_order_id in self.working or client_order_id in self._finished

    # ------------------------------------------------------------------------------------------ answers in
    def apply(self, message: Message) -> bool:
        """Learn from one broker answer; False when it is not an answer or was applied before."""
        if not isinstance(message, OrderSubmitted | OrderFilled | OrderRejected | OrderCancelled):
            return False
        if message.event_id in self._applied:
            return False
        self._applied.add(message.event_id)
        order = self.working.get(message.client_order_id)
        if isinstance(message, OrderFilled):
            self._fill(message, order)
        elif isinstance(message, OrderSubmitted):
            if order is not None:
                order.acknowledged = True
                order.quantity = message.quantity  # the broker may round the amount down
                self._finish_if_done(order)
        else:
            if isinstance(message, OrderRejected):
                self.rejections += 1
            if order is not None:
                self._finish(order)
        return True

    def _fill(self, fill: OrderFilled, order: WorkingOrder | None) -> None:
        signed = fill.quantity if fill.side == "buy" else -fill.quantity
        self.portfolio.apply_fill(fill.symbol, signed, fill.price, fill.fee, fill.ts_event, -1, "fill")
        self.fills += 1
        if order is None:
            if fill.client_order_id not in self._finished:
                self.unknown_fills += 1
                log.warning("a fill of %s %s for an order this book did not send (%s)", fill.quantity, fill.symbol,
                            fill.client_order_id)  # fmt: skip
            return
        order.filled += fill.quantity
        self._finish_if_done(order)

    def _finish_if_done(self, order: WorkingOrder) -> None:
        if order.done:
            self._finish(order)

    def _finish(self, order: WorkingOrder) -> None:
        self.working.pop(order.client_order_id, None)
        self._finished.add(order.client_order_id)

    # ------------------------------------------------------------------------------------------ reading
    def mark(self, symbol: str, price: float, now_ms: int) -> None:
        """Value ``symbol`` at ``price`` (a candle's close) and feed the equity watermarks."""
        self.portfolio.mark(symbol, price)
        equity = self.portfolio.equity
        if self.watermarks is None:
            self.watermarks = EquityWatermarks(equity, now_ms)
        else:
            self.watermarks.update(equity, now_ms)

    def position(self, symbol: str) -> float:
        """Signed quantity filled so far."""
        return self.portfolio.quantity(symbol)

    def working_quantity(self, symbol: str) -> float:
        """Signed quantity sent and not (yet) filled, rejected or cancelled (resting stops excluded)."""
        return sum(o.signed_remaining for o in self.working.values() if o.symbol == symbol and not o.resting)

    def resting(self, symbol: str) -> list[WorkingOrder]:
        """The resting protective orders of ``symbol`` still open."""
        return [o for o in self.working.values() if o.symbol == symbol and o.resting]

    def projected(self, symbol: str) -> float:
        """The position once every working order has filled: what the next order is sized against."""
        return self.position(symbol) + self.working_quantity(symbol)

    def unanswered(self, symbol: str, sent_at_or_before: int) -> list[WorkingOrder]:
        """Working orders of ``symbol`` sent at or before ``sent_at_or_before`` (ms)."""
        return [o for o in self.working.values() if o.symbol == symbol and o.ts_sent <= sent_at_or_before]

    @property
    def equity(self) -> float:
        return self.portfolio.equity

    @property
    def cash(self) -> float:
        return self.portfolio.cash

    def open_orders(self) -> list[OpenOrder]:
        return [
            OpenOrder(o.symbol, o.side, o.remaining) for o in self.working.values() if o.remaining > 0 and not o.resting
        ]

    def account_state(self, ahead: Sequence[OpenOrder] = ()) -> AccountState:
        """The snapshot the pre-trade risk checks judge (call ``mark`` first); ``ahead``: orders about to be
        sent before the one judged (a reversal's close leg), counted as working."""
        if self.watermarks is None:
            self.watermarks = EquityWatermarks(self.portfolio.equity, 0)
        return AccountState.from_portfolio(self.portfolio, self.watermarks, [*self.open_orders(), *ahead])


__all__ = ["ANSWER_TYPES", "FILL_TOLERANCE", "Book", "WorkingOrder"]
