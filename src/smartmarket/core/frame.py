"""The candle frame: the one in-memory shape of candles everywhere in SmartMarket.

A pandas ``DataFrame`` with exactly the columns ``ts, open, high, low, close, volume``: ``ts`` is int64 UTC
epoch ms of the candle open, the rest float64, rows sorted by ``ts`` with a default RangeIndex. The
symbol and timeframe travel beside the frame, not inside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CANDLE_COLUMNS: tuple[str, ...] = ("ts", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")


def empty_candles() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=np.int64 if c == "ts" else np.float64) for c in CANDLE_COLUMNS}
    )


def as_candle_frame(df: pd.DataFrame, *, sort: bool = True) -> pd.DataFrame:
    """Return ``df`` coerced to the canonical candle frame (column order, dtypes, sorted, fresh index)."""
    missing = [c for c in CANDLE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"candle frame lacks columns {missing}")
    out = pd.DataFrame(
        {
            "ts": df["ts"].to_numpy(dtype=np.int64),
            **{c: df[c].to_numpy(dtype=np.float64) for c in CANDLE_COLUMNS[1:]},
        }
    )
    if sort and len(out) > 1 and not out["ts"].is_monotonic_increasing:
        out = out.sort_values("ts", kind="stable").reset_index(drop=True)
    return out


__all__ = ["CANDLE_COLUMNS", "PRICE_COLUMNS", "as_candle_frame", "empty_candles"]
