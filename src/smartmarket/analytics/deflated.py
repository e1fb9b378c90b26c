"""Probabilistic and Deflated Sharpe Ratios (Bailey & López de Prado, 2012 and 2014).

**Units.** Every Sharpe ratio here is *per period* (per bar: mean / std of per-bar returns), never annualised,
and ``n_obs`` is the number of returns it was estimated from. Convert an annualised Sharpe with
``per_period_sharpe(sr_annual, periods_per_year)`` (divide by ``sqrt(ppy)``) and the variance of annualised
Sharpes across trials by dividing by ``ppy``.

* ``skewness`` is the third standardised moment; ``kurtosis`` is the fourth, **non-excess** (3 for a normal).
* PSR(SR*) = Φ( (SR - SR*) · sqrt(n - 1) / sqrt(1 - skew·SR + (kurt - 1)/4 · SR²) ): the probability that
  the true Sharpe exceeds the benchmark SR*, given a sample of ``n`` non-normal returns.
* E[max SR] over ``N`` independent trials whose Sharpe estimates have variance ``V``:
  sqrt(V) · ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e))), γ the Euler-Mascheroni constant.
* DSR = PSR(SR* = E[max SR]): the chance the best of ``N`` tries is real skill rather than selection luck.

The normal CDF and its inverse come from ``statistics.NormalDist`` (no scipy needed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

EULER_MASCHERONI = 0.5772156649015329
_STANDARD_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class ReturnMoments:
    """Per-period Sharpe (ddof=1 std), skewness and non-excess kurtosis (population moments) of returns."""

    n_obs: int
    sharpe: float | None  # None when the returns have zero variance
    skewness: float | None
    kurtosis: float | None


def return_moments(returns: np.ndarray) -> ReturnMoments:
    """Moments the PSR/DSR formulas need, from per-period simple returns."""
    r = np.asarray(returns, dtype=np.float64)
    n = len(r)
    if n < 2:
        return ReturnMoments(n, None, None, None)
    std = float(np.std(r, ddof=1))
    if std <= 0:
        return ReturnMoments(n, None, None, None)
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    skew = float(np.mean(centred**3)) / m2**1.5
    kurt = float(np.mean(centred**4)) / m2**2
    return ReturnMoments(n, float(r.mean()) / std, skew, kurt)


def per_period_sharpe(annual_sharpe: float, periods_per_year: float) -> float:
    """An annualised Sharpe expressed per period (divide by ``sqrt(periods_per_year)``)."""
    return annual_sharpe / math.sqrt(periods_per_year)


def probabilistic_sharpe_ratio(
    sharpe: float, n_obs: int, skewness: float, kurtosis: float, benchmark_sharpe: float = 0.0
) -> float:
    """P(true per-period Sharpe > ``benchmark_sharpe``) given an estimate from ``n_obs`` returns.

    Raises ``ValueError`` for fewer than 2 observations or moments that make the variance term non-positive.
    """
    if n_obs < 2:
        raise ValueError(f"PSR needs at least 2 observations, got {n_obs}")
    variance_term = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if variance_term <= 0:
        raise ValueError(f"PSR undefined: 1 - skew*SR + (kurt-1)/4*SR^2 = {variance_term} <= 0")
    z = (sharpe - benchmark_sharpe) * math.sqrt(n_obs - 1) / math.sqrt(variance_term)
    return _STANDARD_NORMAL.cdf(z)


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum of ``n_trials`` per-period Sharpe estimates with variance ``sharpe_variance``,
    under the null of no skill (true Sharpe 0). One trial means no selection: 0."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    if sharpe_variance < 0:
        raise ValueError(f"sharpe_variance must be non-negative, got {sharpe_variance}")
    if n_trials == 1:
        return 0.0
    g = EULER_MASCHERONI
    inv = _STANDARD_NORMAL.inv_cdf
    return math.sqrt(sharpe_variance) * ((1 - g) * inv(1 - 1 / n_trials) + g * inv(1 - 1 / (n_trials * math.e)))


def deflated_sharpe_ratio(
    sharpe: float, n_obs: int, skewness: float, kurtosis: float, *, n_trials: int, sharpe_variance: float
) -> float:
    """DSR: the PSR of ``sharpe`` against the Sharpe the best of ``n_trials`` no-skill tries would reach.

    ``sharpe_variance`` is the variance, across the configurations tried, of their per-period Sharpe ratios.
    """
    benchmark = expected_max_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe_ratio(sharpe, n_obs, skewness, kurtosis, benchmark_sharpe=benchmark)


def deflated_sharpe_from_returns(returns: np.ndarray, *, n_trials: int, sharpe_variance: float) -> float | None:
    """DSR straight from the per-bar returns of the selected configuration; None if Sharpe is undefined."""
    m = return_moments(returns)
    if m.sharpe is None or m.skewness is None or m.kurtosis is None:
        return None
    return deflated_sharpe_ratio(
        m.sharpe, m.n_obs, m.skewness, m.kurtosis, n_trials=n_trials, sharpe_variance=sharpe_variance
    )


__all__ = [
    "EULER_MASCHERONI",
    "ReturnMoments",
    "deflated_sharpe_from_returns",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "per_period_sharpe",
    "probabilistic_sharpe_ratio",
    "return_moments",
]
