"""The trading book learns position, cash and working orders only from the broker's answers."""

from __future__ import annotations

import pytest

from smartmarket.core.events import OrderCancelled, OrderFilled, OrderRejected, OrderSubmitted, SubmitOrder
from smartmarket.execution.book import Book
from smartmarket.execution.risk_checks import OpenOrder

T0 = 1_700_000_000_000


def order(cid: str, quantity: float, side: str = "buy", ts: int = T0) -> SubmitOrder:
    return SubmitOrder(event_id=f"cmd-{cid}", ts_event=ts, symbol="BTCUSDT", side=side,  # type: ignore[arg-type]
                       quantity=quantity, client_order_id=cid)  # fmt: skip


def submitted(cid: str, quantity: float, side: str = "buy") -> OrderSubmitted:
    return OrderSubmitted(event_id=f"ack-{cid}", ts_event=T0 + 1, symbol="BTCUSDT", side=side,  # type: ignore[arg-type]
                          quantity=quantity, client_order_id=cid)  # fmt: skip


def filled(cid: str, n: int, quantity: float, price: float, fee: float = 0.0, side: str = "buy") -> OrderFilled:
    return OrderFilled(event_id=f"fill-{cid}-{n}", ts_event=T0 + 1 + n, symbol="BTCUSDT",
                       side=side, quantity=quantity, price=price, fee=fee, client_order_id=cid)  # type: ignore[arg-type]  # fmt: skip


def test_a_sent_order_moves_nothing_until_it_fills() -> None:
    book = Book(10_000.0)
    book.sent(order("a", 1.0))
    assert book.position("BTCUSDT") == 0.0 and book.cash == 10_000.0
    assert book.working_quantity("BTCUSDT") == 1.0 and book.projected("BTCUSDT") == 1.0
    assert book.open_orders() == [OpenOrder("BTCUSDT", "buy", 1.0)]


def test_partial_fill_then_the_rest() -> None:
    book = Book(10_000.0)
    book.sent(order("a", 1.0))
    book.apply(submitted("a", 1.0))
    book.apply(filled("a", 1, 0.4, 100.0, fee=0.04))
    assert book.position("BTCUSDT") == pytest.approx(0.4)
    assert book.cash == pytest.approx(10_000.0 - 40.0 - 0.04)
    assert book.working_quantity("BTCUSDT") == pytest.approx(0.6)
    assert book.projected("BTCUSDT") == pytest.approx(1.0)
    book.apply(filled("a", 2, 0.6, 101.0, fee=0.0606))
    assert book.position("BTCUSDT") == pytest.approx(1.0)
    assert book.cash == pytest.approx(10_000.0 - 40.04 - 60.6 - 0.0606)
    assert book.working == {} and book.open_orders() == []


def test_rejection_and_cancellation_end_the_remainder() -> None:
    book = Book(10_000.0)
    book.sent(order("a", 1.0))
    book.apply(OrderRejected(event_id="rej-a", ts_event=T0 + 1, symbol="BTCUSDT", client_order_id="a",
                             reason="insufficient balance"))  # fmt: skip
    assert book.projected("BTCUSDT") == 0.0 and book.rejections == 1 and book.cash == 10_000.0

    book.sent(order("b", 2.0, side="sell"))
    book.apply(filled("b", 1, 0.5, 100.0, side="sell"))
    book.apply(OrderCancelled(event_id="cxl-b", ts_event=T0 + 5, symbol="BTCUSDT", client_order_id="b"))
    assert book.position("BTCUSDT") == pytest.approx(-0.5)
    assert book.working_quantity("BTCUSDT") == 0.0
    # a late fill of the cancelled order is still real money: booked, not lost
    book.apply(filled("b", 2, 0.1, 100.0, side="sell"))
    assert book.position("BTCUSDT") == pytest.approx(-0.6) and book.unknown_fills == 0


def test_the_broker_rounding_an_order_down_shrinks_what_is_working() -> None:
    book = Book(10_000.0)
    book.sent(order("a", 0.123456))
    book.apply(submitted("a", 0.123))
    assert book.working_quantity("BTCUSDT") == pytest.approx(0.123)
    book.apply(filled("a", 1, 0.123, 100.0))
    assert book.working == {} and book.position("BTCUSDT") == pytest.approx(0.123)


def test_answers_apply_once_and_unknown_fills_are_booked_and_counted() -> None:
    book = Book(10_000.0)
    book.sent(order("a", 1.0))
    fill = filled("a", 1, 1.0, 100.0)
    assert book.apply(fill) is True
    assert book.apply(fill) is False  # redelivered
    assert book.position("BTCUSDT") == 1.0
    book.apply(filled("manual", 1, 0.5, 90.0))
    assert book.position("BTCUSDT") == 1.5 and book.unknown_fills == 1


def test_marking_feeds_equity_and_the_watermarks() -> None:
    book = Book(1_000.0)
    book.sent(order("a", 1.0))
    book.apply(filled("a", 1, 1.0, 100.0))
    book.mark("BTCUSDT", 120.0, T0 + 60_000)
    assert book.equity == pytest.approx(1_020.0)
    state = book.account_state()
    assert state.positions == {"BTCUSDT": 1.0} and state.equity == pytest.approx(1_020.0)
    book.mark("BTCUSDT", 80.0, T0 + 120_000)
    assert book.account_state().peak_equity == pytest.approx(1_020.0)
