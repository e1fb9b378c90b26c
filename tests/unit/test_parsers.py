"""File parsers: every supported format, timestamp units, unreadable values kept, clear errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import DataFormatError
from smartmarket.data import parsers
from smartmarket.data.parsers import RAW_COLUMNS, detect_format, parse_file

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
ROWS = [
    (T0, 42283.58, 42554.57, 42261.02, 42475.23, 1271.68108),
    (T0 + H, 42475.23, 42775.0, 42431.65, 42613.56, 1196.37856),
    (T0 + 2 * H, 42613.57, 42699.99, 42500.0, 42588.01, 713.8935),
]
GENERIC_HEADER = "ts,open,high,low,close,volume"
BINANCE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
)


def _generic_lines(unit: int = 1) -> list[str]:
    return [f"{ts * unit},{o},{h},{lo},{c},{v}" for ts, o, h, lo, c, v in ROWS]


def _binance_lines(unit: int = 1) -> list[str]:
    # open_time, OHLCV, close_time, quote volume, trades, taker buy base/quote, ignore
    return [
        f"{ts * unit},{o:.8f},{h:.8f},{lo:.8f},{c:.8f},{v:.8f},{(ts + H) * unit - 1},1.0,10,0.5,0.5,0"
        for ts, o, h, lo, c, v in ROWS
    ]


def _write(path: Path, lines: list[str]) -> Path:
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _assert_rows(raw: pd.DataFrame, first_line: int) -> None:
    assert list(raw.columns) == list(RAW_COLUMNS)
    assert raw["ts"].dtype == np.int64
    assert raw["ts"].tolist() == [r[0] for r in ROWS]
    for i, col in enumerate(("open", "high", "low", "close", "volume"), start=1):
        assert raw[col].tolist() == [r[i] for r in ROWS]  # exact: same float as Python's float(text)
    assert raw["line"].tolist() == list(range(first_line, first_line + len(ROWS)))
    assert raw["raw"].isna().all()


@pytest.mark.parametrize("name", ["x.csv", "x.csv.gz"])
def test_generic_csv_with_header_ms(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, [GENERIC_HEADER, *_generic_lines()])
    assert detect_format(path) == "csv"
    _assert_rows(parse_file(path), first_line=2)


@pytest.mark.parametrize("unit", [1, 1000], ids=["ms", "us"])
def test_generic_csv_headerless_and_unit_detection(tmp_path: Path, unit: int) -> None:
    path = _write(tmp_path / "x.csv", _generic_lines(unit))
    _assert_rows(parse_file(path), first_line=1)


def test_seconds_timestamps(tmp_path: Path) -> None:
    lines = [f"{ts // 1000},{o},{h},{lo},{c},{v}" for ts, o, h, lo, c, v in ROWS]
    path = _write(tmp_path / "x.csv", [GENERIC_HEADER, *lines])
    _assert_rows(parse_file(path), first_line=2)


def test_iso_timestamps_and_header_aliases(tmp_path: Path) -> None:
    lines = [
        "2024-01-01T00:00:00Z,42283.58,42554.57,42261.02,42475.23,1271.68108",
        "2024-01-01 01:00:00,42475.23,42775.0,42431.65,42613.56,1196.37856",  # naive = UTC
        "2024-01-01T03:00:00+01:00,42613.57,42699.99,42500.0,42588.01,713.8935",
    ]
    path = _write(tmp_path / "x.csv", ["Date,Open,High,Low,Close,Volume", *lines])
    _assert_rows(parse_file(path), first_line=2)


def test_iso_timestamps_without_header(tmp_path: Path) -> None:
    lines = [
        "2024-01-01T00:00:00Z,42283.58,42554.57,42261.02,42475.23,1271.68108",
        "2024-01-01T01:00:00Z,42475.23,42775.0,42431.65,42613.56,1196.37856",
        "2024-01-01T02:00:00Z,42613.57,42699.99,42500.0,42588.01,713.8935",
    ]
    _assert_rows(parse_file(_write(tmp_path / "x.csv", lines)), first_line=1)


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
@pytest.mark.parametrize("unit", [1, 1000], ids=["ms", "us"])
def test_binance_kline(tmp_path: Path, header: bool, unit: int) -> None:
    lines = ([BINANCE_HEADER] if header else []) + _binance_lines(unit)
    path = _write(tmp_path / "BTCUSDT-1h-2024-01.csv", lines)
    assert detect_format(path) == "binance"
    _assert_rows(parse_file(path), first_line=2 if header else 1)


def test_binance_zip_dump(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "BTCUSDT-1h-2024-01.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("BTCUSDT-1h-2024-01.csv", "\n".join(_binance_lines()) + "\n")
    _assert_rows(parse_file(path), first_line=1)


@pytest.mark.parametrize("name", ["BTC_USDT-1h.json", "BTC_USDT-1h.json.gz"])
def test_freqtrade_json(tmp_path: Path, name: str) -> None:
    text = json.dumps([list(r) for r in ROWS])
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    assert detect_format(path) == "freqtrade"
    _assert_rows(parse_file(path), first_line=1)


def test_freqtrade_unreadable_value_is_kept(tmp_path: Path) -> None:
    records = [list(r) for r in ROWS]
    records[1][2] = "abc"
    path = tmp_path / "BTC_USDT-1h.json"
    path.write_text(json.dumps(records))
    raw = parse_file(path)
    assert len(raw) == 3
    assert raw["raw"].notna().tolist() == [False, True, False]
    assert "abc" in raw.loc[1, "raw"]
    assert raw.loc[1, "line"] == 2


def test_parquet_numeric_and_datetime_ts(tmp_path: Path) -> None:
    frame = pd.DataFrame(ROWS, columns=["ts", "open", "high", "low", "close", "volume"])
    path = tmp_path / "ETHUSDT-4h.parquet"
    frame.to_parquet(path)
    assert detect_format(path) == "parquet"
    _assert_rows(parse_file(path), first_line=1)

    dated = frame.rename(columns={"ts": "date"})
    dated["date"] = pd.to_datetime(dated["date"], unit="ms", utc=True)
    dated.to_parquet(path)
    _assert_rows(parse_file(path), first_line=1)


def test_abc_price_does_not_crash_or_vanish(tmp_path: Path) -> None:
    lines = _generic_lines()
    lines[1] = lines[1].replace("42775.0", "abc")
    path = _write(tmp_path / "x.csv", [GENERIC_HEADER, *lines])
    raw = parse_file(path)
    assert len(raw) == 3
    bad = raw[raw["raw"].notna()]
    assert bad["line"].tolist() == [3]
    assert bad["raw"].iloc[0] == f"{T0 + H},42475.23,abc,42431.65,42613.56,1196.37856"
    good = raw[raw["raw"].isna()]
    assert good["high"].tolist() == [42554.57, 42699.99]


def test_unreadable_timestamp_is_kept(tmp_path: Path) -> None:
    lines = _generic_lines()
    lines[0] = "yesterday" + lines[0][len(str(T0)) :]
    raw = parse_file(_write(tmp_path / "x.csv", [GENERIC_HEADER, *lines]))
    assert raw["raw"].notna().tolist() == [True, False, False]
    assert raw.loc[0, "raw"].startswith("yesterday,")


def test_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    lines = _generic_lines()
    path = _write(tmp_path / "x.csv", [GENERIC_HEADER, lines[0], "", lines[1], lines[2]])
    raw = parse_file(path)
    assert raw["line"].tolist() == [2, 4, 5]
    assert raw["ts"].tolist() == [r[0] for r in ROWS]


def test_missing_value_becomes_nan_not_dropped(tmp_path: Path) -> None:
    lines = _generic_lines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ","  # empty volume
    raw = parse_file(_write(tmp_path / "x.csv", [GENERIC_HEADER, *lines]))
    assert len(raw) == 3
    assert np.isnan(raw.loc[2, "volume"])


def test_format_override(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.txt", _binance_lines())
    _assert_rows(parse_file(path, "binance"), first_line=1)
    with pytest.raises(DataFormatError, match="headerless CSV with 12 columns"):
        parse_file(path, "csv")


def test_header_only_file_gives_no_rows(tmp_path: Path) -> None:
    raw = parse_file(_write(tmp_path / "x.csv", [GENERIC_HEADER]))
    assert list(raw.columns) == list(RAW_COLUMNS)
    assert len(raw) == 0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "file is empty"),
        ("cols.csv", b"ts,open,high,low,close\n1,2,3,4,5\n", "missing columns \\['volume'\\]"),
        ("bad.csv.gz", b"this is not gzip", "cannot read"),
        ("bad.json", b"[[1, 2, 3", "cannot read freqtrade JSON"),
        ("short.json", b"[[1, 2, 3]]", "expected 6"),
        ("bad.parquet", b"PAR1 nonsense", "cannot read Parquet"),
    ],
)
def test_unreadable_files_raise_one_line_error(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=message) as info:
        parse_file(path)
    assert info.value.where == str(path)
    assert "\n" not in info.value.one_line()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="file not found"):
        parse_file(tmp_path / "nope.csv")


def test_chunked_reading_keeps_line_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsers, "CHUNK_ROWS", 2)
    lines = _generic_lines()
    lines[2] = lines[2].replace("42588.01", "abc")
    path = _write(tmp_path / "x.csv.gz", [GENERIC_HEADER, lines[0], "", lines[1], lines[2]])
    raw = parse_file(path)
    assert raw["line"].tolist() == [2, 4, 5]
    assert raw["raw"].notna().tolist() == [False, False, True]
    assert raw["ts"].tolist()[:2] == [ROWS[0][0], ROWS[1][0]]


def test_ambiguous_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.csv", ["date,timestamp,open,high,low,close,volume", "1,2,3,4,5,6,7"])
    with pytest.raises(DataFormatError, match="ambiguous columns \\['ts'\\]"):
        parse_file(path)


def test_progress_reaches_total(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.csv.gz", [GENERIC_HEADER, *_generic_lines()])
    calls: list[tuple[int, int]] = []
    parse_file(path, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] == path.stat().st_size
