"""The feature contract: an incremental object whose batch form runs the same logic over arrays.

Every feature (indicator, Smart Money Concepts detector, regime labeller) is causal: its value at bar t
uses bars ≤ t only. ``update`` consumes one closed candle; ``values`` are the outputs after the last update
(NaN while not ``ready``); ``batch`` returns, for a whole candle frame, exactly what feeding the rows one
at a time through ``update`` would produce (bit-identical unless a module documents otherwise).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import pandas as pd


class Feature(ABC):
    """One named feature producing the columns ``columns`` (lower-case ``<name>_<params>`` names)."""

    columns: tuple[str, ...]

    @abstractmethod
    def update(self, ts: int, open: float, high: float, low: float, close: float, volume: float) -> None:
        """Consume one closed candle."""

    @property
    @abstractmethod
    def values(self) -> tuple[float, ...]:
        """Current outputs, one per column (NaN while warming up)."""

    def step(self, ts: int, open: float, high: float, low: float, close: float, volume: float) -> tuple[float, ...]:
        """``update`` then ``values`` in one call (the backtest kernel's per-candle hot path)."""
        self.update(ts, open, high, low, close, volume)
        return self.values

    @property
    @abstractmethod
    def ready(self) -> bool:
        """True once enough candles were seen for the outputs to be defined."""

    @abstractmethod
    def reset(self) -> None:
        """Forget all state, as if newly built."""

    @abstractmethod
    def batch(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Outputs for every row of a candle frame: columns ``columns``, same length and order as ``frame``."""

    def stream(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Reference streaming form: reset, feed every row through ``update`` and collect ``values``."""
        self.reset()
        out = np.full((len(frame), len(self.columns)), np.nan)
        arrays = [frame[c].to_numpy() for c in ("ts", "open", "high", "low", "close", "volume")]
        for i, (ts, o, h, lo, c, v) in enumerate(zip(*arrays, strict=True)):
            self.update(int(ts), float(o), float(h), float(lo), float(c), float(v))
            out[i] = self.values
        return pd.DataFrame(out, columns=list(self.columns), index=frame.index)


__all__ = ["Feature"]
