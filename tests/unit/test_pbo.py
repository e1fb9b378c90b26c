"""Probability of backtest overfitting (CSCV): a hand-checked split, a planted edge, pure noise, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from smartmarket.analytics.pbo import block_sums, pbo_from_blocks, probability_of_backtest_overfitting
from smartmarket.core.errors import ValidationError


def test_hand_checked_two_blocks() -> None:
    """Two blocks of three bars → two splits (in-sample block 0, then block 1), checked by hand.

    Per-bar Sharpe by block: A +2 then -2; C -2 then +2; B either steady at 5 or steady at 1.155.
    """
    a = [0.03, 0.01, 0.02, -0.02, -0.01, -0.03]
    c = [-0.02, -0.03, -0.01, 0.03, 0.02, 0.01]
    strong_b = [0.004, 0.006, 0.005, 0.004, 0.006, 0.005]
    weak_b = [0.001, 0.004, 0.001, 0.001, 0.004, 0.001]
    # B wins in sample in both splits and is best of 3 out of sample: ω = 3/4, logit ln 3 > 0, PBO 0
    result = probability_of_backtest_overfitting(np.array([a, strong_b, c]).T, n_blocks=2)
    assert result.n_splits == 2
    np.testing.assert_allclose(result.logits, [np.log(3.0), np.log(3.0)])
    assert result.pbo == 0.0 and result.prob_oos_loss == 0.0
    # with a weak B, A wins block 0 and is last in block 1 (and C the reverse): ω = 1/4, logit ln(1/3), PBO 1
    result = probability_of_backtest_overfitting(np.array([a, weak_b, c]).T, n_blocks=2)
    np.testing.assert_allclose(result.logits, [np.log(1 / 3), np.log(1 / 3)])
    np.testing.assert_allclose(result.is_sharpe, [2.0, 2.0])
    np.testing.assert_allclose(result.oos_sharpe, [-2.0, -2.0])
    assert result.pbo == 1.0 and result.prob_oos_loss == 1.0


def test_planted_edge_gives_low_pbo() -> None:
    rng = np.random.default_rng(3)
    returns = rng.normal(0.0, 0.01, (4_000, 40))
    returns[:, 11] += 0.0015  # one configuration with real skill (per-bar Sharpe 0.15)
    result = probability_of_backtest_overfitting(returns, n_blocks=16)
    assert result.n_splits == 12_870
    assert result.pbo < 0.05
    assert result.prob_oos_loss < 0.05


def test_pure_noise_gives_pbo_near_half_or_above() -> None:
    values = []
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        values.append(probability_of_backtest_overfitting(rng.normal(0.0, 0.01, (2_000, 30)), n_blocks=10).pbo)
    assert np.mean(values) > 0.4
    assert min(values) > 0.1  # never the near-zero a real edge gives


def test_block_sums_and_refusals() -> None:
    r = np.arange(10.0).reshape(5, 2)
    sums = block_sums(r, 2)  # rows 0-2 in block 0 (j * 2 // 5), rows 3-4 in block 1
    np.testing.assert_allclose(sums[0], [[3, 0 + 2 + 4, 0 + 4 + 16], [2, 6 + 8, 36 + 64]])
    with pytest.raises(ValidationError, match="even"):
        pbo_from_blocks(np.ones((3, 5, 3)))
    with pytest.raises(ValidationError, match="at least 2 trials"):
        pbo_from_blocks(np.ones((1, 4, 3)))
    with pytest.raises(ValidationError, match="splits"):
        pbo_from_blocks(np.ones((3, 24, 3)), max_splits=1000)
