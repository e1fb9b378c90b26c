"""``smartmarket backtest`` end to end on real Binance candles (BTCUSDT-1h, ETHUSDT-1h) ingested into a temp store."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app, main
from smartmarket.cli.backtest import parse_params
from smartmarket.core.config import Settings
from smartmarket.core.errors import ConfigError
from smartmarket.core.timeutil import parse_time
from smartmarket.core.types import Timeframe
from smartmarket.data.ingest import ingest_file
from smartmarket.store import open_store
from smartmarket.store.checksum import summarize_candles
from smartmarket.strategies.registry import STRATEGIES

runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None})
YEAR_2023 = ("--start", "2023-01-01", "--end", "2024-01-01")
SMA = (
    "backtest",
    "--symbols",
    "BTCUSDT",
    "--timeframe",
    "1h",
    "--strategy",
    "sma_cross",
    "--params",
    "fast=10,slow=30",
)
METRIC_KEYS = {
    "total_return", "annual_return", "sharpe", "sortino", "calmar", "max_drawdown",
    "win_rate", "profit_factor", "expectancy", "num_trades", "exposure",
}  # fmt: skip
TRADE_KEYS = {"entry_ts", "exit_ts", "side", "entry_price", "exit_price", "quantity", "pnl", "fees"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A home whose embedded store holds the real BTCUSDT-1h and ETHUSDT-1h history."""
    home = tmp_path_factory.mktemp("bt") / "home"
    settings = Settings(home=home)
    home.mkdir()
    with open_store(settings.store_url) as store:
        for name in ("BTCUSDT-1h.csv.gz", "ETHUSDT-1h.csv.gz"):
            ingest_file(store, shared_data / name, quarantine_dir=settings.quarantine_dir)
    return home


def run(home: Path, *args: str) -> str:
    result = runner.invoke(app, ["--home", str(home), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def run_json(home: Path, out: Path, *args: str) -> dict[str, Any]:
    run(home, *args, "--out", str(out))
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def outputs(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sma_cross over 2023 with default fees, JSON and HTML written, plus the printed summary."""
    out = tmp_path_factory.mktemp("out")
    text = run(home, *SMA, *YEAR_2023, "--out", str(out / "a.json"), "--out", str(out / "a.html"))
    (out / "summary.txt").write_text(text, encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def document(outputs: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((outputs / "a.json").read_text(encoding="utf-8"))
    return loaded


def assert_pnl_adds_up(doc: dict[str, Any]) -> None:
    pnl = math.fsum(t["pnl"] for t in doc["trades"])
    assert doc["open_positions"] == []
    assert pnl == pytest.approx(doc["final_equity"] - doc["initial_cash"], rel=1e-9, abs=1e-6)
    assert doc["equity"][-1][1] == doc["final_equity"]


def test_json_document_has_the_promised_keys_and_types(document: dict[str, Any]) -> None:
    assert set(document["metrics"]) >= METRIC_KEYS
    metrics = document["metrics"]
    for key in METRIC_KEYS - {"num_trades"}:
        assert isinstance(metrics[key], float), key
    assert isinstance(metrics["num_trades"], int) and metrics["num_trades"] == len(document["trades"]) > 10
    assert -1.0 < metrics["total_return"] < 10.0  # a fraction, not a percent
    assert metrics["total_return"] == pytest.approx(document["final_equity"] / 10_000 - 1, rel=1e-12)
    assert 0.0 <= metrics["exposure"] <= 1.0 and 0.0 <= metrics["win_rate"] <= 1.0

    for trade in document["trades"]:
        assert set(trade) >= TRADE_KEYS
        assert trade["side"] in ("long", "short")
        assert isinstance(trade["entry_ts"], int) and trade["entry_ts"] < trade["exit_ts"]
        assert trade["quantity"] > 0 and trade["fees"] > 0

    start, end = parse_time("2023-01-01"), parse_time("2024-01-01")
    assert start is not None and end is not None
    ts = [point[0] for point in document["equity"]]
    assert all(isinstance(t, int) for t in ts) and ts == sorted(set(ts))
    assert ts[0] == start and start <= ts[-1] < end
    assert len(ts) == metrics["num_bars"] > 8700  # one point per 1h bar of 2023 (minus real gaps)

    months = [m["month"] for m in document["monthly_returns"]]
    assert months == [f"2023-{m:02d}" for m in range(1, 13)]
    compounded = math.prod(1 + m["return"] for m in document["monthly_returns"]) - 1
    assert compounded == pytest.approx(metrics["total_return"], rel=1e-9)

    assert document["benchmark"]["buy_hold_return"] > 1.0  # BTC more than doubled in 2023


def test_provenance_names_data_strategy_costs_and_code(home: Path, document: dict[str, Any]) -> None:
    prov = document["provenance"]
    with open_store(Settings(home=home).store_url) as store:
        frame = store.read_candles("BTCUSDT", Timeframe.H1, parse_time("2023-01-01"), parse_time("2024-01-01"))
    summary = summarize_candles(frame)
    (data,) = prov["data"]
    assert data["symbol"] == "BTCUSDT" and data["timeframe"] == "1h"
    assert (data["rows"], data["first_ts"], data["last_ts"]) == (summary.rows, summary.min_ts, summary.max_ts)
    assert data["checksum"] == f"{summary.checksum:016x}"
    assert prov["requested_range"]["start"] == "2023-01-01T00:00:00Z"
    assert prov["strategy"] == {"name": "sma_cross", "params": {"fast": 10, "slow": 30}}
    assert prov["execution"]["fees"] == {"model": "FeeModel", "maker": 0.001, "taker": 0.001}
    assert prov["execution"]["slippage"] == {"model": "FixedBps", "bps": 0.0}
    assert prov["execution"]["initial_cash"] == 10_000.0 and prov["execution"]["close_at_end"] is True
    assert prov["code"]["smartmarket"] and "git_commit" in prov["code"]


def test_trade_pnl_adds_up_to_the_change_in_equity(document: dict[str, Any]) -> None:
    assert_pnl_adds_up(document)
    fees = math.fsum(t["fees"] for t in document["trades"])
    assert fees == pytest.approx(document["metrics"]["total_fees"], rel=1e-12)


def test_summary_table_shows_the_headline_numbers(outputs: Path, document: dict[str, Any]) -> None:
    text = (outputs / "summary.txt").read_text(encoding="utf-8")
    for label in ("Total return", "Sharpe", "Sortino", "Calmar", "Max drawdown", "Win rate", "Profit factor",
                  "Expectancy", "Trades", "Exposure", "Final equity", "Buy and hold"):  # fmt: skip
        assert label in text, label
    assert f"{document['metrics']['total_return'] * 100:+.2f} %" in text  # the one percent format (docs/cli.md)
    assert f"{document['final_equity']:,.2f}" in text


def test_html_report_is_self_contained_and_matches_the_json(outputs: Path, document: dict[str, Any]) -> None:
    page = (outputs / "a.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "sma_cross(fast=10, slow=30) on BTCUSDT 1h" in page
    assert 'data-key="total_return">' + f"{document['metrics']['total_return'] * 100:+.2f}%" in page
    assert document["provenance"]["data"][0]["checksum"] in page
    assert "<script src=" not in page  # plotly.js is embedded, the file opens offline


def test_same_run_twice_is_byte_identical(home: Path, outputs: Path, tmp_path: Path) -> None:
    run(home, *SMA, *YEAR_2023, "--out", str(tmp_path / "b.json"), "--out", str(tmp_path / "b.html"))
    assert (tmp_path / "b.json").read_bytes() == (outputs / "a.json").read_bytes()
    assert (tmp_path / "b.html").read_bytes() == (outputs / "a.html").read_bytes()


def test_long_only_has_no_short_trades(home: Path, document: dict[str, Any], tmp_path: Path) -> None:
    assert any(t["side"] == "short" for t in document["trades"])  # the default run does short
    long_only = run_json(home, tmp_path / "l.json", *SMA, *YEAR_2023, "--long-only")
    assert long_only["trades"] and all(t["side"] == "long" for t in long_only["trades"])
    assert long_only["provenance"]["execution"]["long_only"] is True
    assert_pnl_adds_up(long_only)


def test_keep_open_reports_the_open_position(home: Path, document: dict[str, Any], tmp_path: Path) -> None:
    kept = run_json(home, tmp_path / "k.json", *SMA, *YEAR_2023, "--keep-open")
    (position,) = kept["open_positions"]  # sma_cross is always in the market once it has crossed
    assert kept["trades"] == document["trades"][: len(kept["trades"])]
    # Equity = realised P&L of closed trades + mark-to-market of the open one (its entry fee already paid).
    unrealised = position["quantity"] * (position["last_price"] - position["avg_price"]) - position["entry_fees"]
    realised = math.fsum(t["pnl"] for t in kept["trades"])
    assert realised + unrealised == pytest.approx(kept["final_equity"] - kept["initial_cash"], rel=1e-9)


def test_fees_drag_the_return_down(home: Path, document: dict[str, Any], tmp_path: Path) -> None:
    free = run_json(home, tmp_path / "f.json", *SMA, *YEAR_2023, "--fee-bps", "0")
    paid = document
    assert all(t["fees"] == 0.0 for t in free["trades"])
    # Fees do not change the signals: the same round trips at the same prices, only the costs differ.
    key = ("entry_ts", "exit_ts", "side", "entry_price", "exit_price")
    assert [[t[k] for k in key] for t in free["trades"]] == [[t[k] for k in key] for t in paid["trades"]]
    for trade in paid["trades"]:  # 0.1 % of the notional on each side
        notional = trade["quantity"] * (trade["entry_price"] + trade["exit_price"])
        assert trade["fees"] == pytest.approx(0.001 * notional, rel=1e-9)
    # Always fully invested, each of the n round trips costs about 0.1 % of equity twice: the fee run ends
    # lower by the factor (1 - 0.001)^(2n) (not exactly: sizing happens at a close, the fill at the next open).
    n = len(paid["trades"])
    growth_free, growth_paid = 1 + free["metrics"]["total_return"], 1 + paid["metrics"]["total_return"]
    assert growth_paid < growth_free
    assert growth_paid / growth_free == pytest.approx((1 - 0.001) ** (2 * n), rel=1e-2)


def test_several_symbols_share_one_account(home: Path, tmp_path: Path) -> None:
    doc = run_json(home, tmp_path / "m.json", "backtest", "-s", "BTCUSDT,ETHUSDT", "-t", "4h", *YEAR_2023,
                   "--out", str(tmp_path / "m.html"))  # fmt: skip
    assert doc["symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert {t["symbol"] for t in doc["trades"]} == {"BTCUSDT", "ETHUSDT"}
    assert [d["symbol"] for d in doc["provenance"]["data"]] == ["BTCUSDT", "ETHUSDT"]
    assert doc["provenance"]["execution"]["sizer"]["fraction_of_equity"] == 0.5  # 1/N by default
    assert_pnl_adds_up(doc)  # one cash account: all trades together explain the equity
    assert len(doc["equity"]) == doc["metrics"]["num_bars"] == doc["candles"] // 2  # 4h bars, both complete
    page = (tmp_path / "m.html").read_text(encoding="utf-8")
    assert "price chart: BTCUSDT" in page


def one_line_error(capsys: pytest.CaptureFixture[str], home: Path, *args: str) -> str:
    """The error ``main`` prints (exit code 2), unwrapped: the in-process console wraps at 80 columns."""
    assert main(["--home", str(home), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ")
    return " ".join(err.split())


def test_unknown_strategy_is_one_line_listing_the_valid_ones(home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "smartmarket.cli.app", "--home", str(home), "backtest", "-s", "BTCUSDT",
         "--strategy", "moonshot"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: unknown strategy 'moonshot'")
    assert all(name in err for name in STRATEGIES)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("fast=30,slow=10", "fast=30, slow=10"),
        ("fast=10,speed=3", "speed"),
        ("fast", "cannot read parameter 'fast'"),
        ("fast=1,fast=2", "parameter 'fast' given twice"),
    ],
)
def test_bad_params_say_which(home: Path, capsys: pytest.CaptureFixture[str], params: str, message: str) -> None:
    err = one_line_error(capsys, home, "backtest", "-s", "BTCUSDT", "--params", params)
    assert message in err


@pytest.mark.parametrize(
    "args",
    [
        ("-s", "DOGEUSDT"),
        ("-s", "BTCUSDT", "--start", "2030-01-01"),
    ],
)
def test_missing_data_points_to_ingest(home: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    err = one_line_error(capsys, home, "backtest", *args)
    assert "smartmarket ingest" in err


def test_parse_params_types() -> None:
    assert parse_params("fast=10, slow=30,alpha=0.5,flag=true,name=abc,x=none") == {
        "fast": 10, "slow": 30, "alpha": 0.5, "flag": True, "name": "abc", "x": None,
    }  # fmt: skip
    assert parse_params(None) == {} and parse_params("  ") == {}
    with pytest.raises(ConfigError):
        parse_params("=3")


def test_help_has_an_example() -> None:
    out = runner.invoke(app, ["backtest", "--help"]).stdout
    assert "smartmarket backtest --symbols BTCUSDT --timeframe 1h --strategy sma_cross" in out
