"""Strategies by name: ``make_strategy("sma_cross", fast=10, slow=30)``, ``strategy_factory(...)``."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from smartmarket.core.errors import ConfigError
from smartmarket.engine.strategy import Strategy, StrategyFactory
from smartmarket.strategies.buy_hold import BuyHold
from smartmarket.strategies.ensemble import EnsembleStrategy
from smartmarket.strategies.rsi_reversion import RsiReversion
from smartmarket.strategies.sma_cross import SmaCross
from smartmarket.strategies.smc_bos import SmcBos

STRATEGIES: dict[str, type[Strategy]] = {
    BuyHold.name: BuyHold,
    SmaCross.name: SmaCross,
    RsiReversion.name: RsiReversion,
    SmcBos.name: SmcBos,
    EnsembleStrategy.name: EnsembleStrategy,
}


@dataclass(frozen=True, slots=True)
class StrategyInfo:
    """A registered strategy: its name, parameters with their defaults, and a one-line summary."""

    name: str
    params: dict[str, Any]
    summary: str


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Add a strategy class under ``cls.name`` (usable as a decorator)."""
    STRATEGIES[cls.name] = cls
    return cls


def _lookup(name: str) -> type[Strategy]:
    cls = STRATEGIES.get(name)
    if cls is None:
        raise ConfigError(f"unknown strategy {name!r}", hint=f"known: {', '.join(sorted(STRATEGIES))}")
    return cls


def make_strategy(name: str, **params: Any) -> Strategy:
    """A fresh instance of the strategy ``name`` with ``params``."""
    cls = _lookup(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for strategy {name!r}: {exc}", hint=f"parameters: {_params(cls)}") from None


def strategy_factory(name: str, **params: Any) -> StrategyFactory:
    """A factory building one fresh instance per symbol (parameters checked now, not at the first candle)."""
    make_strategy(name, **params)

    def build(symbol: str) -> Strategy:
        return make_strategy(name, **params)

    return build


def _params(cls: type[Strategy]) -> dict[str, Any]:
    sig = inspect.signature(cls.__init__)
    return {p.name: p.default for p in list(sig.parameters.values())[1:] if p.kind is p.POSITIONAL_OR_KEYWORD}


def list_strategies() -> list[StrategyInfo]:
    """Every registered strategy, sorted by name."""
    out = []
    for name in sorted(STRATEGIES):
        cls = STRATEGIES[name]
        doc = (inspect.getdoc(inspect.getmodule(cls)) or inspect.getdoc(cls) or "").strip().splitlines()
        out.append(StrategyInfo(name, _params(cls), doc[0] if doc else ""))
    return out


__all__ = ["STRATEGIES", "StrategyInfo", "list_strategies", "make_strategy", "register_strategy", "strategy_factory"]
