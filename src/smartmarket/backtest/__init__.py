"""Backtests and research over stored candles: the runner feeding the kernel (``runner``), compiled parameter
sweeps (``sweep``), walk-forward optimisation, the walk-forward evaluation of signal artifacts
(``signal_evaluation``), provenance and the backtest JSON document, the backtest benchmark.

It sits above ``strategies`` and ``signals``: it resolves strategies by name and evaluates signal artifacts."""

from smartmarket.backtest.runner import BacktestResult, iter_bars, run_backtest, run_backtest_from_store, run_kernel

__all__ = ["BacktestResult", "iter_bars", "run_backtest", "run_backtest_from_store", "run_kernel"]
