"""Model commands end to end on real BTCUSDT-1h candles in a temp store: train, evaluate, registry views,
compare-models, bench inference, and the demo's training stage."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app
from smartmarket.cli.models import train_demo_model
from smartmarket.core.config import Settings
from smartmarket.core.errors import ConfigError
from smartmarket.core.timeutil import parse_time
from smartmarket.data.ingest import ingest_file
from smartmarket.models.registry import Registry
from smartmarket.store import open_store

runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None})
SLICE = ("-s", "BTCUSDT", "--timeframe", "1h", "--start", "2023-01-01", "--end", "2024-01-01", "--threads", "1")
METRIC_KEYS = {"n", "accuracy", "balanced_accuracy", "log_loss", "brier", "auc_ovr", "chance_balanced_accuracy"}
TRADING_KEYS = {"total_return", "sharpe", "max_drawdown", "num_trades", "fee_per_side", "buy_hold_return"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A home whose embedded store holds the real BTCUSDT-1h history."""
    home = tmp_path_factory.mktemp("models") / "home"
    home.mkdir()
    settings = Settings(home=home)
    with open_store(settings.store_url) as store:
        ingest_file(store, shared_data / "BTCUSDT-1h.csv.gz", quarantine_dir=settings.quarantine_dir)
    return home


def run(home: Path, *args: str) -> str:
    result = runner.invoke(app, ["--home", str(home), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def run_json(home: Path, *args: str) -> Any:
    return json.loads(run(home, *args, "--json"))


@pytest.fixture(scope="module")
def trained(home: Path) -> dict[str, dict[str, Any]]:
    """A logistic model and a small CNN-LSTM (1 epoch of 20 batches) trained on 2023 through the CLI."""
    logistic = run_json(home, "train", "--model", "logistic", *SLICE)
    cnn = run_json(home, "train", "--model", "cnn_lstm", "--epochs", "1", "--steps-per-epoch", "20", *SLICE)
    return {"logistic": logistic, "cnn_lstm": cnn}


def test_train_saves_models_with_out_of_sample_metrics(home: Path, trained: dict[str, dict[str, Any]]) -> None:
    assert trained["logistic"]["kind"] == "logreg" and trained["logistic"]["id"].startswith("logreg-BTCUSDT-1h-")
    assert trained["cnn_lstm"]["kind"] == "cnn_lstm" and trained["cnn_lstm"]["context"] == 256
    for doc in trained.values():
        assert set(doc["metrics"]["test"]) >= METRIC_KEYS and set(doc["metrics"]["validation"]) >= METRIC_KEYS
        train_end, test_start = doc["split"]["train_ts"][1], doc["split"]["test_ts"][0]
        assert parse_time("2023-01-01") <= doc["split"]["train_ts"][0] < train_end < test_start
        assert doc["split"]["test_ts"][1] < parse_time("2024-01-01")
        assert doc["metrics"]["test"]["n"] > 500
    ids = {r.model_id for r in Registry(Settings(home=home).registry_dir).list()}
    assert {trained["logistic"]["id"], trained["cnn_lstm"]["id"]} <= ids


def test_train_prints_id_and_metrics_table(home: Path) -> None:
    text = run(home, "train", "--model", "lightgbm", *SLICE)
    assert "saved lightgbm-BTCUSDT-1h-" in text
    assert "balanced_accuracy" in text and "validation" in text and "test" in text


def test_train_walk_forward_adds_fold_estimates(home: Path) -> None:
    half_year = ("--symbol", "BTCUSDT", "--timeframe", "1h", "--start", "2023-07-01", "--end", "2024-01-01")
    doc = run_json(home, "train", "--model", "majority", "--walk-forward", "2", *half_year)
    wf = doc["metrics"]["walk_forward"]
    assert doc["kind"] == "majority" and wf["folds"] == 2 and wf["test_samples"] > 300
    assert wf["balanced_accuracy_mean"] == pytest.approx(1 / 3) and wf["balanced_accuracy_se"] == 0.0
    assert set(doc["metrics"]) >= {"validation", "test", "train", "walk_forward"}


def test_models_list_show_compare(home: Path, trained: dict[str, dict[str, Any]]) -> None:
    ids = [trained["logistic"]["id"], trained["cnn_lstm"]["id"]]
    listed = run(home, "models", "list")
    assert all(i in listed for i in ids)
    listed_json = run_json(home, "models", "list", "--kind", "logistic")
    assert ids[0] in [m["id"] for m in listed_json] and {m["kind"] for m in listed_json} == {"logreg"}
    shown = run(home, "models", "show", ids[1][:20])  # a unique prefix is enough
    assert ids[1] in shown and "context 256 bars" in shown and "test" in shown
    meta = run_json(home, "models", "show", ids[1])
    assert meta["id"] == ids[1] and meta["hyperparameters"]["network"]["context"] == 256
    compared = run_json(home, "models", "compare", *ids)
    assert [m["id"] for m in compared["models"]] == ids
    assert compared["same_test_period"] is False  # different contexts → different eligible test samples
    text = run(home, "models", "compare", *ids)
    assert "different periods or samples" in text


def test_evaluate_json_defaults_to_the_test_period_out_of_sample(home: Path, trained: dict[str, Any]) -> None:
    model = trained["cnn_lstm"]
    doc = run_json(home, "evaluate", model["id"], "--end", "2024-03-01", "--threads", "1")
    assert set(doc["metrics"]) >= METRIC_KEYS and set(doc["trading"]) >= TRADING_KEYS
    assert doc["out_of_sample"] is True and doc["sample"] == "out-of-sample"
    assert doc["first_ts"] >= model["split"]["test_ts"][0]
    assert doc["last_ts"] < parse_time("2024-03-01")
    assert 0.0 <= doc["metrics"]["balanced_accuracy"] <= 1.0 and doc["metrics"]["n"] > 1000
    assert doc["trading"]["fee_per_side"] == 0.001 and math.isfinite(doc["trading"]["total_return"])


def test_evaluate_refuses_to_call_in_sample_numbers_out_of_sample(home: Path, trained: dict[str, Any]) -> None:
    model_id = trained["logistic"]["id"]
    doc = run_json(home, "evaluate", model_id, "--start", "2023-06-01", "--end", "2023-08-01")
    assert doc["out_of_sample"] is False and doc["sample"] == "in-sample"
    assert "training period" in doc["sample_reason"]
    text = run(home, "evaluate", model_id, "--start", "2023-06-01", "--end", "2023-08-01")
    assert "IN-SAMPLE" in text and "out of sample" not in text.replace("not an out-of-sample", "")
    validation_start = trained["logistic"]["split"]["validation_ts"][0]
    doc = run_json(home, "evaluate", model_id, "--start", str(validation_start), "--end", "2024-01-01")
    assert doc["out_of_sample"] is False and "validation period" in doc["sample_reason"]


def test_compare_models_writes_a_table_with_all_five_models(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare.md"
    text = run(
        home, "compare-models", "--symbol", "BTCUSDT", "--timeframe", "1h", "--folds", "2", "--epochs", "1",
        "--steps-per-epoch", "5", "--last", "2500", "--threads", "1", "--out", str(out),
    )  # fmt: skip
    assert "claim" in text and out.exists()
    markdown = out.read_text(encoding="utf-8")
    assert "smartmarket compare-models --symbol BTCUSDT --timeframe 1h --folds 2" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and " ± " in line]
    for name in ("Transformer (group-patch)", "CNN-LSTM", "Logistic regression", "LightGBM", "Always-majority"):
        assert sum(line.startswith(f"| {name} |") for line in rows) == 1, name
    assert "Verdict:" in markdown
    document = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert [s["kind"] for s in document["summary"]] == ["transformer", "cnn_lstm", "logreg", "lightgbm", "majority"]
    assert document["claim"]["verdict"] in {"confirmed", "refuted", "inconclusive"}
    assert len(document["folds"]) == 10
    by_fold: dict[int, set[tuple[int, int, float]]] = {}
    for row in document["folds"]:  # every model scored on the same test samples of each fold
        by_fold.setdefault(row["fold"], set()).add((row["test_first_ts"], row["test_last_ts"], row["n"]))
    assert all(len(v) == 1 for v in by_fold.values())
    majority = next(s for s in document["summary"] if s["kind"] == "majority")
    assert majority["balanced_accuracy_mean"] == pytest.approx(1 / 3)


def test_bench_inference_json_shape(home: Path) -> None:
    doc = run_json(
        home, "bench", "inference", "--context", "64", "--iterations", "3", "--warmup", "1", "--no-variants",
        "--no-optimised", "--train-steps", "1", "--train-batch", "2",
    )  # fmt: skip
    for name in ("transformer", "cnn_lstm"):
        assert {"p50_ms", "p99_ms", "params", "context", "tokens"} <= set(doc[name])
        assert doc[name]["context"] == 64 and doc[name]["params"] > 0 and doc[name]["p99_ms"] >= doc[name]["p50_ms"]
        assert doc["training"][name]["samples_per_s"] > 0
    assert doc["transformer"]["tokens"] == 4  # 64 bars in non-overlapping patches of 16
    assert doc["transformer"]["d_model"] == 256 and doc["transformer"]["num_layers"] == 6


def test_train_demo_model(home: Path, tmp_path: Path) -> None:
    settings = Settings(home=home)
    with open_store(settings.store_url) as store:
        model_id, metrics = train_demo_model(store, "BTCUSDT", "1h", tmp_path / "registry")
    assert model_id.startswith("logreg-BTCUSDT-1h-")
    assert set(metrics) >= METRIC_KEYS and metrics["n"] > 500
    assert Registry(tmp_path / "registry").show(model_id).kind == "logreg"


def test_compare_models_volatility_target(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "vol.md"
    document = run_json(
        home, "compare-models", "--target", "volatility", "--symbol", "BTCUSDT", "--timeframe", "1h", "--folds", "2",
        "--horizon", "24", "--last", "6000", "--out", str(out),
    )  # fmt: skip
    assert [s["kind"] for s in document["summary"]] == ["constant", "ewma", "har", "lightgbm"]
    assert document["setup"]["command"].startswith("smartmarket compare-models --target volatility --symbol BTCUSDT")
    for s in document["summary"]:
        assert s["folds"] == 2 and s["qlike_mean"] > 0 and s["mse_log_mean"] > 0 and s["qlike_se"] is not None
        assert ("vs_har" in s) is (s["kind"] != "har")
    assert len({(r["fold"], r["test_first_ts"], r["n"]) for r in document["folds"]}) == 2  # same test bars for all
    markdown = out.read_text(encoding="utf-8")
    assert "| HAR-RV (log, OLS) |" in markdown and document["setup"]["command"] in markdown
    assert json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))["summary"] == document["summary"]
    bad = runner.invoke(app, ["--home", str(home), "compare-models", "--target", "volatility", "--folds", "40",
                              "--last", "2000", "--out", str(tmp_path / "x.md")])  # fmt: skip
    assert isinstance(bad.exception, ConfigError) and "fewer --folds" in str(bad.exception)  # main prints one line
