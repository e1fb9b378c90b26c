"""Confidence: the calibrated probability that the ensemble's signal is right.

The *signal* is the most likely class of the ensemble: up → long (+1), down → short (−1), flat → flat (0, no
confidence). It is *right* (a *hit*) when the outcome is the signalled class: with triple-barrier labels, the
take-profit barrier was touched first.

Two candidate confidences, both for non-flat signals only:

* ``plain`` — the ensemble's (calibrated) probability of the signalled class;
* ``meta`` — meta-labelling (López de Prado, *Advances in Financial Machine Learning*, ch. 3): a secondary
  classifier (standardised logistic regression, or LightGBM) predicting the hit from the signal's side and
  probability, member agreement (vote share, weight-weighted vote share, entropy of the ensemble), the signal's
  historical hit rate *counted only from outcomes known at the decision bar* (per regime, smoothed), regime
  one-hots and optional caller features.

``ConfidenceModel.fit`` lets the data decide: the past signals are cut chronologically into a training part and a
later hold-out part (the training part purged: ``t1 + purge <`` the first hold-out bar); the meta classifier learns
on the training part; both confidences are scored on the hold-out (Brier, ECE). Meta wins only when its mean
per-signal Brier improvement exceeds ``min_gain_se`` (1) standard errors of that paired difference — the simpler
plain probability keeps the seat otherwise — and the choice is recorded in ``ConfidenceModel.choice``. The meta
model is not refitted on the hold-out, so the hold-out confidences (``holdout_confidence``, ``holdout_hit``) stay
out-of-sample for choosing strength thresholds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Self

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from smartmarket.models.persist import LightGBMText, as_lightgbm_text
from smartmarket.signals.calibration import brier_score, expected_calibration_error
from smartmarket.signals.outcomes import DOWN, FLAT, N_CLASSES, UP, BoolArray, FloatArray, IntArray

MetaKind = Literal["logistic", "lightgbm"]
ConfidenceKind = Literal["plain", "meta"]


def signal_direction(probs: npt.ArrayLike) -> IntArray:
    """+1 (long) where up is the most likely class, −1 (short) for down, 0 (flat) for flat."""
    top = np.asarray(probs, dtype=np.float64).argmax(axis=1)
    return np.select([top == UP, top == DOWN], [1, -1], 0).astype(np.int64)


def direction_class(direction: npt.ArrayLike) -> IntArray:
    """The class a direction bets on: +1 → UP, −1 → DOWN, 0 → FLAT."""
    d = np.asarray(direction, dtype=np.int64)
    return np.select([d > 0, d < 0], [UP, DOWN], FLAT).astype(np.int64)


def direction_probability(probs: npt.ArrayLike, direction: npt.ArrayLike) -> FloatArray:
    """Probability of the signalled class (NaN for flat signals)."""
    p = np.asarray(probs, dtype=np.float64)
    d = np.asarray(direction, dtype=np.int64)
    chosen = p[np.arange(len(p)), direction_class(d)]
    return np.where(d != 0, chosen, np.nan)


def signal_hit(direction: npt.ArrayLike, y: npt.ArrayLike) -> BoolArray:
    """Whether each (non-flat) signal was right: the outcome is the signalled class."""
    return np.asarray(direction_class(direction) == np.asarray(y).astype(np.int64))


def agreement_features(member_probs: FloatArray, weights: FloatArray, direction: npt.ArrayLike) -> FloatArray:
    """``(N, 3)``: vote share, weighted vote share (member weights), entropy of the mean member probabilities / log K.

    ``member_probs`` is ``(N, M, K)``, ``weights`` ``(N, M)`` (rows need not sum to 1; all-zero rows count evenly).
    """
    cls = direction_class(direction)
    votes = (member_probs.argmax(axis=2) == cls[:, None]).astype(np.float64)
    w = np.where(weights.sum(axis=1, keepdims=True) > 0, weights, 1.0)
    weighted = (votes * w).sum(axis=1) / w.sum(axis=1)
    mean = member_probs.mean(axis=1)
    entropy = -np.sum(mean * np.log(np.clip(mean, 1e-12, 1.0)), axis=1) / math.log(N_CLASSES)
    return np.column_stack([votes.mean(axis=1), weighted, entropy])


def known_hit_rate(
    history_t1: npt.ArrayLike,
    history_hit: npt.ArrayLike,
    decision_bars: npt.ArrayLike,
    *,
    window: int | None = None,
    prior: float | FloatArray = 0.5,
    prior_strength: float = 20.0,
) -> tuple[FloatArray, IntArray]:
    """Hit rate at each decision bar from past signals whose outcome was known then (``t1 < bar``).

    Uses the last ``window`` known outcomes (None: all), smoothed towards ``prior`` with ``prior_strength``
    pseudo-samples (``prior`` may differ per decision bar). Returns ``(rate, count of outcomes used)``.
    """
    t1 = np.asarray(history_t1, dtype=np.int64)
    hit = np.asarray(history_hit, dtype=np.float64)
    order = np.argsort(t1, kind="stable")
    t1_sorted, cum = t1[order], np.concatenate([[0.0], np.cumsum(hit[order])])
    known = np.searchsorted(t1_sorted, np.asarray(decision_bars, dtype=np.int64), side="left")
    first = np.zeros_like(known) if window is None else np.maximum(known - window, 0)
    count = known - first
    hits = cum[known] - cum[first]
    denominator = count + prior_strength
    rate = np.where(denominator > 0, (hits + prior * prior_strength) / np.maximum(denominator, 1e-300), prior)
    return np.asarray(rate, dtype=np.float64), count.astype(np.int64)


@dataclass(frozen=True)
class ConfidenceChoice:
    """What ``ConfidenceModel.fit`` measured on its hold-out and which confidence it chose."""

    chosen: ConfidenceKind
    reason: str
    n_train: int
    n_holdout: int
    brier_plain: float = math.nan
    brier_meta: float = math.nan
    ece_plain: float = math.nan
    ece_meta: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SignalHistory:
    """Past non-flat signals: outcome bar, hit, regime (the source of the causal historical hit rate)."""

    t1: IntArray
    hit: FloatArray
    regimes: npt.NDArray[np.str_]

    def rate(self, decision_bars: IntArray, regimes: npt.NDArray[np.str_], window: int | None) -> FloatArray:
        """Per-regime hit rate known at each bar, smoothed towards the all-regime rate known then."""
        overall, _ = known_hit_rate(self.t1, self.hit, decision_bars, window=window)
        out = overall.copy()
        for r in np.unique(regimes):
            rows = np.flatnonzero(regimes == r)
            mine = self.regimes == r
            out[rows], _ = known_hit_rate(
                self.t1[mine], self.hit[mine], decision_bars[rows], window=window, prior=overall[rows]
            )
        return out


class ConfidenceModel:
    """Plain vs meta-labelled confidence, chosen on a later hold-out (see the module docstring)."""

    def __init__(
        self,
        *,
        meta: MetaKind = "logistic",
        holdout_fraction: float = 0.4,
        min_train: int = 200,
        min_holdout: int = 100,
        hit_rate_window: int | None = 500,
        purge: int = 0,
        n_bins: int = 10,
        min_gain_se: float = 1.0,
    ) -> None:
        if not 0 < holdout_fraction < 1:
            raise ValueError("holdout_fraction must be in (0, 1)")
        self.meta = meta
        self.holdout_fraction = holdout_fraction
        self.min_train = min_train
        self.min_holdout = min_holdout
        self.hit_rate_window = hit_rate_window
        self.purge = purge
        self.n_bins = n_bins
        self.min_gain_se = min_gain_se
        self.choice = ConfidenceChoice("plain", "not fitted", 0, 0)
        self.regime_levels: tuple[str, ...] = ()
        self.history = SignalHistory(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, dtype=str))
        self.scaler: StandardScaler | None = None
        # a fresh fit holds an LGBMClassifier; a saved and loaded model its text form (same predictions)
        self.classifier: LogisticRegression | lgb.LGBMClassifier | LightGBMText | None = None
        self.holdout_confidence = np.zeros(0)
        self.holdout_hit = np.zeros(0)
        self.holdout_regimes = np.zeros(0, dtype=str)

    def __getstate__(self) -> dict[str, Any]:
        """Saved state: a LightGBM meta classifier in LightGBM's text model format, never a pickled estimator."""
        return {**self.__dict__, "classifier": as_lightgbm_text(self.classifier)}

    # -- features

    def features(
        self,
        ens_probs: FloatArray,
        member_probs: FloatArray,
        weights: FloatArray,
        regimes: npt.NDArray[np.str_],
        t: IntArray,
        extra: FloatArray | None,
    ) -> FloatArray:
        """Meta-labelling features of each row (rows are assumed to be non-flat signals)."""
        direction = signal_direction(ens_probs)
        p_dir = direction_probability(ens_probs, direction)
        second = np.sort(ens_probs, axis=1)[:, -2]
        hit_rate = self.history.rate(t, regimes, self.hit_rate_window)
        onehots = np.column_stack([regimes == r for r in self.regime_levels]) if self.regime_levels else None
        parts = [
            np.log(np.clip(p_dir, 1e-6, 1.0)) - np.log(np.clip(1.0 - p_dir, 1e-6, 1.0)),
            direction.astype(np.float64),
            p_dir - second,
            agreement_features(member_probs, weights, direction),
            hit_rate,
        ]
        if onehots is not None:
            parts.append(onehots.astype(np.float64))
        if extra is not None:
            parts.append(extra)
        return np.column_stack(parts)

    # -- fitting

    def _new_classifier(self) -> LogisticRegression | lgb.LGBMClassifier:
        if self.meta == "logistic":
            return LogisticRegression(C=1.0, max_iter=1000)
        if self.meta == "lightgbm":
            return lgb.LGBMClassifier(
                n_estimators=200, learning_rate=0.05, num_leaves=8, min_child_samples=50, subsample=0.8,
                subsample_freq=1, random_state=0, verbose=-1, n_jobs=1,
            )  # fmt: skip
        raise ValueError(f"unknown meta classifier {self.meta!r}")

    def _meta_proba(self, x: FloatArray) -> FloatArray:
        assert self.scaler is not None and self.classifier is not None
        proba = np.asarray(self.classifier.predict_proba(self.scaler.transform(x)), dtype=np.float64)
        return proba[:, 1]

    def fit(
        self,
        ens_probs: npt.ArrayLike,
        member_probs: npt.ArrayLike,
        weights: npt.ArrayLike,
        regimes: npt.ArrayLike,
        y: npt.ArrayLike,
        t: npt.ArrayLike,
        t1: npt.ArrayLike,
        extra: npt.ArrayLike | None = None,
    ) -> Self:
        """Fit on past signals (rows in any order; every outcome must be known at the decision bar of the fit)."""
        probs = np.asarray(ens_probs, dtype=np.float64)
        direction = signal_direction(probs)
        rows = np.flatnonzero(direction != 0)
        bars = np.asarray(t, dtype=np.int64)
        rows = rows[np.argsort(bars[rows], kind="stable")]
        ends = np.asarray(t1, dtype=np.int64)[rows]
        reg = np.asarray(regimes).astype(str)[rows]
        hit = signal_hit(direction[rows], np.asarray(y)[rows]).astype(np.float64)
        p_dir = direction_probability(probs[rows], direction[rows])
        self.history = SignalHistory(ends, hit, reg)
        self.regime_levels = tuple(str(r) for r in np.unique(reg))
        self.classifier, self.scaler = None, None

        n_hold = round(len(rows) * self.holdout_fraction)
        hold = np.arange(len(rows) - n_hold, len(rows))
        first_hold_bar = int(bars[rows][hold[0]]) if n_hold else np.iinfo(np.int64).max
        train = np.flatnonzero((np.arange(len(rows)) < len(rows) - n_hold) & (ends + self.purge < first_hold_bar))
        self.holdout_confidence, self.holdout_hit, self.holdout_regimes = p_dir[hold], hit[hold], reg[hold]

        if train.size < self.min_train or hold.size < self.min_holdout or np.unique(hit[train]).size < 2:
            reason = f"too few past signals for meta-labelling ({train.size} train, {hold.size} hold-out)"
            self.choice = ConfidenceChoice("plain", reason, int(train.size), int(hold.size))
            return self

        m = np.asarray(member_probs, dtype=np.float64)[rows]
        w = np.asarray(weights, dtype=np.float64)[rows]
        x_extra = None if extra is None else np.asarray(extra, dtype=np.float64)[rows]
        x = self.features(probs[rows], m, w, reg, bars[rows], x_extra)
        self.scaler = StandardScaler().fit(x[train])
        self.classifier = self._new_classifier().fit(self.scaler.transform(x[train]), hit[train].astype(np.int64))
        meta_hold = self._meta_proba(x[hold])

        b_plain, b_meta = brier_score(p_dir[hold], hit[hold]), brier_score(meta_hold, hit[hold])
        e_plain = expected_calibration_error(p_dir[hold], hit[hold], n_bins=self.n_bins)
        e_meta = expected_calibration_error(meta_hold, hit[hold], n_bins=self.n_bins)
        gain = (p_dir[hold] - hit[hold]) ** 2 - (meta_hold - hit[hold]) ** 2  # per-signal Brier improvement
        gain_se = float(gain.std(ddof=1) / math.sqrt(gain.size))
        chosen: ConfidenceKind = "meta" if gain.mean() > self.min_gain_se * gain_se else "plain"
        reason = (
            f"hold-out Brier meta {b_meta:.4f} vs plain {b_plain:.4f} "
            f"(gain {gain.mean():.4f}, needs > {self.min_gain_se:g} × SE {gain_se:.4f})"
        )
        self.choice = ConfidenceChoice(
            chosen, reason, int(train.size), int(hold.size), b_plain, b_meta, e_plain, e_meta
        )
        if chosen == "meta":
            self.holdout_confidence = meta_hold
        return self

    def add_outcomes(self, t1: npt.ArrayLike, hit: npt.ArrayLike, regimes: npt.ArrayLike) -> None:
        """Extend the signal history (for the historical hit rate) with newly known outcomes."""
        h = self.history
        self.history = SignalHistory(
            np.concatenate([h.t1, np.asarray(t1, dtype=np.int64)]),
            np.concatenate([h.hit, np.asarray(hit, dtype=np.float64)]),
            np.concatenate([h.regimes, np.asarray(regimes).astype(str)]),
        )

    # -- prediction

    def predict(
        self,
        ens_probs: npt.ArrayLike,
        member_probs: npt.ArrayLike,
        weights: npt.ArrayLike,
        regimes: npt.ArrayLike,
        t: npt.ArrayLike,
        extra: npt.ArrayLike | None = None,
        *,
        kind: ConfidenceKind | None = None,
    ) -> FloatArray:
        """Confidence of each row's signal (NaN for flat); ``kind`` overrides the fitted choice."""
        probs = np.asarray(ens_probs, dtype=np.float64)
        direction = signal_direction(probs)
        out = direction_probability(probs, direction)
        use = kind or self.choice.chosen
        if use == "plain":
            return out
        if self.classifier is None:
            raise ValueError("no meta-labelling model was fitted")
        rows = np.flatnonzero(direction != 0)
        if rows.size:
            x = self.features(
                probs[rows],
                np.asarray(member_probs, dtype=np.float64)[rows],
                np.asarray(weights, dtype=np.float64)[rows],
                np.asarray(regimes).astype(str)[rows],
                np.asarray(t, dtype=np.int64)[rows],
                None if extra is None else np.asarray(extra, dtype=np.float64)[rows],
            )
            out[rows] = self._meta_proba(x)
        return out


__all__ = [
    "ConfidenceChoice",
    "ConfidenceKind",
    "ConfidenceModel",
    "MetaKind",
    "SignalHistory",
    "agreement_features",
    "direction_class",
    "direction_probability",
    "known_hit_rate",
    "signal_direction",
    "signal_hit",
]
