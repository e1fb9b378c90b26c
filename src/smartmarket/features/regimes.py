"""Market regimes from trailing data only: trending up, trending down, ranging, volatile (unknown while warming up).

Inputs at bar t, all computed from bars ≤ t:

* trend strength — Wilder's ADX (``adx_period``), and the least-squares line through the last ``trend_window``
  log closes: its R² and its slope in units of noise, ``trend = slope·√window / σ`` (σ = realised volatility
  below). A random walk gives |trend| around 1 and R² near 0; a clean trend gives large |trend| and R² near 1;
* Choppiness index (``chop_period``): near 100 for a range, low for a directional market;
* volatility percentile — realised volatility (sample std of the last ``vol_window`` log returns) ranked against
  its own trailing history: every ``vol_sample_every``-th value of the last ``vol_lookback`` bars (an expanding
  window until that many exist; defined once ``vol_min_history`` values were seen). Mid-rank: (samples below +
  half the samples equal) / samples; 0 = calmer than all, 1 = more turbulent than all. Sampling keeps the
  cost per bar at a binary search, and a long window of samples is as good a reference as every bar.

Classification of a *candidate* label, in priority order:

1. ``volatile`` when the volatility percentile ≥ ``vol_enter`` and the volatility is ≥ ``vol_ratio_enter`` times
   the median of its history (``vol_exit``/``vol_ratio_exit`` while already volatile): the ratio keeps a calm,
   homogeneous market from having its top percentiles called volatile;
2. ``trending_up``/``trending_down`` (direction = sign of the slope) when ADX ≥ ``adx_enter``, R² ≥ ``r2_enter``,
   |trend| ≥ ``trend_enter`` and Choppiness ≤ ``chop_enter``; while already trending in that direction the looser
   ``*_exit`` thresholds apply;
3. otherwise ``ranging``.

Hysteresis: the enter/exit thresholds above, plus a dwell rule: the label switches to a new candidate only after
the current label has lasted ``min_dwell`` bars and the candidate has been seen on ``confirm_bars`` consecutive
bars. So labels do not flicker, at the price of a few bars of delay.

Outputs (``REGIME_COLUMNS``): ``regime`` (the ``RegimeLabel`` code 0..3), one-hot columns per label (usable by ML
models as they are), the inputs ``regime_trend``, ``regime_r2``, ``regime_vol_pct``, ``regime_vol_ratio`` and
``regime_bars`` (bars spent in the current label). Every column is NaN while warming up ("unknown", see
``regime_names``).

As for every indicator: a candle with a non-finite field (or a non-positive close) is skipped — NaN outputs for
that bar, state untouched. Windows count candles, not time: a gap in timestamps is invisible.
The logic is one numba step function; ``batch`` runs it in a jitted loop, so batch equals streaming bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import njit

from smartmarket.core.errors import ConfigError
from smartmarket.features.base import Feature
from smartmarket.features.indicators import ADX, Choppiness


class RegimeLabel(IntEnum):
    """Regime codes. The codes 0..3 equal ``smartmarket.data.synthetic.Regime`` (RANGE, TREND_UP, ...)."""

    UNKNOWN = -1
    RANGING = 0
    TRENDING_UP = 1
    TRENDING_DOWN = 2
    VOLATILE = 3

    @property
    def label(self) -> str:
        return self.name.lower()


KNOWN_LABELS: tuple[RegimeLabel, ...] = (
    RegimeLabel.RANGING,
    RegimeLabel.TRENDING_UP,
    RegimeLabel.TRENDING_DOWN,
    RegimeLabel.VOLATILE,
)

REGIME_COLUMNS: tuple[str, ...] = (
    "regime",  # RegimeLabel code (0..3), NaN while unknown
    *(f"regime_{r.label}" for r in KNOWN_LABELS),  # one-hot
    "regime_trend",  # regression slope of log close · √window / realised volatility (signed)
    "regime_r2",  # R² of that regression
    "regime_vol_pct",  # realised volatility percentile against its trailing history, [0, 1]
    "regime_vol_ratio",  # realised volatility / median of its trailing history
    "regime_bars",  # bars spent in the current label (1 on the bar it was entered)
)


@dataclass(frozen=True, slots=True)
class RegimeConfig:
    """Parameters of the regime labeller (windows in bars; thresholds as described in the module docstring)."""

    adx_period: int = 14
    chop_period: int = 14
    trend_window: int = 36
    vol_window: int = 14
    vol_lookback: int = 2000
    vol_sample_every: int = 8
    vol_min_history: int = 100
    adx_enter: float = 20.0
    adx_exit: float = 15.0
    r2_enter: float = 0.4
    r2_exit: float = 0.2
    trend_enter: float = 1.2
    trend_exit: float = 0.6
    chop_enter: float = 55.0
    chop_exit: float = 65.0
    vol_enter: float = 0.85
    vol_exit: float = 0.7
    vol_ratio_enter: float = 1.5
    vol_ratio_exit: float = 1.25
    min_dwell: int = 6
    confirm_bars: int = 2

    def __post_init__(self) -> None:
        for name in ("adx_period", "chop_period", "trend_window", "vol_window", "min_dwell", "confirm_bars"):
            if getattr(self, name) < (3 if name in ("trend_window", "vol_window") else 1):
                raise ConfigError(f"regime {name} is too small: {getattr(self, name)}")
        if self.vol_sample_every < 1 or self.vol_lookback // self.vol_sample_every < 2:
            raise ConfigError("regime vol_lookback must hold at least 2 samples (vol_lookback // vol_sample_every)")
        if not self.vol_sample_every <= self.vol_min_history <= self.vol_lookback:
            raise ConfigError("regime vol_min_history must be between vol_sample_every and vol_lookback")
        if self.adx_exit > self.adx_enter or self.r2_exit > self.r2_enter or self.trend_exit > self.trend_enter:
            raise ConfigError("regime exit thresholds must be looser than the enter thresholds")
        loose = self.chop_exit >= self.chop_enter and self.vol_exit <= self.vol_enter
        if not loose or self.vol_ratio_exit > self.vol_ratio_enter:
            raise ConfigError("regime exit thresholds must be looser than the enter thresholds")

    def params(self) -> npt.NDArray[np.float64]:
        return np.array([float(x) for x in asdict(self).values()])

    @property
    def warmup(self) -> int:
        """Valid candles before the first label (the volatility history is the longest part)."""
        return max(self.vol_window + self.vol_min_history, self.trend_window, 2 * self.adx_period, self.chop_period + 1)


# Parameter slots (the order of RegimeConfig's fields).
(_ADX_N, _CHOP_N, _TREND_W, _VOL_W, _VOL_LOOKBACK, _VOL_EVERY, _VOL_MIN, _ADX_IN, _ADX_OUT, _R2_IN, _R2_OUT, _TREND_IN,
 _TREND_OUT, _CHOP_IN, _CHOP_OUT, _VOL_IN, _VOL_OUT, _RATIO_IN, _RATIO_OUT, _DWELL, _CONFIRM) = range(21)  # fmt: skip

# State slots, then four buffers: log closes (trend_window), log returns (vol_window), the sampled volatility
# history in arrival order and the same history kept sorted (vol_lookback // vol_sample_every each).
(_COUNT, _RETURNS, _VOLS, _SAMPLES, _PREV_LOG, _LABEL, _DWELL_BARS, _CANDIDATE, _CANDIDATE_RUN, _PIVOT, _S0, _S1,
 _S2) = range(13)  # fmt: skip
_HEADER = 13


def _state_size(c: RegimeConfig) -> int:
    return _HEADER + c.trend_window + c.vol_window + 2 * (c.vol_lookback // c.vol_sample_every)


@njit(cache=True)
def _line_push(s: np.ndarray, n: int, count: int, y: float) -> None:
    """Push ``y`` (the ``count``-th value) into the ring of the last ``n`` values and its running sums.

    The sums are of d = y − pivot (Σd, Σk·d with k = 0 for the oldest, Σd²); every n pushes they are rebuilt
    from the ring with the newest value as the new pivot, so rounding never accumulates.
    """
    slot = _HEADER + (count - 1) % n
    if count == 1:
        s[_PIVOT] = y
    if count > n:  # evict the oldest: the others move one place towards k = 0
        d_old = s[slot] - s[_PIVOT]
        s[_S1] -= s[_S0] - d_old
        s[_S0] -= d_old
        s[_S2] -= d_old * d_old
    s[slot] = y
    d = y - s[_PIVOT]
    s[_S0] += d
    s[_S1] += (min(count, n) - 1) * d
    s[_S2] += d * d
    if count % n == 0:
        pivot = y
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        for k in range(n):  # count % n == 0: the ring is in time order, oldest at slot 0
            d = s[_HEADER + k] - pivot
            s0 += d
            s1 += k * d
            s2 += d * d
        s[_PIVOT], s[_S0], s[_S1], s[_S2] = pivot, s0, s1, s2


@njit(cache=True)
def _regression(s: np.ndarray, n: int) -> tuple[float, float]:
    """Slope (per bar) and R² of the least-squares line through the last ``n`` pushed values."""
    sxx = n * (n * n - 1.0) / 12.0
    sxy = s[_S1] - (n - 1) / 2.0 * s[_S0]
    syy = s[_S2] - s[_S0] * s[_S0] / n
    r2 = 0.0
    if syy > 0.0:
        r2 = min(sxy * sxy / (sxx * syy), 1.0)
    return sxy / sxx, r2


@njit(cache=True)
def _sample_std(buf: np.ndarray, start: int, n: int) -> float:
    mean = 0.0
    for j in range(n):
        mean += buf[start + j]
    mean /= n
    ss = 0.0
    for j in range(n):
        d = buf[start + j] - mean
        ss += d * d
    return math.sqrt(ss / (n - 1))


@njit(cache=True)
def _lower_bound(s: np.ndarray, at: int, size: int, x: float, strict: bool) -> int:
    """Number of the sorted values ``s[at:at+size]`` below ``x`` (``strict``) or at most ``x``."""
    lo, hi = 0, size
    while lo < hi:
        mid = (lo + hi) // 2
        if s[at + mid] < x or (not strict and s[at + mid] == x):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _history_push(s: np.ndarray, chrono: int, ordered: int, capacity: int, x: float) -> None:
    """Add ``x`` to the volatility history (arrival-order ring + sorted copy), evicting the oldest when full."""
    pushed = int(s[_SAMPLES])
    size = min(pushed, capacity)
    if pushed >= capacity:
        gone = _lower_bound(s, ordered, size, s[chrono + pushed % capacity], True)
        for j in range(gone, size - 1):
            s[ordered + j] = s[ordered + j + 1]
        size -= 1
    s[chrono + pushed % capacity] = x
    slot = _lower_bound(s, ordered, size, x, False)
    for j in range(size, slot, -1):
        s[ordered + j] = s[ordered + j - 1]
    s[ordered + slot] = x
    s[_SAMPLES] = pushed + 1.0


@njit(cache=True)
def _percentile(s: np.ndarray, ordered: int, size: int, x: float) -> float:
    """Mid-rank of ``x`` in the sorted history: (values below + half the values equal) / size."""
    below = _lower_bound(s, ordered, size, x, True)
    equal = 0
    while below + equal < size and s[ordered + below + equal] == x:
        equal += 1
    return (below + 0.5 * equal) / size


@njit(cache=True)
def _candidate(p: np.ndarray, current: int, slope: float, r2: float, trend: float, adx: float, chop: float,
               vol_pct: float, vol_ratio: float) -> int:  # fmt: skip
    if vol_pct >= p[_VOL_IN] and vol_ratio >= p[_RATIO_IN]:
        return 3
    if current == 3 and vol_pct >= p[_VOL_OUT] and vol_ratio >= p[_RATIO_OUT]:
        return 3
    direction = 1 if slope > 0.0 else 2
    if (
        current == direction
        and adx >= p[_ADX_OUT]
        and r2 >= p[_R2_OUT]
        and abs(trend) >= p[_TREND_OUT]
        and chop <= p[_CHOP_OUT]
    ):
        return direction
    if adx >= p[_ADX_IN] and r2 >= p[_R2_IN] and abs(trend) >= p[_TREND_IN] and chop <= p[_CHOP_IN]:
        return direction
    return 0


@njit(cache=True)
def regime_step(p, s, o, h, lo, c, v, adx, chop, out, r):  # type: ignore[no-untyped-def]
    """Consume one candle (with that bar's ADX and Choppiness) and write row ``r`` of ``out``."""
    for j in range(out.shape[1]):
        out[r, j] = np.nan
    if not (math.isfinite(o) and math.isfinite(h) and math.isfinite(lo) and math.isfinite(c) and math.isfinite(v)):
        return
    if not c > 0.0:
        return
    window, vol_n, every = int(p[_TREND_W]), int(p[_VOL_W]), int(p[_VOL_EVERY])
    capacity = int(p[_VOL_LOOKBACK]) // every
    at_returns = _HEADER + window
    at_chrono = at_returns + vol_n
    at_ordered = at_chrono + capacity
    count = int(s[_COUNT]) + 1
    s[_COUNT] = count
    log_close = math.log(c)
    _line_push(s, window, count, log_close)
    vol = np.nan
    if count >= 2:
        returns = int(s[_RETURNS]) + 1
        s[_RETURNS] = returns
        s[at_returns + (returns - 1) % vol_n] = log_close - s[_PREV_LOG]
        if returns >= vol_n:
            vol = _sample_std(s, at_returns, vol_n)
    s[_PREV_LOG] = log_close
    if np.isnan(vol):
        return
    if int(s[_VOLS]) % every == 0:
        _history_push(s, at_chrono, at_ordered, capacity, vol)
    s[_VOLS] += 1.0
    if count < window or s[_VOLS] < p[_VOL_MIN] or np.isnan(adx) or np.isnan(chop):
        return
    size = min(int(s[_SAMPLES]), capacity)
    vol_pct = _percentile(s, at_ordered, size, vol)
    half = at_ordered + size // 2
    median = s[half] if size % 2 else 0.5 * (s[half - 1] + s[half])
    flat = 1.0 if vol == 0.0 else np.inf  # a flat history: any movement is infinitely more volatile
    vol_ratio = vol / median if median > 0.0 else flat
    slope, r2 = _regression(s, window)
    trend = slope * math.sqrt(window) / vol if vol > 0.0 else 0.0

    current = int(s[_LABEL]) if s[_DWELL_BARS] > 0.0 else -1
    wanted = _candidate(p, current, slope, r2, trend, adx, chop, vol_pct, vol_ratio)
    if current == -1:
        current = wanted
        s[_DWELL_BARS] = 1.0
    elif wanted == current:
        s[_DWELL_BARS] += 1.0
        s[_CANDIDATE_RUN] = 0.0
    else:
        if wanted == int(s[_CANDIDATE]) and s[_CANDIDATE_RUN] > 0.0:
            s[_CANDIDATE_RUN] += 1.0
        else:
            s[_CANDIDATE] = wanted
            s[_CANDIDATE_RUN] = 1.0
        if s[_DWELL_BARS] >= p[_DWELL] and s[_CANDIDATE_RUN] >= p[_CONFIRM]:
            current = wanted
            s[_DWELL_BARS] = 1.0
            s[_CANDIDATE_RUN] = 0.0
        else:
            s[_DWELL_BARS] += 1.0
    s[_LABEL] = current
    out[r, 0] = current
    for k in range(4):
        out[r, 1 + k] = 1.0 if k == current else 0.0
    out[r, 5] = trend
    out[r, 6] = r2
    out[r, 7] = vol_pct
    out[r, 8] = vol_ratio
    out[r, 9] = s[_DWELL_BARS]


@njit(cache=True)
def regime_batch(p, s, o, h, lo, c, v, adx, chop, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        regime_step(p, s, o[i], h[i], lo[i], c[i], v[i], adx[i], chop[i], out, i)


class RegimeFeature(Feature):
    """The regime labeller as a ``Feature`` producing ``REGIME_COLUMNS`` (see the module docstring)."""

    columns = REGIME_COLUMNS

    def __init__(self, config: RegimeConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or RegimeConfig(), **overrides)
        self._params = self.config.params()
        self._adx = ADX(self.config.adx_period)
        self._chop = Choppiness(self.config.chop_period)
        self._state = np.zeros(_state_size(self.config))
        self._out = np.full((1, len(self.columns)), np.nan)

    @property
    def warmup(self) -> int:
        return self.config.warmup

    def update(self, ts: int, open: float, high: float, low: float, close: float, volume: float) -> None:
        o, h, lo, c, v = float(open), float(high), float(low), float(close), float(volume)
        self._adx.update(ts, o, h, lo, c, v)
        self._chop.update(ts, o, h, lo, c, v)
        adx = self._adx.values[0]
        chop = self._chop.values[0]
        regime_step(self._params, self._state, o, h, lo, c, v, adx, chop, self._out, 0)

    @property
    def values(self) -> tuple[float, ...]:
        return tuple(self._out[0].tolist())

    @property
    def ready(self) -> bool:
        return bool(self._state[_LABEL] >= 0.0 and self._state[_DWELL_BARS] > 0.0)

    @property
    def label(self) -> RegimeLabel:
        """The current label (``UNKNOWN`` before the first labelled bar or after a skipped candle)."""
        code = self._out[0, 0]
        return RegimeLabel.UNKNOWN if np.isnan(code) else RegimeLabel(int(code))

    def reset(self) -> None:
        self._adx.reset()
        self._chop.reset()
        self._state[:] = 0.0
        self._out[:] = np.nan

    def batch(self, frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.batch_array(frame), columns=list(self.columns), index=frame.index)

    def batch_array(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Outputs as a ``(len(frame), len(columns))`` float64 array; never touches the streaming state."""
        out = np.full((len(frame), len(self.columns)), np.nan)
        self.batch_into(frame, out)
        return out

    def batch_into(self, frame: pd.DataFrame, out: npt.NDArray[np.float64]) -> None:
        """Write the outputs for ``frame`` into ``out`` (shape ``(len(frame), len(columns))``, any layout)."""
        if len(frame) == 0:
            return
        arrays = [np.ascontiguousarray(frame[col].to_numpy(dtype=np.float64)) for col in _INPUTS]
        adx = np.ascontiguousarray(self._adx.batch_array(frame)[:, 0])
        chop = np.ascontiguousarray(self._chop.batch_array(frame)[:, 0])
        kernel: Callable[..., None] = regime_batch  # numba dispatcher (untyped for mypy)
        kernel(self._params, np.zeros(_state_size(self.config)), *arrays, adx, chop, out)


_INPUTS = ("open", "high", "low", "close", "volume")


def regime_names(codes: npt.ArrayLike) -> npt.NDArray[np.object_]:
    """Label names for an array of ``regime`` codes (NaN → ``"unknown"``)."""
    arr = np.asarray(codes, dtype=np.float64)
    names = np.array(["unknown"] + [r.label for r in KNOWN_LABELS], dtype=object)
    index = np.where(np.isnan(arr), 0, np.nan_to_num(arr, nan=-1.0).astype(np.int64) + 1)
    return np.asarray(names[index], dtype=object)


def label_regimes(frame: pd.DataFrame, config: RegimeConfig | None = None) -> pd.Series:
    """The label name of every row of a candle frame (``"unknown"`` while warming up)."""
    codes = RegimeFeature(config).batch_array(frame)[:, 0]
    return pd.Series(regime_names(codes), index=frame.index, name="regime")


__all__ = [
    "KNOWN_LABELS",
    "REGIME_COLUMNS",
    "RegimeConfig",
    "RegimeFeature",
    "RegimeLabel",
    "label_regimes",
    "regime_batch",
    "regime_names",
    "regime_step",
]
