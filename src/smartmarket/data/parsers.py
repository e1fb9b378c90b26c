"""Candle file parsers: generic OHLCV CSV/CSV.gz/Parquet, Binance kline CSV, freqtrade JSON.

Every parser gives a ``ParsedFile`` whose ``raw`` view is a *raw frame* (``RAW_COLUMNS``), not yet validated:

- ``ts`` int64 UTC epoch ms (timestamps in s, ms, µs or ns are recognised per row by magnitude; ISO-8601
  strings are accepted; naive times are UTC), ``open … volume`` float64 (an empty field is NaN);
- ``line``: the 1-based line of the row in the source file, the header being line 1 (the record number for
  JSON/Parquet);
- ``raw``: ``None`` for rows that parsed, otherwise the row's original text (at most ``RAW_TEXT_LIMIT``
  characters, control characters escaped) — only bad rows keep text, so memory does not depend on what one
  row contains;
- ``problem``: ``None``, or why the parser could not read the row: ``field_count`` (more or fewer fields
  than the header) or ``unparseable`` (a field that is not a number or a time: ``abc``, a quote, a NUL).
  Such a row is kept, never dropped: validation quarantines it. Its numeric columns are meaningless.

CSV files are read as **unquoted numeric CSV** in large byte blocks: a quote character is an ordinary
(bad) byte, so it can never merge lines, and a row with a wrong field count never shifts the other rows.
Each block is first given whole to ``pyarrow.csv`` (quoting off, explicit types, empty lines kept); it is taken
as it is when every ts is integer ms and every value finite (see ``_parse_block``); otherwise lines are split
with numpy, fields counted per line, the plain lines parsed by pyarrow and only the suspicious ones by the slow
path. ``read_candle_file`` returns a ``ParsedFile``: the candle columns, the line of each row and, apart, the
rows it could not read (``Flagged``); its ``raw`` is the raw frame above. It also counts the file's data lines
(every line after the header) and blank lines (nothing but an optional ``\r``): for every file
``rows + blank_lines == data_lines``. A file that cannot be read at all raises ``DataFormatError``
(what, where=file, hint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import mmap
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from smartmarket.core.errors import DataFormatError
from smartmarket.core.frame import CANDLE_COLUMNS
from smartmarket.data.formats import FORMATS
from smartmarket.data.text_blocks import (
    BOM,
    RAW_TEXT_LIMIT,
    READ_ERRORS,
    Block,
    Compression,
    Progress,
    blocks,
    file_blocks,
    file_suffixes,
    raw_pieces,
)

RAW_COLUMNS: tuple[str, ...] = (*CANDLE_COLUMNS, "line", "raw", "problem")
PROBLEMS: tuple[str, ...] = ("field_count", "unparseable")
CHUNK_ROWS = 1_000_000  # Parquet batch rows
_AHEAD = 1  # blocks read ahead of the parsing
PEEK_LINES = 64  # non-blank lines looked at to recognise a CSV layout
_PEEK_BYTES = 1 << 20

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
_GENERIC_HINT = "expected a header ts,open,high,low,close,volume (or pass --format)"
_FREQTRADE_HINT = "expected a JSON list of [ts_ms, open, high, low, close, volume]"
# Bytes a plain numeric line may hold (besides the commas and the line end) and, for text timestamps, ISO-8601.
_NUMERIC_BYTES = b"0123456789.-+eE,\n"
_ISO_BYTES = b"TZ: "
_GOOD_BYTE = np.zeros(256, dtype=bool)
_GOOD_BYTE[np.frombuffer(_NUMERIC_BYTES + _ISO_BYTES, dtype=np.uint8)] = True
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0, 9), *range(10, 32), 127)}


@dataclass(frozen=True)
class Flagged:
    """Rows the parser could not read (few, kept apart so clean rows carry no text): their positions among the
    rows (ascending), ``problem`` (see ``PROBLEMS``; None when only text was kept) and ``raw`` text."""

    rows: np.ndarray
    problem: np.ndarray
    raw: np.ndarray

    @staticmethod
    def none() -> Flagged:
        return Flagged(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object), np.zeros(0, dtype=object))


@dataclass
class ParsedFile:
    """A file's rows as candle columns (``columns``: ts int64, the rest float64; meaningless for ``flagged``
    rows), the source ``line`` of each row, the rows the parser could not read, and the line accounting:
    ``rows + blank_lines == data_lines``. ``raw`` is the same rows as one raw frame (``RAW_COLUMNS``)."""

    columns: dict[str, np.ndarray]
    line: np.ndarray
    flagged: Flagged
    data_lines: int  # lines after the header (records for JSON/Parquet)
    blank_lines: int = 0
    fmt: str = ""
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of_frame(cls, raw: pd.DataFrame, *, data_lines: int, fmt: str) -> ParsedFile:
        """A parsed file around a raw frame (``RAW_COLUMNS``)."""
        problem, text = raw["problem"].to_numpy(), raw["raw"].to_numpy()
        rows = np.flatnonzero(pd.notna(problem) | pd.notna(text))
        return cls(
            {c: raw[c].to_numpy() for c in CANDLE_COLUMNS},
            raw["line"].to_numpy(dtype=np.int64),
            Flagged(rows, problem[rows], text[rows]),
            data_lines=data_lines,
            fmt=fmt,
        )

    @property
    def rows(self) -> int:
        return len(self.line)

    @cached_property
    def raw(self) -> pd.DataFrame:
        """The rows as one raw frame (``RAW_COLUMNS``: ``raw``/``problem`` None where the row parsed)."""
        raw = np.full(self.rows, None, dtype=object)
        problem = np.full(self.rows, None, dtype=object)
        raw[self.flagged.rows], problem[self.flagged.rows] = self.flagged.raw, self.flagged.problem
        return _frame_of({**self.columns, "line": self.line, "raw": raw, "problem": problem})


# --------------------------------------------------------------------------------------------- reading bytes


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def _unreadable(path: Path, exc: BaseException) -> DataFormatError:
    return DataFormatError(f"cannot read file ({_short(exc)})", where=str(path), hint=_GENERIC_HINT)


def _source_blocks(path: Path, compression: Compression | None, progress: Progress | None) -> Iterator[Block]:
    if compression is None:
        return file_blocks(path, progress)
    return blocks(raw_pieces(path, compression, progress))


def _blocks(path: Path, compression: Compression | None, progress: Progress | None) -> Iterator[Block]:
    """The file's blocks, read (and decompressed) in a background thread one block ahead of the parsing: file
    reads, zlib/ISA-L inflate, bz2, lzma and large joins release the GIL, so they overlap the parsing of the
    block before. Memory: at most ``_AHEAD`` blocks wait. Any read error is one ``DataFormatError``."""
    results: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=_AHEAD)
    stop = threading.Event()

    def produce() -> None:
        try:
            for block in _source_blocks(path, compression, progress):
                while not stop.is_set():
                    try:
                        results.put(("block", block), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            results.put(("end", None))
        except BaseException as exc:  # handed to the reading thread
            results.put(("error", exc))

    worker = threading.Thread(target=produce, name="smartmarket-read", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = results.get()
            if kind == "end":
                return
            if kind == "error":
                if isinstance(item, DataFormatError):
                    raise item
                if isinstance(item, READ_ERRORS):
                    raise _unreadable(path, item) from None
                raise item  # type: ignore[misc]
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                results.get(timeout=0.05)
        worker.join()


def _peek_lines(path: Path, compression: Compression | None) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the first ``PEEK_LINES`` non-blank lines."""
    found: list[tuple[int, list[str]]] = []
    seen = b""
    try:
        if compression is None:
            with path.open("rb") as handle:
                seen = handle.read(_PEEK_BYTES)
        for piece in raw_pieces(path, compression, None) if compression else ():
            seen += piece[: _PEEK_BYTES - len(seen)]
            if len(seen) >= _PEEK_BYTES or seen.count(b"\n") > 4 * PEEK_LINES:
                break
    except DataFormatError:
        raise
    except READ_ERRORS as exc:
        raise _unreadable(path, exc) from None
    if seen.startswith(BOM):
        seen = seen[len(BOM) :]
    lines = seen[:_PEEK_BYTES].split(b"\n")
    if len(seen) >= _PEEK_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last one may be cut
    for number, line in enumerate(lines, start=1):
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        if text.strip():
            found.append((number, text.split(",")))
        if len(found) >= PEEK_LINES:
            break
    if not found:
        raise DataFormatError("file is empty", where=str(path), hint="give a file with candle rows")
    return found


def _looks_like_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_iso_time(text: str) -> bool:
    return not pd.isna(pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True))


def _header_names(fields: list[str]) -> list[str]:
    return [f.strip().strip('"').strip() for f in fields]


def _is_binance_header(fields: list[str]) -> bool:
    names = [f.lower() for f in _header_names(fields)]
    return len(names) == BINANCE_COLUMN_COUNT and names[0] in ("open_time", "opentime", "open time")


def detect_format(path: Path) -> str:
    """One of ``FORMATS``, from the extension and, for CSV, the first line."""
    suffix, compression = file_suffixes(path)
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".json":
        return "freqtrade"
    first = _peek_lines(path, compression)[0][1]
    if len(first) == BINANCE_COLUMN_COUNT and (_looks_like_number(first[0].strip()) or _is_binance_header(first)):
        return "binance"
    return "csv"


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
        v = values.astype(np.int64, copy=False)
        if len(v) and v.min() >= 10**11 and v.max() < 10**14:  # the common case: every value already in ms
            return v, np.zeros(len(v), dtype=bool)
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
    """Original fields of each row joined by commas (missing shown as empty), cut to ``RAW_TEXT_LIMIT``."""
    joined = fields.astype(object).where(fields.notna(), "").astype(str).agg(",".join, axis=1)
    return joined.map(row_text)


def to_raw_frame(fields: pd.DataFrame, lines: np.ndarray, *, keep_blank: bool = False) -> pd.DataFrame:
    """Turn source fields (columns ``ts … volume``, any dtypes) into a raw frame (``RAW_COLUMNS``).

    Rows with no value at all are dropped unless ``keep_blank`` (records of a JSON or Parquet file are kept and
    judged); any field present but unreadable marks the row ``unparseable`` and keeps its text in ``raw``.
    """
    if not keep_blank:
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
    raw = np.full(len(fields), None, dtype=object)
    problem = np.full(len(fields), None, dtype=object)
    if bad.any():
        raw[bad] = _raw_text(fields.loc[bad, list(CANDLE_COLUMNS)]).to_numpy()
        problem[bad] = "unparseable"
        out["ts"] = np.where(bad, 0, ts)
    out["raw"] = raw
    out["problem"] = problem
    return pd.DataFrame(out, columns=list(RAW_COLUMNS))


def _empty_fields() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in CANDLE_COLUMNS})


def empty_raw_frame() -> pd.DataFrame:
    return to_raw_frame(_empty_fields(), np.array([], dtype=np.int64))


# --------------------------------------------------------------------------------------------- CSV


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


@dataclass(frozen=True)
class _Layout:
    """How to read a CSV: ``header_line`` (0: none), ``fields`` per line, the ``positions`` of ts…volume."""

    header_line: int
    fields: int
    positions: tuple[int, ...]


def _usual_count(peeked: list[tuple[int, list[str]]], start: int) -> int:
    """The most common field count among the peeked lines from ``start`` (the first line's on a tie)."""
    counts = [len(f) for _, f in peeked[start:]] or [len(peeked[0][1])]
    values, freq = np.unique(np.array(counts), return_counts=True)
    best = values[freq == freq.max()]
    return counts[0] if counts[0] in best else int(best[0])


def _csv_layout(path: Path, fmt: str, compression: Compression | None) -> _Layout:
    """Where the header is (if any), how many fields a row has and which ones are the candle columns."""
    peeked = _peek_lines(path, compression)
    line, first = peeked[0]
    lead = first[0].strip()
    has_header = not _looks_like_number(lead) and not _is_iso_time(lead)
    if fmt == "binance":
        count = len(first) if has_header else _usual_count(peeked, 0)
        if count < len(CANDLE_COLUMNS):
            raise DataFormatError(
                f"a Binance kline row has {BINANCE_COLUMN_COUNT} columns, found {count}",
                where=str(path),
                hint="pass --format csv for a ts,open,high,low,close,volume file",
            )
        return _Layout(line if has_header else 0, count, tuple(range(len(CANDLE_COLUMNS))))
    if has_header:
        names = _header_names(first)
        mapped = _generic_columns(names, path)
        return _Layout(line, len(names), tuple(mapped.index(c) for c in CANDLE_COLUMNS))
    count = _usual_count(peeked, 0)
    if count != len(CANDLE_COLUMNS):
        raise DataFormatError(
            f"headerless CSV with {count} columns", where=str(path), hint=_GENERIC_HINT + " or --format binance"
        )
    return _Layout(0, count, tuple(range(len(CANDLE_COLUMNS))))


@dataclass
class _Columns:
    """Parsed candle columns of some rows: ts in ms and which ts could not be used."""

    ts: np.ndarray
    ts_bad: np.ndarray
    values: list[np.ndarray]


_PARSE = pacsv.ParseOptions(
    quote_char=False, escape_char=False, double_quote=False, newlines_in_values=False, ignore_empty_lines=False
)
_TS_TYPES = (pa.int64(), pa.float64(), pa.string())
_FAILED_COLUMN = re.compile(r"CSV column #(\d+)")


def _arrow_table(data: bytes | memoryview, layout: _Layout) -> tuple[pa.Table, list[str]] | None:
    """Plain numeric lines parsed by pyarrow (ts as int64, else float64, else text); None if impossible."""
    names = [f"f{i}" for i in range(layout.fields)]
    wanted = [names[p] for p in layout.positions]
    for ts_type in _TS_TYPES:
        types = {wanted[0]: ts_type, **{n: pa.float64() for n in wanted[1:]}}
        try:
            table = pacsv.read_csv(
                pa.py_buffer(data),
                read_options=pacsv.ReadOptions(column_names=names, block_size=4 << 20, use_threads=True),
                parse_options=_PARSE,
                convert_options=pacsv.ConvertOptions(
                    column_types=types, include_columns=wanted, null_values=[""], check_utf8=False
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            column = _FAILED_COLUMN.search(str(exc))
            if "columns, got" in str(exc) or (column and int(column.group(1)) != layout.positions[0]):
                return None  # another field count, or a value column that is not a number: no ts type will do
            continue
        return table, wanted
    return None


def _arrow_columns(data: bytes | memoryview, layout: _Layout) -> _Columns | None:
    parsed = _arrow_table(data, layout)
    return None if parsed is None else _table_columns(*parsed)


def _plain_chunks(table: pa.Table, wanted: list[str]) -> dict[str, list[np.ndarray]] | None:
    """The columns chunk by chunk (views of pyarrow's memory, nothing concatenated) when every row is fine:
    integer timestamps, none missing, all in a recognised unit, every value a finite number; otherwise None."""
    ts_col = table.column(wanted[0])
    if not pa.types.is_int64(ts_col.type) or ts_col.null_count:
        return None
    ts_chunks = []
    for chunk in ts_col.chunks:
        ms, bad = _numbers_to_ms(chunk.to_numpy())
        if bad.any():
            return None
        ts_chunks.append(ms)
    out = {"ts": ts_chunks}
    for name, column in zip(wanted[1:], CANDLE_COLUMNS[1:], strict=True):
        out[column] = [chunk.to_numpy(zero_copy_only=False) for chunk in table.column(name).chunks]
        if not all(np.isfinite(values).all() for values in out[column]):  # empty, nan or inf: see _parse_block
            return None
    return out


def _table_columns(table: pa.Table, wanted: list[str]) -> _Columns:
    ts_col = table.column(wanted[0])
    if pa.types.is_string(ts_col.type) or pa.types.is_large_string(ts_col.type):
        ts, ts_bad = timestamps_to_ms(pd.Series(ts_col.to_numpy(zero_copy_only=False), dtype=object))
    else:
        nulls = ts_col.null_count
        numbers = ts_col.fill_null(0).to_numpy() if nulls else ts_col.to_numpy()
        ts, ts_bad = _numbers_to_ms(numbers)
        if nulls:
            ts_bad = ts_bad | ts_col.is_null().to_numpy(zero_copy_only=False)
    values = [table.column(n).to_numpy(zero_copy_only=False).astype(np.float64, copy=False) for n in wanted[1:]]
    return _Columns(ts, ts_bad, values)


def row_text(data: bytes | str) -> str:
    """A bad row's text for the quarantine: decoded, control characters escaped, cut to ``RAW_TEXT_LIMIT``."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text[: RAW_TEXT_LIMIT + 1].translate(_CONTROL)
    return text[:RAW_TEXT_LIMIT] + "…" if len(text) > RAW_TEXT_LIMIT else text


def _cut_text(head: bytes) -> str:
    """The text of a line cut while streaming: its head, always marked as cut."""
    text = row_text(head)
    return text if text.endswith("…") else text + "…"


class _Rows:
    """Rows collected from one block: parsed pieces and slow-path rows, each with its block-local line."""

    def __init__(self) -> None:
        self.index: list[np.ndarray] = []
        self.columns: list[_Columns] = []
        self.raw: dict[int, str] = {}  # block-local line -> text of a bad row
        self.problem: dict[int, str] = {}

    def add(self, index: np.ndarray, columns: _Columns) -> None:
        self.index.append(index)
        self.columns.append(columns)

    def columns_out(self, first_line: int, text_of: Callable[[int], bytes]) -> dict[str, np.ndarray]:
        """The rows as raw-frame columns, in line order."""
        if not self.index:
            return {c: empty_raw_frame()[c].to_numpy() for c in RAW_COLUMNS}
        index = np.concatenate(self.index) if len(self.index) > 1 else self.index[0]
        ts = np.concatenate([c.ts for c in self.columns])
        ts_bad = np.concatenate([c.ts_bad for c in self.columns])
        values = [np.concatenate([c.values[k] for c in self.columns]) for k in range(len(CANDLE_COLUMNS) - 1)]
        raw = np.full(len(index), None, dtype=object)
        problem = np.full(len(index), None, dtype=object)
        bad = ts_bad.copy()
        if self.problem:
            keys = np.fromiter(self.problem, dtype=np.int64, count=len(self.problem))
            order = np.argsort(index, kind="stable")
            where = order[np.searchsorted(index, keys, sorter=order)]
            problem[where] = list(self.problem.values())
            raw[where] = [self.raw[int(k)] for k in keys]
            bad[where] = False
        for pos in np.flatnonzero(bad):  # readable fields, unusable timestamp: keep the text
            problem[pos] = "unparseable"
            raw[pos] = row_text(text_of(int(index[pos])))
        if self.problem or bad.any():
            ts = np.where(pd.isna(problem), ts, 0)
        out = {
            "ts": ts.astype(np.int64, copy=False),
            **{c: v for c, v in zip(CANDLE_COLUMNS[1:], values, strict=True)},
            "line": index.astype(np.int64) + first_line,
            "raw": raw,
            "problem": problem,
        }
        if len(self.index) > 1:
            order = np.argsort(index, kind="stable")
            out = {c: v[order] for c, v in out.items()}
        return out


def _slow_rows(lines: list[tuple[int, bytes, bool]], layout: _Layout, rows: _Rows) -> None:
    """Lines that are not plain numeric CSV: split by hand, each one judged on its own."""
    keep: list[int] = []
    fields: list[list[str | None]] = []
    texts: list[bytes] = []
    nan = np.full(1, np.nan)
    for index, data, cut in lines:
        text = data.decode("utf-8", "replace")
        parts = text.split(",")
        if cut or len(parts) != layout.fields:
            rows.problem[index] = "unparseable" if cut else "field_count"
            rows.raw[index] = row_text(data) if not cut else _cut_text(data)
            rows.add(np.array([index]), _Columns(np.zeros(1, np.int64), np.zeros(1, bool), [nan] * 5))
            continue
        picked = [parts[p].strip() for p in layout.positions]
        keep.append(index)
        fields.append([p if p else None for p in picked])
        texts.append(data)
    if not keep:
        return
    frame = pd.DataFrame(fields, columns=list(CANDLE_COLUMNS), dtype=object)
    ts, ts_bad = timestamps_to_ms(frame["ts"])
    values: list[np.ndarray] = []
    bad = ts_bad
    for col in CANDLE_COLUMNS[1:]:
        numbers, col_bad = coerce_numbers(frame[col])
        values.append(numbers)
        bad = bad | col_bad
    for pos in np.flatnonzero(bad):
        rows.problem[keep[pos]] = "unparseable"
        rows.raw[keep[pos]] = row_text(texts[pos])
    rows.add(np.array(keep, dtype=np.int64), _Columns(ts, np.zeros(len(keep), bool), values))


def _line_bounds(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends without ``\\r``, ends at ``\\n``) of every line of a block."""
    nl = np.flatnonzero(buf == 10)
    starts = np.empty_like(nl)
    if len(nl):
        starts[0] = 0
        starts[1:] = nl[:-1] + 1
    has_cr = np.zeros(len(nl), dtype=bool)
    nonempty = nl > starts
    has_cr[nonempty] = buf[nl[nonempty] - 1] == 13
    return starts, nl - has_cr, nl


def _join_lines(view: memoryview, starts: np.ndarray, nl: np.ndarray, index: np.ndarray) -> bytes:
    """The bytes of the lines ``index`` (sorted), line ends included, joined run by run."""
    breaks = np.flatnonzero(np.diff(index) != 1)
    firsts = np.concatenate([index[:1], index[breaks + 1]])
    lasts = np.concatenate([index[breaks], index[-1:]])
    return b"".join(view[int(starts[a]) : int(nl[b]) + 1] for a, b in zip(firsts, lasts, strict=True))


@dataclass
class _Parsed:
    """Rows of one block as column chunks; ``first_line`` set: plain rows, one per line from that line, no text
    (the sink numbers the lines); otherwise every raw-frame column is given and the sink keeps the rows with a
    ``problem`` or ``raw`` text apart (``Flagged``)."""

    columns: dict[str, list[np.ndarray]]
    rows: int
    first_line: int | None = None


def _only_numeric_bytes(block: Block) -> bool:
    """Only number and ISO-8601 bytes (bytes read ahead after ``end`` included: a false alarm only costs the
    careful path)."""
    return not block.data.translate(None, _NUMERIC_BYTES + _ISO_BYTES + b"\r")


def _no_lone_cr(block: Block) -> bool:
    """``\\r`` only as part of ``\\r\\n`` (pyarrow would take a lone ``\\r`` for a line end)."""
    data, end = block.data, block.end
    return data.find(b"\r", 0, end) < 0 or data.count(b"\r", 0, end) == data.count(b"\r\n", 0, end)


def _parse_block(block: Block, first_line: int, layout: _Layout) -> tuple[_Parsed, int, int]:
    """(rows, lines, blank lines) of one block whose first line is the file's line ``first_line``.

    The fast path asks pyarrow for the whole block: it refuses any other field count and any field that is not
    a number, keeps empty lines (as rows of nulls, so one row per line: no count needed) and needs no byte
    check when every row is integer ms and finite numbers, the only values pyarrow and the careful path's
    ``pd.to_numeric`` are known to read alike whatever the bytes (``nan``, ``inf`` or a tab around a number are
    read by both, but go the careful way). Anything else (float or text timestamps) is taken from the table only
    when the block holds nothing but number bytes; the rest goes to the careful path."""
    if not block.long_lines and _no_lone_cr(block):
        parsed = _arrow_table(memoryview(block.data)[: block.end], layout)
        if parsed is not None and not parsed[0].column(parsed[1][0]).null_count:  # no blank line, no empty ts
            lines = parsed[0].num_rows
            chunks = _plain_chunks(*parsed)
            if chunks is not None:
                return _Parsed(chunks, lines, first_line), lines, 0
            if _only_numeric_bytes(block):
                columns = _table_columns(*parsed)
                rows = _Rows()
                rows.add(np.arange(lines, dtype=np.int64), columns)
                data = block.text()
                bounds: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

                def fast_text(i: int) -> bytes:
                    if not bounds:
                        bounds.append(_line_bounds(np.frombuffer(data, dtype=np.uint8)))
                    starts, ends, _ = bounds[0]
                    return data[int(starts[i]) : int(ends[i])]

                return _whole(rows.columns_out(first_line, fast_text)), lines, 0
    return _parse_block_carefully(block, first_line, layout)


def _whole(columns: dict[str, np.ndarray]) -> _Parsed:
    return _Parsed({c: [v] for c, v in columns.items()}, len(columns["ts"]))


def _parse_block_carefully(block: Block, first_line: int, layout: _Layout) -> tuple[_Parsed, int, int]:
    data = block.text()
    buf = np.frombuffer(data, dtype=np.uint8)
    starts, ends, nl = _line_bounds(buf)
    blank = ends == starts
    commas = np.flatnonzero(buf == 44)
    fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
    odd = np.flatnonzero(~_GOOD_BYTE[buf])
    odd_count = np.searchsorted(odd, ends) - np.searchsorted(odd, starts)
    simple = ~blank & (fields == layout.fields) & (odd_count == 0)
    cut = np.zeros(len(starts), dtype=bool)
    if block.long_lines:
        cut[list(block.long_lines)] = True
        simple &= ~cut
    rows = _Rows()
    failed: list[int] = []
    view = memoryview(data)

    def parse(index: np.ndarray) -> None:
        columns = _arrow_columns(_join_lines(view, starts, nl, index), layout)
        if columns is not None and len(columns.ts) == len(index):
            rows.add(index, columns)
        elif len(index) == 1:
            failed.append(int(index[0]))
        else:  # a number pyarrow refuses somewhere in here: halve until it is alone
            half = len(index) // 2
            parse(index[:half])
            parse(index[half:])

    simple_index = np.flatnonzero(simple)
    if len(simple_index):
        parse(simple_index)
    slow_index = sorted([*np.flatnonzero(~blank & ~simple).tolist(), *failed])
    if slow_index:
        _slow_rows(
            [(i, data[int(starts[i]) : int(ends[i])], bool(cut[i])) for i in slow_index],
            layout,
            rows,
        )

    def careful_text(i: int) -> bytes:
        return data[int(starts[i]) : int(ends[i])]

    return _whole(rows.columns_out(first_line, careful_text)), len(nl), int(np.count_nonzero(blank))


def _frame_of(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """A raw frame around these arrays without copying them (text columns stay plain object columns)."""
    return pd.DataFrame(
        {c: pd.Series(v, dtype=object, copy=False) if v.dtype == object else v for c, v in columns.items()},
        columns=list(RAW_COLUMNS),
        copy=False,
    )


def _text_size(path: Path, compression: Compression | None) -> int | None:
    """The file's decompressed size when cheap to know (plain file; gzip trailer, exact below 4 GiB)."""
    size = path.stat().st_size
    if compression is None:
        return size
    if compression == "gzip" and size >= 18:
        with path.open("rb") as handle:
            handle.seek(-4, 2)
            return int.from_bytes(handle.read(4), "little")
    return None


_SINK_DTYPES: dict[str, type] = {"ts": np.int64, "line": np.int64}
_MAPPED_BYTES = 4 << 20  # arrays at least this large are mapped directly (see ``_fresh_array``)


def _fresh_array(rows: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialised array. Large ones are anonymous memory maps of ordinary pages: numpy asks the kernel for
    huge pages on large arrays, and on a busy VM finding them (memory compaction) cost up to 0.3 s per 150 MB
    of fresh columns against a steady 0.05 s here. The map is released with the last view of the array."""
    size = rows * dtype.itemsize
    if size < _MAPPED_BYTES:
        return np.empty(rows, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, size), dtype=dtype)


_SINK_COLUMNS: tuple[str, ...] = (*CANDLE_COLUMNS, "line")


class _Sink:
    """Candle columns and lines filled block by block into arrays sized once from an estimate of the row count,
    so the rows are copied into place once instead of kept per block and concatenated (on a 2-core VM, touching
    fresh memory costs as much as parsing). Rows the parser could not read are kept apart (``Flagged``)."""

    def __init__(self) -> None:
        self.columns: dict[str, np.ndarray] = {}
        self.size = 0
        self.flagged: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.counting = np.zeros(0, dtype=np.int64)  # 0, 1, 2, … reused for the line numbers of each block

    def reserve(self, rows: int) -> None:
        grown = {c: _fresh_array(rows, np.dtype(_SINK_DTYPES.get(c, np.float64))) for c in _SINK_COLUMNS}
        for c, v in self.columns.items():
            grown[c][: self.size] = v[: self.size]
        self.columns = grown

    def add(self, block: _Parsed, estimate: int) -> None:
        rows, at = block.rows, self.size
        if at + rows > len(self.columns.get("ts", ())):
            self.reserve(max(estimate, at + rows, int(1.5 * (at + rows))))
        for c in _SINK_COLUMNS:
            pos = at
            for chunk in block.columns.get(c, ()):
                self.columns[c][pos : pos + len(chunk)] = chunk
                pos += len(chunk)
        if block.first_line is not None:
            if len(self.counting) < rows:
                self.counting = np.arange(rows, dtype=np.int64)
            np.add(self.counting[:rows], block.first_line, out=self.columns["line"][at : at + rows])
        else:
            (problem,) = block.columns["problem"]
            (raw,) = block.columns["raw"]
            bad = np.flatnonzero(pd.notna(problem) | pd.notna(raw))
            if len(bad):
                self.flagged.append((bad + at, problem[bad], raw[bad]))
        self.size += rows

    def parsed(self, *, data_lines: int, blank_lines: int, fmt: str) -> ParsedFile:
        if not self.size:
            empty = ParsedFile.of_frame(empty_raw_frame(), data_lines=data_lines, fmt=fmt)
            return dataclasses.replace(empty, blank_lines=blank_lines)
        flagged = (
            Flagged(*(np.concatenate(parts) for parts in zip(*self.flagged, strict=True)))
            if self.flagged
            else Flagged.none()
        )
        columns = {c: v[: self.size] for c, v in self.columns.items()}
        line = columns.pop("line")
        return ParsedFile(columns, line, flagged, data_lines=data_lines, blank_lines=blank_lines, fmt=fmt)


def _read_csv(path: Path, fmt: str, progress: Progress | None) -> ParsedFile:
    _, compression = file_suffixes(path)
    layout = _csv_layout(path, fmt, compression)
    text_size = _text_size(path, compression)
    sink = _Sink()
    seen_bytes = 0
    data_lines = blank_lines = 0
    line = 1  # the file's line number of the block's first line
    for block in _blocks(path, compression, progress):
        if line <= layout.header_line:  # drop the lines up to and including the header
            skip = layout.header_line - line + 1
            cut = skipped = 0
            while skipped < skip and cut < block.end:
                cut = block.data.index(b"\n", cut, block.end) + 1
                skipped += 1
            line += skipped
            if cut == block.end:
                continue  # nothing but lines before the header
            long_lines = tuple(i - skipped for i in block.long_lines if i >= skipped)
            block = Block(block.data[cut : block.end], block.end - cut, long_lines)
        columns, lines, blank = _parse_block(block, line, layout)
        line += lines
        data_lines += lines
        blank_lines += blank
        seen_bytes += block.end
        estimate = 0
        if text_size is not None and text_size > seen_bytes:  # rows so far × bytes left / bytes so far, +2 %
            estimate = int((data_lines - blank_lines) * (1.02 * text_size / seen_bytes)) + 1024
        sink.add(columns, estimate)
    if progress is not None:
        total = path.stat().st_size
        progress(total, total)
    return sink.parsed(data_lines=data_lines, blank_lines=blank_lines, fmt=fmt)


# --------------------------------------------------------------------------------------------- other formats


def _read_parquet(path: Path, progress: Progress | None) -> ParsedFile:
    try:
        pfile = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(f"cannot read Parquet ({_short(exc)})", where=str(path), hint=_GENERIC_HINT) from None
    names = _generic_columns(list(pfile.schema_arrow.names), path)
    wanted = [pfile.schema_arrow.names[names.index(c)] for c in CANDLE_COLUMNS]
    total = pfile.metadata.num_rows
    chunks: list[pd.DataFrame] = []
    done = 0
    try:
        for batch in pfile.iter_batches(batch_size=CHUNK_ROWS, columns=wanted):
            fields = batch.to_pandas()
            fields.columns = list(CANDLE_COLUMNS)
            lines = np.arange(done + 1, done + len(fields) + 1, dtype=np.int64)
            fields.index = pd.RangeIndex(done, done + len(fields))
            chunks.append(to_raw_frame(fields, lines, keep_blank=True))
            done += len(fields)
            if progress is not None:
                progress(done, total)
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(f"cannot read Parquet ({_short(exc)})", where=str(path), hint=_GENERIC_HINT) from None
    raw = pd.concat(chunks, ignore_index=True) if chunks else empty_raw_frame()
    return ParsedFile.of_frame(raw, data_lines=len(raw), fmt="parquet")


def _json_value(value: object) -> object:
    """A record's value as something ``to_raw_frame`` can judge; containers and booleans are not values."""
    if isinstance(value, (bool, list, dict)):
        return _NOT_A_VALUE
    return value


_NOT_A_VALUE = object()


_JSON_READ_ERRORS: tuple[type[Exception], ...] = (*READ_ERRORS, json.JSONDecodeError, RecursionError)


def _read_freqtrade(path: Path, progress: Progress | None) -> ParsedFile:
    _, compression = file_suffixes(path)
    try:
        text = b"".join(raw_pieces(path, compression, None))
        records = json.loads(text)
    except DataFormatError:
        raise
    except _JSON_READ_ERRORS as exc:
        raise DataFormatError(
            f"cannot read freqtrade JSON ({_short(exc)})", where=str(path), hint=_FREQTRADE_HINT
        ) from None
    if not isinstance(records, list):
        raise DataFormatError(
            f"freqtrade JSON holds a {type(records).__name__}, not a list of records",
            where=str(path),
            hint=_FREQTRADE_HINT,
        )
    lengths = [len(r) for r in records if isinstance(r, list)]
    if records and lengths and max(lengths) < len(CANDLE_COLUMNS):
        raise DataFormatError(
            f"freqtrade records have {max(lengths)} values, expected 6", where=str(path), hint=_FREQTRADE_HINT
        )
    good_lines: list[int] = []
    good: list[list[object]] = []
    bad_rows: list[dict[str, object]] = []
    for number, record in enumerate(records, start=1):
        values = [_json_value(v) for v in record[: len(CANDLE_COLUMNS)]] if isinstance(record, list) else []
        if not isinstance(record, list) or len(record) < len(CANDLE_COLUMNS) or _NOT_A_VALUE in values:
            reason = "field_count" if isinstance(record, list) and len(record) < len(CANDLE_COLUMNS) else "unparseable"
            bad_rows.append(
                {
                    "line": number,
                    "raw": row_text(json.dumps(record, default=str)[: RAW_TEXT_LIMIT + 1]),
                    "problem": reason,
                }
            )
            continue
        good_lines.append(number)
        good.append(values)
    fields = pd.DataFrame(good, columns=list(CANDLE_COLUMNS)) if good else _empty_fields()
    raw = to_raw_frame(fields, np.array(good_lines, dtype=np.int64), keep_blank=True)
    if bad_rows:
        refused = pd.DataFrame(
            {
                "ts": np.zeros(len(bad_rows), dtype=np.int64),
                **{c: np.full(len(bad_rows), np.nan) for c in CANDLE_COLUMNS[1:]},
                "line": np.array([b["line"] for b in bad_rows], dtype=np.int64),
                "raw": np.array([b["raw"] for b in bad_rows], dtype=object),
                "problem": np.array([b["problem"] for b in bad_rows], dtype=object),
            }
        )
        raw = pd.concat([raw, refused], ignore_index=True).sort_values("line", kind="stable").reset_index(drop=True)
    if progress is not None:
        size = path.stat().st_size
        progress(size, size)
    return ParsedFile.of_frame(raw, data_lines=len(records), fmt="freqtrade")


# --------------------------------------------------------------------------------------------- entry points


def read_candle_file(path: Path, fmt: str | None = None, *, progress: Progress | None = None) -> ParsedFile:
    """Read a candle file into a raw frame with its line accounting. ``fmt`` None or ``"auto"`` detects it.

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


def parse_file(path: Path, fmt: str | None = None, *, progress: Progress | None = None) -> pd.DataFrame:
    """The raw frame (``RAW_COLUMNS``) of a candle file (see ``read_candle_file``)."""
    return read_candle_file(path, fmt, progress=progress).raw


__all__ = [
    "COLUMN_ALIASES",
    "FORMATS",
    "PROBLEMS",
    "RAW_COLUMNS",
    "RAW_TEXT_LIMIT",
    "Flagged",
    "ParsedFile",
    "coerce_numbers",
    "detect_format",
    "empty_raw_frame",
    "parse_file",
    "read_candle_file",
    "row_text",
    "timestamps_to_ms",
    "to_raw_frame",
]
