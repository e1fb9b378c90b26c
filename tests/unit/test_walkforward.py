"""Walk-forward: folds never let a test window touch its training window or gaps; the OOS curve is continuous."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest

from smartmarket.backtest import run_backtest
from smartmarket.backtest.walkforward import (
    FitOutcome,
    WalkForwardConfig,
    bar_sharpe,
    grid_search_fit,
    make_windows,
    walk_forward,
)
from smartmarket.core.errors import ConfigError, ValidationError
from smartmarket.engine import KernelConfig
from smartmarket.execution import FeeModel

HOUR = 3_600_000
GRID = {"fast": [5, 10, 20], "slow": [20, 40]}


def random_walk(n: int, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    return pd.DataFrame(
        {"ts": np.arange(n, dtype=np.int64) * HOUR, "open": open_, "high": np.maximum(open_, close) * 1.003,
         "low": np.minimum(open_, close) * 0.997, "close": close, "volume": 1.0}
    )


@pytest.mark.parametrize(
    "cfg",
    [
        WalkForwardConfig(train_bars=300, test_bars=100, purge_bars=10, embargo_bars=5),
        WalkForwardConfig(train_bars=250, test_bars=77, purge_bars=0, embargo_bars=20),
        WalkForwardConfig(train_bars=200, test_bars=150, purge_bars=3, anchored=True),
    ],
)
def test_windows_keep_test_apart_from_train_purge_and_embargo(cfg: WalkForwardConfig) -> None:
    n = 1_000
    windows = make_windows(n, cfg)
    assert len(windows) >= 3
    for w in windows:
        train = set(range(w.train_start, w.train_end))
        gap = set(range(w.train_end, w.train_end + cfg.purge_bars + cfg.embargo_bars))
        test = set(range(w.test_start, w.test_end))
        assert test and not (test & (train | gap))
        assert w.test_start - w.train_end == cfg.purge_bars + cfg.embargo_bars
        assert max(train) < min(test)
        assert len(train) == (w.train_end if cfg.anchored else cfg.train_bars)
    for before, after in itertools.pairwise(windows):
        assert before.test_end == after.test_start  # contiguous, non-overlapping test windows
    assert windows[0].test_start == cfg.train_bars + cfg.gap_bars and windows[-1].test_end == n


def test_walk_forward_is_out_of_sample_and_stitched_continuously() -> None:
    candles = random_walk(1_200)
    cfg = WalkForwardConfig(train_bars=400, test_bars=200, purge_bars=12, embargo_bars=8)
    config = KernelConfig(initial_cash=10_000.0, fees=FeeModel(taker=0.001))
    seen: list[tuple[int, int]] = []
    grid_fit = grid_search_fit("sma_cross", GRID, config=config)

    def fit(train: dict[str, pd.DataFrame]) -> FitOutcome:
        ts = train["SYMBOL"]["ts"]
        seen.append((int(ts.iloc[0]), int(ts.iloc[-1])))
        return grid_fit(train)

    wf = walk_forward(candles, "sma_cross", fit, cfg, config=config)
    windows = make_windows(len(candles), cfg)
    assert any(f.ts == w.result.equity.index[0] for w in wf.windows for f in w.result.fills)  # warm-up stance
    assert len(wf.windows) == len(windows) == 4
    ts = candles["ts"].to_numpy()
    for (first, last), w in zip(seen, windows, strict=True):
        assert first == ts[w.train_start] and last == ts[w.train_end - 1]
        assert last < ts[w.test_start - cfg.gap_bars]  # fit never saw the gap or the test window
    # Results come from the test windows only, and cover them exactly.
    np.testing.assert_array_equal(wf.equity.index.to_numpy(), ts[windows[0].test_start :])
    assert wf.equity.index.is_monotonic_increasing and wf.equity.index.is_unique
    for t in wf.trades:
        assert t.entry_ts >= ts[windows[0].test_start]
    # Each window starts from the previous window's ending equity (positions closed at each window's end).
    starts = [w.result.initial_cash for w in wf.windows]
    ends = [w.result.final_equity for w in wf.windows]
    assert starts[0] == 10_000.0 and starts[1:] == ends[:-1]
    assert wf.final_equity == ends[-1] and not any(w.result.open_positions for w in wf.windows)
    closes = candles.set_index("ts")["close"]
    for window_result in wf.windows:
        # The first point is the carried-over equity, changed only by what filled at the window's first open.
        run = window_result.result
        first_ts = int(run.equity.index[0])
        moves = sum(f.signed_quantity * (closes[first_ts] - f.price) - f.fee for f in run.fills if f.ts == first_ts)
        assert float(run.equity.iloc[0]) == pytest.approx(run.initial_cash + moves, rel=1e-12)


def test_grid_search_picks_the_best_train_sharpe() -> None:
    candles = random_walk(800, seed=4)
    config = KernelConfig(fees=FeeModel(taker=0.0005))
    outcome = grid_search_fit("sma_cross", GRID, config=config)({"SYMBOL": candles})
    scores: dict[tuple[int, int], Any] = {}
    for fast in GRID["fast"]:
        for slow in GRID["slow"]:
            if fast < slow:
                result = run_backtest(candles, "sma_cross", params={"fast": fast, "slow": slow}, config=config)
                scores[(fast, slow)] = bar_sharpe(result.equity)
    best = max((s, k) for k, s in scores.items() if s is not None)
    assert (outcome.params["fast"], outcome.params["slow"]) == best[1]
    assert outcome.score == pytest.approx(best[0])


def test_too_little_data_and_bad_grids_are_reported() -> None:
    with pytest.raises(ValidationError):
        walk_forward(random_walk(100), "sma_cross", lambda train: {"fast": 5, "slow": 20},
                     WalkForwardConfig(train_bars=90, test_bars=10, purge_bars=20))
    with pytest.raises(ConfigError):
        grid_search_fit("sma_cross", {"fast": [50], "slow": [20]})({"SYMBOL": random_walk(200)})
