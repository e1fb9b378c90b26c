"""``restore_backup``: put a snapshot back into any store, refusing conflicts, verifying what was written.

Order of work, each step finished before the next starts:

1. the manifest is read and every file's sha256 checked (a damaged snapshot is refused before anything is
   written);
2. the target is checked for conflicts: restore never deletes or overwrites. It refuses when a series of the
   target holds, inside the snapshot's ``[min_ts, max_ts]`` of that series, a candle the snapshot does not
   have or one with other values; when the target's event log reaches past the restore point, or its events
   up to its own last seq differ from the snapshot's; when a quarantine or model file exists with other
   content (a quarantine file that only grew since the backup is kept as is). Candles outside the
   snapshot's range and series or files the snapshot does not know are left alone;
3. candles, events (keeping their sequence numbers), quarantine files and model files are written; data
   already present and identical is counted as unchanged, so restoring twice is harmless;
4. everything is read back from the target and compared with the manifest: per series the row count,
   first/last ts, volume sum and checksum of the target's rows in the snapshot's range, for the events the
   same over ``seq <= restore point``, for files their sha256.

Point in time (``until_seq=N``): the event log is restored up to and including sequence ``N``; candles are
restored whole (as of the backup's cut). Candles are market data, not the pipeline's decisions: keeping all
of them lets a replay from seq ``N`` onwards recompute what happened next from the same inputs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smartmarket.core.errors import DataFormatError, StoreError
from smartmarket.data.frame import CANDLE_COLUMNS
from smartmarket.ops.backup import PARTIAL_SUFFIX, QUARANTINE_DIR, REGISTRY_DIR
from smartmarket.ops.manifest import FileEntry, Manifest, SeriesEntry, read_manifest, sha256_file
from smartmarket.ops.parquet_io import iter_candle_chunks, iter_event_blocks, summarize_event_file
from smartmarket.store.base import Store
from smartmarket.store.checksum import EMPTY, Summary, summarize_candles, summarize_events

ProgressFn = Callable[[str, int, int], None]
_VALUES = CANDLE_COLUMNS[1:]


@dataclass
class ItemCheck:
    """The verification of one restored item: a series, the event log, or a file."""

    name: str
    expected: Summary | None = None
    actual: Summary | None = None
    written: int = 0
    unchanged: int = 0
    ok: bool = False
    note: str = ""


@dataclass
class RestoreReport:
    snapshot: Path
    target_url: str
    restore_point: int
    files_checked: int
    items: list[ItemCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items)


def open_snapshot(snapshot_dir: Path) -> Manifest:
    """The manifest of a complete snapshot; an interrupted backup (``….partial``) is refused."""
    snapshot_dir = Path(snapshot_dir)
    if snapshot_dir.name.endswith(PARTIAL_SUFFIX):
        raise DataFormatError(
            "this is an interrupted backup, not a snapshot",
            where=str(snapshot_dir),
            hint="restore a snapshot-… directory next to it, and delete this one",
        )
    return read_manifest(snapshot_dir)


def verify_snapshot_files(snapshot_dir: Path, manifest: Manifest) -> int:
    """Check that every file in the manifest exists with its recorded size and sha256; returns how many."""
    files = manifest.files()
    for entry in files:
        path = snapshot_dir / entry.path
        if not path.is_file():
            raise DataFormatError(
                f"backup file {entry.path} is missing",
                where=str(snapshot_dir),
                hint="the snapshot is incomplete: restore another snapshot",
            )
        actual = sha256_file(path)
        if path.stat().st_size != entry.bytes or actual != entry.sha256:
            raise DataFormatError(
                f"backup file {entry.path} is damaged: sha256 {actual[:16]}… differs from the manifest's "
                f"{entry.sha256[:16]}…",
                where=str(snapshot_dir),
                hint="this snapshot cannot be trusted: restore another snapshot",
            )
    return len(files)


def restore_backup(
    snapshot_dir: Path,
    target: Store,
    *,
    quarantine_dir: Path | None = None,
    registry_dir: Path | None = None,
    until_seq: int | None = None,
    chunk_rows: int = 200_000,
    progress: ProgressFn | None = None,
) -> RestoreReport:
    """Restore the snapshot at ``snapshot_dir`` into ``target`` (and the files into the given directories)."""
    snapshot_dir = Path(snapshot_dir)
    manifest = open_snapshot(snapshot_dir)
    checked = verify_snapshot_files(snapshot_dir, manifest)
    point = restore_point(manifest, until_seq)
    events_path = snapshot_dir / manifest.events.file.path
    file_targets = _file_targets(manifest, quarantine_dir, registry_dir)

    conflicts = [
        problem
        for entry in manifest.series
        if (problem := _series_conflict(target, entry, snapshot_dir / entry.file.path)) is not None
    ]
    event_problem, events_present = _events_conflict(target, events_path, point)
    if event_problem:
        conflicts.append(event_problem)
    conflicts.extend(p for file, dest in file_targets if (p := _file_conflict(file, dest)) is not None)
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise StoreError(
            f"the target already holds data that differs from the snapshot: {conflicts[0]}{more}",
            where=target.url if not conflicts[0].startswith("file ") else None,
            hint="restore never overwrites: restore into an empty store (--to URL, --home DIR) "
            "or remove the conflicting data first",
        )

    report = RestoreReport(snapshot=snapshot_dir, target_url=target.url, restore_point=point, files_checked=checked)
    for entry in manifest.series:
        report.items.append(
            _restore_series(target, entry, snapshot_dir / entry.file.path, chunk_rows=chunk_rows, progress=progress)
        )
    report.items.append(_restore_events(target, manifest, events_path, point, events_present, progress))
    for file, dest in file_targets:
        report.items.append(_restore_file(snapshot_dir / file.path, file, dest))
    return report


def restore_point(manifest: Manifest, until_seq: int | None) -> int:
    """The last event seq to restore: ``until_seq`` when given (it must lie within the snapshot)."""
    last = manifest.events.last_seq_at_cut
    if until_seq is None:
        return last
    if until_seq < 0 or until_seq > last:
        raise StoreError(
            f"--until-seq {until_seq} is outside the snapshot, whose event log ends at seq {last}",
            hint=f"choose a sequence number between 0 and {last}",
        )
    return until_seq


# ---------------------------------------------------------------------------------------------- conflicts


def _series_conflict(target: Store, entry: SeriesEntry, path: Path) -> str | None:
    """Why the target's rows of this series in the snapshot's range cannot take the snapshot, or None."""
    if target.series_info(entry.symbol, entry.timeframe) is None:
        return None
    low = entry.summary.min_ts
    for chunk in iter_candle_chunks(path):
        high = int(chunk["ts"].iloc[-1]) + 1
        stored = target.read_candles(entry.symbol, entry.timeframe, low, high)
        low = high
        if stored.empty:
            continue
        merged = stored.merge(chunk, on="ts", how="left", suffixes=("", "_snap"), indicator=True)
        missing = merged["_merge"].to_numpy() == "left_only"
        if missing.any():
            first = int(merged["ts"].to_numpy()[missing][0])
            return f"{entry.key} has {int(missing.sum())} candles the snapshot lacks (first ts={first})"
        differs = np.zeros(len(merged), dtype=bool)
        for c in _VALUES:
            a, b = merged[c].to_numpy(), merged[f"{c}_snap"].to_numpy()
            differs |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
        if differs.any():
            first = int(merged["ts"].to_numpy()[differs][0])
            return f"{entry.key} has {int(differs.sum())} candles with other values (first ts={first})"
    return None


def _events_conflict(target: Store, events_path: Path, point: int) -> tuple[str | None, int]:
    """(why the target's event log cannot take the snapshot's up to ``point`` or None, its last seq)."""
    present = target.last_seq()
    if present == 0:
        return None, 0
    if present > point:
        return f"the event log reaches seq {present}, past the restore point {point}", present
    ours = summarize_event_file(events_path, until_seq=present)
    theirs = _target_events(target, present)
    if not theirs.matches(ours):
        return f"the event log up to seq {present} differs from the snapshot's", present
    return None, present


def _target_events(target: Store, last: int, block: int = 50_000) -> Summary:
    total = EMPTY
    seq = 1
    while seq <= last:
        upper = min(seq + block - 1, last)
        total = total.combine(summarize_events(target.read_events(seq, upper)))
        seq = upper + 1
    return total


def _file_targets(
    manifest: Manifest, quarantine_dir: Path | None, registry_dir: Path | None
) -> list[tuple[FileEntry, Path]]:
    """Where each quarantine and model file of the snapshot goes (none when its directory is not given)."""
    pairs: list[tuple[FileEntry, Path]] = []
    for entries, prefix, directory in (
        (manifest.quarantine, QUARANTINE_DIR, quarantine_dir),
        (manifest.registry, REGISTRY_DIR, registry_dir),
    ):
        if directory is None:
            continue
        for entry in entries:
            pairs.append((entry, Path(directory) / Path(entry.path).relative_to(prefix)))
    return pairs


def _grows_only(entry: FileEntry) -> bool:
    """Quarantine files are append-only: one that only grew since the backup is still consistent with it."""
    return entry.path.startswith(f"{QUARANTINE_DIR}/")


def _file_conflict(entry: FileEntry, dest: Path) -> str | None:
    if not dest.exists():
        return None
    if dest.is_file():
        size = dest.stat().st_size
        if size == entry.bytes and sha256_file(dest) == entry.sha256:
            return None
        if _grows_only(entry) and size > entry.bytes and sha256_file(dest, limit=entry.bytes) == entry.sha256:
            return None
    return f"file {dest} exists with other content than the snapshot's {entry.path}"


# ---------------------------------------------------------------------------------------------- writing


def _restore_series(
    target: Store, entry: SeriesEntry, path: Path, *, chunk_rows: int, progress: ProgressFn | None
) -> ItemCheck:
    item = ItemCheck(name=entry.key, expected=entry.summary)
    for chunk in iter_candle_chunks(path):
        result = target.write_candles(entry.symbol, entry.timeframe, chunk, synthetic=entry.synthetic)
        if result.conflict_count:
            first = int(result.conflicts["ts"].iloc[0])
            raise StoreError(
                f"{result.conflict_count} candles of {entry.key} changed in the target during the restore "
                f"(first ts={first})",
                where=target.url,
                hint="stop writers to the target while restoring, then restore again",
            )
        item.written += result.inserted
        item.unchanged += result.unchanged
        if progress and entry.summary.min_ts is not None and entry.summary.max_ts is not None:
            span = entry.summary.max_ts - entry.summary.min_ts + 1
            progress(entry.key, int(chunk["ts"].iloc[-1]) - entry.summary.min_ts + 1, span)
    item.actual = _target_series_summary(target, entry, chunk_rows)
    item.ok = item.actual.matches(entry.summary)
    return item


def _target_series_summary(target: Store, entry: SeriesEntry, chunk_rows: int) -> Summary:
    """Summary of the target's rows of the series within the snapshot's ``[min_ts, max_ts]``, read in chunks."""
    if entry.summary.min_ts is None or entry.summary.max_ts is None:
        return EMPTY
    total = EMPTY
    span = chunk_rows * entry.timeframe.ms
    start, end = entry.summary.min_ts, entry.summary.max_ts + 1
    while start < end:
        stop = min(start + span, end)
        total = total.combine(summarize_candles(target.read_candles(entry.symbol, entry.timeframe, start, stop)))
        start = stop
    return total


def _restore_events(
    target: Store, manifest: Manifest, events_path: Path, point: int, present: int, progress: ProgressFn | None
) -> ItemCheck:
    full = point == manifest.events.last_seq_at_cut
    expected = manifest.events.summary if full else summarize_event_file(events_path, until_seq=point)
    item = ItemCheck(name="events", expected=expected, note="" if full else f"until seq {point}")
    for block in iter_event_blocks(events_path, until_seq=point):
        fresh = [e for e in block if e.seq > present]
        item.unchanged += len(block) - len(fresh)
        if fresh:
            item.written += target.import_events(fresh)
        if progress:
            progress("events", block[-1].seq, point)
    item.actual = _target_events(target, point)
    item.ok = item.actual.matches(expected)
    return item


def _restore_file(source: Path, entry: FileEntry, dest: Path) -> ItemCheck:
    item = ItemCheck(name=entry.path)
    if dest.is_file() and dest.stat().st_size >= entry.bytes:
        item.unchanged = 1  # identical, or a quarantine file that grew since (checked for conflicts above)
        item.note = "kept" if dest.stat().st_size == entry.bytes else "kept (grew since the backup)"
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.restoring")
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
        item.written = 1
    item.ok = sha256_file(dest, limit=entry.bytes) == entry.sha256
    return item


__all__ = [
    "ItemCheck",
    "RestoreReport",
    "open_snapshot",
    "restore_backup",
    "restore_point",
    "verify_snapshot_files",
]
