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
from types import ModuleType
from typing import Literal, Protocol

from smartmarket.core.errors import DataFormatError

_inflate: ModuleType
try:  # ISA-L's inflate (python-isal) is a drop-in zlib twice as fast; zlib when it is absent
    from isal import isal_zlib as _inflate

    _INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _inflate.error)
except ImportError:  # pragma: no cover - isal is a dependency; kept working without it
    _inflate = zlib
    _INFLATE_ERRORS = (zlib.error,)

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
    """Decompressed pieces of a (multi-member) gzip file, at most ``BLOCK_BYTES`` each whatever the data (a
    line of a billion identical bytes compresses to a few MB), through ISA-L when installed (about twice zlib's
    speed), else zlib."""
    total = path.stat().st_size
    with path.open("rb") as handle:
        inflater = _inflate.decompressobj(wbits=31)
        started = False  # a member has begun and not ended
        while compressed := handle.read(READ_BYTES):
            started = True
            while True:
                out = inflater.decompress(compressed, BLOCK_BYTES)
                if out:
                    yield out
                if inflater.eof:  # another gzip member may follow
                    compressed = inflater.unused_data
                    inflater = _inflate.decompressobj(wbits=31)
                    started = bool(compressed)
                    if not compressed:
                        break
                    continue
                compressed = inflater.unconsumed_tail
                if not compressed and len(out) < BLOCK_BYTES:  # input used up, no output pending
                    break
            if progress is not None:
                progress(min(handle.tell(), total), total)
        tail = inflater.flush()
        if tail:
            yield tail
        if started and not inflater.eof:
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


READ_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    *_INFLATE_ERRORS,
    lzma.LZMAError,
    zipfile.BadZipFile,
    ValueError,
)


@dataclass
class Block:
    """Whole lines ``data[:end]``, each ending with ``\\n`` (bytes after ``end`` are the start of the next block,
    read ahead and ignored here); ``long_lines``: block-local indices of lines longer than a block, cut to their
    first ``RAW_TEXT_LIMIT`` bytes. Lines are counted only when asked (``count_lines``)."""

    data: bytes
    end: int
    long_lines: tuple[int, ...] = ()

    def text(self) -> bytes:
        """The block's lines as one bytes object (a copy when ``data`` holds bytes after ``end``)."""
        return self.data if self.end == len(self.data) else self.data[: self.end]

    def count_lines(self) -> int:
        return self.data.count(b"\n", 0, self.end)


def _whole(data: bytes, long_lines: tuple[int, ...] = ()) -> Block:
    if not data.endswith(b"\n"):
        data += b"\n"
    return Block(data, len(data), long_lines)


def blocks(pieces: Iterator[bytes]) -> Iterator[Block]:
    """Regroup pieces into blocks of about ``BLOCK_BYTES`` made of whole lines; a line longer than a block is
    cut (its head kept, the rest skipped as it streams past), so memory never depends on one line."""
    parts: list[bytes] = []
    size = 0
    long_lines: list[int] = []
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
        data = b"".join(parts) if len(parts) > 1 else parts[0]
        end = data.rfind(b"\n") + 1
        if end == 0 or (end < len(data) // 2 and len(data) - end >= BLOCK_BYTES):
            # The last line alone fills a block: keep its head, skip the rest until its end.
            head = data[end : end + RAW_TEXT_LIMIT + 1]
            done = data[:end]
            long_lines.append(done.count(b"\n"))  # ``data`` is the whole block so far: its index in the block
            parts, size = [done, head], len(done) + len(head)
            skipping = True
            continue
        yield Block(data, end, tuple(long_lines))
        rest = data[end:]
        parts, size, long_lines = ([rest] if rest else []), len(rest), []
    data = b"".join(parts)
    if data:
        yield _whole(data, tuple(long_lines))


def file_blocks(path: Path, progress: Progress | None) -> Iterator[Block]:
    """``blocks`` of an uncompressed file, read straight into each block's bytes: no piece is joined or sliced;
    the partial line at the end of a read is read again as the start of the next block."""
    total = path.stat().st_size
    with path.open("rb", buffering=0) as handle:
        if handle.read(len(BOM)) != BOM:
            handle.seek(0)
        while data := handle.read(BLOCK_BYTES):
            at = handle.tell()
            end = data.rfind(b"\n") + 1 if len(data) == BLOCK_BYTES else len(data)  # a short read: the end
            if end == 0:  # one line longer than a block: keep its head, skip the rest until its end
                head = data[: RAW_TEXT_LIMIT + 1]
                while data := handle.read(BLOCK_BYTES):
                    cut = data.find(b"\n")
                    if cut >= 0:
                        handle.seek(handle.tell() - len(data) + cut + 1)
                        break
                yield Block(head + b"\n", len(head) + 1, (0,))
            elif end == len(data):
                yield _whole(data)
            else:
                handle.seek(at - (len(data) - end))
                yield Block(data, end)
            at = handle.tell()
            if progress is not None:
                progress(min(at, total), total)
    if progress is not None:
        progress(total, total)


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
    "file_blocks",
    "file_suffixes",
    "raw_pieces",
]
