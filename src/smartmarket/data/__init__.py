"""Market data: candle frames, file parsers, validation and quarantine, synthetic markets, exchanges."""

from smartmarket.core.frame import CANDLE_COLUMNS, as_candle_frame, empty_candles

__all__ = ["CANDLE_COLUMNS", "as_candle_frame", "empty_candles"]
