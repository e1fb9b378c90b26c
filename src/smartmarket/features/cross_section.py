"""Cross-sectional features: where a symbol stands within its universe at the same timestamp.

For every symbol and bar ``t`` (candle open time ``ts``, features known at its close, like every feature):

* ``xs_ret_rank_<n>``: the rank of the symbol's ``n``-bar log return ``ln(close_t / close_{t−n})`` among the
  universe's symbols at the same ``ts``;
* ``xs_vol_rank_<n>``: the rank of its realised volatility (standard deviation of the last ``n`` one-bar log
  returns) among them.

Ranks are scaled to ``[0, 1]`` (0 = lowest, 1 = highest, ties share their mean rank), so they are scale-free
and do not depend on the number of symbols. Only closed candles enter: the value at ``ts`` uses each symbol's
candles with open time ≤ ``ts`` (its own trailing window) and nothing later. **A symbol with no candle at that
``ts``, or whose window is not yet full, is left out of that timestamp's rank** (the others are ranked among
themselves); with fewer than two symbols present the rank is undefined (NaN) — a model's complete-window rule
then skips that bar. Each symbol's own bars are its rows: a time gap inside one symbol is not a bar, as for
every other feature.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

DEFAULT_WINDOW = 24


def cross_section_columns(window: int = DEFAULT_WINDOW) -> tuple[str, str]:
    return f"xs_ret_rank_{window}", f"xs_vol_rank_{window}"


def _own_measures(candles: pd.DataFrame, window: int) -> tuple[np.ndarray, np.ndarray]:
    close = candles["close"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logc = np.where(close > 0, np.log(close), np.nan)
    ret = np.full(len(close), np.nan)
    if len(close) > window:
        ret[window:] = logc[window:] - logc[:-window]
    one = np.concatenate([[np.nan], np.diff(logc)])
    vol = pd.Series(one).rolling(window, min_periods=window).std(ddof=1).to_numpy()
    return ret, vol


def _row_ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Per row: ranks of the present (finite) values scaled to [0, 1]; NaN where fewer than two are present."""
    ranks = table.rank(axis=1, method="average")
    present = table.notna().sum(axis=1)
    scaled = ranks.sub(1.0).div((present - 1).where(present >= 2), axis=0)
    return scaled


def cross_section_ranks(candles: Mapping[str, pd.DataFrame], window: int = DEFAULT_WINDOW) -> dict[str, pd.DataFrame]:
    """Per symbol, a frame aligned row by row with its candles: ``ts`` and the two rank columns."""
    if window < 2:
        raise ValueError("the cross-section window must be at least 2 bars")
    ret_col, vol_col = cross_section_columns(window)
    rets: dict[str, pd.Series] = {}
    vols: dict[str, pd.Series] = {}
    for symbol, frame in candles.items():
        ts = frame["ts"].to_numpy(dtype=np.int64)
        ret, vol = _own_measures(frame, window)
        rets[symbol] = pd.Series(ret, index=ts)
        vols[symbol] = pd.Series(vol, index=ts)
    ret_ranks = _row_ranks(pd.DataFrame(rets))
    vol_ranks = _row_ranks(pd.DataFrame(vols))
    out: dict[str, pd.DataFrame] = {}
    for symbol, frame in candles.items():
        ts = frame["ts"].to_numpy(dtype=np.int64)
        out[symbol] = pd.DataFrame(
            {
                "ts": ts,
                ret_col: ret_ranks[symbol].reindex(ts).to_numpy(),
                vol_col: vol_ranks[symbol].reindex(ts).to_numpy(),
            },
            index=frame.index,
        )
    return out


__all__ = ["DEFAULT_WINDOW", "cross_section_columns", "cross_section_ranks"]
