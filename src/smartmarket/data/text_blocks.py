"""A file's decompressed text, read in pieces and regrouped into blocks of whole lines.

Memory is proportional to ``BLOCK_BYTES`` whatever the file holds: a line longer than a block is cut to its first
``RAW_TEXT_LIMIT`` bytes as it streams past. Compression is chosen by the file's suffix (gzip, zip with one
member, bz2, xz). Read errors are raised as they come (``READ_ERRORS``); the parsers turn them into one line.
"""

from __future__ import annotations

import bz2
import lzma
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from smartmarket.core.errors import DataFormatError

BLOCK_BYTES = 32 << 20  # CSV text handled at once (whole lines); memory is proportional to it
READ_BYTES = 4 << 20  # compressed bytes read at a time
RAW_TEXT_LIMIT = 1024  # characters of a bad row's text kept for the quarantine
Compression = Literal["gzip", "zip", "bz2", "xz", "zstd"]
_COMPRESSION_BY_SUFFIX: dict[str, Compression] = {
    ".gz": "gzip",
    ".zip": "zip",
    ".bz2": "bz2",
    ".xz": "xz",
    ".zst": "zstd",
}
BOM = b"\xef\xbb\xbf"

Progress = Callable[[int, int], None]


def file_suffixes(path: Path) -> tuple[str, Compression | None]:
    """(data suffix, compression) of ``path``: ``x.csv.gz`` → (".csv", "gzip")."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = _COMPRESSION_BY_SUFFIX.get(suffixes[-1]) if suffixes else None
    if compression and len(suffixes) >= 2:
        return suffixes[-2], compression
    if compression:
        return "", compression
    return (suffixes[-1] if suffixes else ""), None


def _gzip_pieces(path: Path, progress: Progress | None) -> Iterator[bytes]:
    """Decompressed pieces of a (multi-member) gzip file."""
    total = path.stat().st_size
    with path.open("rb") as handle:
        inflater = zlib.decompressobj(wbits=31)
        seen = False
        while piece := handle.read(READ_BYTES):
            seen = True
            while piece:
                out = inflater.decompress(piece)
                if out:
                    yield out
                if inflater.eof:  # another gzip member may follow
                    piece = inflater.unused_data
                    inflater = zlib.decompressobj(wbits=31)
                    if not piece:
                        seen = False
                else:
                    piece = b""
            if progress is not None:
                progress(min(handle.tell(), total), total)
        tail = inflater.flush()
        if tail:
            yield tail
        if seen and not inflater.eof:
            raise EOFError("compressed file ended before the end-of-stream marker")


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _stream_pieces(stream: _Readable) -> Iterator[bytes]:
    while piece := stream.read(READ_BYTES):
        yield piece


def _zip_member(archive: zipfile.ZipFile) -> str:
    names = [i.filename for i in archive.infolist() if not i.is_dir()]
    if len(names) != 1:
        raise zipfile.BadZipFile(f"the zip archive holds {len(names)} files, expected one")
    return names[0]


def raw_pieces(path: Path, compression: Compression | None, progress: Progress | None) -> Iterator[bytes]:
    """The file's decompressed bytes, piece by piece."""
    total = path.stat().st_size
    if compression == "gzip":
        yield from _gzip_pieces(path, progress)
    elif compression == "zip":
        with zipfile.ZipFile(path) as archive, archive.open(_zip_member(archive)) as member:
            yield from _stream_pieces(member)
    elif compression == "bz2":
        with bz2.open(path, "rb") as stream:
            yield from _stream_pieces(stream)
    elif compression == "xz":
        with lzma.open(path, "rb") as stream:
            yield from _stream_pieces(stream)
    elif compression == "zstd":
        raise DataFormatError(
            "zstd-compressed files are not supported", where=str(path), hint="decompress it (unzstd) and ingest that"
        )
    else:
        with path.open("rb") as handle:
            while piece := handle.read(BLOCK_BYTES):
                yield piece
                if progress is not None:
                    progress(min(handle.tell(), total), total)
    if progress is not None:
        progress(total, total)


READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, ValueError)


@dataclass
class Block:
    """Whole lines of text (ending with ``\\n``) starting at file line ``first_line`` (1-based); ``long_lines``:
    block-local indices of lines longer than a block, cut to their first ``RAW_TEXT_LIMIT`` bytes."""

    data: bytes
    first_line: int
    lines: int
    long_lines: tuple[int, ...] = ()


def blocks(pieces: Iterator[bytes]) -> Iterator[Block]:
    """Regroup pieces into blocks of about ``BLOCK_BYTES`` made of whole lines; a line longer than a block is
    cut (its head kept, the rest skipped as it streams past), so memory never depends on one line."""
    parts: list[bytes] = []
    size = 0
    line = 1
    long_lines: list[int] = []
    lines_so_far = 0  # complete lines already in ``parts``
    skipping = False  # inside a too-long line: drop bytes up to its end
    first = True
    for piece in pieces:
        if first and piece:
            first = False
            if piece.startswith(BOM):
                piece = piece[len(BOM) :]
        if skipping:
            cut = piece.find(b"\n")
            if cut < 0:
                continue
            piece = piece[cut:]  # keeps the line end of the cut line
            skipping = False
        parts.append(piece)
        size += len(piece)
        if size < BLOCK_BYTES:
            continue
        data = b"".join(parts)
        end = data.rfind(b"\n") + 1
        if end == 0 or (end < len(data) // 2 and len(data) - end >= BLOCK_BYTES):
            # The last line alone fills a block: keep its head, skip the rest until its end.
            start = end
            head = data[start : start + RAW_TEXT_LIMIT + 1]
            done = data[:start]
            count = done.count(b"\n")
            long_lines.append(lines_so_far + count)
            parts, size = [done, head], len(done) + len(head)
            lines_so_far += count
            skipping = True
            continue
        block = data[:end]
        count = block.count(b"\n")
        yield Block(block, line, count, tuple(long_lines))
        line += count
        rest = data[end:]
        parts, size, lines_so_far, long_lines = ([rest] if rest else []), len(rest), 0, []
    data = b"".join(parts)
    if data and not data.endswith(b"\n"):
        data += b"\n"
    if data:
        yield Block(data, line, data.count(b"\n"), tuple(long_lines))


__all__ = [
    "BLOCK_BYTES",
    "BOM",
    "RAW_TEXT_LIMIT",
    "READ_BYTES",
    "READ_ERRORS",
    "Block",
    "Compression",
    "Progress",
    "blocks",
    "file_suffixes",
    "raw_pieces",
]
