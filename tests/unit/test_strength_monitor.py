"""Strength thresholds (monotone, meeting their targets), the regime filter, Signal records, and the monitor."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartmarket.signals.monitor import MonitorConfig, SignalMonitor
from smartmarket.signals.outcomes import DOWN, FLAT, UP
from smartmarket.signals.strength import (
    Direction,
    RegimeFilter,
    Strength,
    StrengthThresholds,
    build_signals,
    fit_regime_filter,
    fit_strength_thresholds,
    hit_curve,
    marginal_threshold,
    strength_rank,
)


def calibrated_signals(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidences that are true hit probabilities."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.3, 0.8, n)
    return conf, (rng.random(n) < conf).astype(float)


def test_thresholds_reach_their_targets_at_the_margin() -> None:
    conf, hit = calibrated_signals(0, 8000)
    th = fit_strength_thresholds(conf, hit, targets=(0.55, 0.62, 0.70), min_count=50)
    assert th.weak < th.moderate < th.strong < math.inf
    # Confidence is the true hit probability here, so each threshold sits near its target ...
    for tau, target in ((th.weak, 0.55), (th.moderate, 0.62), (th.strong, 0.70)):
        assert tau == pytest.approx(target, abs=0.04)
        c, p = hit_curve(conf, hit)
        assert p[c >= tau].min() >= target > p[c < tau].max()  # lowest confidence whose estimate reaches it
    # ... and on a new draw of the same process even the weakest signals of a class hit about as often as promised.
    conf2, hit2 = calibrated_signals(1, 40_000)
    for lo, hi, target in ((th.weak, th.moderate, 0.55), (th.moderate, th.strong, 0.62), (th.strong, 1.0, 0.70)):
        band = (conf2 >= lo) & (conf2 < lo + 0.03)
        assert hit2[band].mean() > target - 0.04
        assert hit2[(conf2 >= lo) & (conf2 < hi)].mean() > target - 0.01


def test_unreachable_targets_leave_the_class_empty() -> None:
    conf, hit = calibrated_signals(2, 2000)
    th = fit_strength_thresholds(conf, hit, targets=(0.6, 0.7, 0.99))
    assert th.strong == math.inf and th.classify(0.999) is Strength.MODERATE
    assert marginal_threshold(conf, np.zeros_like(hit), 0.1) == math.inf
    # min_count: a perfect but tiny top group is not enough for a class.
    conf3 = np.r_[np.full(10, 0.95), np.linspace(0.3, 0.6, 500)]
    hit3 = np.r_[np.ones(10), np.zeros(500)]
    assert marginal_threshold(conf3, hit3, 0.9, min_count=20) == math.inf
    assert marginal_threshold(conf3, hit3, 0.9, min_count=10) == 0.95
    # The Wilson guard: 20 hits out of 30 estimates 0.67, but that is too little evidence for a 0.6 class.
    conf4 = np.r_[np.full(30, 0.9), np.linspace(0.3, 0.6, 500)]
    hit4 = np.r_[np.ones(20), np.zeros(10), np.zeros(500)]
    assert marginal_threshold(conf4, hit4, 0.6, min_count=30, z=1.0) == math.inf
    assert marginal_threshold(conf4, hit4, 0.6, min_count=30, z=0.0) == 0.9


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    targets=st.lists(st.floats(0.3, 0.8), min_size=3, max_size=3).map(sorted),
    min_count=st.integers(1, 60),
)
def test_strength_is_monotone_in_confidence(seed: int, targets: list[float], min_count: int) -> None:
    rng = np.random.default_rng(seed)
    conf = rng.random(300)
    hit = (rng.random(300) < rng.random()).astype(float)
    th = fit_strength_thresholds(conf, hit, targets=(targets[0], targets[1], targets[2]), min_count=min_count)
    assert th.weak <= th.moderate <= th.strong
    ranks = [strength_rank(th.classify(c)) for c in np.linspace(0, 1, 201)]
    assert all(a <= b for a, b in itertools.pairwise(ranks))


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="weak ≤ moderate ≤ strong"):
        StrengthThresholds(0.6, 0.5, 0.7)
    with pytest.raises(ValueError, match="non-decreasing"):
        fit_strength_thresholds([0.5], [1.0], targets=(0.6, 0.5, 0.7))


THRESHOLDS = StrengthThresholds(0.50, 0.60, 0.70)


def one_signal(confidence: float, regime: str, regime_filter: RegimeFilter, probs: list[float] | None = None):  # type: ignore[no-untyped-def]
    p = np.array([probs or [0.2, 0.1, 0.7]])
    members = {"a": p.copy(), "b": np.array([[0.5, 0.3, 0.2]])}
    return build_signals(p, [confidence], [regime], members, [[0.75, 0.25]], THRESHOLDS, regime_filter, bars=[7])[0]


def test_regime_filter_blocks_signals_below_its_minimum() -> None:
    rf = RegimeFilter({"volatile": 0.68, "ranging": 0.55}, default=0.52)
    blocked = one_signal(0.65, "volatile", rf)
    assert blocked.direction is Direction.FLAT and blocked.strength is Strength.NONE
    assert "below the volatile minimum 0.68" in blocked.reason
    assert blocked.confidence == 0.65  # what was blocked stays visible
    passed = one_signal(0.65, "ranging", rf)
    assert passed.direction is Direction.LONG and passed.strength is Strength.MODERATE
    assert passed.reason.startswith("long moderate") and "1/2 members agree" in passed.reason
    assert passed.member_weights == {"a": 0.75, "b": 0.25} and passed.bar == 7
    assert passed.member_probabilities["b"] == (0.5, 0.3, 0.2)
    unknown = one_signal(0.51, "trending_down", rf)  # no own minimum: the default applies
    assert unknown.direction is Direction.FLAT and "below the trending_down minimum 0.52" in unknown.reason
    weak_side = one_signal(0.45, "ranging", RegimeFilter())
    assert weak_side.direction is Direction.FLAT and "below the weakest class" in weak_side.reason
    short = one_signal(0.72, "ranging", rf, probs=[0.72, 0.1, 0.18])
    assert short.direction is Direction.SHORT and short.strength is Strength.STRONG
    flat = one_signal(float("nan"), "ranging", rf, probs=[0.2, 0.6, 0.2])
    assert flat.direction is Direction.FLAT and flat.reason.startswith("flat: ensemble favours flat")
    json.dumps(passed.to_dict())  # a plain, serialisable record


def test_fitted_regime_filter_blocks_a_regime_without_edge() -> None:
    conf, hit = calibrated_signals(3, 4000)
    regimes = np.where(np.arange(4000) % 2 == 0, "trending_up", "volatile")
    hit[regimes == "volatile"] = (np.random.default_rng(4).random(2000) < 0.3).astype(float)  # never pays
    rf = fit_regime_filter(conf, hit, regimes, target=0.5, min_count=50)
    assert rf.minimum("volatile") == math.inf
    assert rf.minimum("trending_up") == pytest.approx(0.5, abs=0.05)  # break-even where confidence = 0.5
    assert not rf.allows(0.99, "volatile") and rf.allows(0.7, "trending_up")
    assert rf.minimum("ranging") == rf.default  # unseen regime → all-regime threshold


# ------------------------------------------------------------------------------------------ monitor


def feed(monitor: SignalMonitor, rng: np.random.Generator, n: int, *, conf: float, hit_rate: float,
         regime: str = "ranging") -> None:  # fmt: skip
    for _ in range(n):
        monitor.record_decision(regime, Direction.LONG)
        monitor.record_decision(regime, Direction.FLAT)
        monitor.record_outcome(float(np.clip(conf + rng.normal(0, 0.05), 0, 1)), bool(rng.random() < hit_rate), regime)


def test_stable_quality_raises_no_alarm() -> None:
    rng = np.random.default_rng(5)
    monitor = SignalMonitor(MonitorConfig(window=400, reference_size=400, min_samples=100))
    feed(monitor, rng, 1200, conf=0.6, hit_rate=0.6)
    summary = monitor.summary()
    assert summary.alarms == []
    now = summary.current["all"]
    assert now.n_outcomes == 400 and now.n_decisions == 400
    assert now.signal_rate == pytest.approx(0.5)
    assert now.hit_rate == pytest.approx(0.6, abs=0.06) and now.ece < 0.1
    assert set(summary.current) == {"all", "ranging"}


def test_hit_rate_drop_and_calibration_drift_raise_alarms() -> None:
    rng = np.random.default_rng(6)
    monitor = SignalMonitor(MonitorConfig(window=300, reference_size=300, min_samples=100, ece_tolerance=0.05))
    feed(monitor, rng, 300, conf=0.6, hit_rate=0.6, regime="trending_up")
    feed(monitor, rng, 50, conf=0.6, hit_rate=0.35, regime="volatile")
    assert monitor.alarms() == []  # volatile has too few outcomes; "all" has not degraded enough yet
    feed(monitor, rng, 250, conf=0.6, hit_rate=0.35, regime="volatile")
    kinds = {(a.kind, a.regime) for a in monitor.alarms()}
    assert ("hit_rate", "all") in kinds and ("calibration", "all") in kinds
    alarm = next(a for a in monitor.alarms() if a.kind == "hit_rate")
    assert alarm.statistic < -2.3 and alarm.current < alarm.reference and "hit rate" in alarm.message
    monitor.reset_reference()
    assert monitor.alarms() == []


def test_member_contribution_and_persistence() -> None:
    rng = np.random.default_rng(7)
    monitor = SignalMonitor(MonitorConfig(window=500, reference_size=200))
    for _ in range(500):
        outcome = int(rng.choice([DOWN, FLAT, UP], p=[0.3, 0.3, 0.4]))
        good = [0.8 if k == outcome else 0.1 for k in range(3)]
        noise = list(rng.dirichlet(np.ones(3)))
        monitor.record_outcome(
            0.6, outcome == UP, "all", outcome=outcome, member_probabilities={"good": good, "noise": noise},
            member_weights={"good": 0.9, "noise": 0.1},
        )  # fmt: skip
    members = monitor.summary().current["all"].members
    assert members["good"]["contribution"] > 0.5 > members["noise"]["contribution"]
    assert members["good"]["hit_rate"] == 1.0 and members["noise"]["mean_weight"] == pytest.approx(0.1)
    restored = SignalMonitor.from_dict(json.loads(json.dumps(monitor.to_dict())))
    assert restored.summary().to_dict() == monitor.summary().to_dict()


def test_signal_outcomes_feed_the_monitor() -> None:
    sig = build_signals(
        np.array([[0.1, 0.2, 0.7], [0.2, 0.6, 0.2]]), [0.7, float("nan")], ["ranging"] * 2,
        {"a": np.array([[0.1, 0.2, 0.7], [0.2, 0.6, 0.2]])}, [[1.0], [1.0]], THRESHOLDS, RegimeFilter(),
    )  # fmt: skip
    monitor = SignalMonitor()
    monitor.record_signal_outcome(sig[0], UP)
    monitor.record_signal_outcome(sig[1], DOWN)  # flat: nothing to score
    stats = monitor.summary().current["ranging"]
    assert stats.n_outcomes == 1 and stats.hit_rate == 1.0 and stats.members["a"]["hit_rate"] == 1.0


def test_an_ensemble_without_any_skilled_member_stays_flat() -> None:
    """All member weights 0 means the ensemble only echoes the base rate: it must not trade, however confident."""
    probs = np.tile([0.05, 0.05, 0.9], (4, 1))
    members = {"a": probs, "b": probs}
    thresholds = StrengthThresholds(weak=0.5, moderate=0.6, strong=0.7)
    unskilled = build_signals(probs, np.full(4, 0.95), ["ranging"] * 4, members, np.zeros((4, 2)), thresholds,
                              RegimeFilter())
    assert all(s.direction.value == "flat" and s.strength is Strength.NONE for s in unskilled)
    assert all("no member has measured skill" in s.reason for s in unskilled)
    skilled = build_signals(probs, np.full(4, 0.95), ["ranging"] * 4, members, np.tile([0.5, 0.0], (4, 1)),
                            thresholds, RegimeFilter())
    assert all(s.direction.value == "long" and s.strength is Strength.STRONG for s in skilled)
