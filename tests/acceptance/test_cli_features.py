"""``smartmarket features`` and ``smartmarket regimes`` end to end: real candles in the store, files out."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app
from smartmarket.core.errors import ConfigError
from smartmarket.core.timeutil import parse_time
from smartmarket.core.types import HOUR_MS, Timeframe
from smartmarket.features import FeaturePipeline
from smartmarket.store import open_store

runner = CliRunner(env={"COLUMNS": "200"})
START = "2020-03-01"


@pytest.fixture
def home(sm_home: Path, shared_data: Path) -> Path:
    """A home whose embedded store holds ~4,000 real BTCUSDT 1h candles (2019-10 → 2020-03)."""
    with gzip.open(shared_data / "BTCUSDT-1h.csv.gz", "rt") as fh:
        frame = pd.read_csv(fh).iloc[19_000:23_000].reset_index(drop=True)
    with open_store(f"duckdb:///{(sm_home / 'smartmarket.duckdb').resolve()}") as store:
        store.write_candles("BTCUSDT", Timeframe.H1, frame)
    return sm_home


def run(home: Path, *args: str) -> str:
    result = runner.invoke(app, ["--home", str(home), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_csv_has_ts_then_one_column_per_feature_from_start(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "btc.csv"
    printed = run(home, "features", "-s", "BTCUSDT", "-t", "1h", "--start", START, "--format", "csv", "--out", str(out))
    assert "warm-up bars read and dropped" in printed
    frame = pd.read_csv(out)
    pipeline = FeaturePipeline("default", "1h")
    assert list(frame.columns) == ["ts", *pipeline.columns]
    start_ms = parse_time(START)
    assert frame["ts"].iloc[0] == start_ms
    assert (np.diff(frame["ts"]) >= HOUR_MS).all()
    assert frame.notna().all().all()  # the warm-up before --start made every feature defined

    # The values are the pipeline's on the stored candles from the documented warm-up start (max(500, 3 × the
    # set's warm-up) candles before --start, moved back to a 4h bucket start), to CSV precision.
    assert start_ms is not None
    warm_start = Timeframe.H4.bucket_start(start_ms - max(500, 3 * pipeline.warmup_bars) * HOUR_MS)
    with open_store(f"duckdb:///{(home / 'smartmarket.duckdb').resolve()}") as store:
        candles = store.read_candles("BTCUSDT", Timeframe.H1, start=warm_start)
    expected = pipeline.batch(candles)
    expected = expected[expected["ts"] >= start_ms].reset_index(drop=True)
    assert len(frame) == len(expected)
    np.testing.assert_allclose(frame.iloc[:, 1:].to_numpy(), expected.iloc[:, 1:].to_numpy(), rtol=1e-12)


def test_parquet_output_is_readable_and_end_is_exclusive(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "btc.parquet"
    run(home, "features", "-s", "BTCUSDT", "-t", "1h", "--set", "minimal", "--start", START, "--end", "2020-03-02",
        "--format", "parquet", "--out", str(out))  # fmt: skip
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["ts", *FeaturePipeline("minimal", "1h").columns]
    assert len(frame) == 24
    assert frame["ts"].dtype == np.int64 and frame["regime"].notna().all()


def test_csv_to_stdout_and_table(home: Path) -> None:
    printed = run(
        home, "features", "-s", "BTCUSDT", "-t", "4h", "--set", "minimal", "--start", "2020-02-01", "--format", "csv"
    )
    lines = printed.strip().splitlines()
    assert lines[0].startswith("ts,rsi_14,")
    assert len(lines) > 150
    table = run(home, "features", "-s", "BTCUSDT", "-t", "1h", "--start", START, "--rows", "3")
    assert "htf_regime" in table and "2020-" in table


def test_regimes_report(home: Path) -> None:
    printed = run(home, "regimes", "-s", "BTCUSDT", "-t", "1h", "--horizon", "12")
    for label in ("ranging", "trending_up", "trending_down", "volatile"):
        assert label in printed
    assert "evaluation only" in printed
    assert "next 12 bars" in printed


def test_errors_are_clear(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown feature set"):
        run(home, "features", "-s", "BTCUSDT", "-t", "1h", "--set", "nope")
    with pytest.raises(ConfigError, match="needs --out"):
        run(home, "features", "-s", "BTCUSDT", "-t", "1h", "--format", "parquet")
    help_text = run(home, "features", "--help")
    assert "Warm-up" in help_text and "Examples" in help_text
