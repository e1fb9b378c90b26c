"""The predictions stage: ``FeaturesComputed`` → one ``PredictionMade`` per ensemble member.

Each member (technical rules, SMC rules, registry models such as the Transformer) takes the candle and its
feature row and answers raw probabilities ``{down, flat, up}``; ``{}`` while it warms up. Every event names the
version that produced it (``model_id``): the registry model's id, or for a rule member the ensemble artifact
holding its parameters. The members' state is
a fold over the symbol's feature rows (rebuilt from the event log when a worker lacks it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from smartmarket.bus.topics import FEATURES
from smartmarket.core.events import FeaturesComputed, Message, PredictionMade
from smartmarket.core.types import Candle
from smartmarket.pipeline.stages.base import CANDLE_KEYS, EventLog, OrderedFold, Stage, derived_id, read_history
from smartmarket.pipeline.stages.chain import SignalSteps, probabilities_dict
from smartmarket.pipeline.stages.spec import PipelineSpec
from smartmarket.signals.members import ModelMember


def split_features(event: FeaturesComputed, columns: Sequence[str]) -> tuple[Candle, dict[str, float]]:
    """The candle and the pipeline row carried by a ``FeaturesComputed``."""
    f = event.features
    candle = Candle(event.ts, *(f[k] for k in CANDLE_KEYS))
    return candle, {c: f[c] for c in columns}


class PredictionsStage(Stage):
    name = "predictions"
    inputs = (FEATURES,)

    def __init__(self, spec: PipelineSpec, chains: Callable[[str], SignalSteps], log: EventLog | None) -> None:
        self.spec = spec
        self.chains = chains
        self.log = log
        self.fold: OrderedFold[FeaturesComputed] = OrderedFold(
            spec.timeframe, self.step, self._history if log else None
        )

    def expected_id(self, symbol: str, ts: int) -> str:
        return derived_id("FeaturesComputed", symbol, self.spec.timeframe, ts, self.spec.signal_version(symbol))

    async def handle(self, message: Message) -> list[Message]:
        if not isinstance(message, FeaturesComputed) or message.symbol not in self.spec.symbols:
            return []
        if message.event_id != self.expected_id(message.symbol, message.ts):
            return []  # another pipeline version's features
        return await self.fold.advance(message.symbol, message.ts, message, [message])

    def step(self, symbol: str, event: FeaturesComputed) -> list[Message]:
        engine = self.chains(symbol)
        candle, row = split_features(event, engine.feature_columns)
        probs = engine.predictions(candle, row)
        version = self.spec.signal_version(symbol)
        tf = self.spec.timeframe
        out: list[Message] = []
        for member in engine.members:
            out.append(
                PredictionMade(
                    event_id=derived_id("PredictionMade", symbol, tf, event.ts, version, member.name),
                    ts_event=event.ts_event, correlation_id=event.correlation_id, causation_id=event.event_id,
                    symbol=symbol, timeframe=tf, ts=event.ts, member=member.name,
                    model_id=member.model_id if isinstance(member, ModelMember) else version,
                    probabilities=probabilities_dict(probs[member.name]),
                )
            )  # fmt: skip
        return out

    async def _history(
        self, symbol: str, after: int | None, inputs: Sequence[Message]
    ) -> list[tuple[int, FeaturesComputed]]:
        assert self.log is not None
        found = await read_history(self.log, ["FeaturesComputed"], symbol, self.spec.timeframe, after, inputs)
        units = {
            m.ts: m for m in found if isinstance(m, FeaturesComputed) and m.event_id == self.expected_id(symbol, m.ts)
        }
        return sorted(units.items())


__all__ = ["PredictionsStage", "split_features"]
