"""Strength classes, the regime filter, the ``Signal`` record, and the fitted signal system that produces it.

Strength: ``strong`` / ``moderate`` / ``weak`` / ``none`` by thresholds on the confidence, chosen on validation
signals (out-of-sample confidences with known hits). The hit probability as a function of confidence,
P(hit | c), is estimated by isotonic regression (non-decreasing); a class's threshold is the *lowest* confidence
where that estimate reaches the class's target hit rate (``targets``, e.g. 0.50 / 0.55 / 0.60), with at least
``min_count`` validation signals at or above it whose hit rate's Wilson lower bound (``z`` standard errors) also
reaches the target (a guard against a lucky top few); no such confidence → ``inf`` (never given). The
target is met at the margin — every signal of a class is expected to hit at least that often — not only on
average over the class (an average lets a 0.53 signal ride on 0.9 ones). Monotone by construction: the estimate is
non-decreasing, so each threshold is searched from the previous one up (``weak ≤ moderate ≤ strong``), and
``classify`` compares with ``≥``: a higher confidence never gets a lower class.

Regime filter: a minimum confidence per regime, the same search with one target (the break-even hit rate) on
each regime's validation signals (``min_count`` of them, else the all-regime threshold; a regime whose signals
never reach the target is blocked: ``inf``). A signal below its regime's minimum, or below the weakest class,
becomes ``flat`` with strength ``none`` and a reason. A flat signal always has strength ``none``.

``SignalSystem`` wires the parts, fitted at a decision bar from samples known then, in three chronological purged
slices (``outcomes.chronological_slices``): member calibration | ensemble | confidence (meta-labelling hold-out
inside) and thresholds. ``walk_forward_signals`` refits it at fixed bars and decides each block of bars with the
model fitted at the block's start: signals for earlier bars never change when samples are appended.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal, Self

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression

from smartmarket.core.types import Direction
from smartmarket.signals.calibration import CalibrationMethod, Calibrator, fit_calibrator
from smartmarket.signals.confidence import (
    ConfidenceModel,
    MetaKind,
    direction_class,
    signal_direction,
)
from smartmarket.signals.ensemble import EnsembleModel, make_ensemble, member_skill, stack_members
from smartmarket.signals.outcomes import (
    FloatArray,
    IntArray,
    SignalSamples,
    chronological_slices,
    fit_blocks,
    known_mask,
)


class Strength(StrEnum):
    NONE = "none"
    WEAK = "weak"
    MODERATE = "moderate"
    STRONG = "strong"


STRENGTH_ORDER: tuple[Strength, ...] = (Strength.NONE, Strength.WEAK, Strength.MODERATE, Strength.STRONG)


@dataclass(frozen=True)
class Signal:
    """One decision: direction, calibrated confidence, strength, regime, the members behind it and why."""

    direction: Direction
    confidence: float  # P(signal right); NaN when the ensemble favoured flat
    strength: Strength
    regime: str
    probabilities: tuple[float, float, float]  # ensemble P(down), P(flat), P(up)
    member_probabilities: Mapping[str, tuple[float, float, float]]
    member_weights: Mapping[str, float]
    reason: str
    bar: int | None = None
    ts: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["direction"], out["strength"] = str(self.direction), str(self.strength)
        out["member_probabilities"] = {k: list(v) for k, v in self.member_probabilities.items()}
        out["member_weights"] = dict(self.member_weights)
        out["probabilities"] = list(self.probabilities)
        return out


# ------------------------------------------------------------------------------------------- thresholds


def _sorted_signals(confidence: npt.ArrayLike, hit: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    c = np.asarray(confidence, dtype=np.float64)
    h = np.asarray(hit, dtype=np.float64)
    keep = np.isfinite(c)
    order = np.argsort(c[keep], kind="stable")
    return c[keep][order], h[keep][order]


def hit_curve(confidence: npt.ArrayLike, hit: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """``(confidence ascending, P(hit | confidence))``: isotonic (non-decreasing) regression of hits on confidence."""
    c, h = _sorted_signals(confidence, hit)
    if c.size == 0:
        return c, h
    return c, np.asarray(IsotonicRegression(y_min=0.0, y_max=1.0).fit_transform(c, h), dtype=np.float64)


def wilson_lower_bound(hits: FloatArray, count: FloatArray, z: float) -> FloatArray:
    """Lower end of the Wilson score interval of ``hits / count`` (``z = 0``: the proportion itself)."""
    n = np.maximum(count, 1.0)
    p = hits / n
    centre = p + z * z / (2 * n)
    margin = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.asarray((centre - margin) / (1 + z * z / n))


def marginal_threshold(
    confidence: npt.ArrayLike,
    hit: npt.ArrayLike,
    target: float,
    *,
    min_count: int = 30,
    z: float = 1.0,
    floor: float = -math.inf,
) -> float:
    """Lowest confidence τ ≥ ``floor`` where (1) the estimated hit probability P(hit | τ) reaches ``target``,
    (2) at least ``min_count`` validation signals are at or above τ and (3) their hit rate's Wilson lower bound
    (``z``) reaches ``target`` too — a guard against a lucky top few; ``inf`` when there is none."""
    c, p = hit_curve(confidence, hit)
    _, h = _sorted_signals(confidence, hit)
    first = np.searchsorted(c, c, side="left")  # first signal at or above each confidence
    above = c.size - first
    hits_above = np.cumsum(h[::-1])[::-1][first] if c.size else h
    ok = (p >= target) & (above >= min_count) & (c >= floor)
    ok &= wilson_lower_bound(hits_above, above.astype(np.float64), z) >= target
    return float(c[ok].min()) if ok.any() else math.inf


@dataclass(frozen=True)
class StrengthThresholds:
    """Confidence thresholds of the classes (``inf``: never given). ``weak ≤ moderate ≤ strong``."""

    weak: float
    moderate: float
    strong: float

    def __post_init__(self) -> None:
        if not self.weak <= self.moderate <= self.strong:
            raise ValueError("strength thresholds must satisfy weak ≤ moderate ≤ strong")

    def classify(self, confidence: float) -> Strength:
        if not math.isfinite(confidence):
            return Strength.NONE
        if confidence >= self.strong:
            return Strength.STRONG
        if confidence >= self.moderate:
            return Strength.MODERATE
        if confidence >= self.weak:
            return Strength.WEAK
        return Strength.NONE

    def threshold(self, strength: Strength) -> float:
        return {Strength.WEAK: self.weak, Strength.MODERATE: self.moderate, Strength.STRONG: self.strong}.get(
            strength, -math.inf
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_strength_thresholds(
    confidence: npt.ArrayLike,
    hit: npt.ArrayLike,
    *,
    targets: tuple[float, float, float] = (0.50, 0.55, 0.60),
    min_count: int = 30,
    z: float = 1.0,
) -> StrengthThresholds:
    """Thresholds for weak / moderate / strong hit-rate ``targets`` on validation signals (module docstring)."""
    if not targets[0] <= targets[1] <= targets[2]:
        raise ValueError("targets must be non-decreasing: weak ≤ moderate ≤ strong")
    found: list[float] = []
    floor = -math.inf
    for target in targets:
        floor = marginal_threshold(confidence, hit, target, min_count=min_count, z=z, floor=floor)
        found.append(floor)
    return StrengthThresholds(*found)


@dataclass(frozen=True)
class RegimeFilter:
    """Minimum confidence per regime; ``default`` for regimes without their own (e.g. too few signals)."""

    min_confidence: Mapping[str, float] = field(default_factory=dict)
    default: float = -math.inf

    def minimum(self, regime: str) -> float:
        return self.min_confidence.get(regime, self.default)

    def allows(self, confidence: float, regime: str) -> bool:
        return math.isfinite(confidence) and confidence >= self.minimum(regime)

    def to_dict(self) -> dict[str, Any]:
        return {"min_confidence": dict(self.min_confidence), "default": self.default}


def fit_regime_filter(
    confidence: npt.ArrayLike,
    hit: npt.ArrayLike,
    regimes: npt.ArrayLike,
    *,
    target: float = 0.45,
    min_count: int = 30,
    z: float = 1.0,
) -> RegimeFilter:
    """Per-regime minimum confidence reaching the break-even hit rate ``target`` (module docstring)."""
    c = np.asarray(confidence, dtype=np.float64)
    h = np.asarray(hit, dtype=np.float64)
    reg = np.asarray(regimes).astype(str)
    default = marginal_threshold(c, h, target, min_count=min_count, z=z)
    mins: dict[str, float] = {}
    for r in np.unique(reg):
        mine = reg == r
        if np.count_nonzero(mine & np.isfinite(c)) >= min_count:
            mins[str(r)] = marginal_threshold(c[mine], h[mine], target, min_count=min_count, z=z)
    return RegimeFilter(mins, default)


def _reason(
    direction: int, confidence: float, probs: FloatArray, regime: str, strength: Strength,
    thresholds: StrengthThresholds, regime_filter: RegimeFilter, agree: int, n_members: int,
) -> str:  # fmt: skip
    side = Direction.from_sign(direction)
    if direction == 0:
        return f"flat: ensemble favours flat (P(flat)={probs[1]:.2f}) in {regime}"
    minimum = regime_filter.minimum(regime)
    if not regime_filter.allows(confidence, regime):
        return f"flat: {side} confidence {confidence:.2f} below the {regime} minimum {minimum:.2f}"
    if strength is Strength.NONE:
        return f"flat: {side} confidence {confidence:.2f} below the weakest class ({thresholds.weak:.2f})"
    return (
        f"{side} {strength}: confidence {confidence:.2f} ≥ {thresholds.threshold(strength):.2f} in {regime}; "
        f"{agree}/{n_members} members agree"
    )


def build_signals(
    ens_probs: npt.ArrayLike,
    confidence: npt.ArrayLike,
    regimes: npt.ArrayLike,
    member_probs: Mapping[str, npt.ArrayLike],
    member_weights: npt.ArrayLike,
    thresholds: StrengthThresholds,
    regime_filter: RegimeFilter,
    *,
    bars: npt.ArrayLike | None = None,
    ts: npt.ArrayLike | None = None,
    require_skill: bool = True,
) -> list[Signal]:
    """One ``Signal`` per row: direction, strength after the regime filter and thresholds, and a reason.

    With ``require_skill`` (the default) a row whose member weights are all 0 stays flat: the ensemble would
    only echo the base rate. Turning it off is for plumbing tests that need trades from skill-less members."""
    probs = np.asarray(ens_probs, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    reg = np.asarray(regimes).astype(str)
    names = tuple(member_probs)
    stacked = stack_members(member_probs, names) if names else np.zeros((len(probs), 0, 3))
    weights = np.asarray(member_weights, dtype=np.float64).reshape(len(probs), len(names))
    direction = signal_direction(probs)
    # No member with measured skill: the ensemble would only echo the base rate, so it must not trade.
    skilled = weights.sum(axis=1) > 0 if names and require_skill else np.ones(len(probs), dtype=bool)
    votes = stacked.argmax(axis=2) == direction_class(direction)[:, None]
    bar_list = None if bars is None else np.asarray(bars, dtype=np.int64)
    ts_list = None if ts is None else np.asarray(ts, dtype=np.int64)
    out: list[Signal] = []
    for i in range(len(probs)):
        d, c, r = int(direction[i]), float(conf[i]), str(reg[i])
        allowed = d != 0 and bool(skilled[i]) and regime_filter.allows(c, r)
        strength = thresholds.classify(c) if allowed else Strength.NONE
        final = d if strength is not Strength.NONE else 0
        reason = (
            _reason(d, c, probs[i], r, strength, thresholds, regime_filter, int(votes[i].sum()), len(names))
            if skilled[i]
            else "flat: no member has measured skill (every weight is 0), so the base rate is not traded"
        )
        out.append(
            Signal(
                direction=Direction.from_sign(final),
                confidence=c if d != 0 else math.nan,
                strength=strength,
                regime=r,
                probabilities=(float(probs[i, 0]), float(probs[i, 1]), float(probs[i, 2])),
                member_probabilities={n: tuple(map(float, stacked[i, j])) for j, n in enumerate(names)},  # type: ignore[misc]
                member_weights={n: float(weights[i, j]) for j, n in enumerate(names)},
                reason=reason,
                bar=None if bar_list is None else int(bar_list[i]),
                ts=None if ts_list is None else int(ts_list[i]),
            )
        )
    return out


# ------------------------------------------------------------------------------------------ the system


@dataclass(frozen=True)
class SignalSystemConfig:
    """How ``SignalSystem`` is fitted. ``slices``: calibration | ensemble | confidence fractions of the fit set."""

    calibration: CalibrationMethod = "auto"
    isotonic_min_samples: int = 1000
    ensemble: Literal["stacking", "skill"] = "stacking"
    regime_min_samples: int = 500
    meta: MetaKind = "logistic"
    slices: tuple[float, float, float] = (0.4, 0.35, 0.25)
    purge: int = 0
    strength_targets: tuple[float, float, float] = (0.50, 0.55, 0.60)
    regime_target: float = 0.45
    min_count: int = 30
    z: float = 1.0
    min_fit_samples: int = 300
    require_skill: bool = True  # an ensemble whose member weights are all 0 stays flat

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SignalSystem:
    """Calibrated members → ensemble → confidence → strength and regime filter → ``Signal`` records."""

    def __init__(self, config: SignalSystemConfig | None = None) -> None:
        self.config = config or SignalSystemConfig()
        self.decision_bar = -1
        self.calibrators: dict[str, Calibrator] = {}
        self.ensemble: EnsembleModel | None = None
        self.confidence = ConfidenceModel(meta=self.config.meta, purge=self.config.purge)
        self.thresholds = StrengthThresholds(math.inf, math.inf, math.inf)
        self.regime_filter = RegimeFilter()
        self.slice_sizes: tuple[int, ...] = ()
        self.member_skill: dict[str, tuple[float, float]] = {}

    def fit(self, samples: SignalSamples, decision_bar: int) -> Self:
        """Fit at ``decision_bar``; every sample's outcome must have been known then (else ``ValueError``)."""
        cfg = self.config
        if not known_mask(samples.t1, decision_bar, purge=cfg.purge).all():
            raise ValueError(f"samples include outcomes unknown at decision bar {decision_bar} (purge {cfg.purge})")
        if len(samples) < cfg.min_fit_samples:
            raise ValueError(f"{len(samples)} samples are too few to fit (need {cfg.min_fit_samples})")
        self.decision_bar = decision_bar
        order = np.argsort(samples.t, kind="stable")
        cal, ens, conf = chronological_slices(samples.t, samples.t1, order, cfg.slices, purge=cfg.purge)
        self.slice_sizes = (int(cal.size), int(ens.size), int(conf.size))
        y = samples.labels()

        self.calibrators = {
            name: fit_calibrator(
                scores[cal], y[cal], n_classes=3, method=cfg.calibration,
                isotonic_min_samples=cfg.isotonic_min_samples,
            )
            for name, scores in samples.members.items()
        }  # fmt: skip
        self.ensemble = make_ensemble(cfg.ensemble, regime_min_samples=cfg.regime_min_samples)
        ens_members = self.calibrated(samples.take(ens))
        self.ensemble.fit(ens_members, y[ens], samples.regimes[ens])
        self.member_skill = member_skill(ens_members, y[ens])

        part = samples.take(conf)
        members = self.calibrated(part)
        ens_probs = self.ensemble.predict_proba(members, part.regimes)
        self.confidence.fit(
            ens_probs, stack_members(members, tuple(members)), self.ensemble.weights_for(part.regimes),
            part.regimes, y[conf], part.t, part.t1, part.extra,
        )  # fmt: skip
        c = self.confidence
        self.thresholds = fit_strength_thresholds(
            c.holdout_confidence, c.holdout_hit, targets=cfg.strength_targets, min_count=cfg.min_count, z=cfg.z
        )
        self.regime_filter = fit_regime_filter(
            c.holdout_confidence, c.holdout_hit, c.holdout_regimes, target=cfg.regime_target,
            min_count=cfg.min_count, z=cfg.z,
        )  # fmt: skip
        return self

    def calibrated(self, samples: SignalSamples) -> dict[str, FloatArray]:
        return {name: self.calibrators[name].predict_proba(samples.members[name]) for name in self.calibrators}

    def predict(self, samples: SignalSamples) -> tuple[FloatArray, FloatArray, dict[str, FloatArray], FloatArray]:
        """``(ensemble probabilities, confidence, calibrated member probabilities, member weights)`` per row."""
        if self.ensemble is None:
            raise ValueError("SignalSystem is not fitted")
        members = self.calibrated(samples)
        probs = self.ensemble.predict_proba(members, samples.regimes)
        weights = self.ensemble.weights_for(samples.regimes)
        stacked = stack_members(members, tuple(members))
        conf = self.confidence.predict(probs, stacked, weights, samples.regimes, samples.t, samples.extra)
        return probs, conf, members, weights

    def signals(self, samples: SignalSamples) -> list[Signal]:
        probs, conf, members, weights = self.predict(samples)
        return build_signals(
            probs, conf, samples.regimes, members, weights, self.thresholds, self.regime_filter,
            bars=samples.t, ts=samples.ts, require_skill=getattr(self.config, "require_skill", True),
        )  # fmt: skip

    def never_signals(self) -> str | None:
        """Why this fitted system can never give a non-flat signal (None when it can): every member weight 0 in
        every regime model (with ``require_skill``), every strength threshold infinite, or every regime blocked."""
        ens = self.ensemble
        if ens is None:
            return "the system is not fitted"
        if self.config.require_skill and all(
            sum(ens.member_weights(r).values()) <= 0 for r in (None, *ens.regimes_modelled)
        ):
            return "every member weight is 0 (no member showed skill on the fit samples)"
        if not math.isfinite(self.thresholds.weak):
            return "every strength threshold is infinite (no confidence reached the target hit rate)"
        minimums = [self.regime_filter.default, *self.regime_filter.min_confidence.values()]
        if all(m == math.inf for m in minimums):
            return "the regime filter blocks every regime"
        return None

    def report(self) -> dict[str, Any]:
        """What was fitted and measured: for logs, the model registry and ``smartmarket monitor``."""
        ens = self.ensemble
        return {
            "decision_bar": self.decision_bar,
            "config": self.config.to_dict(),
            "slice_sizes": list(self.slice_sizes),
            "calibration": {k: {"method": v.method, "n": v.n_samples} for k, v in self.calibrators.items()},
            "member_skill": {k: {"nats": m, "se": e} for k, (m, e) in self.member_skill.items()},
            "ensemble": None if ens is None else {
                "kind": ens.kind,
                "weights": ens.member_weights(),
                "per_regime": {r: ens.member_weights(r) for r in ens.regimes_modelled},
            },
            "confidence": self.confidence.choice.to_dict(),
            "thresholds": self.thresholds.to_dict(),
            "regime_filter": self.regime_filter.to_dict(),
        }  # fmt: skip


@dataclass(frozen=True)
class WalkForwardSignals:
    """Signals of a causal walk-forward run, one per decided sample, and what each refit measured."""

    signals: list[Signal]
    index: IntArray  # sample rows the signals belong to
    reports: list[dict[str, Any]]


def walk_forward_signals(
    samples: SignalSamples,
    *,
    refit_every: int,
    first_decision_bar: int,
    config: SignalSystemConfig | None = None,
    lookback: int | None = None,
    start_bar: int | None = None,
    origin: int = 0,
) -> WalkForwardSignals:
    """Refit at bars ``origin + k·refit_every`` from outcomes known then; decide each block with its model.

    Blocks with fewer than ``config.min_fit_samples`` known samples are skipped (no signals). ``start_bar`` drops
    samples before it from every fit (e.g. the members' training span).
    """
    cfg = config or SignalSystemConfig()
    signals: list[Signal] = []
    rows: list[IntArray] = []
    reports: list[dict[str, Any]] = []
    for block in fit_blocks(
        samples.t, samples.t1, refit_every=refit_every, first_decision_bar=first_decision_bar, purge=cfg.purge,
        lookback=lookback, start_bar=start_bar, origin=origin,
    ):  # fmt: skip
        target = np.flatnonzero((samples.t >= block.start) & (samples.t < block.stop))
        if target.size == 0 or block.fit_index.size < cfg.min_fit_samples:
            continue
        system = SignalSystem(cfg).fit(samples.take(block.fit_index), block.decision_bar)
        signals.extend(system.signals(samples.take(target)))
        rows.append(target)
        reports.append(system.report())
    index = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return WalkForwardSignals(signals, index.astype(np.int64), reports)


def strength_rank(strength: Strength) -> int:
    return STRENGTH_ORDER.index(strength)


def member_names_of(signals: Sequence[Signal]) -> tuple[str, ...]:
    return tuple(signals[0].member_weights) if signals else ()


__all__ = [
    "STRENGTH_ORDER",
    "Direction",
    "RegimeFilter",
    "Signal",
    "SignalSystem",
    "SignalSystemConfig",
    "Strength",
    "StrengthThresholds",
    "WalkForwardSignals",
    "build_signals",
    "fit_regime_filter",
    "fit_strength_thresholds",
    "hit_curve",
    "marginal_threshold",
    "member_names_of",
    "strength_rank",
    "walk_forward_signals",
    "wilson_lower_bound",
]
