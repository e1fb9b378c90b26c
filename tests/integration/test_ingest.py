"""Ingestion into the real stores (embedded DuckDB and the PostgreSQL server): nothing lost, nothing altered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.frame import CANDLE_COLUMNS
from smartmarket.core.types import Timeframe
from smartmarket.data.ingest import Gap, IngestReport, ingest_file, ingest_frame
from smartmarket.data.quarantine import read_quarantine
from smartmarket.store import Store, open_store

TF = Timeframe.M5


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"duckdb:///{tmp_path}/s.duckdb" if request.param == "duckdb" else request.getfixturevalue("pg_url")
    with open_store(url) as opened:
        yield opened


@pytest.fixture
def candles(shared_data: Path) -> pd.DataFrame:
    """ADABTC 5m: 5,720 real candles with 5 gaps."""
    return pd.read_csv(shared_data / "ADABTC-5m.csv.gz")


def _balanced(report: IngestReport) -> bool:
    return report.rows_read == report.inserted + report.unchanged + report.overwritten + report.quarantined


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_real_file_stored_exactly_and_reingest_is_idempotent(
    store: Store, shared_data: Path, candles: pd.DataFrame, tmp_path: Path
) -> None:
    qdir = tmp_path / "q"
    first = ingest_file(store, shared_data / "ADABTC-5m.csv.gz", quarantine_dir=qdir)
    assert (first.symbol, first.timeframe) == ("ADABTC", TF)
    assert (first.rows_read, first.inserted, first.unchanged, first.quarantined) == (5720, 5720, 0, 0)
    assert len(first.gaps) == 5
    assert first.first_ts == candles["ts"].iloc[0] and first.last_ts == candles["ts"].iloc[-1]
    assert first.quarantine_path is None and not qdir.exists()
    stored = store.read_candles("ADABTC", TF)
    pd.testing.assert_frame_equal(stored, candles, check_dtype=False)
    assert stored["ts"].dtype == np.int64

    again = ingest_file(store, shared_data / "ADABTC-5m.csv.gz", quarantine_dir=qdir)
    assert (again.inserted, again.unchanged, again.conflicts, again.quarantined) == (0, 5720, 0, 0)
    assert again.gaps == first.gaps
    pd.testing.assert_frame_equal(store.read_candles("ADABTC", TF), stored)


def test_overlapping_files_merge(store: Store, candles: pd.DataFrame, tmp_path: Path) -> None:
    part_a = _write_csv(candles.iloc[:3000], tmp_path / "ADABTC-5m-a.csv")
    part_b = _write_csv(candles.iloc[2000:], tmp_path / "ADABTC-5m-b.csv")
    a = ingest_file(store, part_a, quarantine_dir=tmp_path / "q")
    b = ingest_file(store, part_b, quarantine_dir=tmp_path / "q")
    assert (a.inserted, a.unchanged) == (3000, 0)
    assert (b.inserted, b.unchanged) == (2720, 1000)
    assert _balanced(a) and _balanced(b)
    pd.testing.assert_frame_equal(store.read_candles("ADABTC", TF), candles, check_dtype=False)


def test_conflicting_rewrite_is_quarantined_then_overwritten_on_request(
    store: Store, candles: pd.DataFrame, tmp_path: Path
) -> None:
    qdir = tmp_path / "q"
    original = candles.iloc[:500]
    ingest_file(store, _write_csv(original, tmp_path / "ADABTC-5m.csv"), quarantine_dir=qdir)

    changed = candles.iloc[400:600].copy()
    changed.iloc[[10, 20, 30], changed.columns.get_loc("volume")] *= 1.01  # rows 410, 420, 430 now differ
    path = _write_csv(changed, tmp_path / "ADABTC-5m-v2.csv")
    report = ingest_file(store, path, quarantine_dir=qdir)
    assert (report.inserted, report.unchanged, report.conflicts, report.quarantined) == (100, 97, 3, 3)
    assert report.reasons == {"conflict_with_stored": 3}
    assert _balanced(report)
    # The stored candles were kept, the new ones beyond the overlap were added.
    stored = store.read_candles("ADABTC", TF)
    pd.testing.assert_frame_equal(stored, candles.iloc[:600].reset_index(drop=True), check_dtype=False)

    assert report.quarantine_path is not None
    rows = read_quarantine(report.quarantine_path)
    assert rows["reason"].tolist() == ["conflict_with_stored"] * 3
    assert rows["line"].tolist() == [12, 22, 32]  # header is line 1
    assert rows["source"].tolist() == [str(path)] * 3
    assert rows["volume"].tolist() == changed["volume"].iloc[[10, 20, 30]].tolist()
    assert rows["stored_volume"].tolist() == candles["volume"].iloc[[410, 420, 430]].tolist()
    assert rows["stored_close"].tolist() == rows["close"].tolist()

    forced = ingest_file(store, path, quarantine_dir=qdir, overwrite=True)
    assert (forced.overwritten, forced.conflicts, forced.quarantined, forced.unchanged) == (3, 0, 0, 197)
    stored = store.read_candles("ADABTC", TF)
    assert stored["volume"].iloc[[410, 420, 430]].tolist() == changed["volume"].iloc[[10, 20, 30]].tolist()
    assert len(read_quarantine(qdir)) == 3  # append-only: nothing new, nothing removed


def test_bad_rows_quarantined_with_lines_and_accounting_balances(
    store: Store, candles: pd.DataFrame, tmp_path: Path
) -> None:
    lines = candles.iloc[:50].to_csv(index=False, lineterminator="\n").splitlines()
    header, body = lines[0], lines[1:]
    body[3] = body[3].replace(body[3].split(",")[2], "abc", 1)  # high = abc            (line 5)
    fields = body[7].split(",")
    body[7] = ",".join([*fields[:5], "-" + fields[5]])  # negative volume               (line 9)
    body.insert(20, body[19])  # identical duplicate                                   (line 22)
    body.append(body[0])  # identical duplicate, out of place at the end               (line 53)
    text = "\n".join([header, *body]) + "\n"
    path = tmp_path / "ADABTC-5m.csv"
    path.write_text(text)

    report = ingest_file(store, path, quarantine_dir=tmp_path / "q")
    assert report.rows_read == 52
    assert report.reasons == {"unparseable": 1, "negative_volume": 1, "duplicate": 2}
    assert (report.inserted, report.quarantined) == (48, 4)
    assert _balanced(report)
    assert report.quarantine_path is not None
    rows = read_quarantine(report.quarantine_path).sort_values("line")
    assert rows["line"].tolist() == [5, 9, 22, 53]
    unparseable = rows[rows["reason"] == "unparseable"].iloc[0]
    assert unparseable["raw"] == body[3]
    stored = store.read_candles("ADABTC", TF)
    assert len(stored) == 48
    assert candles["ts"].iloc[3] not in stored["ts"].tolist()
    assert candles["ts"].iloc[7] not in stored["ts"].tolist()


def test_ingest_frame_without_line_column_and_synthetic_flag(
    store: Store, candles: pd.DataFrame, tmp_path: Path
) -> None:
    page = candles.iloc[:100].copy()
    page.loc[5, "low"] = page.loc[5, "high"] * 2
    report = ingest_frame(
        store, "ada/btc", TF, page, source="exchange:test", quarantine_dir=tmp_path / "q", synthetic=True
    )
    assert report.symbol == "ADABTC"
    assert (report.inserted, report.quarantined, report.reasons) == (99, 1, {"low_above_high": 1})
    rows = read_quarantine(tmp_path / "q")
    assert rows["line"].tolist() == [6]  # row position, 1-based
    assert rows["source"].tolist() == ["exchange:test"]
    info = store.series_info("ADABTC", TF)
    assert info is not None and info.count == 99 and info.synthetic


def test_merged_page_reports_equal_one_report(store: Store, candles: pd.DataFrame, tmp_path: Path) -> None:
    whole = ingest_frame(store, "ADABTC", TF, candles, source="x", quarantine_dir=tmp_path / "q")  # the reference
    store.delete_range("ADABTC", TF)
    merged = IngestReport(symbol="ADABTC", timeframe=TF, source="x")
    # Cut the pages at a gap so the seam itself is a gap.
    cut = int(np.flatnonzero(np.diff(candles["ts"].to_numpy()) > TF.ms)[2]) + 1
    for page in (candles.iloc[:cut], candles.iloc[cut:]):
        merged = merged.merge(ingest_frame(store, "ADABTC", TF, page, source="x", quarantine_dir=tmp_path / "q"))
    assert len(whole.gaps) == 5
    assert merged.gaps == whole.gaps  # including the gap at the seam, which neither page saw alone
    assert merged.gaps[2].after_ts == int(candles["ts"].iloc[cut - 1])
    assert isinstance(merged.gaps[2], Gap)
    assert (merged.rows_read, merged.inserted, merged.first_ts, merged.last_ts) == (
        whole.rows_read,
        whole.inserted,
        whole.first_ts,
        whole.last_ts,
    )
    assert list(store.read_candles("ADABTC", TF).columns) == list(CANDLE_COLUMNS)


def test_written_in_several_chunks_with_conflicts_at_their_lines_and_phase_timings(
    store: Store, candles: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smartmarket.data import ingest

    monkeypatch.setattr(ingest, "WRITE_CHUNK_ROWS", 1_000)  # 5,720 rows: six store writes
    path = _write_csv(candles, tmp_path / "ADABTC-5m.csv")
    timings: dict[str, float] = {}
    first = ingest_file(store, path, quarantine_dir=tmp_path / "q", timings=timings)
    assert (first.inserted, first.quarantined) == (5720, 0) and first.balanced
    assert set(timings) == {"read", "validate", "store"} and all(t >= 0 for t in timings.values())
    changed = candles.copy()
    changed.loc[4_321, "volume"] += 1.0  # in the fifth write (still a valid candle)
    report = ingest_file(store, _write_csv(changed, tmp_path / "ADABTC-5m.csv"), quarantine_dir=tmp_path / "q")
    assert (report.unchanged, report.conflicts, report.quarantined) == (5719, 1, 1) and report.balanced
    quarantine = read_quarantine(tmp_path / "q")
    assert quarantine[["line", "reason"]].values.tolist() == [[4_323, "conflict_with_stored"]]
    pd.testing.assert_frame_equal(store.read_candles("ADABTC", TF), candles, check_dtype=False)
