"""Quarantine: where rejected rows go, one append-only CSV per series, never overwritten.

File: ``<quarantine_dir>/<SYMBOL>-<timeframe>.quarantine.csv`` with the columns ``QUARANTINE_COLUMNS``:
when (``ingested_at``, ISO-8601 UTC), what series, from which ``source`` (a file path or ``exchange:binance``)
and ``line``, the ``reason`` (see ``smartmarket.data.validation.REASONS``), the row's values as parsed
(``ts … volume``; empty when unreadable), the stored values for ``conflict_with_stored`` rows
(``stored_open … stored_volume``) and ``raw``, the original text of an unparseable row (at most
``RAW_TEXT_LIMIT`` characters, control characters such as NUL written as ``\x00``).
Floats are written in their shortest exact form, so reading back gives the same numbers bit for bit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from smartmarket.core.errors import DataFormatError
from smartmarket.core.frame import CANDLE_COLUMNS
from smartmarket.core.types import Timeframe
from smartmarket.data.parsers import row_text

STORED_COLUMNS: tuple[str, ...] = tuple(f"stored_{c}" for c in CANDLE_COLUMNS[1:])
QUARANTINE_COLUMNS: tuple[str, ...] = (
    "ingested_at",
    "symbol",
    "timeframe",
    "source",
    "line",
    "reason",
    *CANDLE_COLUMNS,
    *STORED_COLUMNS,
    "raw",
)
_TEXT_COLUMNS = ("ingested_at", "symbol", "timeframe", "source", "reason", "raw")
_INT_COLUMNS = ("line", "ts")
SUFFIX = ".quarantine.csv"


def quarantine_file(quarantine_dir: Path, symbol: str, timeframe: Timeframe) -> Path:
    """The quarantine file of one series."""
    return Path(quarantine_dir) / f"{symbol}-{timeframe.value}{SUFFIX}"


def _header() -> str:
    return ",".join(QUARANTINE_COLUMNS) + "\n"


def write_quarantine(
    quarantine_dir: Path,
    symbol: str,
    timeframe: Timeframe,
    source: str,
    rows: pd.DataFrame,
    *,
    ingested_at: datetime | None = None,
) -> Path | None:
    """Append ``rows`` (candle columns, ``line``, ``reason``, optional ``raw`` and ``stored_*``) to the series'
    quarantine file; returns its path, or None when there was nothing to write."""
    if rows.empty:
        return None
    when = (ingested_at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")
    out = pd.DataFrame(index=range(len(rows)))
    out["ingested_at"] = when
    out["symbol"] = symbol
    out["timeframe"] = timeframe.value
    out["source"] = source
    for col in QUARANTINE_COLUMNS[4:]:
        if col in rows.columns:
            out[col] = rows[col].to_numpy()
        else:
            out[col] = None
    # Unparseable rows carry meaningless numbers: leave them empty, the raw text says what was there (cut to
    # RAW_TEXT_LIMIT characters, control characters escaped, whoever built the rows).
    unreadable = out["raw"].notna().to_numpy()
    if unreadable.any():
        out.loc[unreadable, list(CANDLE_COLUMNS)] = None
        out.loc[unreadable, "raw"] = [row_text(str(t)) for t in out.loc[unreadable, "raw"]]
    out["ts"] = _whole_numbers_as_int(out["ts"])
    path = quarantine_file(quarantine_dir, symbol, timeframe)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = out.to_csv(index=False, header=False, na_rep="", lineterminator="\n")
    with path.open("a+", encoding="utf-8", newline="") as handle:
        handle.seek(0)
        existing_header = handle.readline()
        if not existing_header:
            handle.write(_header())
        elif existing_header != _header():
            raise DataFormatError(
                "quarantine file has unexpected columns",
                where=str(path),
                hint="move it aside (it was written by another version) and ingest again",
            )
        handle.write(body)  # "a+" mode: writes always go to the end
    return path


def _whole_numbers_as_int(values: pd.Series) -> pd.Series:
    """Timestamps print as ``1502942400000``, not ``1502942400000.0``, unless some are not whole."""
    numbers = pd.to_numeric(values, errors="coerce")
    present = numbers.dropna()
    if (present == np.round(present)).all():
        return numbers.astype("Int64")
    return numbers


def read_quarantine(path: Path) -> pd.DataFrame:
    """Read a quarantine file (or every ``*.quarantine.csv`` in a directory) back, with its types.

    ``ts``/``line`` are nullable integers, values float64 (NaN where empty), text columns str (``raw`` is
    None where the row was readable)."""
    path = Path(path)
    files = sorted(path.glob(f"*{SUFFIX}")) if path.is_dir() else [path]
    if not files:
        return _empty()
    frames = [_read_one(f) for f in files]
    return pd.concat(frames, ignore_index=True)


def _read_one(path: Path) -> pd.DataFrame:
    numeric = [c for c in QUARANTINE_COLUMNS if c not in _TEXT_COLUMNS]
    frame = pd.read_csv(
        path,
        dtype={c: str for c in _TEXT_COLUMNS},
        keep_default_na=False,
        na_values={c: [""] for c in (*numeric, "raw")},
    )
    if list(frame.columns) != list(QUARANTINE_COLUMNS):
        raise DataFormatError("quarantine file has unexpected columns", where=str(path))
    for col in _INT_COLUMNS:
        present = frame[col].dropna()
        if (present == np.round(present)).all():
            frame[col] = frame[col].astype("Int64")
    for col in numeric:
        if col not in _INT_COLUMNS:
            frame[col] = frame[col].astype(np.float64)
    frame["raw"] = frame["raw"].astype(object).where(frame["raw"].notna(), None)
    return frame


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in QUARANTINE_COLUMNS})


__all__ = ["QUARANTINE_COLUMNS", "STORED_COLUMNS", "quarantine_file", "read_quarantine", "write_quarantine"]
