"""Order-independent checksums and summaries of candle and event sets, for verifying copies.

The checksum is the sum (mod 2**64) of a per-row 64-bit hash, so it does not depend on row order and the
checksum of a whole series equals the sum of the checksums of its chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from smartmarket.core.events import to_json
from smartmarket.core.frame import CANDLE_COLUMNS
from smartmarket.store.base import StoredEvent

_MASK = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Summary:
    """Row count, ts range, volume sum and checksum of a set of rows (events: volume_sum is 0)."""

    rows: int
    min_ts: int | None
    max_ts: int | None
    volume_sum: float
    checksum: int

    def combine(self, other: Summary) -> Summary:
        def lo(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)

        def hi(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else max(a, b)

        return Summary(
            rows=self.rows + other.rows,
            min_ts=lo(self.min_ts, other.min_ts),
            max_ts=hi(self.max_ts, other.max_ts),
            volume_sum=self.volume_sum + other.volume_sum,
            checksum=(self.checksum + other.checksum) & _MASK,
        )

    def matches(self, other: Summary) -> bool:
        """Exact equality, except the float volume sum which may differ in the last bits by summation order."""
        return (
            self.rows == other.rows
            and self.min_ts == other.min_ts
            and self.max_ts == other.max_ts
            and self.checksum == other.checksum
            and bool(np.isclose(self.volume_sum, other.volume_sum, rtol=1e-12, atol=0.0))
        )


EMPTY = Summary(rows=0, min_ts=None, max_ts=None, volume_sum=0.0, checksum=0)


def summarize_candles(frame: pd.DataFrame) -> Summary:
    """Summary of a candle frame; the checksum covers ts and the exact bits of every OHLCV value."""
    if frame.empty:
        return EMPTY
    hashed = pd.util.hash_pandas_object(frame[list(CANDLE_COLUMNS)], index=False).to_numpy(np.uint64)
    return Summary(
        rows=len(frame),
        min_ts=int(frame["ts"].min()),
        max_ts=int(frame["ts"].max()),
        volume_sum=float(np.sort(frame["volume"].to_numpy())[::-1].sum()),
        checksum=int(hashed.sum(dtype=np.uint64)),
    )


def summarize_events(events: Sequence[StoredEvent]) -> Summary:
    """Summary of stored events; the checksum covers each event's seq and full serialised form."""
    if not events:
        return EMPTY
    keys = pd.Series([f"{e.seq}\x1f{to_json(e.message)}" for e in events])
    hashed = pd.util.hash_pandas_object(keys, index=False).to_numpy(np.uint64)
    seqs = [e.seq for e in events]
    return Summary(
        rows=len(events),
        min_ts=min(seqs),
        max_ts=max(seqs),
        volume_sum=0.0,
        checksum=int(hashed.sum(dtype=np.uint64)),
    )


__all__ = ["EMPTY", "Summary", "summarize_candles", "summarize_events"]
