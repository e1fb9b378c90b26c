"""Domain types: timeframes, symbols, the one candle value and the one trading direction.

Time convention, everywhere in SmartMarket: integers of **UTC epoch milliseconds**. A candle's ``ts`` is
its *open* time; the candle closes at ``ts + timeframe.ms``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple

import numpy as np

from smartmarket.core.errors import ConfigError

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
# 1970-01-01 was a Thursday; weekly candles (as on Binance) open on Monday 00:00 UTC.
WEEK_OFFSET_MS = 4 * DAY_MS
# A calendar month has no fixed length; ``Timeframe.MO1.ms`` is this nominal twelfth of a 365-day year (the
# annualisation convention of ``analytics``). Month bounds come from the calendar: ``bucket_start``, ``next_open``.
MONTH_NOMINAL_MS = 365 * DAY_MS // 12


class Timeframe(StrEnum):
    """Supported candle timeframes. The value is the canonical spelling (``"1h"``).

    Fixed ones tile the epoch in steps of ``ms`` (weeks from Monday, ``offset_ms``; 3d from 1970-01-01).
    ``1M`` is the calendar month, opening on the 1st at 00:00 UTC (``is_calendar``): its length varies, so
    code that needs bucket bounds uses ``bucket_start`` / ``next_open`` / ``bucket_index``, never ``ts + ms``.
    """

    M1 = "1m"
    M3 = "3m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    H2 = "2h"
    H4 = "4h"
    H6 = "6h"
    H8 = "8h"
    H12 = "12h"
    D1 = "1d"
    D3 = "3d"
    W1 = "1w"
    MO1 = "1M"

    @property
    def ms(self) -> int:
        """Length of one candle in milliseconds (for ``1M``: the nominal ``MONTH_NOMINAL_MS``)."""
        return _TIMEFRAME_MS[self]

    @property
    def is_calendar(self) -> bool:
        """True for calendar months, whose candles have no fixed length."""
        return self is Timeframe.MO1

    @property
    def offset_ms(self) -> int:
        """Alignment offset of bucket starts from the epoch (non-zero only for weeks, aligned on Monday)."""
        return WEEK_OFFSET_MS if self is Timeframe.W1 else 0

    def bucket_start(self, ts_ms: int) -> int:
        """Open time of the candle of this timeframe that contains ``ts_ms``."""
        if self.is_calendar:
            return int(self.bucket_starts(np.array([ts_ms], dtype=np.int64))[0])
        off = self.offset_ms
        return (ts_ms - off) // self.ms * self.ms + off

    def next_open(self, ts_ms: int) -> int:
        """Open time of the candle after the one containing ``ts_ms`` (its close)."""
        if self.is_calendar:
            month = np.array([ts_ms], dtype="datetime64[ms]").astype("datetime64[M]") + 1
            return int(month.astype("datetime64[ms]").astype(np.int64)[0])
        return self.bucket_start(ts_ms) + self.ms

    def bucket_index(self, ts_ms: np.ndarray) -> np.ndarray:
        """Per timestamp, the number of its bucket (consecutive candles differ by 1), as int64."""
        ts = np.asarray(ts_ms, dtype=np.int64)
        if self.is_calendar:
            return ts.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
        return (ts - self.offset_ms) // self.ms

    def bucket_starts(self, ts_ms: np.ndarray) -> np.ndarray:
        """Vectorised ``bucket_start``: the open time of each timestamp's candle, as int64."""
        ts = np.asarray(ts_ms, dtype=np.int64)
        if self.is_calendar:
            months = ts.astype("datetime64[ms]").astype("datetime64[M]")
            return months.astype("datetime64[ms]").astype(np.int64)
        return (ts - self.offset_ms) // self.ms * self.ms + self.offset_ms

    def is_aligned(self, ts_ms: int) -> bool:
        return self.bucket_start(ts_ms) == ts_ms

    def divides(self, other: Timeframe) -> bool:
        """True when candles of ``self`` tile candles of ``other`` exactly (so ``other`` can be resampled)."""
        if self is other:
            return True
        if self.is_calendar:
            return False
        if other.is_calendar:  # every month starts at a UTC midnight: anything tiling a day tiles it
            return self.offset_ms == 0 and DAY_MS % self.ms == 0
        if other.ms % self.ms:
            return False
        return (other.offset_ms - self.offset_ms) % self.ms == 0

    @classmethod
    def parse(cls, text: str | Timeframe) -> Timeframe:
        if isinstance(text, Timeframe):
            return text
        key = text.strip()
        aliases = {
            "60m": "1h", "1H": "1h", "4H": "4h", "8H": "8h", "1D": "1d", "3D": "3d", "1W": "1w", "24h": "1d",
            "7d": "1w", "1mo": "1M", "1mon": "1M", "1month": "1M",
        }  # fmt: skip
        key = aliases.get(key, key)
        try:
            return cls(key)
        except ValueError:
            valid = " ".join(t.value for t in cls)
            raise ConfigError(f"unknown timeframe {text!r}", hint=f"use one of: {valid}") from None

    def __str__(self) -> str:
        return self.value


_TIMEFRAME_MS: dict[Timeframe, int] = {
    Timeframe.M1: MINUTE_MS,
    Timeframe.M3: 3 * MINUTE_MS,
    Timeframe.M5: 5 * MINUTE_MS,
    Timeframe.M15: 15 * MINUTE_MS,
    Timeframe.M30: 30 * MINUTE_MS,
    Timeframe.H1: HOUR_MS,
    Timeframe.H2: 2 * HOUR_MS,
    Timeframe.H4: 4 * HOUR_MS,
    Timeframe.H6: 6 * HOUR_MS,
    Timeframe.H8: 8 * HOUR_MS,
    Timeframe.H12: 12 * HOUR_MS,
    Timeframe.D1: DAY_MS,
    Timeframe.D3: 3 * DAY_MS,
    Timeframe.W1: WEEK_MS,
    Timeframe.MO1: MONTH_NOMINAL_MS,
}

_SYMBOL_RE = re.compile(r"^[A-Z0-9]{1,20}$")


def normalize_symbol(text: str) -> str:
    """Canonical symbol spelling: upper case, separators removed (``btc/usdt`` → ``BTCUSDT``)."""
    sym = re.sub(r"[/_\-:. ]", "", text.strip()).upper()
    if not _SYMBOL_RE.match(sym):
        raise ConfigError(f"invalid symbol {text!r}", hint="use letters and digits, e.g. BTCUSDT or BTC/USDT")
    return sym


class Candle(NamedTuple):
    """One closed OHLCV candle; ``ts`` is its open time (UTC epoch ms). Symbol and timeframe travel beside it.

    A named tuple because the per-candle hot paths unpack it (``ts, o, h, lo, c, v = candle``) and build it
    from row tuples without a Python-level call.
    """

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    def close_ts(self, timeframe: Timeframe) -> int:
        """When this candle closes: the next candle's open time (a calendar month's end for ``1M``)."""
        return timeframe.next_open(self.ts) if timeframe.is_calendar else self.ts + timeframe.ms


class Direction(StrEnum):
    """Which way a signal or a decision points. Equal to its string (``Direction.LONG == "long"``)."""

    LONG = "long"
    FLAT = "flat"
    SHORT = "short"

    @classmethod
    def from_sign(cls, sign: int) -> Direction:
        """+1 → long, -1 → short, 0 → flat (any positive or negative number counts by its sign)."""
        return cls.LONG if sign > 0 else cls.SHORT if sign < 0 else cls.FLAT

    @property
    def sign(self) -> int:
        """+1 long, 0 flat, -1 short."""
        return 1 if self is Direction.LONG else -1 if self is Direction.SHORT else 0


__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "MINUTE_MS",
    "MONTH_NOMINAL_MS",
    "WEEK_MS",
    "WEEK_OFFSET_MS",
    "Candle",
    "Direction",
    "Timeframe",
    "normalize_symbol",
]
