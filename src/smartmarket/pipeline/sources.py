"""Candle sources of the live pipeline: a file replayed as if live, or an exchange polled for closed candles.

``--source file:PATH`` — PATH is one candle file (one symbol), a folder holding ``SYMBOL-TIMEFRAME.*`` files, or
a pattern with ``{symbol}`` (``data/{symbol}-1m.csv.gz``). Candles are validated as ingestion validates them
(bad rows dropped and counted) and emitted in time order across symbols. ``speed`` N plays N candle-seconds
per wall second (``speed=60`` plays 1m candles one per second); 0 plays as fast as the pipeline takes them.

``--source exchange:ID`` — polls the exchange through ccxt every ``poll_s`` seconds and emits each candle once
it has closed, from the newest closed candle at start; runs until stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import pandas as pd

from smartmarket.backtest.runner import iter_bars
from smartmarket.core.errors import ConfigError
from smartmarket.core.timeutil import now_ms
from smartmarket.core.types import Candle, Timeframe


class CandleSource(Protocol):
    """Closed candles in time order. ``finite``: the source ends by itself (a file)."""

    finite: bool

    def candles(self) -> AsyncIterator[tuple[str, Candle]]: ...


def read_candle_file(path: Path, timeframe: Timeframe) -> tuple[pd.DataFrame, int]:
    """The valid candles of a file and how many rows were dropped as invalid."""
    from smartmarket.data.parsers import parse_file
    from smartmarket.data.validation import validate_candles

    result = validate_candles(parse_file(path), timeframe)
    return result.good, len(result.bad)


class FileSource:
    """Candle frames per symbol, played in time order at ``speed`` (0: as fast as possible)."""

    finite = True

    def __init__(self, frames: Mapping[str, pd.DataFrame], *, speed: float = 0.0) -> None:
        if speed < 0:
            raise ConfigError(f"speed must be >= 0, got {speed}")
        self.frames = dict(frames)
        self.speed = speed
        self.dropped = 0
        self.emitted = 0

    @classmethod
    def from_path(cls, path: str, symbols: Sequence[str], timeframe: Timeframe, *, speed: float = 0.0) -> FileSource:
        frames: dict[str, pd.DataFrame] = {}
        dropped = 0
        for symbol in symbols:
            frame, bad = read_candle_file(_file_for(path, symbol, timeframe, len(symbols)), timeframe)
            frames[symbol] = frame
            dropped += bad
        source = cls(frames, speed=speed)
        source.dropped = dropped
        return source

    async def candles(self) -> AsyncIterator[tuple[str, Candle]]:
        start_wall = time.monotonic()
        first_ts: int | None = None
        for symbol, bar in iter_bars(self.frames):
            if self.speed > 0:
                first_ts = bar.ts if first_ts is None else first_ts
                due = start_wall + (bar.ts - first_ts) / 1000 / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            self.emitted += 1
            yield symbol, bar


def _file_for(path: str, symbol: str, timeframe: Timeframe, n_symbols: int) -> Path:
    if "{symbol}" in path:
        return Path(path.replace("{symbol}", symbol))
    p = Path(path)
    if p.is_dir():
        matches = sorted(p.glob(f"{symbol}-{timeframe}.*"))
        if not matches:
            raise ConfigError(f"no {symbol}-{timeframe}.* file in {p}", hint="name files SYMBOL-TIMEFRAME.csv.gz")
        return matches[0]
    if n_symbols > 1:
        raise ConfigError(
            f"one file for {n_symbols} symbols: {path}",
            hint="give a folder of SYMBOL-TIMEFRAME files or a pattern with {symbol}",
        )
    return p


class ExchangeSource:
    """Closed candles polled from an exchange through ccxt (sandbox or not does not matter: public data)."""

    finite = False

    def __init__(self, exchange_id: str, symbols: Sequence[str], timeframe: Timeframe, *, poll_s: float = 5.0) -> None:
        self.exchange_id = exchange_id
        self.symbols = list(symbols)
        self.timeframe = timeframe
        self.poll_s = poll_s

    async def candles(self) -> AsyncIterator[tuple[str, Candle]]:
        from smartmarket.data.exchange import fetch_ohlcv_pages, make_exchange

        exchange = make_exchange(self.exchange_id)
        tf = self.timeframe
        # from the newest closed candle on
        next_ts = {s: tf.bucket_start(now_ms()) - tf.ms for s in self.symbols}
        while True:
            for symbol in self.symbols:

                def fetch(symbol: str = symbol) -> list[pd.DataFrame]:
                    return list(fetch_ohlcv_pages(exchange, symbol, tf, next_ts[symbol], None))

                for page in await asyncio.to_thread(fetch):
                    columns = [page[c].to_numpy().tolist() for c in ("ts", "open", "high", "low", "close", "volume")]
                    for ts, o, h, lo, c, v in zip(*columns, strict=True):
                        bar = Candle(int(ts), float(o), float(h), float(lo), float(c), float(v))
                        if bar.ts >= next_ts[symbol]:
                            next_ts[symbol] = bar.ts + tf.ms
                            yield symbol, bar
            await asyncio.sleep(self.poll_s)


def open_source(text: str, symbols: Sequence[str], timeframe: Timeframe, *, speed: float = 0.0) -> CandleSource:
    """``file:PATH`` or ``exchange:ID`` (see the module docstring)."""
    kind, _, rest = text.partition(":")
    if kind == "file" and rest:
        return FileSource.from_path(rest, symbols, timeframe, speed=speed)
    if kind == "exchange" and rest:
        return ExchangeSource(rest, symbols, timeframe)
    raise ConfigError(f"unknown candle source {text!r}", hint="use file:PATH or exchange:binance")


__all__ = ["CandleSource", "ExchangeSource", "FileSource", "open_source", "read_candle_file"]
