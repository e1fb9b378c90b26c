"""Market data: stored symbols, candles (resampled on the fly), features and regimes."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request

from smartmarket.api.routes import READ_ERRORS, EndQuery, StartQuery, SymbolPath, TimeframePath, services
from smartmarket.api.schemas import (
    CandleOut,
    CandlesOut,
    FeaturesOut,
    RegimesOut,
    RegimeSpan,
    SeriesOut,
    SymbolOut,
    SymbolsOut,
)
from smartmarket.api.security import require_read
from smartmarket.api.services import parse_range, parse_symbol, parse_timeframe, regime_spans

router = APIRouter(prefix="/api", tags=["market"], dependencies=[Depends(require_read)], responses=READ_ERRORS)


@router.get("/symbols", response_model=SymbolsOut)
def list_symbols(request: Request) -> SymbolsOut:
    """Every stored symbol with its series (timeframe, candle count, first and last candle open time)."""
    grouped: dict[str, list[SeriesOut]] = {}
    for info in services(request).market.series():
        grouped.setdefault(info.symbol, []).append(
            SeriesOut(
                timeframe=info.timeframe.value,
                count=info.count,
                first_ts=info.first_ts,
                last_ts=info.last_ts,
                synthetic=info.synthetic,
            )
        )
    return SymbolsOut(symbols=[SymbolOut(symbol=s, series=series) for s, series in grouped.items()])


@router.get("/candles/{symbol}/{timeframe}", response_model=CandlesOut)
def get_candles(
    request: Request,
    symbol: SymbolPath,
    timeframe: TimeframePath,
    start: StartQuery = None,
    end: EndQuery = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="most candles returned")] = 1000,
) -> CandlesOut:
    """Candles in ``[start, end)``: the first ``limit`` from ``start``, else the newest ``limit``.

    A timeframe that is not stored is built from a finer stored one (first open, max high, min low, last
    close, summed volume; UTC buckets, weeks from Monday).
    """
    sym, tf = parse_symbol(symbol), parse_timeframe(timeframe)
    start_ms, end_ms = parse_range(start, end)
    frame = services(request).market.candles(sym, tf, start_ms, end_ms, limit)
    rows = [
        CandleOut(ts=ts, open=o, high=h, low=lo, close=c, volume=v)
        for ts, o, h, lo, c, v in zip(
            frame["ts"].tolist(),
            frame["open"].tolist(),
            frame["high"].tolist(),
            frame["low"].tolist(),
            frame["close"].tolist(),
            frame["volume"].tolist(),
            strict=True,
        )
    ]
    return CandlesOut(symbol=sym, timeframe=tf.value, count=len(rows), candles=rows)


@router.get("/features/{symbol}/{timeframe}", response_model=FeaturesOut)
def get_features(
    request: Request,
    symbol: SymbolPath,
    timeframe: TimeframePath,
    set: Annotated[str, Query(max_length=32, description="feature set: minimal, default or full")] = "minimal",
    start: StartQuery = None,
    end: EndQuery = None,
    limit: Annotated[int, Query(ge=1, le=2000, description="most bars returned")] = 200,
) -> FeaturesOut:
    """A named feature set over stored candles, causal (bar t uses bars ≤ t), warm-up read before the first bar."""
    sym, tf = parse_symbol(symbol), parse_timeframe(timeframe)
    start_ms, end_ms = parse_range(start, end)
    name, values = services(request).market.features(sym, tf, set, start_ms, end_ms, limit)
    columns = {
        str(col): [None if not np.isfinite(x) else float(x) for x in values[col].to_numpy(dtype=np.float64)]
        for col in values.columns[1:]
    }
    return FeaturesOut(
        symbol=sym, timeframe=tf.value, feature_set=name, count=len(values),
        ts=[int(t) for t in values["ts"].tolist()], columns=columns,
    )  # fmt: skip


@router.get("/regimes/{symbol}/{timeframe}", response_model=RegimesOut)
def get_regimes(
    request: Request,
    symbol: SymbolPath,
    timeframe: TimeframePath,
    start: StartQuery = None,
    end: EndQuery = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="most bars returned")] = 1000,
) -> RegimesOut:
    """The regime label of every bar (trending_up/down, ranging, volatile; unknown while warming up)."""
    sym, tf = parse_symbol(symbol), parse_timeframe(timeframe)
    start_ms, end_ms = parse_range(start, end)
    ts, names = services(request).market.regimes(sym, tf, start_ms, end_ms, limit)
    labels = [str(n) for n in names.tolist()]
    shares = {name: labels.count(name) / len(labels) for name in sorted(set(labels))} if labels else {}
    return RegimesOut(
        symbol=sym, timeframe=tf.value, count=len(labels), ts=[int(t) for t in ts.tolist()], regime=labels,
        spans=[RegimeSpan(**span) for span in regime_spans(ts, names)], shares=shares,
    )  # fmt: skip


__all__ = ["router"]
