"""Property: whatever is done to a real candle file, ingest accounts for every line and stores the good rows
unchanged. A slice of the real BTCUSDT 1h file is corrupted in every listed way (stray quotes, extra and
missing fields, NUL, huge fields, impossible timestamps, seconds among milliseconds, blank lines, CRLF, BOM,
gzip) and ingested into a real DuckDB store."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartmarket.core.types import Timeframe
from smartmarket.data import text_blocks
from smartmarket.data.ingest import ingest_file
from smartmarket.data.parsers import read_candle_file
from smartmarket.data.quarantine import read_quarantine
from smartmarket.data.validation import validate_candles
from smartmarket.store import open_store

ROWS = 2_000
# kind -> what ingest must do with the line: a quarantine reason, "blank" or "good" (stored unchanged).
OUTCOME = {
    "quote": "unparseable",
    "leading_quote": "unparseable",
    "extra_field": "field_count",
    "trailing_comma": "field_count",
    "missing_field": "field_count",
    "nul": "unparseable",
    "huge_field": "unparseable",
    "ts_1969": "ts_out_of_range",
    "ts_3000": "ts_out_of_range",
    "seconds": "good",
    "tab": "good",
    "nan_text": "unparseable",
    "inf": "not_finite",
    "lone_cr": "unparseable",
    "empty_ts": "unparseable",
    "blank": "blank",
}


def _corrupt(line: str, kind: str, where: int) -> str:
    fields = line.split(",")
    if kind == "quote":
        at = 1 + where % (len(line) - 1)
        return line[:at] + '"' + line[at:]
    if kind == "leading_quote":
        return '"' + line
    if kind == "extra_field":
        return line + ",1"
    if kind == "trailing_comma":
        return line + ","
    if kind == "missing_field":
        return ",".join(fields[:-1])
    if kind == "nul":
        at = where % len(line)
        return line[:at] + "\x00" + line[at:]
    if kind == "huge_field":
        col = 1 + where % 5
        fields[col] += "9" * 3000 + "x"
        return ",".join(fields)
    if kind == "ts_1969":
        return ",".join(["-3600000", *fields[1:]])
    if kind == "ts_3000":
        return ",".join(["32503680000000", *fields[1:]])
    if kind == "seconds":
        return ",".join([str(int(fields[0]) // 1000), *fields[1:]])
    if kind == "tab":  # around a number: read as the number
        fields[1 + where % 5] = "\t" + fields[1 + where % 5] + "\t"
        return ",".join(fields)
    if kind == "nan_text":
        return ",".join([*fields[:-1], "nan"])
    if kind == "inf":
        return ",".join([*fields[:-1], "inf"])
    if kind == "lone_cr":  # inside a number: a line end to pyarrow, not to the file
        return ",".join([fields[0], fields[1][:1] + "\r" + fields[1][1:], *fields[2:]])
    if kind == "empty_ts":
        return ",".join(["", *fields[1:]])
    assert kind == "blank"
    return ""


@pytest.fixture(scope="module")
def real_slice(shared_data: Path) -> tuple[str, list[str], pd.DataFrame]:
    with gzip.open(shared_data / "BTCUSDT-1h.csv.gz", "rt") as fh:
        header = fh.readline().rstrip("\n")
        lines = [fh.readline().rstrip("\n") for _ in range(ROWS)]
    assert header == "ts,open,high,low,close,volume"
    frame = pd.read_csv(pd.io.common.StringIO("\n".join([header, *lines])))
    return header, lines, frame


corruptions = st.dictionaries(
    keys=st.integers(min_value=0, max_value=ROWS - 1),
    values=st.tuples(st.sampled_from(sorted(OUTCOME)), st.integers(min_value=0, max_value=10_000)),
    max_size=25,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    corrupted=corruptions,
    crlf=st.booleans(),
    bom=st.booleans(),
    gz=st.booleans(),
    small_blocks=st.booleans(),
)
def test_every_line_is_accounted_for_and_good_rows_are_stored_unchanged(
    real_slice: tuple[str, list[str], pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
    corrupted: dict[int, tuple[str, int]],
    crlf: bool,
    bom: bool,
    gz: bool,
    small_blocks: bool,
) -> None:
    # Small blocks: most blocks clean (pyarrow's fast path), a few careful, rows cut across block edges.
    monkeypatch.setattr(text_blocks, "BLOCK_BYTES", 4096 if small_blocks else 32 << 20)
    monkeypatch.setattr(text_blocks, "READ_BYTES", 1024 if small_blocks else 4 << 20)
    header, lines, frame = real_slice
    lines = list(lines)
    for index, (kind, where) in corrupted.items():
        lines[index] = _corrupt(lines[index], kind, where)
    newline = "\r\n" if crlf else "\n"
    body = (b"\xef\xbb\xbf" if bom else b"") + (newline.join([header, *lines]) + newline).encode()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("BTCUSDT-1h.csv.gz" if gz else "BTCUSDT-1h.csv")
        path.write_bytes(gzip.compress(body) if gz else body)
        parsed = read_candle_file(path)
        # The parsed file and its raw-frame view validate alike (the frame path serves frames built in code).
        by_file, by_frame = validate_candles(parsed, Timeframe.H1), validate_candles(parsed.raw, Timeframe.H1)
        pd.testing.assert_frame_equal(by_file.good, by_frame.good)
        pd.testing.assert_frame_equal(by_file.bad, by_frame.bad, check_dtype=False)
        assert by_file.good_lines.tolist() == by_frame.good_lines.tolist() and by_file.gaps == by_frame.gaps
        with open_store(f"duckdb:///{tmp}/s.duckdb") as store:
            report = ingest_file(store, path, quarantine_dir=Path(tmp) / "q")
            stored = store.read_candles("BTCUSDT", Timeframe.H1)
        quarantine = read_quarantine(Path(tmp) / "q") if report.quarantine_path else None

    outcome = {index: OUTCOME[kind] for index, (kind, _) in corrupted.items()}
    blank = sorted(i for i, o in outcome.items() if o == "blank")
    bad = {i + 2: o for i, o in outcome.items() if o not in ("good", "blank")}  # file line = index + 2
    # The invariant, and each count it is made of.
    assert report.data_lines == ROWS
    assert report.blank_lines == len(blank)
    assert report.stored + report.quarantined + report.blank_lines == report.data_lines
    assert report.quarantined == len(bad)
    # Quarantine line numbers are the real lines of the corrupted rows, with the expected reasons.
    got = {} if quarantine is None else dict(zip(quarantine["line"].tolist(), quarantine["reason"], strict=True))
    assert got == bad
    if quarantine is not None:
        assert (quarantine["raw"].dropna().str.len() <= 1025).all()
    # Every other row is stored exactly as in the original file.
    keep = [i for i in range(ROWS) if i not in outcome or outcome[i] == "good"]
    expected = frame.iloc[keep].reset_index(drop=True)
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)
