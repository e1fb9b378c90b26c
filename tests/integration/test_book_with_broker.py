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
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest
from test_ccxt_broker import FAST_RETRY, KEY, SECRET, FakeBinanceTrading, FakeOrder, fixture  # the fake exchange

from smartmarket.bus.inprocess import InProcessBus
from smartmarket.cli.pipeline import deployment_broker
from smartmarket.core.events import (
    CancelOrder,
    Message,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    RunStarted,
    SubmitOrder,
    TradingHalted,
)
from smartmarket.core.timeutil import now_ms
from smartmarket.core.types import Timeframe
from smartmarket.engine.strategy import BarContext, Strategy
from smartmarket.execution.ccxt_broker import API_KEY_ENV, API_SECRET_ENV, CcxtBroker
from smartmarket.execution.fees import FeeModel
from smartmarket.execution.orders import Decision
from smartmarket.execution.risk import RiskConfig
from smartmarket.pipeline.live import LivePipeline, RunOptions
from smartmarket.pipeline.sources import FileSource
from smartmarket.pipeline.stages.base import EventLog, append_new
from smartmarket.pipeline.stages.candles import candle_closed
from smartmarket.pipeline.stages.execution import ExecutionStage
from smartmarket.pipeline.stages.risk import RiskStage
from smartmarket.pipeline.stages.spec import PipelineSpec, StrategyChoice, TradingConfig
from smartmarket.store.base import EventStore
from smartmarket.store.url import open_store
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
    """The fake exchange, with account balances that follow its trades (starting from ``start_btc``). As on Binance
    spot, an open sell order locks the coins it may sell: a sell for more than the free balance is refused."""

    start_btc = 0.0

    def held(self) -> float:
        held = self.start_btc
        for order in self.orders.values():
            if order.symbol == SYMBOL:
                sign = 1.0 if order.side == "BUY" else -1.0
                held += sign * sum(float(t["qty"]) for t in order.trades)
        return held

    def locked(self) -> float:
        return sum(float(o.quantity) - o.executed for o in self.orders.values()
                   if o.side == "SELL" and o.status in ("NEW", "PARTIALLY_FILLED"))  # fmt: skip

    clock: int | None = None  # when set, the exchange's time (orders placed, trades) instead of the fixtures'

    def add_trades(self, order: FakeOrder, trades: list[dict[str, Any]], status: str) -> None:
        stamped = [t if self.clock is None else {**t, "time": self.clock} for t in trades]
        super().add_trades(order, stamped, status)

    def answer(self, method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if (method, path) == ("POST", "/api/v3/order") and self.clock is not None:
            status, body = self._answer(method, path, params)
            if isinstance(body, dict) and "transactTime" in body:
                body["transactTime"] = body["workingTime"] = self.clock
            return status, body
        return self._answer(method, path, params)

    def _answer(self, method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        selling = (method, path) == ("POST", "/api/v3/order") and params.get("side") == "SELL"
        if selling and float(params["quantity"]) > self.held() - self.locked() + 1e-12:
            return 400, fixture("error-insufficient-balance.json")
        if (method, path) != ("GET", "/api/v3/account"):
            return super().answer(method, path, params)
        body = copy.deepcopy(fixture("account.json"))
        held, locked = self.held(), self.locked()
        for balance in body["balances"]:
            if balance["asset"] == "BTC":
                balance["free"], balance["locked"] = f"{held - locked:.8f}", f"{locked:.8f}"
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


def broker_on(fake: FakeBinanceTrading, *, stop_orders: bool = True) -> CcxtBroker:
    from smartmarket.data.exchange import make_exchange

    ex = make_exchange("binance")
    if not stop_orders:  # an exchange whose ccxt class takes no stop-loss orders
        ex.has = {**ex.has, "createStopLossOrder": False}
    ex.set_sandbox_mode(True)
    ex.urls["api"] = {name: re.sub(r"^https?://[^/]+", fake.base_url, url) for name, url in ex.urls["api"].items()}
    ex.session.trust_env = False
    ex.timeout = 3_000
    return CcxtBroker("binance", exchange=ex, retry=FAST_RETRY, sleep=lambda _s: None, symbols=[SYMBOL])


class Desk:
    """The risk and execution stages of one process, wired by hand (no bus): answers go back to the risk stage."""

    def __init__(
        self, plan: str, broker: CcxtBroker, reconcile: str = "check", risk: RiskConfig | None = None,
        *, t0: int = T0, store: EventStore | None = None,
    ) -> None:  # fmt: skip
        trading = TradingConfig(
            initial_cash=10_000.0, fees=FeeModel(maker=0.001, taker=0.001), limits=None, risk=risk or RiskConfig()
        )
        self.spec = PipelineSpec.build(
            [SYMBOL], TF, None, trading, strategy=StrategyChoice(Scripted.name, {"plan": plan})
        )  # fmt: skip
        self.risk = RiskStage(self.spec, None, live_broker=True, answer_timeout_s=0.05)
        self.execution = ExecutionStage(self.spec, None, broker=broker, reconcile=reconcile)  # type: ignore[arg-type]
        self.bar = 0
        self.t0 = t0
        self.store = store  # every event is recorded here, as the recorder stage would
        self.events: list[Message] = []

    def record(self, messages: list[Message]) -> None:
        self.events.extend(messages)
        if self.store is not None:
            append_new(self.store, messages)

    def restart_risk(self) -> None:
        """A new risk worker in place of the old one: it knows only the event log."""
        assert self.store is not None
        self.risk = RiskStage(self.spec, EventLog(self.store), live_broker=True, answer_timeout_s=0.05)

    def _to_risk(self, messages: list[Message]) -> list[Any]:
        """Answers to the risk stage's handler, as on the bus; orders it sends on an answer (a resting stop once an
        entry filled) go to execution at once. Returns those orders."""
        self.record(messages)
        sent: list[Any] = []
        for m in messages:
            decided = asyncio.run(self.risk.handle(m))
            self.record(decided)
            sent.extend(self._to_execution(decided))
        return sent

    def _to_execution(self, decided: list[Message]) -> list[Any]:
        sent: list[Any] = []
        for order in [m for m in decided if isinstance(m, SubmitOrder | CancelOrder)]:
            sent.append(order)
            sent.extend(self._to_risk(asyncio.run(self.execution.handle(order))))
        return sent

    def candle(self, low: float = PRICE, high: float = PRICE, between: Callable[[], None] | None = None) -> list[Any]:
        """One candle through execution (poll, reconcile) then risk (decide); orders (``SubmitOrder``,
        ``CancelOrder``) go to execution in the order decided. ``between`` runs after the poll, before the decision.
        Returns every order sent during the candle, those the risk stage sent on an answer included."""
        event = candle_closed(SYMBOL, TF, self.t0 + self.bar * TF.ms, PRICE, high, low, PRICE, 1.0)
        self.bar += 1
        self.record([event])
        sent = self._to_risk(asyncio.run(self.execution.handle(event)))
        if between is not None:
            between()
        decided = asyncio.run(self.risk.handle(event))
        self.record(decided)
        return [*sent, *self._to_execution(decided)]

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


def test_a_live_stop_rests_on_the_exchange_for_what_was_filled_and_its_fill_ends_the_position(
    exchange: BalancedFake,
) -> None:
    broker = broker_on(exchange)
    desk = Desk("L", broker, risk=RiskConfig(stop_loss_pct=0.01))
    [buy] = desk.candle()
    asked = next(m for m in desk.events if isinstance(m, OrderSubmitted)).quantity
    part = round(asked * 0.6, 5)  # the exchange fills 60 %, then the rest is cancelled
    exchange.fill(buy.client_order_id, part, "PARTIALLY_FILLED")
    assert desk.candle() == []  # the remainder is still working: the position is not known yet
    assert broker_cancel(desk, buy.client_order_id)
    [stop] = desk.candle()  # the cancellation is learnt: the stop rests for what was really bought
    assert (stop.order_type, stop.side, stop.reduce_only) == ("stop", "sell", True)
    assert stop.quantity == pytest.approx(part) and stop.stop_price == pytest.approx(PRICE * 0.99)
    placed = exchange.calls("POST", "/api/v3/order")[-1].params
    assert placed["type"] == "STOP_LOSS" and placed["newClientOrderId"] == stop.client_order_id
    assert float(placed["stopPrice"]) == pytest.approx(PRICE * 0.99, abs=0.01)
    assert float(placed["quantity"]) == pytest.approx(part)
    assert desk.candle() == [] and desk.candle() == []  # nothing changed: nothing is re-sent
    assert desk.book.projected(SYMBOL) == pytest.approx(part)  # the resting stop is not a working order

    exchange.fill(stop.client_order_id, part, "FILLED")  # the level traded (the pipeline may have been down)
    assert desk.candle(low=PRICE * 0.98) == []  # the exchange's fill closed it: no second sell
    assert desk.book.position(SYMBOL) == 0.0 and broker.positions().get(SYMBOL, 0.0) == 0.0
    assert len(exchange.calls("POST", "/api/v3/order")) == 2 and not any(_is(m, OrderRejected) for m in desk.events)


def test_an_exit_taken_at_market_cancels_the_resting_stop_first(
    exchange: BalancedFake, caplog: pytest.LogCaptureFixture
) -> None:
    exchange.fill_market_at = PRICE
    with caplog.at_level("WARNING", logger="smartmarket.pipeline.stages.risk"):
        desk = Desk("L", broker_on(exchange), risk=RiskConfig(stop_loss_pct=0.01, take_profit_pct=0.01))
        said_at_start = take_profit_warnings(caplog)
        buy, stop = desk.candle()  # the buy fills at once: its stop rests on the exchange at once, not a candle later
        assert desk.candle() == []  # the decision model's level at the open is the same: nothing is replaced
        cancel, sell = desk.candle(high=PRICE * 1.02)  # the take-profit's level: a market order after the candle
    assert (buy.order_type, stop.order_type, stop.stop_price) == ("market", "stop", pytest.approx(PRICE * 0.99))
    assert isinstance(cancel, CancelOrder) and cancel.client_order_id == stop.client_order_id
    assert isinstance(sell, SubmitOrder) and sell.order_type == "market"
    assert sell.quantity == pytest.approx(stop.quantity)
    requests = [(r.method, r.params.get("newClientOrderId") or r.params.get("orderId"))
                for r in exchange.requests if r.path == "/api/v3/order" and r.method != "GET"]  # fmt: skip
    # the stop holds the coins on a spot account: it is cancelled before the sell is placed (which then fills)
    stop_id = str(exchange.order_by_client_id(stop.client_order_id).order_id)
    assert requests[-2:] == [("DELETE", stop_id), ("POST", sell.client_order_id)]
    assert any(isinstance(m, OrderCancelled) and m.client_order_id == stop.client_order_id for m in desk.events)
    assert not any(_is(m, OrderRejected) for m in desk.events)
    assert desk.candle() == [] and desk.book.position(SYMBOL) == 0.0 and desk.book.resting(SYMBOL) == []
    assert len(said_at_start) == 1 and take_profit_warnings(caplog) == said_at_start  # said once, before any order


def test_a_stop_filled_on_the_exchange_just_before_the_decision_model_exits_sells_nothing_twice(
    exchange: BalancedFake,
) -> None:
    exchange.fill_market_at = PRICE
    broker = broker_on(exchange)
    desk = Desk("L", broker, risk=RiskConfig(stop_loss_pct=0.01))
    _buy, stop = desk.candle()
    assert desk.candle() == []
    # the stop fills after the execution stage polled and before the risk stage decides on the same candle
    cancel, sell = desk.candle(low=PRICE * 0.98, between=lambda: exchange.fill(stop.client_order_id, stop.quantity,
                                                                               "FILLED"))  # fmt: skip
    assert isinstance(cancel, CancelOrder) and isinstance(sell, SubmitOrder)
    [refused] = [m for m in desk.events if isinstance(m, OrderRejected)]  # nothing left to sell
    assert refused.client_order_id == sell.client_order_id and "insufficient balance" in refused.reason
    assert any(isinstance(m, OrderFilled) and m.client_order_id == stop.client_order_id for m in desk.events)
    assert desk.candle() == []
    assert desk.book.position(SYMBOL) == 0.0 and desk.book.projected(SYMBOL) == 0.0
    assert exchange.held() == pytest.approx(0.0)  # sold once


def test_a_trailing_stop_on_the_exchange_is_replaced_when_its_level_moves(exchange: BalancedFake) -> None:
    exchange.fill_market_at = PRICE
    desk = Desk("L", broker_on(exchange), risk=RiskConfig(trailing_stop_pct=0.01))
    _buy, first = desk.candle()
    assert desk.candle() == []
    assert first.stop_price == pytest.approx(PRICE * 0.99)
    cancel, moved = desk.candle(high=PRICE * 1.01)  # a new best price: the trail follows after the candle
    assert isinstance(cancel, CancelOrder) and cancel.client_order_id == first.client_order_id
    assert isinstance(moved, SubmitOrder) and moved.stop_price == pytest.approx(PRICE * 1.01 * 0.99)
    assert exchange.order_by_client_id(first.client_order_id).status == "CANCELED"
    assert float(exchange.order_by_client_id(moved.client_order_id).stop_price) == pytest.approx(
        PRICE * 1.01 * 0.99, abs=0.01
    )
    assert desk.candle() == []  # no new best: the stop stays
    assert [o.client_order_id for o in desk.book.resting(SYMBOL)] == [moved.client_order_id]


def test_an_exchange_that_takes_no_stop_orders_falls_back_to_market_exits_and_says_so(
    exchange: BalancedFake, caplog: pytest.LogCaptureFixture
) -> None:
    exchange.fill_market_at = PRICE
    with caplog.at_level("WARNING", logger="smartmarket.pipeline.stages.risk"):
        desk = Desk("L", broker_on(exchange, stop_orders=False), risk=RiskConfig(stop_loss_pct=0.01))
        buy, stop = desk.candle()
        assert desk.candle() == [] and desk.candle() == []  # the refusal is learnt: no stop is tried again
        [exit_order] = desk.candle(low=PRICE * 0.98)
    [refused] = [m for m in desk.events if isinstance(m, OrderRejected)]
    assert refused.client_order_id == stop.client_order_id and "takes no stop-loss orders" in refused.reason
    assert [r.getMessage() for r in caplog.records if "refused BTCUSDT's resting stop" in r.getMessage()]
    fills = [m for m in desk.events if isinstance(m, OrderFilled)]
    bought = sum(m.quantity for m in fills if m.client_order_id == buy.client_order_id)
    assert exit_order.order_type == "market" and exit_order.quantity == pytest.approx(bought)
    assert [r.params["type"] for r in exchange.calls("POST", "/api/v3/order")] == ["MARKET", "MARKET"]


def test_the_take_profit_warning_is_only_for_a_live_broker_with_take_profits(caplog: pytest.LogCaptureFixture) -> None:
    def stage(live: bool, risk: RiskConfig) -> None:
        trading = TradingConfig(limits=None, risk=risk)
        spec = PipelineSpec.build([SYMBOL], TF, None, trading, strategy=StrategyChoice("sma_cross", {}))
        RiskStage(spec, None, live_broker=live)

    with caplog.at_level("WARNING", logger="smartmarket.pipeline.stages.risk"):
        stage(live=True, risk=RiskConfig())  # no exits configured: nothing to say
        stage(live=True, risk=RiskConfig(stop_loss_pct=0.02, trailing_stop_pct=0.02))  # they rest on the exchange
        stage(live=False, risk=RiskConfig(take_profit_pct=0.02))  # paper: exits fill at their level
        assert take_profit_warnings(caplog) == []
        stage(live=True, risk=RiskConfig(take_profit_pct=0.02))
        assert len(take_profit_warnings(caplog)) == 1


def take_profit_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "no take-profit order rests on the exchange" in r.getMessage()]


def broker_cancel(desk: Desk, client_order_id: str) -> bool:
    broker = desk.execution.live_broker
    assert broker is not None
    return broker.cancel(client_order_id, 0)


def test_the_live_pipeline_places_and_moves_the_resting_stop_over_the_bus_and_records_it(
    exchange: BalancedFake, tmp_path: Path
) -> None:
    """``run --broker ccxt`` end to end (in-process bus, event store): the trailing stop rests on the exchange, and
    its move goes over the ``orders`` stream as ``CancelOrder`` then the new stop, all recorded."""
    exchange.fill_market_at = PRICE
    trading = TradingConfig(initial_cash=10_000.0, fees=FeeModel(maker=0.001, taker=0.001), limits=None,
                            risk=RiskConfig(trailing_stop_pct=0.01))  # fmt: skip
    spec = PipelineSpec.build([SYMBOL], TF, None, trading, strategy=StrategyChoice(Scripted.name, {"plan": "L"}))
    highs = [PRICE, PRICE, PRICE * 1.01, PRICE * 1.01, PRICE * 1.01]  # a new best price in the third candle
    frame = pd.DataFrame({"ts": [T0 + i * TF.ms for i in range(len(highs))], "open": PRICE, "high": highs,
                          "low": PRICE, "close": PRICE, "volume": 1.0})  # fmt: skip
    store = open_store(f"duckdb:///{tmp_path / 'events.duckdb'}")

    async def go() -> None:
        pipeline = LivePipeline(spec, store, InProcessBus(), options=RunOptions(drain_timeout_s=30),
                                broker=broker_on(exchange))  # fmt: skip
        summary = await pipeline.run(FileSource({SYMBOL: frame}))
        assert summary.drained, summary.not_idle

    try:
        asyncio.run(go())
        recorded = [e.message for e in store.read_events(types=["SubmitOrder", "CancelOrder", "OrderCancelled"])]
    finally:
        store.close()
    stops = [m for m in recorded if isinstance(m, SubmitOrder) and m.order_type == "stop"]
    cancels = [m for m in recorded if isinstance(m, CancelOrder)]
    assert [s.stop_price for s in stops] == [pytest.approx(PRICE * 0.99), pytest.approx(PRICE * 1.01 * 0.99)]
    assert [c.client_order_id for c in cancels] == [stops[0].client_order_id]
    assert any(isinstance(m, OrderCancelled) and m.client_order_id == stops[0].client_order_id for m in recorded)
    assert exchange.order_by_client_id(stops[0].client_order_id).status == "CANCELED"
    assert exchange.order_by_client_id(stops[1].client_order_id).status == "NEW"  # resting when the run ended


def test_the_stop_placed_at_the_fill_follows_the_decision_models_level_at_the_next_close(
    exchange: BalancedFake,
) -> None:
    """Placed at once from the exchange's fill price; the decision model books the entry at the next open, and
    where its level differs the resting stop is replaced once at that close (docs/pipeline.md)."""
    exchange.fill_market_at = PRICE * 1.005  # the market order fills above the next candle's open
    desk = Desk("L", broker_on(exchange), risk=RiskConfig(stop_loss_pct=0.01))
    _buy, at_fill = desk.candle()
    assert at_fill.stop_price == pytest.approx(PRICE * 1.005 * 0.99)
    cancel, followed = desk.candle()  # the model's entry is the open: its stop is 1 % below that
    assert isinstance(cancel, CancelOrder) and cancel.client_order_id == at_fill.client_order_id
    assert followed.stop_price == pytest.approx(PRICE * 0.99) and followed.quantity == pytest.approx(at_fill.quantity)
    assert desk.candle() == []


def test_a_restarted_risk_worker_rebuilds_the_resting_stop_from_the_log_and_sends_the_exchange_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill the risk worker mid-run (a new one knows only the event log): every request the exchange gets — orders,
    stops, their moves and cancels — equals an uninterrupted run's, though the new worker re-sends what it rebuilt."""
    monkeypatch.setenv(API_KEY_ENV, KEY)
    monkeypatch.setenv(API_SECRET_ENV, SECRET)
    monkeypatch.setitem(STRATEGIES, Scripted.name, Scripted)
    t0 = (now_ms() // TF.ms - 30) * TF.ms  # recent candles: the exchange's clock follows them, the wall clock after
    highs = [1.0, 1.0, 1.01, 1.01, 1.02, 1.02, 1.02]  # the trailing stop moves twice
    plan = "L.....F"

    def run(restart_at: int | None) -> list[tuple[str, str, str, str]]:
        fake = BalancedFake()
        fake.fill_market_at = PRICE
        fake.start()
        store = open_store(f"duckdb:///{tmp_path / f'events-{restart_at}.duckdb'}")
        try:
            desk = Desk(plan, broker_on(fake), risk=RiskConfig(trailing_stop_pct=0.01), t0=t0, store=store)
            for bar, high in enumerate(highs):
                if bar == restart_at:
                    desk.restart_risk()
                fake.clock = t0 + (bar + 1) * TF.ms + 500  # just after this candle closes
                desk.candle(high=PRICE * high)
            assert desk.book.position(SYMBOL) == pytest.approx(0.0) and fake.held() == pytest.approx(0.0)
            return [(r.method, r.params.get("type", ""), r.params.get("quantity", ""), r.params.get("stopPrice", ""))
                    for r in fake.requests if r.path == "/api/v3/order" and r.method != "GET"]  # fmt: skip
        finally:
            store.close()
            fake.stop()

    reference = run(None)
    kinds = [(method, kind) for method, kind, _q, _s in reference]
    # buy, its stop, two moves (cancel + place), then the exit: cancel the stop, sell
    assert kinds == [("POST", "MARKET"), ("POST", "STOP_LOSS"), ("DELETE", ""), ("POST", "STOP_LOSS"),
                     ("DELETE", ""), ("POST", "STOP_LOSS"), ("DELETE", ""), ("POST", "MARKET")]  # fmt: skip
    for restart_at in (1, 3, 5):
        assert run(restart_at) == reference, f"restarted before candle {restart_at}"


def test_every_worker_of_a_live_broker_deployment_knows_its_broker(tmp_path: Path) -> None:
    """``worker --stage risk --broker ccxt`` holds no broker (only the execution worker opens it), yet its risk stage
    must run the live-broker rules (resting stops, answer timeouts), and the candles worker's ``RunStarted`` must
    record the exchange, or ``replay`` would compare an exchange's fills as paper fills."""
    spec = PipelineSpec.build([SYMBOL], TF, None, TradingConfig(limits=None), strategy=StrategyChoice("sma_cross", {}))
    live = deployment_broker("ccxt", "binance")

    def risk_worker(broker: str) -> Any:
        [stage] = LivePipeline(spec, None, InProcessBus(), options=RunOptions(stages=("risk",), broker=broker)).stages
        return stage

    assert risk_worker(live).live_broker and not risk_worker(deployment_broker("paper", "binance")).live_broker
    frame = pd.DataFrame({"ts": [T0 + i * TF.ms for i in range(3)], "open": PRICE, "high": PRICE, "low": PRICE,
                          "close": PRICE, "volume": 1.0})  # fmt: skip
    store = open_store(f"duckdb:///{tmp_path / 'events.duckdb'}")
    try:
        front = RunOptions(stages=("candles", "recorder"), pipeline=("candles", "recorder"), broker=live,
                           drain_timeout_s=30)  # fmt: skip
        assert asyncio.run(LivePipeline(spec, store, InProcessBus(), options=front).run(FileSource({SYMBOL: frame})))
        [run] = [e.message for e in store.read_events(types=["RunStarted"])]
    finally:
        store.close()
    assert isinstance(run, RunStarted) and run.broker == "ccxt:binance"
