"""Performance metrics computed from a real equity curve and the real closed trades. Nothing is simulated.

Conventions (used everywhere in ``analytics``):

* **Equity curve**: a ``pd.Series`` of portfolio value, indexed by int64 UTC epoch ms bar times, one value per
  bar close, sorted ascending. Its first value is the *starting equity*: returns are measured from it, so a
  curve of ``n`` values has ``n - 1`` per-bar returns.
* **Returns are fractions**: ``0.12`` means +12 %.
* **Per-bar return** ``r_t = E_t / E_{t-1} - 1``. Once equity has reached zero or below the account is ruined:
  later returns are taken as ``0`` (there is nothing left to gain or lose) instead of dividing by zero.
* **Calendar**: crypto trades 24/7, so ``periods_per_year = 365 * 24 * 3600 * 1000 / timeframe.ms``
  (8760 for 1h bars). The span in years is measured on the index, ``(last_ts - first_ts) / year_ms``,
  which equals ``bars / periods_per_year`` when there are no gaps and stays honest when there are.
* **Maximum drawdown is a positive fraction**: ``0.25`` means the equity fell 25 % below its running peak.
  A value above ``1`` is possible only when equity went negative.
* **Undefined values are ``None``**, never NaN or infinity (e.g. ``profit_factor`` with no losing trade,
  ``sharpe`` when returns have zero variance), so ``Metrics.to_dict()`` always serialises to valid JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.analytics.deflated import probabilistic_sharpe_ratio, return_moments
from smartmarket.core.errors import ValidationError
from smartmarket.core.trading import Trade
from smartmarket.core.types import Timeframe

YEAR_MS = 365 * 24 * 3600 * 1000

ExposureInput = float | Sequence[float] | Sequence[bool] | np.ndarray | pd.Series


@dataclass(frozen=True, slots=True)
class Metrics:
    """Performance summary of one backtest. See the module docstring for units and conventions."""

    # span
    start_ts: int
    end_ts: int
    num_bars: int  # equity points; returns are num_bars - 1
    periods_per_year: float
    years: float  # (end_ts - start_ts) / year_ms
    start_equity: float
    end_equity: float
    # returns and risk
    total_return: float
    annual_return: float  # CAGR over `years`; -1.0 when the account ended at or below zero
    volatility: float | None  # annualised sample std (ddof=1) of per-bar returns
    sharpe: float | None  # annualised: (mean(r) - rf_bar) / std(r, ddof=1) * sqrt(periods_per_year)
    sortino: float | None  # annualised: (mean(r) - rf_bar) / downside_deviation * sqrt(periods_per_year)
    calmar: float | None  # annual_return / max_drawdown
    probabilistic_sharpe: float | None  # P(true per-bar Sharpe > 0), Bailey & López de Prado
    skewness: float | None  # of per-bar returns (population moments)
    kurtosis: float | None  # of per-bar returns, non-excess (normal = 3)
    max_drawdown: float  # positive fraction below the running peak
    max_drawdown_bars: int  # longest time under water, in bars (peak to recovery, or to the end)
    max_drawdown_ms: int  # the same period in milliseconds
    # trades
    num_trades: int
    win_rate: float | None  # trades with pnl > 0 / all trades (a zero-pnl trade is not a win)
    profit_factor: float | None  # gross profit / gross loss; None without losing trades
    expectancy: float | None  # mean net pnl per trade, in account currency
    expectancy_return: float | None  # mean of Trade.return_pct (net pnl / entry notional)
    avg_win: float | None  # mean pnl of winning trades (currency)
    avg_loss: float | None  # mean pnl of losing trades (currency, negative)
    best_trade: float | None  # largest net pnl (currency)
    worst_trade: float | None  # smallest net pnl (currency)
    best_trade_return: float | None
    worst_trade_return: float | None
    total_fees: float
    # activity
    exposure: float  # fraction of the time with an open position, 0..1
    traded_notional: float  # sum of |price * quantity| over all fills
    turnover: float | None  # traded_notional / mean equity (times the equity was traded)
    annual_turnover: float | None  # turnover / years

    def to_dict(self) -> dict[str, Any]:
        """Plain Python ints/floats/None; any non-finite float becomes ``None`` so JSON stays valid."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, bool | np.bool_):
                out[key] = bool(value)
            elif isinstance(value, int | np.integer):
                out[key] = int(value)
            elif isinstance(value, float | np.floating):
                out[key] = float(value) if math.isfinite(value) else None
            else:
                out[key] = value
        return out


def periods_per_year(timeframe: Timeframe) -> float:
    """Bars in a 365-day, 24/7 year (crypto calendar)."""
    return YEAR_MS / timeframe.ms


def validate_equity(equity: pd.Series) -> pd.Series:
    """Check the equity-curve contract and return it as float64 with an int64 index."""
    where = "equity curve"
    if not isinstance(equity, pd.Series):
        raise ValidationError("equity must be a pandas Series", where=where)
    if len(equity) == 0:
        raise ValidationError("equity curve is empty", where=where, hint="run the backtest over at least one bar")
    values = equity.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValidationError("equity curve contains NaN or infinite values", where=where)
    if values[0] <= 0:
        raise ValidationError(f"starting equity must be positive, got {values[0]}", where=where)
    index = equity.index.to_numpy()
    if not np.issubdtype(index.dtype, np.integer):
        raise ValidationError(
            f"equity index must be int64 epoch ms, got {index.dtype}", where=where, hint="index by candle ts"
        )
    index = index.astype(np.int64)
    if len(index) > 1 and not (np.diff(index) > 0).all():
        raise ValidationError("equity index must be strictly increasing", where=where)
    return pd.Series(values, index=pd.Index(index, dtype=np.int64), name=equity.name)


def bar_returns(equity: pd.Series) -> np.ndarray:
    """Per-bar simple returns ``E_t / E_{t-1} - 1``; ``0`` after equity has reached zero or below."""
    values = equity.to_numpy(dtype=np.float64)
    prev, curr = values[:-1], values[1:]
    alive = prev > 0
    safe_prev = np.where(alive, prev, 1.0)
    return np.where(alive, curr / safe_prev - 1.0, 0.0)


def drawdown_series(equity: pd.Series) -> pd.Series:
    """Drawdown at each bar as a positive fraction below the running peak (0 at a new high)."""
    values = equity.to_numpy(dtype=np.float64)
    peak = np.maximum.accumulate(values)
    return pd.Series(1.0 - values / peak, index=equity.index, name="drawdown")


def max_drawdown_duration(equity: pd.Series) -> tuple[int, int]:
    """Longest under-water period as ``(bars, ms)``: from a peak to the first bar back at or above it,
    or to the last bar when the equity never recovered."""
    values = equity.to_numpy(dtype=np.float64)
    ts = equity.index.to_numpy(dtype=np.int64)
    peak = np.maximum.accumulate(values)
    under = values < peak
    best_bars, best_ms = 0, 0
    peak_pos = 0
    for i in range(len(values)):
        if not under[i]:
            peak_pos = i  # a new high or a recovery to the old one ends any drawdown
            continue
        # position i is under water; the stretch so far runs from the peak bar to i
        ends_here = i == len(values) - 1 or not under[i + 1]
        if ends_here:
            end = i + 1 if i + 1 < len(values) else i  # recovery bar, or the last bar if unrecovered
            bars, ms = end - peak_pos, int(ts[end] - ts[peak_pos])
            if bars > best_bars:
                best_bars, best_ms = bars, ms
    return best_bars, best_ms


def annualised_sharpe(returns: np.ndarray, ppy: float, rf_per_bar: float = 0.0) -> float | None:
    """Mean excess per-bar return over its sample std (ddof=1), times ``sqrt(ppy)``. None if undefined."""
    if len(returns) < 2:
        return None
    std = float(np.std(returns, ddof=1))
    if std <= 0 or not math.isfinite(std):
        return None
    return (float(np.mean(returns)) - rf_per_bar) / std * math.sqrt(ppy)


def downside_deviation(returns: np.ndarray, target: float = 0.0) -> float:
    """``sqrt(mean(min(r - target, 0)^2))`` over *all* bars (Sortino & Price): bars above target count as 0."""
    shortfall = np.minimum(returns - target, 0.0)
    return float(np.sqrt(np.mean(shortfall**2)))


def annualised_sortino(returns: np.ndarray, ppy: float, rf_per_bar: float = 0.0) -> float | None:
    """(mean(r) - rf_bar) / downside_deviation(r, rf_bar) * sqrt(ppy). None with no downside or < 2 bars."""
    if len(returns) < 2:
        return None
    dd = downside_deviation(returns, rf_per_bar)
    if dd <= 0:
        return None
    return (float(np.mean(returns)) - rf_per_bar) / dd * math.sqrt(ppy)


def cagr(start_equity: float, end_equity: float, years: float) -> float:
    """Compound annual growth rate; ``-1.0`` when the account ended at or below zero; total return if
    the span is shorter than one bar's worth of time (zero years)."""
    if end_equity <= 0:
        return -1.0
    growth = end_equity / start_equity
    if years <= 0:
        return growth - 1.0
    return float(growth ** (1.0 / years) - 1.0)


def exposure_fraction(exposure: ExposureInput | None, trades: Sequence[Trade], equity: pd.Series) -> float:
    """Fraction of time in the market.

    A float is taken as given; an array (per-bar booleans or positions) gives the share of non-zero bars;
    ``None`` derives it from the trades: the union of ``[entry_ts, exit_ts)`` intervals over the curve's span.
    """
    if exposure is None:
        return _time_in_market(trades, equity)
    if isinstance(exposure, float | int | np.floating | np.integer):
        value = float(exposure)
        if not 0.0 <= value <= 1.0:
            raise ValidationError(f"exposure must be a fraction in [0, 1], got {value}", where="exposure")
        return value
    flags = np.asarray(exposure, dtype=np.float64)
    if flags.size == 0:
        return 0.0
    return float(np.count_nonzero(np.nan_to_num(flags)) / flags.size)


def _time_in_market(trades: Sequence[Trade], equity: pd.Series) -> float:
    start, end = int(equity.index[0]), int(equity.index[-1])
    if end <= start or not trades:
        return 0.0
    spans = sorted((max(t.entry_ts, start), min(t.exit_ts, end)) for t in trades)
    covered, cur_start, cur_end = 0, None, None
    for lo, hi in spans:
        if hi <= lo:
            continue
        if cur_end is None or lo > cur_end:
            if cur_end is not None and cur_start is not None:
                covered += cur_end - cur_start
            cur_start, cur_end = lo, hi
        else:
            cur_end = max(cur_end, hi)
    if cur_end is not None and cur_start is not None:
        covered += cur_end - cur_start
    return covered / (end - start)


def _trade_stats(trades: Sequence[Trade]) -> dict[str, Any]:
    pnl = np.array([t.pnl for t in trades], dtype=np.float64)
    rets = np.array([t.return_pct for t in trades], dtype=np.float64)
    if len(pnl) == 0:
        empty: dict[str, Any] = dict.fromkeys(
            (
                "win_rate",
                "profit_factor",
                "expectancy",
                "expectancy_return",
                "avg_win",
                "avg_loss",
                "best_trade",
                "worst_trade",
                "best_trade_return",
                "worst_trade_return",
            ),
        )
        return empty | {"num_trades": 0, "total_fees": 0.0}
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_loss = -float(losses.sum())
    return {
        "num_trades": len(pnl),
        "win_rate": len(wins) / len(pnl),
        "profit_factor": float(wins.sum()) / gross_loss if gross_loss > 0 else None,
        "expectancy": float(pnl.mean()),
        "expectancy_return": float(rets.mean()),
        "avg_win": float(wins.mean()) if len(wins) else None,
        "avg_loss": float(losses.mean()) if len(losses) else None,
        "best_trade": float(pnl.max()),
        "worst_trade": float(pnl.min()),
        "best_trade_return": float(rets.max()),
        "worst_trade_return": float(rets.min()),
        "total_fees": float(sum(t.fees for t in trades)),
    }


def compute_metrics(
    equity: pd.Series,
    trades: Sequence[Trade],
    timeframe: Timeframe,
    *,
    exposure: ExposureInput | None = None,
    traded_notional: float | None = None,
    risk_free: float = 0.0,
) -> Metrics:
    """Measure a backtest from its equity curve and closed trades.

    ``risk_free`` is an *annual* rate (fraction), converted to a per-bar rate ``(1 + rf)^(1/ppy) - 1``.
    ``traded_notional`` defaults to the sum of entry and exit notionals of the trades.
    """
    curve = validate_equity(equity)
    tf = Timeframe.parse(timeframe)
    ppy = periods_per_year(tf)
    start_ts, end_ts = int(curve.index[0]), int(curve.index[-1])
    years = (end_ts - start_ts) / YEAR_MS
    start_eq, end_eq = float(curve.iloc[0]), float(curve.iloc[-1])
    returns = bar_returns(curve)
    rf_bar = (1.0 + risk_free) ** (1.0 / ppy) - 1.0

    annual = cagr(start_eq, end_eq, years)
    max_dd = float(drawdown_series(curve).max())
    dd_bars, dd_ms = max_drawdown_duration(curve)
    vol = float(np.std(returns, ddof=1)) * math.sqrt(ppy) if len(returns) >= 2 else None
    moments = return_moments(returns)
    psr = None
    if moments.sharpe is not None and moments.skewness is not None and moments.kurtosis is not None:
        try:
            psr = probabilistic_sharpe_ratio(moments.sharpe, moments.n_obs, moments.skewness, moments.kurtosis)
        except ValueError:
            psr = None  # moments outside the formula's domain (extreme skew): leave undefined
    if traded_notional is None:
        traded_notional = float(sum(abs(t.entry_price * t.quantity) + abs(t.exit_price * t.quantity) for t in trades))
    mean_equity = float(curve.mean())
    turnover = traded_notional / mean_equity if mean_equity > 0 else None
    return Metrics(
        start_ts=start_ts,
        end_ts=end_ts,
        num_bars=len(curve),
        periods_per_year=ppy,
        years=years,
        start_equity=start_eq,
        end_equity=end_eq,
        total_return=end_eq / start_eq - 1.0,
        annual_return=annual,
        volatility=vol,
        sharpe=annualised_sharpe(returns, ppy, rf_bar),
        sortino=annualised_sortino(returns, ppy, rf_bar),
        calmar=annual / max_dd if max_dd > 0 else None,
        probabilistic_sharpe=psr,
        skewness=moments.skewness,
        kurtosis=moments.kurtosis,
        max_drawdown=max_dd,
        max_drawdown_bars=dd_bars,
        max_drawdown_ms=dd_ms,
        exposure=exposure_fraction(exposure, trades, curve),
        traded_notional=float(traded_notional),
        turnover=turnover,
        annual_turnover=turnover / years if turnover is not None and years > 0 else None,
        **_trade_stats(trades),
    )


__all__ = [
    "YEAR_MS",
    "ExposureInput",
    "Metrics",
    "annualised_sharpe",
    "annualised_sortino",
    "bar_returns",
    "cagr",
    "compute_metrics",
    "downside_deviation",
    "drawdown_series",
    "exposure_fraction",
    "max_drawdown_duration",
    "periods_per_year",
    "validate_equity",
]
