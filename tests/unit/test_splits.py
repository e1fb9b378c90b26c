"""Purged, embargoed walk-forward splits (property tests), and causal windows over the feature matrix."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartmarket.models.datasets import WindowDataset, assign_groups, complete_windows, training_statistics
from smartmarket.models.splits import Split, WalkForwardConfig, chronological_split, walk_forward


def random_t1(rng: np.random.Generator, n: int, horizon: int) -> np.ndarray:
    """Label windows ending 1…horizon bars later; none for the last bars or a few random ones."""
    t1 = np.arange(n) + rng.integers(1, horizon + 1, n)
    t1[np.arange(n) + horizon >= n] = -1
    t1[rng.random(n) < 0.05] = -1
    return t1


def assert_no_leak(split: Split, t1: np.ndarray) -> None:
    train, val, test = split.train, split.validation, split.test
    assert (t1[np.concatenate([train, val, test])] >= 0).all()
    # No training label window [t, t1] reaches any evaluated sample's window (which starts at that sample's t).
    evaluated = np.concatenate([val, test])
    if train.size and evaluated.size:
        assert t1[train].max() < evaluated.min()
    if val.size and test.size:
        assert t1[val].max() < test.min()
    # Periods are ordered and the embargo gap holds no sample.
    (tr0, tr1), (va0, va1), (te0, te1) = split.train_period, split.validation_period, split.test_period
    assert tr1 <= va0 and va1 <= te0
    if train.size:
        assert train.min() >= tr0 and train.max() < tr1
    if val.size:
        assert val.min() >= va0 and val.max() < va1
    if test.size:
        assert test.min() >= te0 and test.max() < te1
    first_evaluated = va0 if va1 > va0 else te0
    assert first_evaluated - tr1 >= split.embargo
    if va1 > va0:
        assert te0 - va1 >= split.embargo


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(50, 2000),
    horizon=st.integers(1, 60),
    train=st.integers(1, 600),
    validation=st.integers(0, 200),
    test=st.integers(1, 300),
    step=st.one_of(st.none(), st.integers(1, 300)),
    embargo=st.integers(0, 50),
    expanding=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_walk_forward_never_trains_on_a_label_window_that_overlaps_evaluation(
    n: int, horizon: int, train: int, validation: int, test: int, step: int | None, embargo: int, expanding: bool,
    seed: int,
) -> None:  # fmt: skip
    t1 = random_t1(np.random.default_rng(seed), n, horizon)
    cfg = WalkForwardConfig(train, validation, test, step=step, embargo=embargo, expanding=expanding)
    folds = walk_forward(t1, cfg)
    for split in folds:
        assert_no_leak(split, t1)
        if expanding:
            assert split.train_period[0] == 0
        else:
            assert split.train_period[1] - split.train_period[0] == train
    starts = [s.test_period[0] for s in folds]
    assert starts == sorted(starts) and all(b - a == (step or test) for a, b in itertools.pairwise(starts))


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(300, 3000),
    horizon=st.integers(1, 40),
    validation=st.floats(0.0, 0.3),
    test=st.floats(0.05, 0.3),
    embargo=st.integers(0, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_chronological_split_is_purged(
    n: int, horizon: int, validation: float, test: float, embargo: int, seed: int
) -> None:
    t1 = random_t1(np.random.default_rng(seed), n, horizon)
    split = chronological_split(t1, validation=validation, test=test, embargo=embargo)
    assert_no_leak(split, t1)
    assert split.train.size > 0 and split.test.size > 0


def test_purging_drops_exactly_the_overlapping_training_samples() -> None:
    t1 = np.arange(100) + 10  # every label window is 10 bars long
    t1[90:] = -1
    first, last = walk_forward(t1, WalkForwardConfig(train=50, validation=0, test=20, embargo=0))
    split = first
    assert split.test_period == (50, 70)
    assert split.train.max() == 39  # bar 40's window [40, 50] touches the first test bar
    assert split.train.min() == 0
    assert last.test_period == (70, 90) and last.train_period == (20, 70) and last.train.max() == 59
    (only,) = walk_forward(t1, WalkForwardConfig(train=50, validation=0, test=20, embargo=0, max_folds=1))
    assert only.fold == 0 and only.test_period == last.test_period
    embargoed = walk_forward(t1, WalkForwardConfig(train=50, validation=0, test=20, embargo=5))[0]
    assert embargoed.test_period == (55, 75) and embargoed.train_period == (0, 50) and embargoed.train.max() == 44


def test_windows_hold_only_rows_up_to_the_sample_bar() -> None:
    values = np.arange(40, dtype=np.float32).reshape(20, 2)  # row r = (2r, 2r + 1)
    ds = WindowDataset(values, np.array([4, 10, 19]), np.array([0, 1, 2]), context=5)
    windows = ds.windows()
    assert windows.shape == (3, 5, 2)
    np.testing.assert_array_equal(windows[1], values[6:11])  # rows 6 … 10 for the sample at bar 10
    assert windows[0, -1, 0] == 8.0
    with pytest.raises(ValueError):
        WindowDataset(values, np.array([3]), np.array([0]), context=5)  # needs rows −1 … 3


def test_complete_windows_and_training_statistics_ignore_later_rows() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(100, 3)).astype(np.float32)
    values[10, 1] = np.nan
    ok = complete_windows(values, 5)
    assert not ok[:4].any() and not ok[10:15].any() and ok[15] and ok[9]
    train = WindowDataset(values, np.arange(20, 60), np.zeros(40, dtype=np.int64), context=5)
    mean, std = training_statistics(train)
    np.testing.assert_allclose(mean, values[16:60].mean(axis=0), rtol=1e-5)
    changed = values.copy()
    changed[60:] += 1000.0  # validation/test rows must not move the training statistics
    mean2, std2 = training_statistics(WindowDataset(changed, np.arange(20, 60), np.zeros(40, dtype=np.int64), 5))
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_array_equal(std, std2)


def test_feature_groups_from_name_patterns() -> None:
    columns = ["close", "rsi_14", "volume", "obv", "vwap_20", "atr_14", "rvol_20", "bb_width_20_2", "bb_upper_20_2"]
    groups = assign_groups(columns)
    assert [columns[i] for i in groups["price"]] == ["close", "rsi_14", "bb_upper_20_2"]
    assert [columns[i] for i in groups["volume"]] == ["volume", "obv", "vwap_20"]
    assert [columns[i] for i in groups["volatility"]] == ["atr_14", "rvol_20", "bb_width_20_2"]
    custom = assign_groups(columns, {"volatility": [r"^rsi"], "price": [r"."]})
    assert [columns[i] for i in custom["volatility"]] == ["rsi_14"] and custom["volume"] == ()
    with pytest.raises(ValueError):
        assign_groups(columns, {"sentiment": ["x"]})
