"""The execution stage: ``SubmitOrder`` → ``OrderSubmitted`` + ``OrderFilled`` (or ``OrderRejected``).

Paper trading (the default) fills an order decided at a candle's close at the **next candle's open**, through
the broker port's paper adapter with the backtester's fee model and slippage model (the slippage tracker sees
candles up to the decision, as in the kernel). Both answers are stamped with the fill candle's open time.
With an exchange broker (``--broker ccxt``) orders are sent on arrival and fills are polled at every candle.

With an exchange broker the stage also **reconciles** (``execution.reconcile``): before the first order and every
``reconcile_every_ms`` it compares a book of its own answers (position and working orders per symbol, learnt from
the same ``OrderFilled``/``OrderRejected``/``OrderCancelled`` every other stage sees) with the broker's positions
and open orders. A difference beyond the tolerance publishes ``TradingHalted``, logs one ERROR line and refuses
every later order (``OrderRejected`` "trading halted: …") — or, with ``reconcile="adopt"``, books the difference
as an adoption ``OrderFilled`` so every book takes the broker's positions as truth.

The stage reads ``orders`` and ``candles``. An order waits (in memory) until its fill candle is known; a worker
that starts, or restarts after a crash or a graceful stop, first rebuilds the slippage state, the candles' opens
and the orders still waiting from the event log. So that the log holds all of that for whoever restarts, the
stage acknowledges a batch of candles or orders only once the log holds them (``settle``): the recorder writes
behind the bus, and an input acknowledged before it is durable would be lost with the worker (its orders and
candles come on two streams, so no single input proves the other stream recorded). A successor meets inputs
again (redelivered, or read by its recovery); every input, a repeated one too, ends with the orders whose fill
candle is known filled. Scale this stage out by symbol (one worker per set of symbols).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from smartmarket.bus.topics import CANDLES, ORDERS
from smartmarket.core.events import (
    CancelOrder,
    CandleClosed,
    Message,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    SubmitOrder,
    deterministic_event_id,
)
from smartmarket.core.timeutil import now_ms
from smartmarket.execution.book import Book
from smartmarket.execution.broker import Broker, PaperBrokerAdapter, rejected_event
from smartmarket.execution.paper_broker import PaperBroker
from smartmarket.execution.portfolio import Portfolio
from smartmarket.execution.reconcile import ReconcileMode, Tolerance, adoption_fills, halted_event, reconcile
from smartmarket.execution.risk import exit_fill_price
from smartmarket.execution.slippage import SlippageTracker
from smartmarket.pipeline.stages.base import EventLog, Stage, by_symbol
from smartmarket.pipeline.stages.spec import PipelineSpec

log = logging.getLogger(__name__)

ANSWERS = ("OrderSubmitted", "OrderRejected")


class _Bar(NamedTuple):
    """What fills need of a candle: its open, range and close time, and the slippage known before it."""

    open: float
    high: float
    low: float
    close_ts: int  # the candle's ts_event
    slippage: float


@dataclass
class _Symbol:
    broker: Broker
    slippage: SlippageTracker
    opens: OrderedDict[int, _Bar] = field(default_factory=OrderedDict)  # by open time
    last_candle_ts: int | None = None
    waiting: list[SubmitOrder] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)  # client order ids


class ExecutionStage(Stage):
    name = "execution"
    inputs = (ORDERS, CANDLES)

    def __init__(
        self, spec: PipelineSpec, log: EventLog | None, *, broker: Broker | None = None, remembered: int = 10_000,
        reconcile: ReconcileMode | None = None, reconcile_every_ms: int = 300_000, tolerance: Tolerance | None = None,
    ) -> None:  # fmt: skip
        self.spec = spec
        self.log = log
        self.live_broker = broker  # None: paper trading, one paper account per symbol
        self.remembered = remembered
        self.reconcile_mode: ReconcileMode = reconcile if reconcile is not None else spec.trading.reconcile
        self.reconcile_every_ms = reconcile_every_ms
        self.tolerance = tolerance or Tolerance()
        self.book = Book(spec.trading.initial_cash * max(1, len(spec.symbols)))  # what the broker told us
        self.halted: str | None = None  # why new orders are refused
        self._reconciled_at: int | None = None
        self._symbols: dict[str, _Symbol] = {}
        self._recovering: dict[str, asyncio.Future[None]] = {}

    @property
    def paper(self) -> bool:
        return self.live_broker is None

    def waiting(self) -> int:
        """Orders waiting for their fill candle."""
        return sum(len(s.waiting) for s in self._symbols.values())

    def _new_symbol(self) -> _Symbol:
        trading = self.spec.trading
        broker: Broker = self.live_broker or PaperBrokerAdapter(
            PaperBroker(Portfolio(trading.initial_cash), trading.fees)
        )
        return _Symbol(broker, trading.slippage.tracker())

    async def _state(self, symbol: str, trigger: Message) -> _Symbol:
        """The symbol's state; a fresh one is first recovered from the log. Orders and candles are consumed
        concurrently, so whoever comes second waits for that one recovery (it would otherwise overwrite the
        orders the other had queued); a failed recovery is retried by the next message."""
        recovering = self._recovering.get(symbol)
        if recovering is None:
            state = self._symbols.get(symbol)
            if state is not None:
                return state
            state = self._symbols[symbol] = self._new_symbol()
            if self.log is None:
                return state
            recovering = self._recovering[symbol] = asyncio.ensure_future(self._recover(symbol, state, trigger))
        try:
            await asyncio.shield(recovering)
        except Exception:
            if self._recovering.get(symbol) is recovering:
                del self._recovering[symbol]
                self._symbols.pop(symbol, None)
            raise
        if self._recovering.get(symbol) is recovering:
            del self._recovering[symbol]
        return self._symbols[symbol]

    async def handle(self, message: Message) -> list[Message]:
        symbol = getattr(message, "symbol", None)
        if isinstance(message, CandleClosed | SubmitOrder | CancelOrder) and symbol in self.spec.symbols:
            await self._state(message.symbol, message)  # a fresh worker recovers from the log first
        return self.step(message)

    async def settle(self, handled: Sequence[Message]) -> None:
        """Until the log holds the last candle and the last order of each symbol among ``handled`` (the recorder
        appends a stream in order, so every earlier one too). Every order, not only those still waiting: one
        filled by a candle whose handler has not published the fill yet would otherwise be acknowledged first."""
        if self.log is None:
            return
        last: dict[tuple[str, str], Message] = {}
        kinds = CandleClosed | SubmitOrder | CancelOrder
        inputs = [m for m in handled if isinstance(m, kinds) and m.symbol in self.spec.symbols]
        for m in inputs:
            if not isinstance(m, CandleClosed) or m.timeframe == self.spec.timeframe:
                last[(m.type_name, m.symbol)] = m
        for message in last.values():
            await self.log.wait_recorded(message)

    def step(self, message: Message) -> list[Message]:
        """One candle or order, with the state in memory: what ``handle`` runs after recovery, and what a replay
        calls directly (paper trading without an event log)."""
        if isinstance(message, CandleClosed):
            if message.symbol not in self.spec.symbols or message.timeframe != self.spec.timeframe:
                return []
            state = self._symbols.get(message.symbol) or self._symbols.setdefault(message.symbol, self._new_symbol())
            return self._on_candle(state, message)
        if isinstance(message, SubmitOrder) and message.symbol in self.spec.symbols:
            state = self._symbols.get(message.symbol) or self._symbols.setdefault(message.symbol, self._new_symbol())
            if message.client_order_id in state.answered or any(
                o.client_order_id == message.client_order_id for o in state.waiting
            ):
                return self._fill_due(state) if self.paper else []  # a recovered order may be due already
            if not self.paper:
                now = now_ms()
                checked = self._reconcile_if_due(now, force=self._reconciled_at is None)
                if self.halted is not None:
                    refused = rejected_event(message, f"trading halted: {self.halted}", now)
                    state.answered.add(message.client_order_id)
                    return self._learnt([*checked, refused])
                return [*checked, *self._send(state, message, now)]
            state.waiting.append(message)
            return self._fill_due(state)
        if isinstance(message, CancelOrder) and message.symbol in self.spec.symbols:
            state = self._symbols.get(message.symbol) or self._symbols.setdefault(message.symbol, self._new_symbol())
            return self._cancel(state, message)
        return []

    def _cancel(self, state: _Symbol, command: CancelOrder) -> list[Message]:
        """Cancel an order's remainder: a paper order still waiting for its candle is dropped; a live broker is
        asked, and its answer (``OrderCancelled``, or the fill that came first) is polled at once."""
        cid = command.client_order_id
        waiting = next((o for o in state.waiting if o.client_order_id == cid), None)
        if waiting is not None:
            state.waiting.remove(waiting)
            state.answered.add(cid)
            cancelled = OrderCancelled(
                event_id=deterministic_event_id("OrderCancelled", cid), ts_event=command.ts_event,
                correlation_id=command.correlation_id, causation_id=command.event_id, symbol=command.symbol,
                client_order_id=cid, reason=command.reason or "cancelled",
            )  # fmt: skip
            return self._learnt([cancelled])
        if self.paper:
            return []  # filled (or never sent): nothing to cancel
        now = now_ms()
        state.broker.cancel(cid, now)
        return self._learnt(list(state.broker.poll_fills(now)))

    def _learnt(self, messages: list[Message]) -> list[Message]:
        for m in messages:
            self.book.apply(m)
        return messages

    def _reconcile_if_due(self, now: int, *, force: bool = False) -> list[Message]:
        """Compare the book with the broker (live brokers only); see the module docstring."""
        if self.paper or self.reconcile_mode == "off" or self.halted is not None:
            return []
        if not force and self._reconciled_at is not None and now - self._reconciled_at < self.reconcile_every_ms:
            return []
        assert self.live_broker is not None
        self._reconciled_at = now
        mismatches = reconcile(self.book, self.live_broker, self.spec.symbols, self.tolerance)
        if not mismatches:
            return []
        if self.reconcile_mode == "adopt":
            fills = adoption_fills(mismatches, self.book, now)
            log.warning("reconciliation: adopting the broker's positions (%s)",
                        "; ".join(m.describe() for m in mismatches))  # fmt: skip
            return self._learnt(list(fills))
        alarm = halted_event(mismatches, now)
        self.halted = alarm.reason
        log.error("trading halted: %s — check the account, then restart (or run with --reconcile adopt)",
                  alarm.reason)  # fmt: skip
        return [alarm]

    def _on_candle(self, state: _Symbol, candle: CandleClosed) -> list[Message]:
        if state.last_candle_ts is not None and candle.ts <= state.last_candle_ts:
            # a candle met again (a recovering worker read it from the log): orders recovered with it may be due
            return self._fill_due(state) if self.paper else []
        self._take_candle(state, candle)
        self.book.mark(candle.symbol, candle.close, candle.ts_event)
        if not self.paper:
            state.broker.mark(candle.symbol, candle.close)
            now = now_ms()
            fills = self._learnt(list(state.broker.poll_fills(now)))
            return [*fills, *self._reconcile_if_due(now)]
        return self._fill_due(state)

    def _take_candle(self, state: _Symbol, candle: CandleClosed) -> None:
        # slippage known before this candle
        state.opens[candle.ts] = _Bar(candle.open, candle.high, candle.low, candle.ts_event, state.slippage.fraction)
        if len(state.opens) > self.remembered:
            state.opens.popitem(last=False)
        if state.slippage.needs_updates:
            state.slippage.update(candle.high, candle.low, candle.close)
        state.last_candle_ts = candle.ts

    def _fill_due(self, state: _Symbol) -> list[Message]:
        """Fill every waiting order whose fill candle is known: a market order's is the first opening at or after
        its decision; a protective exit's (a stop or limit order) is the candle it was decided at, whose range
        it is checked against (``exit_fill_price``)."""
        out: list[Message] = []
        still: list[SubmitOrder] = []
        # a reversal's close leg before its new side, whichever of the two a recovering worker met first
        for order in sorted(state.waiting, key=lambda o: (o.ts_event, not o.reduce_only)):
            if order.order_type != "market":
                found = self._exit_candle(state, order)
                if found is None:
                    still.append(order)
                    continue
                fill_ts, bar = found
                level = order.stop_price if order.order_type == "stop" else order.limit_price
                side = 1 if order.side == "sell" else -1  # the side of the position it closes
                kind = "stop" if order.order_type == "stop" else "limit"
                price = exit_fill_price(side, kind, level, bar.open, bar.high, bar.low) if level is not None else None
                if price is None:
                    state.answered.add(order.client_order_id)
                    reason = f"{order.order_type} level {level!r} not reached in the candle at {fill_ts}"
                    out.extend(self._learnt([rejected_event(order, reason, fill_ts)]))
                    continue
            else:
                due = _first_open_from(state.opens, order.ts_event)
                if due is None:
                    still.append(order)
                    continue
                fill_ts, bar = due, state.opens[due]
                price = bar.open
            assert isinstance(state.broker, PaperBrokerAdapter)
            state.broker.slippage = bar.slippage
            state.broker.mark(order.symbol, price)
            out.extend(self._send(state, order, fill_ts))
        state.waiting = still
        return out

    @staticmethod
    def _exit_candle(state: _Symbol, order: SubmitOrder) -> tuple[int, _Bar] | None:
        """The known candle that closed when ``order`` was decided (a protective exit's fill candle)."""
        for ts in reversed(state.opens):
            bar = state.opens[ts]
            if bar.close_ts == order.ts_event:
                return ts, bar
            if bar.close_ts < order.ts_event:
                return None
        return None

    def _send(self, state: _Symbol, order: SubmitOrder, when: int) -> list[Message]:
        self.book.sent(order, resting=not self.paper and order.order_type == "stop")  # a live exchange's stop rests
        answer = state.broker.submit(order, when)
        state.answered.add(order.client_order_id)
        return self._learnt([answer, *state.broker.poll_fills(when)])

    async def _recover(self, symbol: str, state: _Symbol, trigger: Message) -> None:
        """A fresh worker: slippage state and orders still waiting, from the event log."""
        assert self.log is not None
        await self.log.wait_recorded(trigger)
        end = trigger.ts_event if isinstance(trigger, CandleClosed) else None
        candles = by_symbol(await self.log.read(types=["CandleClosed"], end=end), symbol, self.spec.timeframe)
        for candle in sorted({c.ts: c for c in candles if isinstance(c, CandleClosed)}.values(), key=lambda c: c.ts):
            self._take_candle(state, candle)
        history = by_symbol(await self.log.read(types=["SubmitOrder", *ANSWERS]), symbol)
        answered = {m.client_order_id for m in history if isinstance(m, OrderSubmitted | OrderRejected)}
        state.answered |= answered
        state.waiting = [
            m for m in history
            if isinstance(m, SubmitOrder) and m.client_order_id not in answered and m.event_id != trigger.event_id
        ]  # fmt: skip


def _first_open_from(opens: OrderedDict[int, _Bar], ts: int) -> int | None:
    """The earliest remembered candle opening at or after ``ts``. Candles are remembered in time order and an
    order's is almost always among the last, so the search walks back from the newest (it was a scan of up to
    ``remembered`` candles from the oldest, for every order)."""
    found: int | None = None
    for open_ts in reversed(opens):
        if open_ts < ts:
            break
        found = open_ts
    return found


def recovered_fills(messages: list[Message]) -> list[OrderFilled]:
    return [m for m in messages if isinstance(m, OrderFilled)]


BrokerFactory = Callable[[PipelineSpec], Broker]

__all__ = ["BrokerFactory", "ExecutionStage"]
