"""Premium / discount: where the close sits inside the current dealing range.

The dealing range runs from the last confirmed swing low to the last confirmed swing high (whether or not
either has since been broken). The position is ``(close - low) / (high - low)`` clipped to [0, 1]: 0 at
the range low (deep discount), 0.5 equilibrium, 1 at the range high (deep premium). It is NaN until both a
swing high and a swing low have been confirmed, and whenever the swing high is not above the swing low.
"""

from __future__ import annotations

import math

from smartmarket.features.smc.swings import Swing


class DealingRange:
    """Tracks the last confirmed swing high and low prices."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.high = math.nan
        self.low = math.nan

    def update(self, swings: list[Swing]) -> None:
        for swing in swings:
            if swing.side > 0:
                self.high = swing.price
            else:
                self.low = swing.price

    def position(self, close: float) -> float:
        """Premium/discount of ``close`` in [0, 1], NaN while the range is undefined."""
        if not self.high > self.low:  # also False when either is NaN
            return math.nan
        return min(1.0, max(0.0, (close - self.low) / (self.high - self.low)))


__all__ = ["DealingRange"]
