"""The embedded store shared by processes: an open that meets another process's lock waits, bounded.

Real processes hold a real DuckDB file (no mocks): one that holds it longer than the wait makes the other fail
with the one-line error; one that lets go in time is waited for; a write by another process is seen by the
tail cache of this one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.config import store_lock_timeout
from smartmarket.core.errors import ConfigError, StoreError
from smartmarket.core.types import Timeframe
from smartmarket.store.duckdb_store import DuckDBStore

M1 = Timeframe.M1
START = 1_704_067_200_000  # 2024-01-01


def candles(n: int, first: int = 0) -> pd.DataFrame:
    ts = START + (np.arange(n, dtype=np.int64) + first) * M1.ms
    close = 100.0 + np.arange(n, dtype=np.float64) + first
    return pd.DataFrame({"ts": ts, "open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0})


@contextmanager
def holder(path: Path, *, seconds: float | None = None) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``path`` open read-write: until the block ends, or for ``seconds``."""
    wait = "sys.stdin.read()" if seconds is None else f"time.sleep({seconds})"
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); "
         f"print('ready', flush=True); {wait}; c.close()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_lock_held_longer_than_the_timeout_fails_with_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "locked.duckdb"
    DuckDBStore(f"duckdb:///{path}").close()  # the store exists; reading it must wait
    reader = DuckDBStore(f"duckdb:///{path}", create=False, lock_timeout=1.0)
    with holder(path) as proc:
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            reader.list_series()
        waited = time.monotonic() - started
    assert waited >= 1.0  # it waited out its timeout before giving up (the bound itself: pytest-timeout)
    message = str(info.value)
    assert "\n" not in message
    assert f"locked by another process (PID {proc.pid})" in message
    assert "SMARTMARKET_STORE_LOCK_TIMEOUT" in message and "postgresql" in message
    err = capfd.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("waiting for the store")] == [
        f"waiting for the store (locked by another smartmarket process, PID {proc.pid}) … up to 1 s "
        f"(SMARTMARKET_STORE_LOCK_TIMEOUT): {path}"
    ]


def test_a_lock_released_within_the_timeout_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "busy.duckdb"
    with DuckDBStore(f"duckdb:///{path}") as store:
        store.write_candles("BTCUSDT", M1, candles(10))
    writer = DuckDBStore(f"duckdb:///{path}", lock_timeout=20.0)
    with holder(path, seconds=1.0):
        started = time.monotonic()
        writer.write_candles("BTCUSDT", M1, candles(5, first=10))
        assert time.monotonic() - started >= 0.5  # it did wait for the other process, then wrote
    assert writer.series_info("BTCUSDT", M1) is not None
    assert len(writer.read_candles("BTCUSDT", M1)) == 15


def test_nothing_is_held_between_operations(tmp_path: Path) -> None:
    """An open store object (as `serve` keeps one) leaves the file free: another process opens it read-write."""
    path = tmp_path / "idle.duckdb"
    store = DuckDBStore(f"duckdb:///{path}")
    store.write_candles("BTCUSDT", M1, candles(3))
    assert len(store.latest("BTCUSDT", M1, 3)) == 3
    script = (
        f"import duckdb; c = duckdb.connect({str(path)!r}); "
        "print(c.execute('SELECT count(*) FROM candles').fetchone()[0])"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "3"
    store.close()


def test_the_tail_cache_sees_another_process_write(tmp_path: Path) -> None:
    path = tmp_path / "cache.duckdb"
    url = f"duckdb:///{path}"
    store = DuckDBStore(url)
    store.write_candles("BTCUSDT", M1, candles(100))
    assert store.latest("BTCUSDT", M1, 1)["close"].iloc[0] == 199.0  # the tail is now cached here
    script = (
        "import sys; sys.path[:0] = [{src!r}, {tests!r}]; from test_store_lock_wait import candles; "
        "from smartmarket.store.duckdb_store import DuckDBStore; s = DuckDBStore({url!r}); "
        "s.write_candles('BTCUSDT', '1m', candles(5, first=100)); "
        "s.write_candles('BTCUSDT', '1m', candles(1, first=50).assign(close=-1.0, open=-1.0, low=-2.0), "
        "on_conflict='overwrite')"
    ).format(src=str(Path(__file__).parents[2] / "src"), tests=str(Path(__file__).parent), url=url)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    tail = store.latest("BTCUSDT", M1, 60)
    assert tail["close"].iloc[-1] == 204.0  # appended by the other process
    assert tail["close"].iloc[5] == -1.0  # overwritten there (candle 50 of 105)
    store.close()


def test_the_lock_timeout_setting() -> None:
    assert store_lock_timeout({}) == 30.0
    assert store_lock_timeout({"SMARTMARKET_STORE_LOCK_TIMEOUT": "2.5"}) == 2.5
    for bad in ("soon", "-1", "inf", "nan"):
        with pytest.raises(ConfigError, match="invalid SMARTMARKET_STORE_LOCK_TIMEOUT") as info:
            store_lock_timeout({"SMARTMARKET_STORE_LOCK_TIMEOUT": bad})
        assert "\n" not in str(info.value)
    assert os.environ.get("SMARTMARKET_STORE_LOCK_TIMEOUT") is None or store_lock_timeout() >= 0


def test_looking_at_the_file_keeps_this_process_lock(tmp_path: Path) -> None:
    """Inside a batch the file stays locked against writers, even after the tail cache looked at the file
    (closing any descriptor of a file would drop this process's POSIX lock on it: a writer could then slip in
    under a reader, which then reads torn pages)."""
    path = tmp_path / "held.duckdb"
    store = DuckDBStore(f"duckdb:///{path}")
    store.write_candles("BTCUSDT", M1, candles(10))
    script = f"import duckdb; duckdb.connect({str(path)!r}).close()"
    with store.batch():
        store.latest("BTCUSDT", M1, 5)  # loads the tail, looking at the file's state
        store.latest("BTCUSDT", M1, 5)  # a cache hit, looking again
        assert len(store.read_candles("BTCUSDT", M1)) == 10
        writer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert writer.returncode != 0 and "lock" in writer.stderr.lower()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)  # free again after the batch
    store.close()
