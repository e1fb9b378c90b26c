"""`smartmarket demo`, the main job, end to end in a fresh home (a subprocess, as a user runs it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def _demo(home: Path, *args: str, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMARTMARKET_HOME": str(home), "COLUMNS": "160"}
    env.pop("SMARTMARKET_STORE", None)
    env.pop("SMARTMARKET_QUIET", None)
    if quiet:
        env["SMARTMARKET_QUIET"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "smartmarket.cli.app", "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_demo_runs_every_stage_on_a_synthetic_market(tmp_path: Path) -> None:
    run = _demo(tmp_path, "--rows", "20000", "--seed", "5")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    for stage in (
        "generate a synthetic market",
        "query and resample",
        "features and market regimes",
        "backtest",
        "summary",
    ):
        assert stage in out
    assert "DEMOBTC 1m: 20,000 read, 20,000 inserted" in out
    assert "PLANTED EDGE: this synthetic market has an edge put there on purpose" in " ".join(out.split())
    assert (tmp_path / "smartmarket.duckdb").exists()
    assert 100_000 < (tmp_path / "reports" / "demo-backtest.html").stat().st_size < 1_000_000
    assert next((tmp_path / "reports").glob("plotly-*.min.js")).stat().st_size > 1_000_000  # shared, not inlined
    assert any(p.name.startswith("logreg-DEMOBTC-15m-") for p in (tmp_path / "models").iterdir())
    assert "latest signal:" in out
    # the new ensemble is evaluated out of sample (nothing in production yet: against the base rates), promoted
    # when the evaluation allows it, and paper trading runs whatever is in production
    assert "vs the base rates (nothing in production yet)" in out and "Diebold-Mariano p =" in out
    # an ensemble that can never signal (no member with skill: every weight 0) is never promoted silently: one
    # warning line at fitting, "not promoted" at the rollout, and paper trading runs the candidate
    never = [line for line in out.splitlines() if "can never produce a signal" in line and line.startswith("warning:")]
    assert len(never) <= 1
    if never:
        assert "not promoted: it can never produce a signal" in out and "promoted ensemble-" not in out
        assert "paper-trading the unpromoted candidate" in out
    else:
        assert "promoted ensemble-DEMOBTC-15m-" in out and "trading the production ensemble" in out
    assert "dashboard: http://127.0.0.1:8000/" in out
    # progress on stderr (a pipe here): plain lines, one when each stage starts and one when it ends, with the
    # steps inside (the backtest, the signal engine's run) every ~10 %; never a carriage return
    err = run.stderr
    assert "\r" not in err and "\x1b" not in err
    for n in range(1, 10):
        started = [line for line in err.splitlines() if line.startswith(f"demo stage {n}/9: ") and line.endswith(" …")]
        ended = [line for line in err.splitlines() if line.startswith(f"demo stage {n}/9: ") and " done in " in line]
        assert len(started) == 1 and len(ended) == 1, err
    assert any(line.startswith("backtest sma_cross(10, 30) over ") and " 100 %, " in line for line in err.splitlines())
    again = _demo(tmp_path, "--rows", "20000", "--seed", "5", quiet=True)
    assert again.returncode == 0, again.stderr
    assert "demo stage" not in again.stderr and " 100 %, " not in again.stderr  # SMARTMARKET_QUIET / --quiet
    assert "0 inserted, 20,000 unchanged" in again.stdout  # re-running is idempotent
    if not never:  # the second run's ensemble (same data, same fit) is compared with the first one, in production
        assert "p = 1.000 → no significant difference" in " ".join(again.stdout.split())
        assert "retired ensemble-DEMOBTC-15m-" in " ".join(again.stdout.split())


@pytest.mark.slow
def test_the_demo_ensemble_learns_signals_and_paper_trades_the_planted_edge(tmp_path: Path) -> None:
    run = _demo(tmp_path)  # the default market: 100,000 1m candles with the planted edge (about 40 s)
    assert run.returncode == 0, run.stderr
    out = " ".join(run.stdout.split())
    assert "PLANTED EDGE" in out and "these signals trade the edge PLANTED in this synthetic market" in out
    signals = int(re.search(r"out of sample\): ([\d,]+) signals", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert signals > 0 and "can never produce a signal" not in out
    assert "→ candidate better" in out and "trading the production ensemble" in out
    filled = int(re.search(r"OrderFilled (\d+)", out).group(1))  # type: ignore[union-attr]
    assert filled > 0


def test_demo_ingests_a_real_file(tmp_path: Path, shared_data: Path) -> None:
    run = _demo(tmp_path, "--data", str(shared_data / "BTCUSDT-4h.csv.gz"))
    assert run.returncode == 0, run.stderr
    assert "BTCUSDT 4h: 16,147 read, 16,147 inserted" in run.stdout
    assert "8 gaps (" in run.stdout
    assert "backtest (BTCUSDT 4h)" in run.stdout
