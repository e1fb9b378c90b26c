"""When is an outcome known? The one rule every fitting step of the signal system obeys.

A *sample* is a decision at bar ``t`` (member probabilities, regime, ... computed from bars ≤ t) whose outcome (the
label) became known at the close of bar ``t1 ≥ t`` — the bar where its triple barrier was touched or its horizon
ended (``t1 = -1``: not known yet). The outcome may be used for a decision at bar ``d`` only when ``t1 < d``: it was
known at the close of an earlier bar. A *purge* gap of ``g`` bars tightens this to ``t1 < d - g`` (``t1 + g < d``).

Everything here works in bar positions (integers), like ``smartmarket.models.labels``. Class codes are those of
the labels module: ``DOWN=0, FLAT=1, UP=2``.

Append-invariance: ``smartmarket.models.labels`` leaves a sample whose full window runs past the end of the data
unlabelled even if a barrier was already touched. With more data that sample gains a ``t1`` *inside* the old
span, so a fit at an old decision bar could change. When results must not move as data is appended, pass the
conservative availability ``outcome_known_at(t, t1, horizon)`` (``t + horizon``, the bar where the label became
final) instead of the touch bar.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

DOWN, FLAT, UP = 0, 1, 2  # = smartmarket.models.labels (not imported: that package pulls in torch)
N_CLASSES = 3

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def known_mask(t1: npt.ArrayLike, decision_bar: int, *, purge: int = 0) -> BoolArray:
    """Which samples' outcomes may be used for a decision at ``decision_bar``: ``0 ≤ t1 < decision_bar - purge``."""
    if purge < 0:
        raise ValueError("purge must be ≥ 0 bars")
    end = np.asarray(t1, dtype=np.int64)
    return (end >= 0) & (end < decision_bar - purge)


def outcome_known_at(t: npt.ArrayLike, t1: npt.ArrayLike, horizon: int) -> IntArray:
    """Conservative availability: ``t + horizon`` for labelled samples (``-1`` stays ``-1``); see the module doc."""
    bars = np.asarray(t, dtype=np.int64)
    end = np.asarray(t1, dtype=np.int64)
    return np.where(end >= 0, np.maximum(end, bars + horizon), -1).astype(np.int64)


def causal_fit_indices(
    t: npt.ArrayLike,
    t1: npt.ArrayLike,
    decision_bar: int,
    *,
    purge: int = 0,
    lookback: int | None = None,
    start_bar: int | None = None,
) -> IntArray:
    """Indices (sorted by ``t``) of the samples a fit at ``decision_bar`` may use.

    ``lookback`` (bars) keeps a rolling window ``t ≥ decision_bar - lookback`` (None: expanding from the first
    sample); ``start_bar`` drops samples with ``t < start_bar`` (e.g. the bars a member was trained on).
    """
    bars = np.asarray(t, dtype=np.int64)
    ok = known_mask(t1, decision_bar, purge=purge)
    if lookback is not None:
        ok &= bars >= decision_bar - lookback
    if start_bar is not None:
        ok &= bars >= start_bar
    idx = np.flatnonzero(ok)
    return idx[np.argsort(bars[idx], kind="stable")].astype(np.int64)


def chronological_slices(
    t: npt.ArrayLike, t1: npt.ArrayLike, index: npt.ArrayLike, fractions: tuple[float, ...], *, purge: int = 0
) -> list[IntArray]:
    """Cut ``index`` (samples sorted by ``t``) into consecutive slices by ``fractions`` (which sum to ≤ 1).

    Each slice is purged against the next: a sample stays only if ``t1 + purge <`` the first bar of every later
    slice, so no slice ever holds an outcome that was unknown when the next slice starts.
    """
    if any(f <= 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ValueError("fractions must be positive and sum to at most 1")
    bars = np.asarray(t, dtype=np.int64)
    end = np.asarray(t1, dtype=np.int64)
    idx = np.asarray(index, dtype=np.int64)
    bounds = np.round(np.cumsum((0.0, *fractions)) * idx.size).astype(np.int64)
    slices = [idx[a:b] for a, b in itertools.pairwise(bounds)]
    for k in range(len(slices) - 1):
        later = [s for s in slices[k + 1 :] if s.size]
        if later:
            next_start = int(bars[later[0]].min())
            slices[k] = slices[k][end[slices[k]] + purge < next_start]
    return slices


@dataclass(frozen=True)
class FitBlock:
    """A refit: the model is fitted at ``decision_bar`` from ``fit_index`` and decides for bars in ``[start, stop)``."""

    decision_bar: int
    stop: int
    fit_index: IntArray

    @property
    def start(self) -> int:
        return self.decision_bar


def fit_blocks(
    t: npt.ArrayLike,
    t1: npt.ArrayLike,
    *,
    refit_every: int,
    first_decision_bar: int,
    purge: int = 0,
    lookback: int | None = None,
    start_bar: int | None = None,
    origin: int = 0,
) -> Iterator[FitBlock]:
    """Rolling (``lookback``) or expanding refits at fixed bars ``origin + k·refit_every ≥ first_decision_bar``.

    Block boundaries are anchored at ``origin`` (not at the data end), so appending samples never moves an
    earlier block or changes what it was fitted on. Blocks run until the last sample's bar.
    """
    if refit_every < 1:
        raise ValueError("refit_every must be ≥ 1 bar")
    bars = np.asarray(t, dtype=np.int64)
    if bars.size == 0:
        return
    first = origin + max(0, -(-(first_decision_bar - origin) // refit_every)) * refit_every
    last_bar = int(bars.max())
    for start in range(first, last_bar + 1, refit_every):
        index = causal_fit_indices(bars, t1, start, purge=purge, lookback=lookback, start_bar=start_bar)
        yield FitBlock(decision_bar=start, stop=start + refit_every, fit_index=index)


@dataclass(frozen=True)
class SignalSamples:
    """Aligned per-sample arrays: what the signal system learns from and decides on.

    ``t`` decision bar; ``t1`` bar the outcome became known (-1 unknown); ``y`` class (NaN unknown);
    ``members`` raw or calibrated member scores, each ``(N, 3)`` class probabilities or ``(N,)`` P(up);
    ``regimes`` regime names (``"unknown"`` while warming up); ``extra`` optional ``(N, F)`` features for the
    confidence model; ``ts`` optional epoch-ms timestamps carried into the signals.
    """

    t: IntArray
    t1: IntArray
    y: FloatArray
    members: Mapping[str, FloatArray]
    regimes: npt.NDArray[np.str_]
    extra: FloatArray | None = None
    ts: IntArray | None = None

    def __post_init__(self) -> None:
        n = len(self.t)
        for name, arr in (("t1", self.t1), ("y", self.y), ("regimes", self.regimes)):
            if len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} rows, t has {n}")
        for name, scores in self.members.items():
            if len(scores) != n:
                raise ValueError(f"member {name!r} has {len(scores)} rows, t has {n}")
        if self.extra is not None and (self.extra.ndim != 2 or len(self.extra) != n):
            raise ValueError(f"extra must be (N, F) with N = {n}")
        if self.ts is not None and len(self.ts) != n:
            raise ValueError(f"ts has {len(self.ts)} rows, t has {n}")

    @classmethod
    def build(
        cls,
        t: npt.ArrayLike,
        t1: npt.ArrayLike,
        y: npt.ArrayLike,
        members: Mapping[str, npt.ArrayLike],
        regimes: npt.ArrayLike | None = None,
        extra: npt.ArrayLike | None = None,
        ts: npt.ArrayLike | None = None,
    ) -> SignalSamples:
        """Coerce dtypes; ``regimes`` default to one regime called ``"all"``."""
        n = len(np.asarray(t))
        reg = np.full(n, "all") if regimes is None else np.asarray(regimes).astype(str)
        return cls(
            t=np.asarray(t, dtype=np.int64),
            t1=np.asarray(t1, dtype=np.int64),
            y=np.asarray(y, dtype=np.float64),
            members={k: np.asarray(v, dtype=np.float64) for k, v in members.items()},
            regimes=reg,
            extra=None if extra is None else np.asarray(extra, dtype=np.float64).reshape(n, -1),
            ts=None if ts is None else np.asarray(ts, dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.t)

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(self.members)

    def labels(self) -> IntArray:
        """``y`` as integer classes; raises if any outcome is unknown (fit only on known samples)."""
        if np.isnan(self.y).any():
            raise ValueError("samples with unknown outcomes cannot be used for fitting")
        return self.y.astype(np.int64)

    def take(self, index: npt.ArrayLike) -> SignalSamples:
        idx = np.asarray(index, dtype=np.int64)
        return SignalSamples(
            t=self.t[idx],
            t1=self.t1[idx],
            y=self.y[idx],
            members={k: v[idx] for k, v in self.members.items()},
            regimes=self.regimes[idx],
            extra=None if self.extra is None else self.extra[idx],
            ts=None if self.ts is None else self.ts[idx],
        )

    def known_before(self, decision_bar: int, *, purge: int = 0) -> SignalSamples:
        """The samples a decision at ``decision_bar`` may learn from (sorted by ``t``)."""
        return self.take(causal_fit_indices(self.t, self.t1, decision_bar, purge=purge))


T = TypeVar("T")


@dataclass(order=True)
class _Pending(Generic[T]):
    t1: int
    seq: int
    item: T = field(compare=False)


class OutcomeQueue(Generic[T]):
    """Outcomes waiting to become usable: ``push`` when resolved (with its ``t1``), ``release(d)`` at decision bar d.

    ``release`` returns, in ``t1`` order, every pending item with ``t1 + purge < d`` — the live/backtest gate for
    online updates (an outcome resolved early in a backtest still waits until its bar has passed).
    """

    def __init__(self, purge: int = 0) -> None:
        self.purge = purge
        self._heap: list[_Pending[T]] = []
        self._seq = 0

    def push(self, t1: int, item: T) -> None:
        if t1 < 0:
            raise ValueError("an outcome without a known bar (t1 < 0) cannot be queued")
        heapq.heappush(self._heap, _Pending(int(t1), self._seq, item))
        self._seq += 1

    def release(self, decision_bar: int) -> list[T]:
        out: list[T] = []
        while self._heap and self._heap[0].t1 + self.purge < decision_bar:
            out.append(heapq.heappop(self._heap).item)
        return out

    def __len__(self) -> int:
        return len(self._heap)


__all__ = [
    "DOWN",
    "FLAT",
    "N_CLASSES",
    "UP",
    "BoolArray",
    "FitBlock",
    "FloatArray",
    "IntArray",
    "OutcomeQueue",
    "SignalSamples",
    "causal_fit_indices",
    "chronological_slices",
    "fit_blocks",
    "known_mask",
    "outcome_known_at",
]
