"""Chronological splits with purging and an embargo: walk-forward folds and a single hold-out split.

A fold lays out, in bars: ``train period | embargo | validation period | embargo | test period``. Samples are
bars with a label (``t1 >= 0``). Every sample's label window is ``[t, t1]``. The rules:

* train samples: ``t`` inside the train period and ``t1 < validation start`` (and ``< test start``): their
  labels end before the first evaluated bar — *purging*;
* validation samples: ``t`` inside the validation period and ``t1 < test start`` (purged against the test);
* test samples: every labelled ``t`` inside the test period;
* the *embargo* gap between periods holds no sample at all, so features of the last training bars (which
  overlap the first evaluated bars through their look-back) are kept further away.

Walk-forward: the test period moves forward by ``step`` bars each fold; the train period either rolls (fixed
length ``train``) or expands from bar 0.

Pooled samples (several symbols, :mod:`smartmarket.models.universe`): ``positions`` gives each sample's place on
a shared timeline (the sorted distinct timestamps of every symbol) and ``t1`` the timeline position where its
label window ends. Periods, purging and the embargo are then laid out *by timestamp*: a fold's training holds
no sample of any symbol whose label window reaches the first evaluated timestamp. Without ``positions`` sample
``i`` sits at bar ``i`` (one symbol), as before. The returned ``train``/``validation``/``test`` arrays are
always sample indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Split:
    """One fold: sample indices (bar positions) and the periods ``[start, stop)`` they were drawn from."""

    fold: int
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    train_period: tuple[int, int]
    validation_period: tuple[int, int]
    test_period: tuple[int, int]
    embargo: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "train_period": list(self.train_period),
            "validation_period": list(self.validation_period),
            "test_period": list(self.test_period),
            "embargo": self.embargo,
            "n_train": int(self.train.size),
            "n_validation": int(self.validation.size),
            "n_test": int(self.test.size),
        }


@dataclass(frozen=True)
class WalkForwardConfig:
    """Walk-forward layout in bars. ``step`` defaults to ``test``; ``max_folds`` keeps the most recent folds."""

    train: int
    validation: int
    test: int
    step: int | None = None
    embargo: int = 0
    expanding: bool = False
    max_folds: int | None = None

    def __post_init__(self) -> None:
        if self.train < 1 or self.test < 1 or self.validation < 0 or self.embargo < 0:
            raise ValueError("train and test must be ≥ 1 bar; validation and embargo ≥ 0")
        if self.step is not None and self.step < 1:
            raise ValueError("step must be ≥ 1 bar")


def _labelled(t1: np.ndarray, eligible: np.ndarray | None) -> np.ndarray:
    ok = np.asarray(t1) >= 0
    if eligible is not None:
        ok &= np.asarray(eligible, dtype=bool)
    return ok


def make_split(
    t1: np.ndarray,
    train_period: tuple[int, int],
    validation_period: tuple[int, int],
    test_period: tuple[int, int],
    *,
    embargo: int = 0,
    fold: int = 0,
    eligible: np.ndarray | None = None,
    positions: np.ndarray | None = None,
) -> Split:
    """Select purged samples for explicit periods (each ``[start, stop)`` in bars, in time order).

    ``positions``: each sample's timeline position (default: sample ``i`` at bar ``i``); see the module doc."""
    (tr0, tr1), (va0, va1), (te0, te1) = train_period, validation_period, test_period
    if not (tr0 <= tr1 <= va0 <= va1 <= te0 <= te1):
        raise ValueError("periods must be ordered: train ≤ validation ≤ test")
    t1 = np.asarray(t1, dtype=np.int64)
    index = np.arange(len(t1))
    bars = _positions(t1, positions)
    ok = _labelled(t1, eligible)
    first_evaluated = va0 if va1 > va0 else te0
    train = index[ok & (bars >= tr0) & (bars < tr1) & (t1 < first_evaluated)]
    validation = index[ok & (bars >= va0) & (bars < va1) & (t1 < te0)]
    test = index[ok & (bars >= te0) & (bars < te1)]
    return Split(fold, train, validation, test, (tr0, tr1), (va0, va1), (te0, te1), embargo)


def _positions(t1: np.ndarray, positions: np.ndarray | None) -> np.ndarray:
    if positions is None:
        return np.arange(len(t1))
    positions = np.asarray(positions, dtype=np.int64)
    if positions.shape != np.shape(t1):
        raise ValueError("one timeline position per sample")
    return positions


def walk_forward(
    t1: np.ndarray,
    config: WalkForwardConfig,
    *,
    eligible: np.ndarray | None = None,
    positions: np.ndarray | None = None,
) -> list[Split]:
    """Walk-forward folds over ``len(t1)`` bars (or the timeline of ``positions``); folds run oldest first.

    Empty when the data is too short."""
    bars = _positions(t1, positions)
    n = int(bars.max()) + 1 if bars.size else 0
    step = config.step or config.test
    gap_val = config.embargo if config.validation > 0 else 0
    test_start = config.train + gap_val + config.validation + config.embargo
    folds: list[Split] = []
    while test_start + config.test <= n:
        va1 = test_start - config.embargo if config.validation > 0 else test_start
        va0 = va1 - config.validation
        tr1 = va0 - gap_val if config.validation > 0 else test_start - config.embargo
        tr0 = 0 if config.expanding else max(0, tr1 - config.train)
        folds.append(
            make_split(
                t1,
                (tr0, tr1),
                (va0, va1),
                (test_start, test_start + config.test),
                embargo=config.embargo,
                fold=len(folds),
                eligible=eligible,
                positions=positions,
            )
        )
        test_start += step
    if config.max_folds is not None:
        folds = folds[-config.max_folds :]
        folds = [_renumber(s, i) for i, s in enumerate(folds)]
    return folds


def _renumber(split: Split, fold: int) -> Split:
    return Split(
        fold,
        split.train,
        split.validation,
        split.test,
        split.train_period,
        split.validation_period,
        split.test_period,
        split.embargo,
    )


def chronological_split(
    t1: np.ndarray,
    *,
    validation: float = 0.15,
    test: float = 0.15,
    embargo: int = 0,
    eligible: np.ndarray | None = None,
    positions: np.ndarray | None = None,
) -> Split:
    """One hold-out fold: the labelled span cut by fractions into train, validation and test (oldest first)."""
    if not (0 <= validation < 1 and 0 < test < 1 and validation + test < 1):
        raise ValueError("validation and test are fractions with validation + test < 1")
    bars = _positions(t1, positions)
    labelled = bars[_labelled(t1, eligible)]
    if labelled.size == 0:
        raise ValueError("no labelled sample to split")
    first, stop = int(labelled.min()), int(labelled.max()) + 1
    span = stop - first
    n_test = max(1, round(span * test))
    n_val = round(span * validation)
    te0 = stop - n_test
    va1 = te0 - embargo if n_val > 0 else te0
    va0 = va1 - n_val
    tr1 = va0 - embargo if n_val > 0 else te0 - embargo
    if tr1 <= first:
        raise ValueError(f"{span} labelled bars are too few for this split with an embargo of {embargo}")
    return make_split(
        t1, (first, tr1), (va0, va1), (te0, stop), embargo=embargo, eligible=eligible, positions=positions
    )


__all__ = ["Split", "WalkForwardConfig", "chronological_split", "make_split", "walk_forward"]
