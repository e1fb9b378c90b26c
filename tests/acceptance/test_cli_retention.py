"""``smartmarket retention`` end to end through the real CLI: dry run, archive and trim, a repeat run, errors,
dead letters on the real Redis, and the archive put back into a new store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from smartmarket.cli.app import app, main
from smartmarket.core.config import Settings
from smartmarket.core.events import CandleClosed
from smartmarket.core.types import MINUTE_MS
from smartmarket.ops.retention import import_archive, list_event_segments, read_archive, read_archived_dead_letters
from smartmarket.store.url import open_store

START = 1_704_067_200_000  # 2024-01-01T00:00Z
runner = CliRunner(env={"COLUMNS": "200"})


def candle_events(n: int, start: int = START) -> list[CandleClosed]:
    return [
        CandleClosed(
            ts_event=start + (i + 1) * MINUTE_MS,
            symbol="BTCUSDT",
            timeframe="1m",
            ts=start + i * MINUTE_MS,
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
    """A home whose log holds 100 events of 2024 and 20 of today (the CLI's clock is the real one)."""
    with open_store(Settings(home=sm_home).store_url) as store:
        store.append_events(candle_events(100))
        store.append_events(candle_events(20, start=_today()))
    return sm_home


def _today() -> int:
    import time

    return int(time.time() * 1000) - 60 * MINUTE_MS


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, result.output
    return result.stdout


def seqs(home: Path) -> list[int]:
    with open_store(Settings(home=home).store_url) as store:
        return [e.seq for e in store.read_events()]


def test_dry_run_then_archive_and_trim_then_nothing_left(home: Path, tmp_path: Path) -> None:
    with open_store(Settings(home=home).store_url) as store:
        original = [e.message for e in store.read_events()]
    archive = tmp_path / "archive"
    out = run("--home", str(home), "retention", "--archive", str(archive), "--keep-days", "30", "--dry-run")
    assert "events: would trim 100 (seq 1..100); kept seq 101..120" in out and "dry run" in out
    assert seqs(home) == list(range(1, 121)) and not archive.exists()

    out = run("--home", str(home), "retention", "--archive", str(archive), "--keep-days", "30", "--keep-last", "50")
    assert "events: trimmed 70 (seq 1..70); kept seq 71..120" in out  # --keep-last 50 is the stricter limit
    assert "read back and verified" in out and "deleted 70 events from the store" in out
    assert "retention complete" in out
    assert seqs(home) == list(range(71, 121))
    assert [e.seq for e in read_archive(archive)] == list(range(1, 71))

    out = run("--home", str(home), "retention", "--archive", str(archive), "--keep-days", "30")
    assert "events: trimmed 30 (seq 71..100)" in out and seqs(home) == list(range(101, 121))
    out = run("--home", str(home), "retention", "--archive", str(archive), "--keep-days", "30")
    assert "events: nothing to trim (log ends at seq 120)" in out
    assert len(list_event_segments(archive)) == 2

    # The archive and the live log together rebuild the whole log in another store.
    with open_store(f"duckdb:///{tmp_path / 'rebuilt.duckdb'}") as rebuilt:
        assert import_archive(archive, rebuilt) == 100
        with open_store(Settings(home=home).store_url) as live:
            rebuilt.import_events(live.read_events())
        assert [e.message for e in rebuilt.read_events()] == original
        assert [e.seq for e in rebuilt.read_events()] == list(range(1, 121))


def test_bad_input_is_a_one_line_error_and_deletes_nothing(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMARTMARKET_BUS", raising=False)
    archive = str(tmp_path / "archive")
    cases = [
        (["retention", "--archive", archive], "retention needs a policy"),
        (["retention", "--archive", archive, "--dead-letters-days", "7"], "needs the Redis bus"),
        (
            ["retention", "--archive", archive, "--keep-last", "5", "--dead-letters-days", "7", "--bus", "memory://"],
            "needs the Redis bus",
        ),
        (
            ["retention", "--archive", archive, "--keep-last", "5", "--dead-letters-days", "7", "--bus", "redis://127.0.0.1:1/0"],
            "Redis unavailable",
        ),
    ]  # fmt: skip
    for argv, message in cases:
        capsys.readouterr()
        assert main(["--home", str(home), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and len(err.splitlines()) == 1, err
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["--home", str(home), "retention", "--archive", str(a_file), "--keep-last", "5"]) == 2
    assert "not a directory" in capsys.readouterr().err
    run("--home", str(home), "retention", "--archive", archive, "--keep-last", "0", code=2)  # usage error
    assert seqs(home) == list(range(1, 121))


@pytest.fixture
def dlq(redis_server: str) -> Iterator[tuple[str, str]]:
    """(bus URL with a private namespace, namespace); every key of it is deleted afterwards."""
    namespace = f"t{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(redis_server)
    try:
        yield f"{redis_server}?namespace={namespace}", namespace
    finally:
        for key in client.scan_iter(match=f"{namespace}:*"):
            client.delete(key)
        client.close()


def test_dead_letters_older_than_the_limit_are_archived_and_deleted(
    home: Path, tmp_path: Path, dlq: tuple[str, str], redis_server: str
) -> None:
    url, namespace = dlq
    client = redis.Redis.from_url(redis_server)
    stream = f"{namespace}:{{ETHUSDT}}:dlq"
    old_ms = START  # entries with explicit ids of 2024 are "old"; the field layout is the bus's own
    for i in range(4):
        client.xadd(
            stream,
            {
                "stream": f"{namespace}:{{ETHUSDT}}:signals",
                "group": "risk",
                "consumer": "c1",
                "id": f"{old_ms + i}-0",
                "attempts": 5,
                "reason": "failed",
                "error": f"boom {i}",
                "payload": bytes([i, 0, 255]),
                "ts": old_ms + i,
            },
            id=f"{old_ms + i}-0",
        )
    client.xadd(
        stream,
        {"stream": "s", "group": "g", "consumer": "c", "id": "1-0", "attempts": 1, "reason": "r", "error": "e",
         "payload": b"", "ts": 1},
    )  # fmt: skip
    archive = tmp_path / "archive"
    out = run("--home", str(home), "retention", "--archive", str(archive), "--dead-letters-days", "7", "--bus", url)
    assert "events: nothing to trim" not in out  # no event limit given: the log is not looked at
    assert "dead letters ETHUSDT: trimmed 4" in out and "archived 4 (+0 already), deleted 4" in out
    assert client.xlen(stream) == 1  # the young entry stays
    letters = list(read_archived_dead_letters(archive, namespace=namespace, symbol="ETHUSDT"))
    assert [(d.entry_id, d.error, d.payload, d.attempts) for d in letters] == [
        (f"{old_ms + i}-0", f"boom {i}", bytes([i, 0, 255]), 5) for i in range(4)
    ]
    out = run("--home", str(home), "retention", "--archive", str(archive), "--dead-letters-days", "7", "--bus", url)
    assert "dead letters: none older than" in out
    assert seqs(home) == list(range(1, 121))
    client.close()
