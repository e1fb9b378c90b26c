"""Validation: one test per rule, duplicates, ordering, gaps; the quarantine file round trip."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.frame import CANDLE_COLUMNS
from smartmarket.core.types import WEEK_MS, Timeframe
from smartmarket.data.parsers import RAW_COLUMNS
from smartmarket.data.quarantine import QUARANTINE_COLUMNS, quarantine_file, read_quarantine, write_quarantine
from smartmarket.data.validation import REASONS, Gap, find_gaps, validate_candles

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z (a Monday)


def _frame(n: int = 5, step: int = H) -> pd.DataFrame:
    ts = T0 + step * np.arange(n, dtype=np.int64)
    close = 100.0 + np.arange(n)
    return pd.DataFrame(
        {
            "ts": ts,
            "open": close - 0.5,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "volume": np.full(n, 10.0),
            "line": np.arange(2, n + 2, dtype=np.int64),
            "raw": np.full(n, None, dtype=object),
        }
    )


def test_clean_frame_passes_untouched() -> None:
    raw = _frame()
    result = validate_candles(raw, Timeframe.H1)
    assert result.bad.empty
    assert result.reasons == {}
    assert list(result.good.columns) == list(CANDLE_COLUMNS)
    assert result.good["ts"].dtype == np.int64
    pd.testing.assert_frame_equal(result.good, raw[list(CANDLE_COLUMNS)])
    assert result.good_lines.tolist() == raw["line"].tolist()
    assert result.gaps == []
    assert result.out_of_order == 0


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("open", np.nan, "not_finite"),
        ("close", np.inf, "not_finite"),
        ("volume", -np.inf, "not_finite"),
        ("low", 0.0, "non_positive_price"),
        ("open", -1.0, "non_positive_price"),
        ("volume", -0.5, "negative_volume"),
        ("high", 101.2, "high_below_open_close"),  # row 2: open 101.5, close 102
        ("low", 101.8, "low_above_open_close"),  # above open 101.5, below close 102 and high 103
        ("low", 104.0, "low_above_high"),  # above high 103: reported as the most basic failure
        ("ts", T0 + 2 * H + 60_000, "misaligned"),
    ],
)
def test_each_rule_quarantines_only_the_bad_row(column: str, value: float, reason: str) -> None:
    raw = _frame()
    raw.loc[2, column] = value
    result = validate_candles(raw, Timeframe.H1)
    assert result.bad["reason"].tolist() == [reason]
    assert result.bad["line"].tolist() == [4]
    assert result.reasons == {reason: 1}
    assert len(result.good) == 4
    assert 4 not in result.good_lines.tolist()
    assert reason in REASONS


def test_unparseable_row_from_parser() -> None:
    raw = _frame()
    raw.loc[1, ["ts", "high"]] = [0, np.nan]
    raw.loc[1, "raw"] = f"{T0 + H},100.5,abc,100,101,10"
    result = validate_candles(raw, Timeframe.H1)
    assert result.bad["reason"].tolist() == ["unparseable"]
    assert result.bad["raw"].tolist() == [f"{T0 + H},100.5,abc,100,101,10"]


def test_text_values_in_a_frame_built_in_code_are_unparseable() -> None:
    raw = _frame()[list(CANDLE_COLUMNS)].astype({"close": object})
    raw.loc[3, "close"] = "n/a?"
    result = validate_candles(raw, Timeframe.H1)
    assert result.bad["reason"].tolist() == ["unparseable"]
    assert result.bad["line"].tolist() == [4]  # no line column: the 1-based row position


def test_missing_or_fractional_timestamp() -> None:
    raw = _frame().astype({"ts": np.float64})
    raw.loc[0, "ts"] = np.nan
    raw.loc[1, "ts"] = T0 + H + 0.5
    result = validate_candles(raw, Timeframe.H1)
    assert result.bad["reason"].tolist() == ["bad_timestamp", "bad_timestamp"]
    assert result.good["ts"].tolist() == [T0 + 2 * H, T0 + 3 * H, T0 + 4 * H]


def test_first_failing_rule_wins() -> None:
    raw = _frame()
    raw.loc[0, ["ts", "volume"]] = [T0 + 1, -1.0]  # misaligned and negative volume
    result = validate_candles(raw, Timeframe.H1)
    assert result.bad["reason"].tolist() == ["negative_volume"]


def test_identical_duplicate_keeps_one_copy() -> None:
    raw = _frame()
    raw = pd.concat([raw, raw.iloc[[1]].assign(line=99)], ignore_index=True)
    result = validate_candles(raw, Timeframe.H1)
    assert result.reasons == {"duplicate": 1}
    assert result.bad["line"].tolist() == [99]
    assert result.good["ts"].tolist() == _frame()["ts"].tolist()
    assert result.good_lines.tolist() == [2, 3, 4, 5, 6]  # the first copy is the one kept


def test_conflicting_duplicates_are_all_quarantined() -> None:
    raw = _frame()
    copy = raw.iloc[[1]].assign(line=99, close=100.9)
    raw = pd.concat([raw, copy, raw.iloc[[1]].assign(line=100)], ignore_index=True)
    result = validate_candles(raw, Timeframe.H1)
    assert result.reasons == {"duplicate_conflict": 3}
    assert sorted(result.bad["line"].tolist()) == [3, 99, 100]
    assert T0 + H not in result.good["ts"].tolist()
    assert len(result.good) == 4


def test_invalid_copy_does_not_make_a_duplicate() -> None:
    raw = _frame()
    raw = pd.concat([raw, raw.iloc[[1]].assign(line=99, volume=-1.0)], ignore_index=True)
    result = validate_candles(raw, Timeframe.H1)
    assert result.reasons == {"negative_volume": 1}
    assert T0 + H in result.good["ts"].tolist()


def test_out_of_order_rows_are_sorted_and_counted() -> None:
    raw = _frame(6).iloc[[0, 3, 1, 2, 5, 4]].reset_index(drop=True)
    result = validate_candles(raw, Timeframe.H1)
    assert result.bad.empty
    assert result.out_of_order == 3  # rows 1, 2 and 4 came after a later timestamp
    assert result.good["ts"].tolist() == _frame(6)["ts"].tolist()
    assert result.good_lines.tolist() == [2, 3, 4, 5, 6, 7]


def test_gaps_are_reported_not_errors() -> None:
    raw = _frame(10).drop(index=[3, 6, 7, 8]).reset_index(drop=True)
    result = validate_candles(raw, Timeframe.H1)
    assert result.bad.empty
    assert result.gaps == [Gap(after_ts=T0 + 2 * H, missing=1), Gap(after_ts=T0 + 5 * H, missing=3)]


def test_find_gaps_on_weekly_candles() -> None:
    ts = np.array([T0, T0 + WEEK_MS, T0 + 4 * WEEK_MS], dtype=np.int64)
    assert find_gaps(ts, Timeframe.W1) == [Gap(T0 + WEEK_MS, 2)]
    assert find_gaps(ts[:1], Timeframe.W1) == []


def test_weekly_alignment_is_monday() -> None:
    raw = _frame(3, step=WEEK_MS)
    raw.loc[2, "ts"] = T0 + 2 * WEEK_MS + 24 * H  # a Tuesday
    result = validate_candles(raw, Timeframe.W1)
    assert result.reasons == {"misaligned": 1}


def test_empty_frame() -> None:
    result = validate_candles(_frame(0), Timeframe.H1)
    assert result.good.empty and result.bad.empty
    assert list(result.good.columns) == list(CANDLE_COLUMNS)


def test_many_rows_vectorised() -> None:
    raw = _frame(200_000, step=60_000)
    raw.loc[::1000, "volume"] = -1.0
    result = validate_candles(raw, Timeframe.M1)
    assert result.reasons == {"negative_volume": 200}
    assert len(result.good) == 199_800
    assert len(result.gaps) == 199  # the first removed row is the series start, not a gap


def test_quarantine_round_trip_is_exact(tmp_path: Path) -> None:
    raw = _frame()
    raw.loc[0, "volume"] = -1.0
    raw.loc[1, "high"] = 0.1 + 0.2  # not representable in short decimal: must survive exactly
    raw.loc[2, ["ts", "open", "raw"]] = [0, np.nan, "2024-01-01T02:00,abc,1,1,1,1"]
    raw.loc[3, "close"] = np.inf
    result = validate_candles(raw, Timeframe.H1)
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    path = write_quarantine(tmp_path, "BTCUSDT", Timeframe.H1, "/data/x.csv", result.bad, ingested_at=when)
    assert path == quarantine_file(tmp_path, "BTCUSDT", Timeframe.H1)
    again = write_quarantine(tmp_path, "BTCUSDT", Timeframe.H1, "/data/y.csv", result.bad.iloc[:1])
    assert again == path

    back = read_quarantine(path)
    assert list(back.columns) == list(QUARANTINE_COLUMNS)
    assert len(back) == 5  # append-only: the second write added one row
    first = back.iloc[:4]
    assert first["reason"].tolist() == result.bad["reason"].tolist()
    assert first["line"].tolist() == [2, 3, 4, 5]
    assert first["source"].tolist() == ["/data/x.csv"] * 4
    assert first["ingested_at"].iloc[0] == "2024-05-01T12:00:00.000+00:00"
    assert first.loc[1, "high"] == 0.1 + 0.2
    assert np.isinf(first.loc[3, "close"])
    assert first.loc[2, "raw"] == "2024-01-01T02:00,abc,1,1,1,1"
    assert pd.isna(first.loc[2, "ts"])  # unreadable row: only the raw text is kept
    assert first.loc[0, "raw"] is None
    assert first.loc[0, "ts"] == T0
    assert back["source"].iloc[4] == "/data/y.csv"
    pd.testing.assert_frame_equal(read_quarantine(tmp_path), back)


def test_raw_columns_are_what_bad_rows_keep() -> None:
    raw = _frame()
    raw.loc[4, "volume"] = -2.0
    result = validate_candles(raw, Timeframe.H1)
    assert list(result.bad.columns) == [*RAW_COLUMNS, "reason"]
    assert result.bad.loc[0, "volume"] == -2.0
