"""Order blocks: the last opposite-colour candle before the move that broke structure.

For a bullish break of the swing high at bar ``j`` by the close of bar ``t``: among the bars strictly between
``j`` and ``t`` take the one with the lowest low (the latest on ties) — where the displacement started — and
from there search back (down to ``j + 1``) for the last bearish candle (close < open). Its high/low range is
the bullish order block. It is created at bar ``t``, the bar of the break, since only then is it known that
this candle preceded a structure break. Bearish blocks mirror this (highest high, last bullish candle).
If no such candle exists, or the leg is older than ``search_limit`` bars (the part still remembered is
searched), no block is created.

From the bar after creation each active block is tracked: *touched* the first time price trades into it
(bullish: low <= top), *mitigated* when price trades through it (``mitigation="wick"``: bullish low < bottom;
``"close"``: close < bottom) — a mitigated block is removed. At most ``max_active`` blocks per side are kept
(the oldest is dropped silently).
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from smartmarket.features.smc.common import EventKind, IndexedCandle, SMCEvent, Zone, zone_event
from smartmarket.features.smc.structure import StructureBreak

Mitigation = Literal["wick", "close"]


class OrderBlockTracker:
    """Creates order blocks at structure breaks and tracks their touches and mitigation."""

    def __init__(self, *, search_limit: int = 500, mitigation: Mitigation = "wick", max_active: int = 20) -> None:
        if mitigation not in ("wick", "close"):
            raise ValueError(f"mitigation must be 'wick' or 'close', got {mitigation!r}")
        self.mitigation = mitigation
        self.max_active = max_active
        self._history: deque[IndexedCandle] = deque(maxlen=search_limit)
        self.bullish: list[Zone] = []
        self.bearish: list[Zone] = []

    def reset(self) -> None:
        self._history.clear()
        self.bullish.clear()
        self.bearish.clear()

    def update(self, bar: IndexedCandle, brk: StructureBreak | None) -> list[SMCEvent]:
        """Track existing blocks against ``bar``, then create a block if ``brk`` happened at ``bar``."""
        _, _, high, low, close, _ = bar.candle
        events = self._track(bar, high, low, close, self.bullish, +1)
        events += self._track(bar, high, low, close, self.bearish, -1)
        if brk is not None:
            zone = self._find_block(brk)
            if zone is not None:
                side = self.bullish if zone.direction > 0 else self.bearish
                side.append(zone)
                if len(side) > self.max_active:
                    side.pop(0)
                events.append(zone_event(EventKind.ORDER_BLOCK, zone, bar))
        self._history.append(bar)
        return events

    def _find_block(self, brk: StructureBreak) -> Zone | None:
        leg = [b for b in self._history if b.row > brk.swing.index]
        if not leg:
            return None
        bullish = brk.direction > 0
        if bullish:
            start = min(range(len(leg)), key=lambda i: (leg[i].candle.low, -i))
        else:
            start = max(range(len(leg)), key=lambda i: (leg[i].candle.high, i))
        for index, candle in reversed(leg[: start + 1]):
            if candle.close < candle.open if bullish else candle.close > candle.open:
                return Zone(brk.direction, candle.high, candle.low, index, candle.ts, brk.index)
        return None

    def _track(
        self, bar: IndexedCandle, high: float, low: float, close: float, zones: list[Zone], direction: int
    ) -> list[SMCEvent]:
        events: list[SMCEvent] = []
        if not zones:
            return events
        close_based = self.mitigation == "close"
        for zone in list(zones):
            if direction > 0:
                entered = low <= zone.top
                through = (close if close_based else low) < zone.bottom
            else:
                entered = high >= zone.bottom
                through = (close if close_based else high) > zone.top
            if entered and not zone.touched:
                zone.touched = True
                events.append(zone_event(EventKind.ORDER_BLOCK_TOUCHED, zone, bar))
            if through:
                zones.remove(zone)
                events.append(zone_event(EventKind.ORDER_BLOCK_MITIGATED, zone, bar))
        return events


__all__ = ["Mitigation", "OrderBlockTracker"]
