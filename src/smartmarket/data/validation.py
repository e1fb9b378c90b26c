"""Split a raw frame into good candles and bad rows with a reason. Nothing is dropped silently.

Rules, checked in this order (a row gets the first reason that applies):

==========================  ===============================================================
``field_count``             the line has more or fewer fields than the header (``raw`` keeps the text)
``unparseable``             a field could not be read as a number or time (``raw`` keeps the text)
``bad_timestamp``           ts missing or not a whole number of ms (frames built in code)
``ts_out_of_range``         ts before 2009-01-03 00:00 UTC (the first Bitcoin block) or after now + 1 day
``not_finite``              a missing, NaN or infinite price or volume
``non_positive_price``      open, high, low or close <= 0
``negative_volume``         volume < 0
``low_above_high``          low > high
``high_below_open_close``   high < max(open, close)
``low_above_open_close``    low > min(open, close)
``misaligned``              ts not on the timeframe grid (see ``Timeframe.is_aligned``)
``duplicate``               same ts as an earlier *identical* valid row: the first copy is kept
``duplicate_conflict``      same ts as another valid row with different values: every copy is
                            quarantined, none kept (we cannot know which one is right)
==========================  ===============================================================

Out-of-order rows are not errors: good candles are sorted by ts and the number of rows that came after a
later timestamp is reported (``out_of_order``). Gaps (missing candles between good ones) are reported too.
Everything is vectorised: each rule is a small integer code per row, checked in pieces of ``SCAN_ROWS`` rows;
3 M clean rows validate in well under 0.1 s. A ``ParsedFile`` is judged without building any per-row text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from smartmarket.core.errors import ValidationError
from smartmarket.core.frame import CANDLE_COLUMNS, empty_candles
from smartmarket.core.types import DAY_MS, Timeframe
from smartmarket.data.parsers import RAW_COLUMNS, Flagged, ParsedFile, coerce_numbers, empty_raw_frame

REASONS: dict[str, str] = {
    "field_count": "more or fewer fields than the header",
    "unparseable": "a field is not a number or a time",
    "bad_timestamp": "timestamp missing or not whole milliseconds",
    "ts_out_of_range": "timestamp before 2009-01-03 or after now + 1 day",
    "not_finite": "missing, NaN or infinite value",
    "non_positive_price": "price <= 0",
    "negative_volume": "volume < 0",
    "low_above_high": "low > high",
    "high_below_open_close": "high < max(open, close)",
    "low_above_open_close": "low > min(open, close)",
    "misaligned": "timestamp not on the timeframe grid",
    "duplicate": "repeated identical candle (one copy kept)",
    "duplicate_conflict": "same timestamp, different values (all copies quarantined)",
    "conflict_with_stored": "differs from the candle already stored",
}
BAD_COLUMNS: tuple[str, ...] = (*RAW_COLUMNS, "reason")
EARLIEST_TS = 1_230_940_800_000  # 2009-01-03T00:00:00Z, the first Bitcoin block: no market traded before
FUTURE_SLACK_MS = DAY_MS  # candles may open up to a day ahead of this machine's clock, no more
NO_LATEST_TS = np.iinfo(np.int64).max  # ``latest_ts`` for synthetic data, which may lie in the future


def latest_plausible_ts() -> int:
    """The latest candle open time accepted now: this machine's clock plus one day."""
    return int(time.time() * 1000) + FUTURE_SLACK_MS


@dataclass(frozen=True)
class Gap:
    """``missing`` candles are absent after the candle that opens at ``after_ts``."""

    after_ts: int
    missing: int


@dataclass
class ValidationResult:
    """``good``: canonical candle frame (unique, sorted); ``good_lines``: source line of each good row;
    ``bad``: the raw rows (``RAW_COLUMNS``) plus ``reason``, in source order."""

    good: pd.DataFrame
    good_lines: np.ndarray
    bad: pd.DataFrame
    gaps: list[Gap] = field(default_factory=list)
    out_of_order: int = 0

    @property
    def reasons(self) -> dict[str, int]:
        counts = self.bad["reason"].value_counts()
        return {str(k): int(v) for k, v in counts.items()}


def _timestamps(raw: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """(int64 ts, mask of unusable ts or None when every ts is usable) for any numeric ts column."""
    ts = raw["ts"]
    if pd.api.types.is_integer_dtype(ts.dtype) and not ts.isna().any():
        return ts.to_numpy(dtype=np.int64), None
    values, _ = coerce_numbers(ts)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) >= 2**53)
    return np.where(bad, 0, values).astype(np.int64), bad


def _as_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """``raw`` with every ``RAW_COLUMNS`` column present: ``line`` defaults to the 1-based row position."""
    frame = raw.reset_index(drop=True)
    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"raw candle frame lacks columns {missing}", hint="give ts, open, high, low, close and volume columns"
        )
    extra: dict[str, object] = {}
    if "line" not in frame.columns:
        extra["line"] = np.arange(1, len(frame) + 1, dtype=np.int64)
    if "raw" not in frame.columns:
        extra["raw"] = np.full(len(frame), None, dtype=object)
    if "problem" not in frame.columns:
        extra["problem"] = np.full(len(frame), None, dtype=object)
    if extra:
        frame = frame.assign(**extra)  # type: ignore[arg-type]
    return frame


# Rule codes: 0 = good, else 1 + the rule's position in this order (the first failing rule wins).
_ORDER: tuple[str, ...] = tuple(r for r in REASONS if r != "conflict_with_stored")
_CODE: dict[str, int] = {name: i + 1 for i, name in enumerate(_ORDER)}
_NAMES = np.array([None, *_ORDER], dtype=object)
SCAN_ROWS = 1 << 18  # rows checked at once: temporaries stay small and warm in cache


def _rule_codes(
    ts: np.ndarray,
    ts_bad: np.ndarray | None,
    values: list[np.ndarray],
    flagged: Flagged,
    timeframe: Timeframe,
    latest_ts: int,
) -> np.ndarray:
    """Per row: the code of the first failing row-level rule, or 0. Clean rows cost a few float compares."""
    n = len(ts)
    codes = np.zeros(n, dtype=np.uint8)
    o, h, low, c, v = values
    for a in range(0, n, SCAN_ROWS):
        s = slice(a, min(n, a + SCAN_ROWS))
        t, os_, hs, ls, cs, vs = ts[s], o[s], h[s], low[s], c[s], v[s]
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(os_) & np.isfinite(hs) & np.isfinite(ls) & np.isfinite(cs) & np.isfinite(vs)
            rules: list[tuple[str, np.ndarray | None]] = [
                ("bad_timestamp", None if ts_bad is None else ts_bad[s]),
                ("ts_out_of_range", (t < EARLIEST_TS) | (t > latest_ts)),
                ("not_finite", ~finite),
                ("non_positive_price", (os_ <= 0) | (hs <= 0) | (ls <= 0) | (cs <= 0)),
                ("negative_volume", vs < 0),
                ("low_above_high", ls > hs),
                ("high_below_open_close", hs < np.maximum(os_, cs)),
                ("low_above_open_close", ls > np.minimum(os_, cs)),
                # Vectorised Timeframe.is_aligned: bucket_start(ts) == ts.
                ("misaligned", timeframe.bucket_starts(t) != t),
            ]
        chunk = codes[s]
        for name, failed in reversed(rules):  # earlier rules overwrite later ones: first failure wins
            if failed is not None and failed.any():
                chunk[failed] = _CODE[name]
    if len(flagged.rows):  # what the parser could not read comes first
        field_count = flagged.problem == "field_count"
        codes[flagged.rows[~field_count]] = _CODE["unparseable"]
        codes[flagged.rows[field_count]] = _CODE["field_count"]
    return codes


def _steps(ts: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ts[i], ts[i+1] - ts[i]) over ``ts`` in pieces of ``SCAN_ROWS``."""
    for a in range(0, len(ts) - 1, SCAN_ROWS):
        head = ts[a : min(a + SCAN_ROWS, len(ts) - 1)]
        yield head, ts[a + 1 : a + 1 + len(head)] - head


def _strictly_increasing(ts: np.ndarray) -> bool:
    return all(bool((steps > 0).all()) for _, steps in _steps(ts))


def _duplicate_codes(ts: np.ndarray, values: list[np.ndarray], codes: np.ndarray) -> None:
    """Mark duplicate timestamps among rows still valid (in place)."""
    valid = np.flatnonzero(codes == 0) if codes.any() else np.arange(len(ts))
    if len(valid) < 2:
        return
    valid_ts = ts[valid] if len(valid) < len(ts) else ts
    if _strictly_increasing(valid_ts):  # the usual file: no repeat possible
        return
    repeated = pd.Series(valid_ts).duplicated(keep=False).to_numpy()
    if not repeated.any():
        return
    rows = valid[repeated]
    copies = pd.DataFrame({c: values[k][rows] for k, c in enumerate(CANDLE_COLUMNS[1:])})
    copies.insert(0, "ts", ts[rows])
    distinct_per_ts = copies.drop_duplicates().groupby("ts").size()
    conflicting = copies["ts"].map(distinct_per_ts).to_numpy() > 1
    later_copy = copies.duplicated(subset=["ts"], keep="first").to_numpy()
    codes[rows[conflicting]] = _CODE["duplicate_conflict"]
    codes[rows[~conflicting & later_copy]] = _CODE["duplicate"]


def find_gaps(ts: np.ndarray, timeframe: Timeframe) -> list[Gap]:
    """Gaps in sorted, unique, aligned ``ts``: one ``Gap`` per run of missing candles."""
    if timeframe.is_calendar:  # months differ in length: count buckets, not milliseconds
        steps = np.diff(timeframe.bucket_index(ts))
        at = np.flatnonzero(steps > 1)
        return [Gap(int(ts[i]), int(steps[i] - 1)) for i in at]
    gaps: list[Gap] = []
    for head, steps in _steps(ts):
        at = np.flatnonzero(steps > timeframe.ms)
        if len(at):
            missing = steps[at] // timeframe.ms - 1
            gaps += [Gap(int(t), int(m)) for t, m in zip(head[at], missing, strict=True)]
    return gaps


def _judge(
    ts: np.ndarray,
    ts_bad: np.ndarray | None,
    values: list[np.ndarray],
    line: np.ndarray,
    flagged: Flagged,
    timeframe: Timeframe,
    latest_ts: int | None,
) -> tuple[np.ndarray, ValidationResult]:
    """(rule codes, result without its ``bad`` rows) of candle columns."""
    codes = _rule_codes(
        ts, ts_bad, values, flagged, timeframe, latest_plausible_ts() if latest_ts is None else latest_ts
    )
    _duplicate_codes(ts, values, codes)
    all_good = not codes.any()
    if all_good and _strictly_increasing(ts):  # every row good, in order: no copy at all
        good = pd.DataFrame({"ts": ts, **dict(zip(CANDLE_COLUMNS[1:], values, strict=True))}, copy=False)
        result = ValidationResult(good, line, empty_bad_frame(), find_gaps(ts, timeframe))
        return codes, result
    good_idx = np.arange(len(ts)) if all_good else np.flatnonzero(codes == 0)
    good_ts = ts[good_idx]
    out_of_order = int(np.count_nonzero(good_ts[1:] < np.maximum.accumulate(good_ts)[:-1])) if len(good_ts) else 0
    if out_of_order:
        good_idx = good_idx[np.argsort(good_ts, kind="stable")]
    if len(good_idx):
        good = pd.DataFrame(
            {"ts": ts[good_idx], **{c: values[k][good_idx] for k, c in enumerate(CANDLE_COLUMNS[1:])}}, copy=False
        )
    else:
        good = empty_candles()
    result = ValidationResult(
        good, line[good_idx], empty_bad_frame(), find_gaps(good["ts"].to_numpy(), timeframe), out_of_order
    )
    return codes, result


def empty_bad_frame() -> pd.DataFrame:
    """A ``bad`` frame without rows (``BAD_COLUMNS``)."""
    return empty_raw_frame().assign(reason=pd.Series(dtype=object))


def _validate_parsed(parsed: ParsedFile, timeframe: Timeframe, latest_ts: int | None) -> ValidationResult:
    columns, flagged = parsed.columns, parsed.flagged
    values = [columns[c] for c in CANDLE_COLUMNS[1:]]
    codes, result = _judge(columns["ts"], None, values, parsed.line, flagged, timeframe, latest_ts)
    if not codes.any():
        return result
    rows = np.flatnonzero(codes)
    raw = np.full(len(rows), None, dtype=object)
    problem = np.full(len(rows), None, dtype=object)
    at = np.searchsorted(rows, flagged.rows)  # every flagged row is bad
    raw[at], problem[at] = flagged.raw, flagged.problem
    result.bad = pd.DataFrame(
        {
            **{c: columns[c][rows] for c in CANDLE_COLUMNS},
            "line": parsed.line[rows],
            "raw": pd.Series(raw, dtype=object),
            "problem": pd.Series(problem, dtype=object),
            "reason": pd.Series(_NAMES[codes[rows]], dtype=object),
        }
    )
    return result


def _validate_frame(raw: pd.DataFrame, timeframe: Timeframe, latest_ts: int | None) -> ValidationResult:
    frame = _as_frame(raw)
    ts, ts_bad = _timestamps(frame)
    values: list[np.ndarray] = []
    unreadable = frame["raw"].notna().to_numpy() | frame["problem"].notna().to_numpy()
    for col in CANDLE_COLUMNS[1:]:
        numbers, bad_text = coerce_numbers(frame[col])
        values.append(numbers)
        unreadable |= bad_text
    rows = np.flatnonzero(unreadable)
    flagged = Flagged(rows, frame["problem"].to_numpy()[rows], frame["raw"].to_numpy()[rows])
    line = frame["line"].to_numpy(dtype=np.int64)
    codes, result = _judge(ts, ts_bad, values, line, flagged, timeframe, latest_ts)
    is_bad = codes != 0
    if is_bad.any():
        result.bad = frame.loc[is_bad, list(RAW_COLUMNS)].assign(reason=_NAMES[codes[is_bad]]).reset_index(drop=True)
    return result


def validate_candles(
    raw: pd.DataFrame | ParsedFile, timeframe: Timeframe, *, latest_ts: int | None = None
) -> ValidationResult:
    """Apply every rule to ``raw``: a parsed file, or a raw frame (``line``, ``raw`` and ``problem`` columns
    optional, ts in epoch ms). ``latest_ts``: the latest acceptable candle open (default: now + 1 day;
    ``NO_LATEST_TS`` for none)."""
    if isinstance(raw, ParsedFile):
        return _validate_parsed(raw, timeframe, latest_ts)
    return _validate_frame(raw, timeframe, latest_ts)


__all__ = [
    "BAD_COLUMNS",
    "EARLIEST_TS",
    "NO_LATEST_TS",
    "REASONS",
    "SCAN_ROWS",
    "Gap",
    "ValidationResult",
    "empty_bad_frame",
    "find_gaps",
    "latest_plausible_ts",
    "validate_candles",
]
