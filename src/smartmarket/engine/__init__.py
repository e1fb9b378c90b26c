"""The engine: one per-candle kernel driven by different clocks (backtest runner now; replay and live later)."""

from smartmarket.engine.backtest import BacktestResult, iter_bars, run_backtest, run_backtest_from_store, run_kernel
from smartmarket.engine.kernel import Kernel, KernelConfig
from smartmarket.engine.strategy import BarContext, BarHistory, Strategy, StrategyFactory
from smartmarket.execution.orders import Decision

__all__ = [
    "BacktestResult",
    "BarContext",
    "BarHistory",
    "Decision",
    "Kernel",
    "KernelConfig",
    "Strategy",
    "StrategyFactory",
    "iter_bars",
    "run_backtest",
    "run_backtest_from_store",
    "run_kernel",
]
