"""Fair value gaps: three-candle imbalances, emitted at the third candle.

With candles ``a, b, c`` (the last three valid candles, ``c`` the newest): a bullish gap exists when
``c.low > a.high`` (the zone is ``[a.high, c.low]``), a bearish gap when ``c.high < a.low`` (zone
``[c.high, a.low]``). The gap belongs to the middle candle ``b`` (its ``ref_index``/``ref_ts``) but is only
knowable once ``c`` has closed, so it is emitted at ``c``. Gaps smaller than ``min_size`` (a fraction of
``c.close``) are ignored. The middle candle's colour is not required.

From the next bar on, a bullish gap is *partially filled* the first time a low trades inside it
(low < top) and *filled* when a low reaches its bottom (low <= bottom); bearish gaps mirror this with highs.
Filled gaps are removed; at most ``max_active`` open gaps per side are kept (the oldest is dropped silently).
"""

from __future__ import annotations

from collections import deque

from smartmarket.features.smc.common import EventKind, IndexedCandle, SMCEvent, Zone, zone_event


class FVGTracker:
    """Detects fair value gaps and tracks how far price has filled them."""

    def __init__(self, *, min_size: float = 0.0, max_active: int = 50) -> None:
        self.min_size = min_size
        self.max_active = max_active
        self._previous: deque[IndexedCandle] = deque(maxlen=2)
        self.bullish: list[Zone] = []
        self.bearish: list[Zone] = []

    def reset(self) -> None:
        self._previous.clear()
        self.bullish.clear()
        self.bearish.clear()

    def update(self, bar: IndexedCandle) -> list[SMCEvent]:
        """Track open gaps against ``bar``, then detect a gap completed by ``bar``."""
        index, candle = bar
        low, high = candle.low, candle.high
        events = self._track(bar, low, high, self.bullish, +1)
        events += self._track(bar, low, high, self.bearish, -1)
        if len(self._previous) == 2:
            (_, first), (middle_index, middle) = self._previous
            zone: Zone | None = None
            if candle.low > first.high:
                zone = Zone(+1, candle.low, first.high, middle_index, middle.ts, index)
            elif candle.high < first.low:
                zone = Zone(-1, first.low, candle.high, middle_index, middle.ts, index)
            if zone is not None and (zone.top - zone.bottom) >= self.min_size * abs(candle.close):
                side = self.bullish if zone.direction > 0 else self.bearish
                side.append(zone)
                if len(side) > self.max_active:
                    side.pop(0)
                events.append(zone_event(EventKind.FVG, zone, bar))
        self._previous.append(bar)
        return events

    def _track(self, bar: IndexedCandle, low: float, high: float, zones: list[Zone], direction: int) -> list[SMCEvent]:
        events: list[SMCEvent] = []
        if not zones:
            return events
        for zone in list(zones):
            if direction > 0:
                inside, filled = low < zone.top, low <= zone.bottom
            else:
                inside, filled = high > zone.bottom, high >= zone.top
            if filled:
                zones.remove(zone)
                events.append(zone_event(EventKind.FVG_FILLED, zone, bar))
            elif inside and not zone.touched:
                zone.touched = True
                events.append(zone_event(EventKind.FVG_PARTIAL_FILL, zone, bar))
        return events


__all__ = ["FVGTracker"]
