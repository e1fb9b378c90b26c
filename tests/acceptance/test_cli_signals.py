"""Signal commands end to end on real BTCUSDT-1h candles in a temp home: fit-signals, signals (csv/json/table),
evaluate-signals --json, monitor, backtest --strategy ensemble, and the demo's signal stage."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app
from smartmarket.core.config import Settings
from smartmarket.data.ingest import ingest_file
from smartmarket.ops.signals import demo_signals_stage
from smartmarket.store import open_store

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
FIT = ("--start", "2023-01-01", "--end", "2023-07-01")
WINDOW = ("--start", "2023-07-01", "--end", "2023-07-15")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    home = tmp_path_factory.mktemp("signals") / "home"
    home.mkdir()
    settings = Settings(home=home)
    with open_store(settings.store_url) as store:
        ingest_file(store, shared_data / "BTCUSDT-1h.csv.gz", quarantine_dir=settings.quarantine_dir)
    return home


def invoke(home: Path, *args: str) -> Any:
    runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None, "SMARTMARKET_HOME": str(home)})
    return runner.invoke(app, list(args))


def run(home: Path, *args: str) -> str:
    result = invoke(home, *args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def fitted(home: Path) -> dict[str, Any]:
    return json.loads(
        run(home, "fit-signals", "-s", "BTCUSDT", "-t", "1h", "--members", "technical,smc", *FIT, "--json")
    )


def test_fit_signals_saves_an_artifact_in_the_registry(home: Path, fitted: dict[str, Any]) -> None:
    assert fitted["id"].startswith("ensemble-BTCUSDT-1h-")
    assert (Settings(home=home).registry_dir / fitted["id"] / "metadata.json").is_file()
    assert set(fitted["weights"]) == {"technical", "smc"} and all(0 <= w <= 1 for w in fitted["weights"].values())
    assert fitted["data"]["last"] < "2023-07-01" and fitted["data"]["samples"] > 1000
    meta = json.loads((Settings(home=home).registry_dir / fitted["id"] / "metadata.json").read_text())
    assert meta["kind"] == "ensemble" and meta["members"][0]["kind"] == "technical"


def test_signals_csv_header_and_value_ranges(home: Path, fitted: dict[str, Any]) -> None:
    text = run(home, "signals", "-s", "BTCUSDT", "-t", "1h", *WINDOW, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0].startswith("ts,time,direction,confidence,strength,regime,p_down,p_flat,p_up")
    assert len(rows) == 14 * 24
    for row in rows:
        assert row["direction"] in {"long", "flat", "short"}
        assert 0.0 <= float(row["confidence"]) <= 1.0
        assert row["strength"] in {"none", "weak", "moderate", "strong"}
        assert row["regime"] in {"ranging", "trending_up", "trending_down", "volatile"}
        assert row["direction"] != "flat" or row["strength"] == "none"
        assert abs(sum(float(row[k]) for k in ("p_down", "p_flat", "p_up")) - 1.0) < 1e-6
    as_json = json.loads(run(home, "signals", "-s", "BTCUSDT", "-t", "1h", *WINDOW, "--format", "json"))
    assert as_json["artifact"] == fitted["id"] and len(as_json["signals"]) == len(rows)
    assert [s["direction"] for s in as_json["signals"]] == [r["direction"] for r in rows]
    assert "signals" in run(home, "signals", "-s", "BTCUSDT", "-t", "1h", *WINDOW)


def test_evaluate_signals_json_keys(home: Path, fitted: dict[str, Any]) -> None:
    doc = json.loads(run(home, "evaluate-signals", "-s", "BTCUSDT", "-t", "1h", "--start", "2023-07-01",
                         "--end", "2023-08-01", "--json"))  # fmt: skip
    assert {"hit_rate", "brier", "ece", "weights", "false_signal_rate", "signals", "signal_rate"} <= set(doc)
    assert doc["out_of_sample"] is True and doc["decisions"] == 31 * 24
    assert set(doc["weights"]) == {"technical", "smc"}
    assert 0 < doc["brier"] < 2 and 0 <= doc["ece"] <= 1
    for key in ("hit_rate", "false_signal_rate"):
        assert doc[key] is None or 0 <= doc[key] <= 1


def test_evaluate_signals_progress_on_stderr_json_pure_on_stdout(home: Path, fitted: dict[str, Any]) -> None:
    args = ("evaluate-signals", "-s", "BTCUSDT", "-t", "1h", "--start", "2023-07-01", "--end", "2023-07-15", "--json")
    result = invoke(home, *args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["artifact"] == fitted["id"]  # stdout: the JSON document and nothing else
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"signals of {fitted['id']} over ")]
    assert 2 <= len(lines) <= 11 and "\r" not in result.stderr  # the start, every ~10 %, the end
    assert re.fullmatch(r"signals of \S+ over [\d,]+ candles: 100 %, \d+\.\d s", lines[-1]), lines
    quiet = invoke(home, "--quiet", *args)
    assert quiet.exit_code == 0 and json.loads(quiet.stdout) == json.loads(result.stdout) and quiet.stderr == ""


def test_monitor_reports_groups_and_alarms(home: Path, fitted: dict[str, Any]) -> None:
    doc = json.loads(
        run(home, "monitor", "-s", "BTCUSDT", "-t", "1h", "--start", "2023-07-01", "--end", "2023-08-01", "--json")
    )
    assert "all" in doc["current"] and isinstance(doc["alarms"], list)
    assert doc["current"]["all"]["n_decisions"] > 0
    assert "signal quality" in run(
        home, "monitor", "-s", "BTCUSDT", "-t", "1h", "--start", "2023-07-01", "--end", "2023-07-10"
    )


def test_backtest_strategy_ensemble_runs(home: Path, fitted: dict[str, Any]) -> None:
    text = run(home, "backtest", "--symbols", "BTCUSDT", "--timeframe", "1h", "--strategy", "ensemble",
               "--start", "2023-07-01", "--end", "2023-08-01", "--params", "timeframe=1h")  # fmt: skip
    assert "ensemble(" in text and "Total return" in text and "Trades" in text


def test_errors_are_one_line(home: Path) -> None:
    result = invoke(home, "fit-signals", "-s", "BTCUSDT", "-t", "1h", "--members", "astrology")
    assert result.exit_code != 0
    result = invoke(home, "signals", "-s", "ETHUSDT", "-t", "1h")
    assert result.exit_code != 0


def test_demo_signals_stage(home: Path) -> None:
    settings = Settings(home=home)
    with open_store(settings.store_url) as store:
        summary = demo_signals_stage(store, "BTCUSDT", "1h", settings.registry_dir)
    assert summary["artifact"].startswith("ensemble-BTCUSDT-1h-") and summary["test_bars"] == 1000
    assert summary["members"] == ["technical", "smc"]
    assert summary["last_signal"]["direction"] in {"long", "flat", "short"}
    assert {"hit_rate", "brier", "ece", "false_signal_rate", "weights"} <= set(summary)


def test_walk_forward_with_a_network_member_records_its_budget(home: Path, tmp_path: Path) -> None:
    report = tmp_path / "wf.md"
    doc = json.loads(run(home, "evaluate-signals", "-s", "BTCUSDT", "-t", "1h", "--start", "2023-01-01",
                         "--end", "2023-05-15", "--walk-forward", "1", "--members", "technical,cnn_lstm",
                         "--test-bars", "300", "--fit-bars", "700", "--train-bars", "1500", "--network-epochs", "1",
                         "--network-steps-per-epoch", "2", "--network-batch-size", "16", "--out", str(report),
                         "--json"))  # fmt: skip
    assert doc["network_budget"]["epochs"] == 1 and doc["network_budget"]["steps_per_epoch"] == 2
    assert doc["network_budget"]["batch_size"] == 16 and doc["network_budget"]["torch_threads"] == 1
    assert "--network-epochs 1 --network-steps-per-epoch 2 --network-batch-size 16 --threads 1" in doc["command"]
    member = doc["folds"][0]["members"]["cnn_lstm"]
    assert member["training_end_ts"] < doc["folds"][0]["fit_start_ts"]
    assert doc["results"]["cnn_lstm"]["decisions"] == 300 and doc["results"]["cnn_lstm"]["brier"] is not None
    text = report.read_text()
    assert "Networks trained under a CPU budget" in text and "| 1 | cnn_lstm |" in text
    assert json.loads(report.with_suffix(".json").read_text())["network_budget"] == doc["network_budget"]


def test_walk_forward_refuses_unknown_members_and_presets(home: Path) -> None:
    from smartmarket.core.errors import ConfigError

    result = invoke(
        home, "evaluate-signals", "-s", "BTCUSDT", "-t", "1h", "--walk-forward", "2", "--members", "technical,astro"
    )
    assert isinstance(result.exception, ConfigError) and "astro" in str(result.exception)
    result = invoke(home, "evaluate-signals", "-s", "BTCUSDT", "-t", "1h", "--walk-forward", "2",
                    "--members", "cnn_lstm", "--network-preset", "huge")  # fmt: skip
    assert isinstance(result.exception, ConfigError) and "huge" in str(result.exception)
