"""Many processes, one embedded store: with `smartmarket serve` running on the default DuckDB store, `ingest`,
`symbols`, `backtest` and `run --source file:` succeed at the same time in other processes, and the API serves
what they wrote. Real processes, a real port, real candles (../shared/data), no mocks."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from redis_server import free_port

SRC = Path(__file__).resolve().parents[2] / "src"
TIMEOUT_S = 300


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTMARKET_")}
    env.update(SMARTMARKET_HOME=str(home), PYTHONPATH=str(SRC), COLUMNS="200")
    return env


def cli(home: Path, *args: str, log: Path | None = None) -> subprocess.Popen[str]:
    """A CLI process; its output is kept in pipes, or in the file ``log``."""
    out = subprocess.PIPE if log is None else log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "smartmarket.cli.app", *args],
        env=cli_env(home), stdout=out, stderr=subprocess.STDOUT if log else subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=TIMEOUT_S)
    return proc.returncode, out, err


def get(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def data_rows(path: Path) -> int:
    with gzip.open(path, "rt") as f:
        return sum(1 for line in f if line.strip()) - 1  # one header line


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """`smartmarket serve` on a free port over the default store of a fresh SMARTMARKET_HOME."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    proc = cli(home, "serve", "--port", str(port), "--log-level", "warning", log=tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if get(f"{base}/api/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not answer within 120 s"
            time.sleep(0.25)
        yield home, base
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_serve_and_every_command_share_the_default_store(served: tuple[Path, str], shared_data: Path) -> None:
    home, base = served
    store_file = home / "smartmarket.duckdb"
    assert store_file.exists()  # serve created the default store and keeps running beside everything below
    assert get(f"{base}/api/candles/BTCUSDT/1h")[0] == 404

    code, _, err = finish(cli(home, "ingest", str(shared_data / "ETHUSDT-1d.csv.gz")))  # what backtest reads
    assert code == 0, err

    # The API is polled all along, as a dashboard would.
    api_codes: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            api_codes.append(get(f"{base}/api/symbols")[0])
            api_codes.append(get(f"{base}/api/candles/ETHUSDT/1d?limit=5")[0])

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    eth4h = shared_data / "ETHUSDT-4h.csv.gz"
    btc1h = shared_data / "BTCUSDT-1h.csv.gz"
    started = {
        "run": cli(home, "run", "--symbols", "ETHUSDT", "--timeframe", "4h", "--source", f"file:{eth4h}",
                   "--strategy", "sma_cross", "--params", "fast=10,slow=30"),
        "ingest": cli(home, "ingest", str(btc1h)),
        "backtest": cli(home, "backtest", "--symbols", "ETHUSDT", "--timeframe", "1d", "--strategy", "sma_cross",
                        "--params", "fast=10,slow=30"),
    }  # fmt: skip
    symbols_runs = []
    while any(p.poll() is None for p in started.values()) or len(symbols_runs) < 2:
        symbols_runs.append(finish(cli(home, "symbols")))
    results = {name: finish(proc) for name, proc in started.items()}
    stop.set()
    poller.join(timeout=60)

    for name, (code, _out, err) in [*results.items(), *(("symbols", r) for r in symbols_runs)]:
        assert code == 0, f"{name} failed: {err}"
        # waiting for a turn is expected (one "waiting for the store" line); nothing else may mention the lock
        assert not [x for x in err.splitlines() if "locked" in x and not x.startswith("waiting for the store")], err
    assert api_codes and set(api_codes) == {200}, (home.parent / "serve.log").read_text()[-3000:]
    assert "ETHUSDT" in symbols_runs[-1][1]
    assert "Final equity" in results["backtest"][1]
    assert "OrderFilled" in results["run"][1]

    # The API (still the same serve process) serves what the other processes wrote.
    status, doc = get(f"{base}/api/symbols")
    assert status == 200 and isinstance(doc, dict)
    counts = {(s["symbol"], x["timeframe"]): x["count"] for s in doc["symbols"] for x in s["series"]}
    assert counts[("BTCUSDT", "1h")] == data_rows(btc1h)
    assert counts[("ETHUSDT", "4h")] == data_rows(eth4h)  # stored by the run, candle by candle
    status, doc = get(f"{base}/api/candles/BTCUSDT/1h?limit=3")
    assert status == 200 and isinstance(doc, dict) and len(doc["candles"]) == 3
    status, doc = get(f"{base}/api/events?type=OrderFilled&limit=10")
    assert status == 200
