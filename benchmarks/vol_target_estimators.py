"""EWMA (RiskMetrics 0.94) vs rolling-window forecasts for volatility-targeted buy_hold (docs/sizing.md).

Per estimator: the realised annual volatility against the 20 % target, how far the trailing 90-bar realised
volatility strays from it (mean absolute deviation), and the orders the 10 % band sends. GARCH(1,1) markets
(80 % a year, seeds 0-3) and real BTCUSDT 1d/4h from ../shared/data. Run:
PYTHONPATH=src .venv/bin/python benchmarks/vol_target_estimators.py
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from smartmarket.analytics.metrics import bar_returns, periods_per_year
from smartmarket.backtest import run_backtest
from smartmarket.core.types import Timeframe
from smartmarket.data.synthetic import garch_candles
from smartmarket.engine import KernelConfig
from smartmarket.execution import FeeModel
from smartmarket.execution.sizing import EWMA_LOOKBACK, Sizer, VolatilityTarget, annual_volatility_target

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGET = 0.2


def sizers(tf: Timeframe) -> dict[str, Sizer]:
    per_bar = TARGET / math.sqrt(periods_per_year(tf))
    return {
        "ewma 0.94 (75)": annual_volatility_target(TARGET, tf),
        "rolling 20": VolatilityTarget(per_bar, lookback=20),
        "rolling 60": VolatilityTarget(per_bar, lookback=60),
    }


def measure(candles: pd.DataFrame, tf: Timeframe) -> None:
    ppy = periods_per_year(tf)
    for name, sizer in sizers(tf).items():
        result = run_backtest(candles, "buy_hold", config=KernelConfig(fees=FeeModel(0.001, 0.001), sizer=sizer))
        r = pd.Series(bar_returns(result.equity)[EWMA_LOOKBACK + 10 :])
        trailing = r.rolling(90).std() * math.sqrt(ppy)
        print(
            f"  {name:16s} realised {r.std() * math.sqrt(ppy):6.1%}  mean |90-bar vol - target| "
            f"{float(np.nanmean(np.abs(trailing - TARGET))):6.1%}  orders {len(result.orders):5d}"
        )


def main() -> None:
    day = Timeframe.parse("1d")
    for seed in range(4):
        print(f"GARCH(1,1) 80 % a year, 3000 daily bars, seed {seed}")
        measure(garch_candles(3_000, annual_vol=0.8, seed=seed), day)
    for tf in ("1d", "4h"):
        path = DATA / f"BTCUSDT-{tf}.csv.gz"
        if path.exists():
            print(f"BTCUSDT {tf} (all of {path.name})")
            measure(pd.read_csv(path), Timeframe.parse(tf))


if __name__ == "__main__":
    main()
