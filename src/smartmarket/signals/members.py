"""Ensemble members: each turns the data up to a closed candle into probabilities over {down, flat, up}.

The contract is the same for every member (``Member``): ``update(candle, row)`` consumes one closed candle and
the feature pipeline's values for it (``row``: column → value) and returns ``(3,)`` raw probabilities
``(P(down), P(flat), P(up))``, or ``None`` while the member warms up. Raw means *not calibrated*: the signal
system calibrates every member on a later slice of data before weighting it. Members are causal by
construction: they only ever see the candles and feature rows handed to ``update``, one at a time.

* ``TechnicalMember`` — trend, momentum and mean-reversion rules over indicator columns → one score in [-1, 1].
* ``SMCMember`` — rules over its own causal Smart Money Concepts state machine: a break of structure (BOS) or
  change of character (CHoCH) in the direction of the higher-timeframe trend, price at an order block or fair
  value gap on the trend's side, and premium/discount.
* ``ModelMember`` — a trained model from the registry (Transformer, CNN-LSTM, logistic, LightGBM): a rolling
  buffer of the last ``context`` feature rows, the model called on it once the window is complete and finite.

A score ``s`` in [-1, 1] becomes ``softmax(-k·s, 0, k·s)`` (``k = SCORE_SHARPNESS``): 1/3 each at ``s = 0``.

``batch(candles, features)`` gives the same ``(N, 3)`` array for a whole frame (NaN rows while warming up). For
the rule members it *is* the streaming code (reset, then ``update`` row by row), so it equals ``update`` bit for
bit. For ``ModelMember`` it is a **research path**: the model predicts all windows at once (``predict_frame``),
which may differ from the per-candle call in the last bits of float32 arithmetic. The signal engine never uses
``batch``; fitting and research evaluation may.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Candle
from smartmarket.features.smc import SMC_COLUMNS, SMCConfig, SMCFeatures
from smartmarket.signals.outcomes import FloatArray

ONNX_CACHE_DIR = ".onnx-cache"  # under the model registry: the networks exported for ONNX Runtime

if TYPE_CHECKING:
    from smartmarket.models.pipeline import TrainedModel

SCORE_SHARPNESS = 2.0
RULE_MEMBERS: tuple[str, ...] = ("technical", "smc")
MODEL_ALIASES: dict[str, str] = {
    "logistic": "logreg",
    "logreg": "logreg",
    "lgbm": "lightgbm",
    "lightgbm": "lightgbm",
    "transformer": "transformer",
    "cnn_lstm": "cnn_lstm",
    "cnnlstm": "cnn_lstm",
}


FeatureRow = Mapping[str, float]


def score_probabilities(score: float, sharpness: float = SCORE_SHARPNESS) -> FloatArray:
    """``softmax(-k·s, 0, k·s)`` for a score ``s`` in [-1, 1]: down, flat, up."""
    s = min(1.0, max(-1.0, float(score)))
    z = np.array([-sharpness * s, 0.0, sharpness * s])
    e = np.exp(z - z.max())
    return np.asarray(e / e.sum(), dtype=np.float64)


def _get(row: FeatureRow, column: str) -> float:
    value = row.get(column, math.nan)
    return float(value) if value is not None else math.nan


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


class Member(ABC):
    """One ensemble member (see the module docstring)."""

    kind: str = "member"

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.kind

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Feature-pipeline columns ``update`` reads from ``row``."""
        return ()

    @property
    def feature_set(self) -> str | None:
        """The feature set this member must see (a model's training set), or None: any set with the columns."""
        return None

    @abstractmethod
    def reset(self) -> None:
        """Forget every candle seen."""

    @abstractmethod
    def update(self, candle: Candle, row: FeatureRow) -> FloatArray | None:
        """Consume one closed candle; ``(3,)`` raw probabilities or None while warming up."""

    def batch(self, candles: pd.DataFrame, features: pd.DataFrame) -> FloatArray:
        """``(N, 3)`` for every row (NaN while warming up): reset, then ``update`` row by row."""
        self.reset()
        out = np.full((len(candles), 3), np.nan)
        columns = [c for c in self.required_columns if c in features.columns]
        values = features[columns].to_numpy(dtype=np.float64) if columns else np.zeros((len(candles), 0))
        rows = zip(*(candles[c].to_numpy().tolist() for c in ("ts", "open", "high", "low", "close", "volume")),
                   strict=True)  # fmt: skip
        for i, raw in enumerate(rows):
            probs = self.update(Candle(*raw), dict(zip(columns, values[i].tolist(), strict=True)))
            if probs is not None:
                out[i] = probs
        self.reset()
        return out

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """What rebuilds this member (``make_member(spec)``): kind, name, parameters or model id."""


# -------------------------------------------------------------------------------------------- technical


class TechnicalMember(Member):
    """Trend, momentum and mean reversion over indicator columns (present in the ``minimal`` and ``default`` sets).

    * trend = ``tanh(emadist_50 / 2)`` (distance to the EMA-50 in ATRs), confirmed by the DI spread's sign,
      counted in proportion to the trend strength ``w = clip((ADX − 15) / 20, 0, 1)``;
    * momentum = ``tanh(logret_5 / (√5 · ATR / close))`` (5-bar return in units of bar range);
    * mean reversion, counted in proportion to ``1 − w`` (ranging markets): ``(50 − RSI) / 50`` and
      ``1 − 2·%b`` (Bollinger position), averaged.

    Score = ``w·(0.6 trend + 0.4 momentum) + (1 − w)·mean reversion``.
    """

    kind = "technical"
    COLUMNS: tuple[str, ...] = (
        "rsi_14", "adx_14", "plus_di_14", "minus_di_14", "bb_pctb_20_2", "logret_5", "emadist_50", "atr_14",
    )  # fmt: skip

    @property
    def required_columns(self) -> tuple[str, ...]:
        return self.COLUMNS

    def reset(self) -> None:
        """Stateless: nothing to forget."""

    def score(self, close: float, row: FeatureRow) -> float | None:
        rsi, adx, pdi, mdi, pctb, ret5, dist, atr = (_get(row, c) for c in self.COLUMNS)
        if not (_finite(rsi, adx, pdi, mdi, pctb, ret5, dist, atr, close) and atr > 0 and close > 0):
            return None
        strength = min(1.0, max(0.0, (adx - 15.0) / 20.0))
        trend = math.tanh(dist / 2.0)
        if (pdi - mdi) * trend < 0:  # the directional indicators disagree with the EMA: halve the trend
            trend *= 0.5
        momentum = math.tanh(ret5 / (math.sqrt(5.0) * atr / close))
        reversion = 0.5 * ((50.0 - rsi) / 50.0 + (1.0 - 2.0 * min(1.5, max(-0.5, pctb))))
        return strength * (0.6 * trend + 0.4 * momentum) + (1.0 - strength) * reversion

    def update(self, candle: Candle, row: FeatureRow) -> FloatArray | None:
        s = self.score(candle.close, row)
        return None if s is None else score_probabilities(s)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name}


# ------------------------------------------------------------------------------------------------ SMC

_I = {name: i for i, name in enumerate(SMC_COLUMNS)}


class SMCMember(Member):
    """Rules over a causal SMC state machine (its own ``SMCFeatures``) and a higher-timeframe trend proxy.

    * higher-timeframe trend ``h`` = sign of (close − EMA over ``htf_bars`` candles): the EMA-50 of a timeframe
      4× longer, approximately; 0 until ``htf_bars`` candles were seen;
    * impulse: a BOS sets it to ±1, a CHoCH to ±0.6, then it decays by ``decay`` per candle; it counts fully
      when it agrees with ``h`` (or ``h = 0``) and half when against;
    * zone: price within ``zone_atr`` ATRs of an active bullish order block or open bullish fair value gap below
      (support) scores +1 when the structure trend is up; the bearish mirror scores −1;
    * premium/discount: in an up-trend a discount (``< 0.5``) favours longs, in a down-trend a premium shorts.

    Score = ``0.5·impulse + 0.3·zone + 0.2·premium/discount``.
    """

    kind = "smc"

    def __init__(
        self, name: str | None = None, *, swing_length: int = 5, htf_bars: int = 200, decay: float = 0.9,
        zone_atr: float = 0.5,
    ) -> None:  # fmt: skip
        super().__init__(name)
        if htf_bars < 2 or not 0 < decay < 1 or zone_atr < 0:
            raise ConfigError("smc member needs htf_bars ≥ 2, 0 < decay < 1 and zone_atr ≥ 0")
        self.swing_length = int(swing_length)
        self.htf_bars = int(htf_bars)
        self.decay = float(decay)
        self.zone_atr = float(zone_atr)
        self.smc = SMCFeatures(SMCConfig(swing_length=self.swing_length))
        self.reset()

    @property
    def required_columns(self) -> tuple[str, ...]:
        return ("atr_14",)

    def reset(self) -> None:
        self.smc.reset()
        self._ema = math.nan
        self._seen = 0
        self._impulse = 0.0

    def _update_htf(self, close: float) -> float:
        self._seen += 1
        alpha = 2.0 / (self.htf_bars + 1.0)
        self._ema = close if self._seen == 1 else self._ema + alpha * (close - self._ema)
        if self._seen < self.htf_bars:
            return 0.0
        return 1.0 if close > self._ema else -1.0 if close < self._ema else 0.0

    def update(self, candle: Candle, row: FeatureRow) -> FloatArray | None:
        ts, o, h, lo, c, v = candle
        if not _finite(o, h, lo, c):
            return None
        self.smc.update(ts, o, h, lo, c, v)
        self.smc.events.clear()  # only the numeric columns are read; keep memory flat in long runs
        htf = self._update_htf(c)
        values = self.smc.values
        self._impulse *= self.decay
        bos, choch = values[_I["smc_bos"]], values[_I["smc_choch"]]
        if bos != 0:
            self._impulse = math.copysign(1.0, bos)
        elif choch != 0:
            self._impulse = math.copysign(0.6, choch)
        atr = _get(row, "atr_14")
        if not self.smc.ready or not _finite(atr) or atr <= 0:
            return None
        impulse = self._impulse * (0.5 if htf * self._impulse < 0 else 1.0)
        trend = values[_I["smc_trend"]]
        reach = self.zone_atr * atr / c
        zone = 0.0
        if trend > 0 and self._near_below(values, ("smc_dist_ob_bull", "smc_dist_fvg_bull"), reach):
            zone = 1.0
        elif trend < 0 and self._near_above(values, ("smc_dist_ob_bear", "smc_dist_fvg_bear"), reach):
            zone = -1.0
        pd_value = values[_I["smc_premium_discount"]]
        premium = 0.0
        if math.isfinite(pd_value) and trend != 0:
            premium = (0.5 - pd_value) * 2.0 if trend > 0 else -(pd_value - 0.5) * 2.0
            premium = max(0.0, premium) if trend > 0 else min(0.0, premium)
        return score_probabilities(0.5 * impulse + 0.3 * zone + 0.2 * premium)

    @staticmethod
    def _near_below(values: Sequence[float], columns: Sequence[str], reach: float) -> bool:
        """A zone at or below the close within ``reach`` (distances are negative below, 0 inside)."""
        return any(math.isfinite(d) and -reach <= d <= 0 for d in (values[_I[c]] for c in columns))

    @staticmethod
    def _near_above(values: Sequence[float], columns: Sequence[str], reach: float) -> bool:
        return any(math.isfinite(d) and 0 <= d <= reach for d in (values[_I[c]] for c in columns))

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "name": self.name, "swing_length": self.swing_length, "htf_bars": self.htf_bars,
            "decay": self.decay, "zone_atr": self.zone_atr,
        }  # fmt: skip


# ---------------------------------------------------------------------------------------------- models


class ModelMember(Member):
    """A trained model (any registry kind) called on a rolling buffer of its last ``context`` feature rows."""

    kind = "model"

    def __init__(
        self, model: TrainedModel, name: str | None = None, *, runtime: str = "torch", cache_dir: Path | None = None
    ) -> None:
        super().__init__(name or model.kind)
        self.model = model
        self.columns = tuple(model.feature_columns)
        self.context = int(model.context)
        self.runtime = "torch"
        self._live: Any = model.classifier  # runs ``update``; the research ``batch`` path keeps torch
        if runtime != "torch":
            self.use_runtime(runtime, cache_dir)
        # a ring of the last ``context`` rows, written twice (at i and i + context): the window is always the
        # contiguous view ``[pos, pos + context)``, so no candle re-stacks the 1024 rows (same values, no copy)
        self._ring = np.empty((2 * self.context, len(self.columns)), dtype=np.float32)
        self._pos = 0  # where the next row goes (and, once full, where the oldest row is)
        self._count = 0  # rows held, up to ``context``
        self._bad = 0  # non-finite rows in the buffer (the window is usable only when 0)

    def use_runtime(self, runtime: str, cache_dir: Path | None = None) -> str:
        """Run the live ``update`` on ``runtime`` (``torch``, ``onnx``, ``auto``); returns the one in use."""
        from smartmarket.models.runtime import OnnxClassifier, runtime_classifier  # onnxruntime: only when asked

        self._live = runtime_classifier(self.model, runtime, cache_dir)  # type: ignore[arg-type]
        self.runtime = "onnx" if isinstance(self._live, OnnxClassifier) else "torch"
        return self.runtime

    @property
    def model_id(self) -> str | None:
        return self.model.model_id

    @property
    def required_columns(self) -> tuple[str, ...]:
        return self.columns

    @property
    def feature_set(self) -> str | None:
        return self.model.feature_set or None

    def reset(self) -> None:
        self._pos = self._count = 0
        self._bad = 0

    def update(self, candle: Candle, row: FeatureRow) -> FloatArray | None:
        values = np.array([_get(row, c) for c in self.columns], dtype=np.float32)
        pos, context = self._pos, self.context
        if self._count == context and not np.isfinite(self._ring[pos]).all():
            self._bad -= 1  # the oldest row, about to be overwritten
        self._ring[pos] = values
        self._ring[pos + context] = values
        self._pos = (pos + 1) % context
        self._count = min(self._count + 1, context)
        if not np.isfinite(values).all():
            self._bad += 1
        if self._count < context or self._bad:
            return None
        window = self._ring[self._pos : self._pos + context][None, :, :]
        return np.asarray(self._live.predict_proba(window)[0], dtype=np.float64)

    def batch(self, candles: pd.DataFrame, features: pd.DataFrame) -> FloatArray:
        """Research path: all complete windows at once (``TrainedModel.predict_frame``); see the module doc."""
        return np.asarray(self.model.predict_frame(features).to_numpy(dtype=np.float64))

    def training_end_ts(self) -> int | None:
        """Last candle ts the model learned from (training or early-stopping validation), if recorded."""
        split = self.model.split or {}
        ends = [p[1] for p in (split.get("train_ts"), split.get("validation_ts")) if p and p[1] is not None]
        return int(max(ends)) if ends else None

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "model_id": self.model_id, "model_kind": self.model.kind}


# --------------------------------------------------------------------------------------------- factory


def make_member(
    spec: str | Mapping[str, Any],
    *,
    registry_dir: str | Path | None = None,
    symbol: str = "",
    timeframe: str = "",
    runtime: str = "torch",
) -> Member:
    """A member from a name (``technical``, ``smc``, or a model kind: the production model of that kind for
    ``symbol``/``timeframe`` in the registry, else the latest candidate) or from a ``spec()`` dict (models by id)."""
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name == "technical":
            return TechnicalMember()
        if name == "smc":
            return SMCMember()
        kind = MODEL_ALIASES.get(name)
        if kind is None:
            known = ", ".join([*RULE_MEMBERS, *sorted(MODEL_ALIASES)])
            raise ConfigError(f"unknown signal member {spec!r}", hint=f"use one of: {known}")
        from smartmarket.models.registry import Registry  # torch: import only when a model member is asked for

        registry = Registry(registry_dir)
        record = registry.resolve(symbol, timeframe, kind)
        model = registry.load(record.model_id)
        cache = registry.directory / ONNX_CACHE_DIR
        return ModelMember(model, name=name if name != kind else kind, runtime=runtime, cache_dir=cache)
    data = dict(spec)
    kind = data.pop("kind", None)
    if kind == "technical":
        return TechnicalMember(data.get("name"))
    if kind == "smc":
        return SMCMember(**data)
    if kind == "model":
        from smartmarket.models.registry import Registry

        registry = Registry(registry_dir)
        model = registry.load(str(data["model_id"]))
        cache = registry.directory / ONNX_CACHE_DIR
        return ModelMember(model, name=data.get("name"), runtime=runtime, cache_dir=cache)
    raise ConfigError(f"cannot build a signal member from {spec!r}")


def parse_members(text: str) -> tuple[str, ...]:
    """``"technical, smc,cnn_lstm"`` → ``("technical", "smc", "cnn_lstm")`` (order kept, no duplicates)."""
    names: list[str] = []
    for part in text.split(","):
        name = part.strip().lower()
        if name and name not in names:
            names.append(name)
    if not names:
        raise ConfigError("no signal member given", hint="e.g. --members technical,smc")
    return tuple(names)


__all__ = [
    "MODEL_ALIASES",
    "RULE_MEMBERS",
    "SCORE_SHARPNESS",
    "FeatureRow",
    "Member",
    "ModelMember",
    "SMCMember",
    "TechnicalMember",
    "make_member",
    "parse_members",
    "score_probabilities",
]
