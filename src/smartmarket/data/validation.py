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
Everything is vectorised; 5M rows validate in about a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from smartmarket.core.types import DAY_MS, Timeframe
from smartmarket.data.frame import CANDLE_COLUMNS, empty_candles
from smartmarket.data.parsers import RAW_COLUMNS, coerce_numbers

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


def _timestamps(raw: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(int64 ts, mask of unusable ts) for any numeric ts column."""
    ts = raw["ts"]
    if pd.api.types.is_integer_dtype(ts.dtype) and not ts.isna().any():
        return ts.to_numpy(dtype=np.int64), np.zeros(len(ts), dtype=bool)
    values, _ = coerce_numbers(ts)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) >= 2**53)
    return np.where(bad, 0, values).astype(np.int64), bad


def _as_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """``raw`` with every ``RAW_COLUMNS`` column present: ``line`` defaults to the 1-based row position."""
    frame = raw.reset_index(drop=True)
    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"raw candle frame lacks columns {missing}")
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


def _rule_reasons(
    frame: pd.DataFrame, ts: np.ndarray, ts_bad: np.ndarray, timeframe: Timeframe, latest_ts: int
) -> np.ndarray:
    """Per row: the first failing row-level rule, or None."""
    values = {}
    problem = frame["problem"].to_numpy()
    field_count = problem == "field_count"
    unparseable = frame["raw"].notna().to_numpy() & ~field_count
    for col in CANDLE_COLUMNS[1:]:
        numbers, bad_text = coerce_numbers(frame[col])
        values[col] = numbers
        unparseable |= bad_text
    o, h, low, c, v = (values[k] for k in CANDLE_COLUMNS[1:])
    finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(low) & np.isfinite(c) & np.isfinite(v)
    with np.errstate(invalid="ignore"):
        rules: list[tuple[str, np.ndarray]] = [
            ("field_count", field_count),
            ("unparseable", unparseable),
            ("bad_timestamp", ts_bad),
            ("ts_out_of_range", (ts < EARLIEST_TS) | (ts > latest_ts)),
            ("not_finite", ~finite),
            ("non_positive_price", (o <= 0) | (h <= 0) | (low <= 0) | (c <= 0)),
            ("negative_volume", v < 0),
            ("low_above_high", low > h),
            ("high_below_open_close", h < np.maximum(o, c)),
            ("low_above_open_close", low > np.minimum(o, c)),
            # Vectorised Timeframe.is_aligned: bucket_start(ts) == ts.
            ("misaligned", (ts - timeframe.offset_ms) % timeframe.ms != 0),
        ]
    reasons = np.full(len(frame), None, dtype=object)
    for name, failed in reversed(rules):  # earlier rules overwrite later ones: first failure wins
        reasons[failed] = name
    return reasons


def _duplicate_reasons(frame: pd.DataFrame, ts: np.ndarray, reasons: np.ndarray) -> None:
    """Mark duplicate timestamps among rows still valid (in place)."""
    valid = np.flatnonzero(pd.isna(reasons))
    if len(valid) < 2:
        return
    if np.all(np.diff(ts[valid]) > 0):  # the usual file: strictly increasing, no repeat possible
        return
    valid_ts = pd.Series(ts[valid])
    repeated = valid_ts.duplicated(keep=False).to_numpy()
    if not repeated.any():
        return
    rows = valid[repeated]
    copies = pd.DataFrame({c: frame[c].to_numpy()[rows] for c in CANDLE_COLUMNS[1:]}).astype(np.float64)
    copies.insert(0, "ts", ts[rows])
    distinct_per_ts = copies.drop_duplicates().groupby("ts").size()
    conflicting = copies["ts"].map(distinct_per_ts).to_numpy() > 1
    later_copy = copies.duplicated(subset=["ts"], keep="first").to_numpy()
    reasons[rows[conflicting]] = "duplicate_conflict"
    reasons[rows[~conflicting & later_copy]] = "duplicate"


def find_gaps(ts: np.ndarray, timeframe: Timeframe) -> list[Gap]:
    """Gaps in sorted, unique, aligned ``ts``: one ``Gap`` per run of missing candles."""
    if len(ts) < 2:
        return []
    steps = np.diff(ts)
    at = np.flatnonzero(steps > timeframe.ms)
    missing = steps[at] // timeframe.ms - 1
    return [Gap(int(a), int(m)) for a, m in zip(ts[at], missing, strict=True)]


def validate_candles(raw: pd.DataFrame, timeframe: Timeframe, *, latest_ts: int | None = None) -> ValidationResult:
    """Apply every rule to ``raw`` (a raw frame; ``line``, ``raw`` and ``problem`` columns optional, ts in epoch
    ms). ``latest_ts``: the latest acceptable candle open (default: now + 1 day; ``NO_LATEST_TS`` for none)."""
    frame = _as_frame(raw)
    ts, ts_bad = _timestamps(frame)
    reasons = _rule_reasons(frame, ts, ts_bad, timeframe, latest_plausible_ts() if latest_ts is None else latest_ts)
    _duplicate_reasons(frame, ts, reasons)

    is_bad = pd.notna(reasons)
    bad = frame.loc[is_bad, list(RAW_COLUMNS)].assign(reason=reasons[is_bad]).reset_index(drop=True)

    good_idx = np.flatnonzero(~is_bad)
    good_ts = ts[good_idx]
    out_of_order = int(np.count_nonzero(good_ts[1:] < np.maximum.accumulate(good_ts)[:-1])) if len(good_ts) else 0
    if out_of_order:
        good_idx = good_idx[np.argsort(good_ts, kind="stable")]
    if len(good_idx) == len(frame) and not out_of_order:  # every row good, in order: no copy needed
        good = pd.DataFrame({"ts": ts, **{c: coerce_numbers(frame[c])[0] for c in CANDLE_COLUMNS[1:]}}, copy=False)
    elif len(good_idx):
        good = pd.DataFrame({"ts": ts[good_idx]})
        for col in CANDLE_COLUMNS[1:]:
            good[col] = coerce_numbers(frame[col])[0][good_idx]
    else:
        good = empty_candles()
    good_lines = frame["line"].to_numpy(dtype=np.int64)[good_idx]
    return ValidationResult(
        good=good,
        good_lines=good_lines,
        bad=bad,
        gaps=find_gaps(good["ts"].to_numpy(), timeframe),
        out_of_order=out_of_order,
    )


__all__ = [
    "BAD_COLUMNS",
    "EARLIEST_TS",
    "NO_LATEST_TS",
    "REASONS",
    "Gap",
    "ValidationResult",
    "find_gaps",
    "latest_plausible_ts",
    "validate_candles",
]
