"""The backup manifest: what a snapshot holds, where the cut was, and how to check every file.

``manifest.json`` sits at the top of a snapshot directory and is written last, just before the directory is
renamed into place, so a snapshot without one is never complete. Layout (format version 1)::

    {"format": "smartmarket-backup", "format_version": 1, "smartmarket_version": "0.1.0",
     "snapshot_id": "…", "created_at": "2025-01-01T12:00:00.000Z",
     "source_store": "postgresql://user@host:5432/db",          # password removed
     "series": [{"symbol": "BTCUSDT", "timeframe": "1h", "synthetic": false, "cut_ts": …,
                 "summary": {"rows": …, "min_ts": …, "max_ts": …, "volume_sum": …, "checksum": "16 hex"},
                 "file": {"path": "candles/BTCUSDT-1h.parquet", "sha256": "…", "bytes": …}}, …],
     "events": {"last_seq_at_cut": …, "summary": {… min_ts/max_ts are sequence numbers …}, "file": {…}},
     "quarantine": [{"path": "quarantine/…", "sha256": …, "bytes": …}, …],
     "registry": [{"path": "models/<id>/metadata.json", …}, …],
     "manifest_sha256": "…"}

``manifest_sha256`` is the sha256 of the manifest's own canonical JSON (every other field, keys sorted, no
whitespace, see :func:`manifest_digest`). It is written by ``backup`` and checked first by ``restore``, so a
manifest edited by hand or damaged on disk is refused before any of its entries is believed. It proves that
the manifest is intact, not who wrote it: someone who rewrites a manifest can recompute it too, which is why
``restore`` also reads every row back and compares it with the manifest's summaries. Manifests written before
this field existed (same format version 1) have none: they are read, and :attr:`Manifest.checksum` is empty so
that ``restore`` can say so in one WARNING line (every file's sha256 and every series' rows are still checked).

Summaries are ``smartmarket.store.checksum.Summary`` (order-independent checksum; the candle checksum covers
``ts`` and the exact bits of every OHLCV value, the event checksum each event's seq and serialised form).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartmarket.core.errors import DataFormatError
from smartmarket.core.redaction import redact_url
from smartmarket.core.types import Timeframe
from smartmarket.store.checksum import Summary

FORMAT_NAME = "smartmarket-backup"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
CHECKSUM_FIELD = "manifest_sha256"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a snapshot: its path relative to the snapshot directory, sha256 and size."""

    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True)
class SeriesEntry:
    """One candle series: the cut (``cut_ts``, the series' last ts when the backup started) and what was saved."""

    symbol: str
    timeframe: Timeframe
    synthetic: bool
    cut_ts: int
    summary: Summary
    file: FileEntry

    @property
    def key(self) -> str:
        return f"{self.symbol}/{self.timeframe.value}"


@dataclass(frozen=True, slots=True)
class EventsEntry:
    """The event log up to ``last_seq_at_cut``; the summary's ``min_ts``/``max_ts`` are sequence numbers."""

    last_seq_at_cut: int
    summary: Summary
    file: FileEntry


@dataclass(frozen=True, slots=True)
class Manifest:
    snapshot_id: str
    created_at: str
    source_store: str
    series: list[SeriesEntry]
    events: EventsEntry
    quarantine: list[FileEntry] = field(default_factory=list)
    registry: list[FileEntry] = field(default_factory=list)
    smartmarket_version: str = ""
    format_version: int = FORMAT_VERSION
    # The manifest_sha256 verified when read ("" for one written without it); not part of the content.
    checksum: str = field(default="", compare=False)

    def files(self) -> list[FileEntry]:
        """Every file the snapshot must contain, data files first."""
        return [*(s.file for s in self.series), self.events.file, *self.quarantine, *self.registry]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "smartmarket_version": self.smartmarket_version,
            "snapshot_id": self.snapshot_id,
            "created_at": self.created_at,
            "source_store": self.source_store,
            "series": [
                {
                    "symbol": s.symbol,
                    "timeframe": s.timeframe.value,
                    "synthetic": s.synthetic,
                    "cut_ts": s.cut_ts,
                    "summary": summary_to_dict(s.summary),
                    "file": _file_to_dict(s.file),
                }
                for s in self.series
            ],
            "events": {
                "last_seq_at_cut": self.events.last_seq_at_cut,
                "summary": summary_to_dict(self.events.summary),
                "file": _file_to_dict(self.events.file),
            },
            "quarantine": [_file_to_dict(f) for f in self.quarantine],
            "registry": [_file_to_dict(f) for f in self.registry],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = MANIFEST_FILE) -> Manifest:
        """Parse a manifest; a missing field, another format or a newer version raises ``DataFormatError``."""
        if data.get("format") != FORMAT_NAME:
            raise DataFormatError(f"not a SmartMarket backup manifest (format={data.get('format')!r})", where=where)
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise DataFormatError(
                f"backup format version {version!r} is newer than this smartmarket reads ({FORMAT_VERSION})",
                where=where,
                hint="restore it with the smartmarket version named in the manifest, or a newer one",
            )
        try:
            events = data["events"]
            return cls(
                snapshot_id=str(data["snapshot_id"]),
                created_at=str(data["created_at"]),
                source_store=str(data["source_store"]),
                series=[
                    SeriesEntry(
                        symbol=str(s["symbol"]),
                        timeframe=Timeframe(s["timeframe"]),
                        synthetic=bool(s["synthetic"]),
                        cut_ts=int(s["cut_ts"]),
                        summary=summary_from_dict(s["summary"]),
                        file=_file_from_dict(s["file"]),
                    )
                    for s in data["series"]
                ],
                events=EventsEntry(
                    last_seq_at_cut=int(events["last_seq_at_cut"]),
                    summary=summary_from_dict(events["summary"]),
                    file=_file_from_dict(events["file"]),
                ),
                quarantine=[_file_from_dict(f) for f in data.get("quarantine", [])],
                registry=[_file_from_dict(f) for f in data.get("registry", [])],
                smartmarket_version=str(data.get("smartmarket_version", "")),
                format_version=version,
                checksum=str(data.get(CHECKSUM_FIELD, "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataFormatError(f"backup manifest is incomplete or malformed: {exc!r}", where=where) from None


def manifest_digest(data: dict[str, Any]) -> str:
    """sha256 (hex) of a manifest's canonical JSON: every field but ``manifest_sha256``, keys sorted, compact.

    JSON numbers read back print the same (``json`` writes floats by their shortest repr), so the digest of a
    manifest read from disk equals the digest of the one that was written."""
    body = {k: v for k, v in data.items() if k != CHECKSUM_FIELD}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def check_manifest_digest(data: dict[str, Any], *, where: str) -> str:
    """The manifest's ``manifest_sha256`` after checking it against its content ("" when it has none);
    ``DataFormatError`` when it does not match (the manifest was edited or damaged)."""
    if CHECKSUM_FIELD not in data:
        return ""
    recorded = data[CHECKSUM_FIELD]
    actual = manifest_digest(data)
    if not isinstance(recorded, str) or recorded.lower() != actual:
        raise DataFormatError(
            f"backup manifest was altered: its content does not match its {CHECKSUM_FIELD} "
            f"({str(recorded)[:16]}… recorded, {actual[:16]}… computed)",
            where=where,
            hint="this snapshot cannot be trusted: restore another snapshot",
        )
    return actual


def summary_to_dict(summary: Summary) -> dict[str, Any]:
    """JSON form of a ``Summary``; the 64-bit checksum as 16 hex digits (safe for any JSON reader)."""
    return {
        "rows": summary.rows,
        "min_ts": summary.min_ts,
        "max_ts": summary.max_ts,
        "volume_sum": summary.volume_sum,
        "checksum": f"{summary.checksum:016x}",
    }


def summary_from_dict(data: dict[str, Any]) -> Summary:
    return Summary(
        rows=int(data["rows"]),
        min_ts=None if data["min_ts"] is None else int(data["min_ts"]),
        max_ts=None if data["max_ts"] is None else int(data["max_ts"]),
        volume_sum=float(data["volume_sum"]),
        checksum=int(str(data["checksum"]), 16),
    )


def _file_to_dict(entry: FileEntry) -> dict[str, Any]:
    return {"path": entry.path, "sha256": entry.sha256, "bytes": entry.bytes}


def _file_from_dict(data: dict[str, Any]) -> FileEntry:
    path = str(data["path"])
    if path.startswith(("/", "\\")) or ".." in Path(path).parts:
        raise ValueError(f"file path {path!r} leaves the snapshot directory")
    return FileEntry(path=path, sha256=str(data["sha256"]), bytes=int(data["bytes"]))


def sha256_file(path: Path, *, limit: int | None = None) -> str:
    """Hex sha256 of a file (of its first ``limit`` bytes when given), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as fh:
        while remaining is None or remaining > 0:
            block = fh.read(1 << 20 if remaining is None else min(1 << 20, remaining))
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest.hexdigest()


def file_entry(root: Path, path: Path) -> FileEntry:
    """The manifest entry of ``path`` (a file under ``root``)."""
    return FileEntry(path=path.relative_to(root).as_posix(), sha256=sha256_file(path), bytes=path.stat().st_size)


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` durably (fsync) into ``directory``."""
    path = directory / MANIFEST_FILE
    data = manifest.to_dict()
    data[CHECKSUM_FIELD] = manifest_digest(data)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    return path


def read_manifest(directory: Path) -> Manifest:
    """Read ``directory/manifest.json``, check its ``manifest_sha256`` (when it has one) and parse it; raise
    ``DataFormatError`` with a hint when it is unusable or altered."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise DataFormatError(
            "no manifest.json: not a complete SmartMarket snapshot",
            where=str(directory),
            hint="pass a snapshot directory written by `smartmarket backup` (DIR/snapshot-…)",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"backup manifest is not valid JSON: {exc}", where=str(path)) from None
    if not isinstance(data, dict):
        raise DataFormatError("backup manifest is not a JSON object", where=str(path))
    check_manifest_digest(data, where=str(path))
    return Manifest.from_dict(data, where=str(path))


__all__ = [
    "CHECKSUM_FIELD",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "EventsEntry",
    "FileEntry",
    "Manifest",
    "SeriesEntry",
    "check_manifest_digest",
    "file_entry",
    "manifest_digest",
    "read_manifest",
    "redact_url",
    "sha256_file",
    "summary_from_dict",
    "summary_to_dict",
    "write_manifest",
]
