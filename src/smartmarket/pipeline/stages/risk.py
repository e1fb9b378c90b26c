"""The risk stage: decisions → ``SubmitOrder`` (or ``RiskRejected``), sized against a book that learns from fills.

Per symbol the stage holds two things:

- the **decision model**: the backtester's own ``Kernel`` running the strategy — the bus's signals traded by
  ``SignalTrader`` (exactly as the ``ensemble`` strategy trades the engine's signals), or a named strategy
  (``sma_cross``, …) on the candles themselves. It says *what position is wanted* (target fraction, protective
  stop and target, the time barrier); its own simulated account is never used for money;
- the **book** (``execution.book.Book``): position, cash and working orders learnt only from the broker's
  answers (``OrderSubmitted``, ``OrderFilled`` incl. partial fills, ``OrderRejected``, ``OrderCancelled``) on
  the ``executions`` topic. Orders are sized against it by the kernel's own rule
  (``execution.sizing.order_quantity``)::

      quantity = target_fraction x book equity / (close x (1 + taker fee)) - (filled position + working orders)

  at the decision's close (the best price known when the order leaves). A reversal is two orders, the close
  of the held side and then the new side (``order_legs``), as the backtest fills it, so ``backtest`` and
  ``run`` on the same candles fill the same (tests/integration/test_one_pipeline_fills.py). The close leg's id
  derives from the candle like the other's, with ``"close"`` added. The pre-trade ``RiskChecks``
  (position and exposure limits, daily loss, circuit breaker, price band) judge the book's state. A refused
  order becomes ``RiskRejected`` and the decision model's pending order is cancelled.

Before deciding at a candle, the stage waits until every order it sent earlier has its answer (the paper
broker fills at this candle's open, so the answers exist; the wait is short), so a decision depends only on the
events before it: the same orders in a replay and across workers. A decision held back for a protective exit
(``resume``) is released by whichever comes first, the exit's answer on the bus or in the log; the next
decision waits for it and its orders' answers (the orders leave at once through the stage's ``publisher``).
With a live broker (``live_broker``) it waits at most ``answer_timeout_s`` and then counts what is still
unfilled as working, and a position's stop-loss or trailing stop rests on the exchange as a stop order, kept in
line with the decision model (``_resting_stop``: placed when the entry's fills arrive, replaced through
``CancelOrder`` as the level moves, cancelled before any other order of the symbol; docs/pipeline.md).

Each symbol is its own sub-account (``TradingConfig.initial_cash``). State is a fold over the symbol's units in
candle order, rebuilt from the event log (candles, signals, answers) when a worker lacks it, so several workers
can share the group: every unit yields the same order whichever worker handles it. While catching up, an order
whose answer is not in the log yet counts as working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from smartmarket.bus.topics import CANDLES, EXECUTIONS, SIGNALS
from smartmarket.core.events import (
    CancelOrder,
    CandleClosed,
    Message,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Side,
    SignalGenerated,
    SubmitOrder,
)
from smartmarket.engine.kernel import Kernel
from smartmarket.engine.strategy import BarContext, Strategy
from smartmarket.execution.book import ANSWER_TYPES, Book
from smartmarket.execution.orders import Decision
from smartmarket.execution.risk import ProtectiveExit, stops_for_entry
from smartmarket.execution.risk_checks import OpenOrder, OrderIntent, Rejected, RiskChecks
from smartmarket.execution.sizing import order_quantity
from smartmarket.models.labels import LabelConfig
from smartmarket.pipeline.stages.base import EventLog, NotRecordedError, Stage, by_symbol, derived_id, read_history
from smartmarket.pipeline.stages.candles import CandleCache
from smartmarket.pipeline.stages.spec import PipelineSpec
from smartmarket.signals.pipeline import BarrierTracker
from smartmarket.strategies.ensemble import SignalTrader

DUST = 1e-9  # relative order size below which nothing is sent
Leg = tuple[str, float]  # ("close" | "target", signed quantity)
Answer = OrderSubmitted | OrderFilled | OrderRejected | OrderCancelled
Unit = tuple[CandleClosed, SignalGenerated | None]

logger = logging.getLogger(__name__)  # (``log`` names the event log in this module)


class SignalFeed(Strategy):
    """The kernel strategy of a signal-trading risk stage: this bar's signal from the bus, traded by ``SignalTrader``.

    The same decisions as ``strategies.ensemble.EnsembleStrategy``: its ATR scale comes from a
    ``BarrierTracker`` fed the same candles as the signal engine's own.
    """

    name = "live_signals"
    history_size = 1

    def __init__(self, trader: SignalTrader, labels: LabelConfig) -> None:
        self.trader = trader
        self.tracker = BarrierTracker(labels)
        self.signal: SignalGenerated | None = None
        self.decisions: list[tuple[int, Decision]] = []

    def on_bar(self, ctx: BarContext) -> Decision | None:
        b = ctx.bar
        self.tracker.update(ctx.bar, ctx.bar_index)
        s = self.signal
        if s is None:
            return None
        sign = 1 if s.direction == "long" else -1 if s.direction == "short" else 0
        decision = self.trader.decide(sign, s.strength, s.confidence, b.close, self.tracker.scale, ctx.position)
        if decision is not None:
            self.decisions.append((b.ts, decision))
        return decision

    def warmup_bars(self) -> int:
        return 1


class Decided(NamedTuple):
    """Where a decision was taken: its candle, time, causing event and the order version."""

    candle: CandleClosed
    now: int
    cause: Message
    version: str


@dataclass
class Account:
    """One symbol's sub-account in the risk stage: the decision model and the book of record."""

    kernel: Kernel
    feed: SignalFeed | None  # None: a named strategy decides on candles
    book: Book
    checks: RiskChecks | None
    last_ts: int | None = None
    outputs: OrderedDict[int, list[Message]] = field(default_factory=OrderedDict)
    answers: dict[str, Answer] = field(default_factory=dict)  # received, not yet applied to the book
    orders_seen: int = 0
    fills_seen: int = 0
    exits_seen: int = 0
    deferred: tuple[Decided, float, str] | None = None  # (decision, target fraction, exit's client id): ``resume``
    submitted: list[SubmitOrder] = field(default_factory=list)
    resting: SubmitOrder | None = None  # the protective stop resting on a live exchange (``_resting_stop``)
    decided: Decided | None = None  # the last decision (a resting stop placed when a fill arrives takes its ids)
    exchange_stops: bool = True  # False once the broker refused a resting stop: exits go as market orders


def order_legs(projected: float, wanted: float, target_sign: int) -> list[Leg]:
    """The orders that move a position of ``projected`` to ``wanted`` as the kernel's paper broker fills them.

    A reversal first closes the whole position (a ``close`` leg, sent ``reduce_only``), then the new side is a
    second order (the ``target`` leg): two orders in the same sequence as the backtest's two fills at the
    next open. Going flat, entering from flat and a same-side resize are one ``target`` leg. ``target_sign`` is
    the sign of the decision's target (a decision to go long that sizes to zero still closes a short).
    """
    legs: list[Leg] = []
    if projected != 0.0 and (target_sign == 0 or (projected > 0) != (target_sign > 0)):
        legs.append(("close", -projected))
        projected = 0.0
    quantity = wanted - projected
    if abs(quantity) > DUST * max(abs(wanted), abs(projected), 1e-300):
        legs.append(("target", quantity))
    if len(legs) == 1 and legs[0][0] == "close":
        legs = [("target", legs[0][1])]  # a flattening is one order, with the order id it always had
    return legs


CLIENT_ID_PREFIX = "sm"
"""Every client order id the risk stage makes starts with it (an adoption fill's or a foreign order's does not)."""


def client_order_id(event_id: str) -> str:
    """A broker-friendly client order id (exchanges cap their length at ~36 characters)."""
    return f"{CLIENT_ID_PREFIX}{event_id[:30]}"


class RiskStage(Stage):
    name = "risk"

    def __init__(
        self, spec: PipelineSpec, log: EventLog | None, candles: CandleCache | None = None,
        *, candle_timeout_s: float = 30.0, live_broker: bool = False, answer_timeout_s: float | None = None,
        remembered: int = 10_000,
    ) -> None:  # fmt: skip
        self.spec = spec
        self.log = log
        self.candles = candles
        self.candle_timeout_s = candle_timeout_s
        self.live_broker = live_broker
        self.answer_timeout_s = answer_timeout_s if answer_timeout_s is not None else (5.0 if live_broker else 30.0)
        self.remembered = remembered
        self.inputs = (SIGNALS, EXECUTIONS) if spec.trades_signals else (CANDLES, EXECUTIONS)
        self.accounts: dict[str, Account] = {}
        self._versions: dict[str, str] = {}  # the order version per symbol (hashing the set-up each candle cost 65 µs)
        self.caught_up = 0  # units folded from the event log
        self._arrived: asyncio.Event | None = None  # set when an answer arrives (one per event loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned: set[str] = set()  # the WARNINGs about a live broker's exits said already (once each)
        if live_broker and (spec.strategy is None or spec.trading.risk.take_profit_pct is not None):
            self._warn_once("take-profit", "this run's take-profit exits (--take-profit, the ensemble's upper "
                            "barrier) go to the exchange as market orders after the candle that reaches their "
                            "level: no take-profit order rests on the exchange (stop-losses and trailing stops "
                            "do, as stop orders)")  # fmt: skip

    def _warn_once(self, key: str, text: str) -> None:
        """One WARNING per subject and stage (``docs/pipeline.md``, "Protective exits with a live broker")."""
        if key in self._warned:
            return
        self._warned.add(key)
        logger.warning("%s (docs/pipeline.md, \"Protective exits with a live broker\")", text)

    # ------------------------------------------------------------------------------------------ state
    def account(self, symbol: str) -> Account:
        account = self.accounts.get(symbol)
        if account is None:
            trading = self.spec.trading
            feed: SignalFeed | None = None
            if self.spec.strategy is None:
                labels = self.spec.label_config(symbol)
                trader = SignalTrader(
                    horizon=labels.horizon, take_profit=labels.take_profit, stop_loss=labels.stop_loss,
                    max_size=trading.max_size,
                )  # fmt: skip
                signal_feed = feed = SignalFeed(trader, labels)
                kernel = Kernel(lambda _symbol: signal_feed, trading.kernel_config())
            else:
                kernel = Kernel(self.spec.strategy.factory(), trading.kernel_config())
            checks = RiskChecks(trading.limits) if trading.limits is not None else None
            account = self.accounts[symbol] = Account(kernel, feed, Book(trading.initial_cash), checks)
        return account

    def learn(self, answer: Message) -> bool:
        """Take one broker answer for the book (applied at the next decision); False if not ours to learn."""
        symbol = getattr(answer, "symbol", None)
        if answer.type_name not in ANSWER_TYPES or symbol not in self.spec.symbols:
            return False
        assert isinstance(answer, OrderSubmitted | OrderFilled | OrderRejected | OrderCancelled)
        self.account(symbol).answers.setdefault(answer.event_id, answer)
        if self._arrived is not None:
            self._arrived.set()
        return True

    # ------------------------------------------------------------------------------------------ bus side
    async def handle(self, message: Message) -> list[Message]:
        if self.learn(message):
            symbol = str(getattr(message, "symbol", ""))
            released = self.resume(symbol)
            if self.live_broker and not released and isinstance(message, OrderFilled | OrderCancelled):
                return self._protect_filled(symbol)
            return released
        unit = await self._unit(message)
        if unit is None:
            return []
        candle = unit[0]
        symbol = candle.symbol
        account = self.account(symbol)
        if account.last_ts is not None and candle.ts <= account.last_ts:
            return list(account.outputs.get(candle.ts, []))  # redelivered, or folded from the log already
        missed: list[Message] = []
        gap = account.last_ts is not None and candle.ts != account.last_ts + self.spec.timeframe.ms
        if self.log is not None and (account.last_ts is None or gap):
            for past in await self._history(symbol, account.last_ts, [m for m in unit if m is not None]):
                if account.deferred is not None:  # its exit's answer was not in the log yet
                    missed = await self._await_answers(account, symbol, missed)
                missed.extend(self._fold(account, past))
                self.caught_up += 1
        missed = await self._await_answers(account, symbol, missed)
        return [*missed, *self._fold(account, unit)]

    async def _unit(self, message: Message) -> Unit | None:
        """The (candle, signal) a decision needs, or None when ``message`` is not for this stage."""
        if self.spec.strategy is not None:
            if not isinstance(message, CandleClosed):
                return None
            if message.symbol not in self.spec.symbols or message.timeframe != self.spec.timeframe:
                return None
            return (message, None)
        if not isinstance(message, SignalGenerated) or message.symbol not in self.spec.symbols:
            return None
        if message.timeframe != self.spec.timeframe or not self._ours(message):
            return None
        return (await self._candle(message), message)

    def _ours(self, signal: SignalGenerated) -> bool:
        version = self.spec.signal_version(signal.symbol)
        return signal.event_id == derived_id("SignalGenerated", signal.symbol, signal.timeframe, signal.ts, version)

    async def _candle(self, signal: SignalGenerated) -> CandleClosed:
        """The candle the signal was made at: from this process's cache, else from the event log."""
        if self.candles is not None:
            cached = self.candles.get(signal.symbol, signal.ts)
            if cached is not None:
                return cached
        if self.log is None:
            raise NotRecordedError(f"no candle {signal.symbol} {signal.ts} for signal {signal.event_id}")
        deadline = time.monotonic() + self.candle_timeout_s
        while True:
            found = by_symbol(
                await self.log.read(types=["CandleClosed"], start=signal.ts_event, end=signal.ts_event + 1),
                signal.symbol, signal.timeframe,
            )  # fmt: skip
            if found and isinstance(found[0], CandleClosed):
                return found[0]
            if time.monotonic() > deadline:
                raise NotRecordedError(f"no candle {signal.symbol} {signal.ts} in the event log")
            await asyncio.sleep(0.01)

    def _unsettled(self, account: Account) -> list[str]:
        """Client ids of orders sent earlier whose final answer has not arrived."""
        filled: dict[str, float] = {}
        asked: dict[str, float] = {}
        ended: set[str] = set()
        for answer in account.answers.values():
            cid = answer.client_order_id
            if isinstance(answer, OrderFilled):
                filled[cid] = filled.get(cid, 0.0) + answer.quantity
            elif isinstance(answer, OrderSubmitted):
                asked[cid] = answer.quantity
            else:
                ended.add(cid)
        out = []
        for order in account.book.working.values():
            cid = order.client_order_id
            if cid in ended or order.resting:  # a resting stop is answered only if its level trades
                continue
            wanted = asked.get(cid, order.quantity) - order.filled
            if filled.get(cid, 0.0) < wanted * (1 - 1e-9):
                out.append(cid)
        return out

    async def _await_answers(self, account: Account, symbol: str, unsent: list[Message]) -> list[Message]:
        """Until every order sent earlier is answered (filled, rejected or cancelled) and a decision held back for a
        protective exit is released, its orders answered too; see the module docstring.

        ``unsent`` are outputs not published yet (orders of units caught up from the log). With a publisher (the
        live pipeline) they leave now, as do the orders of a decision released here, and their answers are
        awaited; without one they are returned to go out with the handler's outputs, and not awaited."""
        if unsent and self.publisher is not None:
            await self.publisher(unsent)
            unsent = []
        deadline = time.monotonic() + self.answer_timeout_s
        delay = 0.005
        while True:
            released = self.resume(symbol)  # its exit's answer may have come from the log, not the bus
            if released and self.publisher is not None:
                await self.publisher(released)
            elif released:
                unsent = [*unsent, *released]
            waiting_for = {getattr(m, "client_order_id", None) for m in unsent}
            unsettled = [cid for cid in self._unsettled(account) if cid not in waiting_for]
            if not unsettled and account.deferred is None:
                return unsent
            if time.monotonic() > deadline:
                if self.live_broker:
                    return unsent  # the broker is slow: what is unfilled stays working
                what = unsettled[0] if unsettled else "a protective exit"
                raise NotRecordedError(f"no answer from the broker to {max(1, len(unsettled))} {symbol} order(s) "
                                       f"({what}) after {self.answer_timeout_s:g}s")  # fmt: skip
            if self.log is not None:
                await self._read_answers(account, symbol)
                if not self._unsettled(account):
                    continue
            arrived = self._arrival_event()
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), timeout=delay)
            delay = min(delay * 2, 0.1)

    def _arrival_event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._arrived is None or self._loop is not loop:
            self._arrived, self._loop = asyncio.Event(), loop
        return self._arrived

    async def _read_answers(self, account: Account, symbol: str) -> None:
        assert self.log is not None
        sent = min((o.ts_sent for o in account.book.working.values()), default=None)
        # a protective exit's answers are stamped with the open of the candle it was sent at the close of
        since = None if sent is None else sent - self.spec.timeframe.ms
        for m in by_symbol(await self.log.read(types=list(ANSWER_TYPES), start=since), symbol):
            self.learn(m)

    # ------------------------------------------------------------------------------------------ the fold
    def _fold(self, account: Account, unit: Unit) -> list[Message]:
        candle = unit[0]
        outputs = self.step(candle.symbol, unit)
        account.last_ts = candle.ts
        account.outputs[candle.ts] = outputs
        if len(account.outputs) > self.remembered:
            account.outputs.popitem(last=False)
        return outputs

    def step(self, symbol: str, unit: Unit) -> list[Message]:
        """One decision: apply the answers received, run the decision model on the candle, size and check."""
        candle, signal = unit
        account = self.account(symbol)
        book = account.book
        now = candle.ts_event if signal is None else signal.ts_event
        self._apply_answers(account, now)
        # an entry's fills learnt from the log, not on the bus (catching up): its stop, with the ids it had live
        protected = self._protect_filled(symbol) if self.live_broker else []
        book.mark(symbol, candle.close, now)

        kernel = account.kernel
        if account.feed is not None:
            account.feed.signal = signal
        kernel.on_candle(symbol, candle.candle)
        if account.feed is not None:
            account.feed.signal = None
        new_orders = kernel.orders[account.orders_seen :]
        new_fills = kernel.broker.fills[account.fills_seen :]
        new_exits = kernel.protective_exits[account.exits_seen :]
        account.orders_seen, account.fills_seen = len(kernel.orders), len(kernel.broker.fills)
        account.exits_seen = len(kernel.protective_exits)
        cause = signal if signal is not None else candle
        version = self._versions.get(symbol) or self._versions.setdefault(symbol, self.spec.order_version(symbol))
        decision = account.decided = Decided(candle, now, cause, version)
        if new_exits and not self.live_broker:  # the paper broker fills it at its level inside this candle
            exits = self._protective_exit(account, candle, new_exits[-1], now, cause, version)
            if new_orders and exits:  # sized once the book holds the exit, as the kernel did: see ``resume``
                account.deferred = (decision, new_orders[-1].target_fraction, exits[0].client_order_id)
                return [*exits, *self.resume(symbol)]
            if new_orders:
                return [*exits, *self._orders(account, decision, new_orders[-1].target_fraction, sized=True)]
            return [*exits]
        orders: list[Message] = []
        if new_orders:
            orders = self._orders(account, decision, new_orders[-1].target_fraction, sized=True)
        elif any(f.order_id == -1 for f in new_fills):  # a live broker: the exit is a market order at the next open
            if new_exits and new_exits[-1].reason == "take_profit":
                self._warn_once("take-profit", f"{symbol}'s take-profit exits go to the exchange as market orders "
                                "after the candle that reaches their level: no take-profit order rests on the "
                                "exchange")  # fmt: skip
            orders = self._orders(account, decision, kernel.portfolio.quantity(symbol), sized=False)
        return [*protected, *self._resting_stop(account, decision, orders)] if self.live_broker else orders

    def resume(self, symbol: str) -> list[Message]:
        """The orders of a decision taken in the candle a protective exit filled in, once the exit is answered.

        The kernel books the exit before the strategy decides at that close, so the decision is sized against
        the book holding the exit's fill (applied here, ahead of the usual next-decision rule). Called when an
        answer arrives (and at once while catching up from the log, where the answer is already known)."""
        account = self.accounts.get(symbol)
        if account is None or account.deferred is None:
            return []
        decision, target, exit_id = account.deferred
        if exit_id in self._unsettled(account):
            return []
        account.deferred = None
        answers = [a for a in account.answers.values() if a.client_order_id == exit_id]
        for answer in sorted(answers, key=account.book.answer_order):
            account.book.apply(answer)
            del account.answers[answer.event_id]
        outputs = self._orders(account, decision, target, sized=True)
        account.outputs.setdefault(decision.candle.ts, []).extend(outputs)
        return outputs

    def _orders(self, account: Account, decision: Decided, target: float, *, sized: bool) -> list[Message]:
        """The orders that move the book to ``target``: a fraction of equity (``sized``), else a quantity; each
        judged by the pre-trade checks (a refusal cancels the decision model's pending order)."""
        candle, now, cause, version = decision
        symbol = candle.symbol
        book = account.book
        wanted = self._target_quantity(book, symbol, target, candle.close) if sized else target
        legs = order_legs(book.projected(symbol), wanted, (target > 0) - (target < 0))
        if not legs:
            return []
        intents = [OrderIntent(symbol, "buy" if q > 0 else "sell", abs(q), candle.close) for _, q in legs]
        if account.checks is not None:
            ahead: list[OpenOrder] = []  # a reversal's open leg is judged with its close leg working
            for intent in intents:
                verdict = account.checks.check(intent, book.account_state(ahead), now)
                if isinstance(verdict, Rejected):
                    if sized:
                        account.kernel.cancel_pending(symbol)
                    return [
                        verdict.to_event(intent, now, correlation_id=cause.correlation_id, causation_id=cause.event_id)
                    ]
                ahead.append(OpenOrder(symbol, intent.side, intent.quantity))
        orders: list[Message] = []
        for (leg, _), intent in zip(legs, intents, strict=True):
            extra = () if leg == "target" else (leg,)
            event_id = derived_id("SubmitOrder", symbol, self.spec.timeframe, candle.ts, version, *extra)
            order = SubmitOrder(
                event_id=event_id, ts_event=now, correlation_id=cause.correlation_id, causation_id=cause.event_id,
                symbol=symbol, side=intent.side, quantity=intent.quantity, client_order_id=client_order_id(event_id),
                reduce_only=leg == "close",
            )  # fmt: skip
            book.sent(order)
            account.submitted.append(order)
            orders.append(order)
        return orders

    def _protective_exit(
        self, account: Account, candle: CandleClosed, hit: ProtectiveExit, now: int, cause: Message, version: str
    ) -> list[SubmitOrder]:
        """The resting exit the decision model's stop or target took inside ``candle``, as the order the paper
        broker fills at that level inside the same candle (a stop order, or a limit order for a take-profit):
        what the backtest fills. Reduce-only, so no pre-trade check can leave the position open."""
        held = account.book.projected(candle.symbol)
        if held == 0.0:
            return []
        kind: Literal["limit", "stop"] = "limit" if hit.liquidity == "maker" else "stop"
        event_id = derived_id("SubmitOrder", candle.symbol, self.spec.timeframe, candle.ts, version, "exit")
        order = SubmitOrder(
            event_id=event_id, ts_event=now, correlation_id=cause.correlation_id, causation_id=cause.event_id,
            symbol=candle.symbol, side="sell" if held > 0 else "buy", quantity=abs(held), order_type=kind,
            stop_price=hit.level if kind == "stop" else None, limit_price=hit.level if kind == "limit" else None,
            client_order_id=client_order_id(event_id), reduce_only=True,
        )  # fmt: skip
        account.book.sent(order)
        account.submitted.append(order)
        return [order]

    def _resting_stop(self, account: Account, decision: Decided, orders: list[Message]) -> list[Message]:
        """``orders`` with the live exchange's resting protective stop kept in line with the decision model.

        The stop rests as a reduce-only stop order for the whole filled position at the decision model's binding
        level (the tighter of its stop-loss and trailing stop), so the position stays protected while the
        pipeline is down. It is placed as soon as the entry's fills arrive (``_protect_filled``; else at the next
        close), replaced (cancel, then place) when the level or the position changes, and cancelled before any
        other order of the symbol leaves (on a spot account a resting sell holds the coins a market sell needs).
        An exit the decision model takes at a level the exchange's stop also reached is sent as a market order
        after that cancel: when the stop filled first, the cancel finds nothing and the exchange refuses the market
        order (nothing left to sell)."""
        symbol = decision.candle.symbol
        book = account.book
        resting = _still_resting(account)
        if orders:
            if resting is None:
                return orders
            account.resting = None
            return [self._cancel(resting, decision, "the position changes"), *orders]
        if book.working_quantity(symbol) != 0.0:
            return []  # an order is still working: the position is not known yet
        wanted = self._wanted_stop(account, symbol)
        if resting is not None and wanted is not None and _same_stop(resting, *wanted):
            return []
        out: list[Message] = []
        if resting is not None:
            account.resting = None
            out.append(self._cancel(resting, decision, "the stop level or the position changed"))
        if wanted is not None:
            out.append(self._place_stop(account, decision, wanted))
        return out

    def _protect_filled(self, symbol: str) -> list[Message]:
        """The resting stop of a position whose entry just filled (a live broker's answer on the bus), placed at
        once rather than at the next close: its level comes from the fill price and the decision's levels, as the
        decision model will set them at the next open (see ``_resting_stop``, which then follows the model)."""
        account = self.accounts.get(symbol)
        if account is None or account.decided is None or not account.exchange_stops:
            return []
        self._apply_answers(account, account.decided.now)  # a live broker's answers count once received
        if _still_resting(account) is not None or account.book.working_quantity(symbol) != 0.0:
            return []  # a stop rests already (the next close follows the position), or the order may fill more
        wanted = self._wanted_stop(account, symbol)
        return [self._place_stop(account, account.decided, wanted)] if wanted is not None else []

    def _place_stop(self, account: Account, decision: Decided, wanted: tuple[Side, float, float]) -> SubmitOrder:
        candle, now, cause, version = decision
        side, quantity, level = wanted
        event_id = derived_id("SubmitOrder", candle.symbol, self.spec.timeframe, candle.ts, version, "stop",
                              f"{quantity:.12g}", f"{level:.12g}")  # fmt: skip
        stop = SubmitOrder(
            event_id=event_id, ts_event=now, correlation_id=cause.correlation_id, causation_id=cause.event_id,
            symbol=candle.symbol, side=side, quantity=quantity, order_type="stop", stop_price=level,
            client_order_id=client_order_id(event_id), reduce_only=True,
        )  # fmt: skip
        account.book.sent(stop, resting=True)
        account.resting = stop
        return stop

    def _wanted_stop(self, account: Account, symbol: str) -> tuple[Side, float, float] | None:
        """(side, quantity, level) of the stop that should rest now, or None (flat, no stop level, or the exchange
        refused stop orders). The level is the decision model's; for an entry it has not booked yet (its order
        pending for the next open), the decision's levels from the book's real entry price (``stops_for_entry``)."""
        book = account.book
        held = book.position(symbol)
        if not account.exchange_stops or held == 0.0:
            return None
        side = 1 if held > 0 else -1
        stops = account.kernel.stops(symbol)
        pending = account.kernel.pending_order(symbol)
        if (stops is None or stops.side != side) and pending is not None and pending.target_sign == side:
            entry = book.portfolio.positions[symbol].avg_price
            risk = self.spec.trading.risk
            stops = stops_for_entry(risk, side, entry, pending.stop_loss, pending.take_profit, pending.trailing_stop)
        if stops is None or stops.side != side:
            return None
        level, _reason = stops.effective_stop()
        if level is None or not level > 0:
            return None
        return ("sell" if held > 0 else "buy"), abs(held), level

    def _cancel(self, order: SubmitOrder, decision: Decided, why: str) -> CancelOrder:
        candle, now, cause, version = decision
        return CancelOrder(
            event_id=derived_id("CancelOrder", candle.symbol, self.spec.timeframe, candle.ts, version,
                                order.client_order_id),
            ts_event=now, correlation_id=cause.correlation_id, causation_id=cause.event_id, symbol=candle.symbol,
            client_order_id=order.client_order_id, reason=why,
        )  # fmt: skip

    def _apply_answers(self, account: Account, now: int) -> None:
        """Book the answers that came before this decision, in time order.

        Paper answers are stamped with the fill candle's open, which is the close of the candle whose order they
        answer: an answer counts from the next decision on (``ts_event < now``), so catching up from the log
        applies each answer exactly where the uninterrupted run did. A live broker's answers carry the wall
        clock: every answer received counts, once its order has left (catching up from the log, the answers are
        known before the fold reaches their orders; a reconciliation's adoption has no order of ours). A protective
        exit fills inside the candle it was decided at, so its answers are stamped before that decision: a paper
        answer counts only once its order has left."""
        book = account.book

        def counts(a: Answer) -> bool:
            cid = a.client_order_id
            if self.live_broker:
                return book.knows(cid) or not cid.startswith(CLIENT_ID_PREFIX)
            return a.ts_event < now and book.knows(cid)

        due = [a for a in account.answers.values() if counts(a)]
        for answer in sorted(due, key=book.answer_order):
            account.book.apply(answer)
            del account.answers[answer.event_id]
            resting = account.resting
            if isinstance(answer, OrderRejected) and resting is not None and answer.client_order_id == \
                    resting.client_order_id:  # fmt: skip
                account.exchange_stops = False
                self._warn_once(f"stop:{answer.symbol}", f"the exchange refused {answer.symbol}'s resting stop "
                                f"order ({answer.reason}): its stop-loss and trailing stop go as market orders "
                                "after the candle that reaches their level, so the position is unprotected while "
                                "this pipeline is down")  # fmt: skip

    def _target_quantity(self, book: Book, symbol: str, fraction: float, close: float) -> float:
        """``fraction`` of the book's equity at the decision ``close``: the kernel's rule (``order_quantity``)."""
        trading = self.spec.trading
        equity = book.equity
        room = trading.risk.max_gross_exposure * equity - book.portfolio.gross_exposure_excluding(symbol)
        return order_quantity(fraction, equity, close, trading.fees.taker, room=room)

    async def _history(self, symbol: str, after: int | None, inputs: Sequence[Message]) -> list[Unit]:
        """Units after ``after`` and before the current one, with the broker answers up to the current one."""
        assert self.log is not None
        wanted = ["CandleClosed"] if self.spec.strategy is not None else ["CandleClosed", "SignalGenerated"]
        found = await read_history(self.log, wanted, symbol, self.spec.timeframe, after, inputs)
        end = min(m.ts_event for m in inputs)
        for answer in by_symbol(await self.log.read(types=list(ANSWER_TYPES), end=end + 1), symbol):
            self.learn(answer)
        candles = {m.ts: m for m in found if isinstance(m, CandleClosed)}
        if self.spec.strategy is not None:
            return [(candles[ts], None) for ts in sorted(candles)]
        signals = {m.ts: m for m in found if isinstance(m, SignalGenerated) and self._ours(m)}
        return [(candles[ts], signals[ts]) for ts in sorted(signals) if ts in candles]

    def idle(self) -> bool:
        return True


def _still_resting(account: Account) -> SubmitOrder | None:
    """The account's resting stop, forgotten once filled, cancelled or refused (learnt from the broker)."""
    resting = account.resting
    if resting is not None and resting.client_order_id not in account.book.working:
        resting = account.resting = None
    return resting


def _same_stop(order: SubmitOrder, side: str, quantity: float, level: float) -> bool:
    """Whether the resting ``order`` is already the stop (side, quantity, level) wanted."""
    return (
        order.side == side
        and abs(order.quantity - quantity) <= 1e-9 * quantity
        and order.stop_price is not None
        and abs(order.stop_price - level) <= 1e-12 * level
    )


__all__ = ["CLIENT_ID_PREFIX", "DUST", "Account", "RiskStage", "SignalFeed", "client_order_id", "order_legs"]
