"""Smart Money Concepts structure, causal by construction: every item is emitted at the bar it becomes knowable.

``SMCFeatures`` is one incremental state machine (a ``Feature``) combining the detectors of this package:
swings (``swings``), BOS/CHoCH (``structure``), order blocks (``order_blocks``), fair value gaps (``fvg``),
equal highs/lows and sweeps (``liquidity``) and premium/discount (``ranges``). ``batch`` feeds the rows through
the same ``update``, so batch and streaming outputs are identical by construction. Besides the numeric columns
``SMC_COLUMNS`` it keeps a list of ``SMCEvent`` records (``events``, ``last_events``; ``detect_events(frame)``).

A candle with a non-finite open/high/low/close is skipped: its output row is all NaN, it emits nothing and it
does not count as a bar for any window (swing confirmation counts valid candles). Time gaps are not special:
windows count candles, not time. ``ts`` must increase strictly, otherwise ``ValidationError`` is raised.
See docs/smc.md for the definitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.core.errors import ValidationError
from smartmarket.core.types import Candle
from smartmarket.features.base import Feature
from smartmarket.features.smc.common import EventKind, IndexedCandle, SMCEvent, Zone, nearest_zone, signed_distance
from smartmarket.features.smc.fvg import FVGTracker
from smartmarket.features.smc.liquidity import LiquidityPool, LiquidityTracker
from smartmarket.features.smc.order_blocks import Mitigation, OrderBlockTracker
from smartmarket.features.smc.ranges import DealingRange
from smartmarket.features.smc.structure import StructureBreak, StructureTracker
from smartmarket.features.smc.swings import Swing, SwingDetector

NAN = math.nan

SMC_COLUMNS: tuple[str, ...] = (
    "smc_swing_high",  # price of the swing high confirmed at this bar, else NaN
    "smc_swing_low",
    "smc_range_high",  # last confirmed swing high / low (the dealing range), NaN until one exists
    "smc_range_low",
    "smc_premium_discount",  # close within the dealing range, [0, 1], NaN until defined
    "smc_trend",  # +1 / -1 after the last break, 0 before any break
    "smc_bos",  # +1 / -1 at the bar of a break of structure, else 0
    "smc_choch",  # +1 / -1 at the bar of a change of character, else 0
    "smc_ob_bull_top",  # nearest active (unmitigated) bullish order block, NaN if none
    "smc_ob_bull_bottom",
    "smc_ob_bear_top",
    "smc_ob_bear_bottom",
    "smc_ob_bull_new",  # 1 at the bar a bullish order block is created, else 0
    "smc_ob_bear_new",
    "smc_ob_bull_mitigated",  # number of bullish order blocks mitigated at this bar
    "smc_ob_bear_mitigated",
    "smc_ob_bull_active",  # number of active bullish order blocks
    "smc_ob_bear_active",
    "smc_dist_ob_bull",  # signed distance close -> nearest bullish block / close (+ above, - below, 0 inside)
    "smc_dist_ob_bear",
    "smc_fvg_bull",  # 1 at the third candle of a bullish fair value gap, else 0
    "smc_fvg_bear",
    "smc_fvg_bull_open",  # number of open (not fully filled) bullish gaps
    "smc_fvg_bear_open",
    "smc_fvg_bull_filled",  # number of bullish gaps fully filled at this bar
    "smc_fvg_bear_filled",
    "smc_dist_fvg_bull",  # signed distance close -> nearest open bullish gap / close
    "smc_dist_fvg_bear",
    "smc_eqh",  # member count of an equal-highs pool formed or extended at this bar, else 0
    "smc_eql",
    "smc_liq_high",  # level of the nearest active equal-highs pool, NaN if none
    "smc_liq_low",
    "smc_sweep_high",  # 1 when an equal-highs pool is swept (traded above, closed back) at this bar
    "smc_sweep_low",
    "smc_dist_liq_high",  # (pool level - close) / close
    "smc_dist_liq_low",
)
_NAN_ROW: tuple[float, ...] = (NAN,) * len(SMC_COLUMNS)
# the named tuples from plain tuples without a Python-level call (once per candle)
_new_candle = partial(tuple.__new__, Candle)
_new_indexed = partial(tuple.__new__, IndexedCandle)


@dataclass(frozen=True)
class SMCConfig:
    """Parameters of every SMC detector (see docs/smc.md)."""

    swing_length: int = 5
    ob_mitigation: Mitigation = "wick"
    ob_search_limit: int = 500
    max_active_order_blocks: int = 20
    fvg_min_size: float = 0.0
    max_active_fvgs: int = 50
    liquidity_tolerance_atr: float = 0.1
    atr_length: int = 14
    liquidity_max_candidates: int = 10


class SMCFeatures(Feature):
    """All SMC detectors as one causal ``Feature`` producing ``SMC_COLUMNS`` and a list of ``SMCEvent``."""

    columns = SMC_COLUMNS

    def __init__(self, config: SMCConfig | None = None, **params: Any) -> None:
        self.config = replace(config or SMCConfig(), **params)
        c = self.config
        self._swings = SwingDetector(c.swing_length)
        self._structure = StructureTracker()
        self._order_blocks = OrderBlockTracker(
            search_limit=c.ob_search_limit, mitigation=c.ob_mitigation, max_active=c.max_active_order_blocks
        )
        self._fvg = FVGTracker(min_size=c.fvg_min_size, max_active=c.max_active_fvgs)
        self._liquidity = LiquidityTracker(
            tolerance_atr=c.liquidity_tolerance_atr, atr_length=c.atr_length, max_candidates=c.liquidity_max_candidates
        )
        self._range = DealingRange()
        self._warmup = 2 * c.swing_length + 1
        self.reset()

    def reset(self) -> None:
        for part in (self._swings, self._structure, self._order_blocks, self._fvg, self._liquidity, self._range):
            part.reset()
        self._rows = 0
        self._valid_rows = 0
        self._last_ts: int | None = None
        self._values = _NAN_ROW
        self.events: list[SMCEvent] = []
        self.last_events: tuple[SMCEvent, ...] = ()

    @property
    def ready(self) -> bool:
        """True once ``2 * swing_length + 1`` valid candles were seen (the first bar a swing can be confirmed)."""
        return self._valid_rows >= self._warmup

    @property
    def values(self) -> tuple[float, ...]:
        return self._values

    def update(self, ts: int, open: float, high: float, low: float, close: float, volume: float) -> None:
        if self._last_ts is not None and ts <= self._last_ts:
            raise ValidationError(
                f"candle ts {ts} does not follow {self._last_ts}",
                where="SMCFeatures.update",
                hint="feed candles in order",
            )
        self._last_ts = ts
        index = self._rows
        self._rows += 1
        if not (math.isfinite(open) and math.isfinite(high) and math.isfinite(low) and math.isfinite(close)):
            self._values, self.last_events = _NAN_ROW, ()
            return
        self._valid_rows += 1
        bar = _new_indexed((index, _new_candle((ts, open, high, low, close, volume))))

        swings = self._swings.update(bar)
        self._range.update(swings)
        brk = self._structure.update(bar, swings)
        events = [_swing_event(s) for s in swings]
        if brk is not None:
            events.append(_break_event(brk))
        events += self._order_blocks.update(bar, brk)
        events += self._fvg.update(bar)
        events += self._liquidity.update(bar, swings)
        self.last_events = tuple(events)
        self.events.extend(events)
        self._values = self._row(bar, swings, brk, events) if self.ready else _NAN_ROW

    def batch(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Reset, then run ``update`` over every row (the streaming code itself, so outputs are identical)."""
        self.reset()
        out = np.full((len(frame), len(self.columns)), np.nan)
        arrays = [frame[c].to_numpy().tolist() for c in ("ts", "open", "high", "low", "close", "volume")]
        for i, (ts, o, h, lo, c, v) in enumerate(zip(*arrays, strict=True)):
            self.update(int(ts), float(o), float(h), float(lo), float(c), float(v))
            out[i] = self._values
        return pd.DataFrame(out, columns=list(self.columns), index=frame.index)

    def _row(
        self, bar: IndexedCandle, swings: list[Swing], brk: StructureBreak | None, events: list[SMCEvent]
    ) -> tuple[float, ...]:
        close = bar.candle.close
        high_swing = next((s.price for s in swings if s.side > 0), NAN)
        low_swing = next((s.price for s in swings if s.side < 0), NAN)
        bos = brk.direction if brk is not None and not brk.choch else 0
        choch = brk.direction if brk is not None and brk.choch else 0
        counts = _count_events(events)
        ob_bull = _zone_columns(self._order_blocks.bullish, close)
        ob_bear = _zone_columns(self._order_blocks.bearish, close)
        liq_high = _pool_columns(self._liquidity.pools[+1], close)
        liq_low = _pool_columns(self._liquidity.pools[-1], close)
        return (
            high_swing,
            low_swing,
            self._range.high,
            self._range.low,
            self._range.position(close),
            float(self._structure.trend),
            float(bos),
            float(choch),
            ob_bull[0],
            ob_bull[1],
            ob_bear[0],
            ob_bear[1],
            counts.get((EventKind.ORDER_BLOCK, +1), 0.0),
            counts.get((EventKind.ORDER_BLOCK, -1), 0.0),
            counts.get((EventKind.ORDER_BLOCK_MITIGATED, +1), 0.0),
            counts.get((EventKind.ORDER_BLOCK_MITIGATED, -1), 0.0),
            float(len(self._order_blocks.bullish)),
            float(len(self._order_blocks.bearish)),
            ob_bull[2],
            ob_bear[2],
            counts.get((EventKind.FVG, +1), 0.0),
            counts.get((EventKind.FVG, -1), 0.0),
            float(len(self._fvg.bullish)),
            float(len(self._fvg.bearish)),
            counts.get((EventKind.FVG_FILLED, +1), 0.0),
            counts.get((EventKind.FVG_FILLED, -1), 0.0),
            _zone_columns(self._fvg.bullish, close)[2],
            _zone_columns(self._fvg.bearish, close)[2],
            float(self._liquidity.formed[+1]),
            float(self._liquidity.formed[-1]),
            liq_high[0],
            liq_low[0],
            counts.get((EventKind.LIQUIDITY_SWEEP, +1), 0.0),
            counts.get((EventKind.LIQUIDITY_SWEEP, -1), 0.0),
            liq_high[1],
            liq_low[1],
        )


def detect_events(frame: pd.DataFrame, config: SMCConfig | None = None, **params: Any) -> list[SMCEvent]:
    """All SMC events of a candle frame, in emission order (each at the bar it became knowable)."""
    features = SMCFeatures(config, **params)
    features.batch(frame)
    return features.events


def _swing_event(swing: Swing) -> SMCEvent:
    kind = EventKind.SWING_HIGH if swing.side > 0 else EventKind.SWING_LOW
    return SMCEvent(kind, swing.side, swing.confirmed_index, swing.confirmed_ts, swing.index, swing.ts, swing.price)


def _break_event(brk: StructureBreak) -> SMCEvent:
    kind = EventKind.CHOCH if brk.choch else EventKind.BOS
    swing = brk.swing
    return SMCEvent(kind, brk.direction, brk.index, brk.ts, swing.index, swing.ts, swing.price)


def _count_events(events: list[SMCEvent]) -> dict[tuple[EventKind, int], float]:
    counts: dict[tuple[EventKind, int], float] = {}
    for event in events:
        key = (event.kind, event.direction)
        counts[key] = counts.get(key, 0.0) + 1.0
    return counts


def _zone_columns(zones: list[Zone], close: float) -> tuple[float, float, float]:
    """(top, bottom, signed distance) of the zone nearest to ``close``; NaNs when there is none."""
    zone = nearest_zone(zones, close)
    if zone is None:
        return NAN, NAN, NAN
    return zone.top, zone.bottom, signed_distance(close, zone.top, zone.bottom)


def _pool_columns(pools: list[LiquidityPool], close: float) -> tuple[float, float]:
    """(level, (level - close) / close) of the pool nearest to ``close``; NaNs when there is none."""
    if not pools:
        return NAN, NAN
    level = min(reversed(pools), key=lambda p: abs(p.level - close)).level
    return level, (level - close) / close


__all__ = [
    "SMC_COLUMNS",
    "EventKind",
    "IndexedCandle",
    "SMCConfig",
    "SMCEvent",
    "SMCFeatures",
    "detect_events",
]
