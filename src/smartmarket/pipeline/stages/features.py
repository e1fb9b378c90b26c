"""The features stage: ``CandleClosed`` → ``FeaturesComputed`` (the members' feature pipeline, one candle).

The event's ``features`` are the pipeline's row plus the candle's OHLCV (``base.CANDLE_KEYS``), so the next
stage needs no second stream. State (the incremental indicators) is a fold over the symbol's candles; a worker
without the earlier candles folds them from the event log first (``base.OrderedFold``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from smartmarket.bus.topics import CANDLES
from smartmarket.core.events import CandleClosed, FeaturesComputed, Message
from smartmarket.core.types import Candle, Timeframe
from smartmarket.pipeline.stages.base import CANDLE_KEYS, EventLog, OrderedFold, Stage, derived_id, read_history
from smartmarket.pipeline.stages.chain import SignalSteps
from smartmarket.pipeline.stages.spec import PipelineSpec


def candle_of(event: CandleClosed) -> Candle:
    """The one candle value a ``CandleClosed`` carries."""
    return Candle(event.ts, event.open, event.high, event.low, event.close, event.volume)


class FeaturesStage(Stage):
    name = "features"
    inputs = (CANDLES,)

    def __init__(self, spec: PipelineSpec, chains: Callable[[str], SignalSteps], log: EventLog | None) -> None:
        self.spec = spec
        self.chains = chains
        self.log = log
        self.fold: OrderedFold[CandleClosed] = OrderedFold(spec.timeframe, self.step, self._history if log else None)

    async def handle(self, message: Message) -> list[Message]:
        if not isinstance(message, CandleClosed) or message.timeframe != self.spec.timeframe:
            return []
        if message.symbol not in self.spec.symbols:
            return []
        return await self.fold.advance(message.symbol, message.ts, message, [message])

    def step(self, symbol: str, candle: CandleClosed) -> list[Message]:
        row = self.chains(symbol).features(candle_of(candle))
        values = {**row, **{k: float(getattr(candle, k)) for k in CANDLE_KEYS}}
        tf = self.spec.timeframe
        return [
            FeaturesComputed(
                event_id=derived_id("FeaturesComputed", symbol, tf, candle.ts, self.spec.signal_version(symbol)),
                ts_event=candle.ts_event, correlation_id=candle.correlation_id or candle.event_id,
                causation_id=candle.event_id, symbol=symbol, timeframe=tf, ts=candle.ts, features=values,
            )
        ]  # fmt: skip

    async def _history(
        self, symbol: str, after: int | None, inputs: Sequence[Message]
    ) -> list[tuple[int, CandleClosed]]:
        assert self.log is not None
        return await candle_history(self.log, symbol, self.spec.timeframe, after, inputs)


async def candle_history(
    log: EventLog, symbol: str, timeframe: Timeframe, after: int | None, inputs: Sequence[Message]
) -> list[tuple[int, CandleClosed]]:  # fmt: skip
    """The recorded candles of ``symbol`` after ``after`` and before ``inputs``, by open time (for a fold)."""
    found = await read_history(log, ["CandleClosed"], symbol, timeframe, after, inputs)
    return sorted({m.ts: m for m in found if isinstance(m, CandleClosed)}.items())


__all__ = ["FeaturesStage", "candle_history", "candle_of"]
