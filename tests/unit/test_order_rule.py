"""The one order rule both drivers follow: ``order_quantity`` at the decision close, a reversal in two legs.

The end-to-end check (backtest fills == live fills) is ``tests/integration/test_one_pipeline_fills.py``; these
pin the pieces: the sizing function, the legs the risk stage sends, the execution stage filling a reversal's
close leg first, and the portfolio stage booking both fills of one open.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from smartmarket.core.events import OrderFilled, PositionChanged, SubmitOrder
from smartmarket.core.types import Timeframe
from smartmarket.execution.fees import FeeModel
from smartmarket.execution.sizing import order_quantity
from smartmarket.pipeline.stages import PipelineSpec, TradingConfig
from smartmarket.pipeline.stages.candles import candle_closed
from smartmarket.pipeline.stages.execution import ExecutionStage
from smartmarket.pipeline.stages.portfolio import PortfolioStage
from smartmarket.pipeline.stages.risk import order_legs
from smartmarket.pipeline.stages.spec import StrategyChoice

SYMBOL = "BTCUSDT"
TF = Timeframe.parse("1m")


def spec() -> PipelineSpec:
    trading = TradingConfig(limits=None, fees=FeeModel(maker=0.001, taker=0.001))
    return PipelineSpec.build([SYMBOL], TF, None, trading, strategy=StrategyChoice("sma_cross", {}))


# ------------------------------------------------------------------------------------------- order_quantity
def test_order_quantity_spends_the_fraction_including_the_fee() -> None:
    quantity = order_quantity(0.5, 10_000.0, 100.0, 0.001)
    assert quantity == pytest.approx(5_000.0 / (100.0 * 1.001))
    assert quantity * 100.0 * 1.001 == pytest.approx(0.5 * 10_000.0)  # notional plus the entry fee
    assert order_quantity(-0.5, 10_000.0, 100.0, 0.001) == pytest.approx(-quantity)


def test_order_quantity_is_capped_by_the_room_and_zero_without_equity_or_price() -> None:
    assert order_quantity(1.0, 10_000.0, 100.0, 0.0, room=2_500.0) == pytest.approx(25.0)
    assert order_quantity(1.0, 10_000.0, 100.0, 0.0, room=-1.0) == 0.0  # no room left
    assert order_quantity(1.0, 0.0, 100.0, 0.0) == 0.0
    assert order_quantity(1.0, 10_000.0, 0.0, 0.0) == 0.0
    assert order_quantity(0.0, 10_000.0, 100.0, 0.0) == 0.0
    assert order_quantity(1.0, 10_000.0, 100.0, 0.0, slippage=0.01) == pytest.approx(10_000.0 / 101.0)


# ------------------------------------------------------------------------------------------------ order_legs
def test_a_reversal_is_a_close_leg_then_the_new_side() -> None:
    assert order_legs(2.0, -3.0, -1) == [("close", -2.0), ("target", -3.0)]
    assert order_legs(-2.0, 3.0, 1) == [("close", 2.0), ("target", 3.0)]


def test_flattening_resizing_and_entering_are_one_order() -> None:
    assert order_legs(2.0, 0.0, 0) == [("target", -2.0)]  # with the id a flattening always had
    assert order_legs(2.0, 3.0, 1) == [("target", 1.0)]
    assert order_legs(0.0, 3.0, 1) == [("target", 3.0)]
    assert order_legs(2.0, 2.0, 1) == []
    assert order_legs(-2.0, 0.0, 1) == [("target", 2.0)]  # a long target with no room still closes the short


# --------------------------------------------------------------------------------------- execution, portfolio
def order(event_id: str, side: str, quantity: float, ts_event: int, *, reduce_only: bool) -> SubmitOrder:
    return SubmitOrder(
        event_id=event_id, ts_event=ts_event, correlation_id=event_id, causation_id=None, symbol=SYMBOL,
        side=side, quantity=quantity, client_order_id=f"c{event_id}", reduce_only=reduce_only,
    )  # fmt: skip


def test_the_execution_stage_fills_a_close_leg_before_the_new_side_whatever_their_arrival() -> None:
    stage = ExecutionStage(spec(), None)
    decided = candle_closed(SYMBOL, TF, 0, 100.0, 101.0, 99.0, 100.0, 1.0)
    stage.step(decided)
    opened = order("b" * 32, "sell", 3.0, decided.ts_event, reduce_only=False)  # met first
    closing = order("a" * 32, "sell", 2.0, decided.ts_event, reduce_only=True)
    assert stage.step(opened) == [] and stage.step(closing) == []  # both wait for the next open
    answers = stage.step(candle_closed(SYMBOL, TF, TF.ms, 110.0, 111.0, 109.0, 110.0, 1.0))
    fills = [m for m in answers if isinstance(m, OrderFilled)]
    assert [(f.client_order_id, f.quantity, f.price) for f in fills] == [
        (closing.client_order_id, 2.0, 110.0), (opened.client_order_id, 3.0, 110.0)
    ]  # fmt: skip


def fill(event_id: str, side: str, quantity: float, price: float, ts: int) -> OrderFilled:
    return OrderFilled(
        event_id=event_id, ts_event=ts, correlation_id=event_id, causation_id=None, symbol=SYMBOL, side=side,
        quantity=quantity, price=price, fee=0.0, client_order_id=f"c{event_id}",
    )  # fmt: skip


def test_the_portfolio_stage_books_both_fills_of_one_open_and_ignores_a_redelivery() -> None:
    stage = PortfolioStage(spec(), None)
    fills = [
        fill("1" * 32, "buy", 2.0, 100.0, 60_000),
        fill("2" * 32, "sell", 2.0, 110.0, 120_000),  # a reversal at one open: the close leg …
        fill("3" * 32, "sell", 3.0, 110.0, 120_000),  # … then the new side
    ]

    async def go() -> list[list[PositionChanged]]:
        out = [await stage.handle(f) for f in fills]
        out.append(await stage.handle(fills[1]))  # redelivered
        return out  # type: ignore[return-value]

    first, closed, opened, again = asyncio.run(go())
    assert [p.quantity for p in (*first, *closed, *opened)] == [2.0, 0.0, -3.0]
    assert closed[0].realized_pnl == pytest.approx(20.0) and opened[0].avg_price == 110.0
    assert again == closed
    assert math.isclose(opened[0].cash, 10_000.0 - 200.0 + 220.0 + 330.0)
