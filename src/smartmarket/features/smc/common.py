"""Small shared pieces of the SMC state machines: the indexed candle, zones and the event record.

Everything here is plain data; the detectors in the sibling modules own the logic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from smartmarket.core.types import Candle

NAN = math.nan


class IndexedCandle(NamedTuple):
    """One valid (finite OHLC) candle at its ``row`` position in the input, as the detectors see it.

    The candle is the one ``core.types.Candle``; the row is what events and zones refer back to (``index``).
    """

    row: int
    candle: Candle


class EventKind(StrEnum):
    """What happened. ``direction`` on the event says which side (see ``SMCEvent``)."""

    SWING_HIGH = "swing_high"
    SWING_LOW = "swing_low"
    BOS = "bos"
    CHOCH = "choch"
    ORDER_BLOCK = "order_block"
    ORDER_BLOCK_TOUCHED = "order_block_touched"
    ORDER_BLOCK_MITIGATED = "order_block_mitigated"
    FVG = "fvg"
    FVG_PARTIAL_FILL = "fvg_partial_fill"
    FVG_FILLED = "fvg_filled"
    EQUAL_HIGHS = "equal_highs"
    EQUAL_LOWS = "equal_lows"
    LIQUIDITY_SWEEP = "liquidity_sweep"
    LIQUIDITY_TAKEN = "liquidity_taken"


@dataclass(frozen=True, slots=True)
class SMCEvent:
    """One SMC event, emitted at the bar where it became knowable (never back-dated).

    ``index``/``ts``: the bar at which the event is emitted (row position and candle-open ms).
    ``ref_index``/``ref_ts``: the bar of the object the event is about (the swing candle, the order-block
    candle, the first candle of a fair value gap, the latest swing of a liquidity pool...).
    ``direction``: +1 bullish / -1 bearish for structure, order blocks and gaps; for swings and liquidity it
    is the side: +1 highs (buy-side liquidity), -1 lows (sell-side liquidity).
    ``price``: the reference level (swing price, broken level, pool level, zone top for bullish / bottom for
    bearish zones); ``top``/``bottom``: the zone bounds where the object is a zone, else NaN.
    """

    kind: EventKind
    direction: int
    index: int
    ts: int
    ref_index: int
    ref_ts: int
    price: float
    top: float = NAN
    bottom: float = NAN


@dataclass(slots=True)
class Zone:
    """A price zone [bottom, top] born from the candle ``ref_index`` and created (knowable) at ``created_index``."""

    direction: int
    top: float
    bottom: float
    ref_index: int
    ref_ts: int
    created_index: int
    touched: bool = False


def signed_distance(close: float, top: float, bottom: float) -> float:
    """Distance from ``close`` to the zone [bottom, top] as a fraction of ``close``.

    Positive when the zone lies above the close, negative below, 0 when the close is inside.
    """
    if close > top:
        return (top - close) / close
    if close < bottom:
        return (bottom - close) / close
    return 0.0


def nearest_zone(zones: list[Zone], close: float) -> Zone | None:
    """The zone closest to ``close`` (ties: the most recently created, i.e. later in ``zones``)."""
    best: Zone | None = None
    best_gap = math.inf
    for zone in zones:  # hot loop: the distance is inlined
        bottom, top = zone.bottom, zone.top
        gap = bottom - close if close < bottom else (close - top if close > top else 0.0)
        if gap <= best_gap:
            best, best_gap = zone, gap
    return best


def zone_event(kind: EventKind, zone: Zone, bar: IndexedCandle) -> SMCEvent:
    """An event about ``zone`` emitted at ``bar`` (price: top of a bullish zone, bottom of a bearish one)."""
    price = zone.top if zone.direction > 0 else zone.bottom
    index, ts = bar.row, bar.candle.ts
    return SMCEvent(kind, zone.direction, index, ts, zone.ref_index, zone.ref_ts, price, zone.top, zone.bottom)


__all__ = ["NAN", "EventKind", "IndexedCandle", "SMCEvent", "Zone", "nearest_zone", "signed_distance", "zone_event"]
