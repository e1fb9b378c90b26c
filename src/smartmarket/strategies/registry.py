"""Strategies by name: ``make_strategy("sma_cross", fast=10, slow=30)``, ``strategy_factory(...)``.

A name spelled ``path/to/file.py:ClassName`` is the user's own class, loaded from that file
(``strategies.loader``), so every caller taking a strategy name takes a file too.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from smartmarket.core.errors import ConfigError
from smartmarket.engine.strategy import Strategy, StrategyFactory
from smartmarket.strategies.buy_hold import BuyHold
from smartmarket.strategies.ensemble import EnsembleStrategy
from smartmarket.strategies.loader import error_site, is_strategy_file, load_strategy_class, split_spec
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


def lookup_strategy(name: str) -> type[Strategy]:
    """The class of a registered strategy, or of ``path/to/file.py:ClassName`` loaded from that file."""
    cls = STRATEGIES.get(name)
    if cls is not None:
        return cls
    if is_strategy_file(name):
        return load_strategy_class(name)
    known = ", ".join(sorted(STRATEGIES))
    raise ConfigError(f"unknown strategy {name!r}", hint=f"known: {known}, or your own: path/to/file.py:ClassName")


def make_strategy(name: str, **params: Any) -> Strategy:
    """A fresh instance of the strategy ``name`` with ``params``."""
    cls = lookup_strategy(name)
    try:
        return cls(**params)
    except TypeError as exc:
        where = error_site(exc, split_spec(name)[0]) if is_strategy_file(name) else None
        raise ConfigError(
            f"bad parameters for strategy {name!r}: {exc}", where=where, hint=f"parameters: {_params(cls)}"
        ) from None
    except ConfigError:
        raise
    except Exception as exc:
        if not is_strategy_file(name):
            raise
        raise ConfigError(
            f"strategy {cls.__name__}({_shown(params)}) failed to start: {type(exc).__name__}: {exc}",
            where=error_site(exc, split_spec(name)[0]),
            hint="check --params against the constructor's arguments",
        ) from None


def _shown(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


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


__all__ = [
    "STRATEGIES",
    "StrategyInfo",
    "list_strategies",
    "lookup_strategy",
    "make_strategy",
    "register_strategy",
    "strategy_factory",
]
