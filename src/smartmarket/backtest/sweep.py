"""Compiled parameter sweeps: many parameter sets of one array-capable strategy per pass over the candles.

A strategy with an array form (:mod:`smartmarket.strategies.arrays`: ``sma_cross``, ``rsi_reversion``,
``buy_hold``) turns each parameter set into one decision code per bar; :mod:`smartmarket.engine.sweep_kernel`
then replays the kernel's execution over those codes in compiled code — next-open fills sized from equity at
the fill price including the taker fee, fees, slippage (fixed or volatility), sizing, stops/targets/trailing
stops with the kernel's intrabar rules, long/short, exposure limits, latency, ``close_at_end``, and the
rebalancing of a volatility-targeting sizer (resize orders when its fraction leaves the band).

* :func:`run_array_backtest` is one run with everything recorded: a :class:`BacktestResult` whose trades and
  equity equal ``run_backtest``'s (tested on real data).
* :func:`run_sweep` runs many parameter sets and keeps per-set summaries only (final equity, trades, max
  drawdown, bar-return sums overall and per block of bars: enough for Sharpe/Sortino/Calmar objectives and
  for combinatorially symmetric cross-validation, see ``analytics.pbo``).

Single symbol only; the sweep starts flat at the first bar of the range (no warm-up feeding).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.backtest.runner import BacktestResult
from smartmarket.core.errors import ConfigError, ValidationError
from smartmarket.core.frame import as_candle_frame
from smartmarket.core.trading import Trade
from smartmarket.core.types import Timeframe
from smartmarket.engine import sweep_kernel as sk
from smartmarket.engine.kernel import KernelConfig
from smartmarket.execution.orders import Decision
from smartmarket.execution.sizing import FixedFraction
from smartmarket.execution.slippage import FixedBps, VolatilitySlippage

_LONG = Decision("long")


def unsupported_reason(config: KernelConfig) -> str | None:
    """Why ``config`` cannot run on the compiled path (None when it can)."""
    if type(config.slippage) not in (FixedBps, VolatilitySlippage):
        return f"slippage model {type(config.slippage).__name__} has no compiled form"
    return None


def has_array_form(strategy: str) -> bool:
    """Whether the registered ``strategy`` can run on the compiled path."""
    from smartmarket.strategies.arrays import array_form

    return array_form(strategy) is not None


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _parameters(config: KernelConfig) -> tuple[np.ndarray, np.ndarray]:
    reason = unsupported_reason(config)
    if reason is not None:
        raise ConfigError(f"the compiled sweep cannot run this configuration: {reason}", hint="use run_backtest")
    fp = np.zeros(sk.N_FPARAMS)
    ip = np.zeros(sk.N_IPARAMS, dtype=np.int64)
    fp[sk.F_CASH] = config.initial_cash
    fp[sk.F_MAKER], fp[sk.F_TAKER] = config.fees.maker, config.fees.taker
    slippage = config.slippage
    if isinstance(slippage, VolatilitySlippage):
        fp[sk.F_SLIP_BASE] = slippage.base_bps / 10_000.0
        fp[sk.F_SLIP_MULT] = slippage.multiplier
        fp[sk.F_SLIP_ALPHA] = 2.0 / (slippage.span + 1.0)
        ip[sk.I_SLIP_VOL] = 1
    else:
        assert isinstance(slippage, FixedBps)
        fp[sk.F_SLIP_BASE] = slippage.bps / 10_000.0
    risk = config.risk
    fp[sk.F_SL_PCT], fp[sk.F_TP_PCT] = _nan(risk.stop_loss_pct), _nan(risk.take_profit_pct)
    fp[sk.F_TRAIL_PCT] = _nan(risk.trailing_stop_pct)
    fp[sk.F_MAX_POSITION], fp[sk.F_MAX_GROSS] = risk.max_position_fraction, risk.max_gross_exposure
    band = config.sizer.rebalance_band
    fp[sk.F_BAND] = band if band is not None and config.sizer.lookback > 0 else math.nan
    ip[sk.I_LATENCY] = config.latency_bars
    ip[sk.I_LONG_ONLY] = int(config.long_only)
    ip[sk.I_CLOSE_AT_END] = int(config.close_at_end)
    ip[sk.I_SIZE_AT_OPEN] = int(config.size_at == "fill_open")
    return fp, ip


def _size_fractions(config: KernelConfig, close: np.ndarray) -> np.ndarray:
    """The sizer's unsigned fraction of equity for a decision at each close (no size, stop or confidence)."""
    sizer = config.sizer
    if isinstance(sizer, FixedFraction):
        return np.full(len(close), sizer.fraction(_LONG, 0.0), dtype=np.float64)
    lookback = sizer.lookback
    values = close.tolist()
    out = np.empty(len(close), dtype=np.float64)
    tracker = sizer.tracker()  # the kernel's per-symbol forecaster, updated at each close as the kernel does
    for i, price in enumerate(values):  # the sizer's own code, once per bar (not per parameter set)
        closes = values[max(0, i - lookback) : i + 1] if lookback else ()
        if tracker is not None:
            tracker.update(price)
        out[i] = sizer.fraction(_LONG, price, closes, tracker.forecast() if tracker is not None else None)
    return out


@dataclass(slots=True)
class Prepared:
    """Candle arrays, indicator cache and execution parameters shared by every parameter set of a sweep."""

    frame: pd.DataFrame
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    size_frac: np.ndarray
    fparams: np.ndarray
    iparams: np.ndarray
    config: KernelConfig
    indicators: Any  # strategies.arrays.IndicatorCache (imported lazily: strategies build on engine)

    @property
    def bars(self) -> int:
        return len(self.ts)


def prepare(candles: pd.DataFrame, config: KernelConfig | None = None) -> Prepared:
    """Arrays for the compiled path from one candle frame (checked and sorted like ``run_backtest``)."""
    from smartmarket.strategies.arrays import IndicatorCache

    cfg = config if config is not None else KernelConfig()
    frame = as_candle_frame(candles)
    ts = frame["ts"].to_numpy()
    if len(ts) > 1 and not (np.diff(ts) > 0).all():
        raise ValidationError("candle timestamps must be strictly increasing", hint="deduplicate the frame first")
    cols = [np.ascontiguousarray(frame[c].to_numpy(dtype=np.float64)) for c in ("open", "high", "low", "close")]
    fp, ip = _parameters(cfg)
    o, h, lo, c = cols
    size = _size_fractions(cfg, c)
    return Prepared(frame, np.ascontiguousarray(ts), o, h, lo, c, size, fp, ip, cfg, IndicatorCache(frame))


def _form(strategy: str) -> Any:
    from smartmarket.strategies.arrays import array_form

    form = array_form(strategy)
    if form is None:
        from smartmarket.strategies.arrays import ARRAY_FORMS

        raise ConfigError(
            f"strategy {strategy!r} has no array form for the compiled sweep",
            hint=f"array forms: {', '.join(sorted(ARRAY_FORMS))}; others run through run_backtest",
        )
    return form


def _range(prep: Prepared, start: int | None, end: int | None) -> tuple[int, int]:
    lo = 0 if start is None else max(0, start)
    hi = prep.bars if end is None else min(prep.bars, end)
    return lo, max(lo, hi)


def run_array_backtest(
    candles: pd.DataFrame | Prepared,
    strategy: str,
    *,
    params: Mapping[str, Any] | None = None,
    config: KernelConfig | None = None,
    timeframe: Timeframe | str | None = None,
    symbol: str = "SYMBOL",
) -> BacktestResult:
    """One compiled run with trades and equity recorded; same result as ``run_backtest`` for the same inputs.

    ``orders`` and ``fills`` are not recorded (empty lists); ``extra["engine"]`` is ``"compiled"``.
    """
    from smartmarket.strategies.arrays import checked_params

    prep = candles if isinstance(candles, Prepared) else prepare(candles, config)
    cfg = prep.config
    checked = checked_params(strategy, dict(params or {}))
    started = time.perf_counter()
    codes = _form(strategy).codes(prep.indicators, checked)
    n = prep.bars
    equity = np.empty(n)
    exposure = np.empty(n)
    trades_f = np.empty((n + 1, sk.N_TF))
    trades_i = np.empty((n + 1, sk.N_TI), dtype=np.int64)
    stats = np.zeros(sk.N_STATS)
    blocks = np.zeros((1, sk.N_BSTATS))
    count = sk.simulate(
        prep.ts, prep.open, prep.high, prep.low, prep.close, codes, prep.size_frac, prep.fparams, prep.iparams,
        0, n, equity, exposure, trades_f, trades_i, stats, blocks,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    trades = [
        Trade(
            symbol=symbol,
            side="long" if ti[sk.TI_SIDE] > 0 else "short",
            entry_ts=int(ti[sk.TI_ENTRY_TS]),
            exit_ts=int(ti[sk.TI_EXIT_TS]),
            entry_price=float(tf[sk.TF_ENTRY_PRICE]),
            exit_price=float(tf[sk.TF_EXIT_PRICE]),
            quantity=float(tf[sk.TF_QUANTITY]),
            pnl=float(tf[sk.TF_PNL]),
            fees=float(tf[sk.TF_FEES]),
            entry_bar=int(ti[sk.TI_ENTRY_BAR]),
            exit_bar=int(ti[sk.TI_EXIT_BAR]),
            exit_reason=sk.EXIT_REASONS[int(ti[sk.TI_REASON])],
        )
        for tf, ti in zip(trades_f[:count], trades_i[:count], strict=True)
    ]
    index = pd.Index(prep.ts, name="ts")
    return BacktestResult(
        equity=pd.Series(equity, index=index, name="equity"),
        exposure=pd.Series(exposure, index=index, name="exposure"),
        trades=trades,
        orders=[],
        fills=[],
        open_positions=[],
        traded_notional=float(stats[sk.S_NOTIONAL]),
        initial_cash=cfg.initial_cash,
        strategy=strategy,
        params=checked,
        config=cfg,
        symbols=(symbol,),
        timeframe=Timeframe.parse(timeframe) if timeframe is not None else None,
        bars=n,
        elapsed_s=elapsed,
        extra={"engine": "compiled", "fills": int(stats[sk.S_FILLS])},
    )


@dataclass(slots=True)
class SweepResult:
    """Per-parameter-set summaries of one sweep over bars ``[start, end)``.

    ``stats[k]`` holds ``sweep_kernel.S_*`` fields; ``blocks[k, b]`` the count, sum, sum of squares and
    downside sum of squares of the bar returns in block ``b`` (consecutive, equal in length).
    """

    strategy: str
    params: list[dict[str, Any]]
    stats: np.ndarray
    blocks: np.ndarray
    start_ts: int
    end_ts: int
    initial_cash: float
    bars: int
    elapsed_s: float
    cpu_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def final_equity(self) -> np.ndarray:
        return self.stats[:, sk.S_FINAL]

    @property
    def total_return(self) -> np.ndarray:
        return self.final_equity / self.initial_cash - 1.0

    @property
    def trades(self) -> np.ndarray:
        return self.stats[:, sk.S_TRADES].astype(np.int64)

    @property
    def max_drawdown(self) -> np.ndarray:
        return self.stats[:, sk.S_MAX_DD]

    def bar_sharpe(self) -> np.ndarray:
        """Per-bar Sharpe (mean / std ddof=1 of bar returns) of every set; NaN when undefined."""
        return sharpe_from_sums(self.stats[:, sk.S_N], self.stats[:, sk.S_SUM], self.stats[:, sk.S_SUMSQ])

    def bar_sortino(self) -> np.ndarray:
        """Per-bar Sortino (mean / downside deviation over all bars); NaN when undefined."""
        n, total, down = self.stats[:, sk.S_N], self.stats[:, sk.S_SUM], self.stats[:, sk.S_DOWNSQ]
        with np.errstate(divide="ignore", invalid="ignore"):
            dd = np.sqrt(down / n)
            out = (total / n) / dd
        return np.where((n >= 2) & (dd > 0), out, np.nan)

    @property
    def bars_per_s(self) -> float:
        """Bars × parameter sets per wall-clock second."""
        return self.bars * len(self) / self.elapsed_s if self.elapsed_s > 0 else math.inf

    @property
    def bars_per_cpu_s(self) -> float:
        """Bars × parameter sets per CPU second of this process."""
        return self.bars * len(self) / self.cpu_s if self.cpu_s > 0 else math.inf


def sharpe_from_sums(n: np.ndarray, total: np.ndarray, sumsq: np.ndarray) -> np.ndarray:
    """Mean / sample std (ddof=1) from count, sum and sum of squares; NaN when undefined."""
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / n
        var = (sumsq - n * mean * mean) / (n - 1.0)
        out = mean / np.sqrt(var)
    return np.where((n >= 2) & (var > 0), out, np.nan)


def run_sweep(
    candles: pd.DataFrame | Prepared,
    strategy: str,
    param_sets: Sequence[Mapping[str, Any]],
    *,
    config: KernelConfig | None = None,
    n_blocks: int = 16,
    start: int | None = None,
    end: int | None = None,
    chunk: int = 64,
) -> SweepResult:
    """Run every parameter set of ``strategy`` over the candles (bar positions ``[start, end)``).

    Each set is checked by the strategy itself (``ConfigError`` for one it refuses). Indicators are computed
    once per distinct spec over the whole frame (causal, so a range sees the same values as a run that
    started earlier); each run starts flat at ``start``.
    """
    from smartmarket.strategies.arrays import checked_params

    if n_blocks < 1:
        raise ConfigError(f"n_blocks must be >= 1, got {n_blocks}")
    prep = candles if isinstance(candles, Prepared) else prepare(candles, config)
    form = _form(strategy)
    checked = [checked_params(strategy, dict(p)) for p in param_sets]
    lo, hi = _range(prep, start, end)
    m = len(checked)
    stats = np.zeros((m, sk.N_STATS))
    blocks = np.zeros((m, n_blocks, sk.N_BSTATS))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    codes = np.zeros((min(chunk, max(m, 1)), prep.bars), dtype=np.int8)
    for first in range(0, m, chunk):
        rows = checked[first : first + chunk]
        for k, params in enumerate(rows):
            form.fill(prep.indicators, params, codes[k])
        sk.sweep(
            prep.ts, prep.open, prep.high, prep.low, prep.close, codes[: len(rows)], prep.size_frac,
            prep.fparams, prep.iparams, lo, hi, stats[first : first + len(rows)], blocks[first : first + len(rows)],
        )  # fmt: skip
    elapsed, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    start_ts = int(prep.ts[lo]) if hi > lo else 0
    end_ts = int(prep.ts[hi - 1]) if hi > lo else 0
    return SweepResult(
        strategy, checked, stats, blocks, start_ts, end_ts, prep.config.initial_cash, hi - lo, elapsed, cpu
    )


__all__ = [
    "Prepared",
    "SweepResult",
    "has_array_form",
    "prepare",
    "run_array_backtest",
    "run_sweep",
    "sharpe_from_sums",
    "unsupported_reason",
]
