"""The universe report finds a planted edge and stays flat on noise.

A planted-edge market (``MarketParams.planted_edge``: a drift following the sign of the trailing 20-bar return)
and a zero-mean GARCH market (no edge at all), two symbols each, traded as one account through the walk-forward
with cheap members (technical, logistic on the ``minimal`` features) and a small layout: seconds, not minutes.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from smartmarket.backtest.signal_evaluation import EvaluationConfig
from smartmarket.data.synthetic import MarketParams, garch_candles, generate_market
from smartmarket.ops.universe_report import BASELINES, UniverseConfig, markdown_report, universe_report

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROWS = 5200
EVALUATION = EvaluationConfig(members=("technical", "logistic"), folds=2, test_bars=800, fit_bars=1500,
                              train_bars=2500, model_feature_set="minimal")  # fmt: skip
CONFIG = UniverseConfig(evaluation=EVALUATION, resamples=400)
PLANTED = MarketParams(planted_edge=0.3, planted_edge_lookback=20)
KEYS = {"sharpe", "sharpe_ci", "deflated_sharpe", "ic", "ic_se", "brier_skill", "max_drawdown", "total_return",
        "trades"}  # fmt: skip


def _z_low(r: dict[str, Any]) -> float:
    return float(r["ic"] - 1.96 * r["ic_se"])


@pytest.fixture(scope="module")
def planted() -> dict[str, Any]:
    frames = {f"EDGE{i}": generate_market(ROWS, timeframe="1h", seed=10 + i, params=PLANTED) for i in range(2)}
    return universe_report(frames, "1h", CONFIG)


@pytest.fixture(scope="module")
def noise() -> dict[str, Any]:
    frames = {f"NOISE{i}": garch_candles(ROWS, timeframe="1h", seed=20 + i, annual_vol=0.6) for i in range(2)}
    return universe_report(frames, "1h", CONFIG)


def test_the_json_has_every_system_and_both_baselines(planted: dict[str, Any]) -> None:
    systems = planted["systems"]
    assert set(BASELINES) <= set(systems)
    assert {"ensemble_skill", "ensemble_stacking", "technical", "logistic"} <= set(systems)
    for name, r in systems.items():
        assert set(r) >= KEYS, name
    assert planted["deflation"]["n_trials"] == 4  # two ensembles and two members were tried
    assert planted["bootstrap"]["block_bars"] >= EVALUATION.label_config.horizon
    # buy-and-hold forecasts nothing: no IC, no Brier skill; the vol-targeted one rebalances, so it trades
    assert systems["buy_and_hold"]["ic"] is None and systems["buy_and_hold"]["trades"] == 0
    assert systems["buy_and_hold_vol_target"]["trades"] > 0
    text = markdown_report(planted, "smartmarket evaluate-signals --symbols EDGE0,EDGE1 1h --walk-forward 2")
    assert "buy_and_hold_vol_target" in text and "Beat it on Sharpe" in text


def test_a_planted_edge_is_found_ic_and_sharpe_significantly_positive(planted: dict[str, Any]) -> None:
    systems = planted["systems"]
    found = []
    for name in ("ensemble_stacking", "technical", "logistic"):
        r = systems[name]
        if _z_low(r) > 0 and r["sharpe_ci"] is not None and r["sharpe_ci"][0] > 0:
            found.append(name)
    assert "ensemble_stacking" in found, {n: (systems[n]["ic"], systems[n]["ic_se"], systems[n]["sharpe_ci"])
                                          for n in systems}  # fmt: skip
    assert systems["ensemble_stacking"]["brier_skill"] > 0
    assert systems["ensemble_stacking"]["deflated_sharpe"] > 0.95  # survives the selection among four systems


def test_pure_noise_stays_flat(noise: dict[str, Any]) -> None:
    """No IC anywhere, no ensemble Sharpe, and nothing survives deflation for the systems tried (a member
    alone may get lucky at 95 % — one of four did on this market — which is what the deflated Sharpe is for)."""
    systems = noise["systems"]
    for name, r in systems.items():
        if r["ic"] is not None:
            assert r["ic"] - 1.96 * r["ic_se"] < 0 < r["ic"] + 1.96 * r["ic_se"], name
        assert r["deflated_sharpe"] is None or r["deflated_sharpe"] < 0.95, name
    for name in ("ensemble_skill", "ensemble_stacking", *BASELINES):
        ci = systems[name]["sharpe_ci"]
        assert ci is None or ci[0] < 0 < ci[1], name


def test_vol_model_har_sizes_systems_and_baseline_with_hars() -> None:
    frames = {f"NOISE{i}": garch_candles(ROWS, timeframe="1h", seed=20 + i, annual_vol=0.6) for i in range(2)}
    config = UniverseConfig(evaluation=EVALUATION, resamples=100, vol_target=0.2, vol_model="har")
    doc = universe_report(frames, "1h", config)
    assert doc["config"]["vol_model"] == "har"
    assert doc["systems"]["buy_and_hold_vol_target"]["trades"] > 0
    ewma = universe_report(frames, "1h", UniverseConfig(evaluation=EVALUATION, resamples=100, vol_target=0.2))
    assert doc["systems"]["buy_and_hold_vol_target"] != ewma["systems"]["buy_and_hold_vol_target"]
    assert "HAR forecast" in markdown_report(doc, "cmd") and "EWMA forecast" in markdown_report(ewma, "cmd")
