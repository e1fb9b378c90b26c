"""One symbol's minute candles and a sma_cross spec for the execution stage's tests (settle, recovery)."""

from __future__ import annotations

from smartmarket.core.events import CandleClosed
from smartmarket.core.types import Timeframe
from smartmarket.pipeline.stages import PipelineSpec, TradingConfig
from smartmarket.pipeline.stages.base import candle_event_id
from smartmarket.pipeline.stages.spec import StrategyChoice

SYMBOL = "BTCUSDT"
T0 = 1_700_000_000_000


def spec() -> PipelineSpec:
    choice = StrategyChoice("sma_cross", {"fast": 3, "slow": 8})
    return PipelineSpec.build([SYMBOL], "1m", None, TradingConfig(limits=None), strategy=choice)


def candle(i: int) -> CandleClosed:
    """The ``i``-th minute after ``T0``: open 100 + i, closed at the next minute."""
    ts = T0 + i * 60_000
    return CandleClosed(
        event_id=candle_event_id(SYMBOL, Timeframe.M1, ts), ts_event=ts + 60_000, symbol=SYMBOL,
        timeframe=Timeframe.M1, ts=ts, open=100.0 + i, high=101.0 + i, low=99.0 + i, close=100.5 + i, volume=1.0,
    )  # fmt: skip
