"""The risk stage's book learns from the exchange's answers (ccxt's real Binance class on a local fake exchange).

A scripted strategy trades through the risk stage (book, sizing) and the execution stage (``CcxtBroker``). The fake
exchange fills orders in parts, refuses them or cancels them as the test says, and its account balances follow
its trades. After each answer the book's position equals the exchange's, and the next order is sized from the
real position; reconciliation stops trading when the exchange holds a position the book does not.
"""

from __future__ import annotations

import asyncio
import copy
import re
from typing import Any, ClassVar

import pytest
from test_ccxt_broker import FAST_RETRY, KEY, SECRET, FakeBinanceTrading, fixture  # the fake exchange

from smartmarket.core.events import (
    Message,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    SubmitOrder,
    TradingHalted,
)
from smartmarket.core.types import Timeframe
from smartmarket.engine.strategy import BarContext, Strategy
from smartmarket.execution.ccxt_broker import API_KEY_ENV, API_SECRET_ENV, CcxtBroker
from smartmarket.execution.fees import FeeModel
from smartmarket.execution.orders import Decision
from smartmarket.execution.risk import RiskConfig
from smartmarket.pipeline.stages.candles import candle_closed
from smartmarket.pipeline.stages.execution import ExecutionStage
from smartmarket.pipeline.stages.risk import RiskStage
from smartmarket.pipeline.stages.spec import PipelineSpec, StrategyChoice, TradingConfig
from smartmarket.strategies.registry import STRATEGIES

SYMBOL = "BTCUSDT"
TF = Timeframe.parse("1m")
T0 = 1_717_243_200_000
PRICE = 67_250.0


class Scripted(Strategy):
    """Decisions by bar: ``L`` long, ``S`` short, ``F`` flat, anything else nothing."""

    name: ClassVar[str] = "scripted_test"
    history_size = 1

    def __init__(self, plan: str = "") -> None:
        self.plan = plan

    def on_bar(self, ctx: BarContext) -> Decision | None:
        step = self.plan[ctx.bar_index] if ctx.bar_index < len(self.plan) else "."
        return {"L": Decision("long", size=0.5), "S": Decision("short", size=0.5), "F": Decision("flat")}.get(step)


class BalancedFake(FakeBinanceTrading):
    """The fake exchange, with account balances that follow its trades (starting from ``start_btc``)."""

    start_btc = 0.0

    def answer(self, method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if (method, path) != ("GET", "/api/v3/account"):
            return super().answer(method, path, params)
        body = copy.deepcopy(fixture("account.json"))
        held = self.start_btc
        for order in self.orders.values():
            if order.symbol == SYMBOL:
                sign = 1.0 if order.side == "BUY" else -1.0
                held += sign * sum(float(t["qty"]) for t in order.trades)
        for balance in body["balances"]:
            if balance["asset"] == "BTC":
                balance["free"], balance["locked"] = f"{held:.8f}", "0.00000000"
        return 200, body

    def fill(self, order_cid: str, quantity: float, status: str) -> None:
        order = self.order_by_client_id(order_cid)
        trade = {**fixture("my-trades.json")[1], "price": f"{PRICE:.8f}", "qty": f"{quantity:.8f}",
                 "quoteQty": f"{quantity * PRICE:.8f}", "commission": f"{quantity * PRICE * 0.001:.8f}",
                 "commissionAsset": "USDT", "isBuyer": order.side == "BUY", "time": T0}  # fmt: skip
        self.add_trades(order, [trade], status)


@pytest.fixture
def exchange(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(API_KEY_ENV, KEY)
    monkeypatch.setenv(API_SECRET_ENV, SECRET)
    monkeypatch.setitem(STRATEGIES, Scripted.name, Scripted)
    fake = BalancedFake()
    fake.start()
    yield fake
    fake.stop()


def broker_on(fake: FakeBinanceTrading) -> CcxtBroker:
    from smartmarket.data.exchange import make_exchange

    ex = make_exchange("binance")
    ex.set_sandbox_mode(True)
    ex.urls["api"] = {name: re.sub(r"^https?://[^/]+", fake.base_url, url) for name, url in ex.urls["api"].items()}
    ex.session.trust_env = False
    ex.timeout = 3_000
    return CcxtBroker("binance", exchange=ex, retry=FAST_RETRY, sleep=lambda _s: None, symbols=[SYMBOL])


class Desk:
    """The risk and execution stages of one process, wired by hand (no bus): answers go back to the risk stage."""

    def __init__(self, plan: str, broker: CcxtBroker, reconcile: str = "check", risk: RiskConfig | None = None) -> None:
        trading = TradingConfig(
            initial_cash=10_000.0, fees=FeeModel(maker=0.001, taker=0.001), limits=None, risk=risk or RiskConfig()
        )
        spec = PipelineSpec.build([SYMBOL], TF, None, trading, strategy=StrategyChoice(Scripted.name, {"plan": plan}))
        self.risk = RiskStage(spec, None, live_broker=True, answer_timeout_s=0.05)
        self.execution = ExecutionStage(spec, None, broker=broker, reconcile=reconcile)  # type: ignore[arg-type]
        self.bar = 0
        self.events: list[Message] = []

    def _to_risk(self, messages: list[Message]) -> None:
        self.events.extend(messages)
        for m in messages:
            self.risk.learn(m)

    def candle(self, low: float = PRICE) -> list[SubmitOrder]:
        """One candle through execution (poll, reconcile) then risk (decide); orders go to execution."""
        event = candle_closed(SYMBOL, TF, T0 + self.bar * TF.ms, PRICE, PRICE, low, PRICE, 1.0)
        self.bar += 1
        self._to_risk(asyncio.run(self.execution.handle(event)))
        decided = asyncio.run(self.risk.handle(event))
        self.events.extend(decided)
        orders = [m for m in decided if isinstance(m, SubmitOrder)]
        for order in orders:
            self._to_risk(asyncio.run(self.execution.handle(order)))
        return orders

    @property
    def book(self) -> Any:
        return self.risk.accounts[SYMBOL].book


def _is(event: object, kind: type) -> bool:
    return isinstance(event, kind)


def test_partial_fill_then_cancel_then_the_next_order_sells_exactly_what_was_filled(exchange: BalancedFake) -> None:
    broker = broker_on(exchange)
    desk = Desk("L..F", broker)
    [buy] = desk.candle()
    asked = next(m for m in desk.events if isinstance(m, OrderSubmitted)).quantity  # rounded to the step
    assert desk.book.position(SYMBOL) == 0.0  # answers are booked at the next decision, in time order

    part = round(asked * 0.4, 5)
    exchange.fill(buy.client_order_id, part, "PARTIALLY_FILLED")
    desk.candle()  # the execution stage polls: 40 % filled
    assert desk.book.position(SYMBOL) == pytest.approx(part)
    assert desk.book.working_quantity(SYMBOL) == pytest.approx(asked - part)
    assert broker.positions()[SYMBOL] == pytest.approx(desk.book.position(SYMBOL))
    assert desk.book.cash == pytest.approx(10_000.0 - part * PRICE * 1.001)

    assert broker.cancel(buy.client_order_id, 0)
    desk.candle()  # the poll sees the cancellation: the remainder is no longer working
    assert any(_is(m, OrderCancelled) for m in desk.events)
    assert desk.book.working_quantity(SYMBOL) == 0.0 and desk.book.position(SYMBOL) == pytest.approx(part)

    [sell] = desk.candle()  # flat: sell what the exchange really filled, not what was ordered
    assert sell.side == "sell" and sell.quantity == pytest.approx(part)
    assert not any(_is(m, TradingHalted) for m in desk.events)


def test_a_rejected_order_changes_nothing_and_is_not_counted_as_held(exchange: BalancedFake) -> None:
    broker = broker_on(exchange)
    desk = Desk("L.F", broker)
    exchange.refuse_next_order = "error-insufficient-balance.json"
    [buy] = desk.candle()
    [refused] = [m for m in desk.events if isinstance(m, OrderRejected)]
    assert refused.client_order_id == buy.client_order_id and "insufficient balance" in refused.reason
    desk.candle()
    assert desk.book.position(SYMBOL) == 0.0 and desk.book.projected(SYMBOL) == 0.0 and desk.book.rejections == 1
    assert desk.candle() == []  # flat while holding nothing: no order
    assert broker.positions().get(SYMBOL, 0.0) == 0.0


def test_reconciliation_halts_when_the_exchange_holds_what_the_book_does_not(exchange: BalancedFake) -> None:
    exchange.start_btc = 0.5  # bought outside SmartMarket
    desk = Desk("L.", broker_on(exchange))
    [buy] = desk.candle()
    [alarm] = [m for m in desk.events if isinstance(m, TradingHalted)]
    assert "position: book 0, broker 0.5" in alarm.reason
    [refused] = [m for m in desk.events if isinstance(m, OrderRejected)]
    assert refused.client_order_id == buy.client_order_id and refused.reason.startswith("trading halted")
    assert exchange.calls("POST", "/api/v3/order") == []  # nothing reached the exchange
    assert desk.candle() == []
    assert desk.book.projected(SYMBOL) == 0.0 and desk.book.rejections == 1


def test_reconcile_adopt_takes_the_exchanges_position_as_truth(exchange: BalancedFake) -> None:
    exchange.start_btc = 0.05
    desk = Desk("L", broker_on(exchange), reconcile="adopt")
    [buy] = desk.candle()
    adopted = [m for m in desk.events if isinstance(m, OrderFilled) and m.broker_order_id == "reconciliation"]
    assert [a.quantity for a in adopted] == [pytest.approx(0.05)]
    assert not any(_is(m, TradingHalted) for m in desk.events)
    # adopted at the last price (the sub-account pays for it: equity unchanged); the buy is sized net of it
    assert desk.book.position(SYMBOL) == pytest.approx(0.05)
    assert buy.quantity == pytest.approx(0.5 * 10_000.0 / (PRICE * 1.001) - 0.05)


def test_a_stop_hit_with_a_live_broker_sells_the_real_position_at_market_and_says_no_stop_rests_on_the_exchange(
    exchange: BalancedFake, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="smartmarket.pipeline.stages.risk"):
        desk = Desk("L", broker_on(exchange), risk=RiskConfig(stop_loss_pct=0.01))
        said_at_start = market_exit_warnings(caplog)
        [buy] = desk.candle()
        asked = next(m for m in desk.events if isinstance(m, OrderSubmitted)).quantity
        part = round(asked * 0.6, 5)  # the exchange filled 60 %, then the rest was cancelled
        exchange.fill(buy.client_order_id, part, "PARTIALLY_FILLED")
        assert desk.candle() == []  # the fill is learnt; the decision model's position opens at this open
        assert broker_cancel(desk, buy.client_order_id)
        assert desk.candle() == []
        [exit_order] = desk.candle(low=PRICE * 0.98)  # the candle reaches the 1 % stop
        assert desk.candle(low=PRICE * 0.98) == []
    assert exit_order.order_type == "market" and exit_order.side == "sell"
    assert exit_order.quantity == pytest.approx(part)  # what the exchange filled, not what was ordered
    # said once, before any order: the user knows before a position is open, not after its first exit
    assert len(said_at_start) == 1 and market_exit_warnings(caplog) == said_at_start
    assert said_at_start[0].startswith("this run's protective exits (stop-loss")


def test_the_market_exit_warning_is_only_for_a_live_broker_with_exits(caplog: pytest.LogCaptureFixture) -> None:
    def stage(live: bool, risk: RiskConfig) -> None:
        trading = TradingConfig(limits=None, risk=risk)
        spec = PipelineSpec.build([SYMBOL], TF, None, trading, strategy=StrategyChoice("sma_cross", {}))
        RiskStage(spec, None, live_broker=live)

    with caplog.at_level("WARNING", logger="smartmarket.pipeline.stages.risk"):
        stage(live=True, risk=RiskConfig())  # no exits configured: nothing to say
        stage(live=False, risk=RiskConfig(take_profit_pct=0.02))  # paper: exits fill at their level
        assert market_exit_warnings(caplog) == []
        stage(live=True, risk=RiskConfig(trailing_stop_pct=0.02))
        assert len(market_exit_warnings(caplog)) == 1


def market_exit_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "no stop order rests on the exchange" in r.getMessage()]


def broker_cancel(desk: Desk, client_order_id: str) -> bool:
    broker = desk.execution.live_broker
    assert broker is not None
    return broker.cancel(client_order_id, 0)
