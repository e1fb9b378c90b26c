"""Causality: no calibration, weighting, confidence or threshold step sees an outcome unknown at the decision bar,
and signals already given never change when later samples arrive."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from smartmarket.signals.ensemble import SkillWeightedEnsemble
from smartmarket.signals.outcomes import (
    OutcomeQueue,
    SignalSamples,
    causal_fit_indices,
    chronological_slices,
    fit_blocks,
    known_mask,
    outcome_known_at,
)
from smartmarket.signals.strength import Signal, SignalSystem, SignalSystemConfig, walk_forward_signals

HORIZON = 12


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def synthetic_samples(seed: int, n: int) -> SignalSamples:
    """Bars 0…n-1, outcomes known 1…HORIZON bars later; members of planted skill, one of them a P(up) score."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=n)
    truth = softmax(np.column_stack([-1.4 * latent, np.full(n, 0.2), 1.4 * latent]))
    y = (rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1).clip(0, 2)
    seen = latent + 0.4 * rng.normal(size=n)
    t = np.arange(n)
    return SignalSamples.build(
        t=t,
        t1=t + rng.integers(1, HORIZON + 1, n),
        y=y,
        members={
            "skilled": softmax(np.column_stack([-2.5 * seen, np.zeros(n), 2.5 * seen])),
            "noise": softmax(rng.normal(scale=1.5, size=(n, 3))),
            "p_up": 1 / (1 + np.exp(-(0.6 * latent + rng.normal(size=n)))),
        },
        regimes=np.where((t // 300) % 2 == 0, "trending_up", "ranging"),
        extra=rng.normal(size=(n, 1)),
    )


def poisoned(samples: SignalSamples, rows: np.ndarray) -> SignalSamples:
    """The same samples with the outcomes of ``rows`` replaced so that the noise member becomes a perfect oracle."""
    y = samples.y.copy()
    y[rows] = samples.members["noise"][rows].argmax(axis=1)
    return SignalSamples(samples.t, samples.t1, y, samples.members, samples.regimes, samples.extra, samples.ts)


def comparable(signal: Signal) -> dict[str, Any]:
    """A signal as a dict whose NaNs compare equal."""
    out = signal.to_dict()
    out["confidence"] = None if math.isnan(out["confidence"]) else out["confidence"]
    return out


# ---------------------------------------------------------------------------------------- the rule itself


def test_known_mask_is_strictly_before_the_decision_bar() -> None:
    t1 = np.array([-1, 3, 4, 5, 9])
    assert known_mask(t1, 5).tolist() == [False, True, True, False, False]
    assert known_mask(t1, 5, purge=1).tolist() == [False, True, False, False, False]
    assert outcome_known_at([0, 1, 2], [3, -1, 20], horizon=10).tolist() == [10, -1, 20]
    t = np.array([0, 1, 2, 3, 4])
    assert causal_fit_indices(t, t1, 7, lookback=5).tolist() == [2, 3]  # t ≥ 2, t1 < 7
    assert causal_fit_indices(t, t1, 10, start_bar=3).tolist() == [3, 4]


def test_chronological_slices_are_purged_against_every_later_slice() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(2000)
    t1 = t + rng.integers(1, 40, t.size)
    slices = chronological_slices(t, t1, t, (0.4, 0.35, 0.25), purge=3)
    for k in range(2):
        assert t1[slices[k]].max() + 3 < t[slices[k + 1]].min()
    assert slices[2].size == 500 and slices[0].size < 800  # the last slice loses nothing, earlier ones their tails


def test_fit_blocks_are_anchored_so_appending_never_moves_them() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(3000)
    t1 = t + rng.integers(1, 20, t.size)
    short = list(fit_blocks(t[:2100], t1[:2100], refit_every=400, first_decision_bar=1000, purge=2))
    full = list(fit_blocks(t, t1, refit_every=400, first_decision_bar=1000, purge=2))
    assert [b.decision_bar for b in short] == [1200, 1600, 2000]
    for a, b in zip(short, full, strict=False):
        assert a.decision_bar == b.decision_bar and np.array_equal(a.fit_index, b.fit_index)
        assert t1[a.fit_index].max() + 2 < a.decision_bar


def test_outcome_queue_releases_only_outcomes_known_before_the_bar() -> None:
    queue: OutcomeQueue[str] = OutcomeQueue(purge=1)
    for t1, name in [(10, "a"), (5, "b"), (12, "c"), (7, "d")]:
        queue.push(t1, name)
    assert queue.release(7) == ["b"]  # 5 + 1 < 7; 7 is not yet
    assert queue.release(12) == ["d", "a"]
    assert len(queue) == 1 and queue.release(13) == [] and queue.release(14) == ["c"]
    with pytest.raises(ValueError):
        queue.push(-1, "never known")


def test_online_reweighting_through_the_queue_ignores_unreleased_outcomes() -> None:
    samples = synthetic_samples(2, 1500)
    fit = samples.known_before(1000)
    members = {k: softmax(np.log(np.clip(v, 1e-6, 1))) for k, v in fit.members.items() if k != "p_up"}
    ensemble = SkillWeightedEnsemble(min_window=10).fit(members, fit.labels())
    queue: OutcomeQueue[int] = OutcomeQueue()
    for row in range(1000, 1500):
        queue.push(int(samples.t1[row]), row)
    seen: list[int] = []
    for bar in range(1000, 1200):
        for row in queue.release(bar):
            assert samples.t1[row] < bar
            seen.append(row)
            ensemble.update({k: samples.members[k][row] for k in ("skilled", "noise")}, int(samples.y[row]))
    assert seen and max(samples.t1[seen]) < 1199


# --------------------------------------------------------------------------- the fitted system, end to end


FAST = SignalSystemConfig(min_count=20)


def test_fit_refuses_outcomes_unknown_at_the_decision_bar() -> None:
    samples = synthetic_samples(3, 3000)
    with pytest.raises(ValueError, match="unknown at decision bar 2000"):
        SignalSystem(FAST).fit(samples.take(np.arange(2000)), 2000)  # the last rows resolve after bar 2000
    SignalSystem(FAST).fit(samples.known_before(2000), 2000)


def test_future_outcomes_cannot_change_a_fit() -> None:
    samples = synthetic_samples(4, 4000)
    decision = 3000
    target = samples.take(np.arange(decision, decision + 400))
    base = SignalSystem(FAST).fit(samples.known_before(decision), decision)
    # Outcomes unknown at the decision bar (t1 ≥ 3000) now say "the noise member is an oracle".
    unknown = np.flatnonzero(~known_mask(samples.t1, decision))
    assert unknown.min() < decision  # some of them belong to bars before the decision bar
    future = SignalSystem(FAST).fit(poisoned(samples, unknown).known_before(decision), decision)
    probs_a, conf_a, members_a, weights_a = base.predict(target)
    probs_b, conf_b, members_b, weights_b = future.predict(target)
    assert np.array_equal(probs_a, probs_b) and np.array_equal(conf_a, conf_b, equal_nan=True)
    assert np.array_equal(weights_a, weights_b)
    assert all(np.array_equal(members_a[k], members_b[k]) for k in members_a)  # calibration untouched too
    assert [comparable(s) for s in base.signals(target)] == [comparable(s) for s in future.signals(target)]
    # Control: the same poison on outcomes that *were* known does change the fit, so the check above has teeth.
    known_tail = np.flatnonzero(known_mask(samples.t1, decision) & (samples.t >= 1500))
    control = SignalSystem(FAST).fit(poisoned(samples, known_tail).known_before(decision), decision)
    assert control.ensemble is not None and base.ensemble is not None
    assert control.ensemble.member_weights()["noise"] > base.ensemble.member_weights()["noise"] + 0.2
    assert not np.array_equal(control.predict(target)[0], base.predict(target)[0])


def test_walk_forward_signals_do_not_change_when_samples_are_appended() -> None:
    full = synthetic_samples(5, 4200)
    short = full.take(np.arange(3400))
    tail = np.arange(3400, 4200)
    extended = poisoned(full, tail)  # the appended outcomes are even hostile
    kwargs: dict[str, Any] = {"refit_every": 400, "first_decision_bar": 2400, "config": FAST}
    before = walk_forward_signals(short, **kwargs)
    after = walk_forward_signals(extended, **kwargs)
    assert before.index.tolist() == list(range(2400, 3400))
    assert after.index[: before.index.size].tolist() == before.index.tolist()
    assert after.index.max() == 4199
    old = [comparable(s) for s in before.signals]
    assert old == [comparable(s) for s in after.signals[: len(old)]]
    assert before.reports == after.reports[: len(before.reports)]
    # Every refit decided only bars at or after its decision bar, from outcomes known before it.
    for report, block_start in zip(after.reports, range(2400, 4200, 400), strict=True):
        assert report["decision_bar"] == block_start
    assert any(s.direction != "flat" for s in after.signals)
