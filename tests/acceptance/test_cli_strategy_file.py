"""Your own strategy from a file (``--strategy file.py:Class``) and the protective-exit flags, end to end.

The strategy file is written by the test into a temp dir (outside the package); the backtest runs it in a
real ``smartmarket`` process and must equal, trade for trade, the same class registered in this process.
Broken files must give one error line naming the file and the line.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import smartmarket
from smartmarket.api.jobs import validate_request
from smartmarket.api.schemas import BacktestRequest
from smartmarket.cli.app import app
from smartmarket.core.config import Settings
from smartmarket.core.errors import ConfigError
from smartmarket.data.ingest import ingest_file
from smartmarket.store import open_store
from smartmarket.strategies.registry import STRATEGIES, register_strategy

runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None})
SRC = str(Path(smartmarket.__file__).resolve().parents[1])  # the code under test, also in a child process
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "strategies" / "ema_cross.py"
WINDOW = ("--start", "2022-01-01", "--end", "2024-01-01")

STRATEGY_SOURCE = '''
"""A user's RSI strategy, written by the test outside the package."""
from smartmarket.engine.strategy import BarContext, Strategy
from smartmarket.execution.orders import Decision
from smartmarket.features.indicators import make_indicator


class MyRsi(Strategy):
    name = "my_rsi_from_file"
    history_size = 1

    def __init__(self, period: int = 14, low: float = 30.0, high: float = 70.0) -> None:
        self.period, self.low, self.high = period, low, high

    def features(self):
        return (make_indicator(f"rsi_{self.period}"),)

    def on_bar(self, ctx: BarContext) -> Decision | None:
        rsi = ctx.feature_values[0]
        if rsi < self.low:
            return Decision("long")
        if rsi > self.high:
            return Decision("flat")
        return None

    def params(self):
        return {"period": self.period, "low": self.low, "high": self.high}
'''


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A home whose embedded store holds the real ETHUSDT-4h history."""
    home = tmp_path_factory.mktemp("strategy") / "home"
    home.mkdir()
    settings = Settings(home=home)
    with open_store(settings.store_url) as store:
        ingest_file(store, shared_data / "ETHUSDT-4h.csv.gz", quarantine_dir=settings.quarantine_dir)
    return home


def smartmarket_process(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``smartmarket --home HOME ARGS`` in a fresh process (no state shared with this one)."""
    return subprocess.run(
        [sys.executable, "-m", "smartmarket.cli.app", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin", "PYTHONPATH": SRC},
    )


def in_process(home: Path, *args: str) -> str:
    result = runner.invoke(app, ["--home", str(home), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """What must match between two runs of the same strategy: trades, equity, metrics, parameters."""
    return {k: doc[k] for k in ("trades", "equity", "metrics", "final_equity", "params")}


@pytest.fixture
def registered_twin(tmp_path: Path) -> Iterator[str]:
    """The same source, imported here as a module and registered by name; removed afterwards."""
    path = tmp_path / "twin.py"
    path.write_text(STRATEGY_SOURCE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("twin_strategy_module", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    register_strategy(module.MyRsi)
    yield module.MyRsi.name
    STRATEGIES.pop(module.MyRsi.name)


def test_a_strategy_file_backtests_like_the_same_class_registered(
    home: Path, tmp_path: Path, registered_twin: str
) -> None:
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "my_rsi.py").write_text(STRATEGY_SOURCE, encoding="utf-8")
    params = ("--params", "period=10,low=25,high=75")
    proc = smartmarket_process(
        home, "backtest", "-s", "ETHUSDT", "-t", "4h", "--strategy", f"{user_dir}/my_rsi.py:MyRsi", *params,
        *WINDOW, "--out", str(tmp_path / "file.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    in_process(
        home, "backtest", "-s", "ETHUSDT", "-t", "4h", "--strategy", registered_twin, *params, *WINDOW,
        "--out", str(tmp_path / "registered.json"),
    )  # fmt: skip
    from_file = json.loads((tmp_path / "file.json").read_text(encoding="utf-8"))
    registered = json.loads((tmp_path / "registered.json").read_text(encoding="utf-8"))
    assert from_file["metrics"]["num_trades"] > 5  # the comparison means something
    assert from_file["params"] == {"period": 10, "low": 25, "high": 75}
    assert comparable(from_file) == comparable(registered)


def test_the_documented_example_backtests_with_a_stop_loss(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "ema.json"
    in_process(
        home, "backtest", "-s", "ETHUSDT", "-t", "4h", "--strategy", f"{EXAMPLE}:EmaCross",
        "--params", "fast=12,slow=26", "--stop-loss", "5", *WINDOW, "--out", str(out),
    )  # fmt: skip
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["params"] == {"fast": 12, "slow": 26, "rsi_max": 70.0}
    reasons = {t["exit_reason"] for t in doc["trades"]}
    assert "stop_loss" in reasons and "signal" in reasons
    assert {t["side"] for t in doc["trades"]} == {"long"}  # the example never shorts
    assert doc["provenance"]["execution"]["risk"]["stop_loss_pct"] == pytest.approx(0.05)


BROKEN = [
    ("syntax.py", "x = 1\ndef oops(:\n    pass\n", "Any", "syntax error in strategy file", 2),
    ("raises.py", "import math\n\nraise RuntimeError('no data here')\n", "Any", "RuntimeError: no data here", 3),
    ("noclass.py", STRATEGY_SOURCE, "Missing", "no class 'Missing' in strategy file", None),
    ("notstrategy.py", "\n\nclass Plain:\n    pass\n", "Plain", "Plain is not a Strategy", 3),
    ("abstract.py", "from smartmarket.engine.strategy import Strategy\n\nclass Half(Strategy):\n    pass\n", "Half",
     "Half does not define on_bar", 3),
]  # fmt: skip


@pytest.mark.parametrize(("name", "source", "cls", "message", "line"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_strategy_file_is_one_line_with_file_and_line(
    home: Path, tmp_path: Path, name: str, source: str, cls: str, message: str, line: int | None
) -> None:
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    proc = smartmarket_process(home, "backtest", "-s", "ETHUSDT", "-t", "4h", "--strategy", f"{path}:{cls}")
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and message in err, err
    assert f"at {path}:{line} — " in err if line is not None else f"at {path} — " in err, err


STRICT_SOURCE = """from smartmarket.engine.strategy import Strategy


class Strict(Strategy):
    def __init__(self, period: int = 14) -> None:
        if period < 2:
            raise ValueError(f"period must be >= 2, got {period}")
        self.period = period

    def on_bar(self, ctx):
        return None
"""


def test_bad_params_for_a_strategy_file_name_the_file_and_line(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "strict.py"
    path.write_text(STRICT_SOURCE, encoding="utf-8")
    unknown = smartmarket_process(home, "backtest", "-s", "ETHUSDT", "--strategy", f"{path}:Strict", "-p", "speed=3")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1, unknown.stderr
    assert "unexpected keyword argument 'speed'" in unknown.stderr
    assert f"at {path} — parameters: {{'period': 14}}" in unknown.stderr
    refused = smartmarket_process(home, "backtest", "-s", "ETHUSDT", "--strategy", f"{path}:Strict", "-p", "period=1")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "Strict(period=1) failed to start: ValueError: period must be >= 2, got 1" in refused.stderr
    assert f"at {path}:7 — " in refused.stderr


def test_the_api_never_loads_a_strategy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "evil.py").write_text("raise SystemExit('ran')\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the file exists where a relative spec would find it
    with pytest.raises(ConfigError, match="the API runs registered strategies"):
        validate_request(BacktestRequest(symbols=["ETHUSDT"], timeframe="4h", strategy="evil.py:X"))


def test_run_paper_trades_a_strategy_file_and_replay_notices_an_edit(tmp_path: Path, shared_data: Path) -> None:
    home, strategy = tmp_path / "home", tmp_path / "ema_cross.py"
    strategy.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    candles = tmp_path / "ETHUSDT-4h.csv"  # two years of real candles: the suite's time is budgeted
    pd.read_csv(shared_data / "ETHUSDT-4h.csv.gz").head(4_000).to_csv(candles, index=False)
    source = f"file:{candles}"
    run = smartmarket_process(
        home, "run", "--symbols", "ETHUSDT", "--timeframe", "4h", "--source", source,
        "--strategy", f"{strategy}:EmaCross", "--params", "fast=12,slow=26", "--no-risk-checks", "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout[run.stdout.index("{") :])
    assert summary["published"]["OrderFilled"] > 100
    replay = smartmarket_process(home, "replay")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "identical" in replay.stdout
    marker = tmp_path / "edited-file-ran"
    edit = f"\nimport pathlib\npathlib.Path({str(marker)!r}).write_text('ran')  # edited after the run\n"
    strategy.write_text(strategy.read_text(encoding="utf-8") + edit, encoding="utf-8")
    edited = smartmarket_process(home, "replay")
    assert edited.returncode == 2, edited.stdout + edited.stderr
    assert "the strategy file changed since the run" in edited.stderr
    assert not marker.exists()  # refused on its hash, before any of its code ran


def test_stop_loss_flags_are_refused_outside_0_100(home: Path) -> None:
    proc = smartmarket_process(home, "backtest", "-s", "ETHUSDT", "-t", "4h", "--stop-loss", "150")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: --stop-loss 150 is out of range — give a percent of the entry price in (0, 100), e.g. --stop-loss 5"
    )
