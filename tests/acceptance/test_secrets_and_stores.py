"""Issue 14, items 3, 6, 7: no password anywhere, no silent empty stores, every error one line.

Every CLI command taking a store or bus URL is run with a password in it (userinfo and ``?password=``):
PostgreSQL (trust auth, so the password is accepted and ignored) and a test-owned ``redis-server
--requirepass``. The password must appear in no captured output, no log record and no file SmartMarket writes.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from rich.console import Console

from smartmarket.cli.app import error_line, main
from smartmarket.core.config import Settings
from smartmarket.core.types import Timeframe
from smartmarket.data.synthetic import generate_market
from smartmarket.models.labels import LabelConfig
from smartmarket.signals.fit import default_system_config, fit_artifact, save_artifact
from smartmarket.signals.members import SMCMember, TechnicalMember
from smartmarket.store.migrate import Checkpoint

PW = "Hunter2Secret"


class Cli:
    """Runs ``smartmarket`` in this process (``main``: the real error printing) and keeps every output."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.texts: list[str] = []

    def __call__(self, *argv: str | Path) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # success exits through typer's standalone mode
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = self.capsys.readouterr()
        self.texts += [captured.out, captured.err]
        return code, captured.out, captured.err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.delenv("SMARTMARKET_STORE", raising=False)
    monkeypatch.delenv("SMARTMARKET_BUS", raising=False)
    return Cli(capsys)


def _with_password(url: str, *, in_query: bool = False) -> str:
    parts = urlsplit(url)
    if in_query:
        return urlunsplit(parts._replace(query=f"{parts.query}&password={PW}" if parts.query else f"password={PW}"))
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user or 'postgres'}:{PW}@{host}"))


@pytest.fixture
def redis_pw(tmp_path: Path) -> Iterator[str]:
    """A test-owned Redis server that requires the password; its URL carries it."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path / "redis"
    folder.mkdir()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PW, "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import redis

    try:
        client = redis.Redis(host="127.0.0.1", port=port, password=PW)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield f"redis://:{PW}@127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _files_holding(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and secret in p.read_bytes()]


def _candle_file(folder: Path, symbol: str, rows: int, seed: int) -> Path:
    path = folder / f"{symbol}-1h.csv"
    generate_market(rows, timeframe=Timeframe.H1, seed=seed).to_csv(path, index=False)
    return path


def test_no_password_in_any_output_log_or_file(
    cli: Cli, pg_url: str, pg_url2: str, redis_pw: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    home = tmp_path / "home"
    pg = _with_password(pg_url)
    pg_query = _with_password(pg_url2, in_query=True)
    data = tmp_path / "data"
    data.mkdir()
    caplog.set_level(logging.DEBUG)
    g = ("--home", home, "--store", pg)

    # writes and reads through the store URL
    assert cli(*g, "ingest", _candle_file(data, "AAA", 400, 1))[0] == 0
    code, out, _ = cli(*g, "generate", "--symbol", "ZZZ", "--timeframe", "1h", "--rows", "300")
    assert code == 0 and "stored in postgresql://postgres@127.0.0.1" in out
    assert cli(*g, "symbols")[0] == 0
    assert [s["symbol"] for s in json.loads(cli(*g, "symbols", "-f", "json")[1])] == ["AAA", "ZZZ"]
    assert cli(*g, "candles", "-s", "AAA", "-t", "1h", "-n", "3")[0] == 0
    assert cli(*g, "candles", "-s", "NOPE", "-t", "1h")[0] == 2  # an error naming the store
    assert cli(*g, "events", "--limit", "5")[0] == 0
    assert cli(*g, "backup", "--to", tmp_path / "backups")[0] == 0
    monkeypatch.setenv("SMARTMARKET_BUS", redis_pw)
    code, out, _ = cli(*g, "doctor")
    assert "answers PING" in out, out
    monkeypatch.delenv("SMARTMARKET_BUS")

    # migrate both ways (userinfo and ?password=), then a conflict, its checkpoint and --resume
    copy = tmp_path / "copy.duckdb"
    code, out, err = cli("--home", home, "migrate", "--from", pg, "--to", f"duckdb:///{copy}")
    assert code == 0 and "complete and verified" in out and f"created store {copy}" in err
    assert "postgresql://postgres@127.0.0.1" in out
    assert cli("--home", home, "migrate", "--from", f"duckdb:///{copy}", "--to", pg_query)[0] == 0
    clash = tmp_path / "clash.duckdb"
    assert cli("--home", home, "--store", f"duckdb:///{clash}", "generate", "--symbol", "ZZZ", "--timeframe", "1h",
               "--rows", "300", "--seed", "9")[0] == 0  # fmt: skip
    for extra in ((), ("--resume",)):
        code, _, err = cli("--home", home, "migrate", "--from", pg, "--to", f"duckdb:///{clash}", "--chunk-rows", "100",
                           *extra)  # fmt: skip
        lines = err.strip().splitlines()  # the migration's progress lines (redacted too), then one error line
        assert code == 2 and "differ in the target" in lines[-1] and sum("error:" in line for line in lines) == 1, err
    checkpoints = list((home / "migrations").glob("migration-*.json"))
    assert len(checkpoints) == 1, "AAA's chunks were copied before the conflict"
    assert stat.S_IMODE(checkpoints[0].stat().st_mode) == 0o600
    state = json.loads(checkpoints[0].read_text())
    assert state["source"].startswith("postgresql://postgres@127.0.0.1") and state["series"]["AAA/1h"] > 0

    # the pipeline on a password-protected Redis bus, recording into the PostgreSQL store
    candles = generate_market(1_300, timeframe=Timeframe.M1, seed=5, start_price=20_000.0)
    config = default_system_config(ensemble="stacking", strength_targets=(0.0, 0.0, 0.0), regime_target=0.0, z=0.0,
                                   min_count=5, require_skill=False)  # fmt: skip
    artifact = fit_artifact(candles.iloc[:1_200], [TechnicalMember(), SMCMember()], symbol="BTCUSDT",
                            timeframe="1m", label_config=LabelConfig(horizon=12), config=config)  # fmt: skip
    save_artifact(artifact, Settings(home=home).registry_dir)
    live = tmp_path / "live"
    live.mkdir()
    candles.iloc[1_200:].to_csv(live / "BTCUSDT-1m.csv", index=False)
    code, out, err = cli(*g, "run", "--symbols", "BTCUSDT", "--timeframe", "1m", "--source", f"file:{live}",
                         "--bus", redis_pw, "--artifact", "latest", "--no-risk-checks", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["candles"] == 100
    code, out, _ = cli(*g, "events", "--type", "CandleClosed", "--format", "json", "--limit", "1000")
    assert code == 0 and len(json.loads(out)) == 100

    # error paths: unsupported URL, unreachable servers, a bus that cannot be reached
    for argv, message in [
        (("--store", f"postgresq://postgres:{PW}@127.0.0.1/test?password={PW}", "symbols"), "unsupported store URL"),
        (("--store", f"postgresql://postgres:{PW}@127.0.0.1:1/test", "symbols"), "cannot reach PostgreSQL"),
        (("--store", f"questdb://admin:{PW}@127.0.0.1:1?pg_port=1&http_password={PW}", "symbols"), "QuestDB"),
        (("--store", pg, "retention", "--archive", tmp_path / "arch", "--keep-last", "5", "--dead-letters-days", "7",
          "--bus", f"redis://:{PW}@127.0.0.1:1/0"), "Redis unavailable"),
        (("migrate", "--from", f"postgresql://postgres:{PW}@127.0.0.1:1/test", "--to", f"duckdb:///{copy}"),
         "cannot reach PostgreSQL"),
    ]:  # fmt: skip
        code, _, err = cli("--home", home, *argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err

    assert cli.texts and all(PW not in text for text in cli.texts), [t for t in cli.texts if PW in t]
    assert PW not in caplog.text
    written = [home, tmp_path / "backups", copy, clash]
    assert [f for root in written for f in ([root] if root.is_file() else root.rglob("*"))] and not [
        hit for root in written for hit in (_files_holding(root, PW.encode()) if root.is_dir() else
                                            ([str(root)] if PW.encode() in root.read_bytes() else []))
    ]  # fmt: skip


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "argv",
    [
        ("symbols",),
        ("symbols", "-f", "json"),
        ("candles", "-s", "BTCUSDT", "-t", "1h"),
        ("events",),
        ("backtest", "--symbols", "BTCUSDT", "--timeframe", "1h"),
        ("backup", "--to", "bk"),
    ],
)
def test_reading_a_duckdb_path_that_does_not_exist_fails_and_creates_nothing(
    cli: Cli, argv: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    home = tmp_path / "home"
    code, out, err = cli("--home", home, "--store", "duckdb:///sub/typo.duckdb", *argv)
    assert code == 2, (out, err)
    line = err.strip()
    assert len(line.splitlines()) == 1 and f"no DuckDB store at {work}/sub/typo.duckdb" in line
    assert "relative to the working directory" in line and "duckdb:////" in line
    assert _listing(work) == [] and not home.exists()


def test_migrating_from_a_missing_duckdb_file_creates_neither_side(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("--home", tmp_path / "home", "migrate", "--from", "duckdb:///typo.duckdb",
                         "--to", "duckdb:///copy.duckdb")  # fmt: skip
    assert code == 2 and "no DuckDB store at" in err and "complete" not in out
    assert _listing(tmp_path) == []


def test_writing_creates_the_store_once_and_prints_its_absolute_path(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ("--home", tmp_path / "home", "--store", "duckdb:///rel/new.duckdb", "generate", "--rows", "50")
    code, _, err = cli(*argv)
    assert code == 0 and f"created store {tmp_path}/rel/new.duckdb" in err
    assert (tmp_path / "rel" / "new.duckdb").is_file()
    code, _, err = cli(*argv, "--seed", "0")
    assert code == 0 and "created store" not in err


def test_reading_the_default_store_before_any_ingest_says_so_and_creates_nothing(cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, out, err = cli("--home", home, "symbols", "-f", "json")
    assert code == 0 and json.loads(out) == []
    assert "nothing is stored yet" in err and "smartmarket ingest" in err and "smartmarket.duckdb" in err
    code, _, err = cli("--home", home, "candles", "-s", "BTCUSDT", "-t", "1h")
    assert code == 2 and "BTCUSDT" in err
    assert not home.exists()
    code, _, err = cli("--home", home, "generate", "--rows", "20")
    assert code == 0 and f"created store {home}/smartmarket.duckdb" in err


def test_markup_in_an_error_is_printed_as_text(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("--home", tmp_path / "home", "--store", "duckdb:///[/x]/[bold]typo.duckdb", "symbols")
    assert code == 2 and "[/x]/[bold]typo.duckdb" in err and len(err.strip().splitlines()) == 1
    console = Console(record=True, width=300)
    text = "bad symbol [/x] in\nC:[/red]path"
    console.print(f"[bold red]error:[/] {error_line(text)}")
    assert console.export_text().strip() == "error: bad symbol [/x] in C:[/red]path"


def test_a_corrupt_migration_checkpoint_is_one_line_naming_the_file(cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / "home"
    src, dst = f"duckdb:///{tmp_path / 'src.duckdb'}", f"duckdb:///{tmp_path / 'dst.duckdb'}"
    assert cli("--home", home, "--store", src, "generate", "--rows", "30")[0] == 0
    checkpoint = Checkpoint.path_for(home / "migrations", src, dst)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text('{"source": "duckdb:///a", "series": {')
    code, _, err = cli("--home", home, "migrate", "--from", src, "--to", dst, "--resume")
    line = " ".join(err.split())
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "checkpoint cannot be read" in line and str(checkpoint) in line and "delete that file" in line
    assert "JSONDecodeError" in line and "Traceback" not in err
    assert checkpoint.exists() and not (tmp_path / "dst.duckdb").exists()  # nothing created, the file left to inspect


def test_a_failed_write_leaves_no_empty_store_behind(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "in" / "BTCUSDT-1h.csv"
    bad.parent.mkdir()
    bad.write_text("this is not,a candle file\n")
    code, _, err = cli("--home", tmp_path / "home", "--store", "duckdb:///new/deeper/x.duckdb", "ingest", bad)
    assert code == 2 and err.strip().startswith("error:") and "created store" not in err, err
    assert _listing(tmp_path) == ["in", "in/BTCUSDT-1h.csv"]


@pytest.mark.slow
def test_bench_store_json_names_the_postgres_baseline_without_its_password(
    cli: Cli, tmp_path: Path, pg_server: str
) -> None:
    code, out, _ = cli("--home", tmp_path / "home", "bench", "store", "--rows", "10000", "--json",
                       "--pg", _with_password(pg_server))  # fmt: skip
    assert code == 0, out
    report = json.loads(out)
    backends = report["backends"]
    assert backends["postgres"]["url"].startswith("postgresql://postgres@")
    cli_ingest = report["cli_ingest"]  # end-to-end ingest beside the store write of the same run
    assert set(cli_ingest["vs_store_write"]) == set(cli_ingest["cpu_rows_per_s"]) == {"csv", "csv.gz"}
    for name, rate in report["cli_ingest_rows_per_s"].items():
        assert cli_ingest["vs_store_write"][name] == round(rate / cli_ingest["store_write_rows_per_s"], 2)
        assert cli_ingest["cpu_rows_per_s"][name] > 0
    assert not [text for text in cli.texts if PW in text]
    assert _files_holding(tmp_path, PW.encode()) == []
