"""Signals (from ``SignalGenerated`` events in the event store) and signal quality (from the quality monitor)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from smartmarket.api.routes import READ_ERRORS, EndQuery, StartQuery, SymbolPath, TimeframePath, services
from smartmarket.api.schemas import QualityOut, SignalOut, SignalsOut
from smartmarket.api.security import require_read
from smartmarket.api.services import parse_range, parse_symbol, parse_timeframe
from smartmarket.api.ws import signal_payload

router = APIRouter(prefix="/api", tags=["signals"], dependencies=[Depends(require_read)], responses=READ_ERRORS)


@router.get("/signals/{symbol}/{timeframe}", response_model=SignalsOut)
def get_signals(
    request: Request,
    symbol: SymbolPath,
    timeframe: TimeframePath,
    start: Annotated[StartQuery, Query(description="signals whose candle closed at or after this time")] = None,
    end: EndQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="most recent signals returned")] = 500,
) -> SignalsOut:
    """The latest signal and the history (oldest first) with each member's probabilities and weight.

    Empty until the signal pipeline has written ``SignalGenerated`` events to the event store.
    """
    sym, tf = parse_symbol(symbol), parse_timeframe(timeframe)
    start_ms, end_ms = parse_range(start, end)
    found = services(request).events.signals(sym, tf, start_ms, end_ms, limit)
    history = [SignalOut(**signal_payload(message, seq)) for seq, message in found]
    return SignalsOut(
        symbol=sym, timeframe=tf.value, count=len(history), latest=history[-1] if history else None, history=history
    )


@router.get("/quality/{symbol}/{timeframe}", response_model=QualityOut)
def get_quality(request: Request, symbol: SymbolPath, timeframe: TimeframePath) -> QualityOut:
    """Rolling hit rate, reliability diagram and drift alarms of the series' signals.

    ``available`` is false (with the reason) until a signal quality monitor is registered with the server.
    """
    sym, tf = parse_symbol(symbol), parse_timeframe(timeframe)
    return services(request).status.quality(sym, tf)


__all__ = ["router"]
