"""The optimise use case: space parsing, compiled vs event-driven evaluation, the trust figures, refusals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from smartmarket.analytics.deflated import deflated_sharpe_from_returns
from smartmarket.analytics.metrics import bar_returns, compute_metrics
from smartmarket.backtest import run_backtest
from smartmarket.backtest.bench import random_walk_candles
from smartmarket.backtest.sweep import sharpe_from_sums
from smartmarket.core.errors import ConfigError, ValidationError
from smartmarket.core.types import Timeframe
from smartmarket.engine import KernelConfig
from smartmarket.ops.optimize import (
    Evaluator,
    OptimizeRequest,
    grid_points,
    optimize,
    parse_space,
    valid_points,
)

H1 = Timeframe.parse("1h")
CONFIG = KernelConfig(close_at_end=True)


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return random_walk_candles(3_000, seed=11, step_ms=3_600_000)


def request(text: str, **kw: object) -> OptimizeRequest:
    args: dict[str, object] = {"walk_forward": 2, "n_blocks": 8, "config": CONFIG}
    args.update(kw)
    strategy = str(args.pop("strategy", "sma_cross"))
    return OptimizeRequest(strategy, tuple(parse_space(text)), H1, **args)  # type: ignore[arg-type]


def test_parse_space() -> None:
    fast, slow = parse_space("fast=5:50:5, slow=20:200:10")
    assert fast.values == tuple(range(5, 55, 5)) and fast.is_int
    assert len(slow.values) == 19 and slow.values[-1] == 200
    (lower,) = parse_space("lower=20:30:2.5")
    assert lower.values == (20.0, 22.5, 25.0, 27.5, 30.0) and not lower.is_int
    (rr,) = parse_space("reward_risk=1.5|none|3")
    assert rr.values == (1.5, None, 3)
    assert len(grid_points(parse_space("fast=5:50:5,slow=20:200:10"))) == 190


@pytest.mark.parametrize(
    "text",
    ["", "fast", "fast=", "=5", "fast=5:50", "fast=a:b:c", "fast=50:5:5", "fast=1:5:0", "fast=1,fast=2", "1x=3"],
)
def test_bad_space_is_one_config_error_with_the_fix(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_space(text)
    assert "--space" in err.value.one_line() and "\n" not in err.value.one_line()


def test_invalid_combinations_are_left_out() -> None:
    points = grid_points(parse_space("fast=10:30:10,slow=20:40:10"))
    valid = valid_points("sma_cross", points, {})
    assert [(p["fast"], p["slow"]) for p in valid] == [(10, 20), (10, 30), (10, 40), (20, 30), (20, 40), (30, 40)]


def test_compiled_and_event_driven_evaluations_agree(candles: pd.DataFrame) -> None:
    points = valid_points("rsi_reversion", grid_points(parse_space("period=7:14:7,lower=25:35:10")), {})
    compiled = Evaluator(candles, "rsi_reversion", CONFIG, 8)
    event = Evaluator(candles, "rsi_reversion", CONFIG, 8, compiled=False)
    assert compiled.engine == "compiled" and event.engine == "event-driven"
    a, b = compiled.evaluate(points), event.evaluate(points)
    np.testing.assert_allclose(a.stats[:, :5], b.stats[:, :5], rtol=1e-9)  # final, trades, wins, max dd, n
    np.testing.assert_allclose(a.blocks, b.blocks, rtol=1e-9, atol=1e-15)
    for name in ("sharpe", "sortino", "calmar", "return"):
        np.testing.assert_allclose(a.objective(name, H1), b.objective(name, H1), rtol=1e-9)


def test_objectives_match_compute_metrics(candles: pd.DataFrame) -> None:
    params = {"fast": 10, "slow": 40}
    ev = Evaluator(candles, "sma_cross", CONFIG, 8).evaluate([params])
    result = run_backtest(candles, "sma_cross", params=params, config=CONFIG)
    m = compute_metrics(result.equity, result.trades, H1)
    for name, expected in (("sharpe", m.sharpe), ("sortino", m.sortino), ("calmar", m.calmar),
                           ("return", m.total_return)):  # fmt: skip
        assert ev.objective(name, H1)[0] == pytest.approx(expected, rel=1e-9), name


def test_grid_report(candles: pd.DataFrame) -> None:
    report = optimize(candles, request("fast=5:25:5,slow=20:60:20"))
    assert report.engine == "compiled" and report.n_points == 15 and report.n_trials == 13  # (20, 20), (25, 20) refused
    assert report.notes and "refused" in report.notes[0]
    values = [row["value"] for row in report.top]
    assert values == sorted(values, reverse=True) and report.best_value == values[0]
    assert report.top[0]["params"] == report.best_params
    # the in-sample figure is the winner's own backtest
    winner = run_backtest(candles, "sma_cross", params=report.best_params, config=CONFIG)
    assert report.best_metrics["sharpe"] == pytest.approx(compute_metrics(winner.equity, winner.trades, H1).sharpe)
    # deflated Sharpe by hand: the winner's returns, 13 trials, the variance of their per-bar Sharpes
    ev = Evaluator(candles, "sma_cross", CONFIG, 8).evaluate(
        valid_points("sma_cross", grid_points(parse_space("fast=5:25:5,slow=20:60:20")), {})
    )
    per_bar = sharpe_from_sums(ev.stats[:, 4], ev.stats[:, 5], ev.stats[:, 6])
    dsr = deflated_sharpe_from_returns(
        bar_returns(winner.equity), n_trials=13, sharpe_variance=float(np.var(per_bar, ddof=1))
    )
    assert report.deflated_sharpe == pytest.approx(dsr, rel=1e-9)
    assert report.pbo is not None and 0.0 <= report.pbo["pbo"] <= 1.0 and report.pbo["n_splits"] == 70
    # walk-forward: two folds, each choosing among the same candidates, traded out of sample
    assert len(report.walk_forward_folds) == 2
    assert report.walk_forward_folds[0].test_start_ts == int(candles["ts"].iloc[1000])
    assert report.walk_forward_folds[-1].test_end_ts == int(candles["ts"].iloc[-1])
    assert report.walk_forward_oos is not None and math.isfinite(report.walk_forward_oos)
    doc = report.to_dict()
    assert doc["walk_forward"]["in_sample"] == report.best_value and doc["best"]["params"] == report.best_params


def test_event_driven_fallback_and_tpe(candles: pd.DataFrame) -> None:
    report = optimize(candles, request("swing_length=3:5:1", strategy="smc_bos", walk_forward=0))
    assert report.engine == "event-driven" and report.n_trials == 3 and not report.walk_forward_folds
    assert any("event-driven" in note for note in report.notes)
    tpe = optimize(candles, request("fast=5:30:5,slow=20:80:10", method="tpe", trials=8, walk_forward=0))
    assert tpe.n_trials == 8 and tpe.method == "tpe"
    assert tpe.best_params["fast"] in range(5, 35, 5) and tpe.best_params["slow"] in range(20, 90, 10)


def test_refusals(candles: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="no combination"):
        optimize(candles, request("fast=50,slow=10"))
    with pytest.raises(ConfigError, match="no parameter period"):
        optimize(candles, request("period=5:10:5"))
    with pytest.raises(ConfigError, match="unknown strategy"):
        optimize(candles, request("fast=5", strategy="nope"))
    with pytest.raises(ValidationError, match="too few"):
        optimize(candles.iloc[:20], request("fast=5,slow=20"))
    with pytest.raises(ConfigError, match="--study needs --storage"):
        request("fast=5", study="s")
    with pytest.raises(ConfigError, match="--objective"):
        request("fast=5", objective="profit")
    with pytest.raises(ConfigError, match="cannot open the study storage"):
        optimize(candles, request("fast=5,slow=20", method="tpe", storage="postgresql://nobody@127.0.0.1:1/none"))
