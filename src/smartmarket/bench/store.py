"""``smartmarket bench store``: the embedded DuckDB store against plain PostgreSQL, same data, same run.

Data: ``rows`` one-minute candles. The generator's synthetic market (``data.synthetic``) is anchored at the
first close of the real BTCUSDT 1h series from ``../shared/data`` when present; storage speed does not
depend on where the numbers came from, and the report says which was used.

``cli_ingest_rows_per_s``: the same candles written as a CSV file (prices to the cent, volumes to 1e-6,
like the real files) and as CSV.gz, each ingested into a fresh DuckDB store by ``data.ingest.ingest_file``,
the function ``smartmarket ingest`` calls: parsing, validation, quarantine and the exact line accounting
included, measured beside the store's own ``write_candles`` rows/s in the same run (median of 3 runs each,
with every run's figure and the seconds of each phase); ``cli_ingest.vs_store_write`` divides it by the store
write, ``cli_ingest.cpu_rows_per_s`` counts rows per second of the process's CPU time.

The DuckDB store opens its file per call (``docs/storage.md``), so every per-call figure includes an open (and
a write its closing ``CHECKPOINT``); ``in_one_batch`` repeats the range and resample reads inside one
``store.batch()``, the query alone. The targets are checked on the per-call figures.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from smartmarket.bench.timing import Latency, best_of, measure_latency
from smartmarket.core.redaction import redact_url
from smartmarket.core.types import DAY_MS, Timeframe
from smartmarket.data.ingest import ingest_file
from smartmarket.data.synthetic import generate_market
from smartmarket.ops.footprint import bytes_on_disk, bytes_per_candle, candle_count, parquet_bytes
from smartmarket.store.base import Store
from smartmarket.store.url import open_store

SYMBOL = "BENCHBTC"
YEAR_MS = 365 * DAY_MS
# Targets from the foundation issue, for the embedded store.
TARGET_INGEST_ROWS_PER_S = 1_600_000
TARGET_SPEEDUP = 10.0
TARGET_LATEST_P50_US = 150.0
PAST_END_TS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
TARGET_CLI_INGEST_ROWS_PER_S = 2_000_000  # issue 14: end to end through `smartmarket ingest`


@dataclass
class BackendFigures:
    name: str
    url: str
    ingest_rows_per_s: float = 0.0
    ingest_seconds: float = 0.0
    latest500_cached: Latency | None = None
    latest500_uncached: Latency | None = None
    range_year_seconds: float = 0.0
    range_year_rows: int = 0
    resample_year_seconds: float = 0.0
    resample_year_rows: int = 0
    bytes_on_disk: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def anchor_price(shared_data: Path | None) -> tuple[float, str]:
    """First close of the real BTCUSDT 1h series, or a fixed price when the data is absent."""
    if shared_data is not None:
        path = shared_data / "BTCUSDT-1h.csv.gz"
        if path.exists():
            with gzip.open(path, "rt") as fh:
                head = pd.read_csv(fh, nrows=1)
            return float(head["close"].iloc[0]), f"synthetic 1m market anchored at real {path.name} first close"
    return 30_000.0, "synthetic 1m market (shared data not found)"


def bench_backend(
    store: Store, name: str, frame: pd.DataFrame, *, latest_runs: int, log: Callable[[str], None]
) -> BackendFigures:
    tf = Timeframe.M1
    figures = BackendFigures(name=name, url=store.url)
    log(f"{name}: ingesting {len(frame):,} rows")
    t0 = time.perf_counter()
    result = store.write_candles(SYMBOL, tf, frame)
    figures.ingest_seconds = time.perf_counter() - t0
    if result.inserted != len(frame):
        raise RuntimeError(f"{name}: inserted {result.inserted} of {len(frame)} rows")
    figures.ingest_rows_per_s = len(frame) / figures.ingest_seconds

    log(f"{name}: latest-500 latency")
    figures.latest500_cached = measure_latency(lambda: store.latest(SYMBOL, tf, 500), runs=latest_runs)
    uncached = getattr(store, "latest_uncached", None)
    if callable(uncached):
        figures.latest500_uncached = measure_latency(lambda: uncached(SYMBOL, tf, 500), runs=latest_runs)

    start = int(frame["ts"].iloc[0])
    end = start + YEAR_MS
    log(f"{name}: one-year range read and 1m→1h resample")
    figures.range_year_rows = len(store.read_candles(SYMBOL, tf, start, end))
    figures.range_year_seconds = best_of(lambda: store.read_candles(SYMBOL, tf, start, end))
    figures.resample_year_rows = len(store.read_candles(SYMBOL, Timeframe.H1, start, end))
    figures.resample_year_seconds = best_of(lambda: store.read_candles(SYMBOL, Timeframe.H1, start, end))
    with store.batch():  # the embedded file opened once for the repeated reads: the query alone, no open
        figures.extra["in_one_batch"] = {
            "range_year_seconds": round(best_of(lambda: store.read_candles(SYMBOL, tf, start, end)), 4),
            "resample_year_1m_to_1h_seconds": round(
                best_of(lambda: store.read_candles(SYMBOL, Timeframe.H1, start, end)), 4
            ),
        }
    figures.bytes_on_disk = bytes_on_disk(store)
    return figures


def real_data_footprint(store: Store, shared_data: Path | None) -> dict[str, Any] | None:
    """Bytes per candle of ``store`` holding the real BTCUSDT and ETHUSDT 1h series (synthetic prices compress
    worse than real ones, so the 5 M synthetic figures overstate sizes)."""
    files = [shared_data / f"{s}-1h.csv.gz" for s in ("BTCUSDT", "ETHUSDT")] if shared_data else []
    files = [f for f in files if f.exists()]
    if not files:
        return None
    for path in files:
        store.write_candles(path.name.split("-")[0], Timeframe.H1, pd.read_csv(path))
    candles = candle_count(store)
    return {
        "candles": candles,
        "bytes_per_candle": round(bytes_per_candle(bytes_on_disk(store), candles), 2),
        "parquet_backup_bytes_per_candle": round(bytes_per_candle(parquet_bytes(store), candles), 2),
    }


def write_candle_csv(frame: pd.DataFrame, path: Path, *, gzip_level: int | None = None) -> int:
    """``frame`` as a ``ts,open,high,low,close,volume`` CSV (prices to the cent, volume to 1e-6, like real
    exchange files), gzip-compressed when ``gzip_level`` is given; returns the file's size in bytes."""
    table = pa.table(
        {
            "ts": frame["ts"].to_numpy(dtype=np.int64),
            **{c: np.round(frame[c].to_numpy(dtype=np.float64), 2) for c in ("open", "high", "low", "close")},
            "volume": np.round(frame["volume"].to_numpy(dtype=np.float64), 6),
        }
    )
    sink = pa.BufferOutputStream()
    sink.write(b"ts,open,high,low,close,volume\n")
    pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
    text = sink.getvalue().to_pybytes()
    if gzip_level is not None:
        packer = zlib.compressobj(gzip_level, zlib.DEFLATED, 31)
        text = packer.compress(text) + packer.flush()
    path.write_bytes(text)
    return len(text)


def bench_cli_ingest(
    frame: pd.DataFrame, workdir: Path, *, log: Callable[[str], None], runs: int = 3
) -> dict[str, Any]:
    """Rows/s of ``ingest_file`` (what ``smartmarket ingest`` runs) on ``frame`` as .csv and .csv.gz files,
    each run into a fresh DuckDB store; the median of ``runs`` runs (a shared machine's load varies from one
    second to the next), every run's figure, the median seconds of each phase (read, validate, store), and
    rows per second of this process's CPU time (all its threads), which other work on the machine disturbs less."""
    out: dict[str, Any] = {
        "rows_per_s": {},
        "runs_rows_per_s": {},
        "cpu_rows_per_s": {},
        "seconds": {},
        "phase_seconds": {},
        "file_bytes": {},
    }
    # Real candles lie in the past: shift the synthetic ones to end at 2024-01-01 (ingest refuses the future).
    frame = frame.assign(ts=frame["ts"] - (int(frame["ts"].iloc[-1]) - PAST_END_TS))
    for name, level in (("csv", None), ("csv.gz", 1)):
        folder = workdir / f"cli-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{SYMBOL}-1m.{name}"
        log(f"cli ingest: writing {len(frame):,} rows as .{name}")
        out["file_bytes"][name] = write_candle_csv(frame, path, gzip_level=level)
        seconds: list[float] = []
        cpu_seconds: list[float] = []
        phases: list[dict[str, float]] = []
        for run in range(runs):
            with _duckdb_store(folder / f"run{run}") as store:
                log(f"cli ingest: ingest_file {path.name} ({run + 1}/{runs})")
                timings: dict[str, float] = {}
                t0, cpu0 = time.perf_counter(), time.process_time()
                report = ingest_file(store, path, quarantine_dir=folder / f"run{run}" / "quarantine", timings=timings)
                seconds.append(time.perf_counter() - t0)
                cpu_seconds.append(time.process_time() - cpu0)
                phases.append(timings)
            if not report.balanced or report.stored != len(frame) or report.quarantined:
                raise RuntimeError(f"cli ingest of {path.name}: accounting off ({report})")
            shutil.rmtree(folder / f"run{run}")
        path.unlink()
        middle = float(np.median(seconds))
        out["seconds"][name] = round(middle, 3)
        out["rows_per_s"][name] = round(len(frame) / middle)
        out["runs_rows_per_s"][name] = [round(len(frame) / s) for s in seconds]
        out["cpu_rows_per_s"][name] = round(len(frame) / float(np.median(cpu_seconds)))
        out["phase_seconds"][name] = {k: round(float(np.median([p[k] for p in phases])), 3) for k in phases[0]}
    return out


@contextmanager
def _duckdb_store(workdir: Path) -> Iterator[Store]:
    workdir.mkdir(parents=True, exist_ok=True)
    store = open_store(f"duckdb:///{workdir / 'bench.duckdb'}")
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _postgres_store(pg_url: str) -> Iterator[Store]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"create schema {schema}")
    sep = "&" if "?" in pg_url else "?"
    store = open_store(f"{pg_url}{sep}options=-csearch_path%3D{schema}")
    try:
        yield store
    finally:
        store.close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"drop schema if exists {schema} cascade")


def run_store_benchmark(
    *,
    rows: int,
    pg_url: str,
    shared_data: Path | None,
    seed: int = 7,
    latest_runs: int | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Run every measurement on both backends; returns a JSON-ready dict with figures and ratios.

    ``latest_runs`` (latest-500 calls timed per backend and cache state): by default 2,000 at the full 5 M rows,
    one per 2,500 rows below that but at least 200 (an uncached DuckDB call opens the file, ~10 ms)."""
    if latest_runs is None:
        latest_runs = min(2000, max(200, rows // 2500))
    price, data_note = anchor_price(shared_data)
    log(f"generating {rows:,} one-minute candles ({data_note})")
    frame = generate_market(rows, timeframe=Timeframe.M1, seed=seed, start_price=price)
    results: dict[str, BackendFigures] = {}
    real: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="smartmarket-bench-") as tmp:
        with _duckdb_store(Path(tmp)) as duck:
            results["duckdb"] = bench_backend(duck, "duckdb", frame, latest_runs=latest_runs, log=log)
            log("parquet backup size of the same candles")
            results["duckdb"].extra["parquet_bytes"] = parquet_bytes(duck, workdir=Path(tmp))
        results["duckdb"].extra["cli_ingest"] = bench_cli_ingest(frame, Path(tmp), log=log)
        with _postgres_store(pg_url) as pg:
            results["postgres"] = bench_backend(pg, "postgres", frame, latest_runs=latest_runs, log=log)
        log("footprint on real BTCUSDT/ETHUSDT 1h candles")
        with _duckdb_store(Path(tmp) / "real") as duck_real:
            real["duckdb"] = real_data_footprint(duck_real, shared_data)
        with _postgres_store(pg_url) as pg_real:
            real["postgres"] = real_data_footprint(pg_real, shared_data)
    out = summarize(results, rows=rows, data_note=data_note)
    if real["duckdb"] and real["postgres"]:
        out["footprint_real_1h"] = real
    return out


def _lat(lat: Latency | None) -> dict[str, float] | None:
    return None if lat is None else {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(lat).items()}


def summarize(results: dict[str, BackendFigures], *, rows: int, data_note: str) -> dict[str, Any]:
    duck, pg = results["duckdb"], results["postgres"]

    def ratio(a: float, b: float) -> float:
        return round(a / b, 2) if b else float("inf")

    duck_latest = duck.latest500_cached
    pg_latest = pg.latest500_uncached or pg.latest500_cached
    out: dict[str, Any] = {
        "rows": rows,
        "data": data_note,
        "machine": {"cpus": os.cpu_count()},
        "backends": {
            name: {
                "url": redact_url(f.url.split("?")[0]),
                "ingest_rows_per_s": round(f.ingest_rows_per_s),
                "ingest_seconds": round(f.ingest_seconds, 3),
                "latest500_cached_us": _lat(f.latest500_cached),
                "latest500_uncached_us": _lat(f.latest500_uncached),
                "range_year_seconds": round(f.range_year_seconds, 4),
                "range_year_rows": f.range_year_rows,
                "resample_year_1m_to_1h_seconds": round(f.resample_year_seconds, 4),
                "resample_year_rows": f.resample_year_rows,
                "bytes_on_disk": f.bytes_on_disk,
                "bytes_per_candle": round(f.bytes_on_disk / rows, 2) if f.bytes_on_disk else None,
                "in_one_batch": f.extra.get("in_one_batch"),
            }
            for name, f in results.items()
        },
        "ratios_duckdb_vs_postgres": {
            "ingest_speedup": ratio(duck.ingest_rows_per_s, pg.ingest_rows_per_s),
            "range_year_speedup": ratio(pg.range_year_seconds, duck.range_year_seconds),
            "resample_year_speedup": ratio(pg.resample_year_seconds, duck.resample_year_seconds),
            "latest500_p50_speedup": ratio(pg_latest.p50_us, duck_latest.p50_us) if pg_latest and duck_latest else None,
            "bytes_per_candle_postgres_over_duckdb": ratio(pg.bytes_on_disk or 0, duck.bytes_on_disk or 0),
        },
        "parquet_backup_bytes_per_candle": round(duck.extra["parquet_bytes"] / rows, 2)
        if "parquet_bytes" in duck.extra
        else None,
    }
    cli = duck.extra.get("cli_ingest")
    if cli:
        out["cli_ingest_rows_per_s"] = cli["rows_per_s"]
        out["cli_ingest"] = {
            "what": "ingest_file (the `smartmarket ingest` path: parse, validate, quarantine, store) into DuckDB",
            "store_write_rows_per_s": round(duck.ingest_rows_per_s),
            # end-to-end ingest ÷ the store's own write, same run: how close ingest comes to the store's speed
            "vs_store_write": {k: ratio(v, duck.ingest_rows_per_s) for k, v in cli["rows_per_s"].items()},
            **cli,
        }
    out["targets"] = {
        "ingest_rows_per_s>=1.6M": duck.ingest_rows_per_s >= TARGET_INGEST_ROWS_PER_S,
        "range_read>=10x_postgres": out["ratios_duckdb_vs_postgres"]["range_year_speedup"] >= TARGET_SPEEDUP,
        "resample>=10x_postgres": out["ratios_duckdb_vs_postgres"]["resample_year_speedup"] >= TARGET_SPEEDUP,
        "latest500_p50<=150us": bool(duck_latest and duck_latest.p50_us <= TARGET_LATEST_P50_US),
    }
    if cli:
        out["targets"]["cli_ingest_rows_per_s>=2M"] = all(
            v >= TARGET_CLI_INGEST_ROWS_PER_S for v in cli["rows_per_s"].values()
        )
    return out


__all__ = ["BackendFigures", "bench_cli_ingest", "run_store_benchmark", "summarize", "write_candle_csv"]
