"""Dead-letter retention (Redis ``{ns}:{SYMBOL}:dlq``, never trimmed by the bus).

Entries older than ``dead_letter_age_ms`` (by their entry id time) are written to
``ARCHIVE/dead-letters/<namespace>/<SYMBOL>/dlq-<first id>-<last id>.parquet`` (+ sidecar), read back and
compared field by field, then exactly those ids are ``XDEL``-eted. A re-run after a crash recognises entries
already archived (same id, same fields) and deletes them without archiving them twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from smartmarket.bus.base import DeadLetter
from smartmarket.core.errors import DataFormatError, StoreError
from smartmarket.ops.durable import staged_file
from smartmarket.ops.manifest import file_entry
from smartmarket.ops.parquet_io import DEFAULT_ZSTD_LEVEL
from smartmarket.ops.retention.segments import (
    DEAD_LETTERS_DIR,
    PARTIAL_SUFFIX,
    DeadLetterSegment,
    list_dead_letter_segments,
    orphan_files,
    sidecar_of,
    utc_now,
    verify_segment_file,
    write_json_atomic,
)

if TYPE_CHECKING:
    from smartmarket.bus.redis_streams import RedisStreamsBus

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


@dataclass
class DeadLetterTrim:
    """What retention did (or would do) to one symbol's dead-letter stream."""

    symbol: str
    rows: int
    archived: int = 0
    already_archived: int = 0
    deleted: int = 0
    written: list[Path] = field(default_factory=list)


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
        for orphan in orphan_files(folder):
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
    with staged_file(final, PARTIAL_SUFFIX) as staging:
        pq.write_table(
            _dead_letter_table(letters).replace_schema_metadata({"smartmarket.content": "dead-letters"}),
            staging,
            compression="zstd",
            compression_level=zstd_level,
        )
        if read_dead_letter_file(staging) != letters:
            raise StoreError(
                "archived dead letters read back differ from the entries read from Redis",
                where=str(staging),
                hint="check the disk holding the archive directory, then run the retention again",
            )
    segment = DeadLetterSegment(
        archive_dir=archive_dir,
        namespace=namespace,
        symbol=symbol,
        first_id=letters[0].entry_id,
        last_id=letters[-1].entry_id,
        rows=len(letters),
        file=file_entry(archive_dir, final),
        created_at=utc_now(),
    )
    write_json_atomic(sidecar_of(final), segment.to_dict())
    return final


__all__ = [
    "DEAD_LETTER_SCHEMA",
    "DeadLetterTrim",
    "archive_dead_letters",
    "read_archived_dead_letters",
    "read_dead_letter_file",
]
