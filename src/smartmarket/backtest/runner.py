"""The backtest runner: candles (frames or a store) in time order across symbols → kernel → result.

The runner is the *replay clock*: it merges the symbols' candle frames into one stream ordered by
``(ts, symbol)`` and hands the kernel one closed candle at a time, exactly as the live pipeline will.
Everything the run produced comes back in a :class:`BacktestResult`; metrics and reports are computed from
it by ``smartmarket.analytics`` (``compute_metrics(result.equity, result.trades, timeframe,
exposure=result.exposure, traded_notional=result.traded_notional)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.core.errors import ValidationError
from smartmarket.core.frame import as_candle_frame, empty_candles
from smartmarket.core.trading import Trade
from smartmarket.core.types import Candle, Timeframe
from smartmarket.engine.kernel import Kernel, KernelConfig
from smartmarket.engine.strategy import StrategyFactory
from smartmarket.execution.orders import Fill, Order
from smartmarket.execution.portfolio import Position
from smartmarket.store.base import CandleStore
from smartmarket.strategies.registry import strategy_factory

Candles = pd.DataFrame | Mapping[str, pd.DataFrame]


@dataclass(slots=True)
class BacktestResult:
    """What one run produced. ``equity`` and ``exposure`` are indexed by bar ts (UTC epoch ms).

    ``equity`` has one point per timestamp, valued at that bar's close (its first point is the starting
    equity, since no order can fill before the second bar). ``exposure`` is gross position value / equity at
    the same points. ``open_positions`` are those still open at the end (see ``KernelConfig.close_at_end``).
    """

    equity: pd.Series
    exposure: pd.Series
    trades: list[Trade]
    orders: list[Order]
    fills: list[Fill]
    open_positions: list[Position]
    traded_notional: float
    initial_cash: float
    strategy: str
    params: dict[str, Any]
    config: KernelConfig
    symbols: tuple[str, ...]
    timeframe: Timeframe | None
    bars: int
    elapsed_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final_equity(self) -> float:
        return float(self.equity.iloc[-1]) if len(self.equity) else self.initial_cash

    @property
    def total_return(self) -> float:
        return self.final_equity / self.initial_cash - 1.0

    @property
    def bars_per_second(self) -> float:
        return self.bars / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def trades_frame(self) -> pd.DataFrame:
        columns = list(Trade.__dataclass_fields__)
        return pd.DataFrame([t.to_dict() for t in self.trades], columns=columns)

    def fills_frame(self) -> pd.DataFrame:
        columns = list(Fill.__dataclass_fields__)
        return pd.DataFrame([asdict(f) for f in self.fills], columns=columns)

    def orders_frame(self) -> pd.DataFrame:
        columns = list(Order.__dataclass_fields__)
        return pd.DataFrame([asdict(o) for o in self.orders], columns=columns)


def _frames(candles: Candles, symbol: str) -> dict[str, pd.DataFrame]:
    if isinstance(candles, pd.DataFrame):
        return {symbol: candles}
    if not candles:
        raise ValidationError("no candles to backtest")
    return dict(candles)


_new_bar = partial(tuple.__new__, Candle)  # Candle from a row tuple without a Python-level call (hot path)
_COLUMNS = ("ts", "open", "high", "low", "close", "volume")


def _merged(frames: Mapping[str, pd.DataFrame]) -> tuple[list[str], Iterator[Candle]]:
    """The symbol of every candle, and the candles, in ``(ts, symbol order)`` order."""
    names = list(frames)
    parts = [as_candle_frame(frames[s]) for s in names]
    ts = np.concatenate([p["ts"].to_numpy() for p in parts])
    which = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(parts)])
    order = np.lexsort((which, ts))
    columns = [np.concatenate([p[c].to_numpy() for p in parts])[order].tolist() for c in _COLUMNS]
    symbols = [names[k] for k in which[order].tolist()]
    return symbols, map(_new_bar, zip(*columns, strict=True))


def iter_bars(frames: Mapping[str, pd.DataFrame]) -> Iterator[tuple[str, Candle]]:
    """All candles of all symbols as ``(symbol, Candle)`` in ``(ts, symbol order)`` order."""
    symbols, bars = _merged(frames)
    return zip(symbols, bars, strict=True)


ProgressFn = Callable[[int, int], None]
"""``progress(done, total)`` in candles, called every ``progress_every`` candles and once at the end."""


def run_kernel(
    kernel: Kernel,
    frames: Mapping[str, pd.DataFrame],
    *,
    progress: ProgressFn | None = None,
    progress_every: int = 2000,
) -> int:
    """Feed every candle of ``frames`` to ``kernel`` in time order; returns the number of candles."""
    on_candle = kernel.on_candle
    if progress is not None:  # the plain loops below stay free of the per-candle check
        total = sum(len(f) for f in frames.values())
        for done, (symbol, bar) in enumerate(iter_bars(frames), start=1):
            on_candle(symbol, bar)
            if done % progress_every == 0:
                progress(done, total)
        progress(total, total)
        return total
    if len(frames) == 1:
        symbol, frame = next(iter(frames.items()))
        frame = as_candle_frame(frame)
        columns = [frame[c].to_numpy().tolist() for c in _COLUMNS]
        for bar in map(_new_bar, zip(*columns, strict=True)):
            on_candle(symbol, bar)
        return len(frame)
    symbols, bars = _merged(frames)
    for symbol, bar in zip(symbols, bars, strict=True):
        on_candle(symbol, bar)
    return len(symbols)


def run_backtest(
    candles: Candles,
    strategy: StrategyFactory | str,
    *,
    params: Mapping[str, Any] | None = None,
    config: KernelConfig | None = None,
    timeframe: Timeframe | str | None = None,
    symbol: str = "SYMBOL",
    progress: ProgressFn | None = None,
    warmup: Mapping[str, pd.DataFrame] | None = None,
) -> BacktestResult:
    """Backtest ``strategy`` (a registered name plus ``params``, or a factory) over candle frames.

    ``candles`` is one candle frame (named ``symbol``) or a mapping symbol → frame sharing one cash account.
    ``warmup``: candles before the window (``warmup_frames``) fed to the strategy first (features, history, its
    stance) without fills or equity, so an SMA-200 trades from the window's first bar, as a live run that has seen
    them would. ``progress(done, total)`` is called as candles are processed (progress bars, background jobs).
    """
    frames = _frames(candles, symbol)
    params = dict(params or {})
    if isinstance(strategy, str):
        factory = strategy_factory(strategy, **params)
        name = strategy
    else:
        factory = strategy
        name = getattr(strategy, "__name__", type(strategy).__name__)
    cfg = config if config is not None else KernelConfig()
    kernel = Kernel(factory, cfg)
    started = time.perf_counter()
    warm = {s: f for s, f in (warmup or {}).items() if not f.empty}
    for warm_symbol, bar in iter_bars(warm) if warm else ():
        kernel.warm_up(warm_symbol, bar)
    bars = run_kernel(kernel, frames, progress=progress)
    open_positions = kernel.finish()
    elapsed = time.perf_counter() - started
    if bars and not params:
        params = kernel.strategy(next(iter(frames))).params()
    return _result(kernel, name, params, cfg, tuple(frames), timeframe, bars, elapsed, open_positions)


def _result(
    kernel: Kernel,
    name: str,
    params: dict[str, Any],
    cfg: KernelConfig,
    symbols: tuple[str, ...],
    timeframe: Timeframe | str | None,
    bars: int,
    elapsed: float,
    open_positions: list[Position],
) -> BacktestResult:
    index = pd.Index(np.asarray(kernel.equity_ts, dtype=np.int64), name="ts")
    return BacktestResult(
        equity=pd.Series(np.asarray(kernel.equity_values, dtype=np.float64), index=index, name="equity"),
        exposure=pd.Series(np.asarray(kernel.exposure_values, dtype=np.float64), index=index, name="exposure"),
        trades=list(kernel.portfolio.trades),
        orders=list(kernel.orders),
        fills=list(kernel.broker.fills),
        open_positions=open_positions,
        traded_notional=kernel.broker.traded_notional,
        initial_cash=cfg.initial_cash,
        strategy=name,
        params=params,
        config=cfg,
        symbols=symbols,
        timeframe=Timeframe.parse(timeframe) if timeframe is not None else None,
        bars=bars,
        elapsed_s=elapsed,
    )


def warmup_frames(
    store: CandleStore, symbols: Sequence[str], timeframe: Timeframe | str, start: int, strategy: StrategyFactory,
    *, extra_bars: int = 0,
) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Per symbol, the stored candles just before ``start`` that ``strategy`` needs to warm up (its
    ``warmup_bars()`` plus ``extra_bars``, e.g. a sizer's lookback); empty where none are stored."""
    tf = Timeframe.parse(str(timeframe))
    out = {}
    for symbol in symbols:
        wanted = max(0, strategy(symbol).warmup_bars()) + extra_bars
        if wanted == 0:
            out[symbol] = empty_candles()
            continue
        frame = store.read_candles(symbol, tf, start - 2 * wanted * tf.ms, start)  # room for a few gaps
        out[symbol] = frame.iloc[-wanted:].reset_index(drop=True)
    return out


def run_backtest_from_store(
    store: CandleStore,
    symbols: Sequence[str],
    timeframe: Timeframe | str,
    strategy: StrategyFactory | str,
    *,
    start: int | None = None,
    end: int | None = None,
    params: Mapping[str, Any] | None = None,
    config: KernelConfig | None = None,
) -> BacktestResult:
    """Read ``symbols`` at ``timeframe`` (``start <= ts < end``) from a candle store and backtest them."""
    tf = Timeframe.parse(timeframe)
    frames = {s: store.read_candles(s, tf, start, end) for s in symbols}
    empty = [s for s, f in frames.items() if f.empty]
    if empty:
        raise ValidationError(f"no candles for {', '.join(empty)} at {tf} in the requested range")
    return run_backtest(frames, strategy, params=params, config=config, timeframe=tf)


__all__ = [
    "BacktestResult",
    "Candles",
    "iter_bars",
    "run_backtest",
    "run_backtest_from_store",
    "run_kernel",
    "warmup_frames",
]
