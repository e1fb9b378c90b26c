"""Swing highs and lows confirmed by ``length`` bars on each side, emitted at the confirming bar.

A bar ``j`` is a swing high when its high is strictly above the highs of the ``length`` bars before it and
not below the highs of the ``length`` bars after it (so a flat top of equal highs yields one swing: its first
bar). Swing lows mirror this with lows. The swing is only knowable once the ``length`` right-hand bars have
closed, so it is emitted at bar ``j + length`` (counted in valid candles) and carries ``j``'s time and price.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from smartmarket.features.smc.common import Bar


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
        self._window: deque[Bar] = deque(maxlen=2 * length + 1)

    def reset(self) -> None:
        self._window.clear()

    def update(self, bar: Bar) -> list[Swing]:
        """Add ``bar``; return the swings (at most one high and one low) confirmed by it."""
        window = self._window
        window.append(bar)
        if len(window) < window.maxlen:  # type: ignore[operator]
            return []
        n = self.length
        bars = list(window)
        middle = bars[n]
        left, right = bars[:n], bars[n + 1 :]
        found: list[Swing] = []
        if all(middle.high > b.high for b in left) and all(middle.high >= b.high for b in right):
            found.append(Swing(+1, middle.index, middle.ts, middle.high, bar.index, bar.ts))
        if all(middle.low < b.low for b in left) and all(middle.low <= b.low for b in right):
            found.append(Swing(-1, middle.index, middle.ts, middle.low, bar.index, bar.ts))
        return found


__all__ = ["Swing", "SwingDetector"]
