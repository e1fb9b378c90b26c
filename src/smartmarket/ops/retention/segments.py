"""The archive format: Parquet segment files, each described by a JSON sidecar ``….parquet.json`` (format, range,
summary or row count, sha256).

Event segments live in ``ARCHIVE/events/events-<first>-<cut>.parquet``, dead-letter segments in
``ARCHIVE/dead-letters/<namespace>/<SYMBOL>/dlq-<first id>-<last id>.parquet``. A file is written under a staging
name, read back and verified, renamed into place, and only then gets its sidecar: a segment is complete only once
the sidecar exists. Files without a sidecar and staging files are leftovers of an interrupted run
(``orphan_files``). Also the small durable-write helpers the writers share.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smartmarket import __version__
from smartmarket.core.errors import DataFormatError
from smartmarket.ops.durable import fsync_dir
from smartmarket.ops.manifest import FileEntry, sha256_file, summary_from_dict, summary_to_dict
from smartmarket.store.checksum import Summary

ARCHIVE_FORMAT = "smartmarket-archive"
ARCHIVE_VERSION = 1
EVENTS_DIR = "events"
DEAD_LETTERS_DIR = "dead-letters"
SIDECAR_SUFFIX = ".json"
PARTIAL_SUFFIX = ".partial"


def event_segment_name(from_seq: int, through_seq: int) -> str:
    """``events-00000000000000000001-00000000000000001000.parquet``: sorts by sequence number."""
    return f"events-{from_seq:020d}-{through_seq:020d}.parquet"


def sidecar_of(parquet: Path) -> Path:
    return parquet.with_name(parquet.name + SIDECAR_SUFFIX)


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


def orphan_files(folder: Path) -> list[Path]:
    """Files an interrupted run left: staging files and segment files without a sidecar."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f".*{PARTIAL_SUFFIX}")]
    found += [p for p in folder.glob("*.parquet") if not sidecar_of(p).exists()]
    return sorted(found)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` atomically and durably (temporary file, fsync, rename, fsync of the directory)."""
    staging = path.with_name(f".{path.name}{PARTIAL_SUFFIX}")
    with open(staging, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(staging, path)
    fsync_dir(path.parent)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = [
    "ARCHIVE_FORMAT",
    "ARCHIVE_VERSION",
    "DEAD_LETTERS_DIR",
    "EVENTS_DIR",
    "PARTIAL_SUFFIX",
    "SIDECAR_SUFFIX",
    "DeadLetterSegment",
    "EventSegment",
    "event_segment_name",
    "list_dead_letter_segments",
    "list_event_segments",
    "orphan_files",
    "sidecar_of",
    "utc_now",
    "verify_segment_file",
    "write_json_atomic",
]
