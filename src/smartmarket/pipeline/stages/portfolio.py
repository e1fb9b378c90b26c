"""The portfolio stage: ``OrderFilled`` → ``PositionChanged`` (the sub-account of each symbol, from real fills).

The backtester's ``Portfolio`` books every fill (average price, realised P&L of closed parts, fees in cash).
State is a fold over the symbol's fills in the order they were published (the execution stage's order, which
the event log keeps), one step per fill: several fills share a timestamp when a reversal fills as its close leg
and its new side at one open, or an order fills in parts. A fill already folded (a redelivery) returns the
outputs computed for it then. A fresh worker first folds, from the event log, every fill recorded before the
one it received.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from smartmarket.bus.topics import EXECUTIONS
from smartmarket.core.events import Message, OrderFilled, PositionChanged, deterministic_event_id
from smartmarket.execution.portfolio import Portfolio
from smartmarket.pipeline.stages.base import EventLog, Stage, by_symbol
from smartmarket.pipeline.stages.spec import PipelineSpec


@dataclass
class _Folded:
    """One symbol's fold: the fills booked (event id → their outputs), whether it was caught up from the log."""

    outputs: OrderedDict[str, list[Message]] = field(default_factory=OrderedDict)
    recovered: bool = False


class PortfolioStage(Stage):
    name = "portfolio"
    inputs = (EXECUTIONS,)

    def __init__(self, spec: PipelineSpec, log: EventLog | None, *, remembered: int = 10_000) -> None:
        self.spec = spec
        self.log = log
        self.remembered = remembered
        self.portfolios: dict[str, Portfolio] = {}
        self.realized: dict[str, float] = {}
        self.caught_up = 0  # fills folded from the event log
        self._folded: dict[str, _Folded] = {}

    async def handle(self, message: Message) -> list[Message]:
        if not isinstance(message, OrderFilled) or message.symbol not in self.spec.symbols:
            return []
        symbol = message.symbol
        state = self._folded.setdefault(symbol, _Folded())
        done = state.outputs.get(message.event_id)
        if done is not None:
            return list(done)
        missed: list[Message] = []
        if not state.recovered:
            state.recovered = True
            if self.log is not None:
                for past in await self._history(symbol, message):
                    if past.event_id not in state.outputs:
                        missed.extend(self._fold(state, symbol, past))
                        self.caught_up += 1
                done = state.outputs.get(message.event_id)
                if done is not None:
                    return [*missed, *done]
        return [*missed, *self._fold(state, symbol, message)]

    def _fold(self, state: _Folded, symbol: str, fill: OrderFilled) -> list[Message]:
        outputs = self.step(symbol, fill)
        state.outputs[fill.event_id] = outputs
        if len(state.outputs) > self.remembered:
            state.outputs.popitem(last=False)
        return outputs

    def step(self, symbol: str, fill: OrderFilled) -> list[Message]:
        portfolio = self.portfolios.get(symbol)
        if portfolio is None:
            portfolio = self.portfolios[symbol] = Portfolio(self.spec.trading.initial_cash)
        signed = fill.quantity if fill.side == "buy" else -fill.quantity
        trades = portfolio.apply_fill(symbol, signed, fill.price, fill.fee, fill.ts_event, -1)
        self.realized[symbol] = self.realized.get(symbol, 0.0) + sum(t.pnl for t in trades)
        position = portfolio.positions.get(symbol)
        return [
            PositionChanged(
                event_id=deterministic_event_id("PositionChanged", fill.event_id), ts_event=fill.ts_event,
                correlation_id=fill.correlation_id, causation_id=fill.event_id, symbol=symbol,
                quantity=position.quantity if position is not None else 0.0,
                avg_price=position.avg_price if position is not None else 0.0,
                realized_pnl=self.realized[symbol], cash=portfolio.cash,
            )
        ]  # fmt: skip

    async def _history(self, symbol: str, fill: OrderFilled) -> list[OrderFilled]:
        """The symbol's fills recorded before ``fill``, in log order (``fill`` is waited for first)."""
        assert self.log is not None
        await self.log.wait_recorded(fill)
        found = by_symbol(await self.log.read(types=["OrderFilled"], end=fill.ts_event + 1), symbol)
        out: list[OrderFilled] = []
        for m in found:
            if m.event_id == fill.event_id:
                break
            if isinstance(m, OrderFilled):
                out.append(m)
        return out


__all__ = ["PortfolioStage"]
