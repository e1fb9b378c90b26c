"""``--vol-model ewma`` vs ``har`` for volatility-targeted sizing on real candles (docs/results/vol-model-sizing.md).

Per symbol (BTCUSDT, ETHUSDT), timeframe (1h, 4h) and strategy (buy_hold, sma_cross): the CLI's own execution
settings (``cli.backtest.kernel_config``: 10 bps fees per side, no slippage, ``--vol-target 0.2``, leverage 1,
10 % band, positions closed at the end), so each row is what ``smartmarket backtest -s SYM -t TF --strategy S
--vol-target 0.2 [--vol-model har]`` prints over all of the file. Sharpe: annualised, per-bar returns after fees,
95 % percentile CI from a circular block bootstrap (blocks of one week of bars, 1000 resamples, seed 0); the
difference HAR − EWMA from a *paired* bootstrap (the same resampled bars for both). Run:
PYTHONPATH=src .venv/bin/python benchmarks/vol_model_sizing.py [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.analytics.metrics import bar_returns, compute_metrics, periods_per_year
from smartmarket.analytics.significance import sharpe_bootstrap_ci
from smartmarket.backtest import run_backtest
from smartmarket.cli.backtest import kernel_config
from smartmarket.core.types import Timeframe

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESAMPLES = 1000


def paired_sharpe_difference(a: np.ndarray, b: np.ndarray, block: int, ppy: float) -> dict[str, float]:
    """Sharpe(a) − Sharpe(b) with a 95 % CI and the share of resamples where it is <= 0 (paired blocks)."""
    n = a.size
    rng = np.random.default_rng(0)
    starts = rng.integers(0, n, size=(RESAMPLES, math.ceil(n / block)))
    index = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(RESAMPLES, -1)[:, :n] % n

    def sharpes(r: np.ndarray) -> np.ndarray:
        s = r[index]
        return np.asarray(s.mean(axis=1) / s.std(axis=1, ddof=1) * math.sqrt(ppy))

    d = sharpes(a) - sharpes(b)
    point = (a.mean() / a.std(ddof=1) - b.mean() / b.std(ddof=1)) * math.sqrt(ppy)
    low, high = np.quantile(d, [0.025, 0.975])
    return {"diff": float(point), "low": float(low), "high": float(high), "p_le_0": float(np.mean(d <= 0))}


def measure(candles: pd.DataFrame, tf: Timeframe, strategy: str, model: str) -> tuple[dict[str, Any], np.ndarray]:
    config = kernel_config(cash=10_000.0, fees=0.001, slippage_bps=0.0, fraction=1.0, latency=0, long_only=False,
                           close_at_end=True, vol_target=0.2, timeframe=tf, vol_model=model)  # fmt: skip
    began = time.perf_counter()
    result = run_backtest(candles, strategy, config=config, timeframe=tf)
    seconds = time.perf_counter() - began
    m = compute_metrics(result.equity, result.trades, tf, exposure=result.exposure,
                        traded_notional=result.traded_notional)  # fmt: skip
    returns = bar_returns(result.equity)
    ppy = periods_per_year(tf)
    block = 7 * max(1, round(86_400_000 / tf.ms))
    ci = sharpe_bootstrap_ci(returns, block=block, periods_per_year=ppy, resamples=RESAMPLES)
    row = {
        "sharpe": m.sharpe, "ci": ci, "cagr": m.annual_return, "volatility": m.volatility,
        "max_drawdown": m.max_drawdown, "orders": len(result.orders), "seconds": seconds,
    }  # fmt: skip
    return row, returns


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for timeframe in ("1h", "4h"):
            path = DATA / f"{symbol}-{timeframe}.csv.gz"
            if not path.exists():
                print(f"{path} missing: skipped")
                continue
            candles = pd.read_csv(path)
            tf = Timeframe.parse(timeframe)
            for strategy in ("buy_hold", "sma_cross"):
                ewma, r_ewma = measure(candles, tf, strategy, "ewma")
                har, r_har = measure(candles, tf, strategy, "har")
                block = 7 * max(1, round(86_400_000 / tf.ms))
                diff = paired_sharpe_difference(r_har, r_ewma, block, periods_per_year(tf))
                rows.append({"symbol": symbol, "timeframe": timeframe, "strategy": strategy, "bars": len(candles),
                             "ewma": ewma, "har": har, "har_minus_ewma": diff})  # fmt: skip
                for name, row in (("ewma", ewma), ("har", har)):
                    lo, hi = row["ci"] or (math.nan, math.nan)
                    print(f"{symbol} {timeframe} {strategy:9s} {name:4s} Sharpe {row['sharpe']:.2f} "
                          f"[{lo:.2f}, {hi:.2f}]  CAGR {row['cagr']:+.1%}  vol {row['volatility']:.1%}  "
                          f"maxDD {row['max_drawdown']:.1%}  orders {row['orders']:5d}  "
                          f"{row['seconds']:.1f} s")  # fmt: skip
                print(f"{'':22s} HAR − EWMA {diff['diff']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}]"
                      f"  P(≤ 0) {diff['p_le_0']:.3f}")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
