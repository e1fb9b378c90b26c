"""Protective exits in the paper execution stage: a reduce-only stop or limit order fills at its level inside the
candle it was decided at, by the kernel's rule (``execution.risk``); a level the candle never reached is refused."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from execution_scenario import SYMBOL, candle, spec
from smartmarket.core.events import OrderFilled, OrderRejected, SubmitOrder
from smartmarket.execution.broker import PaperBrokerAdapter
from smartmarket.execution.fees import FeeModel
from smartmarket.execution.paper_broker import PaperBroker
from smartmarket.execution.portfolio import Portfolio
from smartmarket.execution.risk import ProtectiveStops, exit_fill_price
from smartmarket.execution.slippage import FixedBps
from smartmarket.pipeline.stages.execution import ExecutionStage
from smartmarket.pipeline.stages.spec import PipelineSpec


def test_the_one_level_rule_agrees_with_the_kernel_s_stops_on_random_bars() -> None:
    rng = random.Random(7)
    checked = {"stop": 0, "limit": 0}
    for _ in range(20_000):
        side = rng.choice((1, -1))
        o = 100.0 + rng.uniform(-5, 5)
        h, lo = max(o, o + rng.uniform(0, 6)), min(o, o - rng.uniform(0, 6))
        kind = rng.choice(("stop", "limit"))
        level = 100.0 + rng.uniform(-8, 8)
        stops = ProtectiveStops(side, stop_loss=level, best_price=o) if kind == "stop" else ProtectiveStops(
            side, take_profit=level, best_price=o
        )  # fmt: skip
        hit = stops.check(o, h, lo)
        assert exit_fill_price(side, kind, level, o, h, lo) == (hit[0] if hit is not None else None)
        checked[kind] += hit is not None
    assert min(checked.values()) > 1_000  # both kinds were hit often


def exit_order(kind: str, level: float, decided_at: int, side: str = "sell") -> SubmitOrder:
    """A protective exit decided at the close of candle ``decided_at``."""
    c = candle(decided_at)
    return SubmitOrder(
        event_id=f"exit-{kind}-{decided_at}", ts_event=c.ts_event, correlation_id=c.event_id, causation_id=c.event_id,
        symbol=SYMBOL, side=side, quantity=1.0, order_type=kind, client_order_id=f"sm-exit-{kind}-{decided_at}",
        stop_price=level if kind == "stop" else None, limit_price=level if kind == "limit" else None,
        reduce_only=True,
    )  # fmt: skip


def stage_holding_one_unit(trading_spec: PipelineSpec) -> ExecutionStage:
    """A paper execution stage whose account holds 1 BTCUSDT bought at candle 0's open."""
    stage = ExecutionStage(trading_spec, None)
    stage.step(candle(0))
    entry = SubmitOrder(
        event_id="entry", ts_event=candle(0).ts, correlation_id="c", causation_id="c", symbol=SYMBOL, side="buy",
        quantity=1.0, client_order_id="sm-entry",
    )  # fmt: skip
    assert any(isinstance(m, OrderFilled) for m in stage.step(entry))
    return stage


def costly_spec() -> PipelineSpec:
    base = spec()
    trading = replace(base.trading, fees=FeeModel(maker=0.0002, taker=0.001), slippage=FixedBps(10.0))
    return replace(base, trading=trading)


def test_a_stop_fills_at_its_level_inside_its_candle_as_a_taker() -> None:
    stage = stage_holding_one_unit(costly_spec())
    stage.step(candle(1))  # open 101, low 100
    fills = [m for m in stage.step(exit_order("stop", 100.4, decided_at=1)) if isinstance(m, OrderFilled)]
    assert len(fills) == 1
    fill = fills[0]
    assert fill.price == pytest.approx(100.4 * (1 - 0.001))  # the level, slipped 10 bps against the seller
    assert fill.fee == pytest.approx(fill.price * 0.001)  # taker
    assert fill.ts_event == candle(1).ts  # inside the candle it was decided at


def test_a_take_profit_fills_at_its_level_as_a_maker_and_a_gap_at_the_open() -> None:
    stage = stage_holding_one_unit(costly_spec())
    stage.step(candle(1))  # high 102
    fills = [m for m in stage.step(exit_order("limit", 101.7, decided_at=1)) if isinstance(m, OrderFilled)]
    assert fills[0].price == pytest.approx(101.7)  # no slippage
    assert fills[0].fee == pytest.approx(101.7 * 0.0002)  # maker
    gapped = stage_holding_one_unit(costly_spec())
    gapped.step(candle(1))
    gapped.step(candle(2))  # opens at 102, above a 101.5 target
    fills = [m for m in gapped.step(exit_order("limit", 101.5, decided_at=2)) if isinstance(m, OrderFilled)]
    assert fills[0].price == pytest.approx(102.0)


def test_an_exit_waits_for_its_candle_and_a_level_never_reached_is_refused() -> None:
    stage = stage_holding_one_unit(costly_spec())
    order = exit_order("stop", 95.0, decided_at=1)  # candle 1 (low 100) never trades at 95
    assert stage.step(order) == []  # its candle is not known yet: it waits
    answers = stage.step(candle(1))
    refused = [m for m in answers if isinstance(m, OrderRejected)]
    assert len(refused) == 1 and "not reached" in refused[0].reason
    assert not any(isinstance(m, OrderFilled) for m in answers)


def test_the_paper_broker_still_refuses_a_limit_order_that_opens_a_position() -> None:
    adapter = PaperBrokerAdapter(PaperBroker(Portfolio(10_000.0), FeeModel()))
    adapter.mark(SYMBOL, 100.0)
    order = exit_order("limit", 99.0, decided_at=1, side="buy").model_copy(update={"reduce_only": False})
    answer = adapter.submit(order, 0)
    assert isinstance(answer, OrderRejected) and "market orders" in answer.reason
