"""``smartmarket run / events / replay`` end to end: candle files in, an event log out, replayed exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app
from smartmarket.core.config import Settings
from smartmarket.core.types import Timeframe
from smartmarket.data.synthetic import generate_market
from smartmarket.models.labels import LabelConfig
from smartmarket.signals.fit import default_system_config, fit_artifact, save_artifact
from smartmarket.signals.members import SMCMember, TechnicalMember
from smartmarket.store.duckdb_store import DuckDBStore
from smartmarket.store.url import open_store

runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None})
SYMBOLS = ("BTCUSDT", "ETHUSDT")
LIVE = 250


@pytest.fixture
def candle_dir(sm_home: Path, tmp_path: Path) -> Path:
    """Ensemble artifacts in the home's registry and one candle file per symbol (the live candles)."""
    folder = tmp_path / "candles"
    folder.mkdir()
    for k, symbol in enumerate(SYMBOLS):
        candles = generate_market(1_500 + LIVE, seed=21 + k, start_price=20_000.0 / (k + 1))
        config = default_system_config(
            ensemble="stacking",
            strength_targets=(0.0, 0.0, 0.0),
            regime_target=0.0,
            z=0.0,
            min_count=5,
            require_skill=False,  # synthetic members have no skill; these tests need orders to flow
        )
        artifact = fit_artifact(
            candles.iloc[:1_500], [TechnicalMember(), SMCMember()], symbol=symbol, timeframe="1m",
            label_config=LabelConfig(horizon=12), config=config,
        )  # fmt: skip
        save_artifact(artifact, Settings().registry_dir)
        candles.iloc[1_500:].to_csv(folder / f"{symbol}-1m.csv.gz", index=False)
    return folder


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout  # stderr (e.g. "created store …") is not part of the JSON


def test_run_events_and_replay(candle_dir: Path, sm_home: Path) -> None:
    code, out = invoke(
        "run", "--symbols", ",".join(SYMBOLS), "--timeframe", "1m", "--source", f"file:{candle_dir}",
        "--artifact", "latest", "--no-risk-checks", "--json",
    )  # fmt: skip
    assert code == 0, out
    summary = json.loads(out)
    assert summary["drained"] and summary["candles"] == 2 * LIVE
    assert summary["published"]["SignalGenerated"] == 2 * LIVE and summary["published"]["SubmitOrder"] > 4
    assert summary["recorded"] >= summary["published"]["CandleClosed"] + summary["published"]["SignalGenerated"]
    latency = summary["latency_ms"]  # every signal's candle → signal time, split into backlog and processing
    assert latency["candle_backlog"]["n"] == latency["candle_processing"]["n"] == latency["candle_to_signal"]["n"]
    assert latency["candle_to_signal"]["n"] == 2 * LIVE

    code, out = invoke("events", "--type", "SignalGenerated", "--limit", "0", "--format", "json")
    assert code == 0
    signals = json.loads(out)
    assert len(signals) == 2 * LIVE and {s["symbol"] for s in signals} == set(SYMBOLS)

    code, out = invoke("events", "--type", "SubmitOrder", "--limit", "1", "--format", "json")
    order = json.loads(out)[0]
    assert order["quantity"] > 0
    code, out = invoke("events", "--correlation", order["correlation_id"], "--format", "csv")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("seq,type,")
    chain_types = [line.split(",")[1] for line in lines[1:]]
    for expected in ("CandleClosed", "FeaturesComputed", "PredictionMade", "SignalGenerated", "SubmitOrder"):
        assert expected in chain_types
    code, out = invoke("events", "--correlation", order["correlation_id"])
    assert code == 0 and "SubmitOrder" in out and "CandleClosed" in out

    code, out = invoke("replay")  # the run recorded what it ran (RunStarted): no --artifact, no trading options
    assert code == 0, out
    assert "identical" in out and f"{2 * LIVE} SignalGenerated" in out
    refused = runner.invoke(app, ["replay", "--no-risk-checks"])  # beside a recorded run it would be half-applied
    assert refused.exit_code != 0 and "recorded with the run" in str(refused.exception)

    # tamper with one recorded signal in the database: replay exits non-zero and names it
    store = open_store(Settings().store_url)
    assert isinstance(store, DuckDBStore)
    with store.connection(write=True) as con:
        row = con.execute("SELECT event_id, payload FROM events WHERE type = 'SignalGenerated' "
                          "AND payload LIKE '%\"direction\":\"long\"%' ORDER BY seq LIMIT 1").fetchone()  # fmt: skip
        assert row is not None
        con.execute(
            "UPDATE events SET payload = ? WHERE event_id = ?", [row[1].replace('"long"', '"short"', 1), row[0]]
        )
    store.close()
    code, out = invoke("replay", "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert [(d["kind"], d["event_id"], d["fields"]) for d in report["differences"]] == [
        ("changed", row[0], ["direction"])
    ]


def test_replay_of_an_empty_log_says_what_to_do(sm_home: Path) -> None:
    result = runner.invoke(app, ["replay"])
    assert result.exit_code != 0
    assert "no candles" in str(result.exception)


def test_run_paper_trades_a_named_strategy_with_the_backtests_decisions(sm_home: Path, tmp_path: Path) -> None:
    from smartmarket.backtest.runner import run_kernel
    from smartmarket.engine.kernel import Kernel
    from smartmarket.pipeline.stages import TradingConfig
    from smartmarket.strategies.registry import strategy_factory

    candles = generate_market(1_200, seed=8, start_price=2_000.0)
    path = tmp_path / "SOLUSDT-1m.csv"
    candles.to_csv(path, index=False)
    code, out = invoke(
        "run", "--symbols", "SOLUSDT", "--timeframe", "1m", "--source", f"file:{path}", "--strategy", "sma_cross",
        "--params", "fast=5,slow=20", "--no-risk-checks", "--json",
    )  # fmt: skip
    assert code == 0, out
    summary = json.loads(out)
    assert summary["drained"] and summary["candles"] == len(candles)
    assert "SignalGenerated" not in summary["published"]  # only the order path runs
    orders = summary["published"]["SubmitOrder"]
    assert orders > 10 and summary["published"]["OrderFilled"] == orders - summary["orders_waiting"]

    # the live decisions are sma_cross's decisions in the backtest kernel (same candles, same parameters), and
    # the live fills are the backtest's: a reversal leaves as two orders (close, then the new side)
    reference = Kernel(strategy_factory("sma_cross", fast=5, slow=20), TradingConfig(limits=None).kernel_config())
    run_kernel(reference, {"SOLUSDT": candles})
    store = open_store(Settings().store_url)
    submitted = [e.message for e in store.read_events(types=["SubmitOrder"])]
    assert sorted({m.ts_event - 60_000 for m in submitted}) == sorted(o.created_ts for o in reference.orders)
    assert sum(m.reduce_only for m in submitted) > 5  # reversals: a close leg each
    live_fills = [(m.ts_event, m.side, m.quantity, m.price, m.fee) for m in (
        e.message for e in store.read_events(types=["OrderFilled"])
    )]  # fmt: skip
    backtest_fills = [(f.ts, f.side, f.quantity, f.price, f.fee) for f in reference.broker.fills]
    assert [f[:2] for f in live_fills] == [f[:2] for f in backtest_fills]
    for a, b in zip(live_fills, backtest_fills, strict=True):
        assert a[2:] == pytest.approx(b[2:], rel=1e-9)
    # the portfolio is built from the fills: its last position is what was filled
    fills = [e.message for e in store.read_events(types=["OrderFilled"])]
    held = sum(f.quantity if f.side == "buy" else -f.quantity for f in fills)
    last = store.read_events(types=["PositionChanged"])[-1].message
    assert last.quantity == pytest.approx(held)
    # live candles are stored candles: the candle store holds exactly what the run received
    stored = store.read_candles("SOLUSDT", Timeframe.parse("1m"))
    pd.testing.assert_frame_equal(stored.reset_index(drop=True), candles.reset_index(drop=True), check_dtype=False)
    store.close()
    code, out = invoke("candles", "-s", "SOLUSDT", "-t", "1m", "--format", "csv")
    assert code == 0 and len(out.strip().splitlines()) == len(candles) + 1


def test_run_refuses_an_unknown_strategy_or_stray_params_in_one_line(
    sm_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from smartmarket.cli.app import main

    path = tmp_path / "SOLUSDT-1m.csv"
    generate_market(50, seed=1).to_csv(path, index=False)
    base = ["--home", str(sm_home), "run", "--symbols", "SOLUSDT", "--source", f"file:{path}"]
    for extra, expected in (
        (["--strategy", "nope"], "unknown strategy 'nope'"),
        (["--strategy", "sma_cross", "--params", "speed=3"], "bad parameters for strategy 'sma_cross'"),
        (["--params", "fast=5"], "--params is for --strategy NAME"),
        (["--strategy", "sma_cross", "--shadow", "abc"], "--shadow runs a candidate ensemble"),
    ):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1, err
