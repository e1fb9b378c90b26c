"""Momentum oscillators: RSI, MACD, Stochastic, CCI, ROC, momentum and MFI.

Conventions follow TA-Lib (so the values agree with it to rounding):

* RSI — Wilder smoothing; the first value (bar n) uses the plain averages of the first n gains/losses.
  When average gain + loss is exactly 0 (a flat window) RSI is 0, as in TA-Lib.
* MACD — fast and slow EMAs both start at bar ``slow-1``: the slow one seeded with the SMA of its first
  ``slow`` closes, the fast one with the SMA of the last ``fast`` closes at that bar (TA-Lib's alignment).
  The MACD line is defined from bar ``slow-1``; signal (EMA of the line) and histogram from ``slow+signal-2``.
* Stochastic — fast %K = 100·(close − lowest low)/(highest high − lowest low) over ``k`` bars (0 when the
  range is 0); ``stoch_k`` is its SMA over ``slow_k`` bars (TA-Lib's slow %K) and ``stoch_d`` the SMA of
  that over ``slow_d`` bars.
* CCI — typical price (h+l+c)/3 against its n-bar mean and mean absolute deviation, factor 0.015; 0 when
  the deviation or the distance from the mean is 0. O(n) per bar (a mean deviation has no running form).
* ROC — 100·(close/close[n bars ago] − 1), 0 when the old close is 0; momentum — close − close[n ago].
* MFI — money flow = typical price × volume, positive/negative by the typical price's direction. A move
  smaller than 1e-14·(|tp| + |previous tp|) is a tie (rounding noise of (h+l+c)/3, e.g. 5.7e-14 on ETH
  prices) and carries no flow, as in TA-Lib 0.8. 0 when the window has no flow at all.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._base import KernelIndicator, check_period
from ._kernels import (
    COUNT,
    EMA_SIZE,
    begin,
    deque_push,
    deque_size,
    ema_push,
    ema_seed,
    nan_row,
    window_all_zero,
    window_full,
    window_oldest_index,
    window_push,
    window_size,
    window_sum,
    window_value,
)

# --- RSI ----------------------------------------------------------------------------------------------

_RSI_GAIN, _RSI_LOSS, _RSI_PREV = 1, 2, 3


@njit(cache=True)
def rsi_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    n = int(p[0])
    diffs = int(s[COUNT]) - 1
    diff = c - s[_RSI_PREV]
    s[_RSI_PREV] = c
    if diffs == 0:
        out[r, 0] = np.nan
        return
    if diffs > n:
        s[_RSI_GAIN] *= n - 1
        s[_RSI_LOSS] *= n - 1
    if diff < 0.0:
        s[_RSI_LOSS] -= diff
    else:
        s[_RSI_GAIN] += diff
    if diffs < n:
        out[r, 0] = np.nan
        return
    s[_RSI_GAIN] /= n
    s[_RSI_LOSS] /= n
    total = s[_RSI_GAIN] + s[_RSI_LOSS]
    out[r, 0] = 100.0 * (s[_RSI_GAIN] / total) if total != 0.0 else 0.0


@njit(cache=True)
def rsi_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        rsi_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class RSI(KernelIndicator):
    """Relative Strength Index (Wilder) of the close; column ``rsi_<n>``, defined from bar n."""

    def __init__(self, period: int = 14) -> None:
        n = check_period("RSI period", period)
        super().__init__(columns=[f"rsi_{n}"], params=[n], state_size=4, warmup=n + 1, step=rsi_step, batch=rsi_batch)


# --- MACD ---------------------------------------------------------------------------------------------

_MACD_FAST = 1
_MACD_SLOW = _MACD_FAST + EMA_SIZE
_MACD_SIGNAL = _MACD_SLOW + EMA_SIZE
_MACD_RING = _MACD_SIGNAL + EMA_SIZE


@njit(cache=True)
def macd_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    fast, slow, signal = int(p[0]), int(p[1]), int(p[2])
    k = int(s[COUNT])
    fast_ema = s[_MACD_FAST:_MACD_SLOW]
    slow_ema = s[_MACD_SLOW:_MACD_SIGNAL]
    slow_value = ema_push(slow_ema, slow, c)
    if k <= slow:  # keep the last `fast` closes until both EMAs start
        ring = s[_MACD_RING:]
        window_push(ring, fast, c)
        if k < slow:
            nan_row(out, r)
            return
        oldest = window_oldest_index(ring, fast)
        seed = 0.0
        for j in range(fast):
            seed += window_value(ring, (oldest + j) % fast)
        fast_value = seed / fast
        ema_seed(fast_ema, fast, fast_value)
    else:
        fast_value = ema_push(fast_ema, fast, c)
    line = fast_value - slow_value
    signal_value = ema_push(s[_MACD_SIGNAL:_MACD_RING], signal, line)
    out[r, 0] = line
    out[r, 1] = signal_value
    out[r, 2] = line - signal_value


@njit(cache=True)
def macd_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        macd_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class MACD(KernelIndicator):
    """MACD line, signal and histogram; columns ``macd_*``, ``macd_signal_*``, ``macd_hist_*``."""

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        f = check_period("MACD fast period", fast)
        sl = check_period("MACD slow period", slow, minimum=f + 1)
        sg = check_period("MACD signal period", signal)
        tag = f"{f}_{sl}_{sg}"
        super().__init__(
            columns=[f"macd_{tag}", f"macd_signal_{tag}", f"macd_hist_{tag}"],
            params=[f, sl, sg],
            state_size=_MACD_RING + window_size(f),
            warmup=sl + sg - 1,
            step=macd_step,
            batch=macd_batch,
        )


# --- Stochastic ---------------------------------------------------------------------------------------


@njit(cache=True)
def stoch_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    n, slow_k, slow_d = int(p[0]), int(p[1]), int(p[2])
    at_max = 1
    at_min = at_max + deque_size(n)
    at_k = at_min + deque_size(n)
    at_d = at_k + window_size(slow_k)
    seq = s[COUNT]
    highest = deque_push(s[at_max:at_min], n, seq, h, True)
    lowest = deque_push(s[at_min:at_k], n, seq, lo, False)
    nan_row(out, r)
    if seq < n:
        return
    spread = highest - lowest
    fast_k = 100.0 * ((c - lowest) / spread) if spread != 0.0 else 0.0
    k_window = s[at_k:at_d]
    window_push(k_window, slow_k, fast_k)
    if not window_full(k_window, slow_k):
        return
    out[r, 0] = window_sum(k_window) / slow_k
    d_window = s[at_d:]
    window_push(d_window, slow_d, out[r, 0])
    if window_full(d_window, slow_d):
        out[r, 1] = window_sum(d_window) / slow_d


@njit(cache=True)
def stoch_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        stoch_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class Stochastic(KernelIndicator):
    """Slow stochastic oscillator: columns ``stoch_k_<k>_<sk>_<sd>`` and ``stoch_d_<k>_<sk>_<sd>``."""

    def __init__(self, k_period: int = 14, slow_k: int = 3, slow_d: int = 3) -> None:
        n = check_period("Stochastic %K period", k_period)
        sk = check_period("Stochastic slow %K period", slow_k)
        sd = check_period("Stochastic slow %D period", slow_d)
        tag = f"{n}_{sk}_{sd}"
        super().__init__(
            columns=[f"stoch_k_{tag}", f"stoch_d_{tag}"],
            params=[n, sk, sd],
            state_size=1 + 2 * deque_size(n) + window_size(sk) + window_size(sd),
            warmup=n + sk + sd - 2,
            step=stoch_step,
            batch=stoch_batch,
        )


# --- CCI ----------------------------------------------------------------------------------------------


@njit(cache=True)
def cci_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    n = int(p[0])
    w = s[1:]
    typical = (h + lo + c) / 3.0
    window_push(w, n, typical)
    if not window_full(w, n):
        out[r, 0] = np.nan
        return
    total = 0.0
    for j in range(n):
        total += window_value(w, j)
    mean = total / n
    deviation = 0.0
    for j in range(n):
        deviation += abs(window_value(w, j) - mean)
    deviation /= n
    distance = typical - mean
    out[r, 0] = distance / (0.015 * deviation) if (distance != 0.0 and deviation != 0.0) else 0.0


@njit(cache=True)
def cci_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        cci_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class CCI(KernelIndicator):
    """Commodity Channel Index over ``period`` bars; column ``cci_<n>``."""

    def __init__(self, period: int = 20) -> None:
        n = check_period("CCI period", period)
        super().__init__(
            columns=[f"cci_{n}"], params=[n], state_size=1 + window_size(n), warmup=n, step=cci_step, batch=cci_batch
        )


# --- ROC and momentum ---------------------------------------------------------------------------------


@njit(cache=True)
def roc_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    old = window_push(s[1:], int(p[0]), c)  # the close n bars ago, NaN until there is one
    if np.isnan(old):
        out[r, 0] = np.nan
    else:
        out[r, 0] = (c / old - 1.0) * 100.0 if old != 0.0 else 0.0


@njit(cache=True)
def roc_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        roc_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


@njit(cache=True)
def mom_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    out[r, 0] = c - window_push(s[1:], int(p[0]), c)


@njit(cache=True)
def mom_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        mom_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class ROC(KernelIndicator):
    """Rate of change in percent over ``period`` bars; column ``roc_<n>``, defined from bar n."""

    def __init__(self, period: int = 10) -> None:
        n = check_period("ROC period", period)
        super().__init__(
            columns=[f"roc_{n}"],
            params=[n],
            state_size=1 + window_size(n),
            warmup=n + 1,
            step=roc_step,
            batch=roc_batch,
        )


class Momentum(KernelIndicator):
    """Close minus the close ``period`` bars ago; column ``mom_<n>``, defined from bar n."""

    def __init__(self, period: int = 10) -> None:
        n = check_period("momentum period", period)
        super().__init__(
            columns=[f"mom_{n}"],
            params=[n],
            state_size=1 + window_size(n),
            warmup=n + 1,
            step=mom_step,
            batch=mom_batch,
        )


# --- MFI ----------------------------------------------------------------------------------------------

_MFI_PREV = 1
_MFI_WINDOWS = 2
_TIE = 1e-14  # a typical-price move within 1e-14·(|tp| + |previous tp|) is rounding noise: no move


@njit(cache=True)
def mfi_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    n = int(p[0])
    typical = (h + lo + c) / 3.0
    previous = s[_MFI_PREV]
    s[_MFI_PREV] = typical
    out[r, 0] = np.nan
    if s[COUNT] == 1.0:
        return
    move = typical - previous
    flow = 0.0 if abs(move) <= _TIE * (abs(typical) + abs(previous)) else typical * v
    positive = s[_MFI_WINDOWS : _MFI_WINDOWS + window_size(n)]
    negative = s[_MFI_WINDOWS + window_size(n) :]
    window_push(positive, n, flow if move > 0.0 else 0.0)
    window_push(negative, n, flow if move < 0.0 else 0.0)
    if not window_full(positive, n):
        return
    if window_all_zero(positive) and window_all_zero(negative):
        out[r, 0] = 0.0
    else:
        up = window_sum(positive)
        out[r, 0] = 100.0 * (up / (up + window_sum(negative)))


@njit(cache=True)
def mfi_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        mfi_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class MFI(KernelIndicator):
    """Money Flow Index over ``period`` bars; column ``mfi_<n>``, defined from bar n."""

    def __init__(self, period: int = 14) -> None:
        n = check_period("MFI period", period)
        super().__init__(
            columns=[f"mfi_{n}"],
            params=[n],
            state_size=_MFI_WINDOWS + 2 * window_size(n),
            warmup=n + 1,
            step=mfi_step,
            batch=mfi_batch,
        )


__all__ = ["CCI", "MACD", "MFI", "ROC", "RSI", "Momentum", "Stochastic"]
