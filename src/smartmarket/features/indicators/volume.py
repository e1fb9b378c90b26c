"""Volume indicators: On-Balance Volume and a rolling VWAP.

* OBV — starts at the first candle's volume (TA-Lib's convention), then adds the volume on an up close and
  subtracts it on a down close (unchanged on an equal close). Its level depends on where the series starts.
* Rolling VWAP — Σ(typical price × volume)/Σ volume over the last n bars, typical price = (h+l+c)/3;
  defined from bar n−1, NaN while the window's volume is exactly 0. This is a rolling window, not a
  session VWAP anchored at midnight (bars do not know about time).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._base import KernelIndicator, check_period
from ._kernels import COUNT, begin, window_all_zero, window_full, window_push, window_size, window_sum

_OBV, _PREV_CLOSE = 1, 2


@njit(cache=True)
def obv_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    if s[COUNT] == 1.0:
        s[_OBV] = v
    elif c > s[_PREV_CLOSE]:
        s[_OBV] += v
    elif c < s[_PREV_CLOSE]:
        s[_OBV] -= v
    s[_PREV_CLOSE] = c
    out[r, 0] = s[_OBV]


@njit(cache=True)
def obv_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        obv_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class OBV(KernelIndicator):
    """On-Balance Volume; column ``obv``, defined from the first bar."""

    def __init__(self) -> None:
        super().__init__(columns=["obv"], params=[0.0], state_size=3, warmup=1, step=obv_step, batch=obv_batch)


@njit(cache=True)
def vwap_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    n = int(p[0])
    split = 1 + window_size(n)
    price_volume = s[1:split]
    volume = s[split:]
    window_push(price_volume, n, (h + lo + c) / 3.0 * v)
    window_push(volume, n, v)
    if window_full(volume, n) and not window_all_zero(volume):
        out[r, 0] = window_sum(price_volume) / window_sum(volume)
    else:
        out[r, 0] = np.nan


@njit(cache=True)
def vwap_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        vwap_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class VWAP(KernelIndicator):
    """Rolling volume-weighted average of the typical price over ``period`` bars; column ``vwap_<n>``."""

    def __init__(self, period: int = 20) -> None:
        n = check_period("VWAP period", period)
        super().__init__(
            columns=[f"vwap_{n}"],
            params=[n],
            state_size=1 + 2 * window_size(n),
            warmup=n,
            step=vwap_step,
            batch=vwap_batch,
        )


__all__ = ["OBV", "VWAP"]
