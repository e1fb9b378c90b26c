"""Calibration: raw member scores → probabilities that mean what they say, and the measures that check it.

Inputs are either ``(N, K)`` class probabilities (``K = 3``: down, flat, up) or ``(N,)`` scores read as P(up)
(or P(class 1) for a binary target). Outputs are always ``(N, n_classes)`` probabilities summing to 1.

A calibrator must be fitted on a time slice *after* the member's training data, purged (see
``outcomes.chronological_slices``), never on shuffled folds. Methods:

* ``temperature`` — one parameter ``T``: ``softmax(log p / T)``. For small samples with ``(N, K)`` inputs.
* ``platt`` — logistic regression on the logit of the score (``(N,)``) or on the log-probabilities (``(N, K)``,
  i.e. *matrix scaling*; multinomial when K > 2). Also maps a P(up) score onto three classes.
* ``isotonic`` — monotone, non-parametric, needs data: chosen by ``fit_calibrator`` from ``isotonic_min_samples``
  (1000) samples on. Multi-class: one-vs-rest (class k's frequency as a non-decreasing function of ``p_k``), then
  clipped to ``[eps, 1]`` and renormalised. An ``(N,)`` P(up) score onto three classes: P(down) non-increasing and
  P(up) non-decreasing in the score, P(flat) the remainder (it peaks in the middle, which no monotone map can).

Measures (``y`` integer classes):

* ``brier_score`` — ``(N,)`` P(event): mean ``(p − y)²``; ``(N, K)``: mean over samples of ``Σ_k (p_k − 1[y=k])²``;
* ``log_loss`` — mean negative log-probability of the outcome (probabilities clipped at ``1e-12``);
* ``reliability_diagram`` / ``expected_calibration_error`` — for ``(N,)`` P(event) against a 0/1 outcome, for
  ``(N, K)`` the *top-label* version (confidence = max probability, hit = the argmax was the outcome).
  Bins are **equal-mass** by default (each holds ≈ N/B samples, sorted by prediction; ties never split):
  confidences cluster, and equal-width bins then leave some bins nearly empty and noisy. ``binning="equal_width"``
  gives the classic ``[0, 1/B), …`` bins (empty bins dropped).
  ECE = Σ_b (n_b / N) · |mean predicted_b − observed frequency_b|. Even a perfectly calibrated predictor has
  ECE > 0 from sampling noise, about ``sqrt(B / (2π N))`` for p ≈ ½.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, Self

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from smartmarket.signals.outcomes import FloatArray, IntArray

PROB_EPS = 1e-12
CALIBRATED_EPS = 1e-4  # floor of calibrated probabilities: a calibrator never claims certainty
CalibrationMethod = Literal["auto", "temperature", "platt", "isotonic"]
Binning = Literal["equal_mass", "equal_width"]


# --------------------------------------------------------------------------------------------- measures


def _labels(y: npt.ArrayLike) -> IntArray:
    return np.asarray(y).astype(np.int64)


def brier_score(probs: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Brier score of ``(N,)`` P(event) against 0/1 outcomes, or of ``(N, K)`` probabilities against classes."""
    p = np.asarray(probs, dtype=np.float64)
    target = _labels(y)
    if target.size == 0:
        return math.nan
    if p.ndim == 1:
        return float(np.mean((p - target) ** 2))
    onehot = np.eye(p.shape[1])[target]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def log_loss(probs: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Mean negative log-probability of the outcome (``(N,)`` P(event) or ``(N, K)`` class probabilities)."""
    p = np.asarray(probs, dtype=np.float64)
    target = _labels(y)
    if target.size == 0:
        return math.nan
    chosen = np.where(target == 1, p, 1.0 - p) if p.ndim == 1 else p[np.arange(len(target)), target]
    return float(-np.mean(np.log(np.clip(chosen, PROB_EPS, 1.0))))


def top_label(probs: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """``(confidence, hit)``: the largest probability and whether its class was the outcome (as 0.0/1.0)."""
    p = np.asarray(probs, dtype=np.float64)
    return p.max(axis=1), (p.argmax(axis=1) == _labels(y)).astype(np.float64)


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Per bin: mean predicted probability, observed frequency, sample count and the ``[low, high]`` range."""

    mean_predicted: FloatArray
    observed_frequency: FloatArray
    count: IntArray
    low: FloatArray
    high: FloatArray

    @property
    def ece(self) -> float:
        n = int(self.count.sum())
        if n == 0:
            return math.nan
        return float(np.sum(self.count * np.abs(self.mean_predicted - self.observed_frequency)) / n)

    def rows(self) -> list[dict[str, float]]:
        return [
            {"low": float(lo), "high": float(hi), "mean_predicted": float(m), "observed": float(o), "count": int(c)}
            for lo, hi, m, o, c in zip(
                self.low, self.high, self.mean_predicted, self.observed_frequency, self.count, strict=True
            )
        ]


def reliability_diagram(
    probs: npt.ArrayLike, y: npt.ArrayLike, *, n_bins: int = 10, binning: Binning = "equal_mass"
) -> ReliabilityDiagram:
    """Reliability bins of ``(N,)`` P(event) vs 0/1 ``y``, or top-label bins of ``(N, K)`` probabilities."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 2:
        pred, obs = top_label(p, y)
    else:
        pred, obs = p, _labels(y).astype(np.float64)
    if n_bins < 1:
        raise ValueError("n_bins must be ≥ 1")
    if binning == "equal_mass":  # ≈ N / B samples per bin; equal predictions always share a bin
        order = np.argsort(pred, kind="stable")
        ranked = pred[order]
        cuts = np.round(np.linspace(0, pred.size, n_bins + 1)[1:-1]).astype(np.int64)
        cuts = np.unique(np.searchsorted(ranked, ranked[np.minimum(cuts, max(pred.size - 1, 0))], side="left"))
        groups = [g for g in np.split(order, cuts) if g.size] if pred.size else []
    elif binning == "equal_width":
        which = np.minimum((np.clip(pred, 0.0, 1.0) * n_bins).astype(np.int64), n_bins - 1)
        groups = [np.flatnonzero(which == b) for b in range(n_bins)]
        groups = [g for g in groups if g.size]
    else:
        raise ValueError(f"unknown binning {binning!r}")
    return ReliabilityDiagram(
        mean_predicted=np.array([pred[g].mean() for g in groups]),
        observed_frequency=np.array([obs[g].mean() for g in groups]),
        count=np.array([g.size for g in groups], dtype=np.int64),
        low=np.array([pred[g].min() for g in groups]),
        high=np.array([pred[g].max() for g in groups]),
    )


def expected_calibration_error(
    probs: npt.ArrayLike, y: npt.ArrayLike, *, n_bins: int = 10, binning: Binning = "equal_mass"
) -> float:
    """ECE over ``n_bins`` bins (see the module docstring for the binning and the top-label reading)."""
    return reliability_diagram(probs, y, n_bins=n_bins, binning=binning).ece


def calibration_report(probs: npt.ArrayLike, y: npt.ArrayLike, *, n_bins: int = 10) -> dict[str, float]:
    """Brier, log-loss, ECE (equal-mass and equal-width) and the sample count, for summaries."""
    return {
        "n": float(len(_labels(y))),
        "brier": brier_score(probs, y),
        "log_loss": log_loss(probs, y),
        "ece": expected_calibration_error(probs, y, n_bins=n_bins),
        "ece_equal_width": expected_calibration_error(probs, y, n_bins=n_bins, binning="equal_width"),
    }


# ------------------------------------------------------------------------------------------ calibrators


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(q) - np.log1p(-q))


def _as_probabilities(scores: FloatArray, n_classes: int) -> FloatArray:
    """``(N, K)`` probabilities from the input; an ``(N,)`` score is only accepted for a binary target."""
    if scores.ndim == 2:
        return scores
    if n_classes != 2:
        raise ValueError("a 1-D score maps to class probabilities only with platt or isotonic calibration")
    return np.column_stack([1.0 - scores, scores])


def _finish(p: FloatArray) -> FloatArray:
    q = np.clip(p, CALIBRATED_EPS, 1.0)
    return np.asarray(q / q.sum(axis=1, keepdims=True))


class Calibrator(ABC):
    """Maps raw scores to calibrated ``(N, n_classes)`` probabilities. ``fit`` on a later, purged time slice."""

    method: str = ""

    def __init__(self, n_classes: int = 3) -> None:
        if n_classes < 2:
            raise ValueError("n_classes must be ≥ 2")
        self.n_classes = n_classes
        self.n_samples = 0

    def fit(self, scores: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        s = self._check(scores)
        target = _labels(y)
        if len(target) != len(s):
            raise ValueError(f"scores have {len(s)} rows, y has {len(target)}")
        if target.size == 0:
            raise ValueError("cannot calibrate on zero samples")
        if target.min() < 0 or target.max() >= self.n_classes:
            raise ValueError(f"y outside 0 … {self.n_classes - 1}")
        self._fit(s, target)
        self.n_samples = int(target.size)
        return self

    def predict_proba(self, scores: npt.ArrayLike) -> FloatArray:
        return _finish(self._predict(self._check(scores)))

    def _check(self, scores: npt.ArrayLike) -> FloatArray:
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim not in (1, 2) or (s.ndim == 2 and s.shape[1] != self.n_classes):
            raise ValueError(f"scores must be (N,) or (N, {self.n_classes}), got {s.shape}")
        return s

    @abstractmethod
    def _fit(self, scores: FloatArray, y: IntArray) -> None: ...

    @abstractmethod
    def _predict(self, scores: FloatArray) -> FloatArray: ...


class TemperatureCalibrator(Calibrator):
    """``softmax(log p / T)`` with the one ``T`` that minimises the log-loss of the calibration slice."""

    method = "temperature"

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__(n_classes)
        self.temperature = 1.0

    def _fit(self, scores: FloatArray, y: IntArray) -> None:
        logp = np.log(np.clip(_as_probabilities(scores, self.n_classes), PROB_EPS, 1.0))

        def nll(log_t: float) -> float:
            z = logp / math.exp(log_t)
            z = z - z.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(z).sum(axis=1))
            return float(-np.mean(z[np.arange(len(y)), y] - log_norm))

        result = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
        self.temperature = float(math.exp(result.x))

    def _predict(self, scores: FloatArray) -> FloatArray:
        z = np.log(np.clip(_as_probabilities(scores, self.n_classes), PROB_EPS, 1.0)) / self.temperature
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return np.asarray(z / z.sum(axis=1, keepdims=True))


class PlattCalibrator(Calibrator):
    """Logistic regression on ``logit(score)`` (``(N,)``) or on ``log p`` (``(N, K)``, matrix scaling)."""

    method = "platt"

    def __init__(self, n_classes: int = 3, *, c: float = 100.0) -> None:
        super().__init__(n_classes)
        self.c = c
        self.model: LogisticRegression | None = None
        self.class_frequency = np.full(n_classes, 1.0 / n_classes)
        self.center = np.zeros(0)  # feature means of the fit set (centred inputs: a well-conditioned solve)

    def _features(self, scores: FloatArray) -> FloatArray:
        x = _logit(scores)[:, None] if scores.ndim == 1 else np.log(np.clip(scores, 1e-6, 1.0))
        return np.asarray(x - self.center) if self.center.size else np.asarray(x)

    def _fit(self, scores: FloatArray, y: IntArray) -> None:
        counts = np.bincount(y, minlength=self.n_classes).astype(np.float64)
        self.class_frequency = (counts + 1.0) / (counts.sum() + self.n_classes)
        self.model = None
        self.center = np.zeros(0)
        self.center = self._features(scores).mean(axis=0)
        if np.count_nonzero(counts) >= 2:  # one class only: the (smoothed) frequency is all we can say
            self.model = LogisticRegression(C=self.c, max_iter=1000).fit(self._features(scores), y)

    def _predict(self, scores: FloatArray) -> FloatArray:
        if self.model is None:
            return np.tile(self.class_frequency, (len(scores), 1))
        out = np.zeros((len(scores), self.n_classes))
        out[:, self.model.classes_.astype(np.int64)] = self.model.predict_proba(self._features(scores))
        return out


class IsotonicCalibrator(Calibrator):
    """One-vs-rest isotonic regression per class, clipped and renormalised (binary: one isotonic fit)."""

    method = "isotonic"

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__(n_classes)
        self.models: list[IsotonicRegression] = []

    def _feature(self, scores: FloatArray, k: int) -> FloatArray:
        return scores if scores.ndim == 1 else scores[:, k]

    def _plan(self, scores: FloatArray) -> list[tuple[int, bool]]:
        """(class, increasing) of each isotonic fit; the classes left out get the remaining probability."""
        if self.n_classes == 2:
            return [(1, True)]
        if scores.ndim == 1:
            if self.n_classes != 3:
                raise ValueError("a 1-D score maps onto 2 or 3 classes only")
            return [(0, False), (2, True)]  # down falls and up rises with P(up); flat is the rest
        return [(k, True) for k in range(self.n_classes)]

    def _fit(self, scores: FloatArray, y: IntArray) -> None:
        self.models = []
        for k, increasing in self._plan(scores):
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=increasing, out_of_bounds="clip")
            self.models.append(iso.fit(self._feature(scores, k), (y == k).astype(np.float64)))

    def _predict(self, scores: FloatArray) -> FloatArray:
        plan = self._plan(scores)
        out = np.full((len(scores), self.n_classes), np.nan)
        for (k, _), model in zip(plan, self.models, strict=True):
            out[:, k] = model.predict(self._feature(scores, k))
        if len(plan) < self.n_classes:  # binary, or flat between down and up
            rest = [k for k in range(self.n_classes) if k not in {c for c, _ in plan}]
            out[:, rest[0]] = np.clip(1.0 - np.nansum(out, axis=1), 0.0, 1.0)
        return out


def make_calibrator(method: CalibrationMethod, n_classes: int) -> Calibrator:
    if method == "temperature":
        return TemperatureCalibrator(n_classes)
    if method == "platt":
        return PlattCalibrator(n_classes)
    if method == "isotonic":
        return IsotonicCalibrator(n_classes)
    raise ValueError(f"unknown calibration method {method!r}")


def choose_method(n_samples: int, scores_ndim: int, *, isotonic_min_samples: int = 1000) -> CalibrationMethod:
    """``auto``: isotonic from ``isotonic_min_samples`` on; else temperature for ``(N, K)`` inputs, Platt for scores."""
    if n_samples >= isotonic_min_samples:
        return "isotonic"
    return "temperature" if scores_ndim == 2 else "platt"


def fit_calibrator(
    scores: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    n_classes: int | None = None,
    method: CalibrationMethod = "auto",
    isotonic_min_samples: int = 1000,
) -> Calibrator:
    """Fit a calibrator (``n_classes`` defaults to the columns of ``scores``, or 2 for an ``(N,)`` score)."""
    s = np.asarray(scores, dtype=np.float64)
    k = n_classes if n_classes is not None else (s.shape[1] if s.ndim == 2 else 2)
    chosen = method
    if method == "auto":
        chosen = choose_method(len(s), s.ndim, isotonic_min_samples=isotonic_min_samples)
        if chosen == "temperature" and s.ndim == 1 and k != 2:
            chosen = "platt"
    return make_calibrator(chosen, k).fit(s, y)


__all__ = [
    "CALIBRATED_EPS",
    "Binning",
    "CalibrationMethod",
    "Calibrator",
    "IsotonicCalibrator",
    "PlattCalibrator",
    "ReliabilityDiagram",
    "TemperatureCalibrator",
    "brier_score",
    "calibration_report",
    "choose_method",
    "expected_calibration_error",
    "fit_calibrator",
    "log_loss",
    "make_calibrator",
    "reliability_diagram",
    "top_label",
]
