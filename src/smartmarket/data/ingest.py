"""Ingestion: raw rows → validation → store, with every rejected row quarantined and counted.

The accounting always balances, for every file:

    stored + quarantined + blank_lines == data_lines      (stored = inserted + unchanged + overwritten)

``data_lines`` counts every line after the header (every record of a JSON/Parquet file), ``blank_lines`` the
empty ones among them and ``rows_read == data_lines - blank_lines``; conflicts with stored candles are part
of ``quarantined``. Quarantine line numbers are the file's own (header = line 1). Re-ingesting the same data
is idempotent
(every row ``unchanged``); overlapping files merge; a different value for a stored candle is never written
silently: it is quarantined as ``conflict_with_stored`` unless ``overwrite`` is asked for.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from smartmarket.core.frame import CANDLE_COLUMNS
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.data.naming import infer_series
from smartmarket.data.parsers import read_candle_file
from smartmarket.data.quarantine import STORED_COLUMNS, write_quarantine
from smartmarket.data.validation import NO_LATEST_TS, Gap, ValidationResult, find_gaps, validate_candles
from smartmarket.store.base import CandleStore

WRITE_CHUNK_ROWS = 1_500_000  # rows per store write: each write costs a transaction and a series update (~25 ms)
Progress = Callable[[int, int], None]


@dataclass
class IngestReport:
    """What one ingest did to one series. ``merge`` combines the reports of chunks or pages."""

    symbol: str
    timeframe: Timeframe
    source: str
    rows_read: int = 0  # data_lines - blank_lines
    data_lines: int = 0  # lines after the header (records of a JSON/Parquet file, rows of a frame)
    blank_lines: int = 0  # empty lines among them: no data, nothing stored or quarantined
    inserted: int = 0
    unchanged: int = 0
    overwritten: int = 0
    conflicts: int = 0  # conflicting re-writes of already-stored candles (quarantined, reported)
    quarantined: int = 0  # all rows sent to quarantine, conflicts included
    reasons: dict[str, int] = field(default_factory=dict)  # reason -> count
    gaps: list[Gap] = field(default_factory=list)
    first_ts: int | None = None
    last_ts: int | None = None
    quarantine_path: Path | None = None
    out_of_order: int = 0  # rows that came after a later timestamp (sorted, not quarantined)

    @property
    def stored(self) -> int:
        """Rows now in the store from this ingest: inserted, already there unchanged, or overwritten."""
        return self.inserted + self.unchanged + self.overwritten

    @property
    def balanced(self) -> bool:
        """The accounting invariant: every data line is stored, quarantined or blank."""
        return (
            self.stored + self.quarantined + self.blank_lines == self.data_lines
            and self.rows_read + self.blank_lines == self.data_lines
        )

    @property
    def missing_candles(self) -> int:
        return sum(g.missing for g in self.gaps)

    @property
    def largest_gap(self) -> Gap | None:
        return max(self.gaps, key=lambda g: g.missing, default=None)

    def merge(self, other: IngestReport) -> IngestReport:
        """Combined report. Gaps are exact when the two cover consecutive, non-overlapping time ranges
        (pages or chunks in order): a gap at the seam is then added."""
        if (other.symbol, other.timeframe) != (self.symbol, self.timeframe):
            raise ValueError(
                f"cannot merge reports of {self.symbol}/{self.timeframe} and {other.symbol}/{other.timeframe}"
            )
        reasons = Counter(self.reasons)
        reasons.update(other.reasons)
        gaps = [*self.gaps, *other.gaps]
        if self.last_ts is not None and other.first_ts is not None and other.first_ts > self.last_ts:
            gaps += find_gaps(np.array([self.last_ts, other.first_ts], dtype=np.int64), self.timeframe)
        elif other.last_ts is not None and self.first_ts is not None and self.first_ts > other.last_ts:
            gaps += find_gaps(np.array([other.last_ts, self.first_ts], dtype=np.int64), self.timeframe)
        firsts = [t for t in (self.first_ts, other.first_ts) if t is not None]
        lasts = [t for t in (self.last_ts, other.last_ts) if t is not None]
        return IngestReport(
            symbol=self.symbol,
            timeframe=self.timeframe,
            source=self.source if self.source == other.source or not other.source else f"{self.source};{other.source}",
            rows_read=self.rows_read + other.rows_read,
            data_lines=self.data_lines + other.data_lines,
            blank_lines=self.blank_lines + other.blank_lines,
            inserted=self.inserted + other.inserted,
            unchanged=self.unchanged + other.unchanged,
            overwritten=self.overwritten + other.overwritten,
            conflicts=self.conflicts + other.conflicts,
            quarantined=self.quarantined + other.quarantined,
            reasons=dict(reasons),
            gaps=sorted(set(gaps), key=lambda g: g.after_ts),
            first_ts=min(firsts) if firsts else None,
            last_ts=max(lasts) if lasts else None,
            quarantine_path=self.quarantine_path or other.quarantine_path,
            out_of_order=self.out_of_order + other.out_of_order,
        )


def _conflict_rows(conflicts: pd.DataFrame, good: pd.DataFrame, good_lines: np.ndarray) -> pd.DataFrame:
    """Store conflicts (incoming + stored values) as quarantine rows with their source lines."""
    line_by_ts = pd.Series(good_lines, index=good["ts"].to_numpy())
    rows = pd.DataFrame({c: conflicts[c].to_numpy() for c in (*CANDLE_COLUMNS, *STORED_COLUMNS)})
    rows["line"] = line_by_ts.reindex(rows["ts"].to_numpy()).to_numpy()
    rows["reason"] = "conflict_with_stored"
    return rows


def _store_and_report(
    store: CandleStore,
    symbol: str,
    timeframe: Timeframe,
    checked: ValidationResult,
    rows_read: int,
    *,
    data_lines: int,
    blank_lines: int,
    source: str,
    quarantine_dir: Path,
    synthetic: bool,
    overwrite: bool,
    progress: Progress | None,
) -> IngestReport:
    good = checked.good
    report = IngestReport(
        symbol=symbol,
        timeframe=timeframe,
        source=source,
        rows_read=rows_read,
        data_lines=data_lines,
        blank_lines=blank_lines,
    )
    conflict_frames: list[pd.DataFrame] = []
    # One open and one checkpoint of an embedded store's file for all the chunks (none for an empty file).
    with store.batch(write=True) if len(good) else nullcontext():
        for start in range(0, len(good), WRITE_CHUNK_ROWS):
            chunk = good.iloc[start : start + WRITE_CHUNK_ROWS].reset_index(drop=True)
            result = store.write_candles(
                symbol, timeframe, chunk, on_conflict="overwrite" if overwrite else "report", synthetic=synthetic
            )
            report.inserted += result.inserted
            report.unchanged += result.unchanged
            report.overwritten += result.overwritten
            if result.conflict_count:
                conflict_frames.append(result.conflicts)
            if progress is not None:
                progress(start + len(chunk), len(good))

    quarantine = [checked.bad] if len(checked.bad) else []
    if conflict_frames:
        conflicts = _conflict_rows(pd.concat(conflict_frames, ignore_index=True), good, checked.good_lines)
        report.conflicts = len(conflicts)
        quarantine.append(conflicts)
    if quarantine:
        rows = pd.concat(quarantine, ignore_index=True)
        report.quarantine_path = write_quarantine(
            quarantine_dir, symbol, timeframe, source, rows, ingested_at=datetime.now(UTC)
        )
        report.quarantined = len(rows)
        report.reasons = {str(k): int(v) for k, v in rows["reason"].value_counts().items()}
    report.gaps = checked.gaps
    report.out_of_order = checked.out_of_order
    if len(good):
        report.first_ts, report.last_ts = int(good["ts"].iloc[0]), int(good["ts"].iloc[-1])
    return report


def ingest_frame(
    store: CandleStore,
    symbol: str,
    timeframe: Timeframe,
    raw: pd.DataFrame,
    *,
    source: str,
    quarantine_dir: Path,
    synthetic: bool = False,
    overwrite: bool = False,
) -> IngestReport:
    """Validate ``raw`` (candle columns, ts in epoch ms; ``line``/``raw`` optional), store the good candles,
    quarantine the rest. ``source`` names where the rows came from (a path, ``exchange:binance``).
    Synthetic candles may lie in the future; real ones may not open later than now + 1 day."""
    symbol = normalize_symbol(symbol)
    checked = validate_candles(raw, timeframe, latest_ts=NO_LATEST_TS if synthetic else None)
    return _store_and_report(
        store,
        symbol,
        timeframe,
        checked,
        len(raw),
        data_lines=len(raw),
        blank_lines=0,
        source=source,
        quarantine_dir=quarantine_dir,
        synthetic=synthetic,
        overwrite=overwrite,
        progress=None,
    )


def ingest_file(
    store: CandleStore,
    path: Path,
    *,
    quarantine_dir: Path,
    symbol: str | None = None,
    timeframe: Timeframe | None = None,
    fmt: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    timings: dict[str, float] | None = None,
) -> IngestReport:
    """Read, validate and store one candle file. Symbol and timeframe default to what the file name says.

    ``progress(done, total)``: ``done / total`` is the fraction finished (reading is the first half, storing
    the second). ``timings``, when given, receives the seconds of each phase (``read``, ``validate``,
    ``store``: the store write and the quarantine).
    """
    path = Path(path)
    if symbol is None or timeframe is None:
        named_symbol, named_timeframe = infer_series(path)
        symbol = symbol or named_symbol
        timeframe = timeframe or named_timeframe
    symbol = normalize_symbol(symbol)

    def reading(done: int, total: int) -> None:
        if progress is not None and total:
            progress(done * 1000 // total, 2000)

    def storing(done: int, total: int) -> None:
        if progress is not None and total:
            progress(1000 + done * 1000 // total, 2000)

    started = time.perf_counter()
    parsed = read_candle_file(path, fmt, progress=reading)
    read = time.perf_counter()
    checked = validate_candles(parsed, timeframe)
    validated = time.perf_counter()
    report = _store_and_report(
        store,
        symbol,
        timeframe,
        checked,
        parsed.rows,
        data_lines=parsed.data_lines,
        blank_lines=parsed.blank_lines,
        source=str(path),
        quarantine_dir=quarantine_dir,
        synthetic=False,
        overwrite=overwrite,
        progress=storing,
    )
    if timings is not None:
        timings.update(read=read - started, validate=validated - read, store=time.perf_counter() - validated)
    if progress is not None:
        progress(2000, 2000)
    return report


__all__ = ["Gap", "IngestReport", "ingest_file", "ingest_frame"]
