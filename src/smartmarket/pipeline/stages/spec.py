"""What a pipeline runs: symbols, timeframe, the signal engines or a named strategy, the trading set-up.

A pipeline trades either the signal engines' signals (``engines``: the production ensemble by default; the
features, predictions and signals stages run) or a registered strategy on the candles themselves
(``strategy``: ``sma_cross``, ``rsi_reversion``, … with its parameters; only the order path runs).

``version`` strings go into every derived event id: two runs with the same version on the same candles
produce the same events (replay compares them), a new artifact or new parameters produce new ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.engine.kernel import KernelConfig
from smartmarket.engine.strategy import StrategyFactory
from smartmarket.execution.fees import FeeModel
from smartmarket.execution.reconcile import ReconcileMode
from smartmarket.execution.risk import RiskConfig
from smartmarket.execution.risk_checks import RiskLimits
from smartmarket.execution.sizing import FixedFraction, Sizer
from smartmarket.execution.slippage import NO_SLIPPAGE, SlippageModel
from smartmarket.strategies.loader import file_digest, is_strategy_file
from smartmarket.strategies.registry import strategy_factory

if TYPE_CHECKING:
    from smartmarket.models.labels import LabelConfig
    from smartmarket.signals.engine import SignalEngine
    from smartmarket.signals.fit import EnsembleArtifact


class EngineProvider(Protocol):
    """Fresh signal engines per symbol, and the version their events are stamped with."""

    def engine(self, symbol: str) -> SignalEngine: ...

    def version(self, symbol: str) -> str: ...


class ArtifactEngines:
    """Engines from ensemble artifacts in a registry (``artifact``: an id, a prefix, or per symbol ``production``,
    the one promoted with ``smartmarket models promote``, or ``latest``)."""

    def __init__(
        self,
        registry_dir: str | Path,
        timeframe: Timeframe | str,
        artifact: str | Mapping[str, str] = "latest",
        runtime: str = "auto",  # the networks on ONNX Runtime when installed (models/runtime.py), else torch
    ) -> None:
        self.registry_dir = Path(registry_dir)
        self.runtime = runtime
        self.timeframe = Timeframe.parse(str(timeframe))
        self.artifact = artifact  # one reference for every symbol, or one per symbol
        self._loaded: dict[str, EnsembleArtifact] = {}

    def _artifact(self, symbol: str) -> EnsembleArtifact:
        from smartmarket.signals.fit import load_artifact

        if symbol not in self._loaded:
            ref = self.artifact if isinstance(self.artifact, str) else self.artifact[symbol]
            self._loaded[symbol] = load_artifact(ref, self.registry_dir, symbol=symbol, timeframe=str(self.timeframe))
        return self._loaded[symbol]

    def engine(self, symbol: str) -> SignalEngine:
        from smartmarket.signals.engine import SignalEngine

        return SignalEngine.from_artifact(self._artifact(symbol), registry_dir=self.registry_dir, runtime=self.runtime)

    def version(self, symbol: str) -> str:
        return str(self._artifact(symbol).artifact_id)


class FactoryEngines:
    """Engines from a factory (tests, benchmarks, in-memory artifacts) with a version you name."""

    def __init__(self, factory: Callable[[str], SignalEngine], version: str) -> None:
        self.factory = factory
        self._version = version

    def engine(self, symbol: str) -> SignalEngine:
        return self.factory(symbol)

    def version(self, symbol: str) -> str:
        return self._version


SIGNAL_CHAIN_STAGES: tuple[str, ...] = ("features", "predictions", "signals")
"""The stages that turn candles into ensemble signals; a pipeline trading a named strategy does not run them."""


@dataclass(frozen=True)
class StrategyChoice:
    """A registered strategy (``strategies.registry``) traded on the candles, with its parameters."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name == "ensemble":
            raise ConfigError(
                "the ensemble trades through the signal stages, not as a candle strategy",
                hint="leave --strategy out (or give --strategy ensemble --artifact ID) to trade the ensemble",
            )
        self.factory()  # unknown name or bad parameters: fail now, with the fix

    def factory(self) -> StrategyFactory:
        return strategy_factory(self.name, **dict(self.params))

    def version(self) -> str:
        """``name:hash(params)``: part of every order id, so new parameters make new ids (for a strategy file,
        ``file.py:Class@sha256(file)``: an edited file makes new ids and a replay refuses the changed file)."""
        return strategy_version(self.name, self.params)


def strategy_version(name: str, params: Mapping[str, Any]) -> str:
    """:meth:`StrategyChoice.version` without building the strategy: a strategy file is hashed, never run."""
    text = json.dumps(dict(params), sort_keys=True, default=str)
    label = f"{name}@{file_digest(name)}" if is_strategy_file(name) else name
    return f"{label}:{hashlib.sha256(text.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class TradingConfig:
    """How signals trade. Each symbol is its own sub-account of ``initial_cash`` (see ``stages.risk``).

    ``max_size``: fraction of the sub-account at strength strong (the ``ensemble`` strategy's parameter);
    ``limits``: the pre-trade risk checks (``execution.risk_checks``), ``None`` to run without them;
    ``reconcile``: what the execution stage does when a live broker's positions differ from the book
    (``execution.reconcile``): ``check`` halts new orders, ``adopt`` takes the broker's, ``off`` skips it.
    """

    initial_cash: float = 10_000.0
    fees: FeeModel = field(default_factory=FeeModel)
    slippage: SlippageModel = NO_SLIPPAGE
    sizer: Sizer = field(default_factory=FixedFraction)
    risk: RiskConfig = field(default_factory=RiskConfig)
    max_size: float = 1.0
    limits: RiskLimits | None = field(default_factory=RiskLimits)
    reconcile: ReconcileMode = "check"  # with a live broker: compare book and broker, halt ("check") or "adopt"

    def kernel_config(self) -> KernelConfig:
        """The backtest kernel's configuration for one sub-account (fills at the next open, no latency)."""
        return KernelConfig(
            initial_cash=self.initial_cash, fees=self.fees, slippage=self.slippage, sizer=self.sizer, risk=self.risk
        )

    def fingerprint(self) -> str:
        """A short hash of everything that shapes orders (part of the order ids' version)."""
        text = json.dumps(
            {
                "cash": self.initial_cash, "fees": asdict(self.fees), "slippage": repr(self.slippage),
                "sizer": repr(self.sizer), "risk": asdict(self.risk), "max_size": self.max_size,
                "limits": asdict(self.limits) if self.limits is not None else None,
            },
            sort_keys=True,
        )  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class PipelineSpec:
    """Everything the stages need to agree on."""

    symbols: tuple[str, ...]
    timeframe: Timeframe
    engines: EngineProvider | None
    trading: TradingConfig = field(default_factory=TradingConfig)
    shadow: EngineProvider | None = None  # a candidate run beside production by the shadow stage, never traded
    strategy: StrategyChoice | None = None  # trade this strategy on candles instead of the engines' signals

    def __post_init__(self) -> None:
        if (self.engines is None) == (self.strategy is None):
            raise ConfigError("a pipeline trades either signal engines or a named strategy, exactly one of them")

    @classmethod
    def build(
        cls, symbols: Sequence[str], timeframe: Timeframe | str, engines: EngineProvider | None,
        trading: TradingConfig | None = None, shadow: EngineProvider | None = None,
        strategy: StrategyChoice | None = None,
    ) -> PipelineSpec:  # fmt: skip
        tf = Timeframe.parse(str(timeframe))
        if tf.is_calendar:
            raise ConfigError(f"the live pipeline does not run {tf} (calendar-month) candles yet",
                              hint="backtest 1M candles, or run a fixed timeframe such as 1w or 3d")  # fmt: skip
        return cls(
            tuple(normalize_symbol(s) for s in symbols), tf, engines,
            trading or TradingConfig(), shadow, strategy,
        )  # fmt: skip

    @property
    def trades_signals(self) -> bool:
        """True when orders follow the signal engines' signals (the signal stages run)."""
        return self.strategy is None

    def signal_engines(self) -> EngineProvider:
        if self.engines is None:
            raise ConfigError("this pipeline trades a named strategy: it has no signal engines",
                              hint="run it without the features/predictions/signals stages")  # fmt: skip
        return self.engines

    def signal_version(self, symbol: str) -> str:
        return self.signal_engines().version(symbol)

    def order_version(self, symbol: str) -> str:
        decider = self.signal_version(symbol) if self.strategy is None else f"strategy:{self.strategy.version()}"
        return f"{decider}/{self.trading.fingerprint()}"

    def label_config(self, symbol: str) -> LabelConfig:
        return self.signal_engines().engine(symbol).label_config

    def stage_names(self, names: Sequence[str]) -> tuple[str, ...]:
        """``names`` without the signal stages when this pipeline trades a named strategy."""
        if self.trades_signals:
            return tuple(names)
        return tuple(n for n in names if n not in SIGNAL_CHAIN_STAGES)


__all__ = [
    "SIGNAL_CHAIN_STAGES",
    "ArtifactEngines",
    "EngineProvider",
    "FactoryEngines",
    "PipelineSpec",
    "StrategyChoice",
    "TradingConfig",
    "strategy_version",
]
