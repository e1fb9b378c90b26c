"""`evaluate-signals --symbols S1,S2 -t TIMEFRAME --walk-forward N`: the universe report end to end through the CLI.

Two synthetic 1h series with a planted edge in a temp home, the rule member only (nothing to train) and a small
layout, so the command runs in seconds; the figures themselves are tested in tests/unit/test_universe_report.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app
from smartmarket.core.config import Settings
from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Timeframe
from smartmarket.data.ingest import ingest_frame
from smartmarket.data.synthetic import MarketParams, generate_market
from smartmarket.store import open_store

LAYOUT = ("--walk-forward", "2", "--members", "technical", "--test-bars", "800", "--fit-bars", "1500",
          "--train-bars", "2500")  # fmt: skip
KEYS = {"sharpe", "sharpe_ci", "deflated_sharpe", "ic", "ic_se", "brier_skill", "max_drawdown", "total_return",
        "trades"}  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("universe") / "home"
    home.mkdir()
    settings = Settings(home=home)
    params = MarketParams(planted_edge=0.3, planted_edge_lookback=20)
    with open_store(settings.store_url) as store:
        for i, symbol in enumerate(("EDGEA", "EDGEB")):
            frame = generate_market(5200, timeframe=Timeframe.H1, seed=i, params=params)
            ingest_frame(store, symbol, Timeframe.H1, frame, source="test", quarantine_dir=settings.quarantine_dir,
                         synthetic=True)  # fmt: skip
    return home


def invoke(home: Path, *args: str) -> Any:
    runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None, "SMARTMARKET_HOME": str(home)})
    return runner.invoke(app, list(args))


def test_json_to_stdout_and_report_files(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "universe.md"
    result = invoke(home, "evaluate-signals", "--symbols", "edgea,EDGEB", "-t", "1h", *LAYOUT, "--vol-target", "0.3",
                    "--out", str(out), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["symbols"] == ["EDGEA", "EDGEB"] and doc["timeframe"] == "1h"
    assert {"ensemble_skill", "ensemble_stacking", "technical", "buy_and_hold", "buy_and_hold_vol_target"} == set(
        doc["systems"]
    )
    for name, r in doc["systems"].items():
        assert set(r) >= KEYS, name
    assert doc["config"]["vol_target"] == 0.3 and doc["config"]["baseline_vol_target"] == 0.3
    command = "smartmarket evaluate-signals -s EDGEA,EDGEB -t 1h --walk-forward 2 --members technical"
    assert doc["command"].startswith(command) and doc["command"].endswith("--vol-target 0.3")
    text = out.read_text()
    assert command in text and "buy_and_hold_vol_target" in text and "Beat it on Sharpe" in text
    assert json.loads(out.with_suffix(".json").read_text())["systems"].keys() == doc["systems"].keys()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--symbols", "EDGEA,EDGEB", "-t", "1h"), "several --symbols need --walk-forward"),
        (("--symbols", "EDGEA,EDGEB", "EDGEA", "1h", *LAYOUT), "unexpected argument"),
        (("-s", "EDGEA,EDGEB", *LAYOUT), "missing --timeframe/-t"),
        (("--symbols", "EDGEA,edgea", "-t", "1h", *LAYOUT), "distinct symbols"),
        (("-s", "EDGEA,EDGEB", "-t", "1h", *LAYOUT, "--vol-target", "-1"), "--vol-target must be positive"),
        (("-s", "EDGEA", "-t", "1h", "--vol-target", "0.2"), "--vol-target applies to the universe report"),
        (("-s", "EDGEA,EDGEB", "-t", "1h", "--walk-forward", "9", "--test-bars", "800"), "too few"),
    ],
)
def test_mistakes_are_one_line_config_errors(home: Path, args: tuple[str, ...], says: str) -> None:
    result = invoke(home, "evaluate-signals", *args)
    assert isinstance(result.exception, ConfigError), result.output
    assert says in str(result.exception)
