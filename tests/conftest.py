"""Shared fixtures: real servers (PostgreSQL, Redis), the shared real-data directory, temp homes.

Outside CI a missing server or data directory skips the tests that need it; with ``CI=true`` they fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Before anything imports torch: spin-waiting OpenMP threads make small models ~100x slower on 2 busy cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# pytest-xdist's workers get COLUMNS=80, and rich fixes a console's width when it is built (at the CLI's import):
# every CliRunner below would then print 80 columns whatever width it asks for.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SMARTMARKET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
PG_BASE_URL = os.environ.get("SMARTMARKET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SMARTMARKET_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _unavailable(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real Binance candles). Never copied into the repository."""
    if not (SHARED_DATA / "BTCUSDT-1h.csv.gz").exists():
        _unavailable(f"shared market data at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def pg_server() -> str:
    import psycopg

    try:
        with psycopg.connect(PG_BASE_URL, connect_timeout=3) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError:
        _unavailable(f"PostgreSQL at {PG_BASE_URL}")
    return PG_BASE_URL


@contextmanager
def _fresh_schema(pg_server: str) -> Iterator[str]:
    """A URL to the real PostgreSQL ``test`` database, isolated in a fresh schema dropped afterwards."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"create schema {schema}")
    try:
        yield f"{pg_server}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f"drop schema if exists {schema} cascade")


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL to the real PostgreSQL ``test`` database, isolated in a fresh schema dropped afterwards."""
    with _fresh_schema(pg_server) as url:
        yield url


@pytest.fixture
def pg_url2(pg_server: str) -> Iterator[str]:
    """A second fresh schema beside ``pg_url`` (the other side of a migration)."""
    with _fresh_schema(pg_server) as url:
        yield url


@pytest.fixture(scope="session")
def redis_server() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.exceptions.ConnectionError:
        _unavailable(f"Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def sm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private SMARTMARKET_HOME for one test; the embedded store lives inside it."""
    home = tmp_path / "smhome"
    home.mkdir()
    monkeypatch.setenv("SMARTMARKET_HOME", str(home))
    monkeypatch.delenv("SMARTMARKET_STORE", raising=False)
    return home


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a busy 2-core machine OpenMP spin-waiting makes tiny models 100× slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def cpu_hog() -> Iterator[None]:
    """A CPU-bound job beside the test, as on a loaded machine (races and hangs showed only then)."""
    hog = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()
