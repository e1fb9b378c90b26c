"""The live stages' steps (``StageCores``: execution → risk's book → portfolio) fill bit for bit like the kernel.

Over hundreds of reversals: a reversal is two fills at one open, and the book must apply them as the kernel books
them (the close leg, then the new side). Applied the other way round the cash differs in its last bits, and so
does every later order's quantity (found by ``benchmarks/stage_driver.py``: fill 300 of 2,489 differed by 5e-14).
"""

from __future__ import annotations

from itertools import pairwise

from smartmarket.backtest.bench import random_walk_candles
from smartmarket.backtest.runner import run_backtest
from smartmarket.core.events import OrderFilled
from smartmarket.core.types import Timeframe
from smartmarket.execution.fees import FeeModel
from smartmarket.pipeline.replay import StageCores
from smartmarket.pipeline.stages.candles import candle_closed
from smartmarket.pipeline.stages.spec import PipelineSpec, StrategyChoice, TradingConfig

SYMBOL = "BTCUSDT"
TF = Timeframe.parse("1m")


def test_hundreds_of_reversals_fill_identically_through_the_stage_steps_and_the_kernel() -> None:
    candles = random_walk_candles(4_000)
    params = {"fast": 5, "slow": 20}
    trading = TradingConfig(limits=None, fees=FeeModel())
    spec = PipelineSpec.build([SYMBOL], TF, None, trading, strategy=StrategyChoice("sma_cross", params))

    result = run_backtest(candles, "sma_cross", params=params, config=trading.kernel_config(), symbol=SYMBOL)
    kernel = [(f.ts, f.side, f.quantity, f.price, f.fee) for f in result.fills]
    cores = StageCores(spec)
    stages = [
        (m.ts_event, m.side, m.quantity, m.price, m.fee)
        for row in candles.itertuples(index=False)
        for m in cores.on_candle(candle_closed(SYMBOL, TF, *row))
        if isinstance(m, OrderFilled)
    ]
    reversals = sum(1 for a, b in pairwise(kernel) if a[0] == b[0])
    assert reversals > 200
    assert stages == kernel  # exactly: time, side, quantity, price and fee of every fill
