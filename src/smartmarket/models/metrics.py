"""Classification metrics over class probabilities, and the chance level they must beat.

Every function takes integer labels ``y_true`` (N,) and probabilities ``proba`` (N, n_classes). Classes absent
from ``y_true`` are left out of balanced accuracy and of the one-vs-rest AUC (which is NaN when fewer than two
classes are present).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score

from smartmarket.analytics.significance import diebold_mariano

SKILL_LEVEL = 0.05  # a model has skill when it beats the base rates at this one-sided significance level


def _check(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"proba must be (N, n_classes) with N = {len(y)}, got {p.shape}")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError("labels outside 0 … n_classes-1")
    return y, p


def accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    y, p = _check(y_true, proba)
    return float(np.mean(p.argmax(axis=1) == y)) if y.size else math.nan


def balanced_accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true``."""
    y, p = _check(y_true, proba)
    pred = p.argmax(axis=1)
    recalls = [float(np.mean(pred[y == c] == c)) for c in np.unique(y)]
    return float(np.mean(recalls)) if recalls else math.nan


def log_loss(y_true: np.ndarray, proba: np.ndarray, eps: float = 1e-12) -> float:
    y, p = _check(y_true, proba)
    if not y.size:
        return math.nan
    return float(np.mean(sample_log_losses(y, p, eps)))


def sample_log_losses(y_true: np.ndarray, proba: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Each sample's log-loss ``-log p(true class)`` (clipped at ``eps``)."""
    y, p = _check(y_true, proba)
    return np.asarray(-np.log(np.clip(p[np.arange(len(y)), y], eps, 1.0)))


def newey_west_lags(n: int) -> int:
    """The usual automatic Newey-West lag count, ``floor(4 (n/100)^(2/9))``."""
    return int(4.0 * (max(n, 1) / 100.0) ** (2.0 / 9.0))


def skill_p_value(y_true: np.ndarray, proba: np.ndarray, base_rates: np.ndarray, horizon: int | None = None) -> float:
    """One-sided p-value that ``proba``'s expected log-loss is *lower* than always predicting ``base_rates``:
    a Diebold-Mariano test on the per-sample log-loss differences with a Newey-West variance (labels of
    overlapping ``horizon``-bar outcomes are autocorrelated; at least the automatic lag count is used).
    Near 0: real skill; 0.5 or more: the model does no better than the base rates. NaN below 3 samples."""
    y, p = _check(y_true, proba)
    if y.size < 3:
        return math.nan
    model = sample_log_losses(y, p)
    baseline = sample_log_losses(y, np.tile(np.asarray(base_rates, dtype=np.float64), (len(y), 1)))
    lags = max(newey_west_lags(len(y)), (horizon or 1) - 1)
    test = diebold_mariano(model, baseline, horizon=lags + 1)
    if test.mean_difference == 0.0:
        return 1.0
    half = test.p_value / 2.0  # the two-sided test's statistic is symmetric
    return float(half if test.mean_difference < 0 else 1.0 - half)


def brier(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Multi-class Brier score: mean over samples of the squared distance to the one-hot truth."""
    y, p = _check(y_true, proba)
    if not y.size:
        return math.nan
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def auc_ovr(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes present in ``y_true``."""
    y, p = _check(y_true, proba)
    present = np.unique(y)
    if present.size < 2:
        return math.nan
    scores = [roc_auc_score(y == c, p[:, c]) for c in present]
    return float(np.mean(scores))


def balanced_accuracy_null_se(y_true: np.ndarray, n_classes: int | None = None) -> float:
    """Standard error of balanced accuracy for predictions independent of the truth (the no-skill null).

    Recall of class c is a proportion over its ``n_c`` samples, with variance ``q(1−q)/n_c ≤ 1/(4 n_c)``;
    balanced accuracy averages K such recalls, so ``SE ≤ sqrt(Σ 1/(4 n_c)) / K``. Chance is ``1/K``.
    """
    y = np.asarray(y_true).astype(np.int64)
    counts = np.bincount(y, minlength=n_classes or 0)
    counts = counts[counts > 0]
    if counts.size == 0:
        return math.nan
    return float(math.sqrt(np.sum(1.0 / (4.0 * counts))) / counts.size)


def class_frequencies(y_train: np.ndarray, n_classes: int) -> np.ndarray:
    """The base rates: class frequencies of the training labels, Laplace-smoothed (no class gets probability 0)."""
    counts = np.bincount(np.asarray(y_train).astype(np.int64), minlength=n_classes).astype(np.float64) + 1.0
    return counts / counts.sum()


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, base_rates: np.ndarray | None = None, *, horizon: int | None = None
) -> dict[str, float]:
    """All metrics at once, plus ``n``, the chance level of balanced accuracy and its null standard error; with
    ``base_rates`` (``class_frequencies`` of the training labels) also ``baseline_log_loss``, the log-loss of
    always predicting them, and ``skill_p_value`` (``skill_p_value``): a model whose log-loss is not
    significantly below the baseline has no skill (``models.skill``)."""
    y, p = _check(y_true, proba)
    k = int(np.unique(y).size)
    extra = {}
    if base_rates is not None:
        extra = {
            "baseline_log_loss": log_loss(y, np.tile(base_rates, (len(y), 1))),
            "skill_p_value": skill_p_value(y, p, base_rates, horizon),
        }
    return {
        "n": float(y.size),
        "accuracy": accuracy(y, p),
        "balanced_accuracy": balanced_accuracy(y, p),
        "log_loss": log_loss(y, p),
        "brier": brier(y, p),
        "auc_ovr": auc_ovr(y, p),
        "chance_balanced_accuracy": 1.0 / k if k else math.nan,
        "balanced_accuracy_null_se": balanced_accuracy_null_se(y),
        **extra,
    }


__all__ = [
    "accuracy",
    "auc_ovr",
    "balanced_accuracy",
    "balanced_accuracy_null_se",
    "brier",
    "class_frequencies",
    "classification_metrics",
    "log_loss",
    "newey_west_lags",
    "sample_log_losses",
    "skill_p_value",
]
