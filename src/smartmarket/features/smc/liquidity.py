"""Liquidity pools (equal highs / equal lows among confirmed swings) and their sweeps.

*Candidates* are the recent confirmed swings of each side (at most ``max_candidates``). A candidate swing
high dies once a later high exceeds it by more than the tolerance (price already took it). The tolerance is
``tolerance_atr`` × ATR(``atr_length``, Wilder) at the bar being processed — 0 (exact equality) while the
ATR is not yet defined.

When a new swing high is confirmed at bar ``t`` it first joins an active pool whose level is within the
tolerance (the nearest one); otherwise, if candidates lie within the tolerance of its price, they and it
form a new equal-highs pool at ``t`` with level = the highest member price; otherwise it becomes a candidate.
Equal lows mirror this.

From the bar after it forms, a pool resolves at the first bar that trades beyond its level: for highs, a bar
with ``high > level`` is a *sweep* when it closes back at or below the level and *taken* when it closes
above. Either way the pool is removed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from smartmarket.features.smc.common import EventKind, IndexedCandle, SMCEvent
from smartmarket.features.smc.swings import Swing


class AverageTrueRange:
    """Wilder's ATR: the mean of the first ``length`` true ranges, then ``atr += (tr - atr) / length``."""

    def __init__(self, length: int = 14) -> None:
        if length < 1:
            raise ValueError(f"ATR length must be >= 1, got {length}")
        self.length = length
        self.reset()

    def reset(self) -> None:
        self.value = math.nan
        self._previous_close = math.nan
        self._seed: list[float] = []

    def update(self, bar: IndexedCandle) -> float:
        _, _, high, low, close, _ = bar.candle
        true_range = high - low
        if not math.isnan(self._previous_close):
            true_range = max(true_range, abs(high - self._previous_close), abs(low - self._previous_close))
        self._previous_close = close
        if math.isnan(self.value):
            self._seed.append(true_range)
            if len(self._seed) == self.length:
                self.value = sum(self._seed) / self.length
        else:
            self.value = (self.value * (self.length - 1) + true_range) / self.length
        return self.value


@dataclass(slots=True)
class LiquidityPool:
    """Equal highs (``side`` +1) or lows (-1): ``level`` is the extreme member price, ``members`` the count."""

    side: int
    level: float
    top: float
    bottom: float
    members: int
    ref_index: int
    ref_ts: int
    created_index: int


class LiquidityTracker:
    """Forms equal-high/low pools from confirmed swings and reports sweeps."""

    def __init__(self, *, tolerance_atr: float = 0.1, atr_length: int = 14, max_candidates: int = 10) -> None:
        self.tolerance_atr = tolerance_atr
        self.atr = AverageTrueRange(atr_length)
        self._candidates: dict[int, deque[Swing]] = {+1: deque(maxlen=max_candidates), -1: deque(maxlen=max_candidates)}
        self.pools: dict[int, list[LiquidityPool]] = {+1: [], -1: []}
        self.formed: dict[int, int] = {+1: 0, -1: 0}  # members of the pool formed/extended at the last bar

    def reset(self) -> None:
        self.atr.reset()
        for side in (+1, -1):
            self._candidates[side].clear()
            self.pools[side].clear()
            self.formed[side] = 0

    def tolerance(self) -> float:
        return 0.0 if math.isnan(self.atr.value) else self.tolerance_atr * self.atr.value

    def update(self, bar: IndexedCandle, swings: list[Swing]) -> list[SMCEvent]:
        """Resolve pools against ``bar``, drop candidates it took, then add the swings confirmed at ``bar``."""
        self.atr.update(bar)
        tolerance = self.tolerance()
        self.formed = {+1: 0, -1: 0}
        events = self._resolve(bar)
        candle = bar.candle
        for side, extreme in ((+1, candle.high), (-1, candle.low)):
            candidates = self._candidates[side]
            for swing in [s for s in candidates if side * (extreme - s.price) > tolerance]:
                candidates.remove(swing)
        for swing in swings:
            event = self._add_swing(swing, bar, tolerance)
            if event is not None:
                events.append(event)
        return events

    def _resolve(self, bar: IndexedCandle) -> list[SMCEvent]:
        events: list[SMCEvent] = []
        _, _, high, low, close, _ = bar.candle
        for side in (+1, -1):
            for pool in list(self.pools[side]):
                if side * (high if side > 0 else low) > side * pool.level:
                    swept = side * close <= side * pool.level
                    self.pools[side].remove(pool)
                    kind = EventKind.LIQUIDITY_SWEEP if swept else EventKind.LIQUIDITY_TAKEN
                    events.append(_pool_event(kind, pool, bar))
        return events

    def _add_swing(self, swing: Swing, bar: IndexedCandle, tolerance: float) -> SMCEvent | None:
        side = swing.side
        kind = EventKind.EQUAL_HIGHS if side > 0 else EventKind.EQUAL_LOWS
        near_pools = [p for p in self.pools[side] if abs(p.level - swing.price) <= tolerance]
        if near_pools:
            pool = min(reversed(near_pools), key=lambda p: abs(p.level - swing.price))
            pool.members += 1
            pool.top, pool.bottom = max(pool.top, swing.price), min(pool.bottom, swing.price)
            pool.level = pool.top if side > 0 else pool.bottom
            pool.ref_index, pool.ref_ts = swing.index, swing.ts
            self.formed[side] = pool.members
            return _pool_event(kind, pool, bar)
        candidates = self._candidates[side]
        matches = [s for s in candidates if abs(s.price - swing.price) <= tolerance]
        if not matches:
            candidates.append(swing)
            return None
        for match in matches:
            candidates.remove(match)
        prices = [s.price for s in matches] + [swing.price]
        top, bottom = max(prices), min(prices)
        pool = LiquidityPool(
            side, top if side > 0 else bottom, top, bottom, len(prices), swing.index, swing.ts, bar.row
        )
        self.pools[side].append(pool)
        self.formed[side] = pool.members
        return _pool_event(kind, pool, bar)


def _pool_event(kind: EventKind, pool: LiquidityPool, bar: IndexedCandle) -> SMCEvent:
    index, ts = bar.row, bar.candle.ts
    return SMCEvent(kind, pool.side, index, ts, pool.ref_index, pool.ref_ts, pool.level, pool.top, pool.bottom)


__all__ = ["AverageTrueRange", "LiquidityPool", "LiquidityTracker"]
