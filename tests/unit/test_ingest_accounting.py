"""Exact ingest accounting: each way a hostile or careless file used to lose, shift or blow up rows.

Every test ingests a real file into a real DuckDB store in ``tmp_path`` and checks the invariant
``stored + quarantined + blank_lines == data_lines`` plus where each bad row went.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import DataFormatError, NotFoundError
from smartmarket.core.types import Timeframe
from smartmarket.data.ingest import IngestReport, ingest_file
from smartmarket.data.parsers import RAW_TEXT_LIMIT, read_candle_file
from smartmarket.data.quarantine import read_quarantine
from smartmarket.store import Store, open_store

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
HEADER = "ts,open,high,low,close,volume"


def _row(i: int) -> str:
    price = 42_000 + i
    return f"{T0 + i * H},{price}.5,{price + 10}.25,{price - 10}.75,{price + 1}.5,{100 + i}.125"


def _lines(n: int) -> list[str]:
    return [_row(i) for i in range(n)]


def _write(path: Path, lines: list[str], *, newline: str = "\n", prefix: bytes = b"") -> Path:
    body = prefix + (newline.join(lines) + newline).encode()
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"duckdb:///{tmp_path}/s.duckdb") as opened:
        yield opened


def _ingest(store: Store, path: Path, tmp_path: Path) -> tuple[IngestReport, pd.DataFrame]:
    report = ingest_file(store, path, quarantine_dir=tmp_path / "q", symbol="BTCUSDT", timeframe=Timeframe.H1)
    assert report.balanced, report
    quarantine = read_quarantine(tmp_path / "q") if report.quarantine_path else pd.DataFrame()
    return report, quarantine


def _stored_ts(store: Store) -> list[int]:
    return store.read_candles("BTCUSDT", Timeframe.H1)["ts"].tolist()


def test_stray_quotes_100_lines_apart_lose_nothing(store: Store, tmp_path: Path) -> None:
    lines = _lines(300)
    lines[49] = lines[49].replace(".5,", '.5",', 1)  # line 51 of the file
    lines[149] = '"' + lines[149]  # line 151
    report, quarantine = _ingest(store, _write(tmp_path / "x.csv", [HEADER, *lines]), tmp_path)
    assert (report.data_lines, report.rows_read, report.quarantined, report.inserted) == (300, 300, 2, 298)
    assert quarantine["line"].tolist() == [51, 151]
    assert set(quarantine["reason"]) == {"unparseable"}
    assert quarantine["raw"].tolist() == [lines[49], lines[149]]
    assert len(_stored_ts(store)) == 298


def test_trailing_comma_on_first_data_row_shifts_nothing(store: Store, tmp_path: Path) -> None:
    lines = _lines(50)
    lines[0] += ","
    report, quarantine = _ingest(store, _write(tmp_path / "x.csv", [HEADER, *lines]), tmp_path)
    assert (report.quarantined, report.inserted) == (1, 49)
    assert quarantine[["line", "reason"]].values.tolist() == [[2, "field_count"]]
    stored = store.read_candles("BTCUSDT", Timeframe.H1)
    assert stored["open"].iloc[0] == 42_001.5  # columns in place: row 2 of the data, not shifted
    assert stored["volume"].iloc[-1] == 149.125


def test_one_seven_field_row_is_quarantined_alone(store: Store, tmp_path: Path) -> None:
    lines = _lines(40)
    lines[10] += ",7"
    lines[20] = lines[20].rsplit(",", 1)[0]  # five fields
    report, quarantine = _ingest(store, _write(tmp_path / "x.csv", [HEADER, *lines]), tmp_path)
    assert (report.quarantined, report.inserted) == (2, 38)
    assert quarantine[["line", "reason"]].values.tolist() == [[12, "field_count"], [22, "field_count"]]
    assert quarantine["raw"].iloc[0] == lines[10]


def test_impossible_timestamps_are_quarantined(store: Store, tmp_path: Path) -> None:
    lines = _lines(10)
    lines[3] = "-86400000" + lines[3][len(str(T0)) :]  # 1969-12-31 in ms
    lines[6] = "32503680000000" + lines[6][len(str(T0)) :]  # 3000-01-01 in ms
    lines[7] = "1230768000000" + lines[7][len(str(T0)) :]  # 2009-01-01: before the first Bitcoin block
    report, quarantine = _ingest(store, _write(tmp_path / "x.csv", [HEADER, *lines]), tmp_path)
    assert report.reasons == {"ts_out_of_range": 3}
    assert quarantine["line"].tolist() == [5, 8, 9]
    assert report.missing_candles == 3  # the three gaps the refused rows leave, not 8.9 M
    assert min(_stored_ts(store)) == T0


def test_blank_lines_crlf_bom_and_nul_are_counted(store: Store, tmp_path: Path) -> None:
    lines = _lines(20)
    lines[4] = ""
    lines[9] = lines[9][:5] + "\x00" + lines[9][5:]
    lines.append("")
    path = _write(tmp_path / "x.csv.gz", [HEADER, *lines], newline="\r\n", prefix=b"\xef\xbb\xbf")
    report, quarantine = _ingest(store, path, tmp_path)
    assert (report.data_lines, report.blank_lines, report.quarantined, report.inserted) == (21, 2, 1, 18)
    assert quarantine["line"].tolist() == [11]
    assert quarantine["raw"].iloc[0] == lines[9].replace("\x00", "\\x00")


def test_huge_field_is_cut_in_the_quarantine(store: Store, tmp_path: Path) -> None:
    lines = _lines(30)
    lines[5] = lines[5].replace(".125", ".125" + "x" * 1_000_000)
    report, quarantine = _ingest(store, _write(tmp_path / "x.csv", [HEADER, *lines]), tmp_path)
    assert (report.quarantined, report.inserted) == (1, 29)
    assert quarantine["line"].tolist() == [7]
    assert len(quarantine["raw"].iloc[0]) <= RAW_TEXT_LIMIT + 1
    assert quarantine["raw"].iloc[0].startswith(lines[5][:100])


def test_line_longer_than_a_block_is_cut_while_streaming(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smartmarket.data import text_blocks

    monkeypatch.setattr(text_blocks, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(text_blocks, "READ_BYTES", 1024)
    lines = _lines(400)
    lines[200] = "9" * 50_000  # one line many blocks long
    for name in ("x.csv", "x.csv.gz"):
        path = _write(tmp_path / name, [HEADER, *lines])
        parsed = read_candle_file(path)
        assert parsed.data_lines == 400 and len(parsed.raw) == 400
        bad = parsed.raw[parsed.raw["problem"].notna()]
        assert bad["line"].tolist() == [202]
        assert len(bad["raw"].iloc[0]) <= RAW_TEXT_LIMIT + 1
        good = parsed.raw[parsed.raw["problem"].isna()]
        assert good["line"].tolist() == [n for n in range(2, 402) if n != 202]
    report, _ = _ingest(store, tmp_path / "x.csv", tmp_path)
    assert (report.inserted, report.quarantined) == (399, 1)


def test_several_lines_longer_than_a_block_in_one_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from smartmarket.data import text_blocks

    monkeypatch.setattr(text_blocks, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(text_blocks, "READ_BYTES", 1024)
    lines = _lines(300)
    lines[100] = "9" * 20_000
    lines[103] = "8" * 9_000  # a second cut line before the block ends: its index must not count lines twice
    for name in ("x.csv", "x.csv.gz"):
        parsed = read_candle_file(_write(tmp_path / name, [HEADER, *lines]))
        assert parsed.data_lines == 300 and len(parsed.raw) == 300
        bad = parsed.raw[parsed.raw["problem"].notna()]
        assert bad["line"].tolist() == [102, 105] and set(bad["problem"]) == {"unparseable"}
        assert bad["raw"].str.len().max() <= RAW_TEXT_LIMIT + 1
        good = parsed.raw[parsed.raw["problem"].isna()]
        assert good["line"].tolist() == [n for n in range(2, 302) if n not in (102, 105)]


@pytest.mark.parametrize(
    ("volume", "flagged"),
    [("100.125\t", False), (" 100.125", False), ("1E2", False), ("-0", False), ("-Infinity", False), ("nan", True)],
)
def test_special_numbers_read_alike_on_the_fast_and_the_careful_path(
    tmp_path: Path, volume: str, flagged: bool
) -> None:
    """pyarrow reads a whole clean block at once; a block with one odd byte goes line by line. A tab or a space
    around a number, exponents, ``-0``, ``inf`` and ``nan`` must come out the same both ways (same values, same
    flagged rows: text ``nan`` is not a number, ``-Infinity`` is one, for ``not_finite`` to refuse)."""
    lines = _lines(40)
    lines[5] = lines[5].rsplit(",", 1)[0] + "," + volume
    fast = read_candle_file(_write(tmp_path / "a.csv", [HEADER, *lines])).raw
    careful = read_candle_file(_write(tmp_path / "b.csv", [HEADER, *lines, 'x"'])).raw.iloc[:-1]
    pd.testing.assert_frame_equal(fast, careful)
    assert fast["problem"].notna().tolist() == [flagged and i == 5 for i in range(40)]
    if not flagged:
        assert fast.loc[5, "volume"] == float(volume)


def test_a_row_without_timestamp_is_unparseable_not_blank(store: Store, tmp_path: Path) -> None:
    lines = _lines(20)
    lines[9] = "," + lines[9].split(",", 1)[1]
    report, quarantine = _ingest(store, _write(tmp_path / "x.csv", [HEADER, *lines]), tmp_path)
    assert (report.data_lines, report.blank_lines, report.inserted) == (20, 0, 19)
    assert quarantine[["line", "reason"]].values.tolist() == [[11, "unparseable"]]


def test_a_lone_carriage_return_never_splits_a_row(store: Store, tmp_path: Path) -> None:
    lines = _lines(20)
    lines[4] = lines[4][:3] + "\r" + lines[4][3:]  # pyarrow would see two lines here
    report, quarantine = _ingest(store, _write(tmp_path / "x.csv", [HEADER, *lines]), tmp_path)
    assert (report.data_lines, report.inserted, report.quarantined) == (20, 19, 1)
    assert quarantine[["line", "reason"]].values.tolist() == [[6, "unparseable"]]


def test_small_blocks_keep_line_numbers_and_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from smartmarket.data import text_blocks

    monkeypatch.setattr(text_blocks, "BLOCK_BYTES", 1000)
    monkeypatch.setattr(text_blocks, "READ_BYTES", 333)
    lines = _lines(500)
    lines[100] = lines[100].replace("42100.5", "4e2.1.1")
    lines[250] = ""
    path = _write(tmp_path / "x.csv.gz", [HEADER, *lines])
    parsed = read_candle_file(path)
    assert (parsed.data_lines, parsed.blank_lines, len(parsed.raw)) == (500, 1, 499)
    assert parsed.raw["line"].tolist() == [n for n in range(2, 502) if n != 252]
    bad = parsed.raw[parsed.raw["problem"].notna()]
    assert bad["line"].tolist() == [102]
    expected = pd.read_csv(path, skip_blank_lines=True).drop(index=100)
    good = parsed.raw[parsed.raw["problem"].isna()]
    np.testing.assert_array_equal(good["close"].to_numpy(), expected["close"].to_numpy(dtype=float))


def test_iso_timestamps_and_seconds_take_the_same_path(tmp_path: Path) -> None:
    lines = [
        "2024-01-01T00:00:00Z,1,2,0.5,1.5,10",
        f"{T0 // 1000 + 3600},1,2,0.5,1.5,10",  # seconds
        f"{(T0 + 2 * H) * 1000},1,2,0.5,1.5,10",  # microseconds
        "2024-01-01 03:00:00,1,2,0.5,1.5,10",
    ]
    parsed = read_candle_file(_write(tmp_path / "x.csv", [HEADER, *lines]))
    assert parsed.raw["ts"].tolist() == [T0 + i * H for i in range(4)]
    assert parsed.raw["problem"].isna().all()


def _freqtrade(path: Path, records: list[object]) -> Path:
    path.write_text(json.dumps(records))
    return path


def test_malformed_freqtrade_records_are_quarantined_with_their_position(store: Store, tmp_path: Path) -> None:
    good = [[T0 + i * H, 1.0, 2.0, 0.5, 1.5, 10.0] for i in range(6)]
    records: list[object] = [
        good[0],
        None,
        [T0 + H, 1.0],
        good[2],
        {"ts": T0},
        [T0 + 3 * H, "abc", 2.0, 0.5, 1.5, 10.0],
        [T0 + 4 * H, [1], 2.0, 0.5, 1.5, 10.0],
        "text",
        good[5],
    ]
    path = _freqtrade(tmp_path / "BTC_USDT-1h.json", records)
    report = ingest_file(store, path, quarantine_dir=tmp_path / "q")
    assert report.balanced and report.data_lines == 9
    assert (report.inserted, report.quarantined) == (3, 6)
    quarantine = read_quarantine(tmp_path / "q")
    assert quarantine[["line", "reason"]].values.tolist() == [
        [2, "unparseable"],
        [3, "field_count"],
        [5, "unparseable"],
        [6, "unparseable"],
        [7, "unparseable"],
        [8, "unparseable"],
    ]
    assert quarantine["raw"].iloc[0] == "null"


@pytest.mark.parametrize(
    ("content", "message"),
    [(b'{"a": 1}', "not a list of records"), (b"[[1, 2", "cannot read freqtrade JSON"), (b"\x00\xff", "cannot read")],
)
def test_unreadable_freqtrade_file_is_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "BTC_USDT-1h.json"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=message) as info:
        read_candle_file(path)
    assert info.value.where == str(path)
    assert "\n" not in info.value.one_line()


def test_binance_rows_with_wrong_field_counts(store: Store, tmp_path: Path) -> None:
    rows = [f"{T0 + i * H},1.0,2.0,0.5,1.5,10.0,{T0 + (i + 1) * H - 1},1.0,10,0.5,0.5,0" for i in range(10)]
    rows[3] += ",extra"
    rows[6] = rows[6].split(",", 7)[0]  # seven fields
    path = _write(tmp_path / "BTCUSDT-1h-2024-01.csv", rows)
    report, quarantine = _ingest(store, path, tmp_path)
    assert (report.data_lines, report.inserted, report.quarantined) == (10, 8, 2)
    assert quarantine[["line", "reason"]].values.tolist() == [[4, "field_count"], [7, "field_count"]]


def test_quarantine_cuts_and_escapes_text_of_rows_built_in_code(store: Store, tmp_path: Path) -> None:
    from smartmarket.data.ingest import ingest_frame

    raw = pd.DataFrame(
        {
            "ts": [T0, T0 + H],
            "open": [1.0, 1.0],
            "high": [2.0, 2.0],
            "low": [0.5, 0.5],
            "close": [1.5, 1.5],
            "volume": [1.0, 1.0],
            "raw": [None, "a\x00b" + "z" * 5000],
        }
    )
    report = ingest_frame(store, "BTCUSDT", Timeframe.H1, raw, source="code", quarantine_dir=tmp_path / "q")
    assert report.balanced and (report.inserted, report.quarantined) == (1, 1)
    text = read_quarantine(tmp_path / "q")["raw"].iloc[0]
    assert text.startswith("a\\x00b") and len(text) == RAW_TEXT_LIMIT + 1


def test_a_file_with_no_good_row_quarantines_every_line_and_stores_nothing(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.csv", [HEADER, "x,1,2,0,1,5", "", f"{T0},1,2,0,1,-5"])
    report, quarantine = _ingest(store, path, tmp_path)
    assert (report.stored, report.quarantined, report.blank_lines, report.data_lines) == (0, 2, 1, 3)
    assert quarantine["line"].tolist() == [2, 4]
    with pytest.raises(NotFoundError):  # no series was created
        store.read_candles("BTCUSDT", Timeframe.H1)
