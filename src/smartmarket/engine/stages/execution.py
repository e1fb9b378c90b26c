"""The execution stage: ``SubmitOrder`` → ``OrderSubmitted`` + ``OrderFilled`` (or ``OrderRejected``).

Paper trading (the default) fills an order decided at a candle's close at the **next candle's open**, through
the broker port's paper adapter with the backtester's fee model and slippage model (the slippage tracker sees
candles up to the decision, as in the kernel). Both answers are stamped with the fill candle's open time.
With an exchange broker (``--broker ccxt``) orders are sent on arrival and fills are polled at every candle.

The stage reads ``orders`` and ``candles``. An order waits (in memory) until its fill candle is known; a worker
that starts, or restarts after a crash or a graceful stop, first rebuilds the slippage state and the orders
still waiting from the event log. Scale this stage out by symbol (one worker per set of symbols).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from smartmarket.bus.topics import CANDLES, ORDERS
from smartmarket.core.events import CandleClosed, Message, OrderFilled, OrderRejected, OrderSubmitted, SubmitOrder
from smartmarket.core.timeutil import now_ms
from smartmarket.engine.stages.base import EventLog, Stage, by_symbol
from smartmarket.engine.stages.spec import PipelineSpec
from smartmarket.execution.broker import Broker, PaperBrokerAdapter
from smartmarket.execution.paper_broker import PaperBroker
from smartmarket.execution.portfolio import Portfolio
from smartmarket.execution.slippage import SlippageTracker

ANSWERS = ("OrderSubmitted", "OrderRejected")


@dataclass
class _Symbol:
    broker: Broker
    slippage: SlippageTracker
    opens: OrderedDict[int, tuple[float, float]] = field(default_factory=OrderedDict)  # ts -> (open, slippage)
    last_candle_ts: int | None = None
    waiting: list[SubmitOrder] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)  # client order ids


class ExecutionStage(Stage):
    name = "execution"
    inputs = (ORDERS, CANDLES)

    def __init__(
        self, spec: PipelineSpec, log: EventLog | None, *, broker: Broker | None = None, remembered: int = 10_000
    ) -> None:
        self.spec = spec
        self.log = log
        self.live_broker = broker  # None: paper trading, one paper account per symbol
        self.remembered = remembered
        self._symbols: dict[str, _Symbol] = {}

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
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbols[symbol] = self._new_symbol()
            if self.log is not None:
                await self._recover(symbol, state, trigger)
        return state

    async def handle(self, message: Message) -> list[Message]:
        if isinstance(message, CandleClosed):
            if message.symbol not in self.spec.symbols or message.timeframe != self.spec.timeframe:
                return []
            state = await self._state(message.symbol, message)
            return self._on_candle(state, message)
        if isinstance(message, SubmitOrder) and message.symbol in self.spec.symbols:
            state = await self._state(message.symbol, message)
            if message.client_order_id in state.answered or any(
                o.client_order_id == message.client_order_id for o in state.waiting
            ):
                return []
            if not self.paper:
                return self._send(state, message, now_ms())
            state.waiting.append(message)
            return self._fill_due(state)
        return []

    def _on_candle(self, state: _Symbol, candle: CandleClosed) -> list[Message]:
        if state.last_candle_ts is not None and candle.ts <= state.last_candle_ts:
            return []
        self._take_candle(state, candle)
        if not self.paper:
            state.broker.mark(candle.symbol, candle.close)
            return list(state.broker.poll_fills(now_ms()))
        return self._fill_due(state)

    def _take_candle(self, state: _Symbol, candle: CandleClosed) -> None:
        state.opens[candle.ts] = (candle.open, state.slippage.fraction)  # slippage known before this candle
        if len(state.opens) > self.remembered:
            state.opens.popitem(last=False)
        if state.slippage.needs_updates:
            state.slippage.update(candle.high, candle.low, candle.close)
        state.last_candle_ts = candle.ts

    def _fill_due(self, state: _Symbol) -> list[Message]:
        """Fill every waiting order whose fill candle (the first opening at or after its decision) is known."""
        out: list[Message] = []
        still: list[SubmitOrder] = []
        for order in sorted(state.waiting, key=lambda o: o.ts_event):
            fill_ts = next((ts for ts in state.opens if ts >= order.ts_event), None)
            if fill_ts is None:
                still.append(order)
                continue
            price, slippage = state.opens[fill_ts]
            assert isinstance(state.broker, PaperBrokerAdapter)
            state.broker.slippage = slippage
            state.broker.mark(order.symbol, price)
            out.extend(self._send(state, order, fill_ts))
        state.waiting = still
        return out

    def _send(self, state: _Symbol, order: SubmitOrder, when: int) -> list[Message]:
        answer = state.broker.submit(order, when)
        state.answered.add(order.client_order_id)
        return [answer, *state.broker.poll_fills(when)]

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


def recovered_fills(messages: list[Message]) -> list[OrderFilled]:
    return [m for m in messages if isinstance(m, OrderFilled)]


BrokerFactory = Callable[[PipelineSpec], Broker]

__all__ = ["BrokerFactory", "ExecutionStage"]
