"""Core: types, events, errors, configuration. No I/O.

The names below load on first use (PEP 562), so importing ``smartmarket.core.errors`` or ``.types`` does not
pull pydantic in through ``Settings``: the CLI's start-up stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smartmarket.core.config import Settings
    from smartmarket.core.errors import (
        ConfigError,
        DataFormatError,
        FatalError,
        NotFoundError,
        RetryableError,
        SmartMarketError,
        StoreError,
        StoreUnavailableError,
        ValidationError,
    )
    from smartmarket.core.types import Candle, Timeframe, normalize_symbol

_HOMES = {
    "Settings": "config",
    "Candle": "types",
    "Timeframe": "types",
    "normalize_symbol": "types",
    **dict.fromkeys(
        (
            "ConfigError",
            "DataFormatError",
            "FatalError",
            "NotFoundError",
            "RetryableError",
            "SmartMarketError",
            "StoreError",
            "StoreUnavailableError",
            "ValidationError",
        ),
        "errors",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'smartmarket.core' has no attribute {name!r}")
    return getattr(import_module(f"smartmarket.core.{home}"), name)


__all__ = [
    "Candle",
    "ConfigError",
    "DataFormatError",
    "FatalError",
    "NotFoundError",
    "RetryableError",
    "Settings",
    "SmartMarketError",
    "StoreError",
    "StoreUnavailableError",
    "Timeframe",
    "ValidationError",
    "normalize_symbol",
]
