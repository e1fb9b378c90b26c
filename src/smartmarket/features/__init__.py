"""Features: technical indicators, Smart Money Concepts and market regimes, causal and identical in batch and live.

Start with ``FeaturePipeline("default", "1h")``: ``batch(frame)`` for training frames, ``update(ts, o, h, l, c, v)``
per closed candle in live; the named sets are in ``sets`` (``minimal``, ``default``, ``full``).
"""

from smartmarket.features.base import Feature
from smartmarket.features.multitimeframe import HIGHER_TIMEFRAME, HigherTimeframe, MultiTimeframeSpec
from smartmarket.features.pipeline import DERIVED, FeatureGroup, FeaturePipeline, FeatureSet, make_derived
from smartmarket.features.regimes import (
    REGIME_COLUMNS,
    RegimeConfig,
    RegimeFeature,
    RegimeLabel,
    label_regimes,
    regime_names,
)
from smartmarket.features.sets import FEATURE_SETS, get_feature_set

__all__ = [
    "DERIVED",
    "FEATURE_SETS",
    "HIGHER_TIMEFRAME",
    "REGIME_COLUMNS",
    "Feature",
    "FeatureGroup",
    "FeaturePipeline",
    "FeatureSet",
    "HigherTimeframe",
    "MultiTimeframeSpec",
    "RegimeConfig",
    "RegimeFeature",
    "RegimeLabel",
    "get_feature_set",
    "label_regimes",
    "make_derived",
    "regime_names",
]
