"""Retention: archive the oldest events (and old dead letters) to Parquet, verify the archive, only then trim.

- ``policy``: what to keep (``RetentionPolicy``, ``parse_age``);
- ``segments``: the archive format — segment files, their sidecars, listing and verification;
- ``events``: plan the cut of the event log, archive it, trim it; read the archive back or import it (the
  order of work and what a crash leaves behind are described there);
- ``dead_letters``: archive, verify, then ``XDEL`` old Redis dead letters.

``apply_retention`` runs both, one run per archive directory at a time (``ARCHIVE/.retention.lock``).
"""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from smartmarket.core.errors import ConfigError, StoreError
from smartmarket.core.timeutil import now_ms as _now_ms
from smartmarket.ops.manifest import redact_url
from smartmarket.ops.parquet_io import DEFAULT_ZSTD_LEVEL
from smartmarket.ops.retention.dead_letters import (
    DEAD_LETTER_SCHEMA,
    DeadLetterTrim,
    archive_dead_letters,
    read_archived_dead_letters,
    read_dead_letter_file,
)
from smartmarket.ops.retention.events import (
    EventPlan,
    EventTrim,
    ProgressFn,
    archive_events,
    import_archive,
    plan_event_trim,
    read_archive,
    segment_matches_store,
    store_summary,
    trim_events,
)
from smartmarket.ops.retention.policy import RetentionPolicy, parse_age
from smartmarket.ops.retention.segments import (
    ARCHIVE_FORMAT,
    ARCHIVE_VERSION,
    DEAD_LETTERS_DIR,
    EVENTS_DIR,
    PARTIAL_SUFFIX,
    SIDECAR_SUFFIX,
    DeadLetterSegment,
    EventSegment,
    event_segment_name,
    list_dead_letter_segments,
    list_event_segments,
    sidecar_of,
    verify_segment_file,
)
from smartmarket.store.base import EventStore

if TYPE_CHECKING:
    from smartmarket.bus.redis_streams import RedisStreamsBus

LOCK_FILE = ".retention.lock"


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
    """Archive, verify, then trim what ``policy`` lets go (see ``events`` and ``dead_letters``); ``dry_run`` only
    reports.

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

    def run_event_trim() -> None:
        report.removed, report.events = trim_events(
            store, policy, archive_dir, report.last_seq, now, dry_run, event_chunk, zstd_level, progress
        )

    with _archive_lock(archive_dir, dry_run):
        if redis_bus is None or policy.dead_letter_age_ms is None:
            run_event_trim()
        else:
            cutoff = now - policy.dead_letter_age_ms
            report.dead_letter_cutoff_ms = cutoff

            async def run(bus_: RedisStreamsBus) -> None:
                try:
                    await bus_.guarded(bus_.client.ping())  # an unreachable Redis fails before anything is trimmed
                    run_event_trim()  # synchronous store calls: nothing else runs on this loop meanwhile
                    report.dead_letters = await archive_dead_letters(
                        bus_, archive_dir, cutoff, dry_run=dry_run, zstd_level=zstd_level
                    )
                finally:
                    if isinstance(bus, str):
                        await bus_.close()

            asyncio.run(run(redis_bus))
    return report


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


__all__ = [
    "ARCHIVE_FORMAT",
    "ARCHIVE_VERSION",
    "DEAD_LETTERS_DIR",
    "DEAD_LETTER_SCHEMA",
    "EVENTS_DIR",
    "LOCK_FILE",
    "PARTIAL_SUFFIX",
    "SIDECAR_SUFFIX",
    "DeadLetterSegment",
    "DeadLetterTrim",
    "EventPlan",
    "EventSegment",
    "EventTrim",
    "ProgressFn",
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
    "sidecar_of",
    "store_summary",
    "verify_segment_file",
]
