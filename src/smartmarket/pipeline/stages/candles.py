"""The candles stage: a candle source's closed candles become ``CandleClosed`` events, the root of every chain.

A candle's event id depends only on (symbol, timeframe, open time), so the same candle read from a file, an
exchange or the log again is the same event; its ``correlation_id`` is its own id and every event derived
from it (features, predictions, signal, order, fill, position) carries that id. ``ts_event`` is the close.
The stage keeps the latest candles in a ``CandleCache`` for stages in the same process (risk, execution).

Live candles are stored candles: the recorder also writes every ``CandleClosed`` it records to the candle store
(``stages.base.store_candles``), idempotently, so ``candles``, ``signals``, ``backtest`` and the dashboard see what
a live run received. A stored candle with other values (an exchange revising a candle) is reported, never overwritten.
"""

from __future__ import annotations

from collections import OrderedDict

from smartmarket.core.events import CandleClosed
from smartmarket.core.types import Timeframe
from smartmarket.pipeline.stages.base import candle_event_id


def candle_closed(
    symbol: str, timeframe: Timeframe, ts: int, open: float, high: float, low: float, close: float, volume: float
) -> CandleClosed:
    """The ``CandleClosed`` event of one closed candle (deterministic id, correlation = its own id)."""
    event_id = candle_event_id(symbol, timeframe, ts)
    return CandleClosed(
        event_id=event_id, ts_event=int(ts) + timeframe.ms, correlation_id=event_id, causation_id=None,
        symbol=symbol, timeframe=timeframe, ts=int(ts), open=float(open), high=float(high), low=float(low),
        close=float(close), volume=float(volume),
    )  # fmt: skip


class CandleCache:
    """The latest ``size`` candles per symbol, by open time (a stage's fast path before the event log)."""

    def __init__(self, size: int = 5_000) -> None:
        self.size = size
        self._by_symbol: dict[str, OrderedDict[int, CandleClosed]] = {}

    def put(self, candle: CandleClosed) -> None:
        candles = self._by_symbol.setdefault(candle.symbol, OrderedDict())
        candles[candle.ts] = candle
        if len(candles) > self.size:
            candles.popitem(last=False)

    def get(self, symbol: str, ts: int) -> CandleClosed | None:
        candles = self._by_symbol.get(symbol)
        return candles.get(ts) if candles is not None else None

    def first_from(self, symbol: str, ts: int) -> CandleClosed | None:
        """The earliest cached candle opening at or after ``ts`` (the next candle after a gap)."""
        candles = self._by_symbol.get(symbol)
        if not candles:
            return None
        exact = candles.get(ts)
        if exact is not None:
            return exact
        later = [c for t, c in candles.items() if t >= ts]
        return min(later, key=lambda c: c.ts) if later else None


__all__ = ["CandleCache", "candle_closed"]
