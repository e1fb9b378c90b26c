"""The compiled sweep against the event-driven kernel on synthetic candles: same trades, same equity.

Real-data parity lives in ``tests/integration/test_sweep_parity.py``; here many configurations run on short
random walks (fast), plus the sweep's summaries against full runs and the refusals.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from smartmarket.analytics.metrics import bar_returns, drawdown_series
from smartmarket.analytics.pbo import block_sums
from smartmarket.backtest import run_backtest
from smartmarket.backtest.bench import random_walk_candles
from smartmarket.backtest.runner import BacktestResult
from smartmarket.backtest.sweep import prepare, run_array_backtest, run_sweep
from smartmarket.backtest.walkforward import bar_sharpe
from smartmarket.core.errors import ConfigError
from smartmarket.engine import KernelConfig
from smartmarket.execution import FeeModel, FixedBps
from smartmarket.execution.risk import RiskConfig
from smartmarket.execution.sizing import FixedFraction, RiskPerTrade, VolatilityTarget
from smartmarket.execution.slippage import SlippageModel, SlippageTracker, VolatilitySlippage

STRATEGIES = {
    "sma_cross": {"fast": 5, "slow": 20},
    "rsi_reversion": {"period": 7, "lower": 35.0, "upper": 65.0},
    "buy_hold": {},
}
CONFIGS = {
    "no_fees": KernelConfig(fees=FeeModel(0.0, 0.0)),
    "fees": KernelConfig(),
    "fees_stops_slippage": KernelConfig(
        fees=FeeModel(maker=0.0002, taker=0.001),
        slippage=FixedBps(5.0),
        risk=RiskConfig(stop_loss_pct=0.005, take_profit_pct=0.012, trailing_stop_pct=0.007),
    ),
    "vol_slippage_latency_long_only": KernelConfig(
        slippage=VolatilitySlippage(base_bps=1.0, multiplier=0.1, span=10),
        risk=RiskConfig(trailing_stop_pct=0.002, max_position_fraction=0.7),
        latency_bars=2,
        long_only=True,
        close_at_end=True,
    ),
    "vol_target_sizer_leverage": KernelConfig(
        sizer=VolatilityTarget(target_vol=0.004, lookback=12, max_fraction=1.8),
        risk=RiskConfig(max_position_fraction=2.0, max_gross_exposure=1.5, stop_loss_pct=0.01),
        close_at_end=True,
    ),
    "ewma_vol_target_latency_trailing": KernelConfig(
        sizer=VolatilityTarget(target_vol=0.003, lookback=30, max_fraction=1.5, decay=0.94, rebalance_band=0.05),
        slippage=VolatilitySlippage(base_bps=1.0, multiplier=0.1, span=10),
        risk=RiskConfig(trailing_stop_pct=0.004, max_position_fraction=1.5, max_gross_exposure=1.5),
        latency_bars=1,
    ),
    "risk_per_trade_half": KernelConfig(sizer=RiskPerTrade(risk_fraction=0.005, default_stop_pct=0.01)),
    "fixed_half": KernelConfig(sizer=FixedFraction(0.5), fees=FeeModel(0.0005, 0.0005)),
}


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    frame = random_walk_candles(3_000, seed=7)
    # wider bars than the generator's so stops and targets are hit often
    frame["high"] = frame[["open", "close"]].max(axis=1) * 1.002
    frame["low"] = frame[["open", "close"]].min(axis=1) * 0.998
    return frame


def assert_same_run(ours: BacktestResult, theirs: BacktestResult) -> None:
    """Trades field by field (floats within 1e-9 relative) and the equity and exposure curves."""
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


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_compiled_run_equals_kernel(candles: pd.DataFrame, strategy: str, config_name: str) -> None:
    config = CONFIGS[config_name]
    params = STRATEGIES[strategy]
    theirs = run_backtest(candles, strategy, params=params, config=config)
    ours = run_array_backtest(candles, strategy, params=params, config=config)
    assert_same_run(ours, theirs)
    if strategy != "buy_hold":
        assert len(theirs.trades) > 20  # the comparison has substance


def test_every_exit_reason_is_exercised(candles: pd.DataFrame) -> None:
    """The stop configurations above really hit stop, target and trailing exits (else parity says little)."""
    cfg = CONFIGS["fees_stops_slippage"]
    reasons = {t.exit_reason for t in run_array_backtest(candles, "sma_cross", params={"fast": 5, "slow": 20},
                                                         config=cfg).trades}  # fmt: skip
    assert {"signal", "stop_loss", "take_profit", "trailing_stop"} <= reasons
    reasons = {t.exit_reason for t in run_array_backtest(candles, "sma_cross", config=CONFIGS["fixed_half"]).trades}
    assert reasons == {"signal"}
    end = run_array_backtest(candles, "buy_hold", config=replace(CONFIGS["fees"], close_at_end=True)).trades
    assert [t.exit_reason for t in end] == ["end_of_data"]


def test_a_different_execution_gives_different_trades(candles: pd.DataFrame) -> None:
    """The parity check can fail: a slipped run does not match an unslipped kernel run."""
    theirs = run_backtest(candles, "sma_cross", config=CONFIGS["fees"])
    ours = run_array_backtest(candles, "sma_cross", config=replace(CONFIGS["fees"], slippage=FixedBps(1.0)))
    with pytest.raises(AssertionError):
        assert_same_run(ours, theirs)


def test_sweep_summaries_equal_full_runs(candles: pd.DataFrame) -> None:
    config = CONFIGS["fees_stops_slippage"]
    sets = [{"fast": f, "slow": s} for f in (3, 5, 8) for s in (13, 21, 34)]
    sweep = run_sweep(candles, "sma_cross", sets, config=config, n_blocks=6, chunk=4)
    sharpe = sweep.bar_sharpe()
    for k, params in enumerate(sets):
        full = run_array_backtest(candles, "sma_cross", params=params, config=config)
        assert sweep.final_equity[k] == full.final_equity
        assert sweep.trades[k] == len(full.trades)
        assert math.isclose(sharpe[k], bar_sharpe(full.equity) or math.nan, rel_tol=1e-9)
        assert math.isclose(sweep.max_drawdown[k], float(drawdown_series(full.equity).max()), rel_tol=1e-12)
        expected = block_sums(bar_returns(full.equity)[:, None], 6)[0]
        np.testing.assert_allclose(sweep.blocks[k, :, :3], expected, rtol=1e-9, atol=1e-15)


def test_sweep_over_a_range_starts_flat_there(candles: pd.DataFrame) -> None:
    prep = prepare(candles, CONFIGS["fees"])
    part = run_sweep(prep, "rsi_reversion", [{"period": 7, "lower": 35.0, "upper": 65.0}], start=1000, end=2000)
    # the same bars as a fresh frame, with indicators warmed on the earlier bars: the kernel fed from bar 1000
    full = run_array_backtest(candles.iloc[:2000].reset_index(drop=True), "rsi_reversion",
                              params={"period": 7, "lower": 35.0, "upper": 65.0}, config=CONFIGS["fees"])  # fmt: skip
    assert part.bars == 1000
    assert part.start_ts == int(candles["ts"].iloc[1000]) and part.end_ts == int(candles["ts"].iloc[1999])
    assert part.final_equity[0] != full.final_equity  # a different start: not the same run
    assert part.stats[0, 4] == 999  # one return per bar after the first


def test_refusals(candles: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="no array form"):
        run_sweep(candles, "smc_bos", [{}])
    with pytest.raises(ConfigError, match="fast < slow"):
        run_sweep(candles, "sma_cross", [{"fast": 30, "slow": 10}])
    with pytest.raises(ConfigError, match="fsat"):
        run_array_backtest(candles, "sma_cross", params={"fsat": 3})

    class Odd(SlippageModel):
        def tracker(self) -> SlippageTracker:
            raise NotImplementedError

    with pytest.raises(ConfigError, match="no compiled form"):
        run_sweep(candles, "sma_cross", [{}], config=KernelConfig(slippage=Odd()))
