"""An exchange broker through ccxt: market, limit and stop-loss orders with client order ids, fills with fees.

Keys come **only** from the environment (``SMARTMARKET_EXCHANGE_API_KEY``, ``SMARTMARKET_EXCHANGE_API_SECRET``
and, for exchanges that need one, ``SMARTMARKET_EXCHANGE_API_PASSWORD``), never from arguments, and never
appear in this module's repr, log lines or error messages: a logging filter masks them in ccxt's own debug
log too (which prints request headers, API key included). Sandbox (testnet) mode is the default.

Submitting (:meth:`CcxtBroker.submit`):

* the quantity is rounded down to the market's step (``amount_to_precision``) and checked against the
  market's minimum amount and minimum notional; a failure is an ``OrderRejected`` with the reason;
* the order carries the caller's ``client_order_id`` and, for a close leg (``SubmitOrder.reduce_only``) on a
  market with positions (swap, future), ccxt's unified ``reduceOnly`` (:func:`order_params`). A spot market has
  no position to reduce — a sell can only sell what the account holds — and Binance spot refuses the parameter
  (``-1104`` "Not all sent parameters were read", which ccxt passes through for spot), so there a close leg is a
  plain order. After a transient failure (timeout, connection
  reset, rate limit) the exchange is asked for that client id before anything is re-sent, so a retry
  never places the order twice; a second ``submit`` of the same client id answers like the first;
* a ``stop`` order (``SubmitOrder.stop_price``: a protective stop left resting on the exchange) goes through
  ccxt's unified ``create_stop_loss_order`` as a market order triggered at that level (Binance spot:
  ``STOP_LOSS``); an exchange whose ccxt class has no ``createStopLossOrder`` answers ``OrderRejected`` saying so.
  ``open_orders`` leaves resting stops out, as a ``Book`` does;
* the exchange's refusals (insufficient balance, invalid order) become ``OrderRejected``; transient
  failures are retried with bounded exponential backoff, then raise ``RetryableError`` (the order's
  state is then unknown: submitting the same client id again is safe).

Fills (:meth:`CcxtBroker.poll_fills`) come from ``fetch_order`` (status, filled amount) and
``fetch_my_trades`` (one ``OrderFilled`` per exchange trade, reported once, fee in the quote currency when it
was charged in the base or quote asset; its event id derives from the exchange's trade id — or, where the
exchange gives none, the order id and the trade's place among the order's trades — so a restarted broker
reports a trade with the id it had before); an order that ends (cancelled, expired, rejected) with a remainder
unfilled is reported once as ``OrderCancelled``, so a book stops counting the remainder as working.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import ccxt

from smartmarket.core.errors import ConfigError, FatalError, RetryableError
from smartmarket.core.events import (
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    SubmitOrder,
    deterministic_event_id,
)
from smartmarket.core.redaction import install_log_redaction, redact_text, register_secret
from smartmarket.core.types import normalize_symbol
from smartmarket.data.exchange import RETRYABLE_EXCHANGE_ERRORS, RetryPolicy, make_exchange
from smartmarket.execution.broker import rejected_event, submitted_event
from smartmarket.execution.risk_checks import OpenOrder

log = logging.getLogger(__name__)

T = TypeVar("T")

API_KEY_ENV = "SMARTMARKET_EXCHANGE_API_KEY"
API_SECRET_ENV = "SMARTMARKET_EXCHANGE_API_SECRET"
API_PASSWORD_ENV = "SMARTMARKET_EXCHANGE_API_PASSWORD"

DEFAULT_RETRY = RetryPolicy(attempts=4, base_delay_s=0.5, max_delay_s=8.0)
_TERMINAL = frozenset({"closed", "canceled", "expired", "rejected"})
_MAX_REASON = 240  # characters of an exchange message kept in a reason


@dataclass(slots=True)
class _Tracked:
    """One order this broker placed, and what it has reported of it."""

    order: SubmitOrder
    market: str  # ccxt's symbol, e.g. BTC/USDT
    amount: float
    exchange_order_id: str
    submitted: OrderSubmitted
    filled: float = 0.0  # sum of the trades reported so far
    status: str = "open"
    done: bool = False
    trade_ids: set[str] = field(default_factory=set)


def trade_key(exchange_order_id: str, trade: dict[str, Any], sequence: int) -> str:
    """What identifies one exchange trade: its id, or (an exchange that gives none) its order's id and its
    ``sequence`` (1, 2, …) among the order's trades in time order. Never a process-local counter."""
    trade_id = trade.get("id")
    if trade_id is None or str(trade_id) == "":
        return f"{exchange_order_id}#{sequence}"
    return str(trade_id)


def exchange_fill_id(exchange_id: str, market: str, trade_key: str) -> str:
    """The ``OrderFilled`` event id of one exchange trade: the same whichever process (or restart) reports it."""
    return deterministic_event_id("OrderFilled", exchange_id, market, trade_key)


def order_params(order: SubmitOrder, market: dict[str, Any]) -> dict[str, Any]:
    """The ``params`` of ``create_order`` for ``order`` on ccxt's ``market`` structure: its client order id, and
    ``reduceOnly`` when the order is a close leg and the market is a contract (it holds positions); never on spot,
    where the account's balance bounds a sell and Binance refuses the unknown parameter."""
    params: dict[str, Any] = {"clientOrderId": order.client_order_id}
    if order.reduce_only and market.get("contract") is True:
        params["reduceOnly"] = True
    return params


def _credentials(exchange_id: str) -> tuple[str, str, str | None]:
    key = os.environ.get(API_KEY_ENV, "")
    secret = os.environ.get(API_SECRET_ENV, "")
    if not key or not secret:
        raise ConfigError(
            f"no API keys for {exchange_id} in the environment",
            hint=f"set {API_KEY_ENV} and {API_SECRET_ENV} (environment only, never on the command line)",
        )
    return key, secret, os.environ.get(API_PASSWORD_ENV) or None


class CcxtBroker:
    """The :class:`~smartmarket.execution.broker.Broker` port on a ccxt exchange (spot).

    ``exchange`` lets a caller supply the ccxt object (tests point one at a local server); it must already
    be in the requested sandbox mode. ``symbols`` are the markets whose base-asset holdings ``positions``
    reports (besides those traded through this broker).
    """

    __slots__ = ("_markets", "_prices", "_rejected", "_retry", "_sleep", "_symbols", "_tracked", "_uncertain",
                 "exchange", "sandbox")  # fmt: skip

    def __init__(
        self,
        exchange_id: str,
        *,
        sandbox: bool = True,
        exchange: ccxt.Exchange | None = None,
        symbols: Iterable[str] = (),
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        key, secret, password = _credentials(exchange_id)
        if exchange is None:
            exchange = make_exchange(exchange_id)
            if sandbox:
                try:
                    exchange.set_sandbox_mode(True)
                except ccxt.NotSupported:
                    raise ConfigError(
                        f"{exchange_id} has no sandbox (testnet) in ccxt",
                        hint="sandbox=False trades real money: only do that on purpose",
                    ) from None
        elif exchange.id != exchange_id:
            raise ConfigError(f"the exchange given is {exchange.id}, not {exchange_id}")
        elif bool(getattr(exchange, "isSandboxModeEnabled", False)) != sandbox:
            wanted = "on" if sandbox else "off"
            raise ConfigError(f"the {exchange_id} exchange given must have sandbox mode {wanted}")
        exchange.apiKey, exchange.secret = key, secret
        if password is not None:
            exchange.password = password
        exchange.verbose = False  # verbose mode prints raw requests (API key header included) to stdout
        for value in (key, secret, password):  # the one redaction rule masks them in every log record
            register_secret(value)
        install_log_redaction()

        self.exchange = exchange
        self.sandbox = sandbox
        self._retry = retry
        self._sleep = sleep
        self._symbols = {normalize_symbol(s) for s in symbols}
        self._markets: dict[str, str] | None = None  # SmartMarket symbol -> ccxt symbol
        self._prices: dict[str, float] = {}
        self._tracked: dict[str, _Tracked] = {}
        self._rejected: dict[str, OrderRejected] = {}
        self._uncertain: set[str] = set()  # client ids whose placement is not confirmed either way

    def __repr__(self) -> str:
        return f"CcxtBroker(exchange={self.exchange.id!r}, sandbox={self.sandbox}, orders={len(self._tracked)})"

    __str__ = __repr__

    # ------------------------------------------------------------------------------ the port
    def mark(self, symbol: str, price: float) -> None:
        self._prices[symbol] = price

    def submit(self, order: SubmitOrder, now_ms: int) -> OrderSubmitted | OrderRejected:
        cid = order.client_order_id
        if cid in self._tracked:
            return self._tracked[cid].submitted
        if cid in self._rejected:
            return self._rejected[cid]
        answer = self._submit(order, now_ms)
        if isinstance(answer, OrderRejected):
            self._rejected[cid] = answer
            log.info("order %s %s %s rejected: %s", cid, order.side, order.symbol, answer.reason)
        return answer

    def poll_fills(self, now_ms: int) -> list[OrderFilled | OrderCancelled]:
        fills: list[OrderFilled | OrderCancelled] = []
        for tracked in self._tracked.values():
            if not tracked.done:
                fills.extend(self._poll(tracked, now_ms))
        fills.sort(key=lambda f: (f.ts_event, f.client_order_id))
        return fills

    def cancel(self, client_order_id: str, now_ms: int) -> bool:
        tracked = self._tracked.get(client_order_id)
        if tracked is None or tracked.done or tracked.status in _TERMINAL:
            return False
        try:
            self._call(
                lambda: self.exchange.cancel_order(tracked.exchange_order_id, tracked.market),
                f"cancel order {client_order_id}",
            )
        except ccxt.OrderNotFound:
            return False  # filled or cancelled already; the next poll tells which
        tracked.status = "canceled"
        log.info("cancelled order %s (%s)", client_order_id, tracked.order.symbol)
        return True

    def open_orders(self) -> list[OpenOrder]:
        """Open orders that will fill (market and limit); resting stop orders are not counted (as in a book)."""
        return [
            OpenOrder(t.order.symbol, t.order.side, max(0.0, t.amount - t.filled))
            for t in self._tracked.values()
            if not t.done and t.status not in _TERMINAL and t.order.order_type != "stop"
        ]

    def positions(self) -> dict[str, float]:
        totals = self.balances()
        self._load_markets()
        held: dict[str, float] = {}
        for symbol in sorted(self._symbols | {t.order.symbol for t in self._tracked.values()}):
            market = self._market_symbol(symbol)
            if market is None:
                continue
            quantity = totals.get(self.exchange.market(market)["base"], 0.0)
            if quantity != 0.0:
                held[symbol] = quantity
        return held

    def balances(self) -> dict[str, float]:
        balance = self._call(self.exchange.fetch_balance, "fetch balances")
        totals = balance.get("total") or {}
        return {asset: float(v) for asset, v in sorted(totals.items()) if v is not None and float(v) != 0.0}

    def order_status(self, client_order_id: str) -> str | None:
        """The last status seen for an order this broker placed (ccxt's: open, closed, canceled, ...)."""
        tracked = self._tracked.get(client_order_id)
        return tracked.status if tracked is not None else None

    # ------------------------------------------------------------------------------ submitting
    def _submit(self, order: SubmitOrder, now_ms: int) -> OrderSubmitted | OrderRejected:
        if not (math.isfinite(order.quantity) and order.quantity > 0):
            return rejected_event(order, f"quantity must be finite and > 0, got {order.quantity!r}", now_ms)
        self._load_markets()
        market = self._market_symbol(order.symbol)
        if market is None:
            return rejected_event(order, f"{self.exchange.id} has no market {order.symbol}", now_ms)
        info = self.exchange.market(market)
        try:
            amount = float(self.exchange.amount_to_precision(market, order.quantity))
        except ccxt.InvalidOrder:
            amount = 0.0
        limits = info.get("limits") or {}
        min_amount = (limits.get("amount") or {}).get("min")
        step = (info.get("precision") or {}).get("amount")
        if amount <= 0 or (min_amount is not None and amount < min_amount):
            return rejected_event(
                order,
                f"quantity {order.quantity:g} rounds to {amount:g} {info['base']} (step {step}), "
                f"below the minimum {min_amount}",
                now_ms,
            )
        max_amount = (limits.get("amount") or {}).get("max")
        if max_amount is not None and amount > max_amount:
            return rejected_event(order, f"quantity {amount:g} is above the maximum {max_amount}", now_ms)
        price: float | None = None
        if order.order_type == "stop":
            refused = self._stop_refusal(order)
            if refused is not None:
                return rejected_event(order, refused, now_ms)
        if order.order_type == "limit":
            if order.limit_price is None or not (math.isfinite(order.limit_price) and order.limit_price > 0):
                return rejected_event(order, f"a limit order needs a price > 0, got {order.limit_price!r}", now_ms)
            price = float(self.exchange.price_to_precision(market, order.limit_price))
        min_cost = (limits.get("cost") or {}).get("min")
        if min_cost is not None:
            reference = price if price is not None else order.stop_price or self._reference_price(order.symbol, market)
            notional = amount * reference
            if notional < min_cost:
                return rejected_event(
                    order,
                    f"notional {notional:g} {info['quote']} ({amount:g} x {reference:g}) is below the exchange "
                    f"minimum {min_cost:g}",
                    now_ms,
                )
        try:
            placed = self._place(order, market, amount, price)
        except ccxt.InsufficientFunds as exc:
            return rejected_event(order, f"insufficient balance: {self._exchange_message(exc)}", now_ms)
        except (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended) as exc:
            raise FatalError(
                f"{self.exchange.id} refused the API keys: {type(exc).__name__}: {self._exchange_message(exc)}",
                hint=f"check {API_KEY_ENV} / {API_SECRET_ENV} and the key's trading permission",
            ) from None
        except ccxt.ExchangeError as exc:
            return rejected_event(order, f"{type(exc).__name__}: {self._exchange_message(exc)}", now_ms)
        self._uncertain.discard(order.client_order_id)
        exchange_order_id = str(placed["id"])
        ts_event = placed.get("timestamp")
        submitted = submitted_event(
            order, amount, exchange_order_id, int(ts_event) if ts_event is not None else now_ms, now_ms
        )
        self._tracked[order.client_order_id] = _Tracked(
            order, market, amount, exchange_order_id, submitted, status=str(placed.get("status") or "open")
        )
        log.info(
            "placed %s %s %s %s (client id %s, %s id %s)",
            order.order_type, order.side, amount, market, order.client_order_id, self.exchange.id, exchange_order_id,
        )  # fmt: skip
        return submitted

    def _place(self, order: SubmitOrder, market: str, amount: float, price: float | None) -> dict[str, Any]:
        """Create the order; after a transient failure, look the client id up before sending it again."""
        cid = order.client_order_id
        params = order_params(order, self.exchange.market(market))
        for attempt in range(1, self._retry.attempts + 1):
            if cid in self._uncertain:
                found = self._find_by_client_id(market, cid)
                if found is not None:
                    log.warning("order %s was placed despite the failed answer: not sending it again", cid)
                    return found
            try:
                placed: dict[str, Any]
                if order.order_type == "stop":  # a stop-loss that triggers a market order (Binance spot: STOP_LOSS)
                    stop = float(self.exchange.price_to_precision(market, order.stop_price))
                    placed = self.exchange.create_stop_loss_order(market, "market", order.side, amount, None, stop,
                                                                  params)  # fmt: skip
                else:
                    placed = self.exchange.create_order(market, order.order_type, order.side, amount, price, params)
                return placed
            except RETRYABLE_EXCHANGE_ERRORS as exc:
                self._uncertain.add(cid)
                if attempt == self._retry.attempts:
                    raise RetryableError(
                        f"order {cid} not confirmed after {attempt} attempts, last: {type(exc).__name__}",
                        where=f"{self.exchange.id} {market}",
                        hint="its state is unknown; submitting the same client order id again is safe",
                    ) from None
                delay = self._retry.delay(attempt)
                log.warning("placing order %s: %s; checking and retrying in %.2fs", cid, type(exc).__name__, delay)
                self._sleep(delay)
            except ccxt.InvalidOrder as exc:
                if "uplicate" not in str(exc):
                    raise
                found = self._find_by_client_id(market, cid)  # the exchange already has this client id
                if found is None:
                    raise
                return found
        raise AssertionError("unreachable: RetryPolicy.attempts must be >= 1")

    def _stop_refusal(self, order: SubmitOrder) -> str | None:
        """Why a stop order cannot be placed here (None when it can): no stop level, or an exchange whose ccxt
        class takes no stop-loss orders (``has["createStopLossOrder"]``)."""
        if order.stop_price is None or not (math.isfinite(order.stop_price) and order.stop_price > 0):
            return f"a stop order needs a stop price > 0, got {order.stop_price!r}"
        if not self.exchange.has.get("createStopLossOrder"):
            return f"{self.exchange.id} takes no stop-loss orders through ccxt (createStopLossOrder)"
        return None

    def _find_by_client_id(self, market: str, cid: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._call(
                lambda: self.exchange.fetch_order("", market, {"clientOrderId": cid}), f"look up order {cid}"
            )
            return found
        except ccxt.OrderNotFound:
            return None

    def _reference_price(self, symbol: str, market: str) -> float:
        marked = self._prices.get(symbol)
        if marked is not None and math.isfinite(marked) and marked > 0:
            return marked
        ticker = self._call(lambda: self.exchange.fetch_ticker(market), f"fetch the {market} price")
        last = ticker.get("last") or ticker.get("close")
        if last is None:
            raise RetryableError(f"{self.exchange.id} gave no last price for {market}", hint="mark() the symbol")
        return float(last)

    # ------------------------------------------------------------------------------ fills
    def _poll(self, tracked: _Tracked, now_ms: int) -> list[OrderFilled | OrderCancelled]:
        what = f"order {tracked.order.client_order_id}"
        order = self._call(lambda: self.exchange.fetch_order(tracked.exchange_order_id, tracked.market), what)
        status = str(order.get("status") or tracked.status)
        filled = float(order.get("filled") or 0.0)
        fills: list[OrderFilled | OrderCancelled] = []
        if filled > tracked.filled + 1e-12 or status in _TERMINAL:
            trades = self._call(
                lambda: self.exchange.fetch_my_trades(tracked.market, params={"orderId": tracked.exchange_order_id}),
                f"trades of {what}",
            )
            mine = [t for t in trades if str(t.get("order")) == tracked.exchange_order_id]
            mine.sort(key=lambda t: (t.get("timestamp") or 0, str(t.get("id"))))
            for sequence, trade in enumerate(mine, 1):
                fill = self._new_fill(tracked, trade, sequence, now_ms)
                if fill is not None:
                    fills.append(fill)
        tracked.status = status
        if status in _TERMINAL and tracked.filled >= filled - 1e-12:
            tracked.done = True
            if tracked.filled < tracked.amount * (1 - 1e-9):  # the rest will never fill: say so
                fills.append(self._cancelled(tracked, status, now_ms))
        return fills

    def _cancelled(self, tracked: _Tracked, status: str, now_ms: int) -> OrderCancelled:
        order = tracked.order
        unfilled = tracked.amount - tracked.filled
        return OrderCancelled(
            event_id=deterministic_event_id("OrderCancelled", self.exchange.id, tracked.exchange_order_id),
            ts_event=now_ms, ts_init=now_ms, correlation_id=order.correlation_id,
            causation_id=tracked.submitted.event_id, symbol=order.symbol, client_order_id=order.client_order_id,
            reason=f"{status} with {unfilled:g} of {tracked.amount:g} unfilled",
        )  # fmt: skip

    def _new_fill(self, tracked: _Tracked, trade: dict[str, Any], sequence: int, now_ms: int) -> OrderFilled | None:
        trade_id = trade_key(tracked.exchange_order_id, trade, sequence)
        if trade_id in tracked.trade_ids:
            return None
        tracked.trade_ids.add(trade_id)
        quantity = float(trade["amount"])
        price = float(trade["price"])
        tracked.filled += quantity
        order = tracked.order
        timestamp = trade.get("timestamp")
        return OrderFilled(
            event_id=exchange_fill_id(self.exchange.id, tracked.market, trade_id),
            ts_event=int(timestamp) if timestamp is not None else now_ms,
            ts_init=now_ms,
            correlation_id=order.correlation_id,
            causation_id=tracked.submitted.event_id,
            symbol=order.symbol,
            side=order.side,
            quantity=quantity,
            price=price,
            fee=self._fee_in_quote(tracked.market, trade.get("fee"), price),
            client_order_id=order.client_order_id,
            broker_order_id=tracked.exchange_order_id,
        )

    def _fee_in_quote(self, market: str, fee: dict[str, Any] | None, price: float) -> float:
        if not fee or fee.get("cost") is None:
            return 0.0
        cost = float(fee["cost"])
        info = self.exchange.market(market)
        currency = fee.get("currency")
        if currency == info["base"]:
            return cost * price
        if currency not in (None, info["quote"]):
            log.warning("fee of %g %s on %s is reported as is (not converted to %s)", cost, currency, market,
                        info["quote"])  # fmt: skip
        return cost

    # ------------------------------------------------------------------------------ plumbing
    def _load_markets(self) -> None:
        if self._markets is not None:
            return
        markets = self._call(self.exchange.load_markets, "load markets")
        by_symbol: dict[str, str] = {}
        for unified, info in sorted(markets.items()):
            if not info.get("spot", True) or ":" in unified:
                continue
            try:
                by_symbol.setdefault(normalize_symbol(unified), unified)
            except ConfigError:
                continue  # a symbol SmartMarket cannot spell: not tradable here
        self._markets = by_symbol

    def _market_symbol(self, symbol: str) -> str | None:
        assert self._markets is not None
        try:
            return self._markets.get(normalize_symbol(symbol))
        except ConfigError:
            return None

    def _call(self, action: Callable[[], T], what: str) -> T:
        """Run ``action`` with bounded backoff on transient errors; other ccxt errors pass through."""
        for attempt in range(1, self._retry.attempts + 1):
            try:
                return action()
            except RETRYABLE_EXCHANGE_ERRORS as exc:
                if attempt == self._retry.attempts:
                    raise RetryableError(
                        f"{what} failed {attempt} times, last with {type(exc).__name__}: {self._exchange_message(exc)}",
                        where=self.exchange.id,
                        hint="the exchange is busy or unreachable; try again later",
                    ) from None
                delay = self._retry.delay(attempt)
                log.warning("%s: %s; retry %d/%d in %.2fs", what, type(exc).__name__, attempt, self._retry.attempts - 1,
                            delay)  # fmt: skip
                self._sleep(delay)
        raise AssertionError("unreachable: RetryPolicy.attempts must be >= 1")

    def _exchange_message(self, exc: BaseException) -> str:
        """The exchange's words from a ccxt error: one line, secrets masked, JSON ``msg`` preferred, short."""
        text = redact_text(" ".join(str(exc).split()))
        text = re.sub(r"(https?://[^\s?]+)\?\S+", r"\1", text)  # signed query strings are noise
        match = re.search(r'"msg"\s*:\s*"([^"]*)"', text)
        if match:
            text = match.group(1)
        elif text.startswith(self.exchange.id + " "):
            text = text[len(self.exchange.id) + 1 :]
        return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


__all__ = [
    "API_KEY_ENV",
    "API_PASSWORD_ENV",
    "API_SECRET_ENV",
    "DEFAULT_RETRY",
    "CcxtBroker",
    "exchange_fill_id",
    "trade_key",
]
