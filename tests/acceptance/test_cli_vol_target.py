"""``smartmarket backtest --vol-target`` end to end on real BTCUSDT 1d candles ingested into a temp store."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from smartmarket.backtest import run_backtest
from smartmarket.cli.app import app, main
from smartmarket.cli.backtest import kernel_config
from smartmarket.core.config import Settings
from smartmarket.core.timeutil import parse_time
from smartmarket.core.types import Timeframe
from smartmarket.data.ingest import ingest_file
from smartmarket.execution.sizing import VolatilityTarget, annual_volatility_target
from smartmarket.store import open_store

runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None})
BUY_HOLD = ("backtest", "--symbols", "BTCUSDT", "--timeframe", "1d", "--strategy", "buy_hold")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    home = tmp_path_factory.mktemp("vt") / "home"
    settings = Settings(home=home)
    home.mkdir()
    with open_store(settings.store_url) as store:
        ingest_file(store, shared_data / "BTCUSDT-1d.csv.gz", quarantine_dir=settings.quarantine_dir)
    return home


def run(home: Path, *args: str) -> tuple[str, dict[str, Any]]:
    out = home.parent / "bt.json"
    result = runner.invoke(app, ["--home", str(home), *args, "--out", str(out)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout, json.loads(out.read_text(encoding="utf-8"))


def test_buy_hold_vol_target_prints_and_meets_its_target(home: Path) -> None:
    text, plain = run(home, *BUY_HOLD)
    assert "Volatility target" not in text
    text, doc = run(home, *BUY_HOLD, "--vol-target", "0.2")
    line = re.search(r"Volatility target 20\.00 %: realised ([\d.]+) % a year; turnover ([\d.]+)x", text)
    assert line is not None, text
    realised = float(line.group(1)) / 100
    assert realised == pytest.approx(doc["metrics"]["volatility"], abs=1e-4)
    assert realised == pytest.approx(0.2, rel=0.25)
    assert plain["metrics"]["volatility"] > 0.5  # BTC itself: far from 20 %
    assert doc["metrics"]["max_drawdown"] < plain["metrics"]["max_drawdown"]


def test_leverage_lets_a_high_target_through(home: Path) -> None:
    _, capped = run(home, *BUY_HOLD, "--vol-target", "0.8")
    _, levered = run(home, *BUY_HOLD, "--vol-target", "0.8", "--max-leverage", "2")
    assert levered["metrics"]["volatility"] > capped["metrics"]["volatility"] * 1.05


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--max-leverage", "2"), "--max-leverage and --rebalance-band apply to --vol-target"),
        (("--vol-target", "-0.2"), "--vol-target must be positive"),
        (("--vol-target", "0.2", "--rebalance-band", "-1"), "--rebalance-band must be >= 0"),
        (("--vol-model", "har"), "--vol-model applies to --vol-target"),
        (("--vol-target", "0.2", "--vol-model", "garch"), "unknown --vol-model 'garch'"),
    ],
)
def test_bad_settings_are_one_line_errors(
    home: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    assert main(["--home", str(home), *BUY_HOLD, *args]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: ") and message in err


def test_har_vol_model_backtests_real_candles_to_its_target(home: Path) -> None:
    _, ewma = run(home, *BUY_HOLD, "--vol-target", "0.2")
    text, har = run(home, *BUY_HOLD, "--vol-target", "0.2", "--vol-model", "har")
    assert "Volatility target 20.00 %" in text
    assert har["metrics"]["volatility"] == pytest.approx(0.2, rel=0.25)
    assert len(har["trades"]) != len(ewma["trades"])  # another forecast, other resizes
    window = ("--start", "2021-01-01", "--end", "2022-01-01")
    text, _ = run(home, *BUY_HOLD, "--vol-target", "0.2", "--vol-model", "har", *window)
    wanted = annual_volatility_target(0.2, Timeframe.parse("1d"), model="har").warmup_bars()
    warmed = re.search(r"warmed up on ([\d,]+) candle", text)
    assert warmed is not None and int(warmed.group(1).replace(",", "")) >= wanted > 365  # HAR's whole fit window


@pytest.mark.parametrize("vol_model", [None, "har"])
def test_paper_run_trades_the_backtests_orders_and_replays(
    tmp_path: Path, shared_data: Path, vol_model: str | None
) -> None:
    """`run --strategy buy_hold --vol-target 0.2` sends the backtest kernel's orders (resizes included)."""
    home = str(tmp_path / "home")
    candles = pd.read_csv(shared_data / "BTCUSDT-1d.csv.gz").head(1_200)  # HAR's fit window and two years more
    candles.to_csv(tmp_path / "BTCUSDT-1d.csv", index=False)
    source = f"file:{tmp_path / 'BTCUSDT-1d.csv'}"
    args = ["--symbols", "BTCUSDT", "--timeframe", "1d", "--source", source, "--strategy", "buy_hold"]
    args += ["--vol-target", "0.2"] + (["--vol-model", vol_model] if vol_model else [])
    result = runner.invoke(app, ["--home", home, "run", *args, "--no-risk-checks", "--json"])
    assert result.exit_code == 0, result.output
    orders = json.loads(result.stdout)["published"]["SubmitOrder"]
    config = kernel_config(cash=10_000.0, fees=0.001, slippage_bps=0.0, fraction=1.0, latency=0, long_only=False,
                           close_at_end=False, vol_target=0.2, timeframe=Timeframe.parse("1d"),
                           vol_model=vol_model)  # fmt: skip
    backtest = run_backtest(candles, "buy_hold", config=config)
    assert orders == len(backtest.orders) > 100
    replayed = runner.invoke(app, ["--home", home, "replay", "--format", "json"])
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.stdout)["identical"] is True


def test_start_warms_the_forecast_up_so_the_window_starts_held(home: Path) -> None:
    _, doc = run(home, *BUY_HOLD, "--vol-target", "0.2", "--start", "2021-01-01", "--end", "2022-01-01")
    assert doc["trades"][0]["entry_ts"] == parse_time("2021-01-01")


def test_each_of_n_symbols_gets_its_share_of_the_target_and_the_cap() -> None:
    day = Timeframe.parse("1d")
    config = kernel_config(cash=1.0, fees=0.0, slippage_bps=0.0, fraction=0.5, latency=0, long_only=False,
                           close_at_end=True, vol_target=0.2, max_leverage=2.0, timeframe=day)  # fmt: skip
    sizer = config.sizer
    assert isinstance(sizer, VolatilityTarget)
    assert sizer.target_vol == pytest.approx(0.1 / math.sqrt(365)) and sizer.max_fraction == 1.0
    assert config.risk.max_gross_exposure == 2.0
