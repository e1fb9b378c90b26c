"""The exchange broker with ccxt's real Binance class, pointed at a local server that trades like Binance spot.

``FakeBinanceTrading`` answers the public and signed private endpoints the broker uses from the
recorded-format templates in ``tests/fixtures/binance_trading`` (ignoring signatures), keeps a small order
book of what was placed, and can delay, drop or refuse requests. It listens on 127.0.0.1 only and every
ccxt API URL is rewritten to it: nothing reaches the internet. Keys are dummy values set in the environment.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt
import pytest

from smartmarket.core.errors import ConfigError, FatalError, RetryableError
from smartmarket.core.events import OrderCancelled, OrderFilled, OrderRejected, OrderSubmitted, SubmitOrder
from smartmarket.data.exchange import RetryPolicy, make_exchange
from smartmarket.execution.broker import Broker, PaperBrokerAdapter
from smartmarket.execution.ccxt_broker import API_KEY_ENV, API_SECRET_ENV, CcxtBroker, order_params
from smartmarket.execution.fees import FeeModel
from smartmarket.execution.paper_broker import PaperBroker
from smartmarket.execution.portfolio import Portfolio
from smartmarket.execution.risk_checks import OpenOrder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance_trading"
KEY = "test-key-Zq81LmT0pA"
SECRET = "test-secret-Vx93NbQ2kR7uYw"
NOW = 1_717_243_260_000
FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)
PRICE = 67250.1
# What Binance spot's POST /api/v3/order reads; any other parameter is refused with -1104 (reduceOnly, for one).
SPOT_ORDER_PARAMS = frozenset({
    "symbol", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price", "newClientOrderId", "strategyId",
    "strategyType", "stopPrice", "trailingDelta", "icebergQty", "newOrderRespType", "selfTradePreventionMode",
    "pegPriceType", "pegOffsetValue", "pegOffsetType", "recvWindow", "timestamp", "signature",
})  # fmt: skip


STOP_TYPES = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@dataclass
class Logged:
    method: str
    path: str
    params: dict[str, str]
    api_key: str | None
    status: int = 0


@dataclass
class FakeOrder:
    order_id: int
    client_id: str
    symbol: str
    side: str
    type: str
    quantity: str
    price: str
    status: str = "NEW"
    trades: list[dict[str, Any]] = field(default_factory=list)
    stop_price: str = ""  # a STOP_LOSS order's trigger level

    @property
    def executed(self) -> float:
        return sum(float(t["qty"]) for t in self.trades)


class FakeBinanceTrading:
    """A Binance spot REST server on 127.0.0.1 with an order book and injectable failures."""

    def __init__(self) -> None:
        self.orders: dict[int, FakeOrder] = {}
        self.next_order_id = 4_211_005
        self.next_trade_id = 981_001
        self.fill_market_at: float | None = None  # market orders fill at once at this price (one trade)
        self.refuse_next_order: str | None = None  # an error fixture answered to the next POST /order
        self.slow_next_order = False  # place the next order, but answer only after the client gave up
        self.lose_next_order = False  # time the next POST /order out without placing it
        self.fail_next: list[tuple[str, str, int]] = []  # (method, path, HTTP status) answered once each
        self.requests: list[Logged] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --------------------------------------------------------------------------------- test controls
    def calls(self, method: str, path: str) -> list[Logged]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def add_trades(self, order: FakeOrder, trades: list[dict[str, Any]], status: str) -> None:
        with self._lock:
            for template in trades:
                trade = {**template, "id": self.next_trade_id, "orderId": order.order_id, "symbol": order.symbol}
                self.next_trade_id += 1
                order.trades.append(trade)
            order.status = status

    def order_by_client_id(self, client_id: str) -> FakeOrder:
        return next(o for o in self.orders.values() if o.client_id == client_id)

    # --------------------------------------------------------------------------------- answers
    def answer(self, method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            for i, (m, p, status) in enumerate(self.fail_next):
                if (m, p) == (method, path):
                    del self.fail_next[i]
                    return status, {"code": -1003, "msg": "Too much request weight used."}
        if (method, path) == ("GET", "/api/v3/exchangeInfo"):
            return 200, fixture("exchangeInfo.json")
        if (method, path) == ("GET", "/api/v3/ticker/24hr"):
            return 200, fixture("ticker-24hr.json")
        if (method, path) == ("GET", "/api/v3/account"):
            return 200, fixture("account.json")
        if (method, path) == ("POST", "/api/v3/order"):
            return self._new_order(params)
        if (method, path) == ("GET", "/api/v3/order"):
            order = self._find(params)
            if order is None:
                return 400, fixture("error-order-not-found.json")
            return 200, self._order_json("order-status.json", order)
        if (method, path) == ("DELETE", "/api/v3/order"):
            return self._cancel(params)
        if (method, path) == ("GET", "/api/v3/myTrades"):
            order = self.orders.get(int(params.get("orderId", -1)))
            return 200, [] if order is None else copy.deepcopy(order.trades)
        return 404, {"code": -1, "msg": f"no fixture for {method} {path}"}

    def _new_order(self, params: dict[str, str]) -> tuple[int, Any]:
        if self.lose_next_order:
            self.lose_next_order = False
            self._release.wait(1.0)  # the client times out; nothing was placed
            return 500, {"code": -1001, "msg": "Internal error"}
        if self.refuse_next_order is not None:
            name, self.refuse_next_order = self.refuse_next_order, None
            return 400, fixture(name)
        if set(params) - SPOT_ORDER_PARAMS:
            return 400, fixture("error-unread-parameters.json")
        client_id = params["newClientOrderId"]
        if params["type"] in STOP_TYPES and "stopPrice" not in params:
            return 400, {"code": -1102, "msg": "Mandatory parameter 'stopPrice' was not sent, was empty/null, or "
                         "malformed."}  # fmt: skip
        with self._lock:
            if any(o.client_id == client_id and o.status in ("NEW", "PARTIALLY_FILLED") for o in self.orders.values()):
                return 400, fixture("error-duplicate-order.json")
            order = FakeOrder(
                self.next_order_id, client_id, params["symbol"], params["side"], params["type"],
                params["quantity"], params.get("price", "0.00000000"), stop_price=params.get("stopPrice", ""),
            )  # fmt: skip
            self.next_order_id += 1
            self.orders[order.order_id] = order
        if self.fill_market_at is not None and order.type == "MARKET":
            qty = float(order.quantity)
            fee = qty * self.fill_market_at * 0.001
            trade = {**fixture("my-trades.json")[1], "price": f"{self.fill_market_at:.8f}", "qty": order.quantity,
                     "commission": f"{fee:.8f}", "commissionAsset": "USDT", "isBuyer": order.side == "BUY"}  # fmt: skip
            self.add_trades(order, [trade], "FILLED")
        body = self._order_json("order-new.json", order)
        body["fills"] = [
            {"price": t["price"], "qty": t["qty"], "commission": t["commission"],
             "commissionAsset": t["commissionAsset"], "tradeId": t["id"]}
            for t in order.trades
        ]  # fmt: skip
        if self.slow_next_order:
            self.slow_next_order = False
            self._release.wait(1.0)  # placed, but the answer comes after the client gave up
        return 200, body

    def _find(self, params: dict[str, str]) -> FakeOrder | None:
        if "orderId" in params:
            return self.orders.get(int(params["orderId"]))
        client_id = params.get("origClientOrderId")
        return next((o for o in self.orders.values() if o.client_id == client_id), None)

    def _cancel(self, params: dict[str, str]) -> tuple[int, Any]:
        order = self._find(params)
        if order is None or order.status not in ("NEW", "PARTIALLY_FILLED"):
            return 400, fixture("error-unknown-order.json")
        order.status = "CANCELED"
        body = self._order_json("order-canceled.json", order)
        body["origClientOrderId"] = order.client_id
        return 200, body

    def _order_json(self, template: str, order: FakeOrder) -> dict[str, Any]:
        body: dict[str, Any] = fixture(template)
        executed = order.executed
        quote = sum(float(t["quoteQty"]) for t in order.trades)
        body.update(
            symbol=order.symbol, orderId=order.order_id, clientOrderId=order.client_id, side=order.side,
            type=order.type, origQty=order.quantity, price=order.price, status=order.status,
            executedQty=f"{executed:.8f}", cummulativeQuoteQty=f"{quote:.8f}",
        )  # fmt: skip
        if order.type == "MARKET":
            body.pop("timeInForce", None)
        if order.stop_price:
            body["stopPrice"] = order.stop_price
        return body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlsplit(self.path)
                params = dict(parse_qsl(url.query))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    params.update(parse_qsl(self.rfile.read(length).decode()))
                logged = Logged(self.command, url.path, params, self.headers.get("X-MBX-APIKEY"))
                fake.requests.append(logged)
                status, body = fake.answer(self.command, url.path, params)
                logged.status = status
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def fake() -> Iterator[FakeBinanceTrading]:
    server = FakeBinanceTrading()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, KEY)
    monkeypatch.setenv(API_SECRET_ENV, SECRET)


@pytest.fixture
def binance(fake: FakeBinanceTrading) -> ccxt.Exchange:
    """ccxt's real Binance class in sandbox mode, every API URL pointed at the local fake."""
    exchange = make_exchange("binance")
    exchange.set_sandbox_mode(True)
    exchange.urls["api"] = {
        name: re.sub(r"^https?://[^/]+", fake.base_url, url) for name, url in exchange.urls["api"].items()
    }
    exchange.session.trust_env = False  # no proxy from the environment, even for 127.0.0.1
    exchange.timeout = 3_000
    return exchange


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def broker(keys: None, binance: ccxt.Exchange, sleeps: list[float]) -> CcxtBroker:
    return CcxtBroker(
        "binance", exchange=binance, retry=FAST_RETRY, sleep=sleeps.append, symbols=["BTC/USDT", "ETHUSDT"]
    )


def submit_order(
    cid: str, quantity: float = 0.01, side: str = "buy", *, symbol: str = "BTCUSDT", limit: float | None = None,
    reduce_only: bool = False,
) -> SubmitOrder:  # fmt: skip
    return SubmitOrder(
        event_id=f"cmd-{cid}", ts_event=NOW, ts_init=NOW, correlation_id=f"chain-{cid}", symbol=symbol,
        side=side, quantity=quantity, client_order_id=cid,  # type: ignore[arg-type]
        order_type="limit" if limit is not None else "market", limit_price=limit, reduce_only=reduce_only,
    )  # fmt: skip


def submitted(answer: OrderSubmitted | OrderRejected) -> OrderSubmitted:
    assert isinstance(answer, OrderSubmitted), f"expected OrderSubmitted, got {answer}"
    return answer


def rejected(answer: OrderSubmitted | OrderRejected) -> OrderRejected:
    assert isinstance(answer, OrderRejected), f"expected OrderRejected, got {answer}"
    return answer


# ------------------------------------------------------------------------------------- placing and filling
def test_market_order_is_placed_signed_with_the_environment_key_and_filled_open_then_closed(
    fake: FakeBinanceTrading, broker: CcxtBroker
) -> None:
    broker.mark("BTCUSDT", PRICE)
    answer = submitted(broker.submit(submit_order("sm-1"), NOW))
    [post] = fake.calls("POST", "/api/v3/order")
    assert post.params["newClientOrderId"] == "sm-1"
    assert (post.params["symbol"], post.params["side"], post.params["type"]) == ("BTCUSDT", "BUY", "MARKET")
    assert post.params["quantity"] == "0.01" and "quoteOrderQty" not in post.params
    assert post.api_key == KEY and "signature" in post.params and SECRET not in json.dumps(post.params)
    order = fake.order_by_client_id("sm-1")
    assert (answer.broker_order_id, answer.quantity, answer.client_order_id) == (str(order.order_id), 0.01, "sm-1")
    assert (answer.correlation_id, answer.causation_id, answer.ts_init) == ("chain-sm-1", "cmd-sm-1", NOW)
    assert broker.open_orders() == [OpenOrder("BTCUSDT", "buy", 0.01)]

    assert broker.poll_fills(NOW + 1_000) == []  # still NEW: no trades asked for
    assert fake.calls("GET", "/api/v3/myTrades") == []
    assert broker.order_status("sm-1") == "open"

    trades = fixture("my-trades.json")
    fake.add_trades(order, trades[:1], "PARTIALLY_FILLED")
    [first] = broker.poll_fills(NOW + 2_000)
    assert (first.quantity, first.price, first.side) == (0.006, 67250.1, "buy")
    assert first.fee == pytest.approx(0.000006 * 67250.1)  # commission in BTC, reported in USDT
    assert first.ts_event == trades[0]["time"] and first.ts_init == NOW + 2_000
    assert broker.open_orders() == [OpenOrder("BTCUSDT", "buy", pytest.approx(0.004))]  # type: ignore[arg-type]

    fake.add_trades(order, trades[1:], "FILLED")
    [second] = broker.poll_fills(NOW + 3_000)
    assert (second.quantity, second.price, second.fee) == (0.004, 67251.0, 0.269004)
    assert second.causation_id == answer.event_id and second.correlation_id == "chain-sm-1"
    assert second.broker_order_id == str(order.order_id) and second.event_id != first.event_id
    assert broker.order_status("sm-1") == "closed" and broker.open_orders() == []
    [trade_query] = fake.calls("GET", "/api/v3/myTrades")[-1:]
    assert trade_query.params["orderId"] == str(order.order_id)

    before = len(fake.requests)
    assert broker.poll_fills(NOW + 4_000) == []  # finished orders are not polled again
    assert len(fake.requests) == before


def test_a_close_leg_goes_to_spot_without_reduce_only_which_binance_spot_refuses(
    fake: FakeBinanceTrading, broker: CcxtBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    given: list[dict[str, Any]] = []  # the params ccxt's exchange class received, before it builds the request
    create_order = broker.exchange.create_order

    def noting(symbol: str, kind: str, side: str, amount: float, price: Any = None, params: Any = None) -> Any:
        given.append(dict(params or {}))
        return create_order(symbol, kind, side, amount, price, params or {})

    monkeypatch.setattr(broker.exchange, "create_order", noting)
    fake.fill_market_at = PRICE
    broker.mark("BTCUSDT", PRICE)
    submitted(broker.submit(submit_order("sm-open"), NOW))
    submitted(broker.submit(submit_order("sm-close", side="sell", reduce_only=True), NOW))  # a reversal's 1st leg
    assert given == [{"clientOrderId": "sm-open"}, {"clientOrderId": "sm-close"}]
    assert [p.params.get("reduceOnly") for p in fake.calls("POST", "/api/v3/order")] == [None, None]
    # why: ccxt passes the unified reduceOnly through to Binance spot, which refuses it; every close leg would fail
    with pytest.raises(ccxt.BadRequest, match="-1104"):
        create_order("BTC/USDT", "market", "sell", 0.01, None, {"clientOrderId": "sm-x", "reduceOnly": True})


def test_reduce_only_goes_with_a_close_leg_on_a_contract_market_and_not_with_an_opening_one() -> None:
    exchange = make_exchange("binance", spot_only=False)
    swap = exchange.safe_market_structure(
        {"symbol": "BTC/USDT:USDT", "type": "swap", "spot": False, "swap": True, "contract": True, "linear": True}
    )
    spot = exchange.safe_market_structure({"symbol": "BTC/USDT", "type": "spot", "spot": True, "contract": False})
    close, opening = submit_order("sm-c", side="sell", reduce_only=True), submit_order("sm-o", side="sell")
    assert order_params(close, swap) == {"clientOrderId": "sm-c", "reduceOnly": True}
    assert order_params(opening, swap) == {"clientOrderId": "sm-o"}
    assert order_params(close, spot) == {"clientOrderId": "sm-c"}


def test_the_same_client_id_is_never_placed_twice(fake: FakeBinanceTrading, broker: CcxtBroker) -> None:
    broker.mark("BTCUSDT", PRICE)
    first = broker.submit(submit_order("sm-dup"), NOW)
    again = broker.submit(submit_order("sm-dup"), NOW + 5)
    assert again == first
    assert len(fake.calls("POST", "/api/v3/order")) == 1


def test_insufficient_balance_is_a_clear_rejection_and_stays_one(fake: FakeBinanceTrading, broker: CcxtBroker) -> None:
    broker.mark("BTCUSDT", PRICE)
    fake.refuse_next_order = "error-insufficient-balance.json"
    answer = rejected(broker.submit(submit_order("sm-poor", 5.0), NOW))
    assert answer.reason == "insufficient balance: Account has insufficient balance for requested action."
    assert (answer.client_order_id, answer.causation_id, answer.ts_event) == ("sm-poor", "cmd-sm-poor", NOW)
    assert rejected(broker.submit(submit_order("sm-poor", 5.0), NOW + 1)) == answer
    assert len(fake.calls("POST", "/api/v3/order")) == 1
    assert fake.orders == {}


# ------------------------------------------------------------------------------------- precision and limits
def test_quantity_is_rounded_down_to_the_lot_step(fake: FakeBinanceTrading, broker: CcxtBroker) -> None:
    broker.mark("BTCUSDT", PRICE)
    answer = submitted(broker.submit(submit_order("sm-step", 0.0123456), NOW))
    assert fake.calls("POST", "/api/v3/order")[0].params["quantity"] == "0.01234"
    assert answer.quantity == 0.01234


def test_below_minimum_amount_or_notional_is_rejected_before_sending(
    fake: FakeBinanceTrading, broker: CcxtBroker
) -> None:
    broker.mark("BTCUSDT", 40_000.0)
    tiny = rejected(broker.submit(submit_order("sm-tiny", 0.000004), NOW))
    assert "rounds to 0 BTC" in tiny.reason and "minimum" in tiny.reason
    small = rejected(broker.submit(submit_order("sm-small", 0.0001), NOW))  # 4 USDT < 5 USDT
    assert small.reason == "notional 4 USDT (0.0001 x 40000) is below the exchange minimum 5"
    unknown = rejected(broker.submit(submit_order("sm-doge", 1.0, symbol="DOGEEUR"), NOW))
    assert "no market DOGEEUR" in unknown.reason
    nan = rejected(broker.submit(submit_order("sm-nan", float("nan")), NOW))
    assert "finite" in nan.reason
    assert fake.calls("POST", "/api/v3/order") == []


def test_without_a_marked_price_the_notional_uses_the_ticker(fake: FakeBinanceTrading, broker: CcxtBroker) -> None:
    answer = rejected(broker.submit(submit_order("sm-tick", 0.00007), NOW))  # 0.00007 x 67250.1 = 4.7
    assert "67250.1" in answer.reason and "minimum 5" in answer.reason
    assert [r.params["symbol"] for r in fake.calls("GET", "/api/v3/ticker/24hr")] == ["BTCUSDT"]
    assert fake.calls("POST", "/api/v3/order") == []


def test_limit_order_price_precision_open_orders_and_cancel(fake: FakeBinanceTrading, broker: CcxtBroker) -> None:
    answer = submitted(broker.submit(submit_order("sm-limit", 0.01, limit=60_000.129), NOW))
    post = fake.calls("POST", "/api/v3/order")[0]
    # ccxt rounds a price to the nearest tick (0.01); amounts are truncated to the step
    assert (post.params["type"], post.params["price"], post.params["timeInForce"]) == ("LIMIT", "60000.13", "GTC")
    assert broker.open_orders() == [OpenOrder("BTCUSDT", "buy", 0.01)]
    assert broker.cancel("sm-limit", NOW + 10) is True
    [delete] = fake.calls("DELETE", "/api/v3/order")
    assert delete.params["orderId"] == answer.broker_order_id
    assert fake.order_by_client_id("sm-limit").status == "CANCELED"
    assert broker.open_orders() == []
    assert broker.cancel("sm-limit", NOW + 20) is False  # nothing left to cancel: no request
    assert broker.cancel("never-placed", NOW + 20) is False
    assert len(fake.calls("DELETE", "/api/v3/order")) == 1
    [cancelled] = broker.poll_fills(NOW + 30)  # the unfilled remainder ends, once
    assert isinstance(cancelled, OrderCancelled) and cancelled.client_order_id == "sm-limit"
    assert "0.01 of 0.01 unfilled" in cancelled.reason
    assert broker.poll_fills(NOW + 40) == []
    assert broker.order_status("sm-limit") == "canceled"


def test_cancel_of_an_order_the_exchange_no_longer_has_open_is_false(
    fake: FakeBinanceTrading, broker: CcxtBroker
) -> None:
    submitted(broker.submit(submit_order("sm-gone", 0.01, limit=60_000.0), NOW))
    fake.add_trades(fake.order_by_client_id("sm-gone"), fixture("my-trades.json"), "FILLED")
    assert broker.cancel("sm-gone", NOW + 1) is False  # filled meanwhile: Binance answers -2011
    fills = broker.poll_fills(NOW + 2)
    assert sum(f.quantity for f in fills) == pytest.approx(0.01)


# ------------------------------------------------------------------------------------- idempotent retries
def test_timeout_with_the_order_placed_is_not_sent_twice(
    fake: FakeBinanceTrading, broker: CcxtBroker, binance: ccxt.Exchange, sleeps: list[float]
) -> None:
    broker.mark("BTCUSDT", PRICE)
    binance.timeout = 250  # ms: the fake answers this POST only after the client gave up
    fake.slow_next_order = True
    answer = submitted(broker.submit(submit_order("sm-slow"), NOW))
    assert len(fake.calls("POST", "/api/v3/order")) == 1
    assert len(fake.orders) == 1
    order = fake.order_by_client_id("sm-slow")
    assert answer.broker_order_id == str(order.order_id)
    [lookup] = fake.calls("GET", "/api/v3/order")
    assert lookup.params["origClientOrderId"] == "sm-slow" and "orderId" not in lookup.params
    assert sleeps == [FAST_RETRY.delay(1)]
    fake.add_trades(order, fixture("my-trades.json"), "FILLED")
    assert [f.quantity for f in broker.poll_fills(NOW + 1)] == [0.006, 0.004]


def test_timeout_without_the_order_placed_sends_it_again_once(
    fake: FakeBinanceTrading, broker: CcxtBroker, binance: ccxt.Exchange
) -> None:
    broker.mark("BTCUSDT", PRICE)
    binance.timeout = 250
    fake.lose_next_order = True
    submitted(broker.submit(submit_order("sm-lost"), NOW))
    posts = fake.calls("POST", "/api/v3/order")
    assert [p.params["newClientOrderId"] for p in posts] == ["sm-lost", "sm-lost"]
    assert [r.status for r in fake.calls("GET", "/api/v3/order")] == [400]  # looked up: not there
    assert len(fake.orders) == 1


def test_rate_limited_order_is_retried_after_backoff(
    fake: FakeBinanceTrading, broker: CcxtBroker, sleeps: list[float]
) -> None:
    broker.mark("BTCUSDT", PRICE)
    fake.fail_next = [("POST", "/api/v3/order", 429)]
    submitted(broker.submit(submit_order("sm-429"), NOW))
    assert [p.status for p in fake.calls("POST", "/api/v3/order")] == [429, 200]
    assert sleeps == [FAST_RETRY.delay(1)]
    assert len(fake.orders) == 1


def test_unconfirmed_order_raises_retryable_then_a_resubmit_checks_first(
    fake: FakeBinanceTrading, broker: CcxtBroker, sleeps: list[float]
) -> None:
    broker.mark("BTCUSDT", PRICE)
    fake.fail_next = [("POST", "/api/v3/order", 503)] * 3
    with pytest.raises(RetryableError) as info:
        broker.submit(submit_order("sm-503"), NOW)
    message = str(info.value)
    assert "not confirmed after 3 attempts" in message and "\n" not in message
    assert "same client order id again is safe" in message
    assert sleeps == [FAST_RETRY.delay(1), FAST_RETRY.delay(2)]
    fake.requests.clear()
    submitted(broker.submit(submit_order("sm-503"), NOW + 60_000))  # the pipeline retries later
    assert [(r.method, r.status) for r in fake.requests if r.path == "/api/v3/order"] == [("GET", 400), ("POST", 200)]
    assert len(fake.orders) == 1


def test_duplicate_client_id_on_the_exchange_is_adopted(fake: FakeBinanceTrading, broker: CcxtBroker) -> None:
    broker.mark("BTCUSDT", PRICE)
    existing = FakeOrder(77, "sm-elsewhere", "BTCUSDT", "BUY", "MARKET", "0.01000000", "0")
    fake.orders[77] = existing  # placed by an earlier run that crashed before recording it
    answer = submitted(broker.submit(submit_order("sm-elsewhere"), NOW))
    assert answer.broker_order_id == "77"
    assert [p.status for p in fake.calls("POST", "/api/v3/order")] == [400]
    assert list(fake.orders) == [77]


# ------------------------------------------------------------------------------------- account
def test_balances_and_positions_from_the_account(fake: FakeBinanceTrading, broker: CcxtBroker) -> None:
    assert broker.balances() == {"BTC": 0.5, "USDT": 10_000.0}
    assert broker.positions() == {"BTCUSDT": 0.5}  # ETH held 0: omitted
    assert all(r.api_key == KEY for r in fake.calls("GET", "/api/v3/account"))


# ------------------------------------------------------------------------------------- keys and sandbox
def test_keys_only_from_the_environment(monkeypatch: pytest.MonkeyPatch, binance: ccxt.Exchange) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    monkeypatch.delenv(API_SECRET_ENV, raising=False)
    with pytest.raises(ConfigError) as info:
        CcxtBroker("binance", exchange=binance)
    assert API_KEY_ENV in str(info.value) and API_SECRET_ENV in str(info.value)


def test_sandbox_is_the_default_and_a_mismatched_exchange_is_refused(keys: None) -> None:
    broker = CcxtBroker("binance")  # builds its own exchange; no request is made
    assert broker.sandbox and broker.exchange.isSandboxModeEnabled
    assert broker.exchange.urls["api"]["private"].startswith("https://testnet.binance.vision/")
    assert broker.exchange.apiKey == KEY
    live = make_exchange("binance")
    with pytest.raises(ConfigError, match="sandbox mode on"):
        CcxtBroker("binance", exchange=live)
    with pytest.raises(ConfigError, match="not kraken"):
        CcxtBroker("kraken", exchange=live, sandbox=False)


def test_secrets_never_reach_repr_logs_or_errors(
    fake: FakeBinanceTrading, broker: CcxtBroker, binance: ccxt.Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker.mark("BTCUSDT", PRICE)
    texts = [repr(broker), str(broker)]
    fake.refuse_next_order = "error-bad-key.json"  # before any signed call succeeded: ccxt says auth error
    with pytest.raises(FatalError) as fatal:
        broker.submit(submit_order("sm-e"), NOW)
    texts.append(str(fatal.value))
    assert "API keys" in str(fatal.value)
    submitted(broker.submit(submit_order("sm-a"), NOW))
    fake.refuse_next_order = "error-insufficient-balance.json"
    texts.append(rejected(broker.submit(submit_order("sm-b"), NOW)).reason)
    binance.timeout = 250
    fake.slow_next_order = True
    submitted(broker.submit(submit_order("sm-c"), NOW))
    binance.timeout = 3_000
    fake.add_trades(fake.order_by_client_id("sm-a"), fixture("my-trades.json"), "FILLED")
    texts.extend(f.model_dump_json() for f in broker.poll_fills(NOW + 1))
    fake.fail_next = [("POST", "/api/v3/order", 503)] * 3
    with pytest.raises(RetryableError) as retry_error:
        broker.submit(submit_order("sm-d"), NOW)
    texts.append(str(retry_error.value))

    # ccxt's debug log did record the signed requests' headers...
    assert "X-MBX-APIKEY" in caplog.text and "***" in caplog.text
    # ...but neither the key nor the secret appears anywhere.
    for text in [*texts, caplog.text]:
        assert KEY not in text and SECRET not in text


# ------------------------------------------------------------------------------------- one port, two brokers
@pytest.fixture(params=["paper", "ccxt"])
def any_broker(request: pytest.FixtureRequest, fake: FakeBinanceTrading) -> Broker:
    if request.param == "paper":
        return PaperBrokerAdapter(PaperBroker(Portfolio(10_000.0, long_only=True), FeeModel()))
    fake.fill_market_at = PRICE
    ccxt_broker: CcxtBroker = request.getfixturevalue("broker")
    return ccxt_broker


def test_both_brokers_honour_the_port(any_broker: Broker) -> None:
    assert isinstance(any_broker, Broker)
    any_broker.mark("BTCUSDT", PRICE)
    answer = submitted(any_broker.submit(submit_order("port-1"), NOW))
    assert any_broker.submit(submit_order("port-1"), NOW + 1) == answer
    fills = any_broker.poll_fills(NOW + 2)
    assert [f.quantity for f in fills] == [0.01]
    [fill] = fills
    assert isinstance(fill, OrderFilled)
    assert (fill.client_order_id, fill.side, fill.symbol, fill.causation_id) == (
        "port-1", "buy", "BTCUSDT", answer.event_id,
    )  # fmt: skip
    assert fill.price == pytest.approx(PRICE) and fill.fee == pytest.approx(0.01 * PRICE * 0.001)
    assert any_broker.poll_fills(NOW + 3) == []
    assert any_broker.open_orders() == [] and any_broker.cancel("port-1", NOW + 4) is False
    assert "finite" in rejected(any_broker.submit(submit_order("port-0", 0.0), NOW)).reason
    assert "BTCUSDT" in any_broker.positions()


def test_paper_adapter_refuses_what_a_spot_account_cannot_do() -> None:
    paper = PaperBrokerAdapter(PaperBroker(Portfolio(1_000.0, long_only=True)))
    assert "no price" in rejected(paper.submit(submit_order("p-1"), NOW)).reason
    paper.mark("BTCUSDT", 100.0)
    assert "insufficient cash" in rejected(paper.submit(submit_order("p-2", 20.0), NOW)).reason
    assert "long-only" in rejected(paper.submit(submit_order("p-3", 1.0, "sell"), NOW)).reason
    assert "reduce-only protective exits only" in rejected(paper.submit(submit_order("p-4", limit=99.0), NOW)).reason
    submitted(paper.submit(submit_order("p-5", 5.0), NOW))
    assert paper.positions() == {"BTCUSDT": 5.0}
    assert paper.balances()["USDT"] == pytest.approx(1_000.0 - 500.0 * 1.001)
    [fill] = paper.poll_fills(NOW + 7)
    assert (fill.ts_event, fill.ts_init, fill.quantity, fill.price) == (NOW, NOW, 5.0, 100.0)


# ------------------------------------------------------------------------------------- ids from the cause
def test_a_restarted_paper_broker_answers_with_the_same_ids() -> None:
    """Ids derive from the client order id, never from a per-process counter: the second process's first order
    does not become ``paper-1`` again."""

    def session(orders: list[str]) -> list[OrderSubmitted | OrderFilled]:
        paper = PaperBrokerAdapter(PaperBroker(Portfolio(10_000.0), FeeModel()))
        paper.mark("BTCUSDT", 100.0)
        out: list[OrderSubmitted | OrderFilled] = []
        for cid in orders:
            out.append(submitted(paper.submit(submit_order(cid, 1.0), NOW)))
            out.extend(f for f in paper.poll_fills(NOW) if isinstance(f, OrderFilled))
        return out

    uninterrupted = session(["sm-a", "sm-b", "sm-c"])
    restarted = session(["sm-a"]) + session(["sm-b", "sm-c"])  # killed after sm-a, a fresh process took over
    ids = [(m.type_name, m.event_id, m.broker_order_id) for m in uninterrupted]
    assert [(m.type_name, m.event_id, m.broker_order_id) for m in restarted] == ids
    assert len({m.broker_order_id for m in uninterrupted}) == 3 and len({m.event_id for m in uninterrupted}) == 6
    assert uninterrupted[1].broker_order_id == "paper-sm-a"


def test_a_restarted_exchange_broker_reports_each_trade_with_its_first_id(
    fake: FakeBinanceTrading, keys: None, binance: ccxt.Exchange, broker: CcxtBroker
) -> None:
    broker.mark("BTCUSDT", PRICE)
    answer = submitted(broker.submit(submit_order("sm-r"), NOW))
    order = fake.order_by_client_id("sm-r")
    trades = fixture("my-trades.json")
    fake.add_trades(order, trades[:1], "PARTIALLY_FILLED")
    [first] = broker.poll_fills(NOW + 1_000)
    # the process dies; a new one re-submits the order it has no answer for, and is given the one placed
    again = CcxtBroker("binance", exchange=binance, retry=FAST_RETRY, sleep=lambda s: None)
    again.mark("BTCUSDT", PRICE)
    assert submitted(again.submit(submit_order("sm-r"), NOW + 2_000)).broker_order_id == answer.broker_order_id
    assert len(fake.orders) == 1
    fake.add_trades(order, trades[1:], "FILLED")
    replayed, second = again.poll_fills(NOW + 3_000)
    assert isinstance(replayed, OrderFilled) and isinstance(second, OrderFilled)
    assert (replayed.event_id, replayed.broker_order_id, replayed.quantity) == (
        first.event_id, first.broker_order_id, first.quantity,
    )  # fmt: skip
    assert second.event_id not in (first.event_id, answer.event_id)


def test_trades_without_an_exchange_id_are_told_apart_by_their_place_in_the_order(
    fake: FakeBinanceTrading, broker: CcxtBroker
) -> None:
    broker.mark("BTCUSDT", PRICE)
    submitted(broker.submit(submit_order("sm-n"), NOW))
    order = fake.order_by_client_id("sm-n")
    trades = fixture("my-trades.json")
    fake.add_trades(order, trades[:1], "PARTIALLY_FILLED")
    for trade in order.trades:
        del trade["id"]  # an exchange that numbers no trades
    [first] = broker.poll_fills(NOW + 1_000)
    fake.add_trades(order, trades[1:], "FILLED")
    for trade in order.trades:
        trade.pop("id", None)
    [second] = broker.poll_fills(NOW + 2_000)  # not lost as "the same trade None", not reported twice
    assert (first.quantity, second.quantity) == (0.006, 0.004)
    assert first.event_id != second.event_id
    assert broker.poll_fills(NOW + 3_000) == []
