"""Volatility and channels: ATR, Bollinger Bands, realised volatility, Choppiness, Donchian, Keltner.

* ATR — Wilder's average true range (TA-Lib's convention): first value at bar n, the SMA of the true
  ranges of bars 1..n (a true range needs the previous close), then ``(atr·(n−1) + tr)/n``.
* Bollinger — middle = SMA(n) of the close, bands = middle ± mult·σ with σ the *population* standard
  deviation of the n closes (as TA-Lib's BBANDS). ``bb_width`` = (upper − lower)/middle (NaN if middle is 0);
  ``bb_pctb`` = (close − lower)/(upper − lower) (NaN when the bands coincide, i.e. a flat window).
* Realised volatility — the *sample* standard deviation (ddof=1, like pandas' ``rolling().std()``) of the
  last n log returns ln(close/previous close), defined from bar n. Not annualised unless
  ``periods_per_year`` is given (e.g. 8760 for 1h candles, 2190 for 4h): then it is multiplied by
  √periods_per_year and the column becomes ``rvol_<n>_<periods_per_year>``. A candle with a non-positive
  close is skipped like a NaN candle (its log return does not exist).
* Choppiness — 100·log10(Σ true range over n bars / (highest high − lowest low over the same n bars)) /
  log10(n), defined from bar n (the first true range needs a previous close); NaN when the range is 0.
* Donchian — highest high and lowest low of the last n bars (current included) and their midpoint.
* Keltner — middle = EMA(n) of the close (SMA-seeded, defined from bar n−1); bands = middle ± mult·ATR(n)
  (Wilder ATR as above, defined from bar n).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._base import KernelIndicator, check_period, check_positive, fmt_param
from ._kernels import (
    ATR_SIZE,
    COUNT,
    EMA_SIZE,
    atr_push,
    begin,
    deque_push,
    deque_size,
    ema_push,
    nan_row,
    true_range,
    window_full,
    window_push,
    window_size,
    window_sum,
    window_var,
)

# --- ATR ----------------------------------------------------------------------------------------------


@njit(cache=True)
def atr_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    out[r, 0] = atr_push(s[1:], int(p[0]), h, lo, c)


@njit(cache=True)
def atr_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        atr_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class ATR(KernelIndicator):
    """Average True Range (Wilder); column ``atr_<n>``, defined from bar n."""

    def __init__(self, period: int = 14) -> None:
        n = check_period("ATR period", period)
        super().__init__(
            columns=[f"atr_{n}"], params=[n], state_size=1 + ATR_SIZE, warmup=n + 1, step=atr_step, batch=atr_batch
        )


# --- Bollinger Bands ----------------------------------------------------------------------------------


@njit(cache=True)
def bbands_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    n, mult = int(p[0]), p[1]
    w = s[1:]
    window_push(w, n, c)
    if not window_full(w, n):
        nan_row(out, r)
        return
    middle = window_sum(w) / n
    spread = mult * np.sqrt(window_var(w, n, 0))
    upper = middle + spread
    lower = middle - spread
    out[r, 0] = upper
    out[r, 1] = middle
    out[r, 2] = lower
    out[r, 3] = (upper - lower) / middle if middle != 0.0 else np.nan
    out[r, 4] = (c - lower) / (upper - lower) if upper != lower else np.nan


@njit(cache=True)
def bbands_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        bbands_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class BollingerBands(KernelIndicator):
    """Bollinger Bands: ``bb_upper``, ``bb_middle``, ``bb_lower``, ``bb_width``, ``bb_pctb`` (``_<n>_<mult>``)."""

    def __init__(self, period: int = 20, mult: float = 2.0) -> None:
        n = check_period("Bollinger period", period)
        m = check_positive("Bollinger multiplier", mult)
        tag = f"{n}_{fmt_param(m)}"
        super().__init__(
            columns=[f"bb_{part}_{tag}" for part in ("upper", "middle", "lower", "width", "pctb")],
            params=[n, m],
            state_size=1 + window_size(n),
            warmup=n,
            step=bbands_step,
            batch=bbands_batch,
        )


# --- realised volatility ------------------------------------------------------------------------------

_PREV_CLOSE = 1


@njit(cache=True)
def rvol_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not (c > 0.0):  # no log return: skip the candle like a NaN one
        out[r, 0] = np.nan
        return
    if not begin(s, o, h, lo, c, v, out, r):
        return
    n, scale = int(p[0]), p[1]
    previous = s[_PREV_CLOSE]
    s[_PREV_CLOSE] = c
    if s[COUNT] == 1.0:
        out[r, 0] = np.nan
        return
    w = s[2:]
    window_push(w, n, np.log(c / previous))
    out[r, 0] = np.sqrt(window_var(w, n, 1)) * scale if window_full(w, n) else np.nan


@njit(cache=True)
def rvol_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        rvol_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class RealisedVolatility(KernelIndicator):
    """Rolling sample std of log returns; column ``rvol_<n>`` or ``rvol_<n>_<periods_per_year>`` if annualised."""

    def __init__(self, period: int = 20, periods_per_year: float | None = None) -> None:
        n = check_period("realised volatility period", period, minimum=2)
        name = f"rvol_{n}"
        scale = 1.0
        if periods_per_year is not None:
            ppy = check_positive("periods per year", periods_per_year)
            name += f"_{fmt_param(ppy)}"
            scale = math.sqrt(ppy)
        super().__init__(
            columns=[name],
            params=[n, scale],
            state_size=2 + window_size(n),
            warmup=n + 1,
            step=rvol_step,
            batch=rvol_batch,
        )


# --- Choppiness ---------------------------------------------------------------------------------------


@njit(cache=True)
def chop_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    n = int(p[0])
    previous = s[_PREV_CLOSE]
    s[_PREV_CLOSE] = c
    out[r, 0] = np.nan
    if s[COUNT] == 1.0:
        return
    at_max = 2 + window_size(n)
    at_min = at_max + deque_size(n)
    w = s[2:at_max]
    window_push(w, n, true_range(h, lo, previous))
    highest = deque_push(s[at_max:at_min], n, s[COUNT], h, True)
    lowest = deque_push(s[at_min:], n, s[COUNT], lo, False)
    spread = highest - lowest
    if window_full(w, n) and spread > 0.0:
        out[r, 0] = 100.0 * np.log10(window_sum(w) / spread) / np.log10(n)


@njit(cache=True)
def chop_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        chop_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class Choppiness(KernelIndicator):
    """Choppiness Index (≈100 choppy, ≈0 trending); column ``chop_<n>``, defined from bar n."""

    def __init__(self, period: int = 14) -> None:
        n = check_period("Choppiness period", period, minimum=2)
        super().__init__(
            columns=[f"chop_{n}"],
            params=[n],
            state_size=2 + window_size(n) + 2 * deque_size(n),
            warmup=n + 1,
            step=chop_step,
            batch=chop_batch,
        )


# --- Donchian channel ---------------------------------------------------------------------------------


@njit(cache=True)
def donchian_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    n = int(p[0])
    at_min = 1 + deque_size(n)
    upper = deque_push(s[1:at_min], n, s[COUNT], h, True)
    lower = deque_push(s[at_min:], n, s[COUNT], lo, False)
    if s[COUNT] < n:
        nan_row(out, r)
        return
    out[r, 0] = upper
    out[r, 1] = lower
    out[r, 2] = (upper + lower) / 2.0


@njit(cache=True)
def donchian_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        donchian_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class Donchian(KernelIndicator):
    """Donchian channel: ``donchian_upper_<n>``, ``donchian_lower_<n>``, ``donchian_mid_<n>``."""

    def __init__(self, period: int = 20) -> None:
        n = check_period("Donchian period", period)
        super().__init__(
            columns=[f"donchian_{part}_{n}" for part in ("upper", "lower", "mid")],
            params=[n],
            state_size=1 + 2 * deque_size(n),
            warmup=n,
            step=donchian_step,
            batch=donchian_batch,
        )


# --- Keltner channel ----------------------------------------------------------------------------------


@njit(cache=True)
def keltner_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    n, mult = int(p[0]), p[1]
    middle = ema_push(s[1 : 1 + EMA_SIZE], n, c)
    atr = atr_push(s[1 + EMA_SIZE :], n, h, lo, c)
    out[r, 0] = middle + mult * atr
    out[r, 1] = middle
    out[r, 2] = middle - mult * atr


@njit(cache=True)
def keltner_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        keltner_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class Keltner(KernelIndicator):
    """Keltner channel (EMA ± mult·ATR): ``keltner_upper``, ``keltner_middle``, ``keltner_lower`` (``_<n>_<mult>``)."""

    def __init__(self, period: int = 20, mult: float = 2.0) -> None:
        n = check_period("Keltner period", period)
        m = check_positive("Keltner multiplier", mult)
        tag = f"{n}_{fmt_param(m)}"
        super().__init__(
            columns=[f"keltner_{part}_{tag}" for part in ("upper", "middle", "lower")],
            params=[n, m],
            state_size=1 + EMA_SIZE + ATR_SIZE,
            warmup=n + 1,
            step=keltner_step,
            batch=keltner_batch,
        )


__all__ = ["ATR", "BollingerBands", "Choppiness", "Donchian", "Keltner", "RealisedVolatility"]
