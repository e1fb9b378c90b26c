"""Core: types, events, errors, configuration. No I/O."""

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
