"""The compiled sweep path against ``run_backtest`` on real Binance candles: identical trades and equity.

Every strategy with an array form (``strategies.arrays.ARRAY_FORMS``), with and without fees, stops and
slippage, and volatility-targeted (EWMA sizer resized at closes outside its band), on 20,000 BTCUSDT 1h bars
(2019-2021) and 10,000 ETHUSDT 4h bars.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.backtest import run_backtest
from smartmarket.backtest.runner import BacktestResult
from smartmarket.backtest.sweep import run_array_backtest, run_sweep
from smartmarket.engine import KernelConfig
from smartmarket.execution import FeeModel, FixedBps
from smartmarket.execution.risk import RiskConfig
from smartmarket.execution.sizing import VolatilityTarget
from smartmarket.execution.slippage import VolatilitySlippage
from smartmarket.strategies.arrays import ARRAY_FORMS

PARAMS = {
    "sma_cross": {"fast": 10, "slow": 30},
    "rsi_reversion": {"period": 14, "lower": 30.0, "upper": 70.0},
    "buy_hold": {},
}
CONFIGS = {
    "no_fees": KernelConfig(fees=FeeModel(0.0, 0.0)),
    "fees": KernelConfig(fees=FeeModel(0.001, 0.001)),
    "fees_stops_slippage": KernelConfig(
        fees=FeeModel(maker=0.0002, taker=0.001),
        slippage=FixedBps(5.0),
        risk=RiskConfig(stop_loss_pct=0.02, take_profit_pct=0.04, trailing_stop_pct=0.03),
        close_at_end=True,
    ),
    "vol_slippage_trailing_long_only": KernelConfig(
        slippage=VolatilitySlippage(base_bps=2.0, multiplier=0.05),
        risk=RiskConfig(trailing_stop_pct=0.015),
        long_only=True,
        latency_bars=1,
    ),
    "vol_target_ewma_leverage_stops": KernelConfig(
        fees=FeeModel(0.001, 0.001),
        slippage=FixedBps(2.0),
        sizer=VolatilityTarget(target_vol=0.012, lookback=75, max_fraction=2.0, decay=0.94, rebalance_band=0.1),
        risk=RiskConfig(max_position_fraction=2.0, max_gross_exposure=2.0, stop_loss_pct=0.05),
        close_at_end=True,
    ),
    "vol_target_har": KernelConfig(  # the per-symbol HAR-RV forecaster, updated at every close in both engines
        fees=FeeModel(0.001, 0.001),
        sizer=VolatilityTarget(target_vol=0.012, lookback=75, decay=0.94, vol_model="har", bars_per_day=24),
        close_at_end=True,
    ),
}


def assert_same_run(ours: BacktestResult, theirs: BacktestResult) -> None:
    """Trades field by field (floats within 1e-9 relative), equity and exposure at every bar."""
    a, b = theirs.trades_frame(), ours.trades_frame()
    assert len(a) == len(b)
    for column in a.columns:
        if a[column].dtype.kind == "f":
            np.testing.assert_allclose(b[column].to_numpy(), a[column].to_numpy(), rtol=1e-9, atol=0, err_msg=column)
        else:
            assert a[column].tolist() == b[column].tolist(), column
    np.testing.assert_array_equal(ours.equity.index.to_numpy(), theirs.equity.index.to_numpy())
    np.testing.assert_allclose(ours.equity.to_numpy(), theirs.equity.to_numpy(), rtol=1e-9, atol=0)
    np.testing.assert_allclose(ours.exposure.to_numpy(), theirs.exposure.to_numpy(), rtol=1e-9, atol=1e-12)
    assert math.isclose(ours.traded_notional, theirs.traded_notional, rel_tol=1e-9)
    assert ours.extra["fills"] == len(theirs.fills)


@pytest.fixture(scope="module")
def frames(shared_data: Path) -> dict[str, pd.DataFrame]:
    btc = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz").iloc[15_000:35_000].reset_index(drop=True)
    eth = pd.read_csv(shared_data / "ETHUSDT-4h.csv.gz").iloc[:10_000].reset_index(drop=True)
    return {"BTCUSDT-1h": btc, "ETHUSDT-4h": eth}


def test_every_array_form_is_covered() -> None:
    assert set(PARAMS) == set(ARRAY_FORMS)


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("strategy", sorted(PARAMS))
@pytest.mark.parametrize("series", ["BTCUSDT-1h", "ETHUSDT-4h"])
def test_real_data_parity(frames: dict[str, pd.DataFrame], series: str, strategy: str, config_name: str) -> None:
    candles, config, params = frames[series], CONFIGS[config_name], PARAMS[strategy]
    theirs = run_backtest(candles, strategy, params=params, config=config)
    ours = run_array_backtest(candles, strategy, params=params, config=config)
    assert_same_run(ours, theirs)
    if strategy != "buy_hold":
        assert len(theirs.trades) > 50
    if config.sizer.rebalance_band is not None:
        assert any(o.reason == "rebalance" for o in theirs.orders)  # the resizes are exercised


def test_sweep_final_equity_equals_kernel(frames: dict[str, pd.DataFrame]) -> None:
    candles, config = frames["BTCUSDT-1h"], CONFIGS["fees_stops_slippage"]
    sets = [{"fast": f, "slow": s} for f, s in ((5, 20), (10, 50), (20, 100))]
    sweep = run_sweep(candles, "sma_cross", sets, config=config)
    for k, params in enumerate(sets):
        theirs = run_backtest(candles, "sma_cross", params=params, config=config)
        assert sweep.final_equity[k] == pytest.approx(theirs.final_equity, rel=1e-12)
        assert sweep.trades[k] == len(theirs.trades)
