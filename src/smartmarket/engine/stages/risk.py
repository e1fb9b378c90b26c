"""The risk stage: ``SignalGenerated`` → ``SubmitOrder`` (or ``RiskRejected``), through the backtest kernel.

Per symbol the stage runs the backtester's own ``Kernel`` as its book of record, fed one (candle, signal) at a
time: the kernel's strategy trades the bus's signal exactly as the ``ensemble`` strategy trades the engine's
(``SignalTrader``: barrier stops and targets, strength-sized targets, the time barrier), with the kernel's
sizing, exposure limits, fills at the next open and protective exits. So the live decisions *are* the
backtest's decisions. When the kernel creates an order (or a protective exit closes its position), the stage
sends the difference between the wanted position and the position already ordered:

    quantity = target_fraction x equity / (close x (1 + taker fee)) - ordered position

sized at the signal's close (the best price known when the order leaves), so ``quantity`` is never 0. Each
order passes the pre-trade ``RiskChecks`` (position and exposure limits, daily loss, circuit breaker, price
band) first; a refused order becomes ``RiskRejected`` and the kernel's pending order is cancelled.

Each symbol is its own sub-account (``TradingConfig.initial_cash``): a symbol's orders depend on its own
events only, so they are the same whatever the interleaving of streams, in a replay and across workers.
State is a fold over the symbol's (candle, signal) pairs, rebuilt from the event log when a worker lacks it, so
several workers can share the group: every signal yields the same order whichever worker handles it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from smartmarket.bus.topics import SIGNALS
from smartmarket.core.events import CandleClosed, Message, Side, SignalGenerated, SubmitOrder
from smartmarket.engine.kernel import Kernel
from smartmarket.engine.stages.base import (
    EventLog,
    NotRecordedError,
    OrderedFold,
    Stage,
    by_symbol,
    derived_id,
    read_history,
)
from smartmarket.engine.stages.candles import CandleCache
from smartmarket.engine.stages.spec import PipelineSpec
from smartmarket.engine.strategy import Bar, BarContext, Strategy
from smartmarket.execution.orders import Decision
from smartmarket.execution.risk_checks import AccountState, EquityWatermarks, OrderIntent, Rejected, RiskChecks
from smartmarket.models.labels import LabelConfig
from smartmarket.signals.members import Candle
from smartmarket.signals.pipeline import BarrierTracker
from smartmarket.strategies.ensemble import SignalTrader

DUST = 1e-9  # relative order size below which nothing is sent


class SignalFeed(Strategy):
    """The kernel strategy of the risk stage: this bar's signal from the bus, traded by ``SignalTrader``.

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
        self.tracker.update(Candle(b.ts, b.open, b.high, b.low, b.close, b.volume), ctx.bar_index)
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


@dataclass
class Book:
    """One symbol's sub-account in the risk stage."""

    kernel: Kernel
    feed: SignalFeed
    checks: RiskChecks | None
    watermarks: EquityWatermarks | None = None
    ordered: float = 0.0  # Σ signed quantities sent: the position once they fill
    orders_seen: int = 0
    fills_seen: int = 0
    submitted: list[SubmitOrder] = field(default_factory=list)


def client_order_id(event_id: str) -> str:
    """A broker-friendly client order id (exchanges cap their length at ~36 characters)."""
    return f"sm{event_id[:30]}"


class RiskStage(Stage):
    name = "risk"
    inputs = (SIGNALS,)

    def __init__(
        self, spec: PipelineSpec, log: EventLog | None, candles: CandleCache | None = None,
        *, candle_timeout_s: float = 30.0,
    ) -> None:  # fmt: skip
        self.spec = spec
        self.log = log
        self.candles = candles
        self.candle_timeout_s = candle_timeout_s
        self.books: dict[str, Book] = {}
        self.fold: OrderedFold[tuple[CandleClosed, SignalGenerated]] = OrderedFold(
            spec.timeframe, self.step, self._history if log else None
        )

    def book(self, symbol: str) -> Book:
        book = self.books.get(symbol)
        if book is None:
            labels = self.spec.label_config(symbol)
            trader = SignalTrader(
                horizon=labels.horizon, take_profit=labels.take_profit, stop_loss=labels.stop_loss,
                max_size=self.spec.trading.max_size,
            )  # fmt: skip
            feed = SignalFeed(trader, labels)
            limits = self.spec.trading.limits
            book = Book(
                Kernel(lambda _symbol: feed, self.spec.trading.kernel_config()), feed,
                RiskChecks(limits) if limits is not None else None,
            )  # fmt: skip
            self.books[symbol] = book
        return book

    def _ours(self, signal: SignalGenerated) -> bool:
        version = self.spec.signal_version(signal.symbol)
        return signal.event_id == derived_id("SignalGenerated", signal.symbol, signal.timeframe, signal.ts, version)

    async def handle(self, message: Message) -> list[Message]:
        if not isinstance(message, SignalGenerated) or message.symbol not in self.spec.symbols:
            return []
        if message.timeframe != self.spec.timeframe or not self._ours(message):
            return []
        done = self.fold.folded(message.symbol, message.ts)
        if done is not None:
            return done
        candle = await self._candle(message)
        return await self.fold.advance(message.symbol, message.ts, (candle, message), [candle, message])

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

    def step(self, symbol: str, unit: tuple[CandleClosed, SignalGenerated]) -> list[Message]:
        candle, signal = unit
        book = self.book(symbol)
        kernel = book.kernel
        book.feed.signal = signal
        kernel.on_candle(symbol, Bar(candle.ts, candle.open, candle.high, candle.low, candle.close, candle.volume))
        book.feed.signal = None
        portfolio = kernel.portfolio
        now = signal.ts_event
        if book.watermarks is None:
            book.watermarks = EquityWatermarks(portfolio.equity, now)
        else:
            book.watermarks.update(portfolio.equity, now)

        new_orders = kernel.orders[book.orders_seen :]
        new_fills = kernel.broker.fills[book.fills_seen :]
        book.orders_seen, book.fills_seen = len(kernel.orders), len(kernel.broker.fills)
        if new_orders:
            wanted = self._target_quantity(kernel, new_orders[-1].target_fraction, candle.close)
        elif any(f.order_id == -1 for f in new_fills):  # a protective exit inside this bar
            wanted = portfolio.quantity(symbol)
        else:
            return []
        quantity = wanted - book.ordered
        if abs(quantity) <= DUST * max(abs(wanted), abs(book.ordered), 1e-300):
            return []
        side: Side = "buy" if quantity > 0 else "sell"
        intent = OrderIntent(symbol, side, abs(quantity), candle.close)
        if book.checks is not None:
            state = AccountState(
                equity=portfolio.equity, cash=portfolio.cash, day_start_equity=book.watermarks.day_start_equity,
                peak_equity=book.watermarks.peak_equity, positions={symbol: book.ordered},
                last_prices={symbol: candle.close},
            )  # fmt: skip
            verdict = book.checks.check(intent, state, now)
            if isinstance(verdict, Rejected):
                if new_orders:
                    _cancel_pending(kernel, symbol)
                rejected = verdict.to_event(
                    intent, now, correlation_id=signal.correlation_id, causation_id=signal.event_id
                )
                return [rejected]
        book.ordered += quantity
        event_id = derived_id("SubmitOrder", symbol, self.spec.timeframe, candle.ts, self.spec.order_version(symbol))
        order = SubmitOrder(
            event_id=event_id, ts_event=now, correlation_id=signal.correlation_id, causation_id=signal.event_id,
            symbol=symbol, side=side, quantity=abs(quantity), client_order_id=client_order_id(event_id),
        )  # fmt: skip
        book.submitted.append(order)
        return [order]

    def _target_quantity(self, kernel: Kernel, fraction: float, close: float) -> float:
        """The paper broker's target sizing (``PaperBroker._target_quantity``) at the close instead of the open."""
        if fraction == 0.0:
            return 0.0
        equity = kernel.portfolio.equity
        if not equity > 0 or not close > 0:
            return 0.0
        cfg = kernel.config
        notional = min(abs(fraction) * equity, cfg.risk.max_gross_exposure * equity)
        sign = 1.0 if fraction > 0 else -1.0
        return sign * notional / (close * (1.0 + cfg.fees.taker))

    async def _history(
        self, symbol: str, after: int | None, inputs: Sequence[Message]
    ) -> list[tuple[int, tuple[CandleClosed, SignalGenerated]]]:
        assert self.log is not None
        found = await read_history(
            self.log, ["CandleClosed", "SignalGenerated"], symbol, self.spec.timeframe, after, inputs
        )
        candles = {m.ts: m for m in found if isinstance(m, CandleClosed)}
        signals = {m.ts: m for m in found if isinstance(m, SignalGenerated) and self._ours(m)}
        return [(ts, (candles[ts], signals[ts])) for ts in sorted(signals) if ts in candles]


def _cancel_pending(kernel: Kernel, symbol: str) -> None:
    """Drop the kernel's pending order of ``symbol`` (refused by the risk checks)."""
    state = kernel._states.get(symbol)
    if state is not None and state.pending is not None:
        state.pending.status = "cancelled"
        state.pending = None


__all__ = ["DUST", "Book", "RiskStage", "SignalFeed", "client_order_id"]
