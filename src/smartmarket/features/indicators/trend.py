"""Trend strength: Wilder's ADX with the directional indicators +DI and −DI (TA-Lib's convention).

+DM = high − previous high and −DM = previous low − low, each kept only when positive and larger than the
other. +DM, −DM and the true range are summed over the first n−1 bar-to-bar moves, then Wilder-smoothed
(``s − s/n + x``) from move n on: ±DI = 100·(smoothed ±DM)/(smoothed TR), defined from bar n.
DX = 100·|+DI − −DI|/(+DI + −DI); ADX is the mean of the first n DX values (bar 2n−1), then
``(adx·(n−1) + dx)/n``. When the smoothed true range is 0 both DIs are 0 and, like TA-Lib, a bar whose DX is
undefined (TR or +DI + −DI is 0) leaves ADX unchanged.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._base import KernelIndicator, check_period
from ._kernels import COUNT, begin, nan_row, true_range

_HIGH, _LOW, _CLOSE, _PLUS_DM, _MINUS_DM, _TR, _SUM_DX, _ADX = 1, 2, 3, 4, 5, 6, 7, 8


@njit(cache=True)
def adx_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    if not begin(s, o, h, lo, c, v, out, r):
        return
    n = int(p[0])
    moves = int(s[COUNT]) - 1
    up = h - s[_HIGH]
    down = s[_LOW] - lo
    tr = true_range(h, lo, s[_CLOSE])
    s[_HIGH] = h
    s[_LOW] = lo
    s[_CLOSE] = c
    nan_row(out, r)
    if moves == 0:
        return
    plus_dm = up if (up > 0.0 and up > down) else 0.0
    minus_dm = down if (down > 0.0 and down > up) else 0.0
    if moves < n:
        s[_PLUS_DM] += plus_dm
        s[_MINUS_DM] += minus_dm
        s[_TR] += tr
        return
    s[_PLUS_DM] = s[_PLUS_DM] - s[_PLUS_DM] / n + plus_dm
    s[_MINUS_DM] = s[_MINUS_DM] - s[_MINUS_DM] / n + minus_dm
    s[_TR] = s[_TR] - s[_TR] / n + tr
    plus_di = 0.0
    minus_di = 0.0
    dx = np.nan
    if s[_TR] != 0.0:
        plus_di = 100.0 * (s[_PLUS_DM] / s[_TR])
        minus_di = 100.0 * (s[_MINUS_DM] / s[_TR])
        di_sum = plus_di + minus_di
        if di_sum != 0.0:
            dx = 100.0 * (abs(minus_di - plus_di) / di_sum)
    out[r, 1] = plus_di
    out[r, 2] = minus_di
    if moves < 2 * n - 1:
        if not np.isnan(dx):
            s[_SUM_DX] += dx
        return
    if moves == 2 * n - 1:
        if not np.isnan(dx):
            s[_SUM_DX] += dx
        s[_ADX] = s[_SUM_DX] / n
    elif not np.isnan(dx):
        s[_ADX] = (s[_ADX] * (n - 1) + dx) / n
    out[r, 0] = s[_ADX]


@njit(cache=True)
def adx_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        adx_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class ADX(KernelIndicator):
    """ADX with +DI/−DI: columns ``adx_<n>`` (from bar 2n−1), ``plus_di_<n>``, ``minus_di_<n>`` (from bar n)."""

    def __init__(self, period: int = 14) -> None:
        n = check_period("ADX period", period)
        super().__init__(
            columns=[f"adx_{n}", f"plus_di_{n}", f"minus_di_{n}"],
            params=[n],
            state_size=9,
            warmup=2 * n,
            step=adx_step,
            batch=adx_batch,
        )


__all__ = ["ADX"]
