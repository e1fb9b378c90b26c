"""Market data: candle frames, file parsers, validation and quarantine, synthetic markets, exchanges.

The frame helpers load on first use (PEP 562): importing a light module of this package (``data.formats``)
does not load pandas.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smartmarket.core.frame import CANDLE_COLUMNS, as_candle_frame, empty_candles

__all__ = ["CANDLE_COLUMNS", "as_candle_frame", "empty_candles"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'smartmarket.data' has no attribute {name!r}")
    return getattr(import_module("smartmarket.core.frame"), name)
