"""Moving averages of the close: SMA, EMA (SMA-seeded, TA-Lib's convention) and WMA (linear weights 1..n)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._base import KernelIndicator, check_period
from ._kernels import (
    EMA_SIZE,
    begin,
    ema_push,
    window_full,
    window_just_resummed,
    window_oldest_index,
    window_push,
    window_size,
    window_sum,
    window_value,
)


@njit(cache=True)
def sma_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    n = int(p[0])
    w = s[1:]
    window_push(w, n, c)
    out[r, 0] = window_sum(w) / n if window_full(w, n) else np.nan


@njit(cache=True)
def sma_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        sma_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


@njit(cache=True)
def ema_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    out[r, 0] = ema_push(s[1:], int(p[0]), c)


@njit(cache=True)
def ema_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        ema_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


_WMA_NUMERATOR = 1  # Σ j·x_j over the window (oldest weight 1, newest weight n)


@njit(cache=True)
def wma_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    n = int(p[0])
    w = s[2:]
    was_full = window_full(w, n)
    previous_sum = window_sum(w)
    window_push(w, n, c)
    if not window_full(w, n):
        out[r, 0] = np.nan
        return
    if was_full and not window_just_resummed(w):
        numerator = s[_WMA_NUMERATOR] + n * c - previous_sum  # O(1) update
    else:  # first full window, or the periodic exact re-computation
        oldest = window_oldest_index(w, n)
        numerator = 0.0
        for j in range(n):
            numerator += (j + 1) * window_value(w, (oldest + j) % n)
    s[_WMA_NUMERATOR] = numerator
    out[r, 0] = numerator / (n * (n + 1) / 2.0)


@njit(cache=True)
def wma_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        wma_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class SMA(KernelIndicator):
    """Simple moving average of the close over ``period`` bars; column ``sma_<period>``."""

    def __init__(self, period: int = 20) -> None:
        n = check_period("SMA period", period)
        super().__init__(
            columns=[f"sma_{n}"], params=[n], state_size=1 + window_size(n), warmup=n, step=sma_step, batch=sma_batch
        )


class EMA(KernelIndicator):
    """Exponential moving average (k = 2/(n+1)) of the close, seeded with the SMA of the first n closes."""

    def __init__(self, period: int = 20) -> None:
        n = check_period("EMA period", period)
        super().__init__(
            columns=[f"ema_{n}"], params=[n], state_size=1 + EMA_SIZE, warmup=n, step=ema_step, batch=ema_batch
        )


class WMA(KernelIndicator):
    """Linearly weighted moving average of the close (weights 1..n, newest heaviest); column ``wma_<n>``."""

    def __init__(self, period: int = 20) -> None:
        n = check_period("WMA period", period)
        super().__init__(
            columns=[f"wma_{n}"], params=[n], state_size=2 + window_size(n), warmup=n, step=wma_step, batch=wma_batch
        )


__all__ = ["EMA", "SMA", "WMA", "ema_batch", "ema_step", "sma_batch", "sma_step", "wma_batch", "wma_step"]
