"""A backtest with --start warms its strategy up on the stored candles before the window, as live would have."""

from __future__ import annotations

from pathlib import Path

from smartmarket.backtest.runner import run_backtest, warmup_frames
from smartmarket.core.types import Timeframe
from smartmarket.data.synthetic import generate_market
from smartmarket.store.url import open_store
from smartmarket.strategies.registry import strategy_factory

H1 = Timeframe.parse("1h")


def test_an_sma_200_trades_from_the_windows_first_bar_when_warmed_up(tmp_path: Path) -> None:
    candles = generate_market(1_500, timeframe=H1, seed=11, start_price=100.0)
    store = open_store(f"duckdb:///{tmp_path / 's.duckdb'}")
    store.write_candles("SOLUSDT", H1, candles)
    full = run_backtest({"SOLUSDT": candles}, strategy_factory("sma_cross", fast=20, slow=200))
    # a window whose first 200 bars hold a crossing of the full run
    first_cross = next(o.created_ts for o in full.orders if o.created_ts > int(candles["ts"].iloc[1_000]))
    start = first_cross - 50 * H1.ms
    assert first_cross < start + 199 * H1.ms
    window = store.read_candles("SOLUSDT", H1, start)
    factory = strategy_factory("sma_cross", fast=20, slow=200)

    cold = run_backtest({"SOLUSDT": window}, factory)
    warmup = warmup_frames(store, ["SOLUSDT"], H1, start, factory)
    warm = run_backtest({"SOLUSDT": window}, strategy_factory("sma_cross", fast=20, slow=200), warmup=warmup)
    store.close()

    assert len(warmup["SOLUSDT"]) == factory("SOLUSDT").warmup_bars() and int(warmup["SOLUSDT"]["ts"].max()) < start
    # cold, the strategy idles for its first 200 bars and misses the crossing; warmed up, it trades it
    assert min(f.ts for f in cold.fills) >= int(window["ts"].iloc[199])
    assert min(o.created_ts for o in warm.orders) == first_cross
    # and from then on it decides exactly as the run over all candles did
    later = [o.created_ts for o in full.orders if o.created_ts >= start]
    assert [o.created_ts for o in warm.orders if o.created_ts >= start] == later
    assert warm.bars == cold.bars == len(window)
