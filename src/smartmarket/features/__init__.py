"""Features: technical indicators, Smart Money Concepts and market regimes, causal and identical in batch and live.

Start with ``FeaturePipeline("default", "1h")``: ``batch(frame)`` for training frames, ``update(ts, o, h, l, c, v)``
per closed candle in live; the named sets are in ``sets`` (``minimal``, ``default``, ``full``). Models take only
the scale-free columns: ``model_inputs(frame)`` (see ``scale_free``).
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
from smartmarket.features.scale_free import check_model_inputs, is_scale_free, model_input_columns, model_inputs
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
    "check_model_inputs",
    "get_feature_set",
    "is_scale_free",
    "label_regimes",
    "make_derived",
    "model_input_columns",
    "model_inputs",
    "regime_names",
]
