"""Ensemble weights follow measured skill; meta-labelled confidence beats the raw probability when it should."""

from __future__ import annotations

import numpy as np
import pytest

from smartmarket.signals.calibration import brier_score, fit_calibrator
from smartmarket.signals.confidence import (
    ConfidenceModel,
    agreement_features,
    direction_probability,
    known_hit_rate,
    signal_direction,
    signal_hit,
)
from smartmarket.signals.ensemble import SkillWeightedEnsemble, StackingEnsemble, make_ensemble, stack_members
from smartmarket.signals.outcomes import DOWN, FLAT, UP


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def draw(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    return (rng.random(len(p))[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, p.shape[1] - 1)


def raw_members(seed: int, n: int, *, blind_in_volatile: bool) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Outcomes from a latent signal; ``skilled`` sees it well, ``weak`` barely, ``noise`` not at all.

    Raw outputs, over-confident like real networks. With ``blind_in_volatile`` the skilled member sees only noise
    in the ``volatile`` regime (half of the samples).
    """
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=n)
    regimes = np.where(rng.random(n) < 0.5, "trending_up", "volatile")
    truth = softmax(np.column_stack([-1.5 * latent, np.zeros(n), 1.5 * latent]))
    y = draw(rng, truth)
    seen = latent + 0.3 * rng.normal(size=n)
    if blind_in_volatile:
        seen = np.where(regimes == "volatile", rng.normal(size=n), seen)
    weak_seen = 0.5 * latent + rng.normal(size=n)
    members = {
        "noise": softmax(rng.normal(scale=1.5, size=(n, 3))),
        "skilled": softmax(np.column_stack([-2.5 * seen, np.zeros(n), 2.5 * seen])),
        "weak": softmax(np.column_stack([-1.0 * weak_seen, np.zeros(n), 1.0 * weak_seen])),
    }
    return members, y, regimes


def members_with_planted_skill(
    seed: int, n: int, *, blind_in_volatile: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Members calibrated on an earlier slice of ``n // 2`` samples (as the ensemble expects), then ``n`` samples."""
    members, y, regimes = raw_members(seed, n + n // 2, blind_in_volatile=blind_in_volatile)
    cal, later = slice(0, n // 2), slice(n // 2, None)
    calibrated = {k: fit_calibrator(v[cal], y[cal]).predict_proba(v[later]) for k, v in members.items()}
    return calibrated, y[later], regimes[later]


@pytest.mark.parametrize("kind", ["stacking", "skill"])
def test_noise_gets_no_weight_and_planted_skill_the_most(kind: str) -> None:
    members, y, _ = members_with_planted_skill(0, 6000)
    ensemble = make_ensemble(kind).fit(members, y)
    weights = ensemble.member_weights()
    assert sum(weights.values()) == pytest.approx(1.0)
    assert max(weights, key=lambda name: weights[name]) == "skilled"
    assert weights["skilled"] > 0.6
    assert weights["noise"] < 0.03
    # The ensemble is at least as good as its best member out of sample (later data, same process).
    test_members, y_test, _ = members_with_planted_skill(1, 6000)
    probs = ensemble.predict_proba(test_members)
    best = -np.mean(np.log(test_members["skilled"][np.arange(6000), y_test]))
    assert -np.mean(np.log(probs[np.arange(6000), y_test])) <= best + 0.01


def test_skill_ensemble_gives_exactly_zero_without_skill() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 3000)
    members = {"a": softmax(rng.normal(size=(3000, 3))), "b": softmax(rng.normal(size=(3000, 3)))}
    ensemble = SkillWeightedEnsemble().fit(members, y)
    assert ensemble.member_weights() == {"a": 0.0, "b": 0.0}
    # All weight on the base rate: the prediction is the class frequency, whatever the members say.
    probs = ensemble.predict_proba(members)
    assert np.allclose(probs, probs[0], atol=1e-9)
    assert np.allclose(probs[0], np.bincount(y, minlength=3) / 3000, atol=0.01)


@pytest.mark.parametrize("kind", ["stacking", "skill"])
def test_per_regime_models_where_the_data_supports_them(kind: str) -> None:
    members, y, regimes = members_with_planted_skill(3, 8000, blind_in_volatile=True)
    regimes = regimes.copy()
    regimes[:150] = "ranging"  # too few samples for a model of its own
    ensemble = make_ensemble(kind, regime_min_samples=1000).fit(members, y, regimes)
    assert set(ensemble.regimes_modelled) == {"trending_up", "volatile"}
    trending, volatile = ensemble.member_weights("trending_up"), ensemble.member_weights("volatile")
    assert trending["skilled"] > 0.7
    assert volatile["skilled"] < 0.15  # blind in volatile markets: the weak member carries it there
    assert volatile["weak"] > volatile["skilled"]
    assert ensemble.member_weights("ranging") == ensemble.member_weights()  # global fallback
    w = ensemble.weights_for(np.array(["volatile", "ranging"]))
    assert np.allclose(w[0], list(volatile.values())) and np.allclose(w[1], list(ensemble.member_weights().values()))


def test_online_reweighting_moves_at_most_max_step() -> None:
    members, y, _ = members_with_planted_skill(4, 3000)
    ensemble = SkillWeightedEnsemble(max_step=0.02, window=500, min_window=50).fit(members, y)
    before = ensemble.member_weights()
    assert before["skilled"] > 0.6
    # The skilled member breaks: from now on it is confidently wrong (outcome = its least likely class).
    path = [np.array(list(before.values()))]
    rng = np.random.default_rng(5)
    for _ in range(400):
        p = {name: softmax(rng.normal(size=(1, 3)))[0] for name in members}
        outcome = int(np.argmin(p["skilled"]))
        ensemble.update(p, outcome)
        path.append(np.array(list(ensemble.member_weights().values())))
    steps = np.abs(np.diff(np.array(path), axis=0)).max(axis=1)
    assert steps.max() <= 0.02 + 1e-12
    assert ensemble.member_weights()["skilled"] < 0.05  # it did get there, step by step
    assert np.count_nonzero(steps) >= 0.6 / 0.02  # ≥ 30 capped moves from > 0.6 to < 0.05


def test_stacking_rejects_missing_or_bad_members() -> None:
    members, y, _ = members_with_planted_skill(6, 500)
    ensemble = StackingEnsemble().fit(members, y)
    with pytest.raises(ValueError, match="missing member"):
        ensemble.predict_proba({"noise": members["noise"]})
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        stack_members({"x": np.ones(5)}, ["x"])


# -------------------------------------------------------------------------------------- confidence


def test_direction_helpers() -> None:
    probs = np.array([[0.2, 0.3, 0.5], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2]])
    assert signal_direction(probs).tolist() == [1, -1, 0]
    p_dir = direction_probability(probs, signal_direction(probs))
    assert p_dir[:2].tolist() == [0.5, 0.5] and np.isnan(p_dir[2])
    assert signal_hit(np.array([1, -1, 1]), np.array([UP, UP, DOWN])).tolist() == [True, False, False]
    members = np.array([[[0.1, 0.2, 0.7], [0.6, 0.2, 0.2]]] * 3)  # two members: one says up, one says down
    agree = agreement_features(members, np.array([[0.9, 0.1]] * 3), np.array([1, -1, 1]))
    assert agree[0, 0] == 0.5 and agree[0, 1] == pytest.approx(0.9) and agree[1, 1] == pytest.approx(0.1)


def test_known_hit_rate_counts_only_known_outcomes() -> None:
    t1 = np.array([5, 6, 7, 20, 21])
    hit = np.array([1, 1, 1, 0, 0])
    rate, count = known_hit_rate(t1, hit, np.array([5, 8, 21, 22]), prior_strength=0.0)
    assert count.tolist() == [0, 3, 4, 5]
    assert rate[1:].tolist() == [1.0, 0.75, 0.6]
    rate_w, count_w = known_hit_rate(t1, hit, np.array([22]), window=2, prior_strength=0.0)
    assert count_w.tolist() == [2] and rate_w.tolist() == [0.0]


def meta_labelling_data(seed: int, n: int) -> dict[str, np.ndarray]:
    """The primary signal is right 75 % of the time when ``condition`` holds and 25 % otherwise; its own probability
    does not know which (it hovers around 0.5), but the condition is an observable feature."""
    rng = np.random.default_rng(seed)
    side = np.where(rng.random(n) < 0.5, 1, -1)
    p_dir = rng.uniform(0.45, 0.6, n)
    rest = 1 - p_dir
    probs = np.where(
        (side == 1)[:, None],
        np.column_stack([0.6 * rest, 0.4 * rest, p_dir]),
        np.column_stack([p_dir, 0.4 * rest, 0.6 * rest]),
    )
    condition = rng.random(n) < 0.5
    hit = rng.random(n) < np.where(condition, 0.75, 0.25)
    wrong = np.where(rng.random(n) < 0.5, FLAT, np.where(side == 1, DOWN, UP))
    y = np.where(hit, np.where(side == 1, UP, DOWN), wrong)
    t = np.arange(n) * 2
    members = np.stack([probs, probs], axis=1)
    return {
        "probs": probs, "members": members, "weights": np.full((n, 2), 0.5), "regimes": np.full(n, "ranging"),
        "y": y, "t": t, "t1": t + 10, "extra": condition[:, None].astype(float),
    }  # fmt: skip


def test_meta_labelling_beats_the_raw_probability() -> None:
    train = meta_labelling_data(7, 3000)
    model = ConfidenceModel().fit(
        train["probs"], train["members"], train["weights"], train["regimes"], train["y"], train["t"], train["t1"],
        train["extra"],
    )  # fmt: skip
    assert model.choice.chosen == "meta"
    assert model.choice.brier_meta < model.choice.brier_plain - 0.03
    assert model.choice.n_train + model.choice.n_holdout <= 3000
    # Later data, never seen: the chosen (meta) confidence has the lower Brier score.
    later = meta_labelling_data(8, 3000)
    later["t"] = later["t"] + 10_000
    args = (later["probs"], later["members"], later["weights"], later["regimes"], later["t"])
    meta = model.predict(*args, later["extra"])
    plain = model.predict(*args, later["extra"], kind="plain")
    hit = signal_hit(signal_direction(later["probs"]), later["y"])
    assert brier_score(meta, hit) < brier_score(plain, hit) - 0.03
    assert np.mean(meta[later["extra"][:, 0] == 1]) > 0.65 > 0.35 > np.mean(meta[later["extra"][:, 0] == 0])


def test_plain_confidence_is_kept_when_meta_labelling_has_nothing_to_add() -> None:
    rng = np.random.default_rng(99)  # not the data's seed: its draws must be independent of the data's
    data = meta_labelling_data(9, 3000)
    p_dir = direction_probability(data["probs"], signal_direction(data["probs"]))
    hit = rng.random(3000) < p_dir  # the raw probability is already the truth
    side = signal_direction(data["probs"])
    y = np.where(hit, np.where(side == 1, UP, DOWN), FLAT)
    extra = rng.normal(size=(3000, 3))  # features without information
    model = ConfidenceModel().fit(
        data["probs"], data["members"], data["weights"], data["regimes"], y, data["t"], data["t1"], extra
    )
    assert model.choice.chosen == "plain"
    assert np.array_equal(model.predict(data["probs"], data["members"], data["weights"], data["regimes"],
                                        data["t"], extra), p_dir, equal_nan=True)  # fmt: skip


def test_too_few_signals_fall_back_to_plain_with_a_reason() -> None:
    data = meta_labelling_data(10, 120)
    model = ConfidenceModel().fit(
        data["probs"], data["members"], data["weights"], data["regimes"], data["y"], data["t"], data["t1"]
    )
    assert model.choice.chosen == "plain" and "too few" in model.choice.reason
