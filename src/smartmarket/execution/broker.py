"""The broker port: what the live pipeline needs from any broker, and the paper broker behind it.

A :class:`Broker` takes a ``SubmitOrder`` command and answers ``OrderSubmitted`` or ``OrderRejected``; fills
arrive later through ``poll_fills``. Every call takes the caller's ``now_ms`` (UTC epoch ms) and no broker
reads the wall clock, so events are reproducible. Submitting the same ``client_order_id`` twice never
places a second order: the second call answers like the first.

Adapters: :class:`PaperBrokerAdapter` (simulated fills into a :class:`Portfolio`, the default) and
:class:`~smartmarket.execution.ccxt_broker.CcxtBroker` (an exchange through ccxt).

Ids derive from the causing command, never from a process's counter: the paper broker's order id is
:func:`paper_order_id` of the client order id and a fill's event id is :func:`fill_event_id` (client order id,
the fill's sequence number within its order), so a restarted execution worker answers with exactly the ids of
an uninterrupted run, and ``replay`` can regenerate and compare them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from smartmarket.core.errors import ValidationError
from smartmarket.core.events import (
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    SubmitOrder,
    deterministic_event_id,
)
from smartmarket.execution.orders import Liquidity
from smartmarket.execution.paper_broker import PaperBroker
from smartmarket.execution.risk_checks import OpenOrder


@runtime_checkable
class Broker(Protocol):
    """Orders in, fills out. Symbols are SmartMarket's spelling (``BTCUSDT``)."""

    def mark(self, symbol: str, price: float) -> None:
        """The latest price the pipeline saw for ``symbol`` (the reference for market orders)."""

    def submit(self, order: SubmitOrder, now_ms: int) -> OrderSubmitted | OrderRejected:
        """Place ``order``; idempotent per ``client_order_id``."""

    def poll_fills(self, now_ms: int) -> Sequence[OrderFilled | OrderCancelled]:
        """Fills not reported before, oldest first; an ``OrderCancelled`` when an order ends with a remainder
        that will never fill (cancelled, expired)."""

    def cancel(self, client_order_id: str, now_ms: int) -> bool:
        """Cancel an open order; False when there is nothing open to cancel."""

    def open_orders(self) -> list[OpenOrder]:
        """Orders placed and not finished, with their unfilled quantity."""

    def positions(self) -> dict[str, float]:
        """Signed quantity held per symbol (non-zero only)."""

    def balances(self) -> dict[str, float]:
        """Total balance per asset (non-zero only)."""


def paper_order_id(client_order_id: str) -> str:
    """The paper broker's order id for ``client_order_id`` (the same in every process and every replay)."""
    return f"paper-{client_order_id}"


def fill_event_id(client_order_id: str, sequence: int) -> str:
    """The event id of the ``sequence``-th fill (1, 2, …) of the order ``client_order_id`` (paper broker)."""
    return deterministic_event_id("OrderFilled", client_order_id, sequence)


def submitted_event(
    order: SubmitOrder, quantity: float, broker_order_id: str, ts_event: int, now_ms: int
) -> OrderSubmitted:
    """The ``OrderSubmitted`` answer to ``order`` (its id derives from the client order id)."""
    return OrderSubmitted(
        event_id=deterministic_event_id("OrderSubmitted", order.client_order_id),
        ts_event=ts_event,
        ts_init=now_ms,
        correlation_id=order.correlation_id,
        causation_id=order.event_id,
        symbol=order.symbol,
        side=order.side,
        quantity=quantity,
        client_order_id=order.client_order_id,
        broker_order_id=broker_order_id,
    )


def rejected_event(order: SubmitOrder, reason: str, now_ms: int) -> OrderRejected:
    """The ``OrderRejected`` answer to ``order``."""
    return OrderRejected(
        event_id=deterministic_event_id("OrderRejected", order.client_order_id, reason),
        ts_event=now_ms,
        ts_init=now_ms,
        correlation_id=order.correlation_id,
        causation_id=order.event_id,
        symbol=order.symbol,
        client_order_id=order.client_order_id,
        reason=reason,
    )


class PaperBrokerAdapter:
    """The :class:`Broker` port over a :class:`PaperBroker`: market orders fill at once at the marked price.

    Fills carry the paper broker's taker fee and ``slippage`` (a fraction). A long-only portfolio behaves like
    a spot account: selling more than is held, or buying for more than the cash, is rejected. Besides market
    orders it fills reduce-only stop and limit orders, the protective exits whose trigger the caller checked
    against a candle (``execution.risk.exit_fill_price``), at the marked price: a stop as a taker, a limit as a
    maker without slippage. Other limit orders are rejected. ``balances`` reports the cash as ``cash_asset``.
    """

    __slots__ = ("_answers", "_fills", "_prices", "broker", "cash_asset", "slippage")

    def __init__(self, broker: PaperBroker, *, slippage: float = 0.0, cash_asset: str = "USDT") -> None:
        self.broker = broker
        self.slippage = slippage
        self.cash_asset = cash_asset
        self._prices: dict[str, float] = {}
        self._answers: dict[str, OrderSubmitted | OrderRejected] = {}
        self._fills: list[OrderFilled] = []

    def __repr__(self) -> str:
        return f"PaperBrokerAdapter(cash={self.broker.portfolio.cash:g}, positions={len(self.positions())})"

    def mark(self, symbol: str, price: float) -> None:
        self._prices[symbol] = price
        self.broker.portfolio.mark(symbol, price)

    def submit(self, order: SubmitOrder, now_ms: int) -> OrderSubmitted | OrderRejected:
        previous = self._answers.get(order.client_order_id)
        if previous is not None:
            return previous
        answer = self._execute(order, now_ms)
        self._answers[order.client_order_id] = answer
        return answer

    def _execute(self, order: SubmitOrder, now_ms: int) -> OrderSubmitted | OrderRejected:
        if order.order_type != "market" and not order.reduce_only:
            return rejected_event(
                order, "the paper broker simulates market orders and reduce-only protective exits only", now_ms
            )
        if not (math.isfinite(order.quantity) and order.quantity > 0):
            return rejected_event(order, f"quantity must be finite and > 0, got {order.quantity!r}", now_ms)
        price = self._prices.get(order.symbol)
        if price is None:
            return rejected_event(order, f"no price for {order.symbol} yet: mark it before submitting", now_ms)
        portfolio = self.broker.portfolio
        signed = order.quantity if order.side == "buy" else -order.quantity
        if portfolio.long_only and order.side == "buy":
            cost = order.quantity * price * (1.0 + self.slippage) * (1.0 + self.broker.fees.taker)
            if cost > portfolio.cash:
                return rejected_event(
                    order, f"insufficient cash: order costs {cost:g}, cash is {portfolio.cash:g}", now_ms
                )
        broker_order_id = paper_order_id(order.client_order_id)
        # a take-profit rests as a limit order: maker, no slippage (the kernel's rule, execution.risk)
        liquidity: Liquidity = "maker" if order.order_type == "limit" else "taker"
        try:
            fill = self.broker.execute(
                order.symbol, signed, price, now_ms, -1, slippage=self.slippage, liquidity=liquidity, reason="live"
            )
        except ValidationError as exc:
            return rejected_event(order, exc.what, now_ms)
        submitted = submitted_event(order, order.quantity, broker_order_id, now_ms, now_ms)
        self._fills.append(
            OrderFilled(
                event_id=fill_event_id(order.client_order_id, 1),  # a market order fills at once, in one fill
                ts_event=now_ms,
                ts_init=now_ms,
                correlation_id=order.correlation_id,
                causation_id=submitted.event_id,
                symbol=order.symbol,
                side=order.side,
                quantity=fill.quantity,
                price=fill.price,
                fee=fill.fee,
                client_order_id=order.client_order_id,
                broker_order_id=broker_order_id,
            )
        )
        return submitted

    def poll_fills(self, now_ms: int) -> list[OrderFilled]:
        fills, self._fills = self._fills, []
        return fills

    def cancel(self, client_order_id: str, now_ms: int) -> bool:
        return False  # market orders fill at once: nothing is ever left open

    def open_orders(self) -> list[OpenOrder]:
        return []

    def positions(self) -> dict[str, float]:
        return {sym: pos.quantity for sym, pos in self.broker.portfolio.positions.items() if pos.quantity != 0.0}

    def balances(self) -> dict[str, float]:
        return {self.cash_asset: self.broker.portfolio.cash}


__all__ = ["Broker", "PaperBrokerAdapter", "fill_event_id", "paper_order_id", "rejected_event", "submitted_event"]
