"""Labels: triple-barrier (López de Prado) and forward-return sign, each with the bar where its window ends.

Classes are always ``DOWN=0, FLAT=1, UP=2`` (``N_CLASSES = 3``), whatever the method.

Triple barrier, for the sample at bar ``t`` (entry at the close of bar ``t``):

* the scale ``s_t`` is taken from trailing data only (bars ≤ t): the ATR (simple mean of the true range over
  ``scale_window`` bars) or the rolling standard deviation of log returns over ``scale_window`` bars times
  ``close_t``; both in price units;
* upper barrier ``close_t + take_profit · s_t``, lower barrier ``close_t − stop_loss · s_t``;
* bars ``t+1 … t+horizon`` are scanned: the first bar whose high reaches the upper barrier → UP, whose low
  reaches the lower barrier → DOWN; ``t1`` is that bar;
* both barriers touched inside the same bar (a *tie*): the intrabar order is unknown, so by default the label
  is FLAT — the sample says nothing about direction and FLAT means "no trade", the conservative answer for a
  long *and* a short. ``tie="down"`` instead assumes the stop came first (conservative for long-only logic);
* neither barrier by bar ``t+horizon`` (the time barrier, ``t1 = t+horizon``): FLAT by default
  (``time_barrier="flat"``); with ``time_barrier="sign"`` the sign of ``close_{t1}/close_t − 1`` when its size
  exceeds ``min_return``, else FLAT.

Forward-return sign: UP / DOWN when ``close_{t+horizon}/close_t − 1`` is above ``min_return`` / below
``−min_return``, FLAT otherwise; ``t1 = t + horizon``.

No label looks past its own window ``[t, t1]``. A sample whose full window ``t+horizon`` runs past the end of the
data has no label (NaN, ``t1 = -1``) *even if a barrier was already touched*: keeping only the early touches
near the end would bias the last labels towards barrier hits. Bars are positions in the frame: a time gap in
the data is not a bar. Samples whose scale is not yet defined (warm-up) or whose prices are not finite have no
label either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

DOWN, FLAT, UP = 0, 1, 2
N_CLASSES = 3
CLASS_NAMES: tuple[str, ...] = ("down", "flat", "up")

# Exit codes: how each label's window ended.
EXIT_NONE, EXIT_UP, EXIT_DOWN, EXIT_TIE, EXIT_TIME = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class LabelConfig:
    """How labels are made. ``horizon`` is in bars; barrier multiples are in units of the scale."""

    method: Literal["triple_barrier", "forward_sign"] = "triple_barrier"
    horizon: int = 24
    take_profit: float = 2.0
    stop_loss: float = 2.0
    scale: Literal["atr", "volatility"] = "atr"
    scale_window: int = 14
    time_barrier: Literal["flat", "sign"] = "flat"
    tie: Literal["flat", "down"] = "flat"
    min_return: float = 0.0

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError("horizon must be at least 1 bar")
        if self.scale_window < 2:
            raise ValueError("scale_window must be at least 2 bars")
        if self.take_profit <= 0 or self.stop_loss <= 0:
            raise ValueError("take_profit and stop_loss must be positive")
        if self.min_return < 0:
            raise ValueError("min_return must be non-negative")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelConfig:
        return cls(**data)


@dataclass(frozen=True)
class LabelSet:
    """Per-bar labels: ``y`` (float, NaN = no label), ``t1`` (last bar of the label window, -1 = none), ``exit``."""

    y: np.ndarray
    t1: np.ndarray
    exit: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return ~np.isnan(self.y)

    def __len__(self) -> int:
        return len(self.y)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"label": self.y, "t1": self.t1, "exit": self.exit})


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """True range per bar; the first bar (no previous close) uses ``high − low``."""
    prev_close = np.concatenate([[np.nan], close[:-1]])
    gaps = np.fmax(np.abs(high - prev_close), np.abs(low - prev_close))  # fmax ignores the NaN of bar 0
    return np.where(np.isfinite(high - low), np.fmax(high - low, gaps), np.nan)


def barrier_scale(candles: pd.DataFrame, scale: str, window: int) -> np.ndarray:
    """The price-unit scale at every bar from bars ≤ t only (NaN during warm-up)."""
    high = candles["high"].to_numpy(np.float64)
    low = candles["low"].to_numpy(np.float64)
    close = candles["close"].to_numpy(np.float64)
    if scale == "atr":
        tr = pd.Series(true_range(high, low, close))
        return tr.rolling(window, min_periods=window).mean().to_numpy()
    if scale == "volatility":
        log_ret = pd.Series(np.log(close)).diff()
        return (log_ret.rolling(window, min_periods=window).std() * close).to_numpy()
    raise ValueError(f"unknown scale {scale!r}: use 'atr' or 'volatility'")


def make_labels(candles: pd.DataFrame, config: LabelConfig) -> LabelSet:
    """Labels for every bar of a candle frame, by ``config.method``."""
    if config.method == "triple_barrier":
        return triple_barrier_labels(candles, config)
    if config.method == "forward_sign":
        return forward_sign_labels(candles, config)
    raise ValueError(f"unknown label method {config.method!r}")


def _sign_label(ret: np.ndarray, min_return: float) -> np.ndarray:
    return np.where(ret > min_return, UP, np.where(ret < -min_return, DOWN, FLAT)).astype(np.float64)


def forward_sign_labels(candles: pd.DataFrame, config: LabelConfig) -> LabelSet:
    close = candles["close"].to_numpy(np.float64)
    n, h = len(close), config.horizon
    y = np.full(n, np.nan)
    t1 = np.full(n, -1, dtype=np.int64)
    exit_code = np.full(n, EXIT_NONE, dtype=np.int8)
    if n > h:
        ret = close[h:] / close[:-h] - 1.0
        ok = np.isfinite(ret)
        idx = np.flatnonzero(ok)
        y[idx] = _sign_label(ret[idx], config.min_return)
        t1[idx] = idx + h
        exit_code[idx] = EXIT_TIME
    return LabelSet(y=y, t1=t1, exit=exit_code)


def triple_barrier_labels(candles: pd.DataFrame, config: LabelConfig) -> LabelSet:
    """Triple-barrier labels (see the module docstring for every rule)."""
    high = candles["high"].to_numpy(np.float64)
    low = candles["low"].to_numpy(np.float64)
    close = candles["close"].to_numpy(np.float64)
    n, h = len(close), config.horizon
    scale = barrier_scale(candles, config.scale, config.scale_window)
    upper = close + config.take_profit * scale
    lower = close - config.stop_loss * scale

    # Entries with a full window of finite bars and a defined, positive scale.
    m = max(n - h, 0)  # bars 0 … m-1 have a full window
    candidate = np.zeros(n, dtype=bool)
    candidate[:m] = np.isfinite(upper[:m]) & np.isfinite(lower[:m]) & (scale[:m] > 0)
    bad_bar = ~(np.isfinite(high) & np.isfinite(low) & np.isfinite(close))
    if bad_bar.any() and m > 0:  # drop entries whose window touches a non-finite bar
        bad_count = np.concatenate([[0], np.cumsum(bad_bar)])
        window_bad = bad_count[np.arange(m) + h + 1] - bad_count[np.arange(m)]
        candidate[:m] &= window_bad == 0

    first_hit = np.full(n, -1, dtype=np.int64)
    exit_code = np.full(n, EXIT_NONE, dtype=np.int8)
    entries = np.flatnonzero(candidate)
    open_ = entries.copy()  # entries still waiting for a barrier
    for k in range(1, h + 1):  # vectorised over entries, one step of look-ahead at a time
        if open_.size == 0:
            break
        j = open_ + k
        hit_up = high[j] >= upper[open_]
        hit_down = low[j] <= lower[open_]
        hit = hit_up | hit_down
        done = open_[hit]
        first_hit[done] = j[hit]
        exit_code[done] = np.where(hit_up[hit] & hit_down[hit], EXIT_TIE, np.where(hit_up[hit], EXIT_UP, EXIT_DOWN))
        open_ = open_[~hit]
    first_hit[open_] = open_ + h
    exit_code[open_] = EXIT_TIME

    y = np.full(n, np.nan)
    y[exit_code == EXIT_UP] = UP
    y[exit_code == EXIT_DOWN] = DOWN
    y[exit_code == EXIT_TIE] = DOWN if config.tie == "down" else FLAT
    timed = np.flatnonzero(exit_code == EXIT_TIME)
    if config.time_barrier == "sign":
        y[timed] = _sign_label(close[timed + h] / close[timed] - 1.0, config.min_return)
    else:
        y[timed] = FLAT
    return LabelSet(y=y, t1=first_hit, exit=exit_code)


__all__ = [
    "CLASS_NAMES",
    "DOWN",
    "EXIT_DOWN",
    "EXIT_NONE",
    "EXIT_TIE",
    "EXIT_TIME",
    "EXIT_UP",
    "FLAT",
    "N_CLASSES",
    "UP",
    "LabelConfig",
    "LabelSet",
    "barrier_scale",
    "forward_sign_labels",
    "make_labels",
    "triple_barrier_labels",
    "true_range",
]
