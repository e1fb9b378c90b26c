"""Peer parity: the kernel against backtesting.py 0.6 on real BTCUSDT 1h candles (sma_cross).

backtesting.py is run as ``FractionalBacktest`` (whole satoshis, so sizing is fractional for practical
purposes) with ``exclusive_orders=True`` (a new signal closes the old trade first) and
``trade_on_close=False`` (market orders fill at the next bar's open), and is given the very same SMA values
(``features.indicators`` batch output), so the comparison is of the engines, not of two SMA codes.

How the cost models compare (asserted below):

* **Fees**: identical by design. backtesting.py's ``commission=c`` charges ``c x |size| x price`` on the
  entry and on the exit fill, and sizes a full-equity order as ``equity / (price x (1 + c))``; our
  ``FeeModel(taker=c)`` does exactly the same. Remaining difference: backtesting.py's whole-unit
  rounding (1 satoshi), well below 1e-9 of equity here.
* **Spread vs slippage**: different. backtesting.py's ``spread=s`` worsens only the *entry* price
  (``open x (1 ± s)``) and exits at the raw open; our ``FixedBps(s x 1e4)`` worsens *both* fills. So entries
  match exactly and every exit is worse by exactly the factor ``1 - s`` (long) or ``1 + s`` (short).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.backtest import run_backtest
from smartmarket.backtest.bench import peer_sma_cross
from smartmarket.backtest.runner import BacktestResult
from smartmarket.engine import KernelConfig
from smartmarket.execution import FeeModel, FixedBps

backtesting = pytest.importorskip("backtesting")
from backtesting.lib import FractionalBacktest  # noqa: E402

FAST, SLOW = 10, 30
CASH = 1_000_000.0


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    frame = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz")
    return frame.iloc[20_000:28_000].reset_index(drop=True)  # 8,000 bars, 2019-2020


def run_peer(candles: pd.DataFrame, commission: float = 0.0, spread: float = 0.0) -> pd.Series:
    PeerSmaCross, data = peer_sma_cross(candles, FAST, SLOW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "trades remain open at the end" and fractional-unit notices
        peer = FractionalBacktest(
            data, PeerSmaCross, cash=CASH, commission=commission, spread=spread,
            exclusive_orders=True, trade_on_close=False,
        )
        return peer.run()


def run_ours(candles: pd.DataFrame, fee: float = 0.0, slippage_bps: float = 0.0) -> BacktestResult:
    config = KernelConfig(
        initial_cash=CASH, fees=FeeModel(maker=fee, taker=fee), slippage=FixedBps(slippage_bps), size_at="fill_open"
    )  # backtesting.py sizes an order at its fill (the next open): the kernel's peer-parity option
    return run_backtest(candles, "sma_cross", params={"fast": FAST, "slow": SLOW}, config=config)


def assert_same_trade_bars(peer: pd.DataFrame, ours: BacktestResult) -> None:
    assert len(peer) == len(ours.trades) > 100
    np.testing.assert_array_equal(peer["EntryBar"].to_numpy(), [t.entry_bar for t in ours.trades])
    np.testing.assert_array_equal(peer["ExitBar"].to_numpy(), [t.exit_bar for t in ours.trades])
    sides = [1 if t.side == "long" else -1 for t in ours.trades]
    np.testing.assert_array_equal(np.sign(peer["Size"].to_numpy()), sides)


def test_zero_fee_parity_trades_and_equity(candles: pd.DataFrame) -> None:
    peer = run_peer(candles)
    ours = run_ours(candles)
    trades = peer["_trades"]
    assert_same_trade_bars(trades, ours)
    np.testing.assert_allclose(trades["EntryPrice"], [t.entry_price for t in ours.trades], rtol=1e-12)
    np.testing.assert_allclose(trades["ExitPrice"], [t.exit_price for t in ours.trades], rtol=1e-12)
    np.testing.assert_allclose(trades["PnL"], [t.pnl for t in ours.trades], rtol=1e-6, atol=1e-3)
    assert ours.final_equity == pytest.approx(peer["Equity Final [$]"], rel=1e-9)
    np.testing.assert_allclose(peer["_equity_curve"]["Equity"].to_numpy(), ours.equity.to_numpy(), rtol=1e-9)
    assert len(ours.open_positions) == 1  # both leave the last trade open (backtesting.py: not in _trades)


def test_fee_parity_same_fee_model(candles: pd.DataFrame) -> None:
    peer = run_peer(candles, commission=0.001)
    ours = run_ours(candles, fee=0.001)
    trades = peer["_trades"]
    assert_same_trade_bars(trades, ours)
    np.testing.assert_allclose(trades["Commission"], [t.fees for t in ours.trades], rtol=1e-9)
    assert ours.final_equity == pytest.approx(peer["Equity Final [$]"], rel=1e-9)
    zero_fee = run_ours(candles)
    assert ours.final_equity < 0.7 * zero_fee.final_equity  # the fees are real: ~318 round trips at 0.2 %


def test_spread_versus_slippage_documented_difference(candles: pd.DataFrame) -> None:
    spread = 0.0005
    peer = run_peer(candles, spread=spread)
    ours = run_ours(candles, slippage_bps=spread * 10_000)
    trades = peer["_trades"]
    assert_same_trade_bars(trades, ours)
    np.testing.assert_allclose(trades["EntryPrice"], [t.entry_price for t in ours.trades], rtol=1e-12)
    adverse = np.array([1.0 - spread if t.side == "long" else 1.0 + spread for t in ours.trades])
    exits = [t.exit_price for t in ours.trades]
    np.testing.assert_allclose(trades["ExitPrice"].to_numpy() * adverse, exits, rtol=1e-12)
    assert ours.final_equity < peer["Equity Final [$]"]  # paying on both fills costs more
