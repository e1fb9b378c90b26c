"""Swing highs and lows confirmed by ``length`` bars on each side, emitted at the confirming bar.

A bar ``j`` is a swing high when its high is strictly above the highs of the ``length`` bars before it and
not below the highs of the ``length`` bars after it (so a flat top of equal highs yields one swing: its first
bar). Swing lows mirror this with lows. The swing is only knowable once the ``length`` right-hand bars have
closed, so it is emitted at bar ``j + length`` (counted in valid candles) and carries ``j``'s time and price.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from smartmarket.features.smc.common import IndexedCandle


@dataclass(frozen=True, slots=True)
class Swing:
    """A confirmed swing: ``side`` +1 high / -1 low, at bar ``index`` (``ts``), known from ``confirmed_index``."""

    side: int
    index: int
    ts: int
    price: float
    confirmed_index: int
    confirmed_ts: int


class SwingDetector:
    """Incremental swing detector over a sliding window of ``2 * length + 1`` valid bars."""

    def __init__(self, length: int) -> None:
        if length < 1:
            raise ValueError(f"swing length must be >= 1, got {length}")
        self.length = length
        size = 2 * length + 1
        # the window's candles as four columns (the detector compares highs and lows only)
        self._highs: deque[float] = deque(maxlen=size)
        self._lows: deque[float] = deque(maxlen=size)
        self._rows: deque[int] = deque(maxlen=size)
        self._ts: deque[int] = deque(maxlen=size)

    def reset(self) -> None:
        for column in (self._highs, self._lows, self._rows, self._ts):
            column.clear()

    def update(self, bar: IndexedCandle) -> list[Swing]:
        """Add ``bar``; return the swings (at most one high and one low) confirmed by it."""
        row, candle = bar
        self._highs.append(candle.high)
        self._lows.append(candle.low)
        self._rows.append(row)
        self._ts.append(candle.ts)
        if len(self._rows) < self._rows.maxlen:  # type: ignore[operator]
            return []
        n = self.length
        found: list[Swing] = []
        highs = list(self._highs)
        high = highs[n]
        if high > max(highs[:n]) and high >= max(highs[n + 1 :]):  # finite values: max is "all of them"
            found.append(Swing(+1, self._rows[n], self._ts[n], high, row, candle.ts))
        lows = list(self._lows)
        low = lows[n]
        if low < min(lows[:n]) and low <= min(lows[n + 1 :]):
            found.append(Swing(-1, self._rows[n], self._ts[n], low, row, candle.ts))
        return found


__all__ = ["Swing", "SwingDetector"]
