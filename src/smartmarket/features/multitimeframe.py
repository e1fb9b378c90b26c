"""Higher-timeframe features on a base series (e.g. the 4h trend on a 1h series), using closed HTF bars only.

``HigherTimeframe`` aggregates base candles into the current higher-timeframe bucket as they arrive (first open,
max high, min low, last close, summed volume, UTC-aligned buckets as in the store's resampling). The HTF candle
*closes* — and the wrapped feature is updated with it — at the base candle that completes the bucket
(``ts + base.ms == bucket end``). Between closes the outputs carry the values of the last closed HTF bar, so a
base bar never sees a bucket that is still forming.

Gaps and bad candles (documented behaviour, tested):

* if the last base candle of a bucket is missing, the bucket closes when the first candle of a later bucket
  arrives (that candle's row is the first to see it); a bucket is aggregated from the candles it has, so the
  first bucket of a series that starts mid-bucket is partial too;
* a base candle with a non-finite field is left out of the aggregate (it still moves time forward, so it can
  complete or close a bucket); a bucket without any valid candle produces no HTF bar;
* the trailing bucket at the end of the data is not closed, so it is never used.

``batch`` runs the same state machine in numba over the whole frame, then the wrapped feature's own batch over
the closed HTF bars, and maps each HTF bar to the base rows from its closing row on: equal to streaming.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import njit

from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Timeframe
from smartmarket.features.base import Feature
from smartmarket.features.regimes import RegimeConfig

HIGHER_TIMEFRAME: dict[Timeframe, Timeframe] = {
    Timeframe.M1: Timeframe.M15,
    Timeframe.M3: Timeframe.M15,
    Timeframe.M5: Timeframe.H1,
    Timeframe.M15: Timeframe.H1,
    Timeframe.M30: Timeframe.H4,
    Timeframe.H1: Timeframe.H4,
    Timeframe.H2: Timeframe.H12,
    Timeframe.H4: Timeframe.D1,
    Timeframe.H6: Timeframe.D1,
    Timeframe.H12: Timeframe.D1,
    Timeframe.D1: Timeframe.W1,
}
"""The timeframe ``"higher"`` stands for, per base timeframe (none above 1w)."""


@dataclass(frozen=True, slots=True)
class MultiTimeframeSpec:
    """Features computed on a higher timeframe. ``timeframe="higher"`` picks ``HIGHER_TIMEFRAME[base]``.

    Columns are the inner features' columns prefixed ``htf_`` (for ``"higher"``, so a set keeps its column
    names whatever the base timeframe) or ``tf<timeframe>_`` (e.g. ``tf4h_rsi_14``), unless ``prefix`` is given.
    """

    timeframe: str = "higher"
    indicators: tuple[str, ...] = ()
    derived: tuple[str, ...] = ()
    regime: RegimeConfig | None = None
    prefix: str | None = None

    def resolve(self, base: Timeframe) -> Timeframe:
        """The higher timeframe for ``base``; ``ConfigError`` if there is none or it does not tile ``base``."""
        if self.timeframe == "higher":
            higher = HIGHER_TIMEFRAME.get(base)
            if higher is None:
                raise ConfigError(
                    f"no higher timeframe above {base} for the multi-timeframe features",
                    hint="use a feature set without multi-timeframe features (e.g. --set minimal)",
                )
            return higher
        higher = Timeframe.parse(self.timeframe)
        if higher.is_calendar or base.is_calendar:
            raise ConfigError(f"multi-timeframe features do not take {higher if higher.is_calendar else base} "
                              "(calendar-month) candles", hint="use a fixed higher timeframe such as 1w")  # fmt: skip
        if higher.ms <= base.ms or not base.divides(higher):
            raise ConfigError(f"{higher} is not a higher timeframe made of {base} candles")
        return higher

    def column_prefix(self, base: Timeframe) -> str:
        if self.prefix is not None:
            return self.prefix
        return "htf_" if self.timeframe == "higher" else f"tf{self.resolve(base).value}_"


@njit(cache=True)
def _close_htf_bars(ts, o, h, lo, c, v, base_ms, htf_ms, htf_offset):  # type: ignore[no-untyped-def]
    """The streaming aggregation over whole arrays: closed HTF bars (ts, OHLCV) and the base row closing each."""
    n = ts.size
    out_ts = np.empty(n, dtype=np.int64)
    bars = np.empty((5, n))
    close_row = np.empty(n, dtype=np.int64)
    k = 0
    has_bucket = False
    closed = False
    has_data = False
    bucket = 0
    a_o = a_h = a_l = a_c = a_v = 0.0
    for i in range(n):
        b = (ts[i] - htf_offset) // htf_ms * htf_ms + htf_offset
        if has_bucket and b != bucket:
            if not closed and has_data:
                out_ts[k] = bucket
                bars[0, k], bars[1, k], bars[2, k], bars[3, k], bars[4, k] = a_o, a_h, a_l, a_c, a_v
                close_row[k] = i
                k += 1
            has_bucket = False
        if not has_bucket:
            bucket = b
            has_bucket = True
            closed = False
            has_data = False
        if not closed and (
            math.isfinite(o[i]) and math.isfinite(h[i]) and math.isfinite(lo[i])
            and math.isfinite(c[i]) and math.isfinite(v[i])
        ):  # fmt: skip
            if has_data:
                a_h = max(a_h, h[i])
                a_l = min(a_l, lo[i])
                a_c = c[i]
                a_v = a_v + v[i]
            else:
                a_o, a_h, a_l, a_c, a_v = o[i], h[i], lo[i], c[i], v[i]
                has_data = True
        if not closed and ts[i] + base_ms == bucket + htf_ms:
            closed = True
            if has_data:
                out_ts[k] = bucket
                bars[0, k], bars[1, k], bars[2, k], bars[3, k], bars[4, k] = a_o, a_h, a_l, a_c, a_v
                close_row[k] = i
                k += 1
    return out_ts[:k], bars[:, :k], close_row[:k]


class HigherTimeframe(Feature):
    """Wrap ``inner`` (any ``Feature``) so it runs on closed ``higher`` bars built from ``base`` candles."""

    def __init__(self, base: Timeframe, higher: Timeframe, inner: Feature, prefix: str) -> None:
        if higher.is_calendar or base.is_calendar:
            raise ConfigError(f"multi-timeframe features do not take {higher if higher.is_calendar else base} "
                              "(calendar-month) candles", hint="use a fixed higher timeframe such as 1w")  # fmt: skip
        if higher.ms <= base.ms or not base.divides(higher):
            raise ConfigError(f"{higher} is not a higher timeframe made of {base} candles")
        self.base = base
        self.higher = higher
        self.inner = inner
        self.columns = tuple(prefix + col for col in inner.columns)
        self._nan_row = (math.nan,) * len(self.columns)
        self.reset()

    @property
    def bars_per_bucket(self) -> int:
        return self.higher.ms // self.base.ms

    def reset(self) -> None:
        self.inner.reset()
        self._bucket: int | None = None
        self._closed = False
        self._has_data = False
        self._bar = [0.0, 0.0, 0.0, 0.0, 0.0]
        self._values = self._nan_row
        self.closed_bars = 0

    def update(self, ts: int, open: float, high: float, low: float, close: float, volume: float) -> None:
        bucket = self.higher.bucket_start(ts)
        if self._bucket is not None and bucket != self._bucket:
            self._close()
            self._bucket = None
        if self._bucket is None:
            self._bucket, self._closed, self._has_data = bucket, False, False
        if not self._closed and all(map(math.isfinite, (open, high, low, close, volume))):
            bar = self._bar
            if self._has_data:
                bar[1] = max(bar[1], high)
                bar[2] = min(bar[2], low)
                bar[3] = close
                bar[4] = bar[4] + volume
            else:
                bar[:] = [open, high, low, close, volume]
                self._has_data = True
        if ts + self.base.ms == bucket + self.higher.ms:
            self._close()

    def _close(self) -> None:
        if self._closed or self._bucket is None:
            return
        self._closed = True
        if self._has_data:
            self.inner.update(self._bucket, *self._bar)
            self._values = self.inner.values
            self.closed_bars += 1

    @property
    def values(self) -> tuple[float, ...]:
        return self._values

    @property
    def ready(self) -> bool:
        return self.closed_bars > 0 and self.inner.ready

    def higher_bars(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, npt.NDArray[np.int64]]:
        """The closed HTF candles of ``frame`` (a candle frame) and, for each, the base row at which it closed."""
        ts = np.ascontiguousarray(frame["ts"].to_numpy(dtype=np.int64))
        arrays = [np.ascontiguousarray(frame[col].to_numpy(dtype=np.float64)) for col in _OHLCV]
        aggregate: Callable[..., tuple[Any, Any, Any]] = _close_htf_bars  # numba dispatcher (untyped for mypy)
        htf_ts, bars, close_row = aggregate(ts, *arrays, self.base.ms, self.higher.ms, self.higher.offset_ms)
        candles = pd.DataFrame({"ts": htf_ts, **{col: bars[j] for j, col in enumerate(_OHLCV)}})
        return candles, close_row

    def batch(self, frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.batch_array(frame), columns=list(self.columns), index=frame.index)

    def batch_array(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Outputs as a ``(len(frame), len(columns))`` array; the streaming state is left untouched."""
        out = np.full((len(frame), len(self.columns)), np.nan, order="F")
        self.batch_into(frame, out)
        return out

    def batch_into(self, frame: pd.DataFrame, out: npt.NDArray[np.float64]) -> None:
        """Write the outputs for ``frame`` into ``out`` (shape ``(len(frame), len(columns))``)."""
        if len(frame) == 0:
            return
        candles, close_row = self.higher_bars(frame)
        # Row 0 of ``closed`` is all NaN: the value before the first HTF bar closes.
        closed = np.full((len(candles) + 1, len(self.columns)), np.nan, order="F")
        if len(candles):
            closed[1:] = self.inner.batch(candles).to_numpy(dtype=np.float64)
        latest = np.searchsorted(close_row, np.arange(len(frame)), side="right")  # 1 + index of the last closed
        for j in range(len(self.columns)):
            out[:, j] = closed[:, j].take(latest)


_OHLCV = ("open", "high", "low", "close", "volume")

__all__ = ["HIGHER_TIMEFRAME", "HigherTimeframe", "MultiTimeframeSpec"]
