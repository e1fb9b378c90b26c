"""Ensemble: calibrated member probabilities → one probability over {down, flat, up}, weighted by measured skill.

Inputs: ``members`` maps a member name to its *calibrated* ``(N, 3)`` probabilities (rows in time order), ``y`` the
classes, ``regimes`` regime names. Fit only on samples whose outcomes were known at the decision bar
(``outcomes.causal_fit_indices``); the fit set's rows must be in time order.

Two models, one interface (``fit`` / ``predict_proba`` / ``member_weights``):

``StackingEnsemble`` (default)
    L2-regularised multinomial logistic regression on the members' log-probabilities. ``C`` is chosen from a
    grid by log-loss on the last ``validation_fraction`` of the fit set (chronological, never shuffled), then the
    model is refitted on the whole fit set. A separate model per regime where the regime has
    ``regime_min_samples`` samples and every class ``min_class_count`` times, else the global model (per-regime
    models replace regime one-hots). *Effective weight* of a member: its share of the spread of the ensemble
    logits, ``mean_i ‖c_m(x_i) − mean_j c_m(x_j)‖`` where ``c_m`` is the member's contribution to the logits
    (class-centred); a member whose input the model ignores, or whose calibrated output is constant, gets ≈ 0.

``SkillWeightedEnsemble``
    Skill of a member = mean log-score improvement over the base rate (the smoothed class frequencies of the fit
    set), ``mean(log p_m(y) − log base(y))`` in nats per sample. A member counts only when its skill exceeds
    ``z_min`` standard errors (naive i.i.d. standard errors: overlapping labels make them optimistic, so keep
    ``z_min`` ≥ 2); its weight is proportional to its skill (or ``softmax(skill / temperature)`` over the skilled
    members); no skilled member → all weight on the base rate. Pool: ``log q = Σ w_m log p_m + w_base log base``,
    sharpened by one temperature fitted on the fit set. ``update`` re-weights online from one new outcome at a time
    over a rolling window, moving the weight vector towards its new target by at most ``max_step`` per member
    per update (a convex step, so weights stay on the simplex). Call ``update`` only with outcomes known at the
    decision bar (``outcomes.OutcomeQueue`` gates them).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar
from sklearn.linear_model import LogisticRegression

from smartmarket.signals.outcomes import N_CLASSES, FloatArray, IntArray

LOG_FLOOR = 1e-6
GLOBAL = "__global__"
MemberProbs = Mapping[str, npt.ArrayLike]


def stack_members(members: MemberProbs, names: Sequence[str]) -> FloatArray:
    """``(N, M, K)`` array of the named members' probabilities (rows renormalised, floored at ``LOG_FLOOR``)."""
    missing = [n for n in names if n not in members]
    if missing:
        raise ValueError(f"missing member probabilities: {', '.join(missing)}")
    arrays = [np.asarray(members[n], dtype=np.float64) for n in names]
    for name, arr in zip(names, arrays, strict=True):
        if arr.ndim != 2 or arr.shape[1] != N_CLASSES:
            raise ValueError(f"member {name!r}: calibrated probabilities must be (N, {N_CLASSES}), got {arr.shape}")
    p = np.clip(np.stack(arrays, axis=1), LOG_FLOOR, 1.0)
    return np.asarray(p / p.sum(axis=2, keepdims=True))


def _regimes(regimes: npt.ArrayLike | None, n: int) -> npt.NDArray[np.str_]:
    return np.full(n, "all") if regimes is None else np.asarray(regimes).astype(str)


def _softmax(z: FloatArray) -> FloatArray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def _enough(y: IntArray, min_samples: int, min_class_count: int) -> bool:
    return y.size >= min_samples and bool(np.bincount(y, minlength=N_CLASSES).min() >= min_class_count)


def member_skill(members: MemberProbs, y: npt.ArrayLike) -> dict[str, tuple[float, float]]:
    """``{member: (skill, standard error)}``: mean log-score improvement over the base rate (the smoothed class
    frequencies of ``y``), in nats per sample; i.i.d. standard error (optimistic under overlapping labels)."""
    names = tuple(members)
    p = stack_members(members, names)
    target = np.asarray(y).astype(np.int64)
    counts = np.bincount(target, minlength=N_CLASSES).astype(np.float64)
    base = (counts + 1.0) / (counts.sum() + N_CLASSES)
    d = np.log(p[np.arange(len(target)), :, target]) - np.log(base[target])[:, None]
    se = d.std(axis=0, ddof=1) / math.sqrt(len(d)) if len(d) > 1 else np.full(len(names), math.inf)
    return {n: (float(m), float(e)) for n, m, e in zip(names, d.mean(axis=0), se, strict=True)}


class EnsembleModel(ABC):
    """Common interface. ``member_weights`` are comparable across models: ≥ 0, summing to 1 (or all 0)."""

    kind: str = ""

    def __init__(self, *, regime_min_samples: int = 500, min_class_count: int = 20) -> None:
        self.regime_min_samples = regime_min_samples
        self.min_class_count = min_class_count
        self.member_names: tuple[str, ...] = ()

    def fit(self, members: MemberProbs, y: npt.ArrayLike, regimes: npt.ArrayLike | None = None) -> Self:
        self.member_names = tuple(members)
        p = stack_members(members, self.member_names)
        target = np.asarray(y).astype(np.int64)
        if len(target) != len(p) or target.size == 0:
            raise ValueError("y must have one class per row of member probabilities (and at least one row)")
        reg = _regimes(regimes, len(target))
        groups: dict[str, npt.NDArray[np.int64]] = {GLOBAL: np.arange(len(target))}
        for r in np.unique(reg):
            idx = np.flatnonzero(reg == r)
            if _enough(target[idx], self.regime_min_samples, self.min_class_count):
                groups[str(r)] = idx
        self._fit_groups(p, target, groups)
        return self

    def predict_proba(self, members: MemberProbs, regimes: npt.ArrayLike | None = None) -> FloatArray:
        p = stack_members(members, self.member_names)
        reg = _regimes(regimes, len(p))
        out = np.empty((len(p), N_CLASSES))
        for key, idx in self._route(reg).items():
            out[idx] = self._predict_group(key, p[idx])
        return out

    def weights_for(self, regimes: npt.ArrayLike) -> FloatArray:
        """``(N, M)`` effective member weights of the model that decides each row."""
        reg = _regimes(regimes, len(np.asarray(regimes)))
        out = np.zeros((len(reg), len(self.member_names)))
        for key, idx in self._route(reg).items():
            out[idx] = self._weights(key)
        return out

    def member_weights(self, regime: str | None = None) -> dict[str, float]:
        """Effective weights of the model used for ``regime`` (None: the global model)."""
        key = self._key(regime)
        return dict(zip(self.member_names, map(float, self._weights(key)), strict=True))

    @property
    def regimes_modelled(self) -> tuple[str, ...]:
        return tuple(k for k in self._group_keys() if k != GLOBAL)

    def _key(self, regime: str | None) -> str:
        return regime if regime is not None and regime in self._group_keys() else GLOBAL

    def _route(self, reg: npt.NDArray[np.str_]) -> dict[str, npt.NDArray[np.int64]]:
        keys = np.array([self._key(str(r)) for r in reg], dtype=object)
        return {str(k): np.flatnonzero(keys == k) for k in np.unique(keys)} if len(reg) else {}

    @abstractmethod
    def _fit_groups(self, p: FloatArray, y: IntArray, groups: dict[str, npt.NDArray[np.int64]]) -> None: ...

    @abstractmethod
    def _predict_group(self, key: str, p: FloatArray) -> FloatArray: ...

    @abstractmethod
    def _weights(self, key: str) -> FloatArray: ...

    @abstractmethod
    def _group_keys(self) -> tuple[str, ...]: ...


# ----------------------------------------------------------------------------------------------- stacking


@dataclass
class _StackFit:
    model: LogisticRegression | None
    prior: FloatArray
    c: float
    weights: FloatArray
    center: FloatArray  # feature means of the fit set: centred inputs make the solver converge in far fewer steps
    low: FloatArray | None = None  # the fit set's feature range: inputs are clipped to it (absent on old artifacts)
    high: FloatArray | None = None


class StackingEnsemble(EnsembleModel):
    """Multinomial L2 logistic regression on member log-probabilities (see the module docstring)."""

    kind = "stacking"

    def __init__(
        self,
        *,
        cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
        validation_fraction: float = 0.25,
        regime_min_samples: int = 500,
        min_class_count: int = 20,
    ) -> None:
        super().__init__(regime_min_samples=regime_min_samples, min_class_count=min_class_count)
        self.cs = tuple(cs)
        self.validation_fraction = validation_fraction
        self.fits: dict[str, _StackFit] = {}

    @staticmethod
    def _features(p: FloatArray) -> FloatArray:
        return np.log(p).reshape(len(p), -1)

    @staticmethod
    def _proba(model: LogisticRegression, x: FloatArray) -> FloatArray:
        out = np.full((len(x), N_CLASSES), LOG_FLOOR)
        out[:, model.classes_.astype(np.int64)] = model.predict_proba(x)
        return np.asarray(out / out.sum(axis=1, keepdims=True))

    def _choose_c(self, x: FloatArray, y: IntArray) -> float:
        n_val = int(len(y) * self.validation_fraction)
        if len(self.cs) == 1 or n_val < 50 or len(np.unique(y[:-n_val])) < 2:
            return self.cs[len(self.cs) // 2]
        losses = []
        for c in self.cs:
            model = LogisticRegression(C=c, max_iter=500).fit(x[:-n_val], y[:-n_val])
            p = self._proba(model, x[-n_val:])
            losses.append(-np.mean(np.log(p[np.arange(n_val), y[-n_val:]])))
        return self.cs[int(np.argmin(losses))]

    def _contribution_weights(self, model: LogisticRegression, x: FloatArray) -> FloatArray:
        m = len(self.member_names)
        spread = np.zeros(m)
        for j in range(m):
            cols = slice(j * N_CLASSES, (j + 1) * N_CLASSES)
            z = x[:, cols] @ model.coef_[:, cols].T  # (N, classes present)
            if z.shape[1] == 1:  # binary sklearn model: one logit column
                z = np.column_stack([-z[:, 0] / 2, z[:, 0] / 2])
            z = z - z.mean(axis=1, keepdims=True)
            spread[j] = float(np.mean(np.linalg.norm(z - z.mean(axis=0), axis=1)))
        total = spread.sum()
        return spread / total if total > 0 else spread

    def _fit_groups(self, p: FloatArray, y: IntArray, groups: dict[str, npt.NDArray[np.int64]]) -> None:
        self.fits = {}
        for key, idx in groups.items():
            x, target = self._features(p[idx]), y[idx]
            counts = np.bincount(target, minlength=N_CLASSES).astype(np.float64)
            prior = (counts + 1.0) / (counts.sum() + N_CLASSES)
            center = x.mean(axis=0)
            if np.count_nonzero(counts) < 2:
                self.fits[key] = _StackFit(None, prior, math.nan, np.zeros(len(self.member_names)), center)
                continue
            x = x - center
            c = self._choose_c(x, target)
            model = LogisticRegression(C=c, max_iter=1000).fit(x, target)
            weights = self._contribution_weights(model, x)
            self.fits[key] = _StackFit(model, prior, c, weights, center, x.min(axis=0), x.max(axis=0))

    def _predict_group(self, key: str, p: FloatArray) -> FloatArray:
        fit = self.fits[key]
        if fit.model is None:
            return np.tile(fit.prior, (len(p), 1))
        x = self._features(p) - fit.center
        if fit.low is not None and fit.high is not None:
            # a member log-probability beyond anything seen in fitting (a rare class's tail) would make the linear
            # stacker extrapolate into overconfidence
            x = np.clip(x, fit.low, fit.high)
        return self._proba(fit.model, x)

    def _weights(self, key: str) -> FloatArray:
        return self.fits[key].weights

    def _group_keys(self) -> tuple[str, ...]:
        return tuple(self.fits)


# ------------------------------------------------------------------------------------- skill weighting


@dataclass
class _SkillGroup:
    base: FloatArray  # (K,) base-rate probabilities
    weights: FloatArray  # (M + 1,) member weights, then the base rate's weight
    temperature: float
    window: deque[FloatArray] = field(default_factory=deque)  # per-sample log-score improvements (M,)

    def skill(self) -> tuple[FloatArray, FloatArray, int]:
        d = np.asarray(self.window)
        n = len(d)
        if n < 2:
            zeros = np.zeros(self.weights.size - 1)
            return zeros, np.full_like(zeros, np.inf), n
        return d.mean(axis=0), d.std(axis=0, ddof=1) / math.sqrt(n), n

    def __getstate__(self) -> dict[str, object]:
        """Saved state: the rolling window as one ``(n, M)`` array and its length limit (no ``deque`` object)."""
        rows = np.asarray(self.window, dtype=np.float64).reshape(len(self.window), self.weights.size - 1)
        return {**self.__dict__, "window": rows, "window_maxlen": self.window.maxlen}

    def __setstate__(self, state: dict[str, object]) -> None:
        state = dict(state)
        rows = np.asarray(state.pop("window"), dtype=np.float64)
        maxlen = state.pop("window_maxlen")
        self.__dict__.update(state)
        self.window = deque(rows, maxlen=None if maxlen is None else int(maxlen))  # type: ignore[call-overload]


class SkillWeightedEnsemble(EnsembleModel):
    """Log-linear pool with weights from measured log-score improvement over the base rate (module docstring)."""

    kind = "skill"

    def __init__(
        self,
        *,
        z_min: float = 2.0,
        temperature: float | None = None,
        window: int = 2000,
        max_step: float = 0.05,
        min_window: int = 100,
        regime_min_samples: int = 500,
        min_class_count: int = 20,
    ) -> None:
        super().__init__(regime_min_samples=regime_min_samples, min_class_count=min_class_count)
        if not 0 < max_step <= 1:
            raise ValueError("max_step must be in (0, 1]")
        self.z_min = z_min
        self.temperature = temperature
        self.window = window
        self.max_step = max_step
        self.min_window = min_window
        self.groups: dict[str, _SkillGroup] = {}

    def target_weights(self, skill: FloatArray, se: FloatArray) -> FloatArray:
        """``(M + 1,)`` weights for measured skills: skilled members by skill, else all on the base rate."""
        skilled = (skill > 0) & (skill > self.z_min * se)
        out = np.zeros(skill.size + 1)
        if not skilled.any():
            out[-1] = 1.0
            return out
        if self.temperature is None:
            out[:-1] = np.where(skilled, skill, 0.0)
        else:
            z = np.where(skilled, skill / self.temperature, -np.inf)
            out[:-1] = np.exp(z - z[skilled].max())
        out /= out.sum()
        return out

    @staticmethod
    def _pool_logits(p: FloatArray, base: FloatArray, weights: FloatArray) -> FloatArray:
        return np.asarray(np.einsum("nmk,m->nk", np.log(p), weights[:-1]) + weights[-1] * np.log(base))

    @staticmethod
    def _fit_temperature(logits: FloatArray, y: IntArray) -> float:
        def nll(log_t: float) -> float:
            q = _softmax(logits / math.exp(log_t))
            return float(-np.mean(np.log(np.clip(q[np.arange(len(y)), y], 1e-12, 1.0))))

        return float(math.exp(minimize_scalar(nll, bounds=(math.log(0.1), math.log(10.0)), method="bounded").x))

    def _fit_groups(self, p: FloatArray, y: IntArray, groups: dict[str, npt.NDArray[np.int64]]) -> None:
        self.groups = {}
        for key, idx in groups.items():
            counts = np.bincount(y[idx], minlength=N_CLASSES).astype(np.float64)
            base = (counts + 1.0) / (counts.sum() + N_CLASSES)
            rows = np.arange(len(idx))
            improvement = np.log(p[idx][rows, :, y[idx]]) - np.log(base[y[idx]])[:, None]  # (n, M)
            group = _SkillGroup(base, np.zeros(len(self.member_names) + 1), 1.0, deque(maxlen=self.window))
            group.window.extend(improvement[-self.window :])
            group.weights = self.target_weights(*group.skill()[:2])
            group.temperature = self._fit_temperature(self._pool_logits(p[idx], base, group.weights), y[idx])
            self.groups[key] = group

    def _predict_group(self, key: str, p: FloatArray) -> FloatArray:
        g = self.groups[key]
        return _softmax(self._pool_logits(p, g.base, g.weights) / g.temperature)

    def _weights(self, key: str) -> FloatArray:
        return self.groups[key].weights[:-1].copy()

    def _group_keys(self) -> tuple[str, ...]:
        return tuple(self.groups)

    def update(self, member_probs: Mapping[str, npt.ArrayLike], outcome: int, regime: str | None = None) -> None:
        """Re-weight from one outcome known at the decision bar: the global model and ``regime``'s model, if any."""
        p = stack_members(
            {k: np.asarray(v, dtype=np.float64).reshape(1, -1) for k, v in member_probs.items()}, self.member_names
        )[0]
        keys = [GLOBAL] + ([regime] if regime is not None and regime in self.groups else [])
        for key in keys:
            g = self.groups[key]
            g.window.append(np.log(p[:, outcome]) - math.log(g.base[outcome]))
            if len(g.window) < self.min_window:
                continue
            target = self.target_weights(*g.skill()[:2])
            gap = float(np.max(np.abs(target - g.weights)))
            step = 1.0 if gap <= self.max_step else self.max_step / gap
            g.weights = g.weights + step * (target - g.weights)

    def skill(self, regime: str | None = None) -> dict[str, tuple[float, float]]:
        """``{member: (skill in nats per sample, standard error)}`` over the current window."""
        mean, se, _ = self.groups[self._key(regime)].skill()
        return {name: (float(m), float(s)) for name, m, s in zip(self.member_names, mean, se, strict=True)}


def make_ensemble(kind: str = "stacking", **kwargs: object) -> EnsembleModel:
    """``"stacking"`` or ``"skill"`` with the model's keyword arguments."""
    if kind == "stacking":
        return StackingEnsemble(**kwargs)  # type: ignore[arg-type]
    if kind == "skill":
        return SkillWeightedEnsemble(**kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown ensemble kind {kind!r}: use 'stacking' or 'skill'")


__all__ = [
    "EnsembleModel",
    "MemberProbs",
    "SkillWeightedEnsemble",
    "StackingEnsemble",
    "make_ensemble",
    "member_skill",
    "stack_members",
]
