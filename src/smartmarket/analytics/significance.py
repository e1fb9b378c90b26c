"""Is a difference between two forecasters real? Paired tests on per-sample losses.

* ``diebold_mariano(loss_a, loss_b, horizon)``: the Diebold-Mariano test of equal expected loss on the loss
  differential ``d = loss_a − loss_b``, with a Newey-West (Bartlett) long-run variance over ``horizon − 1`` lags
  (forecasts of overlapping ``horizon``-bar outcomes have autocorrelated errors) and the Harvey-Leybourne-Newbold
  small-sample correction, compared with Student's t on n − 1 degrees of freedom (Diebold & Mariano 1995;
  Harvey, Leybourne & Newbold 1997).
* ``paired_block_bootstrap(a, b, block)``: a circular block bootstrap of the mean paired difference (blocks keep
  the autocorrelation), for statistics without a closed form (e.g. P&L per signal); a two-sided p-value and a
  percentile confidence interval. Seeded: the same inputs give the same answer.

Both say "no difference" for identical inputs (a zero differential: p = 1).

* ``sharpe_bootstrap_ci(returns, block, periods_per_year)``: a percentile confidence interval of one series'
  annualised Sharpe ratio by the same circular block bootstrap (blocks of ``block`` consecutive returns).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats


@dataclass(frozen=True)
class PairedTest:
    """A two-sided test of mean(a − b) = 0. ``mean_difference`` < 0: ``a`` has the lower mean (for losses: better)."""

    method: str
    n: int
    mean_difference: float
    statistic: float
    p_value: float
    ci_low: float
    ci_high: float
    level: float = 0.05

    @property
    def significant(self) -> bool:
        return bool(self.p_value < self.level)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


def _paired(a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired samples need two 1-D arrays of one length, got {x.shape} and {y.shape}")
    d = x - y
    if not np.isfinite(d).all():
        raise ValueError("paired samples must be finite")
    return d


def newey_west_variance(d: np.ndarray, lags: int) -> float:
    """Long-run variance of ``d`` (Bartlett weights over ``lags`` autocovariances)."""
    n = len(d)
    centred = d - d.mean()
    variance = float(centred @ centred) / n
    for k in range(1, min(lags, n - 1) + 1):
        cov = float(centred[k:] @ centred[:-k]) / n
        variance += 2.0 * (1.0 - k / (lags + 1)) * cov
    return variance


def diebold_mariano(
    loss_a: npt.ArrayLike, loss_b: npt.ArrayLike, *, horizon: int = 1, level: float = 0.05
) -> PairedTest:
    """DM test of equal expected loss (see the module docstring); ``horizon``: bars each forecast looks ahead."""
    d = _paired(loss_a, loss_b)
    n = len(d)
    if n < 3:
        raise ValueError(f"the Diebold-Mariano test needs at least 3 paired losses, got {n}")
    mean = float(d.mean())
    h = max(1, int(horizon))
    variance = newey_west_variance(d, h - 1)
    if variance <= 0.0:  # a constant differential: zero means identical forecasts, else a sure difference
        p = 1.0 if mean == 0.0 else 0.0
        stat = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        return PairedTest("diebold-mariano", n, mean, stat, p, mean, mean, level)
    se = math.sqrt(variance / n)
    correction = math.sqrt(max((n + 1 - 2 * h + h * (h - 1) / n) / n, 1e-12))
    stat = correction * mean / se
    p = float(2.0 * stats.t.sf(abs(stat), df=n - 1))
    half = float(stats.t.ppf(1 - level / 2, df=n - 1)) * se
    return PairedTest("diebold-mariano", n, mean, float(stat), p, mean - half, mean + half, level)


def paired_block_bootstrap(
    a: npt.ArrayLike, b: npt.ArrayLike, *, block: int = 1, resamples: int = 2000, level: float = 0.05, seed: int = 0
) -> PairedTest:
    """Circular block bootstrap of mean(a − b) (see the module docstring)."""
    d = _paired(a, b)
    n = len(d)
    if n < 2:
        raise ValueError(f"the bootstrap needs at least 2 paired samples, got {n}")
    mean = float(d.mean())
    if np.all(d == d[0]):
        p = 1.0 if mean == 0.0 else 0.0
        return PairedTest("paired block bootstrap", n, mean, 0.0 if mean == 0.0 else math.inf, p, mean, mean, level)
    size = max(1, min(int(block), n))
    rng = np.random.default_rng(seed)
    blocks = math.ceil(n / size)
    starts = rng.integers(0, n, size=(resamples, blocks))
    index = (starts[:, :, None] + np.arange(size)[None, None, :]).reshape(resamples, -1)[:, :n] % n
    means = d[index].mean(axis=1)
    # two-sided p-value: how often the centred bootstrap distribution is at least as far from 0 as the estimate
    centred = means - mean
    p = float((np.sum(np.abs(centred) >= abs(mean)) + 1) / (resamples + 1))
    low, high = np.quantile(means, [level / 2, 1 - level / 2])
    se = float(means.std(ddof=1))
    stat = mean / se if se > 0 else math.copysign(math.inf, mean)
    return PairedTest("paired block bootstrap", n, mean, float(stat), p, float(low), float(high), level)


def _circular_blocks(n: int, block: int, resamples: int, seed: int) -> np.ndarray:
    """Row indices of ``resamples`` circular block-bootstrap samples of length ``n`` (blocks of ``block``)."""
    size = max(1, min(int(block), n))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(resamples, math.ceil(n / size)))
    return (starts[:, :, None] + np.arange(size)[None, None, :]).reshape(resamples, -1)[:, :n] % n


def sharpe_bootstrap_ci(
    returns: npt.ArrayLike, *, block: int, periods_per_year: float, resamples: int = 1000, level: float = 0.05,
    seed: int = 0,
) -> tuple[float, float] | None:  # fmt: skip
    """Percentile CI (``1 - level``) of the annualised Sharpe (mean / std ddof=1 x sqrt(ppy)) of ``returns``
    under a circular block bootstrap; None with fewer than 3 returns or zero variance. Seeded."""
    r = np.asarray(returns, dtype=np.float64)
    n = len(r)
    if n < 3 or not np.isfinite(r).all() or float(np.std(r)) == 0.0:
        return None
    index = _circular_blocks(n, block, resamples, seed)
    samples = r[index]
    std = samples.std(axis=1, ddof=1)
    ok = std > 0
    sharpes = samples.mean(axis=1)[ok] / std[ok] * math.sqrt(periods_per_year)
    if sharpes.size < 2:
        return None
    low, high = np.quantile(sharpes, [level / 2, 1 - level / 2])
    return float(low), float(high)


__all__ = ["PairedTest", "diebold_mariano", "newey_west_variance", "paired_block_bootstrap", "sharpe_bootstrap_ci"]
