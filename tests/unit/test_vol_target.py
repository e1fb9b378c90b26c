"""Volatility-targeted sizing: the EWMA forecast, the kernel's rebalancing, the cap and the band, on GARCH data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from smartmarket.analytics.metrics import bar_returns, compute_metrics
from smartmarket.backtest import run_backtest
from smartmarket.backtest.runner import BacktestResult
from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Timeframe
from smartmarket.data.synthetic import garch_candles
from smartmarket.engine import KernelConfig
from smartmarket.engine.strategy import BarContext, Strategy
from smartmarket.execution import FeeModel
from smartmarket.execution.orders import Decision
from smartmarket.execution.risk import RiskConfig
from smartmarket.execution.sizing import (
    EWMA_LOOKBACK,
    VolatilityTarget,
    annual_volatility_target,
    ewma_volatility,
)

DAY = Timeframe.parse("1d")
FEES = FeeModel(0.001, 0.001)
SKIP = EWMA_LOOKBACK + 25  # bars before the forecast exists and the first position is on


def annual_vol(result: BacktestResult) -> float:
    returns = bar_returns(result.equity)[SKIP:]
    return float(np.std(returns, ddof=1) * math.sqrt(365))


def vol_config(target: float, *, leverage: float = 1.0, band: float = 0.1, **risk: float) -> KernelConfig:
    sizer = annual_volatility_target(target, DAY, max_leverage=leverage, band=band)
    return KernelConfig(
        fees=FEES, sizer=sizer, risk=RiskConfig(max_position_fraction=leverage, max_gross_exposure=leverage, **risk)
    )


@pytest.fixture(scope="module")
def markets() -> list[pd.DataFrame]:
    """Three GARCH(1,1) markets, 3,000 daily bars each, unconditional volatility 80 % a year."""
    return [garch_candles(3_000, annual_vol=0.8, seed=seed) for seed in range(3)]


def test_ewma_volatility_hand_checked() -> None:
    closes = [100.0, 110.0, 99.0, 99.0]
    r = [math.log(1.1), math.log(0.9), 0.0]  # oldest first; weights 0.5^2, 0.5, 1
    expected = math.sqrt((0.25 * r[0] ** 2 + 0.5 * r[1] ** 2 + 1.0 * r[2] ** 2) / 1.75)
    assert ewma_volatility(closes, 0.5) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(ewma_volatility(closes[:2], 0.5))


def test_sizer_is_zero_until_the_window_is_full() -> None:
    sizer = VolatilityTarget(target_vol=0.01, lookback=5, decay=0.94)
    closes = [100.0 * 1.01 ** (i % 2) for i in range(6)]
    assert sizer.fraction(Decision("long"), closes[4], closes[:5]) == 0.0
    assert sizer.fraction(Decision("long"), closes[5], closes) > 0.0


def test_vol_targeted_buy_hold_hits_its_target_on_garch(markets: list[pd.DataFrame]) -> None:
    for candles in markets:
        plain = run_backtest(candles, "buy_hold", config=KernelConfig(fees=FEES))
        targeted = run_backtest(candles, "buy_hold", config=vol_config(0.2))
        assert annual_vol(plain) > 0.6  # far from the target: 80 % a year
        assert annual_vol(targeted) == pytest.approx(0.2, rel=0.25)
        assert sum(o.reason == "rebalance" for o in targeted.orders) > 50  # it follows volatility


def test_leverage_cap_is_respected(markets: list[pd.DataFrame]) -> None:
    leverage, band = 2.0, 0.1
    result = run_backtest(markets[0], "buy_hold", config=vol_config(1.5, leverage=leverage, band=band))
    targets = [abs(o.target_fraction) for o in result.orders]
    assert max(targets) == pytest.approx(leverage)  # the cap binds: 150 % a year needs ~1.9x on average
    assert all(t <= leverage + 1e-12 for t in targets)
    # Between resizes prices move the exposure; above cap / (1 - band) a resize order leaves at that close.
    created = {o.created_ts for o in result.orders}
    over = result.exposure[result.exposure > leverage / (1 - band) + 1e-9]
    assert len(over) > 0 and all(int(ts) in created for ts in over.index)
    assert result.exposure.max() < leverage * 1.5


def test_turnover_is_bounded_by_the_band(markets: list[pd.DataFrame]) -> None:
    candles = markets[1]
    runs = {band: run_backtest(candles, "buy_hold", config=vol_config(0.2, band=band)) for band in (0.0, 0.1, 0.25)}
    orders = {band: len(r.orders) for band, r in runs.items()}
    turnover = {
        band: compute_metrics(r.equity, r.trades, DAY, traded_notional=r.traded_notional).turnover
        for band, r in runs.items()
    }
    assert orders[0.0] > len(candles) - SKIP  # no band: a resize at (nearly) every close
    assert orders[0.1] < 0.2 * len(candles) and orders[0.25] < orders[0.1]
    assert turnover[0.25] < turnover[0.1] < turnover[0.0]
    # every resize is one the band asked for: the target left band x the held exposure at that close
    result = runs[0.1]
    for order in result.orders:
        if order.reason == "rebalance":
            held = float(result.exposure.loc[order.created_ts])
            assert abs(abs(order.target_fraction) - held) > 0.1 * held


def test_default_sizing_never_rebalances(markets: list[pd.DataFrame]) -> None:
    candles = markets[0]
    assert len(run_backtest(candles, "buy_hold", config=KernelConfig(fees=FEES)).orders) == 1
    # Without a band the sizer is asked once, at buy_hold's only decision (bar 0: no estimate, size zero).
    no_band = VolatilityTarget(target_vol=0.01, lookback=20, rebalance_band=None)
    assert run_backtest(candles, "buy_hold", config=KernelConfig(sizer=no_band)).orders == []


def test_a_protective_exit_ends_the_stance(markets: list[pd.DataFrame]) -> None:
    result = run_backtest(markets[2], "buy_hold", config=vol_config(0.2, stop_loss_pct=0.05))
    stops = [t for t in result.trades if t.exit_reason == "stop_loss"]
    assert len(stops) == 1  # out after the stop: buy_hold never decides again, so no resize brings it back
    assert all(f.ts <= stops[0].exit_ts for f in result.fills)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"annual": 0.0}, "--vol-target must be positive"),
        ({"annual": 0.2, "max_leverage": -1.0}, "--max-leverage must be positive"),
        ({"annual": 0.2, "band": -0.1}, "--rebalance-band must be >= 0"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        annual_volatility_target(timeframe=DAY, **kwargs)


class EveryBar(Strategy):
    """Repeats one decision at every close (as the ensemble's trader does while its signal lasts)."""

    name = "every_bar"

    def __init__(self, decision: Decision) -> None:
        self.decision = decision

    def on_bar(self, ctx: BarContext) -> Decision | None:
        return self.decision


def test_a_decisions_size_scales_the_volatility_budget(markets: list[pd.DataFrame]) -> None:
    candles, config = markets[0], vol_config(0.2)
    full = run_backtest(candles, lambda s: EveryBar(Decision("long")), config=config)
    half = run_backtest(candles, lambda s: EveryBar(Decision("long", size=0.5)), config=config)
    assert annual_vol(half) == pytest.approx(0.5 * annual_vol(full), rel=0.1)
    # repeated sized decisions resize only outside the band, like the rebalancing itself
    assert len(half.orders) < 0.2 * len(candles)


def test_warm_up_long_enough_holds_from_the_windows_first_open(markets: list[pd.DataFrame]) -> None:
    candles, config = markets[0], vol_config(0.2)
    window = candles.iloc[300:].reset_index(drop=True)
    first = int(window["ts"].iloc[0])
    for warm_bars, entry in ((EWMA_LOOKBACK + 1, first), (EWMA_LOOKBACK, int(window["ts"].iloc[1]))):
        warmup = {"SYMBOL": candles.iloc[300 - warm_bars : 300]}
        result = run_backtest({"SYMBOL": window}, "buy_hold", config=config, warmup=warmup)
        assert result.fills[0].ts == entry  # lookback + 1 closes make the forecast at the warm-up's last close
