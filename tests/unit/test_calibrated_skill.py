"""Calibrated baselines and a skill verdict with a margin (issue 17).

* A class-balanced fit believes every class equally likely; ``predict_proba`` shifts it back to the training
  class frequencies (``models.baselines``), so an uninformative model predicts the base rates, not 1/3 each.
* ``metrics.skill_p_value``: one-sided Diebold-Mariano p-value that a model's log-loss beats the base rates.
* ``models.skill.Skill.no_skill``: worse than the base rates, or not significantly better (p ≥ 0.05).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smartmarket.analytics.significance import diebold_mariano
from smartmarket.models import persist
from smartmarket.models.baselines import BASELINE_TRUSTED_TYPES, LightGBMBaseline, LogisticBaseline
from smartmarket.models.datasets import WindowDataset
from smartmarket.models.metrics import (
    class_frequencies,
    log_loss,
    newey_west_lags,
    sample_log_losses,
    skill_p_value,
)
from smartmarket.models.skill import Skill, no_skill_line

FREQUENCIES = np.array([0.2, 0.1, 0.7])  # down, flat, up: a rare "flat" as in the real labels


def noise_dataset(n: int, seed: int) -> WindowDataset:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, 4))
    labels = rng.choice(3, size=n - 2, p=FREQUENCIES)
    return WindowDataset(values, np.arange(2, n), labels, context=3)


@pytest.mark.parametrize("make", [LogisticBaseline, lambda: LightGBMBaseline(n_estimators=40)])
def test_an_uninformative_balanced_model_predicts_the_training_frequencies(make: object, tmp_path: Path) -> None:
    train, test = noise_dataset(4000, seed=1), noise_dataset(2000, seed=2)
    model = make().fit(train)  # type: ignore[operator]
    corrected = model.predict_proba(test.windows())
    prior = model.train_prior
    assert prior is not None
    np.testing.assert_allclose(prior, class_frequencies(train.labels, 3))
    np.testing.assert_allclose(corrected.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(corrected.mean(axis=0), FREQUENCIES, atol=0.05)

    model.train_prior = None  # what the balanced fit alone predicts: near one third each
    raw = model.predict_proba(test.windows())
    assert raw[:, 1].mean() > 0.2  # "flat" inflated from 0.1
    rates = class_frequencies(train.labels, 3)
    base = log_loss(test.labels, np.tile(rates, (len(test), 1)))
    assert log_loss(test.labels, corrected) < log_loss(test.labels, raw)
    assert log_loss(test.labels, corrected) < base + 0.02  # noise: about the base rates, never far worse

    model.train_prior = prior  # the correction survives a save and a load (skops, no pickle)
    persist.dump(model, tmp_path / "model.skops", trusted=BASELINE_TRUSTED_TYPES)
    loaded = persist.load(tmp_path / "model.skops", trusted=BASELINE_TRUSTED_TYPES, expect=type(model))
    np.testing.assert_array_equal(loaded.predict_proba(test.windows()), corrected)


def test_an_unbalanced_fit_is_not_shifted() -> None:
    model = LogisticBaseline(balanced=False).fit(noise_dataset(3000, seed=3))
    assert model.train_prior is None


def test_the_skill_p_value_is_the_one_sided_diebold_mariano_test() -> None:
    rng = np.random.default_rng(4)
    n = 600
    y = rng.choice(3, size=n, p=FREQUENCIES)
    rates = FREQUENCIES
    base = np.tile(rates, (n, 1))
    assert skill_p_value(y, base, rates) == 1.0  # the base rates themselves: no difference

    informed = np.full((n, 3), 0.1)
    informed[np.arange(n), y] = 0.8  # right 80 % of the mass every time
    assert skill_p_value(y, informed, rates) < 1e-6
    wrong = np.full((n, 3), 0.45)
    wrong[np.arange(n), y] = 0.1
    assert skill_p_value(y, wrong, rates) > 1 - 1e-6

    noisy = np.clip(base + rng.normal(0, 0.05, size=(n, 3)), 0.01, 1)
    noisy /= noisy.sum(axis=1, keepdims=True)
    horizon = 24  # overlapping 24-bar labels: at least 23 Newey-West lags
    two_sided = diebold_mariano(sample_log_losses(y, noisy), sample_log_losses(y, base), horizon=horizon)
    expected = two_sided.p_value / 2 if two_sided.mean_difference < 0 else 1 - two_sided.p_value / 2
    assert skill_p_value(y, noisy, rates, horizon=horizon) == pytest.approx(expected, abs=1e-12)
    assert newey_west_lags(100) == 4 and newey_west_lags(10_000) == 11  # floor(4 (n/100)^(2/9))


def test_no_skill_needs_a_significant_improvement() -> None:
    hair_below = Skill(1.0937, 1.0941, "validation", p_value=0.43)  # a LightGBM on random features
    assert hair_below.no_skill and not hair_below.worse
    line = no_skill_line("lightgbm-X", hair_below)
    assert line is not None and "not significantly better than" in line and "p = 0.43" in line
    assert not Skill(0.752, 0.853, "validation", p_value=0.006).no_skill
    worse = Skill(0.998, 0.853, "validation", p_value=0.999)
    assert worse.no_skill and "is worse than" in (no_skill_line("logreg-X", worse) or "")
    # recorded before the p-value was kept: the losses alone decide, as they did
    assert not Skill(0.80, 0.85, "validation").no_skill and Skill(0.86, 0.85, "validation").no_skill
