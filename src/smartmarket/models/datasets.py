"""Windows over the feature matrix, feature groups, and statistics fitted on training rows only.

The feature matrix is ``T × F`` (one row per candle, causal features). The sample at bar ``t`` sees the window
of rows ``t−context+1 … t`` — bars ≤ t only. Windows are views (``Tensor.unfold``), materialised per batch, so a
1024-bar context over 60k bars costs no extra memory.

Normalisation, two layers (see :mod:`smartmarket.models.networks`): a per-feature scaler whose mean/std are
fitted on the rows the *training* windows cover (:func:`training_statistics`, never validation/test rows), and,
optionally in the network, a RevIN-style per-window normalisation with a learnable affine.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

GROUPS: tuple[str, ...] = ("price", "volume", "volatility")

DEFAULT_GROUP_PATTERNS: dict[str, tuple[str, ...]] = {
    # Checked in this order; the first group with a matching pattern wins; unmatched columns are "price".
    "volume": (r"volume", r"^obv", r"^vrel", r"^vwap", r"^mfi", r"^taker", r"^trades"),
    "volatility": (
        r"^xs_vol_rank",
        r"^atr",
        r"^natr",
        r"^rvol",
        r"^bb_width",
        r"^chop",
        r"volatil",
        r"^std",
        r"^range",
        r"_vol$",
    ),
    "price": (r".",),
}


def assign_groups(
    columns: Sequence[str], patterns: Mapping[str, Sequence[str]] | None = None
) -> dict[str, tuple[int, ...]]:
    """Column indices per group (every group of :data:`GROUPS` present, maybe empty). Patterns are regexes."""
    patterns = DEFAULT_GROUP_PATTERNS if patterns is None else patterns
    unknown = set(patterns) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown feature groups {sorted(unknown)}: use {GROUPS}")
    compiled = {g: [re.compile(p, re.IGNORECASE) for p in pats] for g, pats in patterns.items()}
    out: dict[str, list[int]] = {g: [] for g in GROUPS}
    for i, name in enumerate(columns):
        group = next((g for g, regexes in compiled.items() if any(r.search(name) for r in regexes)), "price")
        out[group].append(i)
    return {g: tuple(idx) for g, idx in out.items()}


def feature_matrix(features: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]]:
    """The float32 ``T × F`` matrix and its column names (a ``ts`` column, if any, is left out)."""
    columns = tuple(str(c) for c in features.columns if c != "ts")
    if not columns:
        raise ValueError("the feature frame has no feature column")
    values = features[list(columns)].to_numpy(dtype=np.float32, copy=True)
    return values, columns


def complete_windows(values: np.ndarray, context: int) -> np.ndarray:
    """Boolean per bar: a full window of ``context`` rows ends here and every value in it is finite."""
    finite_row = np.isfinite(values).all(axis=1)
    bad = np.concatenate([[0], np.cumsum(~finite_row)])
    n = len(values)
    ok = np.zeros(n, dtype=bool)
    if n >= context:
        ends = np.arange(context - 1, n)
        ok[ends] = (bad[ends + 1] - bad[ends + 1 - context]) == 0
    return ok


class WindowDataset:
    """Samples ``(window ending at bar t, label)`` over a shared feature matrix; windows built on demand."""

    def __init__(self, values: np.ndarray, samples: np.ndarray, labels: np.ndarray, context: int) -> None:
        values = np.ascontiguousarray(values, dtype=np.float32)
        samples = np.asarray(samples, dtype=np.int64)
        labels = np.asarray(labels)
        if values.ndim != 2:
            raise ValueError("values must be a T × F matrix")
        if len(samples) != len(labels):
            raise ValueError("one label per sample")
        if samples.size and (samples.min() < context - 1 or samples.max() >= len(values)):
            raise ValueError(f"every sample bar needs {context - 1} earlier rows and must lie inside the matrix")
        if labels.size and not np.isfinite(labels.astype(np.float64)).all():
            raise ValueError("samples without a label cannot be in a dataset")
        self.values = values
        self.samples = samples
        self.labels = labels.astype(np.int64)
        self.context = int(context)
        with warnings.catch_warnings():  # a read-only matrix (a memory map, a frame's view) is only ever read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
            self._tensor = torch.from_numpy(values)

    def __len__(self) -> int:
        return int(self.samples.size)

    @property
    def n_features(self) -> int:
        return int(self.values.shape[1])

    def batch(self, positions: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
        """Windows ``(B, context, F)`` for the samples at ``positions`` (all samples when None)."""
        bars = self.samples if positions is None else self.samples[np.asarray(positions)]
        starts = torch.from_numpy(bars - (self.context - 1))
        view = self._tensor.unfold(0, self.context, 1)  # (T-context+1, F, context), no copy
        return view[starts].transpose(1, 2).contiguous()

    def windows(self, positions: np.ndarray | None = None) -> np.ndarray:
        return self.batch(positions).numpy()

    def targets(self, positions: np.ndarray | None = None) -> torch.Tensor:
        labels = self.labels if positions is None else self.labels[np.asarray(positions)]
        return torch.from_numpy(labels)

    def subset(self, positions: np.ndarray) -> WindowDataset:
        positions = np.asarray(positions)
        return WindowDataset(self.values, self.samples[positions], self.labels[positions], self.context)

    def with_context(self, context: int) -> WindowDataset:
        """The same samples seen through a different window length."""
        return WindowDataset(self.values, self.samples, self.labels, context)

    def class_counts(self, n_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=n_classes)


def training_statistics(dataset: WindowDataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over the rows the training windows cover.

    Only rows inside some training window count: on one symbol's contiguous samples that is every row from the
    first window's start to the last sample; on pooled symbols (rows of several symbols stacked, see
    :mod:`smartmarket.models.universe`) it leaves out the rows between them — another symbol's later,
    evaluated rows never reach the statistics."""
    if len(dataset) == 0:
        raise ValueError("cannot fit statistics on an empty training set")
    starts = dataset.samples - dataset.context + 1
    edges = np.zeros(len(dataset.values) + 1, dtype=np.int64)
    np.add.at(edges, starts, 1)
    np.add.at(edges, dataset.samples + 1, -1)
    covered = np.cumsum(edges[:-1]) > 0
    rows = dataset.values[covered].astype(np.float64)
    rows = rows[np.isfinite(rows).all(axis=1)]
    mean = rows.mean(axis=0)
    std = rows.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


__all__ = [
    "DEFAULT_GROUP_PATTERNS",
    "GROUPS",
    "WindowDataset",
    "assign_groups",
    "complete_windows",
    "feature_matrix",
    "training_statistics",
]
