"""``smartmarket ingest`` end to end on real data: counts, gap summary, idempotent re-run, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app
from smartmarket.cli.ingest import QUARANTINE_EXIT_CODE
from smartmarket.core.errors import ConfigError, SmartMarketError
from smartmarket.core.types import Timeframe
from smartmarket.data.quarantine import read_quarantine
from smartmarket.store import open_store

runner = CliRunner(env={"COLUMNS": "200"})


def _run(home: Path, *args: str, store: str | None = None) -> tuple[int, str]:
    argv = ["--home", str(home), *(["--store", store] if store else []), "ingest", *args]
    result = runner.invoke(app, argv)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _summary(out: str) -> dict[str, str]:
    """The rows of the summary table: ``{"rows read": "64,524", ...}``."""
    cells = [line.split("│") for line in out.splitlines() if line.count("│") == 3]
    return {c[1].strip(): c[2].strip() for c in cells}


def _stored(url: str, symbol: str, timeframe: Timeframe) -> pd.DataFrame:
    with open_store(url) as store:
        return store.read_candles(symbol, timeframe)


def test_ingest_real_btc_file_then_rerun_is_idempotent(sm_home: Path, shared_data: Path) -> None:
    source = shared_data / "BTCUSDT-1h.csv.gz"
    code, out = _run(sm_home, str(source))
    assert code == 0, out
    first = _summary(out)
    assert first["rows read"] == first["inserted"] == "64,524"
    assert first["unchanged"] == first["conflicts"] == first["quarantined"] == "0"
    assert first["gaps"] == "28 gaps (128 missing candles), the largest 33 candles after 2018-02-08T00:00:00Z"
    assert (first["first"], first["last"]) == ("2017-08-17T04:00:00Z", "2024-12-31T23:00:00Z")
    assert "quarantine file" not in out

    url = f"duckdb:///{(sm_home / 'smartmarket.duckdb').resolve()}"
    stored = _stored(url, "BTCUSDT", Timeframe.H1)
    expected = pd.read_csv(source)
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)

    code, out = _run(sm_home, str(source))
    assert code == 0, out
    again = _summary(out)
    assert (again["rows read"], again["inserted"], again["unchanged"]) == ("64,524", "0", "64,524")
    assert again["conflicts"] == again["quarantined"] == "0"
    assert again["gaps"] == first["gaps"]
    assert len(_stored(url, "BTCUSDT", Timeframe.H1)) == 64_524


def test_quarantine_exit_code_and_allow_flag(sm_home: Path, shared_data: Path, tmp_path: Path) -> None:
    text = (pd.read_csv(shared_data / "ETHBTC-5m.csv.gz").iloc[:100]).to_csv(index=False, lineterminator="\n")
    lines = text.splitlines()
    lines[10] = lines[10].split(",", 1)[0] + ",abc,1,1,1,1"  # line 11: unreadable price
    lines.append(lines[5])  # line 102: identical duplicate
    path = tmp_path / "candles.csv"
    path.write_text("\n".join(lines) + "\n")

    code, out = _run(sm_home, str(path), "--symbol", "eth/btc", "--timeframe", "5m")
    assert code == QUARANTINE_EXIT_CODE, out
    assert "2 rows quarantined" in out
    assert _summary(out)["quarantined"] == "2 (duplicate 1, unparseable 1)"
    qfile = sm_home / "quarantine" / "ETHBTC-5m.quarantine.csv"
    assert f"quarantine file: {qfile}" in out
    rows = read_quarantine(qfile)
    assert sorted(rows["line"].tolist()) == [11, 102]
    assert (rows["symbol"] == "ETHBTC").all() and (rows["timeframe"] == "5m").all()

    code, out = _run(sm_home, str(path), "--symbol", "ETHBTC", "--timeframe", "5m", "--allow-quarantine")
    assert code == 0, out
    assert len(read_quarantine(qfile)) == 4  # the same two rows, recorded again for this run
    assert len(_stored(f"duckdb:///{(sm_home / 'smartmarket.duckdb').resolve()}", "ETHBTC", Timeframe.M5)) == 99


@pytest.mark.postgres
def test_ingest_into_postgres_by_url(sm_home: Path, shared_data: Path, pg_url: str) -> None:
    source = shared_data / "XRPETH-5m.csv.gz"
    code, out = _run(sm_home, str(source), store=pg_url)
    assert code == 0, out
    pd.testing.assert_frame_equal(_stored(pg_url, "XRPETH", Timeframe.M5), pd.read_csv(source), check_dtype=False)
    code, out = _run(sm_home, str(source), store=pg_url)
    assert code == 0, out
    assert (_summary(out)["unchanged"], _summary(out)["inserted"]) == ("712", "0")


def test_help_has_an_example() -> None:
    result = runner.invoke(app, ["ingest", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output
    assert "smartmarket ingest BTCUSDT-1h.csv.gz" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/BTCUSDT-1h.csv"], "error: file not found at /nonexistent/BTCUSDT-1h.csv — check the path"),
        ([], "error: nothing to ingest"),
    ],
)
def test_errors_print_one_line_and_exit_2(sm_home: Path, args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "smartmarket.cli.app", "--home", str(sm_home), "ingest", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith(message), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (["/tmp/candles.csv"], ConfigError, "cannot tell the symbol and timeframe from the file name at candles.csv"),
        (["--exchange", "binance", "--symbol", "BTC/USDT"], ConfigError, "--exchange needs --symbol, --timeframe"),
        (["x.csv", "--exchange", "binance"], ConfigError, "give either files or --exchange"),
        (["x.csv", "--format", "xlsx"], ConfigError, "unknown format 'xlsx'"),
        (["BTCUSDT-1h.csv", "--timeframe", "7h"], ConfigError, "unknown timeframe '7h'"),
    ],
)
def test_usage_errors_are_smartmarket_errors(
    sm_home: Path, args: list[str], error: type[SmartMarketError], message: str
) -> None:
    with pytest.raises(error, match=message):
        _run(sm_home, *args)
