"""Look-ahead guard: nothing a strategy can reach at bar t shows bar t+1, and decisions at t fill at t+1+latency."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from smartmarket.backtest import run_backtest
from smartmarket.backtest.runner import BacktestResult
from smartmarket.engine import BarContext, Decision, KernelConfig, Strategy
from smartmarket.engine.strategy import BarHistory
from smartmarket.execution import NO_FEES
from smartmarket.features.base import Feature
from smartmarket.features.indicators import make_indicator
from smartmarket.strategies import strategy_factory

HOUR = 3_600_000


def random_walk(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0.0, 0.002, n))  # small gaps: open != previous close
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.01, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.01, n))
    return pd.DataFrame(
        {"ts": np.arange(n, dtype=np.int64) * HOUR, "open": open_, "high": high, "low": low, "close": close,
         "volume": rng.uniform(1.0, 2.0, n)}
    )


class Cheater(Strategy):
    """Tries every way the API offers to see a later bar, records what it saw, and trades on it if it can."""

    name = "cheater"
    history_size = 50

    def __init__(self) -> None:
        self.held: list[BarContext] = []
        self.violations: list[str] = []
        self.index_errors = 0
        self.sma = make_indicator("sma_5")  # kept by the strategy: it can inspect it any time

    def features(self) -> Sequence[Feature]:
        return (self.sma,)

    def _check(self, label: str, ts: int, now: int) -> None:
        if ts > now:
            self.violations.append(f"{label}: saw ts {ts} at bar ts {now}")

    def on_bar(self, ctx: BarContext) -> Decision | None:
        now = ctx.ts
        self.held.append(ctx)
        history = ctx.history
        # 1. index past the present: positive index = len, current index + 1, big numbers
        for index in (len(history), ctx.bar_index + 1, ctx.bar_index + 2, 10**6):
            try:
                bar = history[index]
            except IndexError:
                self.index_errors += 1
            else:
                self._check(f"history[{index}]", bar.ts, now)
        # 2. slices, iteration, private storage
        for bar in history[:]:
            self._check("history[:]", bar.ts, now)
        for bar in history[-1 : len(history) + 5]:
            self._check("history[-1:]", bar.ts, now)
        for bar in list(history):
            self._check("iter(history)", bar.ts, now)
        for bar in history._bars:
            self._check("history._bars", bar.ts, now)
        # 3. contexts held from earlier bars, and their (shared) history objects
        for old in self.held:
            self._check("held ctx", old.ts, now)
            for bar in old.history:
                self._check("held ctx history", bar.ts, now)
        # 4. nothing in the context other than plain values of this bar and the history view
        for value in ctx:
            if not isinstance(value, str | int | float | tuple | dict | BarHistory):
                self.violations.append(f"context exposes {type(value).__name__}")
        # 5. the feature object it kept cannot be ahead of the bar either (it equals the context's value)
        if not np.array_equal(self.sma.values, ctx.feature_values, equal_nan=True):
            self.violations.append("kept feature differs from the context")
        # Trade on the future if anything above leaked it: buy when the next close is higher.
        try:
            nxt = history[ctx.bar_index + 1]
        except IndexError:
            return None
        return Decision("long" if nxt.close > ctx.close else "short")


def _run(bars: pd.DataFrame, factory: Any, latency: int = 0) -> BacktestResult:
    return run_backtest(bars, factory, config=KernelConfig(fees=NO_FEES, latency_bars=latency))


def test_cheater_sees_nothing_after_its_bar() -> None:
    bars = random_walk(300)
    made: list[Cheater] = []

    def factory(symbol: str) -> Cheater:
        made.append(Cheater())
        return made[-1]

    res = _run(bars, factory)
    (cheater,) = made
    assert cheater.violations == []
    assert cheater.index_errors == 4 * len(bars)  # every probe past the present failed
    assert res.orders == [] and res.fills == []  # so it never found a future bar to trade on


def test_held_context_keeps_describing_its_own_bar() -> None:
    bars = random_walk(60)
    cheater = Cheater()
    _run(bars, lambda s: cheater)
    held = cheater.held
    batch = make_indicator("sma_5").batch(bars)["sma_5"].to_numpy()
    for t, ctx in enumerate(held):
        assert ctx.bar_index == t and ctx.ts == bars["ts"].iloc[t] and ctx.close == bars["close"].iloc[t]
        value = ctx.feature("sma_5")
        assert (np.isnan(value) and np.isnan(batch[t])) or value == batch[t]


@pytest.mark.parametrize(
    ("name", "params"),
    [("sma_cross", {"fast": 5, "slow": 20}), ("rsi_reversion", {"period": 7}), ("smc_bos", {"swing_length": 3})],
)
def test_changing_the_future_does_not_change_the_past(name: str, params: dict[str, Any]) -> None:
    bars = random_walk(800, seed=3)
    cut = 500
    future = bars.copy()
    rng = np.random.default_rng(9)
    scale = np.exp(rng.normal(0.0, 0.05, len(bars) - cut - 1))
    for col in ("open", "high", "low", "close"):
        future.loc[cut + 1 :, col] = bars[col].to_numpy()[cut + 1 :] * scale
    a = _run(bars, strategy_factory(name, **params))
    b = _run(future, strategy_factory(name, **params))
    orders_a = [(o.created_bar, o.target_fraction) for o in a.orders if o.created_bar <= cut]
    orders_b = [(o.created_bar, o.target_fraction) for o in b.orders if o.created_bar <= cut]
    assert orders_a == orders_b and len(orders_a) >= 4
    levels_a = [(o.stop_loss, o.take_profit) for o in a.orders if o.created_bar <= cut]
    assert levels_a == [(o.stop_loss, o.take_profit) for o in b.orders if o.created_bar <= cut]
    fills_a = [(f.bar, f.side, f.quantity, f.price) for f in a.fills if f.bar <= cut]
    fills_b = [(f.bar, f.side, f.quantity, f.price) for f in b.fills if f.bar <= cut]
    assert fills_a == fills_b
    np.testing.assert_array_equal(a.equity.to_numpy()[: cut + 1], b.equity.to_numpy()[: cut + 1])
    assert not np.array_equal(a.equity.to_numpy()[cut + 1 :], b.equity.to_numpy()[cut + 1 :])


@pytest.mark.parametrize("latency", [0, 1])
def test_every_decision_fills_at_the_open_of_bar_t_plus_one_plus_latency(latency: int) -> None:
    bars = random_walk(1500, seed=5)
    res = _run(bars, strategy_factory("sma_cross", fast=5, slow=20), latency=latency)
    orders = {o.order_id: o for o in res.orders}
    assert len(res.fills) > 20
    opens = bars["open"].to_numpy()
    for fill in res.fills:
        order = orders[fill.order_id]
        assert fill.bar == order.created_bar + 1 + latency
        assert fill.price == opens[fill.bar]
        assert fill.ts == bars["ts"].iloc[fill.bar]
    for trade in res.trades:
        assert trade.entry_price == opens[trade.entry_bar] and trade.exit_price == opens[trade.exit_bar]


class EverySeventhBar(Strategy):
    """Alternates long and short every seventh bar."""

    name = "every_seventh"

    def on_bar(self, ctx: BarContext) -> Decision | None:
        if ctx.bar_index % 7:
            return None
        return Decision("long" if ctx.bar_index % 14 == 0 else "short")


def test_latency_shifts_every_fill_by_one_bar() -> None:
    bars = random_walk(400, seed=7)
    now = _run(bars, lambda s: EverySeventhBar())
    later = _run(bars, lambda s: EverySeventhBar(), latency=1)
    opens = bars["open"].to_numpy()
    assert len(now.fills) > 100
    assert [f.bar + 1 for f in now.fills] == [f.bar for f in later.fills]
    assert [f.side for f in now.fills] == [f.side for f in later.fills]
    assert [f.price for f in later.fills] == [opens[f.bar] for f in later.fills]
