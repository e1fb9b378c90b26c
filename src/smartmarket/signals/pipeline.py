"""From candles to what the signal system learns from: outcomes (online and batch) and member samples.

Outcomes are triple-barrier outcomes (``smartmarket.models.labels``): a decision at bar ``t`` is a *hit* for a
long when the upper barrier (``close_t + take_profit · scale_t``) is touched first, for a short when the lower
one is. ``BarrierTracker`` resolves them one candle at a time, as live would: an outcome becomes known at the
close of its touch bar (or of bar ``t + horizon``, the time barrier), and the engine uses it from the next
decision on (``outcomes.OutcomeQueue``). ``label_outcomes`` is the batch form over a frame (it leaves the last
``horizon`` bars unlabelled, as ``make_labels`` does).

A non-flat signal is **false** when its trade would have lost: the stop barrier was touched first, both barriers
were touched inside one bar (the intrabar order is unknown: counted as a stop), or the time barrier ended it with
a return in the signal's direction at or below the round-trip fee (``2 · fee``).

``research_samples`` is the **research (batch) path**: every member predicts a whole frame at once
(``Member.batch``; for model members that is ``predict_frame``, not the per-candle call). Use it to fit and to
evaluate; the signal engine never uses it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Candle
from smartmarket.features.pipeline import FeaturePipeline
from smartmarket.features.regimes import regime_names
from smartmarket.models.labels import (
    DOWN,
    EXIT_DOWN,
    EXIT_TIE,
    EXIT_TIME,
    EXIT_UP,
    FLAT,
    UP,
    LabelConfig,
    make_labels,
)
from smartmarket.signals.members import Member
from smartmarket.signals.outcomes import FloatArray, IntArray, SignalSamples

ExitKind = Literal["up", "down", "tie", "time"]
EXIT_NAMES: dict[int, ExitKind] = {EXIT_UP: "up", EXIT_DOWN: "down", EXIT_TIE: "tie", EXIT_TIME: "time"}


def is_false_signal(sign: int, exit: str, ret: float, fee: float) -> bool:
    """Whether a non-flat signal (``sign`` ±1) was false (see the module docstring); flat signals never are."""
    if sign == 0:
        return False
    if exit == "tie":
        return True
    if exit in ("up", "down"):
        return (exit == "down") == (sign > 0)
    return sign * ret <= 2.0 * fee


@dataclass(frozen=True)
class Outcome:
    """A resolved decision: bars are the engine's candle counter, ``t1`` the bar where it became known."""

    bar: int
    ts: int
    t1: int
    t1_ts: int
    label: int  # DOWN / FLAT / UP
    exit: ExitKind
    ret: float  # close[t1] / close[bar] - 1


@dataclass
class _Pending:
    bar: int
    ts: int
    close: float
    upper: float
    lower: float
    payload: Any


class BarrierTracker:
    """Online triple-barrier outcomes, the same rules as ``models.labels.triple_barrier_labels`` (ATR scale).

    Per candle: ``update(candle, bar)`` first resolves the decisions of *earlier* bars against this candle, then
    takes the candle into the scale; ``add(bar, candle, payload)`` opens a decision at this candle's close.
    """

    def __init__(self, config: LabelConfig | None = None) -> None:
        self.config = config or LabelConfig()
        if self.config.method != "triple_barrier" or self.config.scale != "atr":
            raise ValueError("BarrierTracker follows triple-barrier labels with the ATR scale only")
        self._ranges: deque[float] = deque(maxlen=self.config.scale_window)
        self._prev_close = math.nan
        self._pending: deque[_Pending] = deque()

    @property
    def scale(self) -> float:
        """Mean true range of the last ``scale_window`` candles (NaN until that many)."""
        if len(self._ranges) < self.config.scale_window:
            return math.nan
        return math.fsum(self._ranges) / len(self._ranges)

    def update(self, candle: Candle, bar: int) -> list[tuple[Outcome, Any]]:
        """Resolve pending decisions with this candle; returns ``(outcome, payload)`` in opening order."""
        cfg = self.config
        _, _, high, low, close, _ = candle
        done: list[tuple[Outcome, Any]] = []
        finite = math.isfinite(high) and math.isfinite(low) and math.isfinite(close)
        keep: deque[_Pending] = deque()
        for p in self._pending:
            if not finite:  # a non-finite bar inside the window: no label (as in batch)
                continue
            hit_up, hit_down = high >= p.upper, low <= p.lower
            label: int | None = None
            exit_kind: ExitKind = "time"
            if hit_up and hit_down:
                label, exit_kind = (DOWN if cfg.tie == "down" else FLAT), "tie"
            elif hit_up:
                label, exit_kind = UP, "up"
            elif hit_down:
                label, exit_kind = DOWN, "down"
            elif bar - p.bar >= cfg.horizon:
                ret = close / p.close - 1.0
                label = FLAT
                if cfg.time_barrier == "sign":
                    label = UP if ret > cfg.min_return else DOWN if ret < -cfg.min_return else FLAT
            if label is None:
                keep.append(p)
                continue
            outcome = Outcome(p.bar, p.ts, bar, int(candle.ts), label, exit_kind, close / p.close - 1.0)
            done.append((outcome, p.payload))
        self._pending = keep
        tr = high - low if not math.isfinite(self._prev_close) else max(
            high - low, abs(high - self._prev_close), abs(low - self._prev_close)
        )  # fmt: skip
        self._ranges.append(tr)
        if not math.isfinite(tr):
            self._ranges.clear()  # as a rolling mean with a NaN inside: undefined until the window refills
        self._prev_close = close
        return done

    def add(self, bar: int, candle: Candle, payload: Any) -> bool:
        """Open a decision at this candle's close; False (nothing opened) while the scale is undefined."""
        s, close = self.scale, candle.close
        if not (math.isfinite(s) and s > 0 and math.isfinite(close)):
            return False
        cfg = self.config
        upper, lower = close + cfg.take_profit * s, close - cfg.stop_loss * s
        self._pending.append(_Pending(bar, int(candle.ts), close, upper, lower, payload))
        return True

    def __len__(self) -> int:
        return len(self._pending)


@dataclass(frozen=True)
class OutcomeArrays:
    """Batch outcomes per bar of a frame: class ``y`` (NaN unknown), ``t1`` (-1 unknown), exit name, return."""

    y: FloatArray
    t1: IntArray
    exit: np.ndarray
    ret: FloatArray


def label_outcomes(candles: pd.DataFrame, config: LabelConfig) -> OutcomeArrays:
    """``make_labels`` plus the exit kind and the return to the exit bar's close, for every bar."""
    labels = make_labels(candles, config)
    close = candles["close"].to_numpy(np.float64)
    exit_names = np.array([EXIT_NAMES.get(int(e), "") for e in labels.exit], dtype=object)
    ret = np.full(len(close), np.nan)
    known = labels.t1 >= 0
    ret[known] = close[labels.t1[known]] / close[known] - 1.0
    return OutcomeArrays(labels.y, labels.t1.astype(np.int64), exit_names, ret)


def false_signal_mask(sign: IntArray, outcomes: OutcomeArrays, rows: IntArray, fee: float) -> np.ndarray:
    """For each ``rows[i]`` with signal ``sign[i]``: whether it was a false signal (unknown outcomes: False)."""
    return np.array(
        [
            bool(outcomes.t1[r] >= 0) and is_false_signal(int(s), str(outcomes.exit[r]), float(outcomes.ret[r]), fee)
            for s, r in zip(sign, rows, strict=True)
        ],
        dtype=bool,
    )


def choose_feature_set(members: Sequence[Member], requested: str | None = None) -> str:
    """The feature set the members need: a model's training set, else ``requested`` or ``minimal``."""
    needed = {m.feature_set for m in members if m.feature_set}
    if len(needed) > 1:
        raise ConfigError(
            f"members were trained on different feature sets: {sorted(needed)}",
            hint="use models trained on one feature set (train --feature-set NAME)",
        )
    if needed:
        chosen = needed.pop()
        if requested is not None and requested != chosen:
            raise ConfigError(
                f"model members need feature set {chosen!r}, not {requested!r}", hint=f"pass --feature-set {chosen}"
            )
        return chosen
    return requested or "minimal"


def check_columns(members: Sequence[Member], pipeline: FeaturePipeline) -> None:
    have = set(pipeline.columns)
    for member in members:
        missing = [c for c in member.required_columns if c not in have]
        if missing:
            raise ConfigError(
                f"member {member.name!r} needs columns {missing} missing from {pipeline!r}", hint=_fix(missing)
            )


def _fix(missing: Sequence[str]) -> str:
    if any(c.startswith("xs_") for c in missing):
        # Cross-sectional ranks need every symbol's candle at the same timestamp; signals compute one symbol at a time.
        return "it was trained with --cross-section ranks, which signals and live runs do not compute: train without"
    return "use a member trained on this feature set, or fit the signals with the set its models were trained on"


def regimes_of(features: pd.DataFrame) -> np.ndarray:
    """Regime names per row (``unknown`` while warming up) from the pipeline's ``regime`` column."""
    if "regime" not in features.columns:
        return np.full(len(features), "all")
    return np.asarray(regime_names(features["regime"].to_numpy(dtype=np.float64))).astype(str)


def regime_name(code: float) -> str:
    """One regime name from a ``regime`` code (NaN: ``unknown``)."""
    return str(regime_names(np.array([code], dtype=np.float64))[0])


@dataclass(frozen=True)
class ResearchData:
    """Aligned batch inputs of one frame: candles, features, raw member probabilities, regimes, outcomes."""

    candles: pd.DataFrame
    features: pd.DataFrame
    members: Mapping[str, FloatArray]
    regimes: np.ndarray
    outcomes: OutcomeArrays

    def ready(self) -> np.ndarray:
        """Bars where every member gave probabilities."""
        ok = np.ones(len(self.candles), dtype=bool)
        for p in self.members.values():
            ok &= np.isfinite(p).all(axis=1)
        return ok

    def samples(
        self, *, coordinate: Literal["bar", "ts"] = "bar", first_bar: int = 0, member_names: Sequence[str] | None = None
    ) -> tuple[SignalSamples, IntArray]:
        """``(samples, their bar positions)`` for every ready bar ≥ ``first_bar``; ``coordinate="ts"`` puts
        candle open times (ms) in ``t``/``t1`` instead of bar positions (for artifacts used on any range)."""
        names = tuple(member_names or self.members)
        ok = np.ones(len(self.candles), dtype=bool)
        for name in names:
            ok &= np.isfinite(self.members[name]).all(axis=1)
        ok[:first_bar] = False
        rows = np.flatnonzero(ok).astype(np.int64)
        t, t1 = rows, self.outcomes.t1[rows]
        ts = self.candles["ts"].to_numpy(np.int64)
        if coordinate == "ts":
            t, t1 = ts[rows], np.where(t1 >= 0, ts[np.maximum(t1, 0)], -1)
        samples = SignalSamples.build(
            t, t1, self.outcomes.y[rows], {n: self.members[n][rows] for n in names}, self.regimes[rows], ts=ts[rows]
        )
        return samples, rows


def research_data(
    candles: pd.DataFrame,
    members: Sequence[Member],
    *,
    timeframe: str,
    label_config: LabelConfig,
    feature_set: str | None = None,
) -> ResearchData:
    """Features, member probabilities (batch: research path), regimes and outcomes of one candle frame."""
    frame = candles.reset_index(drop=True)
    pipeline = FeaturePipeline(choose_feature_set(members, feature_set), timeframe)
    check_columns(members, pipeline)
    features = pipeline.batch(frame)
    probs = {m.name: m.batch(frame, features) for m in members}
    return ResearchData(frame, features, probs, regimes_of(features), label_outcomes(frame, label_config))


__all__ = [
    "EXIT_NAMES",
    "BarrierTracker",
    "ExitKind",
    "Outcome",
    "OutcomeArrays",
    "ResearchData",
    "check_columns",
    "choose_feature_set",
    "false_signal_mask",
    "is_false_signal",
    "label_outcomes",
    "regime_name",
    "regimes_of",
    "research_data",
]
