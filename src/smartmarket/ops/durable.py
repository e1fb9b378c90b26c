"""Making writes durable before they count: fsync a file's data, or a directory's entries (after a rename), and
files that appear under their final name only once complete."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Flush a written file's data to disk."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename into it survives a crash only after this)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def staged_file(final: Path, suffix: str = ".partial") -> Iterator[Path]:
    """Yield a hidden staging path beside ``final``; when the block succeeds the file is fsynced and renamed to
    ``final``, when it raises (a failed verification, a crash mid-write) the staging file is removed."""
    staging = final.with_name(f".{final.name}{suffix}")
    try:
        yield staging
        fsync_file(staging)
        os.replace(staging, final)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


__all__ = ["fsync_dir", "fsync_file", "staged_file"]
