"""Reconciliation: does the book agree with the broker? Positions and open orders, compared within a tolerance.

``reconcile(book, broker, symbols)`` asks the broker for its positions (``positions``: ccxt ``fetch_balance`` /
``fetch_positions``) and open orders (``open_orders``) and compares them with what the book learnt from fills.
A difference beyond the tolerance is a :class:`Mismatch`; the execution stage then stops sending orders
(``TradingHalted`` event, one ERROR log line) until an operator looks — or, with ``--reconcile adopt``, takes
the broker's positions as truth by booking the difference as an adoption fill at the last price.

Cash is not compared: each symbol is its own paper sub-account in the book, while the exchange holds one
quote balance shared with whatever else the account does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from smartmarket.core.events import OrderFilled, TradingHalted, deterministic_event_id
from smartmarket.execution.book import Book
from smartmarket.execution.broker import Broker

ReconcileMode = Literal["check", "adopt", "off"]
RECONCILE_MODES: tuple[str, ...] = ("check", "adopt", "off")


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far book and broker may differ: ``relative`` of the larger quantity, at least ``absolute`` units
    (fees charged in the base asset and amount rounding leave small differences)."""

    relative: float = 0.002
    absolute: float = 1e-8

    def allows(self, a: float, b: float) -> bool:
        return abs(a - b) <= max(self.absolute, self.relative * max(abs(a), abs(b)))


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One symbol where the book and the broker disagree."""

    symbol: str
    what: Literal["position", "open orders"]
    book: float
    broker: float

    def describe(self) -> str:
        return f"{self.symbol} {self.what}: book {self.book:g}, broker {self.broker:g}"


def reconcile(book: Book, broker: Broker, symbols: Iterable[str], tolerance: Tolerance | None = None) -> list[Mismatch]:
    """Every symbol whose position or open (unfilled) quantity differs beyond ``tolerance``."""
    tol = tolerance or Tolerance()
    held = broker.positions()
    working: dict[str, float] = {}
    for order in broker.open_orders():
        working[order.symbol] = working.get(order.symbol, 0.0) + order.signed_quantity
    out = []
    for symbol in symbols:
        ours, theirs = book.position(symbol), held.get(symbol, 0.0)
        if not tol.allows(ours, theirs):
            out.append(Mismatch(symbol, "position", ours, theirs))
        ours, theirs = book.working_quantity(symbol), working.get(symbol, 0.0)
        if not tol.allows(ours, theirs):
            out.append(Mismatch(symbol, "open orders", ours, theirs))
    return out


def halted_event(mismatches: list[Mismatch], now_ms: int) -> TradingHalted:
    """The alarm: new orders stop because of ``mismatches``."""
    reason = "book and broker disagree: " + "; ".join(m.describe() for m in mismatches)
    details = {f"{m.symbol}.{m.what}.broker": m.broker for m in mismatches}
    details |= {f"{m.symbol}.{m.what}.book": m.book for m in mismatches}
    return TradingHalted(
        event_id=deterministic_event_id("TradingHalted", now_ms, reason), ts_event=now_ms, ts_init=now_ms,
        symbol=mismatches[0].symbol if len({m.symbol for m in mismatches}) == 1 else "", reason=reason,
        details=details,
    )  # fmt: skip


def adoption_fills(mismatches: list[Mismatch], book: Book, now_ms: int) -> list[OrderFilled]:
    """Fills that move the book's positions to the broker's (``--reconcile adopt``), at the last known price."""
    out = []
    for m in mismatches:
        if m.what != "position":
            continue
        delta = m.broker - m.book
        price = book.portfolio.last_prices.get(m.symbol, math.nan)
        if not (math.isfinite(price) and price > 0):
            price = book.portfolio.positions[m.symbol].avg_price if m.symbol in book.portfolio.positions else 0.0
        cid = f"adopt-{m.symbol}-{now_ms}"
        fill = OrderFilled(
            event_id=deterministic_event_id("OrderFilled", cid), ts_event=now_ms, ts_init=now_ms,
            symbol=m.symbol, side="buy" if delta > 0 else "sell", quantity=abs(delta), price=price, fee=0.0,
            client_order_id=cid, broker_order_id="reconciliation",
        )  # fmt: skip
        out.append(fill)
    return out


__all__ = [
    "RECONCILE_MODES",
    "Mismatch",
    "ReconcileMode",
    "Tolerance",
    "adoption_fills",
    "halted_event",
    "reconcile",
]
