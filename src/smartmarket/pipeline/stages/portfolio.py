"""The portfolio stage: ``OrderFilled`` → ``PositionChanged`` (the sub-account of each symbol, from real fills).

The backtester's ``Portfolio`` books every fill (average price, realised P&L of closed parts, fees in cash).
State is a fold over the symbol's fills in time order, rebuilt from the event log by a fresh worker.
"""

from __future__ import annotations

from collections.abc import Sequence

from smartmarket.bus.topics import EXECUTIONS
from smartmarket.core.events import Message, OrderFilled, PositionChanged, deterministic_event_id
from smartmarket.execution.portfolio import Portfolio
from smartmarket.pipeline.stages.base import EventLog, OrderedFold, Stage, by_symbol
from smartmarket.pipeline.stages.spec import PipelineSpec


class PortfolioStage(Stage):
    name = "portfolio"
    inputs = (EXECUTIONS,)

    def __init__(self, spec: PipelineSpec, log: EventLog | None) -> None:
        self.spec = spec
        self.log = log
        self.portfolios: dict[str, Portfolio] = {}
        self.realized: dict[str, float] = {}
        self.fold: OrderedFold[OrderFilled] = OrderedFold(
            spec.timeframe, self.step, self._history if log else None, contiguous=False
        )

    async def handle(self, message: Message) -> list[Message]:
        if not isinstance(message, OrderFilled) or message.symbol not in self.spec.symbols:
            return []
        return await self.fold.advance(message.symbol, message.ts_event, message, [message])

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

    async def _history(
        self, symbol: str, after: int | None, inputs: Sequence[Message]
    ) -> list[tuple[int, OrderFilled]]:
        assert self.log is not None
        for message in inputs:
            await self.log.wait_recorded(message)
        start = None if after is None else after + 1
        end = min(m.ts_event for m in inputs)
        found = by_symbol(await self.log.read(types=["OrderFilled"], start=start, end=end), symbol)
        return sorted(((m.ts_event, m) for m in found if isinstance(m, OrderFilled)), key=lambda item: item[0])


__all__ = ["PortfolioStage"]
