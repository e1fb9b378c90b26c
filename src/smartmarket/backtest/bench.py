"""Backtest throughput: the kernel, the compiled sweep and backtesting.py on the same synthetic bars
(``smartmarket bench backtest``).

Both engines run ``sma_cross`` on one random-walk series with zero fees. The kernel's time covers the whole
``run_backtest`` call (frame → candles → kernel → result, SMAs updated incrementally per bar);
backtesting.py's covers ``Backtest.run`` given the same precomputed SMA arrays (its vectorised indicator
step is then nearly free, which favours it). Times are the best of ``repeat`` runs, as wall-clock seconds
and as CPU seconds of this process (the latter is what to compare on a busy machine). Not a test: timings
depend on the machine and its load.

The compiled sweep (``engine.sweep``) runs the grid ``SWEEP_GRID`` of sma_cross (every fast < slow) over the
same bars in one call, indicators included; its figure is bars × parameter sets per second.

vectorbt, when installed, runs the same single set and the same grid the way its users write it: its own moving
averages (``vbt.MA.run``), its crossover accessors, and ``Portfolio.from_signals`` with the signals moved one bar
later and filled at the open (our next-open fills), reversing long ↔ short with all the equity (size = inf).
Its numba functions are compiled on a small slice before the timing, as ours are.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.backtest.runner import run_backtest
from smartmarket.backtest.sweep import prepare, run_sweep
from smartmarket.engine.kernel import KernelConfig
from smartmarket.execution.fees import NO_FEES
from smartmarket.features.indicators import make_indicator

SWEEP_GRID = {"fast": range(5, 55, 5), "slow": range(20, 210, 10)}
"""fast 5..50 step 5 x slow 20..200 step 10, keeping fast < slow: 174 parameter sets."""


@dataclass(frozen=True, slots=True)
class Timing:
    """Best wall-clock and best CPU seconds over the repeats."""

    wall_s: float
    cpu_s: float


class _Stopwatch:
    def __init__(self) -> None:
        self.wall, self.cpu = float("inf"), float("inf")

    def __enter__(self) -> _Stopwatch:
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = min(self.wall, time.perf_counter() - self._wall0)
        self.cpu = min(self.cpu, time.process_time() - self._cpu0)

    @property
    def timing(self) -> Timing:
        return Timing(self.wall, self.cpu)


@dataclass(frozen=True, slots=True)
class BacktestBench:
    """Throughput of both engines on ``bars`` bars (``peer_*`` is None when backtesting.py is absent)."""

    bars: int
    fast: int
    slow: int
    kernel: Timing
    kernel_trades: int
    kernel_final_equity: float
    peer: Timing | None = None
    peer_trades: int | None = None
    peer_final_equity: float | None = None
    sweep: Timing | None = None
    sweep_param_sets: int = 0
    sweep_final_equity: float | None = None  # of the (fast, slow) set, equal to the kernel's
    vectorbt: VectorbtBench | None = None

    @property
    def sweep_bars_per_s(self) -> float | None:
        """Bars x parameter sets per wall-clock second of the compiled sweep."""
        return self.bars * self.sweep_param_sets / self.sweep.wall_s if self.sweep else None

    @property
    def sweep_bars_per_cpu_s(self) -> float | None:
        """Bars x parameter sets per CPU second of the compiled sweep."""
        return self.bars * self.sweep_param_sets / self.sweep.cpu_s if self.sweep else None

    @property
    def sweep_speedup(self) -> float | None:
        """Sweep throughput (bars x sets per CPU second) over the kernel's bars per CPU second."""
        per_cpu = self.sweep_bars_per_cpu_s
        return per_cpu / self.kernel_bars_per_cpu_s if per_cpu else None

    @property
    def sweep_vs_vectorbt(self) -> float | None:
        """Our sweep's bars x sets per CPU second over vectorbt's on the same grid (None without vectorbt)."""
        ours = self.sweep_bars_per_cpu_s
        return ours / self.vectorbt.sweep_bars_per_cpu_s if ours and self.vectorbt else None

    @property
    def kernel_bars_per_s(self) -> float:
        return self.bars / self.kernel.wall_s

    @property
    def kernel_bars_per_cpu_s(self) -> float:
        return self.bars / self.kernel.cpu_s

    @property
    def peer_bars_per_s(self) -> float | None:
        return self.bars / self.peer.wall_s if self.peer else None

    @property
    def peer_bars_per_cpu_s(self) -> float | None:
        return self.bars / self.peer.cpu_s if self.peer else None

    @property
    def speedup(self) -> float | None:
        """How many times faster the kernel is than backtesting.py (CPU time)."""
        return self.peer.cpu_s / self.kernel.cpu_s if self.peer else None


@dataclass(frozen=True, slots=True)
class VectorbtBench:
    """vectorbt on the same bars: one set (``single``) and the sweep grid (``sweep``, ``param_sets`` columns)."""

    version: str
    bars: int
    single: Timing
    trades: int
    final_equity: float
    sweep: Timing
    param_sets: int
    sweep_final_equity: float  # of the first set, (fast, slow)

    @property
    def bars_per_cpu_s(self) -> float:
        return self.bars / self.single.cpu_s

    @property
    def bars_per_s(self) -> float:
        return self.bars / self.single.wall_s

    @property
    def sweep_bars_per_cpu_s(self) -> float:
        return self.bars * self.param_sets / self.sweep.cpu_s

    @property
    def sweep_bars_per_s(self) -> float:
        return self.bars * self.param_sets / self.sweep.wall_s


KERNEL_CASH = 1_000_000.0
PEER_CASH = 1e12  # backtesting.py trades whole units: a huge account makes rounding negligible


def random_walk_candles(rows: int, *, seed: int = 0, step_ms: int = 60_000, start_price: float = 100.0) -> pd.DataFrame:
    """A candle frame of a geometric random walk (0.2 % per bar), each open at the previous close."""
    rng = np.random.default_rng(seed)
    close = start_price * np.exp(np.cumsum(rng.normal(0.0, 0.002, rows)))
    open_ = np.r_[start_price, close[:-1]]
    wick = rng.uniform(0.0, 0.001, (2, rows))
    return pd.DataFrame(
        {
            "ts": np.arange(rows, dtype=np.int64) * step_ms,
            "open": open_,
            "high": np.maximum(open_, close) * (1.0 + wick[0]),
            "low": np.minimum(open_, close) * (1.0 - wick[1]),
            "close": close,
            "volume": rng.uniform(1.0, 10.0, rows),
        }
    )


def _time_kernel(candles: pd.DataFrame, fast: int, slow: int, repeat: int) -> tuple[Timing, int, float]:
    watch, trades, final = _Stopwatch(), 0, 0.0
    config = KernelConfig(initial_cash=KERNEL_CASH, fees=NO_FEES)
    for _ in range(repeat):
        with watch:
            result = run_backtest(candles, "sma_cross", params={"fast": fast, "slow": slow}, config=config)
        trades, final = len(result.trades), result.final_equity
    return watch.timing, trades, final


def peer_sma_cross(candles: pd.DataFrame, fast: int, slow: int) -> tuple[type, pd.DataFrame]:
    """backtesting.py's sma_cross on our own SMA values, and the candles in its data format (for the benchmark and
    the trade-for-trade parity test). Raises ImportError when backtesting.py is not installed."""
    from backtesting import Strategy  # an optional peer, only for comparisons
    from backtesting.lib import crossover

    fast_sma = make_indicator(f"sma_{fast}").batch(candles).iloc[:, 0].to_numpy()
    slow_sma = make_indicator(f"sma_{slow}").batch(candles).iloc[:, 0].to_numpy()

    class PeerSmaCross(Strategy):
        def init(self) -> None:
            self.fast = self.I(lambda: fast_sma, name="fast")
            self.slow = self.I(lambda: slow_sma, name="slow")

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.sell()

    data = candles.rename(columns=str.capitalize).set_index(pd.to_datetime(candles["ts"], unit="ms"))
    return PeerSmaCross, data[["Open", "High", "Low", "Close", "Volume"]]


def _time_peer(candles: pd.DataFrame, fast: int, slow: int, repeat: int) -> tuple[Timing, int, float] | None:
    try:
        from backtesting import Backtest

        PeerSmaCross, data = peer_sma_cross(candles, fast, slow)
    except ImportError:
        return None
    watch, trades, final = _Stopwatch(), 0, 0.0
    for _ in range(repeat):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peer = Backtest(data, PeerSmaCross, cash=PEER_CASH, exclusive_orders=True, trade_on_close=False)
            with watch:
                stats = peer.run()
        trades, final = len(stats["_trades"]), float(stats["Equity Final [$]"])
    return watch.timing, trades, final


def sweep_param_sets(fast: int, slow: int) -> list[dict[str, int]]:
    """``SWEEP_GRID`` (fast < slow), with (``fast``, ``slow``) first so its result can be checked."""
    sets = [{"fast": f, "slow": s} for f in SWEEP_GRID["fast"] for s in SWEEP_GRID["slow"] if f < s]
    first = {"fast": fast, "slow": slow}
    return [first, *[p for p in sets if p != first]]


def _time_sweep(candles: pd.DataFrame, fast: int, slow: int, repeat: int) -> tuple[Timing, int, float]:
    watch, final = _Stopwatch(), 0.0
    config = KernelConfig(initial_cash=KERNEL_CASH, fees=NO_FEES)
    sets = sweep_param_sets(fast, slow)
    run_sweep(candles.iloc[:1000], "sma_cross", sets[:2], config=config)  # compile outside the timing
    for _ in range(repeat):
        with watch:  # indicators (one per distinct period), codes and fills of every set
            result = run_sweep(prepare(candles, config), "sma_cross", sets)
        final = float(result.final_equity[0])
    return watch.timing, len(sets), final


def vectorbt_sma_cross(candles: pd.DataFrame, sets: list[dict[str, int]]) -> Any:
    """vectorbt's Portfolio of sma_cross for every set in ``sets`` (one column each), written as its users do."""
    import vectorbt as vbt  # an optional peer, only for comparisons

    close, open_ = candles["close"], candles["open"]
    fast = vbt.MA.run(close, window=[p["fast"] for p in sets]).ma.to_numpy()
    slow = vbt.MA.run(close, window=[p["slow"] for p in sets]).ma.to_numpy()
    fast_frame, slow_frame = pd.DataFrame(fast), pd.DataFrame(slow)
    up = fast_frame.vbt.crossed_above(slow_frame).to_numpy()
    down = fast_frame.vbt.crossed_below(slow_frame).to_numpy()
    # decided at the close, filled at the next open: the signal moves one bar later and fills at that bar's open
    entries = np.vstack([np.zeros((1, len(sets)), dtype=bool), up[:-1]])
    shorts = np.vstack([np.zeros((1, len(sets)), dtype=bool), down[:-1]])
    none = np.zeros_like(entries)
    return vbt.Portfolio.from_signals(
        close.to_numpy()[:, None], entries=entries, exits=none, short_entries=shorts, short_exits=none,
        price=open_.to_numpy()[:, None], init_cash=KERNEL_CASH, fees=0.0, size=np.inf, upon_opposite_entry="reverse",
    )  # fmt: skip


def _time_vectorbt(candles: pd.DataFrame, fast: int, slow: int, repeat: int) -> VectorbtBench | None:
    try:
        import vectorbt as vbt
    except ImportError:
        return None
    sets = sweep_param_sets(fast, slow)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vectorbt_sma_cross(candles.iloc[:1000].reset_index(drop=True), sets[:2])  # compile outside the timing
        single, many = _Stopwatch(), _Stopwatch()
        for _ in range(repeat):
            with single:
                one = vectorbt_sma_cross(candles, sets[:1])
                trades, final = int(one.trades.count().iloc[0]), float(one.final_value().iloc[0])
            with many:
                grid = vectorbt_sma_cross(candles, sets)
                grid_final = float(grid.final_value().iloc[0])
    return VectorbtBench(
        str(vbt.__version__), len(candles), single.timing, trades, final, many.timing, len(sets), grid_final
    )


def bench_backtest(
    bars: int = 500_000,
    *,
    fast: int = 10,
    slow: int = 30,
    seed: int = 0,
    repeat: int = 3,
    peer: bool = True,
    peer_repeat: int = 1,
    sweep: bool = True,
) -> BacktestBench:
    """Measure the kernel, the compiled sweep and (when installed) backtesting.py and vectorbt on ``bars``
    random-walk bars."""
    candles = random_walk_candles(bars, seed=seed)
    kernel, kernel_trades, kernel_final = _time_kernel(candles, fast, slow, repeat)
    sweep_timing, sweep_sets, sweep_final = _time_sweep(candles, fast, slow, repeat) if sweep else (None, 0, None)
    measured = _time_peer(candles, fast, slow, peer_repeat) if peer else None
    peer_timing, peer_trades, peer_final = measured if measured is not None else (None, None, None)
    vectorbt = _time_vectorbt(candles, fast, slow, repeat) if peer else None
    return BacktestBench(
        bars, fast, slow, kernel, kernel_trades, kernel_final, peer_timing, peer_trades, peer_final,
        sweep_timing, sweep_sets, sweep_final, vectorbt,
    )  # fmt: skip


__all__ = [
    "KERNEL_CASH",
    "PEER_CASH",
    "SWEEP_GRID",
    "BacktestBench",
    "Timing",
    "VectorbtBench",
    "bench_backtest",
    "random_walk_candles",
    "sweep_param_sets",
    "vectorbt_sma_cross",
]
