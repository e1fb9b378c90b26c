"""Issue 13 item 4, measured: how fast would ``backtest`` be if it ran the live stage handlers instead of the kernel?

The same ``sma_cross`` candles go through the backtest driver (``run_backtest``: the kernel) and through
``pipeline.replay.StageCores`` (the synchronous driver over the live stages' steps: execution → risk's decision
model and book → portfolio, one ``CandleClosed`` per candle, as ``replay`` runs them). Both are timed in CPU
seconds in this one process, alternating, best of three; the fills of both are compared (time, side, quantity,
price, fee). Building the candle events is timed apart (the stage path needs them, the kernel does not).

    python benchmarks/stage_driver.py [--bars 20000]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from smartmarket.backtest.bench import random_walk_candles
from smartmarket.backtest.runner import run_backtest
from smartmarket.core.events import CandleClosed, OrderFilled
from smartmarket.core.types import Timeframe
from smartmarket.pipeline.replay import StageCores
from smartmarket.pipeline.stages.candles import candle_closed
from smartmarket.pipeline.stages.spec import PipelineSpec, StrategyChoice, TradingConfig

SYMBOL = "BTCUSDT"
PARAMS = {"fast": 5, "slow": 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=20_000)
    bars = parser.parse_args().bars
    candles = random_walk_candles(bars)
    tf = Timeframe.parse("1m")
    trading = TradingConfig(limits=None)
    spec = PipelineSpec.build([SYMBOL], tf, None, trading, strategy=StrategyChoice("sma_cross", PARAMS))

    started = time.process_time()
    events = [candle_closed(SYMBOL, tf, *row) for row in candles.itertuples(index=False)]
    events_cpu_s = time.process_time() - started

    def kernel() -> list[tuple[Any, ...]]:
        result = run_backtest(candles, "sma_cross", params=PARAMS, config=trading.kernel_config(), symbol=SYMBOL)
        return [(f.ts, f.side, f.quantity, f.price, f.fee) for f in result.fills]

    def stages(candle_events: list[CandleClosed]) -> list[tuple[Any, ...]]:
        cores = StageCores(spec)
        fills = [m for e in candle_events for m in cores.on_candle(e) if isinstance(m, OrderFilled)]
        return [(f.ts_event, f.side, f.quantity, f.price, f.fee) for f in fills]

    best = {"kernel": float("inf"), "stages": float("inf")}
    kernel_fills: list[tuple[Any, ...]] = []
    stage_fills: list[tuple[Any, ...]] = []
    for _ in range(3):
        started = time.process_time()
        kernel_fills = kernel()
        best["kernel"] = min(best["kernel"], time.process_time() - started)
        started = time.process_time()
        stage_fills = stages(events)
        best["stages"] = min(best["stages"], time.process_time() - started)
    same = kernel_fills == stage_fills
    report = {
        "bars": bars,
        "kernel_bars_per_cpu_s": round(bars / best["kernel"]),
        "stage_driver_bars_per_cpu_s": round(bars / best["stages"]),
        "candle_events_per_cpu_s": round(bars / events_cpu_s),
        "kernel_over_stage_driver": round(best["stages"] / best["kernel"], 1),
        "fills": {"kernel": len(kernel_fills), "stages": len(stage_fills), "identical": same},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
