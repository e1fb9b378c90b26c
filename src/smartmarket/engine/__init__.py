"""The engine: one per-candle kernel (fills, protective exits, marks, the strategy, orders), the strategy interface
it runs, and the compiled fill loop with the kernel's semantics (``sweep_kernel``). Drivers live above it: the
backtest runner and sweeps (``smartmarket.backtest``) and the live pipeline (``smartmarket.pipeline``)."""

from smartmarket.engine.kernel import Kernel, KernelConfig
from smartmarket.engine.strategy import BarContext, BarHistory, Strategy, StrategyFactory
from smartmarket.execution.orders import Decision

__all__ = [
    "BarContext",
    "BarHistory",
    "Decision",
    "Kernel",
    "KernelConfig",
    "Strategy",
    "StrategyFactory",
]
