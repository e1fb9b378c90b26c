"""A synthetic market for tests, demos and benchmarks.

The market switches between four *regimes* (a Markov chain over regime segments whose lengths are random):
ranges that revert to the level they started at, trends up and down, and volatile stretches. Inside every
regime, bar returns are Student-t shocks scaled by a GARCH(1,1) volatility whose long-run level depends on the
regime, so calm and turbulent spells cluster; rare Laplace jumps are added on top (more often when volatile)
and feed the GARCH volatility like any large return. Volume grows with volatility and with the size of the
bar's move, with a mild time-of-day cycle.

Candles are consistent by construction: every open equals the previous close, ``high >= max(open, close)``,
``low <= min(open, close)``, all prices positive (the simulation runs on log prices). Everything is drawn
from ``numpy.random.Generator`` streams spawned from one seed, so a seed reproduces a market exactly; the
per-bar recursion is compiled with numba, the rest is vectorised (5 million 1m candles take about a second).

**Planted edge** (off by default; ``MarketParams.planted_edge``): a drift of ``planted_edge`` bar sigmas per bar
whose sign is the sign of the trailing ``planted_edge_lookback``-bar log return (time-series momentum), added in
the regimes flagged by ``planted_edge_regimes``. The trailing return is known at the previous close, so any model
that sees trailing returns can learn it: a market with a known, real edge for demos and for testing that the
evaluation finds one. ``generate`` and every default leave it at 0 (no edge beyond the regimes' own drift).

``regime_labels`` returns the true regime of every bar (for checking a regime detector) and
``extend_with_synthetic`` continues a real series with a market matched to its last close, recent
volatility and recent volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import njit

from smartmarket.core.errors import ConfigError, ValidationError
from smartmarket.core.frame import as_candle_frame
from smartmarket.core.timeutil import format_ms
from smartmarket.core.types import DAY_MS, HOUR_MS, MINUTE_MS, Timeframe

DEFAULT_START_TS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
YEAR_MS = 365.25 * DAY_MS


class Regime(IntEnum):
    """The true state of the synthetic market at a bar."""

    RANGE = 0
    TREND_UP = 1
    TREND_DOWN = 2
    VOLATILE = 3


# Probability of the next regime given the current one (rows: from, columns: to; no self-transitions).
_TRANSITIONS = np.array(
    [
        [0.00, 0.35, 0.35, 0.30],  # from RANGE
        [0.60, 0.00, 0.15, 0.25],  # from TREND_UP
        [0.60, 0.15, 0.00, 0.25],  # from TREND_DOWN
        [0.50, 0.25, 0.25, 0.00],  # from VOLATILE
    ]
)
_REGIME_CHUNK = 256  # regime segments are drawn in fixed-size chunks (the draws never depend on ``rows``)


@dataclass(frozen=True, slots=True)
class MarketParams:
    """Knobs of the synthetic market. Times are in calendar terms so every timeframe looks alike.

    Each tuple has one entry per ``Regime`` (RANGE, TREND_UP, TREND_DOWN, VOLATILE).
    """

    annual_vol: float = 0.6  # long-run volatility of log returns, annualised (BTC-like)
    regime_days: float = 3.0  # mean length of a regime segment, in days
    min_regime_bars: int = 30  # segments never shorter than this (and mean never below 3x this)
    regime_length: tuple[float, float, float, float] = (1.0, 0.8, 0.8, 0.35)  # relative mean lengths
    vol_level: tuple[float, float, float, float] = (0.7, 1.0, 1.1, 2.2)  # volatility relative to annual_vol
    trend_move: float = 0.08  # expected log move over an average trend segment
    range_half_lives: float = 6.0  # a range reverts to its start level this many times per average segment
    garch_alpha: float = 0.08
    garch_beta: float = 0.90
    shock_cap: float = 8.0  # one bar's shock feeds at most this many sigmas into the GARCH variance
    tail_df: float = 5.0  # Student-t degrees of freedom of the shocks (fat tails)
    jumps_per_day: tuple[float, float, float, float] = (0.2, 0.3, 0.3, 1.5)
    jump_scale: float = 0.012  # Laplace scale of a jump's log return
    volume_per_minute: float = 50.0  # typical volume of a calm 1m candle
    volume_vol_elasticity: float = 1.2  # volume ~ volatility ** elasticity
    volume_noise: float = 0.35  # log-normal noise of volume
    wick_scale: float = 0.4  # mean wick beyond the body, in bar sigmas
    planted_edge: float = 0.0  # momentum drift in bar sigmas per bar (0: no planted edge; see the module docstring)
    planted_edge_lookback: int = 24  # bars of the trailing return whose sign the planted drift follows
    planted_edge_regimes: tuple[bool, bool, bool, bool] = (True, True, True, True)  # where it applies

    def bar_sigma(self, timeframe: Timeframe) -> float:
        """Long-run standard deviation of one bar's log return."""
        return self.annual_vol * float(np.sqrt(timeframe.ms / YEAR_MS))

    def mean_regime_bars(self, timeframe: Timeframe) -> float:
        return max(self.regime_days * DAY_MS / timeframe.ms, 3.0 * self.min_regime_bars)


@dataclass(frozen=True, slots=True)
class SyntheticMarket:
    """A generated candle frame with its true regime path (``regimes[i]`` is the regime of row ``i``)."""

    candles: pd.DataFrame
    regimes: npt.NDArray[np.int8] = field(repr=False)
    seed: int
    timeframe: Timeframe


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per purpose, so e.g. the regime path can be drawn alone."""
    names = ("regimes", "shocks", "jumps", "wicks", "volume")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.Generator(np.random.PCG64(child)) for name, child in zip(names, children, strict=True)}


def _regime_path(
    rows: int, timeframe: Timeframe, params: MarketParams, rng: np.random.Generator
) -> npt.NDArray[np.int8]:
    if rows == 0:
        return np.zeros(0, dtype=np.int8)
    mean_bars = params.mean_regime_bars(timeframe)
    mean_by_regime = mean_bars * np.asarray(params.regime_length)
    cumulative = np.cumsum(_TRANSITIONS, axis=1)
    regimes: list[int] = []
    lengths: list[npt.NDArray[np.int64]] = []
    current = int(rng.integers(len(Regime)))
    covered = 0
    while covered < rows:
        # Draw a chunk of segments: the Markov chain needs a short loop, the lengths are vectorised.
        uniforms = rng.random(_REGIME_CHUNK)
        chunk = []
        for u in uniforms:
            chunk.append(current)
            current = int(np.searchsorted(cumulative[current], u, side="right"))
        chunk_arr = np.asarray(chunk)
        seg_lengths = params.min_regime_bars + np.floor(
            rng.exponential(np.maximum(mean_by_regime[chunk_arr] - params.min_regime_bars, 1.0))
        ).astype(np.int64)
        regimes.extend(chunk)
        lengths.append(seg_lengths)
        covered += int(seg_lengths.sum())
    path = np.repeat(np.asarray(regimes, dtype=np.int8), np.concatenate(lengths))
    return path[:rows]


@njit(cache=True)
def _simulate_log_closes(  # pragma: no cover - compiled; exercised through generate_market
    log_start: float,
    regimes: npt.NDArray[np.int8],
    shocks: npt.NDArray[np.float64],
    jumps: npt.NDArray[np.float64],
    target_var: npt.NDArray[np.float64],
    drift: npt.NDArray[np.float64],
    reversion: npt.NDArray[np.float64],
    alpha: float,
    beta: float,
    shock_cap: float,
    edge: npt.NDArray[np.float64],
    edge_lookback: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """GARCH(1,1) log-price recursion; returns (log close, bar sigma) per bar. ``edge[r]``: planted momentum
    drift in bar sigmas in regime ``r`` (sign of the trailing ``edge_lookback``-bar log return)."""
    n = regimes.shape[0]
    log_close = np.empty(n)
    sigma = np.empty(n)
    level = log_start
    anchor = log_start
    var = target_var[regimes[0]] if n else 0.0
    last_shock2 = var
    for t in range(n):
        r = regimes[t]
        if t == 0 or r != regimes[t - 1]:
            anchor = level  # a range reverts to where it began
        var = target_var[r] * (1.0 - alpha - beta) + alpha * last_shock2 + beta * var
        s = np.sqrt(var)
        innovation = s * shocks[t] + jumps[t]
        planted = 0.0
        if edge[r] != 0.0 and t > edge_lookback:
            trailing = level - log_close[t - 1 - edge_lookback]
            planted = edge[r] * s * (1.0 if trailing > 0.0 else -1.0 if trailing < 0.0 else 0.0)
        level += drift[r] - reversion[r] * (level - anchor) + innovation + planted
        cap = shock_cap * s
        last_shock2 = min(innovation * innovation, cap * cap)
        log_close[t] = level
        sigma[t] = s
    return log_close, sigma


def simulate_market(
    rows: int,
    *,
    timeframe: Timeframe = Timeframe.M1,
    seed: int = 0,
    start_ts: int = DEFAULT_START_TS,
    start_price: float = 30000.0,
    params: MarketParams | None = None,
) -> SyntheticMarket:
    """Generate ``rows`` candles and their true regime path. See the module docstring for the model."""
    timeframe = Timeframe.parse(timeframe)
    p = params or MarketParams()
    if rows < 0:
        raise ConfigError(f"rows must be >= 0, got {rows}")
    if start_price <= 0 or not np.isfinite(start_price):
        raise ConfigError(f"start price must be positive, got {start_price}")
    if not timeframe.is_aligned(start_ts):
        raise ConfigError(
            f"start {format_ms(start_ts)} is not aligned to the {timeframe} timeframe",
            hint=f"use a candle open time, e.g. {format_ms(timeframe.bucket_start(start_ts))}",
        )
    rng = _streams(seed)
    regimes = _regime_path(rows, timeframe, p, rng["regimes"])
    sigma0 = p.bar_sigma(timeframe)
    bars_per_day = DAY_MS / timeframe.ms
    mean_bars = p.mean_regime_bars(timeframe)

    # Per-regime constants of the recursion.
    target_var = (sigma0 * np.asarray(p.vol_level)) ** 2
    trend_drift = p.trend_move / (mean_bars * p.regime_length[Regime.TREND_UP])
    drift = np.array([0.0, trend_drift, -trend_drift, 0.0])
    reversion = np.array([np.log(2.0) * p.range_half_lives / mean_bars, 0.0, 0.0, 0.0])

    # Shocks: unit-variance Student-t. Jumps: Bernoulli arrivals with Laplace sizes.
    shocks = rng["shocks"].standard_t(p.tail_df, size=rows) / np.sqrt(p.tail_df / (p.tail_df - 2.0))
    jump_prob = np.minimum(np.asarray(p.jumps_per_day) / bars_per_day, 0.5)[regimes]
    jumps = np.zeros(rows)
    jump_at = rng["jumps"].random(rows) < jump_prob
    jumps[jump_at] = rng["jumps"].laplace(0.0, p.jump_scale, size=int(jump_at.sum()))

    log_close, sigma = _simulate_log_closes(
        float(np.log(start_price)), regimes, shocks, jumps, target_var, drift, reversion,
        p.garch_alpha, p.garch_beta, p.shock_cap, _edge_by_regime(p), int(p.planted_edge_lookback),
    )  # fmt: skip
    log_open = np.empty(rows)
    if rows:
        log_open[0] = np.log(start_price)
        log_open[1:] = log_close[:-1]
    close = np.exp(log_close)
    open_ = np.exp(log_open)
    open_[1:] = close[:-1]  # exactly equal, not merely equal after exp()

    wick_rng = rng["wicks"]
    high = np.maximum(open_, close) * np.exp(sigma * wick_rng.exponential(p.wick_scale, size=rows))
    low = np.minimum(open_, close) * np.exp(-sigma * wick_rng.exponential(p.wick_scale, size=rows))

    ts = start_ts + np.arange(rows, dtype=np.int64) * timeframe.ms
    volume = _volume(ts, timeframe, log_close - log_open, sigma, sigma0, p, rng["volume"])
    candles = pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume})
    return SyntheticMarket(candles=candles, regimes=regimes, seed=seed, timeframe=timeframe)


def _edge_by_regime(p: MarketParams) -> npt.NDArray[np.float64]:
    if not math.isfinite(p.planted_edge) or p.planted_edge_lookback < 1:
        raise ConfigError(
            f"planted edge must be finite with a lookback >= 1, got {p.planted_edge!r} / {p.planted_edge_lookback!r}",
            hint="e.g. MarketParams(planted_edge=0.05, planted_edge_lookback=24)",
        )
    return np.array([p.planted_edge if on else 0.0 for on in p.planted_edge_regimes], dtype=np.float64)


def _volume(
    ts: npt.NDArray[np.int64],
    timeframe: Timeframe,
    log_return: npt.NDArray[np.float64],
    sigma: npt.NDArray[np.float64],
    sigma0: float,
    p: MarketParams,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Volume rising with the volatility level and with the bar's own move, plus a time-of-day cycle."""
    base = p.volume_per_minute * timeframe.ms / MINUTE_MS
    move = np.minimum(np.abs(log_return) / sigma, 6.0)
    level = (sigma / sigma0) ** p.volume_vol_elasticity
    if timeframe.ms < DAY_MS:
        hour = (ts % DAY_MS) / HOUR_MS
        level = level * (1.0 + 0.3 * np.cos(2.0 * np.pi * (hour - 15.0) / 24.0))  # busiest mid-afternoon UTC
    noise = rng.normal(-0.5 * p.volume_noise**2, p.volume_noise, size=len(ts))
    return np.asarray(base * level * np.exp(0.5 * (move - 0.8) + noise), dtype=np.float64)


def generate_market(
    rows: int,
    *,
    timeframe: Timeframe = Timeframe.M1,
    seed: int = 0,
    start_ts: int = DEFAULT_START_TS,
    start_price: float = 30000.0,
    params: MarketParams | None = None,
) -> pd.DataFrame:
    """A canonical candle frame of ``rows`` synthetic candles from ``start_ts``, reproducible from ``seed``."""
    return simulate_market(
        rows, timeframe=timeframe, seed=seed, start_ts=start_ts, start_price=start_price, params=params
    ).candles


def regime_labels(
    rows: int, *, timeframe: Timeframe = Timeframe.M1, seed: int = 0, params: MarketParams | None = None
) -> npt.NDArray[np.int8]:
    """The true ``Regime`` of each bar of ``generate_market(rows, timeframe=…, seed=…)`` (without pricing it)."""
    timeframe = Timeframe.parse(timeframe)
    return _regime_path(rows, timeframe, params or MarketParams(), _streams(seed)["regimes"])


def extend_with_synthetic(
    real: pd.DataFrame,
    timeframe: Timeframe,
    rows_total: int,
    seed: int = 0,
    *,
    lookback: int = 2000,
) -> pd.DataFrame:
    """``real`` followed by synthetic candles until the frame has ``rows_total`` rows.

    The continuation opens at the last real close, one candle after the last real one, with the volatility
    and the median volume of the last ``lookback`` real candles. Real rows are returned unchanged; if there
    are already ``rows_total`` or more, ``real`` is returned as is.
    """
    timeframe = Timeframe.parse(timeframe)
    real = as_candle_frame(real)
    if real.empty:
        raise ValidationError("cannot extend an empty series", hint="pass at least a few real candles")
    missing = rows_total - len(real)
    if missing <= 0:
        return real
    params = _params_like(real.tail(lookback), timeframe)
    last = real.iloc[-1]
    synthetic = generate_market(
        missing,
        timeframe=timeframe,
        seed=seed,
        start_ts=int(last["ts"]) + timeframe.ms,
        start_price=float(last["close"]),
        params=params,
    )
    return pd.concat([real, synthetic], ignore_index=True)


def _params_like(recent: pd.DataFrame, timeframe: Timeframe) -> MarketParams:
    """Market parameters whose volatility and volume match ``recent`` candles."""
    defaults = MarketParams()
    closes = recent["close"].to_numpy()
    log_returns = np.diff(np.log(closes[closes > 0]))
    params = defaults
    if len(log_returns) >= 2:
        # Robust scale (median absolute deviation): gaps in the real data make a few returns huge.
        mad = float(np.median(np.abs(log_returns - np.median(log_returns))))
        bar_sigma = 1.4826 * mad
        if bar_sigma > 0:
            # Calm regimes dominate a typical window; scale so the average regime level matches.
            typical_level = float(np.mean(defaults.vol_level[:3]))
            annual = bar_sigma / typical_level / np.sqrt(timeframe.ms / YEAR_MS)
            params = replace(params, annual_vol=annual)
    median_volume = float(np.median(recent["volume"].to_numpy()))
    if median_volume > 0:
        params = replace(params, volume_per_minute=median_volume / (timeframe.ms / MINUTE_MS))
    return params


def garch_candles(
    n: int,
    *,
    annual_vol: float = 0.8,
    alpha: float = 0.1,
    beta: float = 0.85,
    timeframe: Timeframe | str = "1d",
    seed: int = 0,
    start_ts: int = DEFAULT_START_TS,
    start_price: float = 100.0,
) -> pd.DataFrame:
    """``n`` candles whose log returns are a plain GARCH(1,1) with Gaussian shocks and zero mean.

    sigma2_t = omega + alpha r_{t-1}^2 + beta sigma2_{t-1}, with omega set so the unconditional volatility is
    ``annual_vol`` (365-day year of ``timeframe`` bars). No regimes or jumps: a known volatility process for
    testing volatility forecasts and volatility targeting. Open = previous close; high/low 0.1 % beyond.
    """
    tf = Timeframe.parse(str(timeframe))
    if n < 1 or not annual_vol > 0 or alpha < 0 or beta < 0 or not alpha + beta < 1:
        raise ConfigError(
            "GARCH(1,1) needs n >= 1, annual_vol > 0, alpha, beta >= 0 and alpha + beta < 1",
            hint="e.g. garch_candles(3000, annual_vol=0.8, alpha=0.1, beta=0.85)",
        )
    var = annual_vol**2 / (YEAR_MS / tf.ms)
    omega = var * (1.0 - alpha - beta)
    shocks = np.random.default_rng(seed).standard_normal(n)
    rets = np.empty(n)
    for i in range(n):
        rets[i] = math.sqrt(var) * shocks[i]
        var = omega + alpha * rets[i] ** 2 + beta * var
    close = start_price * np.exp(np.cumsum(rets))
    open_ = np.r_[start_price, close[:-1]]
    frame = pd.DataFrame(
        {
            "ts": start_ts + tf.ms * np.arange(n, dtype=np.int64),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": np.full(n, 1_000.0),
        }
    )
    return as_candle_frame(frame)


__all__ = [
    "DEFAULT_START_TS",
    "MarketParams",
    "Regime",
    "SyntheticMarket",
    "extend_with_synthetic",
    "garch_candles",
    "generate_market",
    "regime_labels",
    "simulate_market",
]
