"""Retention: archive the oldest events (and old dead letters) to Parquet, verify the archive, only then trim.

**Events.** Trimming always removes a *prefix* of the log: every event with ``seq <= cut``, so a replay of
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

**Dead letters** (Redis ``{ns}:{SYMBOL}:dlq``, never trimmed by the bus): entries older than
``dead_letter_age_ms`` (by their entry id time) are written to
``ARCHIVE/dead-letters/<namespace>/<SYMBOL>/dlq-<first id>-<last id>.parquet`` (+ sidecar), read back and
compared field by field, then exactly those ids are ``XDEL``-eted. A re-run after a crash recognises entries
already archived (same id, same fields) and deletes them without archiving them twice.

``read_archive`` yields the archived events in sequence order (each segment's sha256 checked first);
``import_archive`` puts them back into a store whose log is empty or ends before the archive starts.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from smartmarket import __version__
from smartmarket.bus.base import DeadLetter
from smartmarket.core.errors import ConfigError, DataFormatError, StoreError, ValidationError
from smartmarket.core.timeutil import now_ms as _now_ms
from smartmarket.core.types import DAY_MS, HOUR_MS, MINUTE_MS
from smartmarket.ops.manifest import FileEntry, file_entry, redact_url, sha256_file, summary_from_dict, summary_to_dict
from smartmarket.ops.parquet_io import DEFAULT_ZSTD_LEVEL, EventFileWriter, iter_event_blocks, summarize_event_file
from smartmarket.store.base import EventStore, StoredEvent
from smartmarket.store.checksum import EMPTY, Summary, summarize_events

if TYPE_CHECKING:
    from smartmarket.bus.redis_streams import RedisStreamsBus

ProgressFn = Callable[[str, int, int], None]
"""``progress(task, done, total)``: ``task`` is ``events`` or ``dead letters <SYMBOL>``."""

ARCHIVE_FORMAT = "smartmarket-archive"
ARCHIVE_VERSION = 1
EVENTS_DIR = "events"
DEAD_LETTERS_DIR = "dead-letters"
SIDECAR_SUFFIX = ".json"
PARTIAL_SUFFIX = ".partial"
LOCK_FILE = ".retention.lock"
_AGE_UNITS = {"m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}

DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("entry_id", pa.string()),
        ("stream", pa.string()),
        ("group", pa.string()),
        ("consumer", pa.string()),
        ("original_id", pa.string()),
        ("attempts", pa.int64()),
        ("reason", pa.string()),
        ("error", pa.string()),
        ("payload", pa.binary()),
        ("ts_ms", pa.int64()),
    ]
)


# ---------------------------------------------------------------------------------------------- policy


def parse_age(text: str) -> int:
    """``90d`` / ``12h`` / ``30m`` / ``2w`` → milliseconds (a positive whole number of the unit)."""
    value = text.strip().lower()
    unit = _AGE_UNITS.get(value[-1:]) if value else None
    number = value[:-1]
    if unit is None or not number.isdigit() or int(number) <= 0:
        raise ValidationError(f"invalid age {text!r}", hint="write a positive number and a unit: 90d, 12h, 30m, 2w")
    return int(number) * unit


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """What to keep. ``None`` means "no limit of this kind"; a policy without event limits trims no event.

    - ``keep_age_ms``: keep events whose ``ts_event`` is newer than ``now - keep_age_ms``;
    - ``keep_last``: keep the newest N events;
    - ``dead_letter_age_ms``: archive and delete dead letters older than this.
    """

    keep_age_ms: int | None = None
    keep_last: int | None = None
    dead_letter_age_ms: int | None = None

    def __post_init__(self) -> None:
        for name, value, low in (
            ("keep_age_ms", self.keep_age_ms, 1),
            ("keep_last", self.keep_last, 1),
            ("dead_letter_age_ms", self.dead_letter_age_ms, 1),
        ):
            if value is not None and value < low:
                raise ValidationError(f"retention {name} must be at least {low}, got {value}")

    @classmethod
    def from_ages(
        cls, keep: str | None = None, *, keep_last: int | None = None, dead_letters: str | None = None
    ) -> RetentionPolicy:
        """``RetentionPolicy.from_ages("90d", keep_last=1_000_000, dead_letters="30d")``."""
        return cls(
            keep_age_ms=parse_age(keep) if keep is not None else None,
            keep_last=keep_last,
            dead_letter_age_ms=parse_age(dead_letters) if dead_letters is not None else None,
        )

    @property
    def trims_events(self) -> bool:
        return self.keep_age_ms is not None or self.keep_last is not None


# ---------------------------------------------------------------------------------------------- segments


@dataclass(frozen=True, slots=True)
class EventSegment:
    """One archived slice of the event log: every event with ``from_seq <= seq <= through_seq``."""

    archive_dir: Path
    from_seq: int
    through_seq: int
    summary: Summary
    file: FileEntry
    created_at: str = ""
    source_store: str = ""

    @property
    def path(self) -> Path:
        return self.archive_dir / self.file.path

    @property
    def sidecar(self) -> Path:
        return sidecar_of(self.path)

    @property
    def rows(self) -> int:
        return self.summary.rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ARCHIVE_FORMAT,
            "format_version": ARCHIVE_VERSION,
            "kind": "events",
            "smartmarket_version": __version__,
            "created_at": self.created_at,
            "source_store": self.source_store,
            "from_seq": self.from_seq,
            "through_seq": self.through_seq,
            "summary": summary_to_dict(self.summary),
            "file": {"path": self.file.path, "sha256": self.file.sha256, "bytes": self.file.bytes},
        }


@dataclass(frozen=True, slots=True)
class DeadLetterSegment:
    """Archived dead letters of one symbol's dead-letter stream."""

    archive_dir: Path
    namespace: str
    symbol: str
    first_id: str
    last_id: str
    rows: int
    file: FileEntry
    created_at: str = ""

    @property
    def path(self) -> Path:
        return self.archive_dir / self.file.path

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ARCHIVE_FORMAT,
            "format_version": ARCHIVE_VERSION,
            "kind": "dead-letters",
            "smartmarket_version": __version__,
            "created_at": self.created_at,
            "namespace": self.namespace,
            "symbol": self.symbol,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "rows": self.rows,
            "file": {"path": self.file.path, "sha256": self.file.sha256, "bytes": self.file.bytes},
        }


def sidecar_of(parquet: Path) -> Path:
    return parquet.with_name(parquet.name + SIDECAR_SUFFIX)


def event_segment_name(from_seq: int, through_seq: int) -> str:
    """``events-00000000000000000001-00000000000000001000.parquet``: sorts by sequence number."""
    return f"events-{from_seq:020d}-{through_seq:020d}.parquet"


def _read_sidecar(path: Path, kind: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"unreadable archive sidecar: {exc}", where=str(path)) from None
    if not isinstance(data, dict) or data.get("format") != ARCHIVE_FORMAT or data.get("kind") != kind:
        raise DataFormatError(f"not a SmartMarket {kind} archive sidecar", where=str(path))
    version = data.get("format_version")
    if not isinstance(version, int) or version > ARCHIVE_VERSION:
        raise DataFormatError(
            f"archive format version {version!r} is newer than this smartmarket reads ({ARCHIVE_VERSION})",
            where=str(path),
            hint="read it with the smartmarket version named in the sidecar, or a newer one",
        )
    return data


def _file_from(data: dict[str, Any], archive_dir: Path, where: Path) -> FileEntry:
    entry = FileEntry(path=str(data["path"]), sha256=str(data["sha256"]), bytes=int(data["bytes"]))
    if entry.path.startswith(("/", "\\")) or ".." in Path(entry.path).parts:
        raise DataFormatError(f"archive file path {entry.path!r} leaves the archive", where=str(where))
    return entry


def list_event_segments(archive_dir: Path) -> list[EventSegment]:
    """The complete event segments of an archive (those with a sidecar), in sequence order."""
    archive_dir = Path(archive_dir)
    folder = archive_dir / EVENTS_DIR
    segments: list[EventSegment] = []
    if not folder.is_dir():
        return segments
    for sidecar in sorted(folder.glob(f"events-*.parquet{SIDECAR_SUFFIX}")):
        data = _read_sidecar(sidecar, "events")
        try:
            segments.append(
                EventSegment(
                    archive_dir=archive_dir,
                    from_seq=int(data["from_seq"]),
                    through_seq=int(data["through_seq"]),
                    summary=summary_from_dict(data["summary"]),
                    file=_file_from(data["file"], archive_dir, sidecar),
                    created_at=str(data.get("created_at", "")),
                    source_store=str(data.get("source_store", "")),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"archive sidecar is incomplete: {exc!r}", where=str(sidecar)) from None
    segments.sort(key=lambda s: s.from_seq)
    return segments


def verify_segment_file(path: Path, entry: FileEntry) -> None:
    """Raise ``DataFormatError`` unless ``path`` exists with the recorded size and sha256."""
    if not path.is_file():
        raise DataFormatError("archive file is missing", where=str(path), hint="restore it from a backup copy")
    if path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
        raise DataFormatError(
            "archive file is damaged: its sha256 differs from the sidecar's",
            where=str(path),
            hint="restore the file from a backup copy of the archive",
        )


# ---------------------------------------------------------------------------------------------- planning


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


# ---------------------------------------------------------------------------------------------- archiving


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
    staging = final.with_name(f".{final.name}{PARTIAL_SUFFIX}")
    try:
        with EventFileWriter(staging, level=zstd_level) as writer:
            seq = from_seq
            while seq <= through_seq:
                upper = min(seq + event_chunk - 1, through_seq)
                writer.write(store.read_events(seq, upper))
                if progress:
                    progress("events", upper - from_seq + 1, through_seq - from_seq + 1)
                seq = upper + 1
        _fsync_file(staging)
        read_back = summarize_event_file(staging)
        if writer.summary.rows == 0 or not writer.summary.matches(read_back):
            raise StoreError(
                f"archive file read back differs from the events read from the store ({writer.summary} vs {read_back})",
                where=str(staging),
                hint="check the disk holding the archive directory, then run the retention again",
            )
        os.replace(staging, final)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    segment = EventSegment(
        archive_dir=archive_dir,
        from_seq=from_seq,
        through_seq=through_seq,
        summary=writer.summary,
        file=file_entry(archive_dir, final),
        created_at=_utc_now(),
        source_store=redact_url(getattr(store, "url", "")),
    )
    _write_json(segment.sidecar, segment.to_dict())
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


# ---------------------------------------------------------------------------------------------- apply


@dataclass
class EventTrim:
    """What retention did (or, in a dry run, would do) to the event log."""

    from_seq: int
    through_seq: int
    rows: int
    deleted: int = 0
    written: list[Path] = field(default_factory=list)
    reused: list[Path] = field(default_factory=list)


@dataclass
class DeadLetterTrim:
    """What retention did (or would do) to one symbol's dead-letter stream."""

    symbol: str
    rows: int
    archived: int = 0
    already_archived: int = 0
    deleted: int = 0
    written: list[Path] = field(default_factory=list)


@dataclass
class RetentionReport:
    archive_dir: Path
    dry_run: bool
    policy: RetentionPolicy = field(default_factory=RetentionPolicy)
    last_seq: int = 0
    events: EventTrim | None = None
    removed: list[Path] = field(default_factory=list)  # leftovers of interrupted runs (their rows stayed stored)
    dead_letters: list[DeadLetterTrim] = field(default_factory=list)
    dead_letter_cutoff_ms: int | None = None


def apply_retention(
    store: EventStore,
    policy: RetentionPolicy,
    archive_dir: Path,
    *,
    bus: RedisStreamsBus | str | None = None,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
    now_ms: int | None = None,
    event_chunk: int = 50_000,
    zstd_level: int = DEFAULT_ZSTD_LEVEL,
) -> RetentionReport:
    """Archive, verify, then trim what ``policy`` lets go (see the module docstring); ``dry_run`` only reports.

    ``bus`` (a ``RedisStreamsBus`` or a ``redis://…`` URL) is needed for dead-letter retention. Every input is
    checked before anything is written or deleted.
    """
    archive_dir = Path(archive_dir)
    if archive_dir.exists() and not archive_dir.is_dir():
        raise ConfigError("the archive path is not a directory", where=str(archive_dir), hint="pass a directory")
    if policy.dead_letter_age_ms is not None and bus is None:
        raise ConfigError(
            "dead-letter retention needs the Redis bus", hint="pass --bus redis://host:6379/0 (or set SMARTMARKET_BUS)"
        )
    if policy.trims_events and not store.trims_events:
        store.delete_events_through(0)  # the adapter's own one-line error
    now = _now_ms() if now_ms is None else now_ms
    report = RetentionReport(archive_dir=archive_dir, dry_run=dry_run, policy=policy, last_seq=store.last_seq())
    redis_bus = _bus_from(bus) if policy.dead_letter_age_ms is not None and bus is not None else None

    def trim_events() -> None:
        _trim_events(store, policy, archive_dir, report, now, dry_run, event_chunk, zstd_level, progress)

    with _archive_lock(archive_dir, dry_run):
        if redis_bus is None or policy.dead_letter_age_ms is None:
            trim_events()
        else:
            cutoff = now - policy.dead_letter_age_ms
            report.dead_letter_cutoff_ms = cutoff

            async def run(bus_: RedisStreamsBus) -> None:
                try:
                    await bus_.guarded(bus_.client.ping())  # an unreachable Redis fails before anything is trimmed
                    trim_events()  # synchronous store calls: nothing else runs on this loop meanwhile
                    report.dead_letters = await archive_dead_letters(
                        bus_, archive_dir, cutoff, dry_run=dry_run, zstd_level=zstd_level
                    )
                finally:
                    if isinstance(bus, str):
                        await bus_.close()

            asyncio.run(run(redis_bus))
    return report


def _trim_events(
    store: EventStore,
    policy: RetentionPolicy,
    archive_dir: Path,
    report: RetentionReport,
    now: int,
    dry_run: bool,
    event_chunk: int,
    zstd_level: int,
    progress: ProgressFn | None,
) -> None:
    if not policy.trims_events:
        return  # no event limit: neither the log nor the event archive is looked at
    plan = plan_event_trim(store, policy, now_ms=now)
    head = store.read_events(limit=1)
    first = head[0].seq if head else report.last_seq + 1
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
    stale: list[Path] = [p for p in _orphans(archive_dir / EVENTS_DIR)]
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
    report.removed = stale
    if plan is None:
        return
    trim = EventTrim(from_seq=plan.from_seq, through_seq=plan.through_seq, rows=sum(s.rows for s in reused))
    trim.reused = [s.path for s in reused]
    report.events = trim
    if position <= plan.through_seq:
        if dry_run:
            trim.rows += store_summary(store, position, plan.through_seq, block=event_chunk).rows
            return
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


def _orphans(folder: Path) -> list[Path]:
    """Files an interrupted run left: staging files and segment files without a sidecar."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f".*{PARTIAL_SUFFIX}")]
    found += [p for p in folder.glob("*.parquet") if not sidecar_of(p).exists()]
    return sorted(found)


# ---------------------------------------------------------------------------------------------- reading back


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


# ---------------------------------------------------------------------------------------------- dead letters


def _dead_letter_table(letters: Sequence[DeadLetter]) -> pa.Table:
    return pa.table(
        {name: [getattr(d, name) for d in letters] for name in DEAD_LETTER_SCHEMA.names}, schema=DEAD_LETTER_SCHEMA
    )


def read_dead_letter_file(path: Path) -> list[DeadLetter]:
    """The dead letters of one archived Parquet file, in entry order."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataFormatError(f"unreadable Parquet file: {exc}", where=str(path)) from None
    if not table.schema.remove_metadata().equals(DEAD_LETTER_SCHEMA):
        raise DataFormatError(f"unexpected Parquet columns {table.schema.names}", where=str(path))
    columns = table.to_pydict()
    return [DeadLetter(**{name: columns[name][i] for name in DEAD_LETTER_SCHEMA.names}) for i in range(len(table))]


def list_dead_letter_segments(archive_dir: Path, namespace: str | None = None) -> list[DeadLetterSegment]:
    """The complete dead-letter segments of an archive (optionally of one bus namespace)."""
    archive_dir = Path(archive_dir)
    root = archive_dir / DEAD_LETTERS_DIR
    if namespace is not None:
        root = root / namespace
    segments: list[DeadLetterSegment] = []
    if not root.is_dir():
        return segments
    for sidecar in sorted(root.rglob(f"dlq-*.parquet{SIDECAR_SUFFIX}")):
        data = _read_sidecar(sidecar, "dead-letters")
        try:
            segments.append(
                DeadLetterSegment(
                    archive_dir=archive_dir,
                    namespace=str(data["namespace"]),
                    symbol=str(data["symbol"]),
                    first_id=str(data["first_id"]),
                    last_id=str(data["last_id"]),
                    rows=int(data["rows"]),
                    file=_file_from(data["file"], archive_dir, sidecar),
                    created_at=str(data.get("created_at", "")),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"archive sidecar is incomplete: {exc!r}", where=str(sidecar)) from None
    return segments


def read_archived_dead_letters(
    archive_dir: Path, *, namespace: str | None = None, symbol: str | None = None
) -> Iterator[DeadLetter]:
    """Every archived dead letter (of one namespace and symbol when given); each file's sha256 checked first."""
    for seg in list_dead_letter_segments(archive_dir, namespace):
        if symbol is not None and seg.symbol != symbol:
            continue
        verify_segment_file(seg.path, seg.file)
        yield from read_dead_letter_file(seg.path)


async def archive_dead_letters(
    bus: RedisStreamsBus,
    archive_dir: Path,
    before_ms: int,
    *,
    dry_run: bool = False,
    zstd_level: int = DEFAULT_ZSTD_LEVEL,
    page: int = 1_000,
    delete: bool = True,
) -> list[DeadLetterTrim]:
    """Archive, verify, then ``XDEL`` every dead letter added before ``before_ms``, per symbol (``delete=False``:
    the archive step alone)."""
    archive_dir = Path(archive_dir)
    namespace = bus.names.namespace
    results: list[DeadLetterTrim] = []
    for symbol in await bus.dead_letter_symbols():
        letters: list[DeadLetter] = []
        while True:
            more = await bus.read_dead_letters_before(
                symbol, before_ms, after=letters[-1].entry_id if letters else None, count=page
            )
            letters.extend(more)
            if len(more) < page:
                break
        if not letters:
            continue
        folder = archive_dir / DEAD_LETTERS_DIR / namespace / symbol
        archived = {d.entry_id: d for d in read_archived_dead_letters(archive_dir, namespace=namespace, symbol=symbol)}
        already = [d for d in letters if d.entry_id in archived]
        for d in already:
            if archived[d.entry_id] != d:
                raise StoreError(
                    f"dead letter {d.entry_id} of {symbol} differs from its archived copy",
                    where=str(folder),
                    hint="this archive belongs to another Redis: use a new archive directory",
                )
        fresh = [d for d in letters if d.entry_id not in archived]
        result = DeadLetterTrim(symbol=symbol, rows=len(letters), already_archived=len(already))
        results.append(result)
        if dry_run:
            continue
        for orphan in _orphans(folder):
            orphan.unlink(missing_ok=True)
        if fresh:
            result.written.append(_write_dead_letter_segment(archive_dir, folder, namespace, symbol, fresh, zstd_level))
            result.archived = len(fresh)
        if delete:
            result.deleted = await bus.delete_dead_letters(symbol, [d.entry_id for d in letters])
    return results


def _write_dead_letter_segment(
    archive_dir: Path, folder: Path, namespace: str, symbol: str, letters: list[DeadLetter], zstd_level: int
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"dlq-{letters[0].entry_id}-{letters[-1].entry_id}.parquet"
    staging = final.with_name(f".{final.name}{PARTIAL_SUFFIX}")
    try:
        pq.write_table(
            _dead_letter_table(letters).replace_schema_metadata({"smartmarket.content": "dead-letters"}),
            staging,
            compression="zstd",
            compression_level=zstd_level,
        )
        _fsync_file(staging)
        if read_dead_letter_file(staging) != letters:
            raise StoreError(
                "archived dead letters read back differ from the entries read from Redis",
                where=str(staging),
                hint="check the disk holding the archive directory, then run the retention again",
            )
        os.replace(staging, final)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    segment = DeadLetterSegment(
        archive_dir=archive_dir,
        namespace=namespace,
        symbol=symbol,
        first_id=letters[0].entry_id,
        last_id=letters[-1].entry_id,
        rows=len(letters),
        file=file_entry(archive_dir, final),
        created_at=_utc_now(),
    )
    _write_json(sidecar_of(final), segment.to_dict())
    return final


# ---------------------------------------------------------------------------------------------- plumbing


def _bus_from(bus: RedisStreamsBus | str) -> RedisStreamsBus:
    from smartmarket.bus.redis_streams import RedisStreamsBus
    from smartmarket.bus.url import open_bus

    opened = open_bus(bus) if isinstance(bus, str) else bus
    if not isinstance(opened, RedisStreamsBus):
        raise ConfigError(
            "dead-letter retention needs the Redis bus (the in-process bus keeps no dead letters across runs)",
            where=redact_url(bus) if isinstance(bus, str) else None,
            hint="pass --bus redis://host:6379/0",
        )
    return opened


@contextmanager
def _archive_lock(archive_dir: Path, dry_run: bool) -> Iterator[None]:
    """One retention run per archive directory at a time (a dry run creates nothing and takes no lock)."""
    if dry_run:
        yield
        return
    archive_dir.mkdir(parents=True, exist_ok=True)
    with open(archive_dir / LOCK_FILE, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(
                "another retention run is using this archive directory",
                where=str(archive_dir),
                hint="wait for it to finish, then run again",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` atomically and durably (temporary file, fsync, rename, fsync of the directory)."""
    staging = path.with_name(f".{path.name}{PARTIAL_SUFFIX}")
    with open(staging, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(staging, path)
    _fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = [
    "ARCHIVE_FORMAT",
    "ARCHIVE_VERSION",
    "DEAD_LETTERS_DIR",
    "DEAD_LETTER_SCHEMA",
    "EVENTS_DIR",
    "DeadLetterSegment",
    "DeadLetterTrim",
    "EventPlan",
    "EventSegment",
    "EventTrim",
    "RetentionPolicy",
    "RetentionReport",
    "apply_retention",
    "archive_dead_letters",
    "archive_events",
    "event_segment_name",
    "import_archive",
    "list_dead_letter_segments",
    "list_event_segments",
    "parse_age",
    "plan_event_trim",
    "read_archive",
    "read_archived_dead_letters",
    "read_dead_letter_file",
    "segment_matches_store",
    "store_summary",
    "verify_segment_file",
]
