"""Symbol and timeframe from file names."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Timeframe
from smartmarket.data.naming import infer_series


@pytest.mark.parametrize(
    ("name", "symbol", "timeframe"),
    [
        ("BTCUSDT-1h.csv.gz", "BTCUSDT", Timeframe.H1),
        ("BTC_USDT-1h.json", "BTCUSDT", Timeframe.H1),
        ("BTC_USDT-5m.json.gz", "BTCUSDT", Timeframe.M5),
        ("ETHUSDT-4h.parquet", "ETHUSDT", Timeframe.H4),
        ("BTCUSDT-1h-2024-01.csv", "BTCUSDT", Timeframe.H1),
        ("BTCUSDT-15m-2024-01-15.zip", "BTCUSDT", Timeframe.M15),
        ("BTC-USDT-1d.csv", "BTCUSDT", Timeframe.D1),
        ("1INCHUSDT-1w.csv", "1INCHUSDT", Timeframe.W1),
        ("UNITTEST_BTC-30m.csv.gz", "UNITTESTBTC", Timeframe.M30),
        ("ethusdt-4H.csv", "ETHUSDT", Timeframe.H4),
        ("BTCUSDT-1M-2024.csv", "BTCUSDT", Timeframe.MO1),  # a Binance month
        ("BTCUSDT-3d.csv", "BTCUSDT", Timeframe.D3),
        ("BTCUSDT-8h.csv", "BTCUSDT", Timeframe.H8),
    ],
)
def test_infer_series(name: str, symbol: str, timeframe: Timeframe) -> None:
    assert infer_series(Path("/some/dir") / name) == (symbol, timeframe)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("candles.csv", "cannot tell the symbol and timeframe"),
        ("BTCUSDT.csv", "cannot tell the symbol and timeframe"),
        ("BTCUSDT-7h.csv", "unsupported timeframe '7h'"),
        ("BTCUSDT-2M-2024.csv", "unsupported timeframe '2M'"),
    ],
)
def test_names_that_do_not_say_ask_for_flags(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        infer_series(name)
    assert "--symbol" in (info.value.hint or "")
    assert info.value.where == name
