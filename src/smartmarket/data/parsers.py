"""Candle file parsers: generic OHLCV CSV/CSV.gz/Parquet, Binance kline CSV, freqtrade JSON.

Every parser returns a *raw frame* (``RAW_COLUMNS``), not yet validated:

- ``ts`` int64 UTC epoch ms (timestamps in s, ms, µs or ns are recognised per row by magnitude; ISO-8601
  strings are accepted; naive times are UTC), ``open … volume`` float64;
- ``line``: the 1-based line of the row in the source file (the record number for JSON/Parquet);
- ``raw``: ``None`` for rows that parsed, otherwise the row's original fields joined by commas. Such a row
  (``abc`` as a price, an unreadable timestamp) is kept, never dropped: validation quarantines it as
  ``unparseable``. Its numeric columns are then meaningless (NaN, ts 0).

Lines with no value at all (blank lines) carry no data and are skipped; line numbers stay exact.
A file that cannot be read at all raises ``DataFormatError`` (what, where=file, hint).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from smartmarket.core.errors import DataFormatError
from smartmarket.data.frame import CANDLE_COLUMNS

FORMATS: tuple[str, ...] = ("csv", "parquet", "binance", "freqtrade")
RAW_COLUMNS: tuple[str, ...] = (*CANDLE_COLUMNS, "line", "raw")
CHUNK_ROWS = 1_000_000

# Header spellings accepted for the generic formats (lower-cased).
COLUMN_ALIASES: dict[str, str] = {
    "timestamp": "ts",
    "time": "ts",
    "date": "ts",
    "datetime": "ts",
    "open_time": "ts",
    "opentime": "ts",
    "o": "open",
    "h": "high",
    "l": "low",
    "c": "close",
    "v": "volume",
    "vol": "volume",
}
BINANCE_COLUMN_COUNT = 12
Compression = Literal["gzip", "zip", "bz2", "xz", "zstd"]
_COMPRESSION_BY_SUFFIX: dict[str, Compression] = {
    ".gz": "gzip",
    ".zip": "zip",
    ".bz2": "bz2",
    ".xz": "xz",
    ".zst": "zstd",
}
_GENERIC_HINT = "expected a header ts,open,high,low,close,volume (or pass --format)"

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------- detection


def _suffixes(path: Path) -> tuple[str, Compression | None]:
    """(data suffix, compression) of ``path``: ``x.csv.gz`` → (".csv", "gzip")."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = _COMPRESSION_BY_SUFFIX.get(suffixes[-1]) if suffixes else None
    if compression and len(suffixes) >= 2:
        return suffixes[-2], compression
    if compression:
        return "", compression
    return (suffixes[-1] if suffixes else ""), None


def _peek_first_row(path: Path, compression: Compression | None) -> list[str]:
    """The fields of the first non-blank line, as text."""
    try:
        first = pd.read_csv(path, header=None, nrows=1, dtype=str, compression=compression, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataFormatError("file is empty", where=str(path), hint="give a file with candle rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise DataFormatError(f"cannot read file ({_short(exc)})", where=str(path), hint=_GENERIC_HINT) from None
    return [str(v) for v in first.iloc[0].tolist()] if len(first) else []


def _looks_like_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_binance_header(fields: list[str]) -> bool:
    names = [f.strip().lower() for f in fields]
    return len(names) == BINANCE_COLUMN_COUNT and names[0] in ("open_time", "opentime", "open time")


def detect_format(path: Path) -> str:
    """One of ``FORMATS``, from the extension and, for CSV, the first line."""
    suffix, compression = _suffixes(path)
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".json":
        return "freqtrade"
    first = _peek_first_row(path, compression)
    if len(first) == BINANCE_COLUMN_COUNT and (_looks_like_number(first[0]) or _is_binance_header(first)):
        return "binance"
    if suffix in (".csv", ".txt", "") or first:
        return "csv"
    raise DataFormatError("cannot recognise the file format", where=str(path), hint=f"pass --format {FORMATS}")


# --------------------------------------------------------------------------------------------- conversion


def coerce_numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, mask of entries present but not a number). Missing entries become NaN, not bad."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(values), dtype=bool)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = (numbers.isna() & values.notna()).to_numpy(dtype=bool)
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan), bad


def _numbers_to_ms(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Epoch numbers in s, ms, µs or ns (chosen per value by magnitude) → (int64 ms, mask of unusable)."""
    if values.dtype.kind in "iu":
        v = values.astype(np.int64)
        mag = np.abs(v)
        ms = np.select(
            [mag < 10**11, mag < 10**14, mag < 10**17],
            [v * 1000, v, v // 1000],
            default=v // 1_000_000,
        )
        exact = np.select([mag < 10**14, mag < 10**17], [True, v % 1000 == 0], default=v % 1_000_000 == 0)
        return ms.astype(np.int64), ~exact
    v = values.astype(np.float64)
    mag = np.abs(v)
    with np.errstate(invalid="ignore", over="ignore"):
        ms_float = np.select([mag < 1e11, mag < 1e14, mag < 1e17], [v * 1000.0, v, v / 1000.0], default=v / 1e6)
        rounded = np.round(ms_float)
        # Seconds with a fraction land within float noise of a whole ms; anything else is not a candle time.
        ok = np.isfinite(ms_float) & (np.abs(ms_float - rounded) < 1e-3) & (np.abs(rounded) < 2**53)
    return np.where(ok, rounded, 0).astype(np.int64), ~ok


def _datetimes_to_ms(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Datetimes (tz-aware or naive = UTC) → (int64 ms, mask of missing or sub-millisecond)."""
    dt = pd.to_datetime(values, utc=True)
    missing = dt.isna().to_numpy()
    ns = dt.dt.as_unit("ns").astype("int64").to_numpy()
    bad = missing | (ns % 1_000_000 != 0)
    return np.where(bad, 0, ns // 1_000_000).astype(np.int64), bad


def timestamps_to_ms(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps as epoch numbers (s/ms/µs/ns by magnitude), datetimes or ISO-8601 text → (ms, bad mask)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _datetimes_to_ms(values)
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        if values.isna().any():
            return _numbers_to_ms(values.to_numpy(dtype=np.float64, na_value=np.nan))
        return _numbers_to_ms(values.to_numpy())
    numbers = pd.to_numeric(values, errors="coerce")
    ms, bad = _numbers_to_ms(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    text = numbers.isna().to_numpy() & values.notna().to_numpy()
    if text.any():
        iso = pd.to_datetime(values[text].astype(str), utc=True, format="ISO8601", errors="coerce")
        iso_ms, iso_bad = _datetimes_to_ms(iso)
        ms[text], bad[text] = iso_ms, iso_bad
    return ms, bad


def _raw_text(fields: pd.DataFrame) -> pd.Series:
    """Original fields of each row joined by commas (missing shown as empty)."""
    return fields.astype(object).where(fields.notna(), "").astype(str).agg(",".join, axis=1)


def to_raw_frame(fields: pd.DataFrame, lines: np.ndarray) -> pd.DataFrame:
    """Turn source fields (columns ``ts … volume``, any dtypes) into a raw frame (``RAW_COLUMNS``).

    Rows with no value at all are dropped (blank lines); any field present but unreadable marks the row
    unparseable and keeps its text in ``raw``.
    """
    blank = fields.isna().all(axis=1).to_numpy()
    if blank.any():
        fields, lines = fields.loc[~blank], lines[~blank]
    ts, bad = timestamps_to_ms(fields["ts"])
    out: dict[str, object] = {"ts": ts}
    for col in CANDLE_COLUMNS[1:]:
        values, col_bad = coerce_numbers(fields[col])
        out[col] = values
        bad = bad | col_bad
    out["line"] = np.asarray(lines, dtype=np.int64)
    raw = pd.Series(None, index=fields.index, dtype=object)
    if bad.any():
        raw[bad] = _raw_text(fields.loc[bad, list(CANDLE_COLUMNS)]).to_numpy()
        out["ts"] = np.where(bad, 0, ts)
    out["raw"] = raw.to_numpy()
    return pd.DataFrame(out, columns=list(RAW_COLUMNS))


def empty_raw_frame() -> pd.DataFrame:
    return to_raw_frame(pd.DataFrame({c: pd.Series(dtype=np.float64) for c in CANDLE_COLUMNS}), np.array([]))


# --------------------------------------------------------------------------------------------- readers


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def _generic_columns(names: list[str], path: Path) -> list[str]:
    """Map the file's header to candle column names; fail clearly when a column is missing."""
    mapped = [COLUMN_ALIASES.get(n.strip().lower(), n.strip().lower()) for n in names]
    missing = [c for c in CANDLE_COLUMNS if c not in mapped]
    if missing:
        raise DataFormatError(f"missing columns {missing} (header is {names})", where=str(path), hint=_GENERIC_HINT)
    repeated = sorted({c for c in CANDLE_COLUMNS if mapped.count(c) > 1})
    if repeated:
        raise DataFormatError(f"ambiguous columns {repeated} (header is {names})", where=str(path), hint=_GENERIC_HINT)
    return mapped


def _csv_layout(path: Path, fmt: str, compression: Compression | None) -> tuple[int | None, list[int] | None]:
    """(header row or None, positional columns to use or None for header names) for a CSV file."""
    first = _peek_first_row(path, compression)
    has_header = bool(first) and not _looks_like_number(first[0]) and not _is_iso_time(first[0])
    if fmt == "binance":
        if len(first) < len(CANDLE_COLUMNS):
            raise DataFormatError(
                f"a Binance kline row has {BINANCE_COLUMN_COUNT} columns, found {len(first)}",
                where=str(path),
                hint="pass --format csv for a ts,open,high,low,close,volume file",
            )
        return (0 if has_header else None), list(range(len(CANDLE_COLUMNS)))
    if has_header:
        _generic_columns(first, path)
        return 0, None
    if len(first) != len(CANDLE_COLUMNS):
        raise DataFormatError(
            f"headerless CSV with {len(first)} columns", where=str(path), hint=_GENERIC_HINT + " or --format binance"
        )
    return None, list(range(len(CANDLE_COLUMNS)))


def _is_iso_time(text: str) -> bool:
    return not pd.isna(pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True))


def _read_csv(path: Path, fmt: str, progress: Progress | None) -> pd.DataFrame:
    _, compression = _suffixes(path)
    header, positions = _csv_layout(path, fmt, compression)
    first_data_line = 2 if header == 0 else 1
    total = path.stat().st_size
    chunks: list[pd.DataFrame] = []
    with path.open("rb") as handle:
        try:
            reader = pd.read_csv(
                handle,
                header=header,
                usecols=positions,
                compression=compression,
                skip_blank_lines=False,
                chunksize=CHUNK_ROWS,
                low_memory=False,
            )
            for chunk in reader:
                if positions is not None:
                    chunk.columns = list(CANDLE_COLUMNS)
                else:
                    chunk.columns = _generic_columns([str(c) for c in chunk.columns], path)
                lines = chunk.index.to_numpy(dtype=np.int64) + first_data_line
                chunks.append(to_raw_frame(chunk[list(CANDLE_COLUMNS)], lines))
                if progress is not None:
                    progress(min(handle.tell(), total), total)  # compressed bytes consumed so far
        except pd.errors.EmptyDataError:
            return empty_raw_frame()
        except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataFormatError(
                f"cannot read CSV ({_short(exc)})",
                where=str(path),
                hint="every row needs the same number of comma-separated fields",
            ) from None
    if progress is not None:
        progress(total, total)
    return pd.concat(chunks, ignore_index=True) if chunks else empty_raw_frame()


def _read_parquet(path: Path, progress: Progress | None) -> pd.DataFrame:
    try:
        pfile = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(f"cannot read Parquet ({_short(exc)})", where=str(path), hint=_GENERIC_HINT) from None
    names = _generic_columns(list(pfile.schema_arrow.names), path)
    wanted = [pfile.schema_arrow.names[names.index(c)] for c in CANDLE_COLUMNS]
    total = pfile.metadata.num_rows
    chunks: list[pd.DataFrame] = []
    done = 0
    for batch in pfile.iter_batches(batch_size=CHUNK_ROWS, columns=wanted):
        fields = batch.to_pandas()
        fields.columns = list(CANDLE_COLUMNS)
        lines = np.arange(done + 1, done + len(fields) + 1, dtype=np.int64)
        fields.index = pd.RangeIndex(done, done + len(fields))
        chunks.append(to_raw_frame(fields, lines))
        done += len(fields)
        if progress is not None:
            progress(done, total)
    return pd.concat(chunks, ignore_index=True) if chunks else empty_raw_frame()


def _read_freqtrade(path: Path, progress: Progress | None) -> pd.DataFrame:
    _, compression = _suffixes(path)
    try:
        # precise_float: exact decimal → float conversion; dtype=False: no guessing (timestamps stay numbers).
        fields = pd.read_json(path, orient="values", precise_float=True, dtype=False, compression=compression)
    except (ValueError, OSError, EOFError, json.JSONDecodeError) as exc:
        raise DataFormatError(
            f"cannot read freqtrade JSON ({_short(exc)})",
            where=str(path),
            hint="expected a JSON list of [ts_ms, open, high, low, close, volume]",
        ) from None
    if fields.empty:
        return empty_raw_frame()
    if fields.shape[1] < len(CANDLE_COLUMNS):
        raise DataFormatError(
            f"freqtrade records have {fields.shape[1]} values, expected 6",
            where=str(path),
            hint="expected a JSON list of [ts_ms, open, high, low, close, volume]",
        )
    fields = fields.iloc[:, : len(CANDLE_COLUMNS)]
    fields.columns = list(CANDLE_COLUMNS)
    raw = to_raw_frame(fields, np.arange(1, len(fields) + 1, dtype=np.int64))
    if progress is not None:
        size = path.stat().st_size
        progress(size, size)
    return raw


def parse_file(path: Path, fmt: str | None = None, *, progress: Progress | None = None) -> pd.DataFrame:
    """Read a candle file into a raw frame (``RAW_COLUMNS``). ``fmt`` None or ``"auto"`` detects it.

    ``progress(done, total)`` is called while reading (bytes for CSV, rows for Parquet).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("file not found", where=str(path), hint="check the path")
    if fmt in (None, "auto"):
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise DataFormatError(f"unknown format {fmt!r}", where=str(path), hint=f"use one of: auto {' '.join(FORMATS)}")
    if fmt == "parquet":
        return _read_parquet(path, progress)
    if fmt == "freqtrade":
        return _read_freqtrade(path, progress)
    return _read_csv(path, fmt, progress)


__all__ = [
    "COLUMN_ALIASES",
    "FORMATS",
    "RAW_COLUMNS",
    "coerce_numbers",
    "detect_format",
    "empty_raw_frame",
    "parse_file",
    "timestamps_to_ms",
    "to_raw_frame",
]
