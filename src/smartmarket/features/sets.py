"""Named feature sets: ``minimal``, ``default`` and ``full``. A model records the set name it was trained on.

* ``minimal`` — a handful of indicators, log returns and the regime: quick experiments, any timeframe.
* ``default`` — the indicator package's default indicators (``DEFAULT_SPECS``: moving averages, RSI, MACD,
  Bollinger, ATR, ADX, Stochastic, CCI, OBV, MFI, VWAP, ROC, momentum, realised volatility, Choppiness,
  Donchian, Keltner), derived features (log returns over 1/5/20 bars, distance to EMA 20/50/200 in ATR units,
  candle shape, volume z-score, OBV z-score, relative volume), the regime, and the next-higher timeframe
  (``htf_``: RSI, ADX, EMA-50 distance, 5-bar log return and the regime, from closed higher-timeframe bars
  only). No SMC: its pure-Python state machine costs ~60 µs per candle, far above the batch budget of the
  default set (see the benchmark).
* ``full`` — ``default`` plus the Smart Money Concepts columns.

Every set also gives the scale-free companions of its price-level and price-difference columns
(``sma_20_dist`` = close/SMA − 1, ``atr_14_pct`` = ATR/close, …; see ``scale_free``): models take only scale-free
columns (``scale_free.model_input_columns``), the raw ones stay for display and rules.

Sets with a multi-timeframe block need a base timeframe below 1w.
"""

from __future__ import annotations

from dataclasses import replace

from smartmarket.core.errors import ConfigError
from smartmarket.features.indicators import DEFAULT_SPECS
from smartmarket.features.multitimeframe import MultiTimeframeSpec
from smartmarket.features.pipeline import FeatureSet
from smartmarket.features.regimes import RegimeConfig
from smartmarket.features.smc import SMCConfig

DEFAULT_DERIVED: tuple[str, ...] = (
    "logret_1",
    "logret_5",
    "logret_20",
    "emadist_20",
    "emadist_50",
    "emadist_200",
    "shape",
    "volz_20",
    "obvz_20",
    "vrel_20",
)

MINIMAL = FeatureSet(
    name="minimal",
    description="RSI, ATR, ADX, realised volatility, Bollinger; log returns; regime",
    indicators=("rsi_14", "atr_14", "adx_14", "rvol_20", "bb_20_2"),
    derived=("logret_1", "logret_5", "emadist_50"),
    regime=RegimeConfig(),
)

DEFAULT = FeatureSet(
    name="default",
    description="default indicators, derived features, regime, next-higher-timeframe trend and regime",
    indicators=DEFAULT_SPECS,
    derived=DEFAULT_DERIVED,
    regime=RegimeConfig(),
    multi_timeframe=(
        MultiTimeframeSpec(
            timeframe="higher",
            indicators=("rsi_14", "adx_14"),
            derived=("emadist_50", "logret_5"),
            regime=RegimeConfig(),
        ),
    ),
)

FULL = replace(DEFAULT, name="full", description="the default set plus Smart Money Concepts", smc=SMCConfig())

FEATURE_SETS: dict[str, FeatureSet] = {s.name: s for s in (MINIMAL, DEFAULT, FULL)}


def get_feature_set(name: str) -> FeatureSet:
    """The named set; ``ConfigError`` listing the known names otherwise."""
    try:
        return FEATURE_SETS[name.strip().lower()]
    except KeyError:
        raise ConfigError(f"unknown feature set {name!r}", hint=f"use one of: {', '.join(FEATURE_SETS)}") from None


__all__ = ["DEFAULT", "DEFAULT_DERIVED", "FEATURE_SETS", "FULL", "MINIMAL", "get_feature_set"]
