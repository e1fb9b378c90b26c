"""Technical indicators: causal, O(1)-per-bar where the maths allows, identical in batch and streaming.

Every indicator is a :class:`~smartmarket.features.base.Feature` whose logic is one numba step function
(see ``_base.py`` for the shared rules: a candle with a NaN/inf field is skipped and yields NaN outputs for
that bar; time gaps are invisible; ``batch`` equals ``stream`` bit for bit). Conventions match TA-Lib where
TA-Lib has the indicator; each family module documents its definitions.

Build one from a spec string with :func:`make_indicator` (``"rsi_14"``, ``"macd_12_26_9"``, ``"bb_20_2"``,
``"rvol_20_8760"`` …: the registry name, then the constructor's arguments separated by ``_``), or many at
once with :class:`IndicatorSet`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from smartmarket.core.errors import ConfigError
from smartmarket.features.base import Feature

from ._base import KernelIndicator, candle_arrays
from .momentum import CCI, MACD, MFI, ROC, RSI, Momentum, Stochastic
from .moving import EMA, SMA, WMA
from .trend import ADX
from .volatility import ATR, BollingerBands, Choppiness, Donchian, Keltner, RealisedVolatility
from .volume import OBV, VWAP

INDICATORS: dict[str, type[KernelIndicator]] = {
    "sma": SMA,
    "ema": EMA,
    "wma": WMA,
    "rsi": RSI,
    "macd": MACD,
    "stoch": Stochastic,
    "cci": CCI,
    "roc": ROC,
    "mom": Momentum,
    "mfi": MFI,
    "atr": ATR,
    "bb": BollingerBands,
    "rvol": RealisedVolatility,
    "chop": Choppiness,
    "donchian": Donchian,
    "keltner": Keltner,
    "adx": ADX,
    "obv": OBV,
    "vwap": VWAP,
}
"""Registry: spec name → indicator class (constructor arguments in spec order)."""

DEFAULT_SPECS: tuple[str, ...] = (
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_9",
    "ema_12",
    "ema_26",
    "ema_50",
    "ema_200",
    "wma_20",
    "rsi_14",
    "macd_12_26_9",
    "bb_20_2",
    "atr_14",
    "adx_14",
    "stoch_14_3_3",
    "cci_20",
    "obv",
    "mfi_14",
    "vwap_20",
    "roc_10",
    "mom_10",
    "rvol_20",
    "chop_14",
    "donchian_20",
    "keltner_20_2",
)
"""The default indicator set (25 indicators, 38 columns)."""


def _number(token: str, spec: str) -> int | float:
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        raise ConfigError(f"indicator spec {spec!r}: parameter {token!r} is not a number") from None


def make_indicator(spec: str) -> KernelIndicator:
    """Build an indicator from ``<name>[_<param>...]``, e.g. ``"rsi_14"``, ``"macd_12_26_9"``, ``"bb_20_2"``."""
    name, *tokens = spec.strip().lower().split("_")
    cls = INDICATORS.get(name)
    if cls is None:
        raise ConfigError(
            f"unknown indicator {name!r} in spec {spec!r}", hint=f"known: {', '.join(sorted(INDICATORS))}"
        )
    args = [_number(t, spec) for t in tokens]
    factory: Callable[..., KernelIndicator] = cls  # each class has its own positional parameters
    try:
        return factory(*args)
    except TypeError:
        raise ConfigError(f"indicator spec {spec!r}: too many parameters for {cls.__name__}") from None


class IndicatorSet(Feature):
    """Several indicators run side by side; columns are theirs, concatenated in order."""

    def __init__(self, indicators: Iterable[str | KernelIndicator] = DEFAULT_SPECS) -> None:
        self.indicators: list[KernelIndicator] = [make_indicator(i) if isinstance(i, str) else i for i in indicators]
        self.columns = tuple(c for ind in self.indicators for c in ind.columns)
        duplicates = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if duplicates:
            raise ConfigError(f"indicator set has duplicate columns {duplicates}")

    def update(self, ts: int, open: float, high: float, low: float, close: float, volume: float) -> None:
        o, h, lo, c, v = float(open), float(high), float(low), float(close), float(volume)
        for ind in self.indicators:
            ind.update(ts, o, h, lo, c, v)

    @property
    def values(self) -> tuple[float, ...]:
        return tuple(x for ind in self.indicators for x in ind.values)

    @property
    def ready(self) -> bool:
        return all(ind.ready for ind in self.indicators)

    def reset(self) -> None:
        for ind in self.indicators:
            ind.reset()

    def batch(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = np.full((len(frame), len(self.columns)), np.nan, order="F")  # one column-major block, no copies
        arrays = candle_arrays(frame)
        start = 0
        for ind in self.indicators:
            stop = start + len(ind.columns)
            ind.batch_into(arrays, out[:, start:stop])
            start = stop
        return pd.DataFrame(out, columns=list(self.columns), index=frame.index, copy=False)


__all__ = [
    "ADX",
    "ATR",
    "CCI",
    "DEFAULT_SPECS",
    "EMA",
    "INDICATORS",
    "MACD",
    "MFI",
    "OBV",
    "ROC",
    "RSI",
    "SMA",
    "VWAP",
    "WMA",
    "BollingerBands",
    "Choppiness",
    "Donchian",
    "IndicatorSet",
    "Keltner",
    "KernelIndicator",
    "Momentum",
    "RealisedVolatility",
    "Stochastic",
    "make_indicator",
]
