"""Scale-free model inputs: which feature columns may reach a model, and companions for those that may not.

A model must see the same inputs whatever the price level and unit: multiplying every price by 10 and every
volume by 7 must change no model input. Returns, ratios, oscillators, z-scores, ranks and distances in ATR units
are scale-free; price levels (moving averages, VWAP, bands, SMC levels), price differences (ATR, MACD, momentum
in price units), cumulative OBV and raw or ``log1p`` volume are not. Those stay in the feature frame for display
and rules, and each feature set adds row-local companions (``ScaleFreeView``):

* a price level ``L`` → ``<L>_dist`` = close / L − 1;
* a price difference ``x`` → ``<x>_pct`` = x / close.

Window-based replacements (OBV z-score, relative volume) are derived features (``obvz_<n>``, ``vrel_<n>``).

``model_input_columns(columns)`` is the one selection of model inputs; ``check_model_inputs`` refuses a
non-scale-free column at training time. Names may carry a multi-timeframe prefix (``htf_sma_20``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from smartmarket.core.errors import ConfigError
from smartmarket.features.base import Feature

_PREFIX = r"^(?:[a-z0-9]+_)?"  # a multi-timeframe prefix (``htf_``, ``tf4h_``) at most
LEVEL_PATTERNS: tuple[str, ...] = (
    r"(?:sma|ema|wma|vwap)_\d+",
    r"bb_(?:upper|middle|lower)_\d+_[\d.]+",
    r"donchian_(?:upper|lower|mid)_\d+",
    r"keltner_(?:upper|middle|lower)_\d+_[\d.]+",
    r"smc_(?:swing_high|swing_low|range_high|range_low|liq_high|liq_low|ob_(?:bull|bear)_(?:top|bottom))",
    r"(?:open|high|low|close)",
)
"""Price-level columns (companion ``<col>_dist``)."""
DIFFERENCE_PATTERNS: tuple[str, ...] = (r"atr_\d+", r"mom_\d+", r"macd(?:_signal|_hist)?_\d+_\d+_\d+")
"""Price-difference columns (companion ``<col>_pct``)."""
VOLUME_PATTERNS: tuple[str, ...] = (r"obv", r"volume", r"volz_\d+")
"""Volume-unit columns (no row-local companion: ``obvz_<n>`` and ``vrel_<n>`` replace them)."""

_LEVEL = re.compile(_PREFIX + "(?:" + "|".join(LEVEL_PATTERNS) + ")$")
_DIFFERENCE = re.compile(_PREFIX + "(?:" + "|".join(DIFFERENCE_PATTERNS) + ")$")
_VOLUME = re.compile(_PREFIX + "(?:" + "|".join(VOLUME_PATTERNS) + ")$")


def column_scale(column: str) -> str:
    """``"level"``, ``"difference"``, ``"volume"`` (the column depends on price or volume units) or ``"free"``."""
    name = column.strip().lower()
    if _LEVEL.match(name):
        return "level"
    if _DIFFERENCE.match(name):
        return "difference"
    if _VOLUME.match(name):
        return "volume"
    return "free"


def is_scale_free(column: str) -> bool:
    return column_scale(column) == "free"


def model_input_columns(columns: Sequence[str]) -> tuple[str, ...]:
    """The columns a model may take, in order: every scale-free one (``ts`` left out)."""
    return tuple(c for c in columns if c != "ts" and is_scale_free(c))


def model_inputs(features: pd.DataFrame) -> pd.DataFrame:
    """``features`` restricted to ``ts`` (when present) and ``model_input_columns``."""
    keep = (["ts"] if "ts" in features.columns else []) + list(model_input_columns([str(c) for c in features]))
    return features[keep]


def check_model_inputs(columns: Sequence[str], where: str = "training") -> None:
    """``ConfigError`` naming every column that depends on the price level or unit."""
    bad = [c for c in columns if c != "ts" and not is_scale_free(c)]
    if bad:
        raise ConfigError(
            f"model inputs depend on the price level or unit: {', '.join(bad)}", where=where,
            hint="select inputs with smartmarket.features.scale_free.model_inputs (use the *_dist/*_pct companions)",
        )  # fmt: skip


class ScaleFreeView(Feature):
    """Row-local companions of the price-level and price-difference columns of ``sources`` (see the module doc).

    Built after its sources and updated after them: ``values`` reads their current values and the last close.
    """

    def __init__(self, sources: Sequence[Feature]) -> None:
        self.sources = list(sources)
        picks: list[tuple[int, int, bool]] = []  # (source, index in its values, is level)
        columns: list[str] = []
        for s, feature in enumerate(self.sources):
            for j, col in enumerate(feature.columns):
                scale = column_scale(col)
                if scale in ("level", "difference"):
                    picks.append((s, j, scale == "level"))
                    columns.append(f"{col}_dist" if scale == "level" else f"{col}_pct")
        self._picks = picks
        self._used = sorted({s for s, _, _ in picks})
        self.columns = tuple(columns)
        offsets = np.cumsum([0, *(len(f.columns) for f in self.sources)])
        self.source_indices = tuple(int(offsets[s]) + j for s, j, _ in picks)
        """Column indices of the picked columns in the sources' concatenated columns."""
        self._level = np.array([lv for _, _, lv in picks], dtype=bool)
        self._close = math.nan

    def update(self, ts: int, open: float, high: float, low: float, close: float, volume: float) -> None:
        self._close = float(close)

    @property
    def values(self) -> tuple[float, ...]:
        c = self._close
        current = {s: self.sources[s].values for s in self._used}  # one read per source with a picked column
        return tuple(
            _level(c, current[s][j]) if level else _difference(c, current[s][j]) for s, j, level in self._picks
        )

    @property
    def ready(self) -> bool:
        return all(f.ready for f in self.sources)

    def reset(self) -> None:
        self._close = math.nan

    def batch_into(self, sources: npt.NDArray[np.float64], close: npt.NDArray[np.float64], out: np.ndarray) -> None:
        """Companions from the sources' columns ``(T, n_source_columns)`` and the closes, into ``out``."""
        x = sources[:, list(self.source_indices)]
        c = close[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            level = np.where((x > 0) & np.isfinite(x) & np.isfinite(c), c / x - 1.0, np.nan)
            diff = np.where((c > 0) & np.isfinite(x) & np.isfinite(c), x / c, np.nan)
        out[:] = np.where(self._level[None, :], level, diff)

    def batch(self, frame: pd.DataFrame) -> pd.DataFrame:
        from smartmarket.features.pipeline import FeatureGroup  # pipeline imports this module

        sources = FeatureGroup(self.sources).batch_array(frame)
        out = np.full((len(frame), len(self.columns)), np.nan)
        self.batch_into(sources, frame["close"].to_numpy(dtype=np.float64), out)
        return pd.DataFrame(out, columns=list(self.columns), index=frame.index)


def _level(c: float, x: float) -> float:
    return c / x - 1.0 if x > 0 and math.isfinite(x) and math.isfinite(c) else math.nan


def _difference(c: float, x: float) -> float:
    return x / c if c > 0 and math.isfinite(x) and math.isfinite(c) else math.nan


__all__ = [
    "DIFFERENCE_PATTERNS",
    "LEVEL_PATTERNS",
    "VOLUME_PATTERNS",
    "ScaleFreeView",
    "check_model_inputs",
    "column_scale",
    "is_scale_free",
    "model_input_columns",
    "model_inputs",
]
