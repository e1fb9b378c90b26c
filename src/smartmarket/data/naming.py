"""Symbol and timeframe from a candle file's name.

Understood shapes (extensions and compression suffixes are ignored):

- ``BTCUSDT-1h.csv.gz``, ``ETHUSDT-4h.parquet`` (SmartMarket, generic);
- ``BTC_USDT-1h.json`` (freqtrade);
- ``BTCUSDT-1h-2024-01.csv``, ``BTCUSDT-1h-2024-01-15.zip`` (Binance public data dumps).
"""

from __future__ import annotations

import re
from pathlib import Path

from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Timeframe, normalize_symbol

_KNOWN_SUFFIXES = {".gz", ".zip", ".bz2", ".xz", ".zst", ".csv", ".txt", ".json", ".parquet", ".pq"}
# SYMBOL, a separator, TIMEFRAME (digits + unit), then optionally a separator and anything (a date).
_NAME_RE = re.compile(r"^(?P<symbol>[A-Za-z0-9][A-Za-z0-9_.\-]*?)[-_](?P<tf>\d+[a-zA-Z])(?:[-_.].*)?$")
_HINT = "pass --symbol and --timeframe, or name the file like BTCUSDT-1h.csv.gz"


def _stem(path: Path) -> str:
    name = path.name
    while True:
        suffix = Path(name).suffix
        if suffix.lower() not in _KNOWN_SUFFIXES:
            return name
        name = name[: -len(suffix)]


def _timeframe(text: str, filename: str) -> Timeframe:
    # "1M" is a month on Binance; every other unit is case-insensitive.
    key = text if text.endswith("M") and text[:-1].isdigit() and text != "60M" else text.lower()
    try:
        return Timeframe.parse(key)
    except ConfigError:
        raise ConfigError(f"unsupported timeframe {text!r} in file name", where=filename, hint=_HINT) from None


def infer_series(path: Path | str) -> tuple[str, Timeframe]:
    """(normalised symbol, timeframe) from a file name; ``ConfigError`` when the name does not say."""
    path = Path(path)
    match = _NAME_RE.match(_stem(path))
    if not match:
        raise ConfigError("cannot tell the symbol and timeframe from the file name", where=path.name, hint=_HINT)
    timeframe = _timeframe(match["tf"], path.name)
    try:
        symbol = normalize_symbol(match["symbol"])
    except ConfigError:
        raise ConfigError(f"cannot read a symbol from {match['symbol']!r}", where=path.name, hint=_HINT) from None
    return symbol, timeframe


__all__ = ["infer_series"]
