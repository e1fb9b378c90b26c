"""``smartmarket optimize`` end to end on real BTCUSDT 4h candles in a temp store: JSON report, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app, main
from smartmarket.core.config import Settings
from smartmarket.data.ingest import ingest_file
from smartmarket.store import open_store

runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None})
BASE = ("optimize", "--strategy", "sma_cross", "--symbol", "BTCUSDT", "--timeframe", "4h")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    home = tmp_path_factory.mktemp("opt") / "home"
    home.mkdir()
    settings = Settings(home=home)
    with open_store(settings.store_url) as store:
        ingest_file(store, shared_data / "BTCUSDT-4h.csv.gz", quarantine_dir=settings.quarantine_dir)
    return home


def test_json_report(home: Path) -> None:
    result = runner.invoke(app, ["--home", str(home), *BASE, "--space", "fast=5:30:5,slow=20:100:20", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["engine"] == "compiled" and doc["n_points"] == 30 and doc["n_trials"] == 27
    assert set(doc["best"]["params"]) == {"fast", "slow"}
    assert 0.0 <= doc["deflated_sharpe"] <= 1.0 and 0.0 <= doc["pbo"]["pbo"] <= 1.0
    wf = doc["walk_forward"]
    assert len(wf["folds"]) == 4 and wf["in_sample"] == doc["best"]["in_sample"]
    assert wf["out_of_sample"] is not None
    tables = runner.invoke(app, ["--home", str(home), *BASE, "--space", "fast=5:30:5,slow=20:100:20"])
    assert "probability of backtest overfitting" in tables.stdout and "deflated Sharpe ratio" in tables.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--space", "fast=5:30"), "bad --space range"),
        (("--space", "fast=5:30:5", "--strategy", "nope"), "unknown strategy 'nope'"),
        (("--space", "period=5:30:5"), "has no parameter period"),
        (("--space", "fast=5:30:5", "--symbol", "DOGEUSDT"), "no DOGEUSDT 4h candles"),
        (("--space", "fast=5:30:5", "--method", "bayes"), "unknown --method"),
    ],
)
def test_errors_are_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], expected: str
) -> None:
    argv = ["--home", str(home), *BASE, *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.startswith("error:") and len(err.splitlines()) == 1


def test_html_report_shows_the_parameter_plateau(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "opt.html"
    argv = ["--home", str(home), *BASE, "--space", "fast=5:30:5,slow=20:100:20", "--json", "--out", str(out)]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    page = out.read_text(encoding="utf-8")
    assert len(doc["evaluated"]) == doc["n_trials"] == 27
    # one cell per (fast, slow) pair of the grid: 6 fast x 5 slow, three refused (fast >= slow) stay empty
    assert page.count('<rect class="cell"') == 30 and page.count("—</title>") == 3
    best = doc["best"]["params"]
    value = doc["best"]["in_sample"]
    assert f"fast={best['fast']}, slow={best['slow']}: {value:.3f}</title>" in page
    assert page.count('class="chosen"') == 1 and "probability of backtest overfitting" in page
    assert "<script" not in page and len(page) < 100_000  # self-contained, no library
