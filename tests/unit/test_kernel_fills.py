"""Hand-built bars through the kernel: fill timing, fees, slippage, protective exits, long-only, shorts."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import pandas as pd
import pytest

from smartmarket.backtest import run_backtest
from smartmarket.backtest.runner import BacktestResult
from smartmarket.core.errors import ValidationError
from smartmarket.core.types import Candle
from smartmarket.engine import BarContext, Decision, Kernel, KernelConfig, Strategy
from smartmarket.execution import (
    NO_FEES,
    FeeModel,
    FixedBps,
    FixedFraction,
    RiskConfig,
    RiskPerTrade,
    VolatilitySlippage,
    VolatilityTarget,
)

HOUR = 3_600_000
CASH = 10_000.0


def frame(ohlc: Sequence[tuple[float, float, float, float]]) -> pd.DataFrame:
    """Bars from (open, high, low, close) rows, one hour apart."""
    return pd.DataFrame(
        {
            "ts": [i * HOUR for i in range(len(ohlc))],
            "open": [r[0] for r in ohlc],
            "high": [r[1] for r in ohlc],
            "low": [r[2] for r in ohlc],
            "close": [r[3] for r in ohlc],
            "volume": [1.0] * len(ohlc),
        }
    )


def flat_bars(prices: Sequence[float]) -> pd.DataFrame:
    """Bars opening at each price, with a 1 % range around it and closing at the open."""
    return frame([(p, p * 1.01, p * 0.99, p) for p in prices])


class Scripted(Strategy):
    """Returns the decision scripted for each bar index."""

    name = "scripted"

    def __init__(self, script: Mapping[int, Decision]) -> None:
        self.script = dict(script)

    def on_bar(self, ctx: BarContext) -> Decision | None:
        return self.script.get(ctx.bar_index)


def run(bars: pd.DataFrame, script: Mapping[int, Decision], **config: object) -> BacktestResult:
    cfg = KernelConfig(initial_cash=CASH, **{"fees": NO_FEES, **config})  # type: ignore[arg-type]
    return run_backtest(bars, lambda symbol: Scripted(script), config=cfg)


LONG, SHORT, FLAT = Decision("long"), Decision("short"), Decision("flat")


# --------------------------------------------------------------------------------------------- timing
def test_decision_at_close_fills_at_next_open() -> None:
    bars = flat_bars([100, 110, 120, 130, 140])
    res = run(bars, {0: LONG, 2: FLAT})
    assert [(f.bar, f.side, f.price) for f in res.fills] == [(1, "buy", 110.0), (3, "sell", 130.0)]
    (trade,) = res.trades
    assert (trade.entry_bar, trade.exit_bar, trade.entry_ts, trade.exit_ts) == (1, 3, HOUR, 3 * HOUR)
    assert trade.pnl == pytest.approx(CASH / 100 * 20)  # sized at the decision close (100), filled at 110
    assert res.orders[0].created_bar == 0 and res.orders[0].fill_bar == 1
    assert res.orders[0].quantity == pytest.approx(CASH / 100)


@pytest.mark.parametrize("latency", [1, 2])
def test_latency_delays_the_fill(latency: int) -> None:
    bars = flat_bars([100, 110, 120, 130, 140, 150])
    res = run(bars, {0: LONG}, latency_bars=latency)
    assert res.fills[0].bar == 1 + latency
    assert res.fills[0].price == bars["open"].iloc[1 + latency]


def test_new_decision_replaces_a_pending_order() -> None:
    bars = flat_bars([100, 101, 102, 103, 104, 105])
    res = run(bars, {0: LONG, 1: SHORT}, latency_bars=2)
    assert [o.status for o in res.orders] == ["cancelled", "filled"]
    assert [(f.bar, f.side) for f in res.fills] == [(4, "sell")]  # decided at bar 1, latency 2


def test_cancel_pending_drops_the_order_before_it_fills() -> None:
    kernel = Kernel(lambda symbol: Scripted({0: LONG}), KernelConfig(initial_cash=CASH, fees=NO_FEES))
    assert kernel.cancel_pending("BTC") is False  # no state yet
    bars = flat_bars([100, 101, 102])
    rows = [Candle(*r) for r in bars.itertuples(index=False, name=None)]
    kernel.on_candle("BTC", rows[0])
    (order,) = kernel.orders
    assert kernel.pending_order("BTC") is order
    assert kernel.cancel_pending("BTC") is True
    assert order.status == "cancelled" and kernel.pending_order("BTC") is None
    assert kernel.cancel_pending("BTC") is False  # nothing left to cancel
    for row in rows[1:]:
        kernel.on_candle("BTC", row)
    assert kernel.broker.fills == [] and kernel.portfolio.quantity("BTC") == 0.0


def test_repeating_the_direction_does_not_trade() -> None:
    bars = flat_bars([100, 101, 102, 103, 104])
    res = run(bars, dict.fromkeys(range(5), LONG))
    assert len(res.orders) == 1 and len(res.fills) == 1


def test_first_equity_point_is_the_initial_cash_and_marks_follow_closes() -> None:
    bars = frame([(100, 101, 99, 100), (100, 106, 99, 105), (105, 111, 104, 110)])
    res = run(bars, {0: LONG})
    qty = CASH / 100
    assert list(res.equity) == pytest.approx([CASH, qty * 105, qty * 110])
    assert list(res.exposure) == pytest.approx([0.0, 1.0, 1.0])


# ----------------------------------------------------------------------------------------------- fees
def test_fee_amounts_and_sizing_reserve_the_entry_fee() -> None:
    bars = flat_bars([100, 100, 110, 110])
    fees = FeeModel(maker=0.0002, taker=0.001)
    res = run(bars, {0: LONG, 1: FLAT}, fees=fees)
    buy, sell = res.fills
    qty = CASH / (100 * 1.001)
    assert buy.quantity == pytest.approx(qty) and buy.fee == pytest.approx(qty * 100 * 0.001)
    assert buy.liquidity == sell.liquidity == "taker"
    assert sell.fee == pytest.approx(qty * 110 * 0.001)
    (trade,) = res.trades
    assert trade.fees == pytest.approx(buy.fee + sell.fee)
    assert trade.pnl == pytest.approx(qty * 10 - buy.fee - sell.fee)
    assert res.final_equity == pytest.approx(CASH + trade.pnl)
    assert res.traded_notional == pytest.approx(qty * 100 + qty * 110)


def test_take_profit_pays_the_maker_fee() -> None:
    bars = frame([(100, 101, 99, 100), (100, 101, 99, 100), (100, 106, 99, 104)])
    res = run(bars, {0: Decision("long", take_profit=105.0)}, fees=FeeModel(maker=0.0002, taker=0.001))
    exit_fill = res.fills[-1]
    assert (exit_fill.reason, exit_fill.liquidity, exit_fill.price) == ("take_profit", "maker", 105.0)
    assert exit_fill.fee == pytest.approx(exit_fill.quantity * 105.0 * 0.0002)


# ------------------------------------------------------------------------------------------- slippage
def test_fixed_bps_slippage_moves_fills_against_the_trader() -> None:
    bars = flat_bars([100, 100, 120, 120])
    res = run(bars, {0: LONG, 1: FLAT}, slippage=FixedBps(10))
    buy, sell = res.fills
    assert buy.price == pytest.approx(100 * 1.001)
    assert sell.price == pytest.approx(120 * 0.999)
    assert buy.quantity == pytest.approx(CASH / 100)  # sized at the decision close: the slippage is not known yet


def test_volatility_slippage_uses_the_ranges_of_earlier_bars_only() -> None:
    # Bars 0-1 span 2 % of the close; bar 2 (the fill bar) spans 50 %: it must not affect its own fill.
    bars = frame([(100, 101, 99, 100), (100, 101, 99, 100), (100, 150, 100, 125), (125, 126, 124, 125)])
    model = VolatilitySlippage(base_bps=1.0, multiplier=0.05, span=5)
    res = run(bars, {1: LONG}, slippage=model)
    expected = 1.0 / 10_000 + 0.05 * 0.02
    assert res.fills[0].bar == 2
    assert res.fills[0].price == pytest.approx(100 * (1 + expected))


def test_volatility_slippage_tracks_an_ewma_of_ranges() -> None:
    tracker = VolatilitySlippage(base_bps=0.0, multiplier=0.1, span=3).tracker()
    assert tracker.fraction == 0.0
    tracker.update(102.0, 98.0, 100.0)  # range 4 %: the EWMA starts there
    assert tracker.fraction == pytest.approx(0.1 * 0.04)
    tracker.update(101.0, 99.0, 100.0)  # range 2 %, alpha = 0.5
    assert tracker.fraction == pytest.approx(0.1 * 0.03)


# ------------------------------------------------------------------------------------ protective exits
def test_stop_and_target_in_the_same_bar_assume_the_stop_first() -> None:
    bars = frame([(100, 101, 99, 100), (100, 101, 99, 100), (100, 106, 94, 100)])
    res = run(bars, {0: Decision("long", stop_loss=95.0, take_profit=105.0)})
    (trade,) = res.trades
    assert (trade.exit_reason, trade.exit_price, trade.exit_bar) == ("stop_loss", 95.0, 2)


def test_a_gap_through_the_stop_fills_at_the_open() -> None:
    bars = frame([(100, 101, 99, 100), (100, 101, 99, 100), (90, 92, 88, 91)])
    res = run(bars, {0: Decision("long", stop_loss=95.0)})
    (trade,) = res.trades
    assert (trade.exit_reason, trade.exit_price) == ("stop_loss", 90.0)


def test_a_gap_through_the_target_fills_at_the_better_open() -> None:
    bars = frame([(100, 101, 99, 100), (100, 101, 99, 100), (110, 112, 108, 111)])
    res = run(bars, {0: Decision("long", take_profit=105.0)})
    assert (res.trades[0].exit_reason, res.trades[0].exit_price) == ("take_profit", 110.0)


def test_short_stop_above_and_target_below() -> None:
    bars = frame([(100, 101, 99, 100), (100, 101, 99, 100), (100, 106, 94, 100)])
    res = run(bars, {0: Decision("short", stop_loss=105.0, take_profit=95.0)})
    (trade,) = res.trades
    assert (trade.side, trade.exit_reason, trade.exit_price) == ("short", "stop_loss", 105.0)
    assert trade.pnl == pytest.approx(-(CASH / 100) * 5)


def test_a_stop_can_hit_in_the_entry_bar() -> None:
    bars = frame([(100, 101, 99, 100), (100, 101, 90, 95)])
    res = run(bars, {0: Decision("long", stop_loss=97.0)})
    (trade,) = res.trades
    assert trade.entry_bar == trade.exit_bar == 1 and trade.exit_price == 97.0


def test_risk_config_percent_levels_are_set_from_the_entry_fill() -> None:
    bars = frame([(100, 101, 99, 100), (200, 201, 199, 200), (200, 201, 189, 195)])
    res = run(bars, {0: LONG}, risk=RiskConfig(stop_loss_pct=0.05))
    (trade,) = res.trades
    assert (trade.exit_reason, trade.exit_price) == ("stop_loss", pytest.approx(190.0))


def test_trailing_stop_follows_earlier_highs_only() -> None:
    bars = frame(
        [
            (100, 101, 99, 100),
            (100, 101, 99, 100),  # entry at 100: trail anchor 100, level 95
            (100, 120, 96, 118),  # low 96 > 95: holds; the anchor moves to 120 only after this bar
            (118, 119, 115, 116),  # level 120 * 0.95 = 114: holds
            (116, 125, 113, 124),  # level still 114 (this bar's 125 not used yet) and the low 113 hits it
        ]
    )
    res = run(bars, {0: Decision("long", trailing_stop=0.05)})
    (trade,) = res.trades
    assert (trade.exit_reason, trade.exit_bar) == ("trailing_stop", 4)
    assert trade.exit_price == pytest.approx(114.0)


def test_tighter_of_fixed_and_trailing_stop_binds() -> None:
    bars = frame([(100, 101, 99, 100), (100, 101, 99, 100), (100, 101, 96.5, 98)])
    res = run(bars, {0: Decision("long", stop_loss=97.0, trailing_stop=0.10)})
    assert (res.trades[0].exit_reason, res.trades[0].exit_price) == ("stop_loss", 97.0)


def test_repeated_direction_moves_the_stop() -> None:
    bars = frame([(100, 101, 99, 100), (100, 101, 99, 100), (100, 101, 98, 100), (100, 101, 98, 100)])
    res = run(bars, {0: Decision("long", stop_loss=90.0), 2: Decision("long", stop_loss=99.0)})
    (trade,) = res.trades
    assert (trade.exit_bar, trade.exit_price, trade.exit_reason) == (3, 99.0, "stop_loss")


# ------------------------------------------------------------------------------------ long-only, shorts
def test_long_only_turns_shorts_into_flat() -> None:
    bars = flat_bars([100, 110, 105, 100, 95, 100, 110])
    script = {0: LONG, 2: SHORT, 4: LONG, 5: SHORT}
    res = run(bars, script, long_only=True)
    assert all(t.side == "long" for t in res.trades) and len(res.trades) == 2
    assert [(t.entry_bar, t.exit_bar) for t in res.trades] == [(1, 3), (5, 6)]
    assert not res.open_positions
    both = run(bars, script)
    assert [t.side for t in both.trades] == ["long", "short", "long"]


def test_short_profit_when_price_falls() -> None:
    bars = flat_bars([100, 100, 90, 80])
    res = run(bars, {0: SHORT, 1: FLAT}, fees=FeeModel(taker=0.001))
    (trade,) = res.trades
    qty = CASH / (100 * 1.001)
    assert trade.side == "short" and trade.quantity == pytest.approx(qty)
    assert trade.pnl == pytest.approx(qty * 10 - qty * 100 * 0.001 - qty * 90 * 0.001)
    assert res.final_equity == pytest.approx(CASH + trade.pnl)


def test_reversal_closes_then_opens_the_quantity_sized_at_the_decision_close() -> None:
    bars = flat_bars([100, 100, 120, 120])
    res = run(bars, {0: LONG, 1: SHORT}, fees=FeeModel(taker=0.001))
    assert [f.side for f in res.fills] == ["buy", "sell", "sell"]
    buy, close_long, open_short = res.fills
    equity_at_decision = CASH - buy.fee  # bar 1 closes at the buy's price: only the fee is gone
    assert open_short.quantity == pytest.approx(equity_at_decision / (100 * 1.001))
    assert close_long.quantity == pytest.approx(buy.quantity)
    assert close_long.bar == open_short.bar == 2


def test_size_at_fill_open_sizes_from_the_equity_after_the_close_at_the_open() -> None:
    """backtesting.py's convention, kept for the peer-parity tests."""
    bars = flat_bars([100, 100, 120, 120])
    res = run(bars, {0: LONG, 1: SHORT}, fees=FeeModel(taker=0.001), size_at="fill_open")
    open_short = res.fills[2]
    equity_after_close = CASH + res.trades[0].pnl
    assert open_short.quantity == pytest.approx(equity_after_close / (120 * 1.001))
    assert all(o.quantity is None for o in res.orders)


def test_unknown_size_at_is_refused() -> None:
    with pytest.raises(ValidationError, match="size_at"):
        KernelConfig(size_at="fill_close")  # type: ignore[arg-type]


def test_open_positions_are_reported_or_closed_at_the_end() -> None:
    bars = flat_bars([100, 110, 120])
    kept = run(bars, {0: LONG})
    assert not kept.trades and len(kept.open_positions) == 1
    assert kept.final_equity == pytest.approx(CASH + CASH / 100 * (120 - 110))
    closed = run(bars, {0: LONG}, close_at_end=True)
    (trade,) = closed.trades
    assert (trade.exit_reason, trade.exit_price, trade.exit_bar) == ("end_of_data", 120.0, 2)
    assert not closed.open_positions and closed.final_equity == pytest.approx(kept.final_equity)


# --------------------------------------------------------------------------------------------- sizing
def test_decision_size_and_fixed_fraction() -> None:
    bars = flat_bars([100, 100, 100])
    assert run(bars, {0: Decision("long", size=0.25)}).fills[0].quantity == pytest.approx(25.0)
    res = run(bars, {0: LONG}, sizer=FixedFraction(0.5))
    assert res.fills[0].quantity == pytest.approx(50.0)


def test_risk_per_trade_sizes_by_stop_distance() -> None:
    bars = flat_bars([100, 100, 100])
    res = run(bars, {0: Decision("long", stop_loss=95.0)}, sizer=RiskPerTrade(risk_fraction=0.01))
    # 1 % of equity at risk over a 5 % stop: 20 % of equity.
    assert res.fills[0].quantity * 100 == pytest.approx(0.2 * CASH)


def test_volatility_target_sizes_inversely_to_realised_volatility() -> None:
    closes = [100.0 * (1.02 if i % 2 else 1.0) for i in range(25)]  # log returns ±0.0198
    bars = frame([(c, c * 1.001, c * 0.999, c) for c in closes])
    sizer = VolatilityTarget(target_vol=0.005, lookback=20)
    res = run(bars, {22: LONG}, sizer=sizer)
    rets = [math.log(b / a) for a, b in itertools.pairwise(closes[2:23])]
    mean = sum(rets) / len(rets)
    vol = math.sqrt(sum((r - mean) ** 2 for r in rets) / (len(rets) - 1))
    assert res.fills[0].quantity * closes[22] == pytest.approx(CASH * 0.005 / vol)  # at the decision close


def test_exposure_limit_caps_a_second_symbol() -> None:
    bars = flat_bars([100, 100, 100])
    cfg = KernelConfig(initial_cash=CASH, fees=NO_FEES, sizer=FixedFraction(0.7))
    res = run_backtest({"A": bars, "B": bars}, lambda s: Scripted({0: LONG}), config=cfg)
    notional = {f.symbol: f.notional for f in res.fills}
    assert notional["A"] == pytest.approx(0.7 * CASH) and notional["B"] == pytest.approx(0.3 * CASH)


# ------------------------------------------------------------------------------------------- guards
def test_candles_must_move_forward() -> None:
    kernel = Kernel(lambda s: Scripted({}))
    bars = list(flat_bars([100, 101]).itertuples(index=False, name=None))
    kernel.on_candle("X", Candle(*bars[1]))
    with pytest.raises(ValidationError):
        kernel.on_candle("X", Candle(*bars[0]))


# ------------------------------------------------------------------------------------------ strategies
def test_smc_bos_trades_breaks_with_stops_beyond_the_last_swing() -> None:
    import numpy as np

    rng = np.random.default_rng(8)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 1500)))
    open_ = np.r_[100.0, close[:-1]]
    high, low = np.maximum(open_, close) * 1.004, np.minimum(open_, close) * 0.996
    bars = frame(list(zip(open_, high, low, close, strict=True)))
    params = {"swing_length": 3, "reward_risk": 2.0}
    res = run_backtest(bars, "smc_bos", params=params, config=KernelConfig(fees=NO_FEES))
    entries = [o for o in res.orders if o.target_fraction != 0]
    assert len(entries) >= 10 and {o.target_sign for o in entries} == {1, -1}
    closes = bars["close"].to_numpy()
    for order in entries:
        c = closes[order.created_bar]
        assert order.stop_loss is not None and order.take_profit is not None
        if order.target_sign > 0:
            assert order.stop_loss < c < order.take_profit
        else:
            assert order.take_profit < c < order.stop_loss
        assert abs(order.take_profit - c) == pytest.approx(2.0 * abs(c - order.stop_loss))
    reasons = {t.exit_reason for t in res.trades}
    assert {"stop_loss", "take_profit"} <= reasons


def test_candle_events_drive_the_same_kernel_as_the_runner() -> None:
    """One kernel, two clocks: CandleClosed events (the live edge) give exactly the runner's result."""
    import numpy as np

    from smartmarket.core.events import CandleClosed
    from smartmarket.core.types import Timeframe
    from smartmarket.strategies import strategy_factory

    rng = np.random.default_rng(3)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 400)))
    open_ = np.r_[100.0, close[:-1]]
    high, low = np.maximum(open_, close) * 1.002, np.minimum(open_, close) * 0.998
    bars = frame(list(zip(open_, high, low, close, strict=True)))
    config = KernelConfig(fees=FeeModel(), slippage=FixedBps(2), risk=RiskConfig(stop_loss_pct=0.02))
    factory = strategy_factory("sma_cross", fast=5, slow=15)
    batch = run_backtest(bars, factory, config=config, symbol="BTCUSDT")
    live = Kernel(factory, config)
    columns = [bars[c].tolist() for c in ("ts", "open", "high", "low", "close", "volume")]
    for ts, o, h, lo, c, v in zip(*columns, strict=True):
        live.on_event(
            CandleClosed(
                ts_event=ts + HOUR, symbol="BTCUSDT", timeframe=Timeframe.H1, ts=ts,
                open=o, high=h, low=lo, close=c, volume=v,
            )
        )
    live.finish()
    assert live.broker.fills == batch.fills and len(batch.fills) > 10
    assert live.portfolio.trades == batch.trades
    assert live.equity_values == batch.equity.tolist()


def test_no_room_left_means_no_order() -> None:
    bars = flat_bars([100, 100, 100, 100])
    cfg = KernelConfig(initial_cash=CASH, fees=NO_FEES)  # each symbol wants 100 % of equity
    res = run_backtest({"A": bars, "B": bars}, lambda s: Scripted(dict.fromkeys(range(3), LONG)), config=cfg)
    assert [o.symbol for o in res.orders] == ["A"]
    assert [f.symbol for f in res.fills] == ["A"]
