"""Numba building blocks shared by the indicator step functions.

Every indicator keeps its whole state in one flat ``float64`` array. Its step function consumes one candle
and writes the outputs; batch mode runs the same step function in a jitted loop, so batch and streaming
are bit-identical by construction. The blocks below each own a slice of that array:

* ``begin`` — the candle check shared by every indicator. Slot 0 of every state counts the valid candles.
* rolling window — ring buffer of the last ``n`` values with running sum, shifted moments (for variance)
  and a count of non-zero entries. Running sums are re-computed exactly from the buffer every
  ``max(n, RESUM_EVERY)`` pushes, so rounding drift stays bounded (amortised O(1)).
* monotonic deque — rolling max or min in amortised O(1).
* EMA — seeded with the SMA of the first ``n`` values (TA-Lib's convention).
* Wilder ATR — true range from the previous close, seeded with the SMA of the first ``n`` true ranges.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

RESUM_EVERY = 512

# --- candle check -------------------------------------------------------------------------------------

COUNT = 0  # slot 0 of every indicator state: number of valid candles consumed


@njit(cache=True)
def nan_row(out: np.ndarray, row: int) -> None:
    for j in range(out.shape[1]):
        out[row, j] = np.nan


@njit(cache=True)
def begin(state: np.ndarray, o: float, h: float, lo: float, c: float, v: float, out: np.ndarray, row: int) -> bool:
    """Count a valid candle and return True; for a candle with a non-finite field write NaN and return False."""
    if not (math.isfinite(o) and math.isfinite(h) and math.isfinite(lo) and math.isfinite(c) and math.isfinite(v)):
        nan_row(out, row)
        return False
    state[COUNT] += 1.0
    return True


# --- rolling window -----------------------------------------------------------------------------------

W_COUNT, W_POS, W_SINCE, W_NONZERO, W_SUM, W_SHIFT, W_S1, W_S2 = 0, 1, 2, 3, 4, 5, 6, 7
W_HEADER = 8


@njit(cache=True)
def window_size(n: int) -> int:
    return W_HEADER + n


@njit(cache=True)
def _window_resum(w: np.ndarray, n: int) -> None:
    k = min(int(w[W_COUNT]), n)
    total = 0.0
    for j in range(k):
        total += w[W_HEADER + j]
    shift = total / k
    s1 = 0.0
    s2 = 0.0
    for j in range(k):
        d = w[W_HEADER + j] - shift
        s1 += d
        s2 += d * d
    w[W_SUM] = total
    w[W_SHIFT] = shift
    w[W_S1] = s1
    w[W_S2] = s2
    w[W_SINCE] = 0.0


@njit(cache=True)
def window_push(w: np.ndarray, n: int, x: float) -> float:
    """Append ``x`` to the window of length ``n``; return the value it evicts (NaN while still filling)."""
    k = int(w[W_COUNT])
    pos = int(w[W_POS])
    if k == 0:
        w[W_SHIFT] = x
    shift = w[W_SHIFT]
    old = np.nan
    if k >= n:
        old = w[W_HEADER + pos]
        w[W_SUM] -= old
        d = old - shift
        w[W_S1] -= d
        w[W_S2] -= d * d
        if old != 0.0:
            w[W_NONZERO] -= 1.0
    else:
        w[W_COUNT] = k + 1
    w[W_HEADER + pos] = x
    w[W_POS] = (pos + 1) % n
    w[W_SUM] += x
    d = x - shift
    w[W_S1] += d
    w[W_S2] += d * d
    if x != 0.0:
        w[W_NONZERO] += 1.0
    if w[W_NONZERO] == 0.0:
        w[W_SUM] = 0.0  # all entries are exactly zero: no rounding residue
    w[W_SINCE] += 1.0
    if w[W_SINCE] >= max(n, RESUM_EVERY):
        _window_resum(w, n)
    return old


@njit(cache=True)
def window_full(w: np.ndarray, n: int) -> bool:
    return w[W_COUNT] >= n


@njit(cache=True)
def window_sum(w: np.ndarray) -> float:
    return w[W_SUM]


@njit(cache=True)
def window_all_zero(w: np.ndarray) -> bool:
    return w[W_NONZERO] == 0.0


@njit(cache=True)
def window_var(w: np.ndarray, n: int, ddof: int) -> float:
    """Variance of the entries (population for ``ddof=0``, sample for ``ddof=1``), never negative."""
    k = min(int(w[W_COUNT]), n)
    s1 = w[W_S1]
    var = (w[W_S2] - s1 * (s1 / k)) / (k - ddof)
    return var if var > 0.0 else 0.0


@njit(cache=True)
def window_oldest_index(w: np.ndarray, n: int) -> int:
    """Buffer index (0-based, after the header) of the oldest entry of a full window."""
    return int(w[W_POS])


@njit(cache=True)
def window_value(w: np.ndarray, j: int) -> float:
    return w[W_HEADER + j]


@njit(cache=True)
def window_just_resummed(w: np.ndarray) -> bool:
    return w[W_SINCE] == 0.0


# --- monotonic deque: rolling max / min ---------------------------------------------------------------

D_HEAD, D_SIZE = 0, 1
D_HEADER = 2


@njit(cache=True)
def deque_size(n: int) -> int:
    return D_HEADER + 2 * n


@njit(cache=True)
def deque_push(d: np.ndarray, n: int, seq: float, x: float, is_max: bool) -> float:
    """Push ``x`` (bar number ``seq``) and return the max (or min) of the last ``n`` bars."""
    head = int(d[D_HEAD])
    size = int(d[D_SIZE])
    while size > 0 and d[D_HEADER + head] <= seq - n:  # expired at the front
        head = (head + 1) % n
        size -= 1
    while size > 0:  # dominated at the back
        back = (head + size - 1) % n
        v = d[D_HEADER + n + back]
        if (is_max and v <= x) or ((not is_max) and v >= x):
            size -= 1
        else:
            break
    slot = (head + size) % n
    d[D_HEADER + slot] = seq
    d[D_HEADER + n + slot] = x
    d[D_HEAD] = head
    d[D_SIZE] = size + 1
    return d[D_HEADER + n + head]


# --- EMA seeded with an SMA ---------------------------------------------------------------------------

E_COUNT, E_VALUE, E_SEED = 0, 1, 2
EMA_SIZE = 3


@njit(cache=True)
def ema_push(e: np.ndarray, n: int, x: float) -> float:
    """Next EMA value (k = 2/(n+1)); NaN for the first n-1 values, then seeded with their SMA."""
    k = int(e[E_COUNT]) + 1
    e[E_COUNT] = k
    if k < n:
        e[E_SEED] += x
        return np.nan
    if k == n:
        e[E_SEED] += x
        e[E_VALUE] = e[E_SEED] / n
    else:
        e[E_VALUE] = (x - e[E_VALUE]) * (2.0 / (n + 1)) + e[E_VALUE]
    return e[E_VALUE]


@njit(cache=True)
def ema_seed(e: np.ndarray, n: int, seed: float) -> None:
    """Start the EMA at ``seed`` as if ``n`` values had been consumed."""
    e[E_COUNT] = n
    e[E_VALUE] = seed


# --- Wilder ATR ---------------------------------------------------------------------------------------

A_BARS, A_VALUE, A_SEED, A_PREV_CLOSE = 0, 1, 2, 3
ATR_SIZE = 4


@njit(cache=True)
def true_range(h: float, lo: float, prev_close: float) -> float:
    return max(h - lo, abs(h - prev_close), abs(lo - prev_close))


@njit(cache=True)
def atr_push(a: np.ndarray, n: int, h: float, lo: float, c: float) -> float:
    """Next Wilder ATR: first at the n-th true range (bar n), the SMA of true ranges 1..n; NaN before."""
    bars = int(a[A_BARS]) + 1
    a[A_BARS] = bars
    prev_close = a[A_PREV_CLOSE]
    a[A_PREV_CLOSE] = c
    if bars == 1:
        return np.nan
    tr = true_range(h, lo, prev_close)
    ranges = bars - 1
    if ranges < n:
        a[A_SEED] += tr
        return np.nan
    if ranges == n:
        a[A_SEED] += tr
        a[A_VALUE] = a[A_SEED] / n
    else:
        a[A_VALUE] = (a[A_VALUE] * (n - 1) + tr) / n
    return a[A_VALUE]


__all__ = [
    "ATR_SIZE",
    "COUNT",
    "EMA_SIZE",
    "RESUM_EVERY",
    "atr_push",
    "begin",
    "deque_push",
    "deque_size",
    "ema_push",
    "ema_seed",
    "nan_row",
    "true_range",
    "window_all_zero",
    "window_full",
    "window_just_resummed",
    "window_oldest_index",
    "window_push",
    "window_size",
    "window_sum",
    "window_value",
    "window_var",
]
