"""A restarted paper execution worker fills the orders it recovers, whatever input comes back first.

A worker killed between publishing some answers and acknowledging its batch leaves orders unanswered in the log,
and inputs that its successor meets again (redelivered orders it recovered or whose answers the log holds,
candles its recovery read). Before the fix such a repeated input was dropped without looking at the waiting
orders, so an order whose fill candle was known waited for a candle that might never come: the risk stage waited
for its answer for good (the kill -9 test of ``test_replay_fills`` stalled so, 3 of 3 runs beside a CPU hog;
5 of 5 passed with the fix). Now every input ends with the due orders filled.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from execution_scenario import SYMBOL, candle, spec
from smartmarket.core.events import CancelOrder, Message, OrderCancelled, OrderFilled, OrderSubmitted, SubmitOrder
from smartmarket.pipeline.stages import EventLog, ExecutionStage
from smartmarket.store.url import open_store


def order(client_order_id: str) -> SubmitOrder:
    # decided at candle 0's close: fills at candle 1's open
    return SubmitOrder(ts_event=candle(0).ts_event, symbol=SYMBOL, side="buy", quantity=0.5,
                       client_order_id=client_order_id)  # fmt: skip


def answers(messages: list[Message]) -> list[tuple[str, str, float | None]]:
    out: list[tuple[str, str, float | None]] = []
    for m in messages:
        if isinstance(m, OrderSubmitted):
            out.append(("submitted", m.client_order_id, None))
        elif isinstance(m, OrderFilled):
            out.append(("filled", m.client_order_id, m.price))
    return out


def test_a_successor_fills_a_recovered_order_when_its_first_input_was_answered_already(tmp_path: Path) -> None:
    """The killed worker published (and the recorder logged) its answers to o-2 but died before acknowledging
    o-2, and before answering o-1. o-2 comes back first: already answered, so nothing to send for it; but the
    recovery found o-1 waiting with its fill candle known, and only a new candle used to fill it."""
    o1, o2 = order("o-1"), order("o-2")
    killed = ExecutionStage(spec(), None)  # what the killed worker computed for o-2
    answered_o2 = [m for m in [*killed.step(candle(0)), *killed.step(o2), *killed.step(candle(1))]
                   if isinstance(m, OrderSubmitted | OrderFilled)]  # fmt: skip
    assert [(kind, oid) for kind, oid, _ in answers(answered_o2)] == [("submitted", "o-2"), ("filled", "o-2")]

    async def scenario() -> None:
        with open_store(f"duckdb:///{tmp_path / 'log.duckdb'}") as store:
            store.append_events([candle(0), o1, o2, candle(1), *answered_o2])
            successor = ExecutionStage(spec(), EventLog(store))
            got = answers(await successor.handle(o2))  # redelivered: acknowledged never
            assert [(kind, oid) for kind, oid, _ in got] == [("submitted", "o-1"), ("filled", "o-1")]
            fill_price = got[1][2]
            assert fill_price is not None and abs(fill_price - candle(1).open) / candle(1).open < 0.01
            assert successor.waiting() == 0
            # met again (more redeliveries) nothing is answered twice
            assert answers(await successor.handle(o1)) == []
            assert answers(await successor.handle(candle(1))) == []

    asyncio.run(scenario())


def test_a_successor_whose_first_input_is_the_fill_candle_fills_only_the_unanswered_order(tmp_path: Path) -> None:
    """The same log, the fill candle redelivered first: o-1 is filled with it, o-2 (answered) is not again."""
    o1, o2 = order("o-1"), order("o-2")
    killed = ExecutionStage(spec(), None)
    answered_o2 = [m for m in [*killed.step(candle(0)), *killed.step(o2), *killed.step(candle(1))]
                   if isinstance(m, OrderSubmitted | OrderFilled)]  # fmt: skip

    async def scenario() -> None:
        with open_store(f"duckdb:///{tmp_path / 'log.duckdb'}") as store:
            store.append_events([candle(0), o1, o2, candle(1), *answered_o2])
            successor = ExecutionStage(spec(), EventLog(store))
            got = answers(await successor.handle(candle(1)))  # a candle first this time
            assert [(kind, oid) for kind, oid, _ in got] == [("submitted", "o-1"), ("filled", "o-1")]
            assert answers(await successor.handle(o2)) == []
            assert successor.waiting() == 0

    asyncio.run(scenario())


def test_a_paper_order_cancelled_before_its_fill_candle_never_fills() -> None:
    """``CancelOrder`` of a paper order still waiting for its candle: answered ``OrderCancelled``, then nothing
    fills it; a second cancel, or one of an order already filled, answers nothing."""
    stage = ExecutionStage(spec(), None)
    stage.step(candle(0))
    stage.step(order("o-1"))
    assert stage.waiting() == 1
    cancel = CancelOrder(ts_event=candle(0).ts_event, symbol=SYMBOL, client_order_id="o-1", reason="test")
    [cancelled] = stage.step(cancel)
    assert isinstance(cancelled, OrderCancelled) and cancelled.client_order_id == "o-1"
    assert stage.waiting() == 0 and answers(stage.step(candle(1))) == []
    assert stage.step(cancel) == []
    # decided at candle 0's close like o-1, it fills at once at candle 1's open, which the stage knows now
    assert [kind for kind, _, _ in answers(stage.step(order("o-2")))] == ["submitted", "filled"]
    assert stage.step(CancelOrder(ts_event=candle(1).ts_event, symbol=SYMBOL, client_order_id="o-2")) == []
