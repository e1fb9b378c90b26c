"""Every deprecated spelling of docs/cli.md still works for one release: the same result as the new spelling
(units converted), and one deprecation line on stderr. Real commands on a small generated market in a temp home."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app

runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None})


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("grammar") / "home"
    ok(home, "generate", "-s", "SYN", "-t", "1h", "--rows", "3000", "--seed", "3")
    return home


def invoke(home: Path, *args: str) -> Any:
    return runner.invoke(app, ["--home", str(home), *args])


def ok(home: Path, *args: str) -> Any:
    result = invoke(home, *args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def warned(result: Any, old: str, new: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert f"warning: {old} is deprecated, use {new}" in "\n".join(lines), result.stderr
    assert len([line for line in lines if line.startswith(f"warning: {old} ")]) == 1  # one line, once


def quiet(result: Any) -> None:
    assert "deprecated" not in result.stderr, result.stderr


def backtest_doc(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    document.pop("provenance", None)  # carries the command's own arguments
    return document


def test_fees_fraction_is_converted_to_bps(home: Path, tmp_path: Path) -> None:
    common = ("backtest", "-s", "SYN", "-t", "1h")
    new = ok(home, *common, "--fee-bps", "25", "--out", str(tmp_path / "new.json"))
    quiet(new)
    old = ok(home, *common, "--fees", "0.0025", "--out", str(tmp_path / "old.json"))
    warned(old, "--fees", "--fee-bps (10 = 0.1 %)")
    assert backtest_doc(tmp_path / "old.json") == backtest_doc(tmp_path / "new.json")
    free = ok(home, *common, "--fee-bps", "0", "--out", str(tmp_path / "free.json"))
    quiet(free)
    assert backtest_doc(tmp_path / "free.json")["final_equity"] > backtest_doc(tmp_path / "new.json")["final_equity"]


def test_backtest_old_symbol_json_path_and_report(home: Path, tmp_path: Path) -> None:
    old = ok(home, "backtest", "--symbol", "SYN", "-t", "1h", "--json", str(tmp_path / "a.json"),
             "--report", str(tmp_path / "a.html"))  # fmt: skip
    warned(old, "--symbol", "--symbols/-s")
    warned(old, "--json PATH", "--out PATH.json")
    warned(old, "--report", "--out")
    assert "Total return" in old.stdout  # the old form still prints the tables
    new = ok(home, "backtest", "--symbols", "SYN", "-t", "1h", "--out", str(tmp_path / "b.json"),
             "--out", str(tmp_path / "b.html"))  # fmt: skip
    quiet(new)
    assert backtest_doc(tmp_path / "a.json") == backtest_doc(tmp_path / "b.json")
    assert (tmp_path / "a.html").stat().st_size > 0 and (tmp_path / "b.html").stat().st_size > 0


def test_json_is_a_flag_printing_to_stdout(home: Path) -> None:
    result = ok(home, "backtest", "-s", "SYN", "-t", "1h", "--json")
    quiet(result)
    document = json.loads(result.stdout)  # stdout is the JSON document, nothing else
    assert document["symbols"] == ["SYN"] and "total_return" in document["metrics"]


def test_backtest_out_refuses_an_unknown_suffix(home: Path, tmp_path: Path) -> None:
    result = invoke(home, "backtest", "-s", "SYN", "-t", "1h", "--out", str(tmp_path / "x.txt"))
    assert result.exit_code != 0 and "PATH.json" in str(result.exception)


def test_backtest_prints_percentages_in_the_one_format(home: Path) -> None:
    text = ok(home, "backtest", "-s", "SYN", "-t", "1h").stdout
    rows = dict(re.findall(r"^\s*(Total return|Max drawdown|Win rate)\s+(\S+ %)\s*$", text, flags=re.M))
    assert set(rows) == {"Total return", "Max drawdown", "Win rate"}, text
    assert all(re.fullmatch(r"[+-]?\d+\.\d\d %", value) for value in rows.values())


@pytest.mark.parametrize("command", ["candles", "regimes"])
def test_positional_symbol_and_timeframe(home: Path, command: str) -> None:
    new = ok(home, command, "-s", "SYN", "-t", "4h")
    quiet(new)
    old = ok(home, command, "SYN", "4h")
    warned(old, "positional SYMBOL", "--symbol/-s")
    warned(old, "positional TIMEFRAME", "--timeframe/-t")
    assert old.stdout == new.stdout


def test_missing_symbol_is_one_line(home: Path) -> None:
    result = invoke(home, "candles", "-t", "1h")
    assert result.exit_code != 0 and "missing --symbol/-s" in str(result.exception)


def test_features_output_alias(home: Path, tmp_path: Path) -> None:
    common = ("features", "-s", "SYN", "-t", "1h", "--set", "minimal", "--format", "csv")
    quiet(ok(home, *common, "--out", str(tmp_path / "new.csv")))
    old = ok(
        home, "features", "SYN", "1h", "--set", "minimal", "--format", "csv", "--output", str(tmp_path / "old.csv")
    )
    warned(old, "--output", "--out")
    warned(old, "positional SYMBOL", "--symbol/-s")
    assert (tmp_path / "old.csv").read_bytes() == (tmp_path / "new.csv").read_bytes()


@pytest.mark.parametrize("command", ["events", "ab-report"])
def test_since_until_aliases(home: Path, command: str) -> None:
    new = ok(home, command, "--start", "2024-01-01", "--end", "2024-02-01")
    quiet(new)
    old = ok(home, command, "--since", "2024-01-01", "--until", "2024-02-01")
    warned(old, "--since", "--start")
    warned(old, "--until", "--end")
    assert old.stdout == new.stdout


def test_ingest_since_alias(home: Path) -> None:
    result = invoke(home, "ingest", "--exchange", "binance", "-s", "BTCUSDT", "-t", "1h", "--until", "2024-01-02")
    warned(result, "--until", "--end")
    assert result.exit_code != 0 and "--start" in str(result.exception)  # the new spelling in the error too


@pytest.mark.slow
def test_model_kinds_fee_and_members(home: Path, tmp_path: Path) -> None:
    trained = ok(home, "train", "--model", "lgbm", "-s", "SYN", "-t", "1h", "--horizon", "6", "--json")
    warned(trained, "model kind lgbm", "lightgbm")
    lgbm = json.loads(trained.stdout)
    assert lgbm["kind"] == "lightgbm" and lgbm["id"].startswith("lightgbm-SYN-1h-")
    logistic = json.loads(ok(home, "train", "--model", "logistic", "-s", "SYN", "-t", "1h", "--horizon", "6",
                             "--json").stdout)  # fmt: skip
    assert logistic["id"].startswith("logreg-SYN-1h-")  # stored ids are not renamed: every reader loads them
    listed = ok(home, "models", "list", "--kind", "logreg", "--json")
    warned(listed, "model kind logreg", "logistic")
    assert [m["id"] for m in json.loads(listed.stdout)] == [logistic["id"]]
    assert json.loads(ok(home, "models", "list", "--kind", "logistic", "--json").stdout) == json.loads(listed.stdout)

    new = ok(home, "evaluate", logistic["id"], "--fee-bps", "10", "--json")
    quiet(new)
    old = ok(home, "evaluate", logistic["id"], "--fee", "0.001", "--json")
    warned(old, "--fee", "--fee-bps (10 = 0.1 %)")
    assert json.loads(old.stdout) == json.loads(new.stdout)
    assert json.loads(new.stdout)["trading"]["fee_per_side"] == pytest.approx(0.001)
    table = ok(home, "evaluate", logistic["id"]).stdout
    assert re.search(r"\d+\.\d\d %", table) and "fees 0.10 % per side" in table

    fitted = ok(home, "fit-signals", "-s", "SYN", "-t", "1h", "--members", "technical,lgbm", "--json")
    warned(fitted, "model kind lgbm", "lightgbm")
    old_eval = invoke(home, "evaluate-signals", "SYN", "1h", "--report", str(tmp_path / "r.md"))
    warned(old_eval, "--report", "--out")
    warned(old_eval, "positional SYMBOL", "--symbol/-s")


def test_unknown_model_kind_is_one_line(home: Path) -> None:
    result = invoke(home, "train", "--model", "xgboost", "-s", "SYN", "-t", "1h")
    assert result.exit_code != 0 and "unknown model kind 'xgboost'" in str(result.exception)
    assert "logistic, lightgbm, transformer, cnn_lstm" in str(result.exception.hint)


@pytest.mark.slow
def test_optimize_fees_alias(home: Path) -> None:
    common = ("optimize", "--strategy", "sma_cross", "-s", "SYN", "-t", "1h", "--space", "fast=5:10:5,slow=20:30:10",
              "--walk-forward", "0", "--json")  # fmt: skip
    new = ok(home, *common, "--fee-bps", "10")
    quiet(new)
    old = ok(home, *common, "--fees", "0.001")
    warned(old, "--fees", "--fee-bps (10 = 0.1 %)")
    drop = ("seconds", "elapsed", "command", "created", "started")

    def strip(doc: Any) -> Any:
        if isinstance(doc, dict):
            return {k: strip(v) for k, v in doc.items() if not any(d in k for d in drop)}
        if isinstance(doc, list):
            return [strip(v) for v in doc]
        return doc

    assert strip(json.loads(old.stdout)) == strip(json.loads(new.stdout))
