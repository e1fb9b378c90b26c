"""The signals stage: the ensemble's ``SignalGenerated`` once a candle's features and every member's
prediction are in.

It reads two streams (``features`` and ``predictions``) and joins them per (symbol, candle): the calibrated,
skill-weighted ensemble, confidence, strength and regime filter then run exactly as ``SignalEngine.on_candle``
runs them (``SignalEngine.decide``). One signal per candle, warming-up candles included (flat), so the
live signals equal ``SignalEngine.run`` on the same candles bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from smartmarket.bus.topics import FEATURES, PREDICTIONS
from smartmarket.core.events import FeaturesComputed, Message, PredictionMade
from smartmarket.pipeline.stages.base import EventLog, OrderedFold, Stage, derived_id, read_history
from smartmarket.pipeline.stages.chain import SignalSteps, probabilities_array, signal_event
from smartmarket.pipeline.stages.predictions import split_features
from smartmarket.pipeline.stages.spec import PipelineSpec


@dataclass
class SignalInputs:
    """What one candle's signal needs: its features (with the candle) and each member's prediction."""

    features: FeaturesComputed | None = None
    predictions: dict[str, PredictionMade] = field(default_factory=dict)

    def complete(self, members: Sequence[str]) -> bool:
        return self.features is not None and all(m in self.predictions for m in members)

    def parts(self) -> list[Message]:
        return [p for p in (self.features, *self.predictions.values()) if p is not None]


class SignalsStage(Stage):
    name = "signals"
    inputs = (FEATURES, PREDICTIONS)

    def __init__(self, spec: PipelineSpec, chains: Callable[[str], SignalSteps], log: EventLog | None) -> None:
        self.spec = spec
        self.chains = chains
        self.log = log
        self.fold: OrderedFold[SignalInputs] = OrderedFold(spec.timeframe, self.step, self._history if log else None)
        self._waiting: dict[tuple[str, int], SignalInputs] = {}

    def idle(self) -> bool:
        return not self._waiting

    def _ours(self, message: FeaturesComputed | PredictionMade) -> bool:
        symbol, tf, ts = message.symbol, self.spec.timeframe, message.ts
        version = self.spec.signal_version(symbol)
        if isinstance(message, FeaturesComputed):
            return message.event_id == derived_id("FeaturesComputed", symbol, tf, ts, version)
        return message.event_id == derived_id("PredictionMade", symbol, tf, ts, version, message.member)

    async def handle(self, message: Message) -> list[Message]:
        if not isinstance(message, FeaturesComputed | PredictionMade) or message.symbol not in self.spec.symbols:
            return []
        if not self._ours(message):
            return []
        symbol, ts = message.symbol, message.ts
        last = self.fold.last_ts(symbol)
        if last is not None and ts <= last:
            return []  # a redelivered part of a candle already signalled
        unit = self._waiting.setdefault((symbol, ts), SignalInputs())
        if isinstance(message, FeaturesComputed):
            unit.features = message
        else:
            unit.predictions[message.member] = message
        if not unit.complete(self.chains(symbol).member_names):
            return []
        del self._waiting[(symbol, ts)]
        outputs = await self.fold.advance(symbol, ts, unit, unit.parts())
        # Half-joined candles at or before this one were folded from the log (a part of them was handled by a
        # stopped or crashed process before it could join them): nothing is waiting for them any more.
        for key in [k for k in self._waiting if k[0] == symbol and k[1] <= ts]:
            del self._waiting[key]
        return outputs

    def step(self, symbol: str, unit: SignalInputs) -> list[Message]:
        engine = self.chains(symbol)
        features = unit.features
        assert features is not None
        candle, row = split_features(features, engine.feature_columns)
        members = engine.member_names
        probs = {name: probabilities_array(unit.predictions[name].probabilities) for name in members}
        signal = engine.decide(candle, row, probs)
        tf = self.spec.timeframe
        version = self.spec.signal_version(symbol)
        event_id = derived_id("SignalGenerated", symbol, tf, features.ts, version)
        last_member = unit.predictions[members[-1]] if members else features
        return [
            signal_event(
                signal, symbol=symbol, timeframe=tf, event_id=event_id, ts_event=features.ts_event,
                correlation_id=features.correlation_id, causation_id=last_member.event_id, model_id=version,
            )
        ]  # fmt: skip

    async def _history(
        self, symbol: str, after: int | None, inputs: Sequence[Message]
    ) -> list[tuple[int, SignalInputs]]:
        assert self.log is not None
        found = await read_history(
            self.log, ["FeaturesComputed", "PredictionMade"], symbol, self.spec.timeframe, after, inputs
        )
        units: dict[int, SignalInputs] = {}
        for m in found:
            if isinstance(m, FeaturesComputed | PredictionMade) and self._ours(m):
                unit = units.setdefault(m.ts, SignalInputs())
                if isinstance(m, FeaturesComputed):
                    unit.features = m
                else:
                    unit.predictions[m.member] = m
        members = self.chains(symbol).member_names
        return sorted(((ts, u) for ts, u in units.items() if u.complete(members)), key=lambda item: item[0])


__all__ = ["SignalInputs", "SignalsStage"]
