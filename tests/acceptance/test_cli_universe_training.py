"""``train --symbols`` / ``--universe all`` end to end: one pooled registry entry listing its symbols, a prediction
on a symbol it never saw, and one-line errors. Real 4h candles (2022–2023 slices) in a temp store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app, main
from smartmarket.cli.models import load_market
from smartmarket.core.config import Settings
from smartmarket.core.timeutil import parse_time
from smartmarket.core.types import Timeframe
from smartmarket.models.registry import Registry
from smartmarket.store import open_store

runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None})
STORED = ("BTCUSDT", "ETHUSDT", "BNBUSDT")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A home whose store holds 2022–2023 4h candles of BTC, ETH and BNB (a slice keeps features fast)."""
    home = tmp_path_factory.mktemp("universe") / "home"
    home.mkdir()
    lo, hi = parse_time("2022-01-01"), parse_time("2024-01-01")
    with open_store(Settings(home=home).store_url) as store:
        for symbol in STORED:
            frame = pd.read_csv(shared_data / f"{symbol}-4h.csv.gz")
            frame = frame[(frame["ts"] >= lo) & (frame["ts"] < hi)].reset_index(drop=True)
            store.write_candles(symbol, Timeframe.parse("4h"), frame)
    return home


def run_json(home: Path, *args: str) -> Any:
    result = runner.invoke(app, ["--home", str(home), *args, "--json"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_symbols_pools_into_one_entry_that_predicts_a_third_symbol(home: Path) -> None:
    before = {r.model_id for r in Registry(Settings(home=home).registry_dir).list()}
    doc = run_json(home, "train", "--model", "logistic", "--timeframe", "4h", "--symbols", "btcusdt,ETH/USDT")
    registry = Registry(Settings(home=home).registry_dir)
    added = {r.model_id for r in registry.list()} - before
    assert added == {doc["id"]} and doc["id"].startswith("logreg-UNIVERSE-4h-")
    assert doc["symbols"] == ["BTCUSDT", "ETHUSDT"]
    record = registry.show(doc["id"])
    assert record.metadata["symbols"] == ["BTCUSDT", "ETHUSDT"]
    per_symbol = record.metadata["metrics"]["per_symbol"]
    assert set(per_symbol) == {"BTCUSDT", "ETHUSDT"}
    assert sum(m["n"] for m in per_symbol.values()) == record.metadata["metrics"]["test"]["n"] > 300
    assert record.metadata["data"]["train_samples_per_symbol"]["ETHUSDT"] > 1000
    # split by timestamp: training ends before the evaluated periods begin, for both symbols at once
    split = record.metadata["split"]
    assert split["train_ts"][1] < split["validation_ts"][0] < split["test_ts"][0]

    model = registry.load(doc["id"])
    with open_store(Settings(home=home).store_url) as store:
        bnb = load_market(store, "BNBUSDT", "4h")  # never in the universe; no identity passed
    proba = model.predict_frame(bnb.model_features)
    ready = proba.dropna()
    assert len(ready) > 0.5 * len(proba) and proba.loc[ready.index[0] :].notna().all().all()  # after warm-up
    assert np.allclose(ready.sum(axis=1), 1.0) and ready.to_numpy().std(axis=0).max() > 0


def test_universe_all_picks_every_stored_symbol(home: Path) -> None:
    doc = run_json(home, "train", "--model", "majority", "--timeframe", "4h", "--universe", "all")
    assert doc["symbols"] == sorted(STORED)


def test_cross_section_ranks_become_model_inputs(home: Path) -> None:
    doc = run_json(home, "train", "--model", "logistic", "--timeframe", "4h", "--universe", "all",
                   "--cross-section", "12")  # fmt: skip
    meta = Registry(Settings(home=home).registry_dir).show(doc["id"]).metadata
    assert {"xs_ret_rank_12", "xs_vol_rank_12"} <= set(meta["feature_columns"])
    assert meta["data"]["cross_section_window"] == 12


def test_fit_signals_symbols_pools_one_artifact_over_the_universe(home: Path) -> None:
    trained = run_json(home, "train", "--model", "logistic", "--timeframe", "4h", "--symbols", "BTCUSDT,ETHUSDT")
    doc = run_json(home, "fit-signals", "-t", "4h", "--symbols", "BTCUSDT,ETHUSDT", "--members", "technical,logistic")
    assert doc["id"].startswith("ensemble-UNIVERSE-4h-") and doc["symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert doc["member_model_ids"] == [trained["id"]]  # the model member is the pooled model
    per_symbol = doc["data"]["per_symbol"]
    assert set(per_symbol) == {"BTCUSDT", "ETHUSDT"}
    # samples start after the pooled model's training + validation, for each symbol
    validation_end = trained["split"]["validation_ts"][1]
    assert doc["data"]["sample_first_ts"] > validation_end
    assert doc["data"]["samples"] > 500
    assert set(doc["weights"]) == {"technical", "logistic"}


def test_fit_signals_universe_refuses_a_symbol_too(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(home), "fit-signals", "-s", "BTCUSDT", "-t", "4h", "--universe", "all"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: give either -s S1,S2,… or --universe all"), err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--symbols", "BTCUSDT,SOLUSDT"), "error: unknown symbol SOLUSDT: nothing stored for it"),
        (("--symbols", "BTCUSDT,btc/usdt"), "error: a universe needs at least two symbols, got BTCUSDT"),
        (("--symbols", "BTCUSDT,ETHUSDT", "--timeframe", "1h"), "error: BTCUSDT has no 1h candles stored (it has 4h)"),
        (("--universe", "all", "--timeframe", "1d"), "error: no symbol has 1d candles stored"),
        (("--universe", "top10"), "error: unknown universe 'top10'"),
        (("--symbols", "BTCUSDT,ETHUSDT", "--universe", "all"), "error: give either -s S1,S2,… or --universe all"),
        (
            (
                "--cross-section",
                "12",
            ),
            "error: --cross-section ranks a symbol within a universe",
        ),
    ],
)
def test_errors_are_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], expected: str
) -> None:
    argv = ["--home", str(home), "train", "--model", "logistic", "--timeframe", "4h", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(expected), err
