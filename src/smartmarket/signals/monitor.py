"""Signal quality monitoring: rolling hit rate, Brier, ECE, member contributions and signal rate, per regime, with
drift alarms. Updated one decision / one outcome at a time (live), summarised on demand (``smartmarket monitor``).

Feed it causally: ``record_decision`` at each decision (flat or not), ``record_outcome`` when a non-flat signal's
outcome becomes known (gate backtests with ``outcomes.OutcomeQueue``). Every statistic is kept for ``"all"`` and for
each regime, over the last ``window`` outcomes (decisions, for the signal rate).

Reference: the first ``reference_size`` outcomes of each group (frozen once full; ``reset_reference`` starts a new
one, e.g. after a refit). Alarms, only when both the current window and the reference hold ``min_samples``:

* ``hit_rate`` — one-sided two-proportion z-test (pooled variance) of H0 "current hit rate ≥ reference hit rate":
  alarm when ``z < −z_{1−α}`` (``alpha``, default 0.01) *and* the drop exceeds ``hit_rate_tolerance``;
* ``calibration`` — a threshold rule, not a test: alarm when the current ECE exceeds the reference ECE by more
  than ``ece_tolerance`` (equal-mass bins). Keep the tolerance above the ECE noise floor of the window,
  about ``sqrt(B / (2π n))`` (≈ 0.05 for 10 bins and 500 outcomes).

Per-member *contribution* of an outcome: ``w_m · (log p_m(y) − log base(y))``, the member's weight times its
log-score improvement over the base rate (class frequencies of the outcomes recorded before it); its rolling mean
says which members earn their weight. A member's *hit rate* is how often its own most likely class was the outcome.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.stats import norm

from smartmarket.core.types import Direction
from smartmarket.signals.calibration import brier_score, expected_calibration_error
from smartmarket.signals.confidence import direction_class
from smartmarket.signals.outcomes import N_CLASSES
from smartmarket.signals.strength import Signal

ALL = "all"
AlarmKind = Literal["hit_rate", "calibration"]


@dataclass(frozen=True)
class MonitorConfig:
    window: int = 500
    reference_size: int = 1000
    n_bins: int = 10
    min_samples: int = 100
    alpha: float = 0.01
    hit_rate_tolerance: float = 0.0
    ece_tolerance: float = 0.05


@dataclass(frozen=True)
class OutcomeRecord:
    """One resolved signal: its confidence, whether it hit, and the members' view of the outcome."""

    confidence: float
    hit: bool
    regime: str
    member_contribution: Mapping[str, float] = field(default_factory=dict)
    member_hit: Mapping[str, bool] = field(default_factory=dict)
    member_weight: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Alarm:
    kind: AlarmKind
    regime: str
    current: float
    reference: float
    statistic: float  # z for hit_rate, ECE increase for calibration
    n_current: int
    n_reference: int
    message: str


@dataclass(frozen=True)
class WindowStats:
    """Rolling statistics of one group (``"all"`` or a regime)."""

    n_outcomes: int
    hit_rate: float
    brier: float
    ece: float
    mean_confidence: float
    n_decisions: int
    signal_rate: float
    members: Mapping[str, Mapping[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MonitorSummary:
    current: Mapping[str, WindowStats]
    reference: Mapping[str, WindowStats]
    alarms: list[Alarm]

    def to_dict(self) -> dict[str, Any]:
        return {
            "current": {k: v.to_dict() for k, v in self.current.items()},
            "reference": {k: v.to_dict() for k, v in self.reference.items()},
            "alarms": [asdict(a) for a in self.alarms],
        }


def _stats(records: Sequence[OutcomeRecord], decisions: Sequence[bool], n_bins: int) -> WindowStats:
    conf = np.array([r.confidence for r in records], dtype=np.float64)
    hit = np.array([r.hit for r in records], dtype=np.float64)
    names = sorted({m for r in records for m in r.member_contribution})
    members = {
        m: {
            "contribution": float(np.mean([r.member_contribution.get(m, 0.0) for r in records])),
            "hit_rate": float(np.mean([r.member_hit.get(m, False) for r in records])),
            "mean_weight": float(np.mean([r.member_weight.get(m, 0.0) for r in records])),
        }
        for m in names
    }
    n = len(records)
    return WindowStats(
        n_outcomes=n,
        hit_rate=float(hit.mean()) if n else math.nan,
        brier=brier_score(conf, hit) if n else math.nan,
        ece=expected_calibration_error(conf, hit, n_bins=n_bins) if n else math.nan,
        mean_confidence=float(conf.mean()) if n else math.nan,
        n_decisions=len(decisions),
        signal_rate=float(np.mean(decisions)) if decisions else math.nan,
        members=members,
    )


def hit_rate_drop_z(hits_now: float, n_now: int, hits_ref: float, n_ref: int) -> float:
    """Two-proportion z statistic (pooled) of current minus reference hit rate; negative = worse now."""
    pooled = (hits_now + hits_ref) / (n_now + n_ref)
    se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n_now + 1 / n_ref))
    return (hits_now / n_now - hits_ref / n_ref) / se


class SignalMonitor:
    """Live signal-quality state (see the module docstring)."""

    def __init__(self, config: MonitorConfig | None = None) -> None:
        self.config = config or MonitorConfig()
        self.windows: dict[str, deque[OutcomeRecord]] = {}
        self.references: dict[str, list[OutcomeRecord]] = {}
        self.decisions: dict[str, deque[bool]] = {}
        self.class_counts = np.ones(N_CLASSES)  # Laplace-smoothed outcome classes seen so far (the base rate)

    def _groups(self, regime: str) -> tuple[str, ...]:
        return (ALL,) if regime == ALL else (ALL, regime)

    def record_decision(self, regime: str, direction: Direction | int | str) -> None:
        """Count a decision (for the signal rate): non-flat directions are signals."""
        active = Direction(direction) is not Direction.FLAT if isinstance(direction, str) else int(direction) != 0
        for g in self._groups(regime):
            self.decisions.setdefault(g, deque(maxlen=self.config.window)).append(active)

    def record_outcome(
        self,
        confidence: float,
        hit: bool,
        regime: str,
        *,
        outcome: int | None = None,
        member_probabilities: Mapping[str, Sequence[float]] | None = None,
        member_weights: Mapping[str, float] | None = None,
    ) -> None:
        """Add one resolved signal; with ``outcome`` (class) and member data, also member contributions."""
        contribution: dict[str, float] = {}
        member_hit: dict[str, bool] = {}
        weights = dict(member_weights or {})
        if outcome is not None and member_probabilities:
            base = self.class_counts / self.class_counts.sum()
            for name, probs in member_probabilities.items():
                p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
                contribution[name] = weights.get(name, 0.0) * float(np.log(p[outcome]) - np.log(base[outcome]))
                member_hit[name] = int(np.argmax(p)) == outcome
        if outcome is not None:
            self.class_counts[outcome] += 1
        record = OutcomeRecord(float(confidence), bool(hit), regime, contribution, member_hit, weights)
        for g in self._groups(regime):
            self.windows.setdefault(g, deque(maxlen=self.config.window)).append(record)
            ref = self.references.setdefault(g, [])
            if len(ref) < self.config.reference_size:
                ref.append(record)

    def record_signal_outcome(self, signal: Signal, outcome: int) -> None:
        """``record_outcome`` from a (non-flat) ``Signal`` and its outcome class; flat signals are ignored."""
        if signal.direction is Direction.FLAT:
            return
        sign = 1 if signal.direction is Direction.LONG else -1
        hit = int(direction_class(np.array([sign]))[0]) == outcome
        self.record_outcome(
            signal.confidence, hit, signal.regime, outcome=outcome,
            member_probabilities=signal.member_probabilities, member_weights=signal.member_weights,
        )  # fmt: skip

    def reset_reference(self) -> None:
        """Start new references (e.g. after a refit): the next ``reference_size`` outcomes of each group."""
        self.references = {}

    def alarms(self) -> list[Alarm]:
        cfg = self.config
        out: list[Alarm] = []
        z_crit = float(norm.ppf(1 - cfg.alpha))
        for g, window in self.windows.items():
            ref = self.references.get(g, [])
            if len(window) < cfg.min_samples or len(ref) < cfg.min_samples:
                continue
            now_hits = float(sum(r.hit for r in window))
            ref_hits = float(sum(r.hit for r in ref))
            z = hit_rate_drop_z(now_hits, len(window), ref_hits, len(ref))
            now_rate, ref_rate = now_hits / len(window), ref_hits / len(ref)
            if z < -z_crit and ref_rate - now_rate > cfg.hit_rate_tolerance:
                msg = f"{g}: hit rate {now_rate:.3f} vs reference {ref_rate:.3f} (z = {z:.2f} < −{z_crit:.2f})"
                out.append(Alarm("hit_rate", g, now_rate, ref_rate, z, len(window), len(ref), msg))
            now_ece = _stats(list(window), [], cfg.n_bins).ece
            ref_ece = _stats(ref, [], cfg.n_bins).ece
            if now_ece - ref_ece > cfg.ece_tolerance:
                rise = now_ece - ref_ece
                msg = f"{g}: ECE {now_ece:.3f} vs reference {ref_ece:.3f} (+{rise:.3f} > {cfg.ece_tolerance})"
                out.append(Alarm("calibration", g, now_ece, ref_ece, now_ece - ref_ece, len(window), len(ref), msg))
        return out

    def summary(self) -> MonitorSummary:
        groups = sorted(set(self.windows) | set(self.decisions))
        n_bins = self.config.n_bins
        current = {g: _stats(list(self.windows.get(g, [])), list(self.decisions.get(g, [])), n_bins) for g in groups}
        reference = {g: _stats(ref, [], n_bins) for g, ref in self.references.items()}
        return MonitorSummary(current, reference, self.alarms())

    # -- persistence (plain JSON-able dicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "windows": {g: [asdict(r) for r in w] for g, w in self.windows.items()},
            "references": {g: [asdict(r) for r in ref] for g, ref in self.references.items()},
            "decisions": {g: list(d) for g, d in self.decisions.items()},
            "class_counts": self.class_counts.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignalMonitor:
        monitor = cls(MonitorConfig(**data["config"]))
        w = monitor.config.window
        monitor.windows = {g: deque((OutcomeRecord(**r) for r in rs), maxlen=w) for g, rs in data["windows"].items()}
        monitor.references = {g: [OutcomeRecord(**r) for r in rs] for g, rs in data["references"].items()}
        monitor.decisions = {g: deque(map(bool, d), maxlen=w) for g, d in data["decisions"].items()}
        monitor.class_counts = np.asarray(data["class_counts"], dtype=np.float64)
        return monitor


__all__ = [
    "ALL",
    "Alarm",
    "MonitorConfig",
    "MonitorSummary",
    "OutcomeRecord",
    "SignalMonitor",
    "WindowStats",
    "hit_rate_drop_z",
]
