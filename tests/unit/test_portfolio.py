"""Portfolio accounting: one cash account across symbols, long and short, partial closes, long-only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smartmarket.backtest import iter_bars
from smartmarket.core.errors import ValidationError
from smartmarket.engine import BarContext, Decision, Kernel, KernelConfig, Strategy
from smartmarket.execution import FeeModel, FixedBps, FixedFraction, Portfolio, RiskConfig

HOUR = 3_600_000


def walk(n: int, seed: int, start: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.r_[start, close[:-1]]
    return pd.DataFrame(
        {"ts": np.arange(n, dtype=np.int64) * HOUR, "open": open_, "high": np.maximum(open_, close) * 1.004,
         "low": np.minimum(open_, close) * 0.996, "close": close, "volume": 1.0}
    )


class RandomFlips(Strategy):
    """Picks a random direction every few bars (seeded per symbol), with a 2 % stop sometimes."""

    name = "random_flips"

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def on_bar(self, ctx: BarContext) -> Decision | None:
        if self.rng.random() > 0.2:
            return None
        direction = ("long", "flat", "short")[int(self.rng.integers(3))]
        stop = None
        if direction != "flat" and self.rng.random() < 0.5:
            stop = ctx.close * (0.98 if direction == "long" else 1.02)
        return Decision(direction, stop_loss=stop)  # type: ignore[arg-type]


def test_two_symbols_share_one_cash_account_at_every_bar() -> None:
    frames = {"AAA": walk(600, 1, 100.0), "BBB": walk(600, 2, 2_000.0).iloc[50:].reset_index(drop=True)}
    frames["BBB"]["ts"] += 50 * HOUR  # BBB starts later: the timeline is the union
    cfg = KernelConfig(
        initial_cash=50_000.0, fees=FeeModel(maker=0.0002, taker=0.001), slippage=FixedBps(3),
        sizer=FixedFraction(0.5), risk=RiskConfig(take_profit_pct=0.03),
    )
    seeds = {"AAA": 11, "BBB": 12}
    kernel = Kernel(lambda symbol: RandomFlips(seeds[symbol]), cfg)
    closes: dict[str, float] = {}
    for symbol, bar in iter_bars(frames):
        kernel.on_candle(symbol, bar)
        closes[symbol] = bar.close
        pf = kernel.portfolio
        worth = sum(pos.quantity * closes[sym] for sym, pos in pf.positions.items())
        assert pf.cash + worth == pytest.approx(kernel.equity_values[-1], rel=1e-12)
        assert kernel.equity_ts[-1] == bar.ts
    trades, fills = kernel.portfolio.trades, kernel.broker.fills
    assert {t.symbol for t in trades} == {"AAA", "BBB"} and {t.side for t in trades} == {"long", "short"}
    assert {t.exit_reason for t in trades} >= {"signal", "stop_loss", "take_profit"}
    assert len(set(kernel.equity_ts)) == len(kernel.equity_ts) == 650  # one point per timestamp of the union
    # Every cash movement is a fill: initial cash - Σ signed notional - Σ fees = final cash.
    flows = sum(f.signed_quantity * f.price + f.fee for f in fills)
    assert kernel.portfolio.cash == pytest.approx(cfg.initial_cash - flows, rel=1e-12)
    # Realised P&L of closed trades + open P&L = equity change.
    open_pnl = sum(p.unrealized_pnl - p.entry_fees for p in kernel.portfolio.positions.values())
    realised = sum(t.pnl for t in trades)
    assert cfg.initial_cash + realised + open_pnl == pytest.approx(kernel.equity_values[-1], rel=1e-9)


def test_partial_close_books_a_pro_rata_trade() -> None:
    pf = Portfolio(10_000.0)
    pf.apply_fill("X", 10.0, 100.0, 1.0, ts=0, bar=0)
    (trade,) = pf.apply_fill("X", -4.0, 110.0, 0.44, ts=1, bar=1)
    assert trade.quantity == 4.0 and trade.fees == pytest.approx(0.4 + 0.44)
    assert trade.pnl == pytest.approx(4 * 10 - 0.84)
    pos = pf.positions["X"]
    assert pos.quantity == 6.0 and pos.entry_fees == pytest.approx(0.6) and pos.avg_price == 100.0
    pf.mark("X", 120.0)
    assert pf.equity == pytest.approx(10_000.0 - 1.0 - 0.44 + 4 * 10 + 6 * 20)


def test_fill_through_zero_closes_then_opens_short() -> None:
    pf = Portfolio(10_000.0)
    pf.apply_fill("X", 10.0, 100.0, 0.0, ts=0, bar=0)
    (trade,) = pf.apply_fill("X", -15.0, 90.0, 1.5, ts=1, bar=1)
    assert trade.side == "long" and trade.quantity == 10.0 and trade.fees == pytest.approx(1.0)
    pos = pf.positions["X"]
    assert pos.quantity == -5.0 and pos.avg_price == 90.0 and pos.entry_fees == pytest.approx(0.5)
    (cover,) = pf.apply_fill("X", 5.0, 80.0, 0.0, ts=2, bar=2)
    assert cover.side == "short" and cover.pnl == pytest.approx(5 * 10 - 0.5)
    assert not pf.positions and pf.cash == pytest.approx(10_000.0 - 100.0 - 1.5 + 50.0)


def test_adding_to_a_position_averages_the_entry() -> None:
    pf = Portfolio(10_000.0)
    pf.apply_fill("X", 2.0, 100.0, 0.0, ts=0, bar=0)
    pf.apply_fill("X", 2.0, 110.0, 0.0, ts=1, bar=1)
    assert pf.positions["X"].avg_price == pytest.approx(105.0)


def test_long_only_portfolio_refuses_to_go_short() -> None:
    pf = Portfolio(1_000.0, long_only=True)
    pf.apply_fill("X", 1.0, 100.0, 0.0, ts=0, bar=0)
    with pytest.raises(ValidationError):
        pf.apply_fill("X", -2.0, 100.0, 0.0, ts=1, bar=1)
    pf.apply_fill("X", -1.0, 100.0, 0.0, ts=1, bar=1)
    assert not pf.positions


def test_short_equity_moves_against_price() -> None:
    pf = Portfolio(1_000.0)
    pf.apply_fill("X", -5.0, 100.0, 0.0, ts=0, bar=0)
    assert pf.cash == 1_500.0
    pf.mark("X", 120.0)
    assert pf.equity == pytest.approx(1_000.0 - 100.0)
    assert pf.gross_exposure == pytest.approx(600.0)
