"""``restore_backup``: put a snapshot back into any store, verifying the whole snapshot before anything is
written, refusing conflicts, and verifying what was written.

A snapshot is not trusted: it may come from another machine, have been edited, or be damaged. Order of work,
each step finished before the next starts:

1. **The snapshot, before anything is written** (:func:`stage_snapshot`, no store or target folder is touched):

   a. an interrupted backup (``….partial``) is refused; ``manifest.json`` is parsed and its own checksum
      (``manifest_sha256``) checked: a manifest edited or damaged is refused. A manifest written before that
      field existed is accepted with one WARNING line (steps b-e still check everything it lists);
   b. the layout: every path the manifest lists is unique, inside its folder (``candles/``, ``quarantine/``,
      ``models/``, the events file at the top) and present as a regular file; a file the manifest does not
      list, or any symbolic link, is refused;
   c. the model files (``models/``) are checked with ``smartmarket.core.safe_files``: a pickle or a file of an
      unknown kind is refused by name (loading a pickle runs code);
   d. every listed file is copied into a private staging directory (mode 0700, under the system temporary
      directory or ``staging_dir``), its size and sha256 computed from the very bytes copied and compared
      with the manifest; from here on only the staged copies are read, so the snapshot cannot change between
      the check and the restore;
   e. every row is read back from the staged Parquet files and compared with the manifest: per series its
      symbol/timeframe, row count, first/last ts, volume sum and checksum; for the events the same over the
      whole log (each event is parsed, a malformed one is refused with its seq); the staged model files are
      checked again.

   Any refusal here is a ``DataFormatError`` (``UnsafeFileError`` for a model file) naming the file: the CLI
   prints it as one line and exits with 2, and the target is exactly as it was.
2. the target is checked for conflicts: restore never deletes or overwrites. It refuses when a series of the
   target holds, inside the snapshot's ``[min_ts, max_ts]`` of that series, a candle the snapshot does not
   have or one with other values; when the target's event log reaches past the restore point, or its events
   up to its own last seq differ from the snapshot's; when a quarantine or model file exists with other
   content (a quarantine file that only grew since the backup is kept as is). Candles outside the
   snapshot's range and series or files the snapshot does not know are left alone (``StoreError``, exit 2);
3. candles, events (keeping their sequence numbers), quarantine files and model files are written from the
   staged copies; data already present and identical is counted as unchanged, so restoring twice is harmless;
4. everything is read back from the target and compared with the manifest: per series the row count,
   first/last ts, volume sum and checksum of the target's rows in the snapshot's range, for the events the
   same over ``seq <= restore point``, for files their sha256 (``RestoreReport.ok``; the CLI exits with 4
   when it is false).

What this proves: the restored data is exactly the data the manifest describes. The manifest checksum guards
against damage and careless edits, not against someone who rewrites the manifest and its checksum together:
a snapshot is only as trustworthy as the place it was kept (see docs/operations.md).

Point in time (``until_seq=N``): the event log is restored up to and including sequence ``N``; candles are
restored whole (as of the backup's cut). Candles are market data, not the pipeline's decisions: keeping all
of them lets a replay from seq ``N`` onwards recompute what happened next from the same inputs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from smartmarket.core.errors import ConfigError, DataFormatError, StoreError
from smartmarket.core.frame import CANDLE_COLUMNS
from smartmarket.core.redaction import redact_url
from smartmarket.core.safe_files import UnsafeFileError, find_unsafe_files, refuse_unsafe_files
from smartmarket.ops.backup import CANDLES_DIR, PARTIAL_SUFFIX, QUARANTINE_DIR, REGISTRY_DIR
from smartmarket.ops.manifest import (
    CHECKSUM_FIELD,
    MANIFEST_FILE,
    FileEntry,
    Manifest,
    SeriesEntry,
    read_manifest,
    sha256_file,
)
from smartmarket.ops.parquet_io import (
    candle_file_series,
    iter_candle_chunks,
    iter_event_blocks,
    summarize_candle_file,
    summarize_event_file,
)
from smartmarket.store.base import Store
from smartmarket.store.checksum import EMPTY, Summary, summarize_candles, summarize_events

ProgressFn = Callable[[str, int, int], None]
_VALUES = CANDLE_COLUMNS[1:]
_log = logging.getLogger(__name__)

UNTRUSTED_HINT = "this snapshot cannot be trusted: restore another snapshot"
MODEL_FILES_HINT = (
    "model files in a snapshot must be data (JSON, LightGBM text, NumPy, safetensors): restore another snapshot, "
    "or one taken after `smartmarket models upgrade`"
)


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
    target_url: str  # redacted
    restore_point: int
    files_checked: int
    items: list[ItemCheck] = field(default_factory=list)
    manifest_checked: bool = True  # False: an older manifest without its own checksum

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items)


@dataclass
class StagedSnapshot:
    """A snapshot verified in full (manifest checksum, layout, model files, every file's sha256 and every row)
    whose files were copied into the private directory ``root``; the restore reads only these copies.
    Use it as a context manager, or call :meth:`close`, to remove the staged copies."""

    source: Path
    manifest: Manifest
    root: Path
    files_checked: int

    def path(self, entry: FileEntry) -> Path:
        return self.root / entry.path

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> StagedSnapshot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_snapshot(snapshot_dir: Path) -> Manifest:
    """The manifest of a complete snapshot, its own checksum checked; an interrupted backup is refused."""
    snapshot_dir = Path(snapshot_dir)
    if snapshot_dir.name.endswith(PARTIAL_SUFFIX):
        raise DataFormatError(
            "this is an interrupted backup, not a snapshot",
            where=str(snapshot_dir),
            hint="restore a snapshot-… directory next to it, and delete this one",
        )
    return read_manifest(snapshot_dir)


def check_layout(snapshot_dir: Path, manifest: Manifest) -> None:
    """Every listed path unique, in its folder and a regular file; nothing unlisted, no symbolic link."""
    snapshot_dir = Path(snapshot_dir)
    where = str(snapshot_dir / MANIFEST_FILE)
    places = [
        *((e.file, f"{CANDLES_DIR}/") for e in manifest.series),
        (manifest.events.file, ""),
        *((f, f"{QUARANTINE_DIR}/") for f in manifest.quarantine),
        *((f, f"{REGISTRY_DIR}/") for f in manifest.registry),
    ]
    listed: set[str] = set()
    for entry, folder in places:
        inside = entry.path.startswith(folder) if folder else "/" not in entry.path
        if not inside or entry.path in listed or entry.path == MANIFEST_FILE or entry.path.endswith("/"):
            problem = (
                "is listed twice" if entry.path in listed else f"is not where such a file belongs ({folder or 'top'})"
            )
            raise DataFormatError(f"backup manifest entry {entry.path} {problem}", where=where, hint=UNTRUSTED_HINT)
        listed.add(entry.path)
    for folder, dirs, files in os.walk(snapshot_dir):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            relative = path.relative_to(snapshot_dir).as_posix()
            if path.is_symlink():
                raise DataFormatError(
                    f"snapshot entry {relative} is a symbolic link (a snapshot holds only regular files)",
                    where=str(snapshot_dir),
                    hint=UNTRUSTED_HINT,
                )
            if name in files and relative != MANIFEST_FILE and relative not in listed:
                raise DataFormatError(
                    f"snapshot file {relative} is not listed in its manifest",
                    where=str(snapshot_dir),
                    hint="a snapshot holds exactly the files its manifest lists: restore another snapshot",
                )
    for entry, _ in places:
        if not (snapshot_dir / entry.path).is_file():
            raise DataFormatError(
                f"backup file {entry.path} is missing",
                where=str(snapshot_dir),
                hint="the snapshot is incomplete: restore another snapshot",
            )


def stage_snapshot(
    snapshot_dir: Path, *, staging_dir: Path | None = None, progress: ProgressFn | None = None
) -> StagedSnapshot:
    """Verify the snapshot at ``snapshot_dir`` in full and copy it into a private staging directory (a new
    folder under ``staging_dir``, default the system temporary directory); see the module doc, step 1.
    Nothing outside the staging directory is written; it is removed again when a check fails."""
    snapshot_dir = Path(snapshot_dir)
    manifest = open_snapshot(snapshot_dir)
    if not manifest.checksum:
        _log.warning(
            "snapshot %s has no %s (written by an older smartmarket): its files and rows are still verified",
            snapshot_dir.name,
            CHECKSUM_FIELD,
        )
    check_layout(snapshot_dir, manifest)
    if (snapshot_dir / REGISTRY_DIR).is_dir():
        refuse_unsafe_files(snapshot_dir / REGISTRY_DIR, hint=MODEL_FILES_HINT)
    if staging_dir is not None and not Path(staging_dir).is_dir():
        raise ConfigError(
            "the staging directory does not exist", where=str(staging_dir), hint="create it or pass another one"
        )
    root = Path(tempfile.mkdtemp(prefix="smartmarket-restore-", dir=staging_dir))
    try:
        files = manifest.files()
        for done, entry in enumerate(files, 1):
            _stage_file(snapshot_dir, entry, root)
            if progress:
                progress("verify files", done, len(files))
        unsafe = find_unsafe_files(root / REGISTRY_DIR) if (root / REGISTRY_DIR).is_dir() else []
        if unsafe:  # the copies, not only the originals (a file could have been swapped in between)
            path, reason = unsafe[0]
            shown = snapshot_dir / path.relative_to(root)
            raise UnsafeFileError(f"refusing to load {path.name}: {reason}", where=str(shown), hint=MODEL_FILES_HINT)
        verify_rows(root, manifest, where=snapshot_dir, progress=progress)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return StagedSnapshot(source=snapshot_dir, manifest=manifest, root=root, files_checked=len(files))


def _stage_file(snapshot_dir: Path, entry: FileEntry, root: Path, block: int = 1 << 20) -> None:
    """Copy one listed file into ``root``, hashing the bytes copied; refuse it when its size or sha256 differs
    from the manifest's (reading stops as soon as it is longer than listed)."""
    dest = root / entry.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd = os.open(snapshot_dir / entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as src, open(dest, "xb") as out:
        while chunk := src.read(block):
            size += len(chunk)
            if size > entry.bytes:
                break
            digest.update(chunk)
            out.write(chunk)
    actual = digest.hexdigest()
    if size != entry.bytes:
        raise DataFormatError(
            f"backup file {entry.path} is damaged: its size differs from the manifest's {entry.bytes} bytes",
            where=str(snapshot_dir),
            hint=UNTRUSTED_HINT,
        )
    if actual != entry.sha256.lower():
        raise DataFormatError(
            f"backup file {entry.path} is damaged: sha256 {actual[:16]}… differs from the manifest's "
            f"{entry.sha256[:16]}…",
            where=str(snapshot_dir),
            hint=UNTRUSTED_HINT,
        )


def _describe(summary: Summary) -> str:
    return f"{summary.rows} rows {summary.min_ts}…{summary.max_ts} checksum {summary.checksum:016x}"


def verify_rows(root: Path, manifest: Manifest, *, where: Path, progress: ProgressFn | None = None) -> None:
    """Read every row of the (staged) Parquet files under ``root`` back and compare it with the manifest."""
    for done, entry in enumerate(manifest.series, 1):
        path = root / entry.file.path
        symbol, timeframe = candle_file_series(path)
        if (symbol, timeframe) != (entry.symbol, entry.timeframe.value):
            raise DataFormatError(
                f"backup file {entry.file.path} holds {symbol or '?'}/{timeframe or '?'}, "
                f"its manifest says {entry.key}",
                where=str(where),
                hint=UNTRUSTED_HINT,
            )
        _compare_rows(entry.file.path, summarize_candle_file(path), entry.summary, where)
        if progress:
            progress("verify rows", done, len(manifest.series) + 1)
    events = manifest.events
    _compare_rows(events.file.path, summarize_event_file(root / events.file.path), events.summary, where)
    if events.summary.max_ts is not None and events.summary.max_ts > events.last_seq_at_cut:
        raise DataFormatError(
            f"backup file {events.file.path} reaches seq {events.summary.max_ts}, past the manifest's cut "
            f"{events.last_seq_at_cut}",
            where=str(where),
            hint=UNTRUSTED_HINT,
        )
    if progress:
        progress("verify rows", len(manifest.series) + 1, len(manifest.series) + 1)


def _compare_rows(name: str, actual: Summary, expected: Summary, where: Path) -> None:
    if not actual.matches(expected):
        raise DataFormatError(
            f"backup file {name} does not hold the rows its manifest lists: read back {_describe(actual)}, "
            f"manifest {_describe(expected)}",
            where=str(where),
            hint=UNTRUSTED_HINT,
        )


def file_conflicts(manifest: Manifest, quarantine_dir: Path | None, registry_dir: Path | None) -> list[str]:
    """Why quarantine or model files of the snapshot cannot be restored into these folders (empty: they can)."""
    return [
        p for file, dest in _file_targets(manifest, quarantine_dir, registry_dir) if (p := _file_conflict(file, dest))
    ]


def refuse_conflicts(conflicts: list[str], target_url: str | None) -> None:
    """Raise the one-line ``StoreError`` for the first conflict (and how many more), if there is any."""
    if not conflicts:
        return
    more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
    raise StoreError(
        f"the target already holds data that differs from the snapshot: {conflicts[0]}{more}",
        where=target_url if not conflicts[0].startswith("file ") else None,
        hint="restore never overwrites: restore into an empty store (--to URL, --home DIR) "
        "or remove the conflicting data first",
    )


def restore_backup(
    snapshot: Path | StagedSnapshot,
    target: Store,
    *,
    quarantine_dir: Path | None = None,
    registry_dir: Path | None = None,
    until_seq: int | None = None,
    chunk_rows: int = 200_000,
    staging_dir: Path | None = None,
    progress: ProgressFn | None = None,
) -> RestoreReport:
    """Restore a snapshot (a directory, verified and staged here first; or one already staged) into
    ``target`` and the files into the given directories."""
    if not isinstance(snapshot, StagedSnapshot):
        manifest = open_snapshot(Path(snapshot))
        restore_point(manifest, until_seq)  # a bad --until-seq is refused before the copy
        with stage_snapshot(Path(snapshot), staging_dir=staging_dir, progress=progress) as staged:
            return restore_backup(
                staged,
                target,
                quarantine_dir=quarantine_dir,
                registry_dir=registry_dir,
                until_seq=until_seq,
                chunk_rows=chunk_rows,
                progress=progress,
            )
    staged, manifest = snapshot, snapshot.manifest
    point = restore_point(manifest, until_seq)
    events_path = staged.path(manifest.events.file)
    file_targets = _file_targets(manifest, quarantine_dir, registry_dir)

    conflicts = [
        problem
        for entry in manifest.series
        if (problem := _series_conflict(target, entry, staged.path(entry.file))) is not None
    ]
    event_problem, events_present = _events_conflict(target, events_path, point)
    if event_problem:
        conflicts.append(event_problem)
    conflicts.extend(p for file, dest in file_targets if (p := _file_conflict(file, dest)) is not None)
    refuse_conflicts(conflicts, target.url)

    report = RestoreReport(
        snapshot=staged.source,
        target_url=redact_url(target.url),
        restore_point=point,
        files_checked=staged.files_checked,
        manifest_checked=bool(manifest.checksum),
    )
    for entry in manifest.series:
        report.items.append(
            _restore_series(target, entry, staged.path(entry.file), chunk_rows=chunk_rows, progress=progress)
        )
    report.items.append(_restore_events(target, manifest, events_path, point, events_present, progress))
    for file, dest in file_targets:
        report.items.append(_restore_file(staged.path(file), file, dest))
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
    "MODEL_FILES_HINT",
    "ItemCheck",
    "RestoreReport",
    "StagedSnapshot",
    "check_layout",
    "file_conflicts",
    "open_snapshot",
    "refuse_conflicts",
    "restore_backup",
    "restore_point",
    "stage_snapshot",
    "verify_rows",
]
