"""Walk-forward evaluation: fit on a training window, trade the following unseen window, roll on.

Windows live on the run's *timeline* (the sorted distinct candle timestamps of all symbols), in bars::

    fold k:    [ train (train_bars) ][ purge ][ embargo ][ test k ]
    fold k+1:            [ train (train_bars) ][ purge ][ embargo ][ test k+1 ]   (shifted by test_bars)

* ``purge`` removes the training bars whose labels would look into the test window (set it to the label
  horizon); ``embargo`` adds a further gap against serial correlation. Because training always precedes
  its test window here, both are gaps between the end of training and the start of testing.
* Test windows are contiguous and do not overlap; the train window rolls with them (``anchored=True``
  keeps it starting at the first bar, an expanding window).
* ``fit`` sees the training candles only and returns the parameters for the test window (see
  :func:`grid_search_fit`: grid search by Sharpe ratio on the training window).
* Each test window is a fresh kernel run that starts with the previous window's ending equity. Before it,
  ``warmup_bars`` earlier bars (default: ``train_bars``, at least what the strategy declares) are fed to its
  features and strategy without trading, as a live system would have seen them (features are causal, so
  this reads the past only); the strategy's latest decision from the warm-up fills at the open of the
  window's first bar. Positions are closed at the last close of each test window (fees and slippage
  apply), so the windows are independent.
* Only the out-of-sample (test) windows produce results; they are stitched into one equity curve.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.backtest.runner import BacktestResult, Candles, _frames, _result, iter_bars, run_backtest
from smartmarket.core.errors import ConfigError, ValidationError
from smartmarket.core.frame import as_candle_frame
from smartmarket.core.trading import Trade
from smartmarket.core.types import Timeframe
from smartmarket.engine.kernel import Kernel, KernelConfig
from smartmarket.strategies.registry import make_strategy, strategy_factory


@dataclass(frozen=True, slots=True)
class WalkForwardConfig:
    """Window lengths in bars of the timeline. ``warmup_bars=None``: ``train_bars`` or the strategy's own
    warm-up, whichever is longer (so a signal-on-change strategy starts each window with its current stance)."""

    train_bars: int
    test_bars: int
    purge_bars: int = 0
    embargo_bars: int = 0
    warmup_bars: int | None = None
    anchored: bool = False

    def __post_init__(self) -> None:
        if self.train_bars < 1 or self.test_bars < 1:
            raise ConfigError("walk-forward needs train_bars >= 1 and test_bars >= 1")
        if self.purge_bars < 0 or self.embargo_bars < 0 or (self.warmup_bars or 0) < 0:
            raise ConfigError("purge, embargo and warm-up bars must be >= 0")

    @property
    def gap_bars(self) -> int:
        return self.purge_bars + self.embargo_bars


@dataclass(frozen=True, slots=True)
class Window:
    """One fold, as half-open ranges of timeline positions: ``[train_start, train_end)``, ``[test_start, test_end)``."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int


def make_windows(n_bars: int, cfg: WalkForwardConfig) -> list[Window]:
    """The folds over a timeline of ``n_bars`` bars; the last test window may be shorter."""
    windows: list[Window] = []
    test_start = cfg.train_bars + cfg.gap_bars
    while test_start < n_bars:
        train_end = test_start - cfg.gap_bars
        train_start = 0 if cfg.anchored else train_end - cfg.train_bars
        test_end = min(test_start + cfg.test_bars, n_bars)
        windows.append(Window(len(windows), train_start, train_end, test_start, test_end))
        test_start = test_end
    return windows


@dataclass(frozen=True, slots=True)
class FitOutcome:
    """What a fit callback may return: the chosen parameters and, optionally, their training score."""

    params: dict[str, Any]
    score: float | None = None


Fit = Callable[[dict[str, pd.DataFrame]], FitOutcome | Mapping[str, Any]]
"""Training candles (symbol → frame) → parameters for the next test window."""


@dataclass(slots=True)
class WindowResult:
    window: Window
    params: dict[str, Any]
    train_score: float | None
    result: BacktestResult  # the out-of-sample run of this window


@dataclass(slots=True)
class WalkForwardResult:
    """Out-of-sample results only: per-window runs and the stitched equity curve and trades."""

    windows: list[WindowResult]
    equity: pd.Series
    trades: list[Trade]
    initial_cash: float
    strategy: str
    config: WalkForwardConfig
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final_equity(self) -> float:
        return float(self.equity.iloc[-1]) if len(self.equity) else self.initial_cash

    @property
    def exposure(self) -> pd.Series:
        return pd.concat([w.result.exposure for w in self.windows]) if self.windows else pd.Series(dtype=float)

    @property
    def traded_notional(self) -> float:
        return sum(w.result.traded_notional for w in self.windows)


def bar_sharpe(equity: pd.Series) -> float | None:
    """Mean / standard deviation of per-bar returns (not annualised; for ranking). None when undefined."""
    values = equity.to_numpy(dtype=np.float64)
    if len(values) < 3 or not np.all(values[:-1] > 0):
        return None
    returns = values[1:] / values[:-1] - 1.0
    std = float(returns.std(ddof=1))
    if not std > 0 or not math.isfinite(std):
        return None
    return float(returns.mean()) / std


def grid_search_fit(
    strategy: str,
    grid: Mapping[str, Sequence[Any]],
    *,
    config: KernelConfig | None = None,
    score: Callable[[BacktestResult], float | None] | None = None,
    constraint: Callable[[dict[str, Any]], bool] | None = None,
) -> Callable[[dict[str, pd.DataFrame]], FitOutcome]:
    """A fit callback: try every combination of ``grid`` on the training candles, keep the best score.

    ``score`` defaults to the per-bar Sharpe ratio of the training run; combinations rejected by
    ``constraint`` or by the strategy itself (``ConfigError``) are skipped; ties keep the first combination.
    """
    names = list(grid)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]
    scorer = score if score is not None else (lambda result: bar_sharpe(result.equity))

    def fit(train: dict[str, pd.DataFrame]) -> FitOutcome:
        best: FitOutcome | None = None
        for params in combos:
            if constraint is not None and not constraint(params):
                continue
            try:
                result = run_backtest(train, strategy, params=params, config=config)
            except ConfigError:
                continue
            value = scorer(result)
            if best is None or (value is not None and (best.score is None or value > best.score)):
                best = FitOutcome(params, value)
        if best is None:
            raise ConfigError(f"no valid parameter combination for {strategy!r} in the grid {dict(grid)}")
        return best

    return fit


def _timeline(frames: Mapping[str, pd.DataFrame]) -> np.ndarray:
    return np.unique(np.concatenate([f["ts"].to_numpy(dtype=np.int64) for f in frames.values()]))


def _slice(frames: Mapping[str, pd.DataFrame], start_ts: int, end_ts: int) -> dict[str, pd.DataFrame]:
    """Rows with ``start_ts <= ts < end_ts`` of every frame."""
    out = {}
    for symbol, frame in frames.items():
        ts = frame["ts"].to_numpy()
        lo, hi = np.searchsorted(ts, start_ts, "left"), np.searchsorted(ts, end_ts, "left")
        out[symbol] = frame.iloc[lo:hi].reset_index(drop=True)
    return out


def walk_forward(
    candles: Candles,
    strategy: str,
    fit: Fit,
    cfg: WalkForwardConfig,
    *,
    config: KernelConfig | None = None,
    timeframe: Timeframe | str | None = None,
    symbol: str = "SYMBOL",
) -> WalkForwardResult:
    """Run the walk-forward evaluation of the registered ``strategy`` (see the module docstring)."""
    frames = {s: as_candle_frame(f) for s, f in _frames(candles, symbol).items()}
    timeline = _timeline(frames)
    windows = make_windows(len(timeline), cfg)
    if not windows:
        raise ValidationError(
            f"{len(timeline)} bars are too few for one walk-forward window",
            hint=f"need more than train + purge + embargo = {cfg.train_bars + cfg.gap_bars} bars",
        )
    base = config if config is not None else KernelConfig()
    end_of = np.append(timeline, timeline[-1] + 1)  # end_of[k] = first ts not in [.., k)
    equity = base.initial_cash
    results: list[WindowResult] = []
    for window in windows:
        train = _slice(frames, int(timeline[window.train_start]), int(end_of[window.train_end]))
        outcome = fit(train)
        if not isinstance(outcome, FitOutcome):
            outcome = FitOutcome(dict(outcome))
        params = dict(outcome.params)
        warm = cfg.warmup_bars
        if warm is None:
            warm = max(cfg.train_bars, make_strategy(strategy, **params).warmup_bars())
        warm_start = max(0, window.test_start - warm)
        warm_frames = _slice(frames, int(timeline[warm_start]), int(timeline[window.test_start]))
        test_frames = _slice(frames, int(timeline[window.test_start]), int(end_of[window.test_end]))
        run_config = replace(base, initial_cash=equity, close_at_end=True)
        kernel = Kernel(strategy_factory(strategy, **params), run_config)
        for sym, bar in iter_bars(warm_frames):
            kernel.warm_up(sym, bar)
        bars = 0
        for sym, bar in iter_bars(test_frames):
            kernel.on_candle(sym, bar)
            bars += 1
        open_positions = kernel.finish(close_positions=True)
        result = _result(kernel, strategy, params, run_config, tuple(frames), timeframe, bars, 0.0, open_positions)
        results.append(WindowResult(window, params, outcome.score, result))
        equity = result.final_equity
    stitched = pd.concat([w.result.equity for w in results])
    trades = [t for w in results for t in w.result.trades]
    return WalkForwardResult(results, stitched, trades, base.initial_cash, strategy, cfg)


__all__ = [
    "Fit",
    "FitOutcome",
    "WalkForwardConfig",
    "WalkForwardResult",
    "Window",
    "WindowResult",
    "bar_sharpe",
    "grid_search_fit",
    "make_windows",
    "walk_forward",
]
