"""Event-log retention: archive the oldest events to Parquet, verify the archive, only then trim; read it back.

Trimming always removes a *prefix* of the log: every event with ``seq <= cut``, so a replay of
what remains is consistent. The cut comes from the ``RetentionPolicy``: with ``keep_age_ms`` it stops before
the first event (in sequence order) whose ``ts_event`` is not older than ``now - keep_age_ms``; with
``keep_last`` the newest N events stay; with both, the smaller cut wins. The newest event always stays:
every store numbers the next event from the highest one left.

Order of work, each step finished before the next starts:

1. plan the cut ``[first, cut]`` (``plan_event_trim``);
2. write the events to ``ARCHIVE/events/events-<first>-<cut>.parquet`` (the columns of a backup's
   ``events.parquet``: ``seq, type, ts_event, event``), read the file back and compare its row count and
   order-independent checksum with the rows read from the store, rename it into place, then write its
   sidecar ``….parquet.json`` (format, seq range, summary, sha256) — a segment is complete only once the
   sidecar exists;
3. delete exactly those events (``EventStore.delete_events_through(cut, expected=rows)``, one transaction).

A crash between 2 and 3 loses nothing (the events are still in the store, and in a complete segment); the
next run finds that *pending* segment, verifies it against the store again and reuses it instead of writing
the rows twice. A half-written file (no sidecar) or a pending segment that no longer fits the plan is
removed — its events are still in the store. An archive segment that overlaps events already trimmed is
never touched.

``read_archive`` yields the archived events in sequence order (each segment's sha256 checked first);
``import_archive`` puts them back into a store whose log is empty or ends before the archive starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from smartmarket.core.errors import DataFormatError, StoreError
from smartmarket.core.timeutil import now_ms as _now_ms
from smartmarket.ops.durable import staged_file
from smartmarket.ops.manifest import file_entry, redact_url
from smartmarket.ops.parquet_io import DEFAULT_ZSTD_LEVEL, EventFileWriter, iter_event_blocks, summarize_event_file
from smartmarket.ops.retention.policy import RetentionPolicy
from smartmarket.ops.retention.segments import (
    EVENTS_DIR,
    PARTIAL_SUFFIX,
    EventSegment,
    event_segment_name,
    list_event_segments,
    orphan_files,
    utc_now,
    verify_segment_file,
    write_json_atomic,
)
from smartmarket.store.base import EventStore, StoredEvent
from smartmarket.store.checksum import EMPTY, Summary, summarize_events

ProgressFn = Callable[[str, int, int], None]
"""``progress(task, done, total)``: ``task`` is ``events`` or ``dead letters <SYMBOL>``."""


@dataclass(frozen=True, slots=True)
class EventPlan:
    """Trim every event with ``from_seq <= seq <= through_seq`` (``from_seq`` is the log's first seq)."""

    from_seq: int
    through_seq: int
    last_seq: int


def plan_event_trim(store: EventStore, policy: RetentionPolicy, *, now_ms: int | None = None) -> EventPlan | None:
    """The prefix of the log the policy lets go, or None when nothing is to be trimmed."""
    if not policy.trims_events:
        return None
    if not store.trims_events:
        # Let the adapter say why (a one-line StoreError with a hint).
        store.delete_events_through(0)
    last = store.last_seq()
    head = store.read_events(limit=1)
    if last == 0 or not head:
        return None
    first = head[0].seq
    cut = last - 1  # the newest event always stays
    if policy.keep_last is not None:
        boundary = store.nth_newest_seq(policy.keep_last + 1)
        cut = min(cut, boundary if boundary is not None else 0)
    if policy.keep_age_ms is not None:
        cutoff = (_now_ms() if now_ms is None else now_ms) - policy.keep_age_ms
        young = store.read_events(start=cutoff, limit=1)
        cut = min(cut, young[0].seq - 1 if young else last)
    if cut < first:
        return None
    return EventPlan(from_seq=first, through_seq=cut, last_seq=last)


def store_summary(
    store: EventStore, from_seq: int, through_seq: int, *, block: int = 50_000, progress: ProgressFn | None = None
) -> Summary:
    """Summary of the store's events with ``from_seq <= seq <= through_seq``, read in blocks."""
    total = EMPTY
    seq = from_seq
    while seq <= through_seq:
        upper = min(seq + block - 1, through_seq)
        total = total.combine(summarize_events(store.read_events(seq, upper)))
        if progress:
            progress("events", upper - from_seq + 1, through_seq - from_seq + 1)
        seq = upper + 1
    return total


def archive_events(
    store: EventStore,
    archive_dir: Path,
    from_seq: int,
    through_seq: int,
    *,
    event_chunk: int = 50_000,
    zstd_level: int = DEFAULT_ZSTD_LEVEL,
    progress: ProgressFn | None = None,
) -> EventSegment:
    """Write the store's events ``from_seq..through_seq`` to a new verified segment (the archive step alone:
    nothing is deleted). Raises ``StoreError`` when the file read back differs from the rows read."""
    archive_dir = Path(archive_dir)
    folder = archive_dir / EVENTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / event_segment_name(from_seq, through_seq)
    with staged_file(final, PARTIAL_SUFFIX) as staging:
        with EventFileWriter(staging, level=zstd_level) as writer:
            seq = from_seq
            while seq <= through_seq:
                upper = min(seq + event_chunk - 1, through_seq)
                writer.write(store.read_events(seq, upper))
                if progress:
                    progress("events", upper - from_seq + 1, through_seq - from_seq + 1)
                seq = upper + 1
        read_back = summarize_event_file(staging)
        if writer.summary.rows == 0 or not writer.summary.matches(read_back):
            raise StoreError(
                f"archive file read back differs from the events read from the store ({writer.summary} vs {read_back})",
                where=str(staging),
                hint="check the disk holding the archive directory, then run the retention again",
            )
    segment = EventSegment(
        archive_dir=archive_dir,
        from_seq=from_seq,
        through_seq=through_seq,
        summary=writer.summary,
        file=file_entry(archive_dir, final),
        created_at=utc_now(),
        source_store=redact_url(getattr(store, "url", "")),
    )
    write_json_atomic(segment.sidecar, segment.to_dict())
    return segment


def segment_matches_store(store: EventStore, segment: EventSegment, *, block: int = 50_000) -> bool:
    """The segment's file is intact (sha256), its rows are what its sidecar says, and the store's events in its
    range are the same rows (count and checksum)."""
    try:
        verify_segment_file(segment.path, segment.file)
        if not summarize_event_file(segment.path).matches(segment.summary):
            return False
    except DataFormatError:
        return False
    return store_summary(store, segment.from_seq, segment.through_seq, block=block).matches(segment.summary)


@dataclass
class EventTrim:
    """What retention did (or, in a dry run, would do) to the event log."""

    from_seq: int
    through_seq: int
    rows: int
    deleted: int = 0
    written: list[Path] = field(default_factory=list)
    reused: list[Path] = field(default_factory=list)


def trim_events(
    store: EventStore,
    policy: RetentionPolicy,
    archive_dir: Path,
    last_seq: int,
    now: int,
    dry_run: bool,
    event_chunk: int,
    zstd_level: int,
    progress: ProgressFn | None,
) -> tuple[list[Path], EventTrim | None]:
    """Archive, verify, then trim what ``policy`` lets go of the log (``last_seq``: the store's last seq before
    the run); returns the leftovers of interrupted runs removed (their rows stayed stored) and the trim, if any."""
    if not policy.trims_events:
        return [], None  # no event limit: neither the log nor the event archive is looked at
    plan = plan_event_trim(store, policy, now_ms=now)
    head = store.read_events(limit=1)
    first = head[0].seq if head else last_seq + 1
    segments = list_event_segments(archive_dir)
    pending = [s for s in segments if s.from_seq >= first]
    for s in segments:
        if s.from_seq < first <= s.through_seq:
            raise StoreError(
                f"archive segment {s.file.path} overlaps the stored log (seq {s.from_seq}..{s.through_seq}, the store "
                f"starts at {first})",
                where=str(archive_dir),
                hint="this archive belongs to another log or was edited: use a new archive directory",
            )
    stale: list[Path] = [p for p in orphan_files(archive_dir / EVENTS_DIR)]
    reused: list[EventSegment] = []
    position = plan.from_seq if plan else first
    for seg in pending:
        if not segment_matches_store(store, seg, block=event_chunk):
            # Not provably a copy of rows still stored: never removed, never reused.
            raise StoreError(
                f"archive segment {seg.file.path} does not match the stored events in its range (seq "
                f"{seg.from_seq}..{seg.through_seq}): it is damaged or belongs to another log",
                where=str(archive_dir),
                hint="move that segment away (or use a new archive directory), then run again",
            )
        if plan is not None and seg.from_seq == position and seg.through_seq <= plan.through_seq:
            reused.append(seg)
            position = seg.through_seq + 1
        else:  # a leftover of an interrupted run that no longer fits the plan: its rows are still stored
            stale.extend([seg.sidecar, seg.path])
    if not dry_run:
        for path in stale:  # sidecar before its file: a crash in between leaves an orphan, removed next time
            path.unlink(missing_ok=True)
    if plan is None:
        return stale, None
    trim = EventTrim(from_seq=plan.from_seq, through_seq=plan.through_seq, rows=sum(s.rows for s in reused))
    trim.reused = [s.path for s in reused]
    if position <= plan.through_seq:
        if dry_run:
            trim.rows += store_summary(store, position, plan.through_seq, block=event_chunk).rows
            return stale, trim
        segment = archive_events(
            store,
            archive_dir,
            position,
            plan.through_seq,
            event_chunk=event_chunk,
            zstd_level=zstd_level,
            progress=progress,
        )
        trim.rows += segment.rows
        trim.written.append(segment.path)
    if not dry_run:
        trim.deleted = store.delete_events_through(plan.through_seq, expected=trim.rows)
    return stale, trim


def read_archive(
    archive_dir: Path, *, from_seq: int | None = None, through_seq: int | None = None
) -> Iterator[StoredEvent]:
    """Every archived event (optionally within a seq range), in sequence order; each segment's sha256 and row
    summary are checked before its events are yielded."""
    previous = 0
    for seg in list_event_segments(archive_dir):
        if (through_seq is not None and seg.from_seq > through_seq) or (
            from_seq is not None and seg.through_seq < from_seq
        ):
            continue
        if seg.from_seq <= previous:
            raise DataFormatError(
                f"archive segments overlap at seq {seg.from_seq}",
                where=str(seg.path),
                hint="an interrupted retention left this: run `smartmarket retention` once more to tidy up",
            )
        previous = seg.through_seq
        verify_segment_file(seg.path, seg.file)
        for block in iter_event_blocks(seg.path, until_seq=through_seq):
            for event in block:
                if from_seq is None or event.seq >= from_seq:
                    yield event


def import_archive(
    archive_dir: Path, target: EventStore, *, block: int = 50_000, progress: ProgressFn | None = None
) -> int:
    """Put the archived events back into ``target`` with their sequence numbers; returns how many were imported.

    The target's log must be empty or end before the archive's first event (import the archive first, then the
    newer events); archived events it already holds identically are skipped, so importing twice is harmless.
    """
    segments = list_event_segments(archive_dir)
    if not segments:
        return 0
    present = target.last_seq()
    first_archived = segments[0].from_seq
    if present >= first_archived:
        ours = EMPTY
        for event in read_archive(archive_dir, through_seq=present):
            ours = ours.combine(summarize_events([event]))
        if not ours.matches(store_summary(target, first_archived, present, block=block)):
            raise StoreError(
                f"the target's event log already reaches seq {present} and differs from the archive there",
                where=getattr(target, "url", None),
                hint="import the archive into an empty store first, then add the newer events",
            )
    total = segments[-1].through_seq
    imported = 0
    pending: list[StoredEvent] = []
    for event in read_archive(archive_dir, from_seq=present + 1):
        pending.append(event)
        if len(pending) >= block:
            imported += target.import_events(pending)
            pending = []
            if progress:
                progress("events", event.seq, total)
    if pending:
        imported += target.import_events(pending)
    return imported


__all__ = [
    "EventPlan",
    "EventTrim",
    "ProgressFn",
    "archive_events",
    "import_archive",
    "plan_event_trim",
    "read_archive",
    "segment_matches_store",
    "store_summary",
    "trim_events",
]
