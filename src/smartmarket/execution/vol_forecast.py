"""Per-symbol volatility forecasters for volatility-targeted sizing (``--vol-model ewma|har``).

One interface, :class:`VolForecaster`: ``update(close)`` at each closed bar, ``forecast()`` the per-bar volatility
(standard deviation of the next bar's log return) from the closes seen so far — nothing else, so a forecast at bar
``t`` cannot depend on a later bar. The kernel keeps one per symbol (``VolatilityTarget.tracker()``) and updates it
at every close, in backtest, replay and live runs alike.

* :class:`EWMAVolatility` — RiskMetrics over the last ``lookback`` returns (``sizing.ewma_volatility``): the same
  figure ``VolatilityTarget.forecast`` computes from the closes window.
* :class:`HARVolatility` — HAR-RV (Corsi 2009). A "day" is ``day`` bars (one calendar day of bars). The target is
  the next day's realised variance ``RV[t] = sum r[t+1..t+day]^2``; the regressors are the trailing mean of ``r^2``
  over the last ``d x day`` returns for ``d`` in 1, 5, 22, scaled to a day. Fitted by :func:`har_fit` (least
  squares, logs by default, with Duan's smearing term) on the samples whose target is complete at the fit bar, over
  a rolling window of ``fit_days`` days, refitted once every ``day`` bars. Until ``min_fit_days`` days of samples
  exist it forecasts with the EWMA. Per-bar volatility: ``sqrt(RV forecast / day)``.

:func:`har_fit` and :func:`smearing` are also the fitting step of ``models.volatility.HARForecaster``
(``compare-models``), so both HARs fit the same way.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque

import numpy as np

from smartmarket.core.errors import ConfigError
from smartmarket.execution.sizing import ewma_volatility

HAR_DAYS: tuple[int, ...] = (1, 5, 22)
VARIANCE_FLOOR = 1e-12
"""Floor for a realised variance before its log (a window without any price change)."""


def smearing(residuals: np.ndarray) -> float:
    """``log mean exp(residual)``: turns a forecast of E[log RV] into one of log E[RV] (Duan 1983)."""
    res = residuals[np.isfinite(residuals)]
    if res.size == 0:
        return 0.0
    top = float(res.max())
    return top + math.log(float(np.mean(np.exp(res - top))))


def har_fit(design: np.ndarray, target: np.ndarray, *, log: bool = True) -> tuple[np.ndarray, float]:
    """OLS of ``target`` on ``design`` (a constant column first): the coefficients and, with ``log``, the smearing
    term of the residuals (0 otherwise). ``ConfigError`` without more rows than columns."""
    if design.shape[0] <= design.shape[1]:
        raise ConfigError(f"HAR-RV needs more than {design.shape[1]} training bars, got {design.shape[0]}")
    coef = np.linalg.lstsq(design, target, rcond=None)[0]
    return coef, (smearing(target - design @ coef) if log else 0.0)


class VolForecaster(ABC):
    """One symbol's per-bar volatility forecast, fed closed bars in order."""

    history: int = 0
    """The most closes its forecast depends on (how many to feed before a window, to forecast as a longer run)."""

    @abstractmethod
    def update(self, close: float) -> None:
        """Take the close of the next bar."""

    @abstractmethod
    def forecast(self) -> float:
        """Per-bar volatility of the next return from the closes so far (NaN while not enough are known)."""


class EWMAVolatility(VolForecaster):
    """RiskMetrics EWMA over the last ``lookback`` returns (weights normalised over that window)."""

    def __init__(self, decay: float, lookback: int) -> None:
        if not 0 < decay < 1 or lookback < 2:
            raise ConfigError(f"EWMA needs 0 < decay < 1 and lookback >= 2, got {decay!r}, {lookback!r}")
        self.decay = decay
        self.history = lookback + 1
        self.closes: deque[float] = deque(maxlen=lookback + 1)

    def update(self, close: float) -> None:
        self.closes.append(close)

    def forecast(self) -> float:
        if len(self.closes) < (self.closes.maxlen or 0):
            return math.nan
        return ewma_volatility(self.closes, self.decay)


class HARVolatility(VolForecaster):
    """HAR-RV forecast of the next day's realised variance, as a per-bar volatility (see the module docstring)."""

    def __init__(
        self,
        day: int,
        fallback: VolForecaster,
        *,
        log: bool = True,
        fit_days: int = 365,
        min_fit_days: int = 60,
        har_days: tuple[int, ...] = HAR_DAYS,
    ) -> None:
        if day < 1 or not 0 < min_fit_days <= fit_days:
            raise ConfigError(f"HAR-RV needs day >= 1 and 0 < min_fit_days <= fit_days, got {day}, {min_fit_days}, "
                              f"{fit_days}")  # fmt: skip
        self.day, self.fallback, self.log, self.har_days = day, fallback, log, har_days
        self.min_samples = min_fit_days * day
        self.window = max(har_days) * day  # returns behind the longest regressor
        self.keep = (fit_days + 1) * day + self.window  # returns kept: the fit window, its regressors and targets
        self.history = max(self.keep + 1, fallback.history)
        self.last_close = math.nan
        self.csum: list[float] = [0.0]  # csum[k] = sum of the first k kept squared returns
        self.since_fit = 0
        self.coef: np.ndarray | None = None
        self.smear = 0.0

    def update(self, close: float) -> None:
        self.fallback.update(close)
        if self.last_close > 0 and close > 0:
            r = math.log(close / self.last_close)
            self.csum.append(self.csum[-1] + r * r)
        self.last_close = close
        if len(self.csum) > 2 * self.keep:  # drop the oldest returns (bounded memory in long live runs)
            base = self.csum[-self.keep - 1]
            self.csum = [c - base for c in self.csum[-self.keep - 1 :]]
        self.since_fit += 1
        if self.since_fit >= self.day:
            self.since_fit = 0
            self.refit()

    def regressors(self, csum: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Design rows (constant, then each trailing realised variance) for samples ending at ``csum`` index
        ``ends`` (the sample's last known return is the ``ends``-th kept one)."""
        cols = [np.ones(ends.size)]
        for d in self.har_days:
            n = d * self.day
            rv = np.maximum((csum[ends] - csum[ends - n]) / n * self.day, VARIANCE_FLOOR)
            cols.append(np.log(rv) if self.log else rv)
        return np.column_stack(cols)

    def refit(self) -> None:
        """Fit on the samples whose next-day target is complete now (targets end at the last return at most)."""
        csum = np.asarray(self.csum[-self.keep - 1 :])
        last = csum.size - 1
        ends = np.arange(self.window, last - self.day + 1)
        if ends.size < self.min_samples:
            return
        target = np.maximum(csum[ends + self.day] - csum[ends], VARIANCE_FLOOR)
        self.coef, self.smear = har_fit(self.regressors(csum, ends), np.log(target) if self.log else target,
                                        log=self.log)  # fmt: skip

    def forecast(self) -> float:
        if self.coef is None:
            return self.fallback.forecast()
        csum = np.asarray(self.csum[-self.window - 1 :])
        fitted = float(self.regressors(csum, np.array([self.window]))[0] @ self.coef)
        variance = math.exp(fitted + self.smear) if self.log else max(fitted, VARIANCE_FLOOR)
        return math.sqrt(variance / self.day)


__all__ = ["HAR_DAYS", "EWMAVolatility", "HARVolatility", "VolForecaster", "har_fit", "smearing"]
