"""The shadow stage: a candidate ensemble beside production on the same live candles, recorded but never traded.

``CandleClosed`` → the candidate's ``ShadowPredictionMade`` per member and its ``ShadowSignalGenerated``. The
candidate runs its own engine (its own feature pipeline, members and fitted system, built from its artifact by
``spec.shadow``), its three public steps in one go, exactly as ``SignalEngine.on_candle`` composes them. Its events go
to the ``shadow`` topic, which only the recorder reads: no risk, order or fill can come from them. ``ab-report``
later pairs them with production's ``SignalGenerated`` by candle (``ops.abtest``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from smartmarket.bus.topics import CANDLES
from smartmarket.core.events import CandleClosed, Message, ShadowPredictionMade, ShadowSignalGenerated
from smartmarket.pipeline.stages.base import EventLog, OrderedFold, Stage, derived_id
from smartmarket.pipeline.stages.chain import probabilities_dict, signal_fields
from smartmarket.pipeline.stages.features import candle_history, candle_of
from smartmarket.pipeline.stages.spec import EngineProvider, PipelineSpec
from smartmarket.signals.engine import SignalEngine
from smartmarket.signals.members import ModelMember

SHADOW_STAGE = "shadow"


class ShadowStage(Stage):
    name = SHADOW_STAGE
    inputs = (CANDLES,)

    def __init__(self, spec: PipelineSpec, candidate: EngineProvider, log: EventLog | None) -> None:
        self.spec = spec
        self.candidate = candidate
        self.log = log
        self._engines: dict[str, SignalEngine] = {}
        self.fold: OrderedFold[CandleClosed] = OrderedFold(spec.timeframe, self.step, self._history if log else None)

    def engine(self, symbol: str) -> SignalEngine:
        """The candidate's engine of ``symbol``, built on first use."""
        if symbol not in self._engines:
            self._engines[symbol] = self.candidate.engine(symbol)
        return self._engines[symbol]

    def version(self, symbol: str) -> str:
        return f"shadow/{self.candidate.version(symbol)}"

    async def handle(self, message: Message) -> list[Message]:
        if not isinstance(message, CandleClosed) or message.timeframe != self.spec.timeframe:
            return []
        if message.symbol not in self.spec.symbols:
            return []
        return await self.fold.advance(message.symbol, message.ts, message, [message])

    def step(self, symbol: str, event: CandleClosed) -> list[Message]:
        engine = self.engine(symbol)
        candle = candle_of(event)
        row = engine.features(candle)
        probs = engine.predictions(candle, row)
        signal = engine.decide(candle, row, probs)
        tf, version, candidate = self.spec.timeframe, self.version(symbol), self.candidate.version(symbol)
        common: dict[str, Any] = {"ts_event": event.ts_event, "correlation_id": event.correlation_id or event.event_id}
        out: list[Message] = [
            ShadowPredictionMade(
                event_id=derived_id("ShadowPredictionMade", symbol, tf, event.ts, version, member.name),
                causation_id=event.event_id, symbol=symbol, timeframe=tf, ts=event.ts, member=member.name,
                model_id=member.model_id if isinstance(member, ModelMember) else candidate,
                probabilities=probabilities_dict(probs[member.name]), **common,
            )
            for member in engine.members
        ]  # fmt: skip
        out.append(
            ShadowSignalGenerated(
                event_id=derived_id("ShadowSignalGenerated", symbol, tf, event.ts, version),
                causation_id=out[-1].event_id if out else event.event_id, model_id=candidate,
                **common, **signal_fields(signal, symbol=symbol, timeframe=tf, ts_event=event.ts_event),
            )
        )  # fmt: skip
        return out

    async def _history(
        self, symbol: str, after: int | None, inputs: Sequence[Message]
    ) -> list[tuple[int, CandleClosed]]:
        assert self.log is not None
        return await candle_history(self.log, symbol, self.spec.timeframe, after, inputs)


__all__ = ["SHADOW_STAGE", "ShadowStage"]
