"""``smartmarket backup``, ``restore`` and ``doctor`` end to end through the real CLI, on temporary homes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app, main
from smartmarket.core.config import Settings
from smartmarket.core.events import CandleClosed
from smartmarket.core.types import MINUTE_MS, Timeframe
from smartmarket.data.quarantine import write_quarantine
from smartmarket.store.url import open_store

START = 1_704_067_200_000  # 2024-01-01T00:00Z
runner = CliRunner(env={"COLUMNS": "200"})


def minutes(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    close = 42_000 + rng.standard_normal(n).cumsum() * 10
    open_ = np.r_[42_000.0, close[:-1]]
    return pd.DataFrame(
        {
            "ts": START + np.arange(n, dtype=np.int64) * MINUTE_MS,
            "open": open_,
            "high": np.maximum(open_, close) + 1.25,
            "low": np.minimum(open_, close) - 0.75,
            "close": close,
            "volume": rng.random(n) * 3,
        }
    )


def candle_events(n: int) -> list[CandleClosed]:
    return [
        CandleClosed(
            ts_event=START + (i + 1) * MINUTE_MS,
            symbol="BTCUSDT",
            timeframe="1m",
            ts=START + i * MINUTE_MS,
            open=1.0,
            high=1.0,
            low=1.0,
            close=1.0,
            volume=float(i),
        )
        for i in range(n)
    ]


@pytest.fixture
def home(sm_home: Path) -> Path:
    """A home with 2,000 BTCUSDT 1m candles, 30 events, a quarantine file and one registered model."""
    settings = Settings(home=sm_home)
    with open_store(settings.store_url) as store:
        store.write_candles("BTCUSDT", Timeframe.M1, minutes(2_000))
        store.append_events(candle_events(30))
    bad = minutes(1).assign(volume=-1.0, line=7, reason="negative_volume")
    write_quarantine(settings.quarantine_dir, "BTCUSDT", Timeframe.M1, "feed.csv", bad)
    model = settings.registry_dir / "baseline-BTCUSDT-1m-20240101000000-00000000"
    model.mkdir(parents=True)
    (model / "metadata.json").write_text(json.dumps({"kind": "majority", "stage": "candidate"}))
    return sm_home


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, result.output
    return result.stdout


def snapshot_of(backup_dir: Path) -> Path:
    (snapshot,) = backup_dir.iterdir()
    return snapshot


def test_backup_then_restore_into_a_new_home_is_verified_and_repeatable(home: Path, tmp_path: Path) -> None:
    out = run("--home", str(home), "backup", "--to", str(tmp_path / "bk"))
    assert "backup complete" in out and "BTCUSDT/1m" in out and "2,000" in out
    snapshot = snapshot_of(tmp_path / "bk")

    new_home = tmp_path / "new-home"
    out = run("--home", str(new_home), "restore", "--from", str(snapshot))
    assert "snapshot files verified: 4 (sha256)" in out  # candles, events, quarantine, model metadata
    assert "restore complete and verified (events to seq 30)" in out
    assert out.count("verified") >= 5
    with open_store(Settings(home=new_home).store_url) as restored, open_store(Settings(home=home).store_url) as src:
        pd.testing.assert_frame_equal(
            restored.read_candles("BTCUSDT", Timeframe.M1), src.read_candles("BTCUSDT", Timeframe.M1), check_exact=True
        )
        assert [e.message for e in restored.read_events()] == [e.message for e in src.read_events()]
    for relative in ("quarantine/BTCUSDT-1m.quarantine.csv", "models/baseline-BTCUSDT-1m-20240101000000-00000000"):
        assert (new_home / relative).exists()

    again = run("--home", str(new_home), "restore", "--from", str(snapshot))
    assert "restore complete and verified" in again  # identical data: nothing written, nothing refused


def test_point_in_time_restore_into_another_store_url(home: Path, tmp_path: Path) -> None:
    run("--home", str(home), "backup", "--to", str(tmp_path / "bk"))
    target = f"duckdb:///{tmp_path / 'pit.duckdb'}"
    out = run(
        "--home",
        str(tmp_path / "h2"),
        "restore",
        "--from",
        str(snapshot_of(tmp_path / "bk")),
        "--to",
        target,
        "--until-seq",
        "12",
    )
    assert "events (until seq 12)" in out and "events to seq 12" in out
    with open_store(target) as store:
        assert store.last_seq() == 12 and store.series_info("BTCUSDT", Timeframe.M1).count == 2_000


def test_damaged_snapshot_and_conflicting_target_are_one_line_errors(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run("--home", str(home), "backup", "--to", str(tmp_path / "bk"))
    snapshot = snapshot_of(tmp_path / "bk")

    # A conflicting target: the original home itself, after one candle changed.
    with open_store(Settings(home=home).store_url) as store:
        store.delete_range("BTCUSDT", Timeframe.M1, START, START + MINUTE_MS)
        store.write_candles("BTCUSDT", Timeframe.M1, minutes(1).assign(close=1.0, low=0.5))
    capsys.readouterr()
    # --quiet: stderr holds the error alone (without it, the verification's progress lines come first)
    assert main(["--quiet", "--home", str(home), "restore", "--from", str(snapshot)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "BTCUSDT/1m has 1 candles with other values" in err
    assert len(err.splitlines()) == 1

    parquet = snapshot / "candles" / "BTCUSDT-1m.parquet"
    data = bytearray(parquet.read_bytes())
    data[100] ^= 0xFF
    parquet.write_bytes(bytes(data))
    assert main(["--home", str(tmp_path / "h3"), "restore", "--from", str(snapshot)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1].startswith("error:") and "candles/BTCUSDT-1m.parquet is damaged" in err
    assert all(line.startswith("verify ") for line in err.splitlines()[:-1])  # plain progress lines, then the error
    assert "restore another snapshot" in err


def doctor_lines(output: str) -> dict[str, str]:
    """``{check name: status}`` from doctor's output."""
    lines = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("ok", "warn", "fail"):
            lines[parts[1]] = parts[0]
    return lines


def test_doctor_fails_for_an_unreachable_postgresql_and_passes_for_the_real_one(
    sm_home: Path, pg_url: str, redis_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMARTMARKET_BUS", redis_server)
    out = run("--home", str(sm_home), "--store", "postgresql://postgres@127.0.0.1:1/test", "doctor", code=1)
    checks = doctor_lines(out)
    assert checks["store"] == "fail" and "cannot reach PostgreSQL" in out and "fix:" in out
    assert checks["bus"] == "ok" and "1 fail" in out

    out = run("--home", str(sm_home), "--store", pg_url, "doctor")
    assert doctor_lines(out) == {"store": "ok", "bus": "ok", "registry": "ok", "disk": "ok", "quarantine": "ok"}
    assert "0 series, 0 candles, events to seq 0" in out and "answers PING" in out


def test_doctor_reports_bus_registry_and_disk_problems(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = run("--home", str(home), "doctor")
    assert doctor_lines(out) == {"store": "ok", "bus": "ok", "registry": "ok", "disk": "ok", "quarantine": "ok"}
    assert "1 series, 2,000 candles, events to seq 30" in out and "1 models (1 candidate)" in out
    assert "1 rows in 1 files" in out

    monkeypatch.setenv("SMARTMARKET_BUS", "redis://127.0.0.1:1/0")
    broken = home / "models" / "broken-model"
    broken.mkdir()
    (broken / "metadata.json").write_text("{not json")
    out = run("--home", str(home), "doctor", "--min-free-gb", "1000000", code=1)
    checks = doctor_lines(out)
    assert checks == {"store": "ok", "bus": "fail", "registry": "fail", "disk": "warn", "quarantine": "ok"}
    assert "broken-model" in out and "1 warn, 2 fail" in out


def test_paths_with_markup_print_as_text_in_doctor_and_backup(tmp_path: Path) -> None:
    """A home or backup folder whose name looks like rich markup (``[/x]``) is printed as it is, never parsed."""
    home = tmp_path / "home[/x]"
    store = open_store(f"duckdb:///{home}/smartmarket.duckdb", create=True)
    store.write_candles("BTCUSDT", Timeframe.parse("1m"), minutes(50))
    store.close()
    doctor = runner.invoke(app, ["--home", str(home), "doctor"])
    assert doctor.exit_code in (0, 1), doctor.output  # a crash (rich's MarkupError) would be neither
    assert doctor.exception is None or isinstance(doctor.exception, SystemExit), doctor.exception
    assert "home[/x]" in doctor.output.replace("\n", "")
    backups = tmp_path / "backups[/b]"
    backup = runner.invoke(app, ["--home", str(home), "backup", "--to", str(backups)])
    assert backup.exit_code == 0, backup.output
    assert "backups[/b]" in backup.output.replace("\n", "")
