"""Baselines on the same labels, splits and contract as the networks: majority, logistic regression, LightGBM.

The tabular baselines see the features at the sample bar and a few lags (rows ``t, t−1, t−2 …`` taken from the
end of each window), so their ``context`` is ``max(lags) + 1``. Scaling is fitted inside ``fit`` on training
rows only (a scikit-learn pipeline); LightGBM needs none.

``balanced=True`` (the default) weights the classes equally while fitting, so the rare "flat" class is learnt at
all; the fitted model then believes every class equally likely a priori, which inflates rare classes' probabilities
(the pooled logistic model on a planted edge predicted "flat" at 0.31 on average and lost to the base rates on
log-loss although it ranked well). ``predict_proba`` shifts the probabilities back to the training class
frequencies (``train_prior``): ``p(y|x) ∝ p_balanced(y|x) · π_y`` (the prior-shift correction of Saerens,
Latinne & Decaestecker 2002). Models saved before the correction existed have no ``train_prior`` and predict as
they did.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from smartmarket.models.datasets import WindowDataset
from smartmarket.models.labels import N_CLASSES
from smartmarket.models.metrics import class_frequencies
from smartmarket.models.persist import LIGHTGBM_TEXT_TYPE, LightGBMText, as_lightgbm_text


def lagged_rows(windows: np.ndarray, lags: tuple[int, ...]) -> np.ndarray:
    """``(N, F × len(lags))``: the rows ``t − lag`` of each window (the window ends at ``t``)."""
    windows = np.asarray(windows)
    return np.concatenate([windows[:, -1 - lag, :] for lag in lags], axis=1).astype(np.float64)


def _expand(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all ``n_classes`` (classes unseen in training get 0)."""
    out = np.zeros((len(proba), n_classes))
    out[:, classes.astype(int)] = proba
    return out


class _WindowBaseline:
    kind = "baseline"
    n_classes = N_CLASSES

    def __init__(self, lags: tuple[int, ...]) -> None:
        if not lags or min(lags) < 0:
            raise ValueError("lags are non-negative bar offsets, e.g. (0, 1, 2)")
        self.lags = tuple(int(lag) for lag in lags)
        self.context = max(self.lags) + 1
        self.train_prior: np.ndarray | None = None  # set by a class-balanced fit (see the module docstring)

    def _learn_prior(self, train: WindowDataset, balanced: bool) -> None:
        self.train_prior = class_frequencies(train.labels, self.n_classes) if balanced else None

    def _prior_corrected(self, proba: np.ndarray) -> np.ndarray:
        """Balanced-fit probabilities shifted back to the training class frequencies (rows sum to 1)."""
        prior = getattr(self, "train_prior", None)  # absent on models saved before the correction
        if prior is None:
            return proba
        shifted = proba * np.asarray(prior)[None, :]
        total = shifted.sum(axis=1, keepdims=True)
        return np.divide(shifted, total, out=proba.copy(), where=total > 0)

    def _check(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows)
        if windows.ndim != 3 or windows.shape[1] != self.context:
            raise ValueError(f"{type(self).__name__} needs windows (N, {self.context}, F), got {windows.shape}")
        return lagged_rows(windows, self.lags)


class MajorityBaseline(_WindowBaseline):
    """Always the training class frequencies (so its argmax is always the majority class)."""

    kind = "majority"

    def __init__(self) -> None:
        super().__init__((0,))
        self.prior = np.full(N_CLASSES, 1.0 / N_CLASSES)

    def fit(self, train: WindowDataset, validation: WindowDataset | None = None) -> MajorityBaseline:
        counts = train.class_counts(self.n_classes).astype(np.float64)
        self.prior = counts / counts.sum()
        return self

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        return np.tile(self.prior, (len(np.asarray(windows)), 1))

    def hyperparameters(self) -> dict[str, Any]:
        return {}


class LogisticBaseline(_WindowBaseline):
    """L2-regularised multinomial logistic regression on standardised, lagged features."""

    kind = "logreg"

    def __init__(self, lags: tuple[int, ...] = (0, 1, 2), c: float = 0.1, balanced: bool = True) -> None:
        super().__init__(lags)
        self.c = c
        self.balanced = balanced
        self.pipeline: Pipeline | None = None

    def fit(self, train: WindowDataset, validation: WindowDataset | None = None) -> LogisticBaseline:
        x = self._check(train.with_context(self.context).windows())
        self.pipeline = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=self.c, max_iter=2000, class_weight="balanced" if self.balanced else None),
        )
        self.pipeline.fit(x, train.labels)
        self._learn_prior(train, self.balanced)
        return self

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        if self.pipeline is None:
            raise RuntimeError("fit the model first")
        proba = self.pipeline.predict_proba(self._check(windows))
        return self._prior_corrected(_expand(proba, self.pipeline.classes_, self.n_classes))

    def hyperparameters(self) -> dict[str, Any]:
        return {"lags": list(self.lags), "C": self.c, "class_weight": "balanced" if self.balanced else None}


def lightgbm_params(
    *,
    n_estimators: int,
    learning_rate: float,
    num_leaves: int,
    min_child_samples: int,
    subsample: float,
    colsample_bytree: float,
    seed: int,
    n_jobs: int,
    **extra: Any,
) -> dict[str, Any]:
    """LightGBM's estimator parameters as the project uses them everywhere: row subsampling every iteration,
    deterministic and row-wise (identical models for identical data and seed), silent; ``extra`` adds to them."""
    return {
        "n_estimators": n_estimators,
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_child_samples": min_child_samples,
        "subsample": subsample,
        "subsample_freq": 1,
        "colsample_bytree": colsample_bytree,
        **extra,
        "random_state": seed,
        "deterministic": True,
        "force_row_wise": True,
        "n_jobs": n_jobs,
        "verbose": -1,
    }


class LightGBMBaseline(_WindowBaseline):
    """Gradient-boosted trees on lagged features; early stopping on the validation set when one is given."""

    kind = "lightgbm"

    def __init__(
        self,
        lags: tuple[int, ...] = (0, 1, 2),
        *,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 50,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        balanced: bool = True,
        early_stopping_rounds: int = 30,
        seed: int = 0,
    ) -> None:
        super().__init__(lags)
        self.params: dict[str, Any] = lightgbm_params(
            n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
            min_child_samples=min_child_samples, subsample=subsample, colsample_bytree=colsample_bytree, seed=seed,
            n_jobs=min(os.cpu_count() or 1, 4), class_weight="balanced" if balanced else None,
        )  # fmt: skip
        self.early_stopping_rounds = early_stopping_rounds
        # a fresh fit holds the LGBMClassifier; a saved and loaded model its text form (same predictions)
        self.booster: lgb.LGBMClassifier | LightGBMText | None = None

    def fit(self, train: WindowDataset, validation: WindowDataset | None = None) -> LightGBMBaseline:
        x = self._check(train.with_context(self.context).windows())
        model = lgb.LGBMClassifier(**self.params)
        fit_args: dict[str, Any] = {}
        if validation is not None and len(validation) > 0 and len(np.unique(train.labels)) > 1:
            xv = self._check(validation.with_context(self.context).windows())
            if "eval_X" in inspect.signature(model.fit).parameters:  # LightGBM ≥ 4.6 renamed eval_set
                fit_args.update(eval_X=(xv,), eval_y=(validation.labels,))
            else:
                fit_args["eval_set"] = [(xv, validation.labels)]
            fit_args["callbacks"] = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        model.fit(x, train.labels, **fit_args)
        self.booster = model
        self._learn_prior(train, self.params.get("class_weight") == "balanced")
        return self

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("fit the model first")
        proba = np.asarray(self.booster.predict_proba(self._check(windows)))
        return self._prior_corrected(_expand(proba, np.asarray(self.booster.classes_), self.n_classes))

    def hyperparameters(self) -> dict[str, Any]:
        best = getattr(self.booster, "best_iteration_", None) if self.booster is not None else None
        return {"lags": list(self.lags), **self.params, "best_iteration": best}

    def __getstate__(self) -> dict[str, Any]:
        """Saved state: the booster in LightGBM's text model format, never a pickled ``LGBMClassifier``."""
        return {**self.__dict__, "booster": as_lightgbm_text(self.booster)}


BASELINE_KINDS: tuple[str, ...] = ("majority", "logreg", "lightgbm")

# The SmartMarket types a saved baseline may hold (``models.persist.load``); scikit-learn's estimators, NumPy and
# builtins are trusted by skops itself. A fixed list: never whatever a file asks for.
BASELINE_TRUSTED_TYPES: tuple[str, ...] = (
    "smartmarket.models.baselines.MajorityBaseline",
    "smartmarket.models.baselines.LogisticBaseline",
    "smartmarket.models.baselines.LightGBMBaseline",
    LIGHTGBM_TEXT_TYPE,
)


__all__ = [
    "BASELINE_KINDS",
    "BASELINE_TRUSTED_TYPES",
    "LightGBMBaseline",
    "LogisticBaseline",
    "MajorityBaseline",
    "lagged_rows",
    "lightgbm_params",
]
