"""The feature pipeline: a declared ``FeatureSet`` → one frame for training, one update per candle for live.

``FeaturePipeline(feature_set, timeframe)`` builds, in this column order:

1. the technical indicators (``FeatureSet.indicators``: spec strings for ``make_indicator``, e.g. ``"rsi_14"``);
2. the derived features (``FeatureSet.derived``, see ``DERIVED`` below: log returns, distance to an EMA in ATR
   units, bar range, body ratio, volume z-score);
3. the regime labeller (``FeatureSet.regime``, see ``regimes``);
4. the Smart Money Concepts columns (``FeatureSet.smc``, see ``smc``);
5. each multi-timeframe block (``FeatureSet.multi_timeframe``, see ``multitimeframe``), prefixed ``htf_``/``tf4h_``.

``batch(frame)`` returns ``ts`` then one float64 column per feature; ``update(ts, o, h, l, c, v)`` returns the
same columns for one new candle. Both run the same code (numba step functions, or the streaming state machine
itself for SMC), so a live pipeline fed the candles of a backtest gives the same values bit for bit.

Every feature is causal (bar t uses bars ≤ t). Candles with a non-finite field give NaN for the bar-level
features and leave their state untouched; windows count candles, not time (see each module). ``ts`` must
increase strictly (``ValidationError`` otherwise). ``batch`` and ``stream`` reset the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import njit

from smartmarket.core.errors import ConfigError, ValidationError
from smartmarket.core.types import Timeframe
from smartmarket.features.base import Feature
from smartmarket.features.indicators import KernelIndicator, make_indicator
from smartmarket.features.multitimeframe import HigherTimeframe, MultiTimeframeSpec
from smartmarket.features.regimes import RegimeConfig, RegimeFeature
from smartmarket.features.scale_free import ScaleFreeView
from smartmarket.features.smc import SMCConfig, SMCFeatures

# --- derived features -----------------------------------------------------------------------------------


@njit(cache=True)
def _finite(o: float, h: float, lo: float, c: float, v: float) -> bool:
    return math.isfinite(o) and math.isfinite(h) and math.isfinite(lo) and math.isfinite(c) and math.isfinite(v)


@njit(cache=True)
def logret_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    out[r, 0] = np.nan
    if not (_finite(o, h, lo, c, v) and c > 0.0):
        return
    k = int(p[0])
    s[0] += 1.0
    count = int(s[0])
    log_close = math.log(c)
    s[1 + (count - 1) % (k + 1)] = log_close
    if count > k:
        out[r, 0] = log_close - s[1 + (count - 1 - k) % (k + 1)]


@njit(cache=True)
def logret_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        logret_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class LogReturn(KernelIndicator):
    """``logret_<k>`` = ln(close / close k valid candles earlier)."""

    def __init__(self, bars: int = 1) -> None:
        k = _period("log return bars", bars)
        super().__init__(
            columns=[f"logret_{k}"], params=[k], state_size=2 + k, warmup=k + 1, step=logret_step, batch=logret_batch
        )


_EMA_N, _EMA_VALUE, _ATR_N, _ATR_VALUE, _ATR_SEED, _PREV_CLOSE = 1, 2, 3, 4, 5, 6


@njit(cache=True)
def emadist_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    out[r, 0] = np.nan
    if not _finite(o, h, lo, c, v):
        return
    n, m = int(p[0]), int(p[1])
    s[0] += 1.0
    count = int(s[0])
    # EMA of the close, seeded with the SMA of the first n closes (TA-Lib's convention).
    if count < n:
        s[_EMA_N] += c
    elif count == n:
        s[_EMA_VALUE] = (s[_EMA_N] + c) / n
    else:
        s[_EMA_VALUE] = (c - s[_EMA_VALUE]) * (2.0 / (n + 1)) + s[_EMA_VALUE]
    # Wilder ATR: SMA of the first m true ranges, then (atr·(m−1) + tr)/m.
    if count >= 2:
        prev = s[_PREV_CLOSE]
        tr = max(h - lo, abs(h - prev), abs(lo - prev))
        ranges = count - 1
        if ranges < m:
            s[_ATR_SEED] += tr
        elif ranges == m:
            s[_ATR_VALUE] = (s[_ATR_SEED] + tr) / m
        else:
            s[_ATR_VALUE] = (s[_ATR_VALUE] * (m - 1) + tr) / m
    s[_PREV_CLOSE] = c
    if count >= n and count >= m + 1 and s[_ATR_VALUE] > 0.0:
        out[r, 0] = (c - s[_EMA_VALUE]) / s[_ATR_VALUE]


@njit(cache=True)
def emadist_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        emadist_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class EmaDistance(KernelIndicator):
    """``emadist_<n>`` = (close − EMA_n) / ATR_m (m = 14 unless given: then ``emadist_<n>_<m>``)."""

    def __init__(self, period: int = 50, atr_period: int = 14) -> None:
        n = _period("EMA distance period", period)
        m = _period("EMA distance ATR period", atr_period)
        name = f"emadist_{n}" if m == 14 else f"emadist_{n}_{m}"
        super().__init__(
            columns=[name], params=[n, m], state_size=7, warmup=max(n, m + 1), step=emadist_step, batch=emadist_batch
        )


@njit(cache=True)
def shape_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    out[r, 0] = np.nan
    out[r, 1] = np.nan
    if not (_finite(o, h, lo, c, v) and c > 0.0):
        return
    s[0] += 1.0
    out[r, 0] = (h - lo) / c
    out[r, 1] = (c - o) / (h - lo) if h > lo else 0.0


@njit(cache=True)
def shape_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        shape_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class CandleShape(KernelIndicator):
    """``hlrange`` = (high − low)/close and ``body`` = (close − open)/(high − low) (0 for a flat candle)."""

    def __init__(self) -> None:
        super().__init__(columns=["hlrange", "body"], params=[0], state_size=1, warmup=1, step=shape_step,
                         batch=shape_batch)  # fmt: skip


@njit(cache=True)
def _ring_zscore(s, start, n, x):  # type: ignore[no-untyped-def]
    """z-score of ``x`` against the ``n`` values ``s[start:start + n]`` (sample std; 0 when flat)."""
    mean = 0.0
    for j in range(n):
        mean += s[start + j]
    mean /= n
    ss = 0.0
    for j in range(n):
        d = s[start + j] - mean
        ss += d * d
    std = math.sqrt(ss / (n - 1))
    return (x - mean) / std if std > 0.0 else 0.0


@njit(cache=True)
def volz_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    out[r, 0] = np.nan
    if not (_finite(o, h, lo, c, v) and v >= 0.0):
        return
    n = int(p[0])
    s[0] += 1.0
    count = int(s[0])
    x = math.log1p(v)
    s[1 + (count - 1) % n] = x
    if count >= n:
        out[r, 0] = _ring_zscore(s, 1, n, x)


@njit(cache=True)
def volz_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        volz_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class VolumeZScore(KernelIndicator):
    """``volz_<n>`` = z-score of ln(1 + volume) against the last n candles (sample std; 0 when flat)."""

    def __init__(self, period: int = 20) -> None:
        n = _period("volume z-score period", period, minimum=2)
        super().__init__(
            columns=[f"volz_{n}"], params=[n], state_size=1 + n, warmup=n, step=volz_step, batch=volz_batch
        )


@njit(cache=True)
def obvz_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    out[r, 0] = np.nan
    if not (_finite(o, h, lo, c, v) and v >= 0.0):
        return
    n = int(p[0])
    s[0] += 1.0
    count = int(s[0])
    if count > 1:  # OBV: + volume on an up close, − on a down close (s[1] the previous close, s[2] the OBV)
        if c > s[1]:
            s[2] += v
        elif c < s[1]:
            s[2] -= v
    s[1] = c
    x = s[2]
    s[3 + (count - 1) % n] = x
    if count >= n:
        out[r, 0] = _ring_zscore(s, 3, n, x)


@njit(cache=True)
def obvz_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        obvz_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class OBVZScore(KernelIndicator):
    """``obvz_<n>`` = z-score of on-balance volume against its last n values (sample std; 0 when flat): the
    scale-free form of the cumulative OBV."""

    def __init__(self, period: int = 20) -> None:
        n = _period("OBV z-score period", period, minimum=2)
        super().__init__(
            columns=[f"obvz_{n}"], params=[n], state_size=3 + n, warmup=n, step=obvz_step, batch=obvz_batch
        )


@njit(cache=True)
def vrel_step(p, s, o, h, lo, c, v, out, r):  # type: ignore[no-untyped-def]
    out[r, 0] = np.nan
    if not (_finite(o, h, lo, c, v) and v >= 0.0):
        return
    n = int(p[0])
    s[0] += 1.0
    count = int(s[0])
    s[1 + (count - 1) % n] = v
    if count < n:
        return
    mean = 0.0
    for j in range(n):
        mean += s[1 + j]
    mean /= n
    out[r, 0] = math.log1p(v / mean) if mean > 0.0 else math.log1p(1.0)


@njit(cache=True)
def vrel_batch(p, s, o, h, lo, c, v, out):  # type: ignore[no-untyped-def]
    for i in range(c.size):
        vrel_step(p, s, o[i], h[i], lo[i], c[i], v[i], out, i)


class RelativeVolume(KernelIndicator):
    """``vrel_<n>`` = ln(1 + volume / mean volume of the last n candles) (ln 2 when they are all 0): volume in
    units of its own recent level, so invariant to the volume unit."""

    def __init__(self, period: int = 20) -> None:
        n = _period("relative volume period", period)
        super().__init__(
            columns=[f"vrel_{n}"], params=[n], state_size=1 + n, warmup=n, step=vrel_step, batch=vrel_batch
        )


def _period(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ConfigError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


DERIVED: dict[str, Callable[..., KernelIndicator]] = {
    "logret": LogReturn,
    "emadist": EmaDistance,
    "shape": CandleShape,
    "volz": VolumeZScore,
    "obvz": OBVZScore,
    "vrel": RelativeVolume,
}
"""Derived features: spec name → class (``"logret_5"``, ``"emadist_50"``, ``"shape"``, ``"volz_20"``,
``"obvz_20"``, ``"vrel_20"``)."""


def make_derived(spec: str) -> KernelIndicator:
    """Build a derived feature from ``<name>[_<param>...]`` (integer parameters)."""
    name, *tokens = spec.strip().lower().split("_")
    factory = DERIVED.get(name)
    if factory is None:
        raise ConfigError(f"unknown derived feature {spec!r}", hint=f"known: {', '.join(sorted(DERIVED))}")
    try:
        return factory(*(int(t) for t in tokens))
    except (TypeError, ValueError):
        raise ConfigError(f"derived feature spec {spec!r}: bad parameters") from None


# --- the declared set ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeatureSet:
    """A named, frozen declaration of every feature a model sees (see ``smartmarket.features.sets``)."""

    name: str
    description: str = ""
    indicators: tuple[str, ...] = ()
    derived: tuple[str, ...] = ()
    regime: RegimeConfig | None = None
    smc: SMCConfig | None = None
    multi_timeframe: tuple[MultiTimeframeSpec, ...] = ()
    scale_free: bool = True
    """Add the ``ScaleFreeView`` companions (``<level>_dist``, ``<difference>_pct``) of the bar features."""


class FeatureGroup(Feature):
    """Several features side by side; columns are theirs, concatenated in order."""

    def __init__(self, features: Sequence[Feature]) -> None:
        self.features = list(features)
        self.columns = tuple(col for f in self.features for col in f.columns)
        duplicates = sorted({col for col in self.columns if self.columns.count(col) > 1})
        if duplicates:
            raise ConfigError(f"feature set has duplicate columns {duplicates}")
        self._kernels = [f for f in self.features if isinstance(f, KernelIndicator)]
        self._others = [f for f in self.features if not isinstance(f, KernelIndicator)]

    def update(self, ts: int, open: float, high: float, low: float, close: float, volume: float) -> None:
        for feature in self.features:
            feature.update(ts, open, high, low, close, volume)

    @property
    def values(self) -> tuple[float, ...]:
        return tuple(x for f in self.features for x in f.values)

    @property
    def ready(self) -> bool:
        return all(f.ready for f in self.features)

    def reset(self) -> None:
        for feature in self.features:
            feature.reset()

    def batch(self, frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.batch_array(frame), columns=list(self.columns), index=frame.index, copy=False)

    def batch_array(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """All columns as one column-major ``(len(frame), len(columns))`` float64 array."""
        out = np.full((len(frame), len(self.columns)), np.nan, order="F")
        arrays = [np.ascontiguousarray(frame[col].to_numpy(dtype=np.float64)) for col in _OHLCV]
        start = 0
        for feature in self.features:
            stop = start + len(feature.columns)
            if isinstance(feature, KernelIndicator):
                feature.batch_into(arrays, out[:, start:stop])
            elif isinstance(feature, RegimeFeature | HigherTimeframe):
                feature.batch_into(frame, out[:, start:stop])
            elif isinstance(feature, ScaleFreeView) and feature.sources == self.features[: len(feature.sources)]:
                feature.batch_into(out[:, :start], arrays[3], out[:, start:stop])
            else:
                out[:, start:stop] = feature.batch(frame).to_numpy(dtype=np.float64)
            start = stop
        return out


_OHLCV = ("open", "high", "low", "close", "volume")


def _bar_features(
    indicators: Sequence[str],
    derived: Sequence[str],
    regime: RegimeConfig | None,
    smc: SMCConfig | None,
    scale_free: bool = False,
) -> list[Feature]:
    features: list[Feature] = [make_indicator(spec) for spec in indicators]
    features += [make_derived(spec) for spec in derived]
    if regime is not None:
        features.append(RegimeFeature(regime))
    if smc is not None:
        features.append(SMCFeatures(smc))
    view = ScaleFreeView(features) if scale_free else None
    return [*features, view] if view is not None and view.columns else features


def _warmup(feature: Feature, base_bars: int = 1) -> int:
    """Candles (of the feature's own timeframe) before its outputs are all defined, best estimate."""
    if isinstance(feature, HigherTimeframe):
        return (_warmup(feature.inner) + 1) * feature.bars_per_bucket
    if isinstance(feature, FeatureGroup):
        return max((_warmup(f) for f in feature.features), default=0)
    if isinstance(feature, SMCFeatures):
        return 2 * feature.config.swing_length + 1
    if isinstance(feature, ScaleFreeView):
        return max((_warmup(f) for f in feature.sources), default=0)
    return int(getattr(feature, "warmup", base_bars))


class FeaturePipeline:
    """A ``FeatureSet`` (or its name in ``FEATURE_SETS``) built for one base timeframe."""

    def __init__(self, feature_set: FeatureSet | str = "default", timeframe: Timeframe | str = Timeframe.H1) -> None:
        if isinstance(feature_set, str):
            from smartmarket.features.sets import get_feature_set  # sets imports this module

            feature_set = get_feature_set(feature_set)
        self.feature_set = feature_set
        self.timeframe = Timeframe.parse(timeframe)
        fs = feature_set
        features = _bar_features(fs.indicators, fs.derived, fs.regime, fs.smc, fs.scale_free)
        for spec in fs.multi_timeframe:
            inner = FeatureGroup(_bar_features(spec.indicators, spec.derived, spec.regime, None, fs.scale_free))
            features.append(
                HigherTimeframe(self.timeframe, spec.resolve(self.timeframe), inner, spec.column_prefix(self.timeframe))
            )
        self.group = FeatureGroup(features)
        self.columns: tuple[str, ...] = self.group.columns
        self._last_ts: int | None = None

    def __repr__(self) -> str:
        return f"FeaturePipeline({self.feature_set.name!r}, {self.timeframe}, {len(self.columns)} columns)"

    @property
    def warmup_bars(self) -> int:
        """Base candles before every column is defined (recursive averages keep converging after that)."""
        return _warmup(self.group)

    def update(self, ts: int, open: float, high: float, low: float, close: float, volume: float) -> tuple[float, ...]:
        """Consume one closed candle; return the feature values (``columns`` order) for it."""
        ts = int(ts)
        if self._last_ts is not None and ts <= self._last_ts:
            raise ValidationError(
                f"candle ts {ts} does not follow {self._last_ts}", where="FeaturePipeline.update",
                hint="feed candles in increasing time order, each once",
            )  # fmt: skip
        self._last_ts = ts
        o, h, lo, c, v = float(open), float(high), float(low), float(close), float(volume)
        for feature in self.group.features:
            feature.update(ts, o, h, lo, c, v)
        return self.group.values

    @property
    def values(self) -> tuple[float, ...]:
        return self.group.values

    @property
    def ready(self) -> bool:
        return self.group.ready

    def reset(self) -> None:
        self.group.reset()
        self._last_ts = None

    def batch(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``ts`` then one column per feature, for every row of a candle frame (ascending, unique ``ts``)."""
        ts = frame["ts"].to_numpy(dtype=np.int64)
        if len(ts) > 1 and not bool(np.all(ts[1:] > ts[:-1])):
            raise ValidationError("candle ts must increase strictly", where="FeaturePipeline.batch")
        self.reset()
        out = pd.DataFrame(self.group.batch_array(frame), columns=list(self.columns), copy=False)
        out.insert(0, "ts", ts)
        self.reset()
        return out

    def stream(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Reference streaming form: reset, ``update`` row by row; same shape as ``batch``."""
        self.reset()
        values = np.full((len(frame), len(self.columns)), np.nan)
        arrays = [frame[col].to_numpy().tolist() for col in ("ts", *_OHLCV)]
        for i, row in enumerate(zip(*arrays, strict=True)):
            values[i] = self.update(*row)
        out = pd.DataFrame(values, columns=list(self.columns))
        out.insert(0, "ts", frame["ts"].to_numpy(dtype=np.int64))
        return out


__all__ = [
    "DERIVED",
    "CandleShape",
    "EmaDistance",
    "FeatureGroup",
    "FeaturePipeline",
    "FeatureSet",
    "LogReturn",
    "OBVZScore",
    "RelativeVolume",
    "VolumeZScore",
    "make_derived",
]
