"""Market structure from confirmed swings: break of structure (BOS) and change of character (CHoCH).

Breaks are close-based. The *levels* are the last confirmed swing high and the last confirmed swing low;
each level can be broken once (a new swing of that side must be confirmed before that side breaks again).
A close strictly above the unbroken swing-high level is a bullish break, a close strictly below the unbroken
swing-low level a bearish break. A break in the direction of the current trend (or while there is no trend
yet) is a BOS, one against it a CHoCH; either sets the trend to the break's direction.

In the rare case one close crosses both levels (only possible when the swing-high level lies below the
swing-low level) the candle's colour decides: close >= open counts as the bullish break, otherwise bearish.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartmarket.features.smc.common import IndexedCandle
from smartmarket.features.smc.swings import Swing


@dataclass(frozen=True, slots=True)
class StructureBreak:
    """A close beyond ``swing``'s level at bar ``index``: ``direction`` +1 up / -1 down, ``choch`` or BOS."""

    direction: int
    choch: bool
    swing: Swing
    index: int
    ts: int


class StructureTracker:
    """Holds the last confirmed swing levels and the trend (+1 up, -1 down, 0 none yet)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.trend = 0
        self._high: Swing | None = None
        self._low: Swing | None = None
        self._high_broken = False
        self._low_broken = False

    def update(self, bar: IndexedCandle, swings: list[Swing]) -> StructureBreak | None:
        """Take the swings confirmed at ``bar``, then test its close against the unbroken levels."""
        for swing in swings:
            if swing.side > 0:
                self._high, self._high_broken = swing, False
            else:
                self._low, self._low_broken = swing, False
        index, candle = bar
        close = candle.close
        up = self._high is not None and not self._high_broken and close > self._high.price
        down = self._low is not None and not self._low_broken and close < self._low.price
        if up and down:
            up, down = close >= candle.open, close < candle.open
        if up:
            assert self._high is not None
            self._high_broken = True
            return self._break(+1, self._high, index, candle.ts)
        if down:
            assert self._low is not None
            self._low_broken = True
            return self._break(-1, self._low, index, candle.ts)
        return None

    def _break(self, direction: int, swing: Swing, index: int, ts: int) -> StructureBreak:
        choch = self.trend == -direction
        self.trend = direction
        return StructureBreak(direction, choch, swing, index, ts)


__all__ = ["StructureBreak", "StructureTracker"]
