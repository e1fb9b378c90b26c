"""Ready-made strategies and the registry that builds them by name."""

from smartmarket.strategies.buy_hold import BuyHold
from smartmarket.strategies.loader import load_strategy_class
from smartmarket.strategies.registry import (
    STRATEGIES,
    StrategyInfo,
    list_strategies,
    lookup_strategy,
    make_strategy,
    register_strategy,
    strategy_factory,
)
from smartmarket.strategies.rsi_reversion import RsiReversion
from smartmarket.strategies.sma_cross import SmaCross
from smartmarket.strategies.smc_bos import SmcBos

__all__ = [
    "STRATEGIES",
    "BuyHold",
    "RsiReversion",
    "SmaCross",
    "SmcBos",
    "StrategyInfo",
    "list_strategies",
    "load_strategy_class",
    "lookup_strategy",
    "make_strategy",
    "register_strategy",
    "strategy_factory",
]
