"""Candles from an exchange through ccxt: paginated, rate-limit aware, resumable.

``fetch_ohlcv_pages`` walks forward from ``since`` one page at a time (each request starts one candle after
the last candle received), retries transient failures with bounded exponential backoff, and never yields the
candle that is still open. ``ingest_from_exchange`` stores those pages through ``ingest_frame`` (validation
and quarantine included), resuming after the last stored candle of the series.

Symbols: ccxt spells them ``BTC/USDT``; the store keeps ``normalize_symbol`` of that (``BTCUSDT``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import ccxt
import pandas as pd

from smartmarket.core.errors import ConfigError, FatalError, RetryableError
from smartmarket.core.frame import CANDLE_COLUMNS, as_candle_frame
from smartmarket.core.timeutil import format_ms
from smartmarket.core.timeutil import now_ms as wall_clock_ms
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.data.ingest import IngestReport, ingest_frame
from smartmarket.store.base import CandleStore

log = logging.getLogger(__name__)

T = TypeVar("T")

# Failures worth another try: connection trouble, timeouts, "slow down" answers (HTTP 418/429).
RETRYABLE_EXCHANGE_ERRORS: tuple[type[Exception], ...] = (
    ccxt.NetworkError,
    ccxt.RateLimitExceeded,
    ccxt.DDoSProtection,
)

# Per-exchange options for spot-only use, so loading markets does not also query derivatives endpoints.
_SPOT_ONLY_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {"fetchMarkets": {"types": ["spot"]}},
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff: waits ``base_delay_s * 2**k`` (capped) between ``attempts`` tries."""

    attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (1-based)."""
        return float(min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1)))


def make_exchange(exchange_id: str, *, spot_only: bool = True) -> ccxt.Exchange:
    """A ccxt exchange (sync API) with ccxt's rate limiter on. Unknown ids raise ``ConfigError``."""
    if exchange_id not in ccxt.exchanges:
        raise ConfigError(
            f"unknown exchange {exchange_id!r}",
            hint="use a ccxt exchange id such as binance, kraken, coinbase, okx, bybit (the full list: ccxt.exchanges)",
        )
    config: dict[str, Any] = {"enableRateLimit": True}
    if spot_only and exchange_id in _SPOT_ONLY_OPTIONS:
        config["options"] = dict(_SPOT_ONLY_OPTIONS[exchange_id])
    exchange: ccxt.Exchange = getattr(ccxt, exchange_id)(config)
    return exchange


def call_with_retry(
    action: Callable[[], T],
    *,
    what: str,
    where: str,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``action``; on a retryable exchange error wait and try again, up to ``retry.attempts`` times.

    Raises ``RetryableError`` when every attempt failed, ``ConfigError`` for an unknown symbol and
    ``FatalError`` for any other exchange refusal.
    """
    for attempt in range(1, retry.attempts + 1):
        try:
            return action()
        except RETRYABLE_EXCHANGE_ERRORS as exc:
            if attempt == retry.attempts:
                raise RetryableError(
                    f"{what} failed {attempt} times, last with {type(exc).__name__}: {exc}",
                    where=where,
                    hint="the exchange is busy or unreachable; run again later (ingestion resumes where it stopped)",
                ) from exc
            delay = retry.delay(attempt)
            log.warning("%s at %s: %s; retry %d/%d in %.1fs", what, where, exc, attempt, retry.attempts - 1, delay)
            sleep(delay)
        except ccxt.BadSymbol as exc:
            raise ConfigError(
                f"{what}: unknown symbol ({exc})", where=where, hint="use the exchange's spelling, e.g. BTC/USDT"
            ) from exc
        except ccxt.BaseError as exc:
            raise FatalError(f"{what} refused: {type(exc).__name__}: {exc}", where=where) from exc
    raise AssertionError("unreachable: RetryPolicy.attempts must be >= 1")


def fetch_ohlcv_pages(
    exchange: ccxt.Exchange,
    symbol: str,
    timeframe: Timeframe,
    since_ms: int,
    until_ms: int | None,
    *,
    limit: int = 1000,
    now_ms: Callable[[], int] = wall_clock_ms,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[pd.DataFrame]:
    """Yield candle frames of closed candles with ``since_ms <= ts < until_ms``, oldest first, page by page.

    Each request asks for ``limit`` candles from the cursor; the cursor then moves one candle past the last
    one received. Stops on an empty page, at ``until_ms``, or at the present: a candle is yielded only once
    closed (``ts + timeframe.ms <= now``).
    """
    timeframe = Timeframe.parse(timeframe)
    if timeframe.is_calendar:
        raise ConfigError(
            f"exchange download of {timeframe} (calendar-month) candles is not supported",
            hint="download 1d candles: 1M is resampled from them on read",
        )
    if limit < 1:
        raise ConfigError(f"page limit must be >= 1, got {limit}")
    if exchange.timeframes and timeframe.value not in exchange.timeframes:
        offered = " ".join(exchange.timeframes)
        raise ConfigError(f"{exchange.id} has no {timeframe} candles", hint=f"it offers: {offered}")
    where = f"{exchange.id} {symbol} {timeframe}"
    cursor = timeframe.bucket_start(since_ms)
    if cursor < since_ms:
        cursor += timeframe.ms  # the first candle opening at or after since_ms
    while True:
        closed_before = now_ms() - timeframe.ms  # the open time of a closed candle is at most this
        if cursor > closed_before or (until_ms is not None and cursor >= until_ms):
            return

        fetch_page = partial(exchange.fetch_ohlcv, symbol, timeframe.value, since=cursor, limit=limit)
        rows: list[list[Any]] = call_with_retry(
            fetch_page, what=f"candles from {format_ms(cursor)}", where=where, retry=retry, sleep=sleep
        )
        if not rows:
            return
        page = as_candle_frame(pd.DataFrame([row[:6] for row in rows], columns=list(CANDLE_COLUMNS)))
        last_ts = int(page["ts"].iloc[-1])
        keep = (page["ts"] >= cursor) & (page["ts"] <= closed_before)
        if until_ms is not None:
            keep &= page["ts"] < until_ms
        if keep.any():
            yield page[keep].reset_index(drop=True)
        if last_ts < cursor:
            return  # the exchange ignored ``since``: nothing newer to be had
        cursor = last_ts + timeframe.ms


def ingest_from_exchange(
    store: CandleStore,
    *,
    exchange_id: str,
    symbol: str,
    timeframe: Timeframe,
    since_ms: int | None,
    until_ms: int | None,
    quarantine_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    exchange: ccxt.Exchange | None = None,
    limit: int = 1000,
    now_ms: Callable[[], int] = wall_clock_ms,
    retry: RetryPolicy = RetryPolicy(),
) -> IngestReport:
    """Fetch closed candles of ``symbol`` from ``exchange_id`` and store them; returns the merged report.

    Resumes one candle after the last stored candle of the series when there is one (an earlier
    ``since_ms`` is then ignored); otherwise starts at ``since_ms`` (the exchange's first candle when None).
    ``progress(done, total)`` is called after each page with candles received so far and expected in all.
    """
    timeframe = Timeframe.parse(timeframe)
    store_symbol = normalize_symbol(symbol)
    if exchange is None:
        exchange = make_exchange(exchange_id, spot_only=":" not in symbol)
    start = since_ms if since_ms is not None else 0
    info = store.series_info(store_symbol, timeframe)
    if info is not None:
        start = max(start, info.last_ts + timeframe.ms)
        log.info("resuming %s %s after the stored %s", store_symbol, timeframe, format_ms(info.last_ts))
    horizon = now_ms() if until_ms is None else min(until_ms, now_ms())
    done = 0
    first_received: int | None = None
    source = f"exchange:{exchange_id}"
    report = IngestReport(symbol=store_symbol, timeframe=timeframe, source=source)
    for page in fetch_ohlcv_pages(
        exchange, symbol, timeframe, start, until_ms, limit=limit, now_ms=now_ms, retry=retry
    ):
        page_report = ingest_frame(store, store_symbol, timeframe, page, source=source, quarantine_dir=quarantine_dir)
        report = report.merge(page_report)
        done += len(page)
        if first_received is None:
            first_received = int(page["ts"].iloc[0])
        if progress is not None:
            # Counted from the first candle received: with no since_ms, ``start`` is long before the listing.
            progress(done, max(done, (horizon - first_received) // timeframe.ms))
    return report


__all__ = [
    "RETRYABLE_EXCHANGE_ERRORS",
    "RetryPolicy",
    "call_with_retry",
    "fetch_ohlcv_pages",
    "ingest_from_exchange",
    "make_exchange",
]
