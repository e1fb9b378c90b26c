"""HTTP routes, one module per area. Shared here: access to the services and the documented error answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query, Request

from smartmarket.api.schemas import SYMBOL_PATTERN, ErrorBody
from smartmarket.api.services import Services
from smartmarket.core.types import Timeframe

SymbolPath = Annotated[str, Path(pattern=SYMBOL_PATTERN, description="symbol, e.g. BTCUSDT (btc-usdt works too)")]
TimeframePath = Annotated[Timeframe, Path(description="candle timeframe (a finer stored one is resampled)")]
StartQuery = Annotated[
    str | None, Query(max_length=40, description="first bar open time (inclusive): ISO-8601 or epoch ms")
]
EndQuery = Annotated[str | None, Query(max_length=40, description="bars opening before this time (exclusive)")]


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the error codes a route can answer with."""
    return {code: {"model": ErrorBody} for code in codes}


READ_ERRORS = errors(400, 401, 403, 404)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


__all__ = [
    "READ_ERRORS",
    "SYMBOL_PATTERN",
    "EndQuery",
    "StartQuery",
    "SymbolPath",
    "TimeframePath",
    "errors",
    "services",
]
