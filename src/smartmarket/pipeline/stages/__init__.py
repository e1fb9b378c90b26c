"""The pipeline's stages, one module each, every one a bus consumer group (see ``docs/pipeline.md``).

    candles (source) → features → predictions → signals → risk → execution → portfolio
                                                                     ↑ candles
    recorder: every stream → the durable EventStore
    shadow (only with a candidate, ``spec.shadow``): candles → the candidate's events on the ``shadow`` topic

``build_stages`` makes the named stages for one process; stages of the signal chain share one
``SignalEngine`` per symbol there (their parts of it are disjoint).
"""

from __future__ import annotations

from collections.abc import Sequence

from smartmarket.bus.topics import CANDLES, EXECUTIONS, FEATURES, PREDICTIONS, SIGNALS, TOPICS
from smartmarket.core.errors import ConfigError
from smartmarket.execution.broker import Broker
from smartmarket.pipeline.stages.base import EventLog, OrderedFold, Stage, candle_event_id, derived_id, same_payload
from smartmarket.pipeline.stages.candles import CandleCache, candle_closed
from smartmarket.pipeline.stages.chain import SignalSteps
from smartmarket.pipeline.stages.execution import ExecutionStage
from smartmarket.pipeline.stages.features import FeaturesStage
from smartmarket.pipeline.stages.portfolio import PortfolioStage
from smartmarket.pipeline.stages.predictions import PredictionsStage
from smartmarket.pipeline.stages.recorder import GROUP as RECORDER_GROUP
from smartmarket.pipeline.stages.risk import RiskStage
from smartmarket.pipeline.stages.shadow import SHADOW_STAGE, ShadowStage
from smartmarket.pipeline.stages.signals import SignalsStage
from smartmarket.pipeline.stages.spec import (
    ArtifactEngines,
    EngineProvider,
    FactoryEngines,
    PipelineSpec,
    StrategyChoice,
    TradingConfig,
)

CONSUMER_STAGES: tuple[str, ...] = ("features", "predictions", "signals", "risk", "execution", "portfolio")
STAGE_NAMES: tuple[str, ...] = ("candles", *CONSUMER_STAGES, "recorder")
OPTIONAL_STAGES: tuple[str, ...] = (SHADOW_STAGE,)  # run only when named (and configured)


class ChainCache:
    """One signal engine per symbol (the stages see it as ``SignalSteps``), built on first use."""

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self._chains: dict[str, SignalSteps] = {}

    def __call__(self, symbol: str) -> SignalSteps:
        chain = self._chains.get(symbol)
        if chain is None:
            chain = self._chains[symbol] = self.spec.signal_engines().engine(symbol)
        return chain


def build_stages(
    names: Sequence[str], spec: PipelineSpec, log: EventLog | None, *, candles: CandleCache | None = None,
    broker: Broker | None = None,
    live_broker: bool | None = None,
) -> list[Stage]:  # fmt: skip
    """The consumer stages among ``names`` (``candles`` and ``recorder`` are run by ``pipeline.live``).

    A pipeline trading a named strategy has no signal stages (``PipelineSpec.stage_names``); ``broker`` None is
    paper trading (fills at the next open), else a live broker (the risk stage waits for its answers only so long).
    ``live_broker``: the deployment trades through a live broker though this process holds none (a risk worker).
    """
    live = live_broker if live_broker is not None else broker is not None
    unknown = [n for n in names if n not in STAGE_NAMES + OPTIONAL_STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}", hint=f"use {', '.join(STAGE_NAMES + OPTIONAL_STAGES)}")
    names = spec.stage_names(names)
    chains = ChainCache(spec)
    makers = {
        "features": lambda: FeaturesStage(spec, chains, log),
        "predictions": lambda: PredictionsStage(spec, chains, log),
        "signals": lambda: SignalsStage(spec, chains, log),
        "risk": lambda: RiskStage(spec, log, candles, live_broker=live),
        "execution": lambda: ExecutionStage(spec, log, broker=broker),
        "portfolio": lambda: PortfolioStage(spec, log),
    }
    stages = [makers[name]() for name in CONSUMER_STAGES if name in names]
    if SHADOW_STAGE in names:
        if spec.shadow is None:
            raise ConfigError("the shadow stage needs a candidate", hint="give --shadow MODEL_ID")
        stages.append(ShadowStage(spec, spec.shadow, log))
    return stages


def stage_inputs(spec: PipelineSpec) -> dict[str, tuple[str, ...]]:
    """The topics each stage of ``spec``'s pipeline reads (its consumer groups), the recorder's included."""
    table: dict[str, tuple[str, ...]] = {
        "features": (CANDLES,),
        "predictions": (FEATURES,),
        "signals": (FEATURES, PREDICTIONS),
        "risk": ((SIGNALS,) if spec.trades_signals else (CANDLES,)) + (EXECUTIONS,),
        "execution": ExecutionStage.inputs,
        "portfolio": PortfolioStage.inputs,
        SHADOW_STAGE: ShadowStage.inputs,
        RECORDER_GROUP: TOPICS,
    }
    return {name: topics for name, topics in table.items() if name in spec.stage_names(tuple(table))}


__all__ = [
    "CONSUMER_STAGES",
    "OPTIONAL_STAGES",
    "SHADOW_STAGE",
    "STAGE_NAMES",
    "ArtifactEngines",
    "CandleCache",
    "ChainCache",
    "EngineProvider",
    "EventLog",
    "ExecutionStage",
    "FactoryEngines",
    "FeaturesStage",
    "OrderedFold",
    "PipelineSpec",
    "PortfolioStage",
    "PredictionsStage",
    "RiskStage",
    "ShadowStage",
    "SignalSteps",
    "SignalsStage",
    "Stage",
    "StrategyChoice",
    "TradingConfig",
    "build_stages",
    "candle_closed",
    "candle_event_id",
    "derived_id",
    "same_payload",
    "stage_inputs",
]
