"""Which files SmartMarket will load from a model registry or a snapshot: none that can run code.

Every persisted artifact is data: JSON, NumPy arrays without objects, LightGBM's text model format, torch
weights (read only with ``weights_only=True``), safetensors, skops files (read with a fixed list of trusted
types). A pickle (``.joblib``/``.pkl``/…) or a file of any unknown kind is refused *before* anything is read,
with one line naming it. The check looks at the name and at the first bytes: a pickle renamed to ``.json`` is
refused too.
"""

from __future__ import annotations

from pathlib import Path

from smartmarket.core.errors import FatalError

# Suffixes a registry entry or a snapshot may hold.
SAFE_SUFFIXES = frozenset(
    {".json", ".txt", ".npy", ".npz", ".pt", ".safetensors", ".skops", ".parquet", ".md", ".csv", ".onnx"}
)
# .onnx: a protobuf graph (the networks' ONNX Runtime cache, models/runtime.py); reading one runs no code
PICKLE_SUFFIXES = frozenset({".joblib", ".pkl", ".pickle", ".dill", ".cloudpickle"})
# Pickle protocol 2+ starts with 0x80 then the protocol number; protocols 0/1 start with an opcode like "(" or "c".
_PICKLE_MAGIC = tuple(bytes([0x80, n]) for n in range(2, 6))
_ZIP_SUFFIXES = frozenset({".pt", ".skops", ".npz"})  # zip containers: their first bytes are "PK"


class UnsafeFileError(FatalError):
    """A file that SmartMarket refuses to load because loading it could run code."""


def _looks_like_pickle(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(2)
    return head in _PICKLE_MAGIC


def unsafe_reason(path: Path) -> str | None:
    """Why ``path`` must not be loaded, or ``None`` when it is one of the safe kinds."""
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return f"{suffix} files are pickles (loading one runs code)"
    if suffix not in SAFE_SUFFIXES:
        return f"unknown kind of file {suffix or '(no suffix)'}"
    if path.is_file() and suffix not in _ZIP_SUFFIXES and _looks_like_pickle(path):
        return "its content is a pickle (loading one runs code)"
    return None


def find_unsafe_files(folder: Path) -> list[tuple[Path, str]]:
    """Every file under ``folder`` (recursively) that must not be loaded, with the reason, sorted by path."""
    found = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        reason = unsafe_reason(path)
        if reason is not None:
            found.append((path, reason))
    return found


def unsafe_files_error(found: list[tuple[Path, str]], *, what: str, hint: str) -> UnsafeFileError:
    """One line naming the first of ``found`` (and how many more there are), e.g. ``what="refusing to load"``."""
    path, reason = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return UnsafeFileError(f"{what} {path.name}: {reason}{more}", where=str(path), hint=hint)


def refuse_unsafe_files(folder: Path, *, hint: str) -> None:
    """Raise :class:`UnsafeFileError` naming the first unsafe file under ``folder`` (and how many there are)."""
    found = find_unsafe_files(folder)
    if found:
        raise unsafe_files_error(found, what="refusing to load", hint=hint)


__all__ = [
    "PICKLE_SUFFIXES",
    "SAFE_SUFFIXES",
    "UnsafeFileError",
    "find_unsafe_files",
    "refuse_unsafe_files",
    "unsafe_files_error",
    "unsafe_reason",
]
