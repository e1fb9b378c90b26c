"""Migration between real stores (PostgreSQL ⇄ DuckDB): verified, and resumable after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from smartmarket.core.events import CandleClosed, SignalGenerated
from smartmarket.core.types import Timeframe
from smartmarket.data.synthetic import generate_market
from smartmarket.store.base import Store
from smartmarket.store.checksum import summarize_candles
from smartmarket.store.migrate import Checkpoint, migrate
from smartmarket.store.url import open_store

ROWS = 120_000


def _fill(store: Store, rows: int = ROWS, events: int = 3_000) -> pd.DataFrame:
    frame = generate_market(rows, timeframe=Timeframe.M1, seed=3)
    store.write_candles("SYNA", Timeframe.M1, frame, synthetic=True)
    store.write_candles("SYNB", Timeframe.M5, generate_market(rows // 10, timeframe=Timeframe.M5, seed=4))
    msgs = []
    for i in range(events):
        ts = int(frame["ts"].iloc[i])
        candle = CandleClosed(
            ts_event=ts + 60_000,
            symbol="SYNA",
            timeframe="1m",
            ts=ts,
            open=1.0,
            high=2.0,
            low=0.5,
            close=1.5,
            volume=float(i),
            correlation_id=f"c{i}",
        )
        msgs.append(candle)
        if i % 10 == 0:
            msgs.append(
                SignalGenerated(
                    ts_event=ts + 60_000,
                    symbol="SYNA",
                    timeframe="1m",
                    ts=ts,
                    direction="long",
                    confidence=0.6,
                    strength="moderate",
                    regime="ranging",
                    correlation_id=f"c{i}",
                    causation_id=candle.event_id,
                )
            )
    store.append_events(msgs)
    return frame


def _assert_identical(source: Store, target: Store) -> None:
    assert [(s.symbol, s.timeframe, s.count, s.first_ts, s.last_ts, s.synthetic) for s in source.list_series()] == [
        (s.symbol, s.timeframe, s.count, s.first_ts, s.last_ts, s.synthetic) for s in target.list_series()
    ]
    for info in source.list_series():
        a = source.read_candles(info.symbol, info.timeframe)
        b = target.read_candles(info.symbol, info.timeframe)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert summarize_candles(a) == summarize_candles(b)
    assert source.last_seq() == target.last_seq()
    src_events = source.read_events()
    dst_events = target.read_events()
    assert [(e.seq, e.message) for e in src_events] == [(e.seq, e.message) for e in dst_events]


@pytest.mark.parametrize("direction", ["pg_to_duckdb", "duckdb_to_pg"])
def test_migration_copies_everything_and_verifies(direction: str, pg_url: str, tmp_path: Path) -> None:
    duck_url = f"duckdb:///{tmp_path / 'm.duckdb'}"
    src_url, dst_url = (pg_url, duck_url) if direction == "pg_to_duckdb" else (duck_url, pg_url)
    with open_store(src_url) as src, open_store(dst_url) as dst:
        _fill(src, rows=30_000, events=500)
        report = migrate(src, dst, checkpoint_path=tmp_path / "ckpt.json", chunk_rows=7_000, verify=True)
        assert report.ok
        assert {r.name for r in report.results} == {"SYNA/1m", "SYNB/5m", "events"}
        assert all(r.verified for r in report.results)
        _assert_identical(src, dst)
        assert not (tmp_path / "ckpt.json").exists()  # removed after a verified finish
        # Running again copies nothing new and still verifies: idempotent.
        again = migrate(src, dst, checkpoint_path=tmp_path / "ckpt.json", chunk_rows=7_000)
        assert again.ok and all(r.copied == 0 for r in again.results)


def test_migration_detects_a_tampered_target(pg_url: str, tmp_path: Path) -> None:
    with open_store(pg_url) as src, open_store(f"duckdb:///{tmp_path / 't.duckdb'}") as dst:
        frame = _fill(src, rows=5_000, events=10)
        tampered = frame.iloc[100:101].copy()
        tampered["close"] = tampered["close"] * 1.01
        dst.write_candles("SYNA", Timeframe.M1, tampered)
        with pytest.raises(Exception, match="differ in the target"):
            migrate(src, dst, checkpoint_path=tmp_path / "c.json", chunk_rows=1_000)


def _migrate_cmd(home: Path, src: str, dst: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "smartmarket.cli.app",
        "--home",
        str(home),
        "migrate",
        "--from",
        src,
        "--to",
        dst,
        "--chunk-rows",
        "2000",
        *extra,
    ]


@pytest.mark.parametrize("direction", ["pg_to_duckdb", "duckdb_to_pg"])
def test_migration_survives_sigkill_and_resumes_without_loss_or_duplicates(
    direction: str, pg_url: str, tmp_path: Path
) -> None:
    duck_url = f"duckdb:///{tmp_path / 'k.duckdb'}"
    src_url, dst_url = (pg_url, duck_url) if direction == "pg_to_duckdb" else (duck_url, pg_url)
    with open_store(src_url) as src:
        _fill(src)
    home = tmp_path / "home"
    checkpoint = Checkpoint.path_for(home / "migrations", src_url, dst_url)

    proc = subprocess.Popen(
        _migrate_cmd(home, src_url, dst_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 120
    chunks_done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists():
            try:
                state = json.loads(checkpoint.read_text())
            except ValueError:
                state = {"series": {}}
            chunks_done = len(state["series"])
            done_until = state["series"].get("SYNA/1m")
            if done_until is not None and done_until > 0:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "migration finished before it could be killed; the test proves nothing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert chunks_done >= 1

    with open_store(src_url) as src, open_store(dst_url) as dst:
        partial = dst.series_info("SYNA", Timeframe.M1)
        assert partial is None or partial.count < ROWS  # really interrupted mid-way

    resumed = subprocess.run(
        _migrate_cmd(home, src_url, dst_url, "--resume"),
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "migration complete and verified" in resumed.stdout
    with open_store(src_url) as src, open_store(dst_url) as dst:
        _assert_identical(src, dst)
