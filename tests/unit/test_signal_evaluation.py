"""The walk-forward signal evaluation with network members: trained per fold on earlier bars only, measured alone.

Real BTCUSDT 1h candles, a tiny layout (2 folds of 300 test bars) and a tiny network budget, so it runs in seconds.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from smartmarket.backtest.signal_evaluation import EvaluationConfig, markdown_report, run_walk_forward

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CONFIG = EvaluationConfig(
    members=("technical", "cnn_lstm", "transformer"),
    folds=2,
    test_bars=300,
    fit_bars=700,
    train_bars=1500,
    model_feature_set="minimal",
    network_epochs=2,
    network_steps_per_epoch=3,
    network_batch_size=32,
)


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    frame = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz", nrows=43_400)
    return frame.iloc[40_000:].reset_index(drop=True)


@pytest.fixture(scope="module")
def evaluation(candles: pd.DataFrame) -> tuple[dict[str, Any], list[str]]:
    lines: list[str] = []
    doc = run_walk_forward(candles, symbol="BTCUSDT", timeframe="1h", config=CONFIG, progress=lines.append)
    return doc, lines


def test_networks_are_trained_per_fold_on_bars_before_the_fit_span(
    candles: pd.DataFrame, evaluation: tuple[dict[str, Any], list[str]]
) -> None:
    doc, _ = evaluation
    ts = candles["ts"].to_numpy(np.int64)
    horizon = CONFIG.label_config.horizon
    assert len(doc["folds"]) == 2
    for fold in doc["folds"]:
        fit_start = fold["fit"][0]
        assert fold["fit_start_ts"] == ts[fit_start]
        assert set(fold["members"]) == {"cnn_lstm", "transformer"}  # rule members are not trained
        for name, record in fold["members"].items():
            assert record["kind"] == name
            first, stop = record["train_bars"]
            assert stop == fit_start - horizon and stop - first == CONFIG.train_bars
            # the model's own metadata: the last candle it learned from and the last candle it was given at all
            assert record["training_end_ts"] is not None and record["training_end_ts"] < fold["fit_start_ts"]
            assert record["data_last_ts"] == ts[stop - 1] < fold["fit_start_ts"]
            assert 1 <= record["epochs_run"] <= CONFIG.network_epochs and record["context"] == 256
    # a fresh model per fold: the second fold's training ends later than the first's
    ends = [fold["members"]["cnn_lstm"]["training_end_ts"] for fold in doc["folds"]]
    assert ends[0] < ends[1]


def test_network_probabilities_are_in_the_per_member_results(evaluation: tuple[dict[str, Any], list[str]]) -> None:
    doc, _ = evaluation
    decided = CONFIG.folds * CONFIG.test_bars
    for name in ("cnn_lstm", "transformer", "technical", "ensemble_skill"):
        result = doc["results"][name]
        assert result["decisions"] == decided  # every test bar had the member's probabilities
        assert 0.0 < result["brier"] < 2.0 and 0.0 <= result["ece"] <= 1.0
    for fold in doc["folds"]:
        skill = fold["systems"]["ensemble_skill"]["member_skill"]
        assert {"cnn_lstm", "transformer", "technical"} <= set(skill)
        assert set(fold["systems"]["cnn_lstm"]["member_skill"]) == {"cnn_lstm"}


def test_budget_is_recorded_and_reported(evaluation: tuple[dict[str, Any], list[str]]) -> None:
    doc, lines = evaluation
    budget = doc["network_budget"]
    assert budget["preset"] == "small" and budget["epochs"] == 2 and budget["steps_per_epoch"] == 3
    assert budget["batch_size"] == 32 and budget["torch_threads"] == 1
    assert budget["max_training_windows_per_fold"] == 2 * 3 * 32
    assert set(budget["architectures"]) == {"cnn_lstm", "transformer"}
    assert doc["config"]["network_epochs"] == 2 and doc["wall_seconds"] > 0
    assert any(line.startswith("fold 2/2: training transformer on bars") for line in lines)
    assert any("cnn_lstm epoch 1/2: loss" in line for line in lines)
    text = markdown_report(doc, "cmd")
    assert "Networks trained under a CPU budget" in text and "at most 2 epochs of 3 batches of 32" in text
    assert "| 2 | transformer |" in text


def test_unknown_member_is_refused(candles: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="transformer or cnn_lstm"):
        cfg = replace(CONFIG, members=("technical", "astrology"))
        run_walk_forward(candles, symbol="BTCUSDT", timeframe="1h", config=cfg)


def test_cli_budget_defaults_are_the_configs() -> None:
    from smartmarket.cli import signals as cli

    cfg = EvaluationConfig()
    assert (cfg.network_preset, cfg.network_epochs, cfg.network_steps_per_epoch) == (
        cli.NETWORK_PRESET, cli.NETWORK_EPOCHS, cli.NETWORK_STEPS)  # fmt: skip
    assert (cfg.network_batch_size, cfg.torch_threads) == (cli.NETWORK_BATCH, cli.NETWORK_THREADS)
