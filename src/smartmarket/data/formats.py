"""The candle file formats ``data.parsers`` reads (a light module: the CLI names them in its help)."""

from __future__ import annotations

FORMATS: tuple[str, ...] = ("csv", "parquet", "binance", "freqtrade")

__all__ = ["FORMATS"]
