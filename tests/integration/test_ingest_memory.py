"""Memory: one bad row must not make ingest copy anything per row. A 1 M-row file with one ~2 KB bad row is
ingested in its own process, and so is the same file without it; the peak RSS (``ru_maxrss``) of the bad one
must stay under 2× the clean one's (before the fix: 5.9 GB against 0.47 GB)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

ROWS = 1_000_000
T0 = 1_704_067_200_000

_CHILD = """
import json, resource, sys
from pathlib import Path
from smartmarket.core.types import Timeframe
from smartmarket.data.ingest import ingest_file
from smartmarket.store import open_store

path, home = Path(sys.argv[1]), Path(sys.argv[2])
with open_store(f"duckdb:///{home}/s.duckdb") as store:
    report = ingest_file(store, path, quarantine_dir=home / "q", symbol="BTCUSDT", timeframe=Timeframe.M1)
print(json.dumps({
    "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "stored": report.stored, "quarantined": report.quarantined, "data_lines": report.data_lines,
}))
"""


def _clean_file(path: Path) -> None:
    i = np.arange(ROWS, dtype=np.int64)
    close = np.round(40_000 + 50 * np.sin(i / 500), 2)
    table = pa.table(
        {
            "ts": T0 + i * 60_000,
            "open": close,
            "high": close + 5.5,
            "low": close - 5.25,
            "close": close,
            "volume": np.round(1 + (i % 97) * 0.125, 3),
        }
    )
    with path.open("wb") as out:
        out.write(b"ts,open,high,low,close,volume\n")
        pacsv.write_csv(table, out, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))


def _ingest_in_child(path: Path, home: Path) -> dict[str, int]:
    home.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(home)], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_one_huge_bad_row_does_not_multiply_memory(tmp_path: Path) -> None:
    clean = tmp_path / "clean.csv"
    _clean_file(clean)
    lines = clean.read_bytes().split(b"\n")
    assert lines[0] == b"ts,open,high,low,close,volume"
    middle = ROWS // 2
    lines[middle] = lines[middle].replace(b",", b"," + b"x" * 2000 + b'"', 1)  # ~2 KB of text in one field
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\n".join(lines))
    del lines

    clean_run = _ingest_in_child(clean, tmp_path / "clean-home")
    bad_run = _ingest_in_child(bad, tmp_path / "bad-home")
    assert (clean_run["stored"], clean_run["quarantined"]) == (ROWS, 0)
    assert (bad_run["stored"], bad_run["quarantined"], bad_run["data_lines"]) == (ROWS - 1, 1, ROWS)
    assert bad_run["peak_kib"] <= 2 * clean_run["peak_kib"], (bad_run, clean_run)
