"""``create_backup``: a consistent, verified, versioned snapshot of a store and of the files beside it.

Consistency while the pipeline keeps running: the *cut* is taken before anything is copied — for each
candle series its ``first_ts``/``last_ts`` as listed at that moment, for the event log its ``last_seq``,
for each quarantine file its size. Only candles with ``first_ts <= ts <= last_ts`` of series that existed at
the cut, events with ``seq <= last_seq`` and quarantine bytes up to the last complete line below the size
are exported. Appends are atomic in every store (one transaction per ``write_candles`` / ``append_events``
call, the series bounds updated in the same transaction), so rows written after the cut are excluded and a
write is never half in the snapshot. (What the cut cannot freeze: a candle *overwritten* inside the cut
range, or an event imported with a lower seq, while the backup runs; neither happens in normal operation.)

Every Parquet file is read back and its summary compared with what was read from the store before the
snapshot is finished. ``manifest.json`` carries the sha256 of its own canonical JSON (``manifest_sha256``,
see ``ops.manifest``), checked first by ``restore``. Everything is written into ``DIR/.snapshot-….partial``
and renamed to ``DIR/snapshot-<UTC time>-<id>`` only after ``manifest.json`` is written and synced, so an
interrupted backup never looks complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from smartmarket import __version__
from smartmarket.core.errors import StoreError
from smartmarket.core.safe_files import unsafe_reason
from smartmarket.data.quarantine import SUFFIX as QUARANTINE_SUFFIX
from smartmarket.ops.durable import fsync_dir, fsync_file
from smartmarket.ops.manifest import (
    EventsEntry,
    FileEntry,
    Manifest,
    SeriesEntry,
    file_entry,
    redact_url,
    write_manifest,
)
from smartmarket.ops.parquet_io import (
    DEFAULT_ZSTD_LEVEL,
    CandleFileWriter,
    EventFileWriter,
    summarize_candle_file,
    summarize_event_file,
)
from smartmarket.store.base import SeriesInfo, Store
from smartmarket.store.checksum import Summary

_log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
"""``progress(task, done, total)``: called after each exported chunk; ``task`` names a series or ``events``."""

SNAPSHOT_PREFIX = "snapshot-"
PARTIAL_SUFFIX = ".partial"
CANDLES_DIR = "candles"
EVENTS_FILE = "events.parquet"
QUARANTINE_DIR = "quarantine"
REGISTRY_DIR = "models"


@dataclass(frozen=True, slots=True)
class Cut:
    """The snapshot's boundary, fixed before any row is copied."""

    series: list[SeriesInfo]
    last_seq: int
    quarantine_sizes: dict[Path, int]


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    manifest: Manifest


def take_cut(store: Store, quarantine_dir: Path | None) -> Cut:
    """Fix what the snapshot will contain: series bounds, last event seq, quarantine file sizes."""
    series = store.list_series()
    last_seq = store.last_seq()
    sizes: dict[Path, int] = {}
    if quarantine_dir is not None and quarantine_dir.is_dir():
        for path in sorted(quarantine_dir.glob(f"*{QUARANTINE_SUFFIX}")):
            sizes[path] = path.stat().st_size
    return Cut(series=series, last_seq=last_seq, quarantine_sizes=sizes)


def snapshot_name(now: datetime | None = None) -> str:
    """``snapshot-20250101T120000Z-1a2b3c4d``: sorts by time, unique by its random suffix."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{SNAPSHOT_PREFIX}{when:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def create_backup(
    store: Store,
    to_dir: Path,
    *,
    quarantine_dir: Path | None = None,
    registry_dir: Path | None = None,
    chunk_rows: int = 200_000,
    event_chunk: int = 50_000,
    zstd_level: int = DEFAULT_ZSTD_LEVEL,
    progress: ProgressFn | None = None,
) -> BackupResult:
    """Snapshot ``store`` (plus quarantine files and the model registry directory) into a new directory under
    ``to_dir``; returns its path and manifest. Raises ``StoreError`` when a file read back differs."""
    started = datetime.now(UTC)
    cut = take_cut(store, quarantine_dir)
    name = snapshot_name(started)
    to_dir = Path(to_dir)
    staging = to_dir / f".{name}{PARTIAL_SUFFIX}"
    staging.mkdir(parents=True)
    try:
        series = [
            export_series(store, info, staging, chunk_rows=chunk_rows, zstd_level=zstd_level, progress=progress)
            for info in cut.series
        ]
        events = export_events(
            store, cut.last_seq, staging, event_chunk=event_chunk, zstd_level=zstd_level, progress=progress
        )
        quarantine = _copy_quarantine(cut.quarantine_sizes, staging / QUARANTINE_DIR)
        registry = _copy_registry(registry_dir, staging / REGISTRY_DIR)
        manifest = Manifest(
            snapshot_id=name.removeprefix(SNAPSHOT_PREFIX),
            created_at=started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            source_store=redact_url(store.url),
            series=series,
            events=events,
            quarantine=quarantine,
            registry=registry,
            smartmarket_version=__version__,
        )
        write_manifest(staging, manifest)
        _fsync_tree(staging)
        final = to_dir / name
        os.rename(staging, final)
        fsync_dir(to_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BackupResult(path=final, manifest=manifest)


def export_series(
    store: Store,
    info: SeriesInfo,
    directory: Path,
    *,
    chunk_rows: int = 200_000,
    zstd_level: int = DEFAULT_ZSTD_LEVEL,
    progress: ProgressFn | None = None,
) -> SeriesEntry:
    """Write the candles of ``info`` within its listed ``[first_ts, last_ts]`` to ``directory/candles/``,
    in time chunks of ``chunk_rows`` candles, then read the file back and check it."""
    key = f"{info.symbol}/{info.timeframe.value}"
    path = directory / CANDLES_DIR / f"{info.symbol}-{info.timeframe.value}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    span = chunk_rows * info.timeframe.ms
    end_all = info.last_ts + info.timeframe.ms  # half-open end just past the cut's last candle
    with CandleFileWriter(path, symbol=info.symbol, timeframe=info.timeframe.value, level=zstd_level) as writer:
        start = info.first_ts
        while start < end_all:
            stop = min(start + span, end_all)
            writer.write(store.read_candles(info.symbol, info.timeframe, start, stop))
            if progress:
                progress(key, stop - info.first_ts, end_all - info.first_ts)
            start = stop
    _check_read_back(path, writer.summary, summarize_candle_file(path))
    return SeriesEntry(
        symbol=info.symbol,
        timeframe=info.timeframe,
        synthetic=info.synthetic,
        cut_ts=info.last_ts,
        summary=writer.summary,
        file=file_entry(directory, path),
    )


def export_events(
    store: Store,
    last_seq: int,
    directory: Path,
    *,
    event_chunk: int = 50_000,
    zstd_level: int = DEFAULT_ZSTD_LEVEL,
    progress: ProgressFn | None = None,
) -> EventsEntry:
    """Write events ``seq <= last_seq`` to ``directory/events.parquet`` in blocks, then read it back and check."""
    path = directory / EVENTS_FILE
    with EventFileWriter(path, level=zstd_level) as writer:
        seq = 1
        while seq <= last_seq:
            upper = min(seq + event_chunk - 1, last_seq)
            writer.write(store.read_events(seq, upper))
            if progress:
                progress("events", upper, last_seq)
            seq = upper + 1
    _check_read_back(path, writer.summary, summarize_event_file(path))
    return EventsEntry(last_seq_at_cut=last_seq, summary=writer.summary, file=file_entry(directory, path))


def _check_read_back(path: Path, written: Summary, read_back: Summary) -> None:
    if not written.matches(read_back):
        raise StoreError(
            f"backup file read back differs from the store rows written to it ({written} vs {read_back})",
            where=str(path),
            hint="check the disk holding the backup directory, then run the backup again",
        )


def _copy_quarantine(sizes: dict[Path, int], target: Path) -> list[FileEntry]:
    """Copy each quarantine file up to its size at the cut, cut back to the last complete line."""
    entries: list[FileEntry] = []
    for source, size in sizes.items():
        with open(source, "rb") as fh:
            data = fh.read(size)
        data = data[: data.rfind(b"\n") + 1]  # a line being appended at the cut is left out whole
        target.mkdir(parents=True, exist_ok=True)
        dest = target / source.name
        dest.write_bytes(data)
        entries.append(file_entry(target.parent, dest))
    return entries


def _copy_registry(registry_dir: Path | None, target: Path) -> list[FileEntry]:
    """Copy every file of the model registry, skipping models still being saved (hidden staging folders)
    and temporary files. Files ``restore`` would refuse (pickles, unknown kinds; ``core.safe_files``) are
    copied too, with one WARNING line naming the first."""
    if registry_dir is None or not registry_dir.is_dir():
        return []
    entries: list[FileEntry] = []
    unsafe: list[str] = []
    for source in sorted(registry_dir.rglob("*")):
        relative = source.relative_to(registry_dir)
        if not source.is_file() or any(part.startswith(".") for part in relative.parts) or source.suffix == ".tmp":
            continue
        dest = target / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        entries.append(file_entry(target.parent, dest))
        if (reason := unsafe_reason(dest)) is not None:
            unsafe.append(f"{relative.as_posix()} ({reason})")
    if unsafe:  # copied as they are (the home is trusted), but restore refuses a snapshot holding them
        more = f" and {len(unsafe) - 1} more" if len(unsafe) > 1 else ""
        _log.warning(
            "the snapshot holds model files restore will refuse: %s%s; run `smartmarket models upgrade`, "
            "then back up again",
            unsafe[0],
            more,
        )
    return entries


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` to disk before the snapshot is renamed into place."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            fsync_file(path)
        else:
            fsync_dir(path)
    fsync_dir(root)


__all__ = [
    "CANDLES_DIR",
    "EVENTS_FILE",
    "PARTIAL_SUFFIX",
    "QUARANTINE_DIR",
    "REGISTRY_DIR",
    "SNAPSHOT_PREFIX",
    "BackupResult",
    "Cut",
    "ProgressFn",
    "create_backup",
    "export_events",
    "export_series",
    "snapshot_name",
    "take_cut",
]
