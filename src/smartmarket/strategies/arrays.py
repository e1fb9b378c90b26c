"""Array forms of the classic strategies: their decisions at every close as one int8 code per bar.

The compiled sweep (:mod:`smartmarket.backtest.sweep`) reads these codes instead of calling ``on_bar``; each
form reproduces its event-driven strategy exactly, from the same indicator values (``features.indicators``
batch output equals its streaming output bit for bit). A code is a bit set:

* ``LONG`` (1) / ``SHORT`` (2): the strategy returns ``Decision("long")`` / ``Decision("short")``;
* ``EXIT_LONG`` (4) / ``EXIT_SHORT`` (8): it returns ``Decision("flat")`` if the position it holds at that
  close is long / short (the position is only known inside the fill loop, so the code carries the rule);
* ``0``: no decision (``None``).

Only strategies whose decisions depend on the candles and the held side alone have an array form (``smc_bos``
moves stops with each break and ``ensemble`` runs models: they stay event-driven).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from smartmarket.core.errors import ConfigError
from smartmarket.features.indicators import make_indicator

LONG, SHORT, EXIT_LONG, EXIT_SHORT = 1, 2, 4, 8


@njit(cache=True)
def sma_cross_codes(fast: np.ndarray, slow: np.ndarray, out: np.ndarray) -> None:
    """Cross up → LONG, cross down → SHORT (strict on both bars; NaN never crosses)."""
    out[0] = 0
    for i in range(1, fast.size):
        pf, ps, f, s = fast[i - 1], slow[i - 1], fast[i], slow[i]
        if pf < ps and f > s:
            out[i] = LONG
        elif pf > ps and f < s:
            out[i] = SHORT
        else:
            out[i] = 0


@njit(cache=True)
def rsi_reversion_codes(rsi: np.ndarray, lower: float, upper: float, out: np.ndarray) -> None:
    """RSI < lower → LONG; > upper → SHORT; else flat a long at RSI ≥ middle, a short at RSI ≤ middle."""
    middle = (lower + upper) / 2.0
    for i in range(rsi.size):
        r = rsi[i]
        if r < lower:
            out[i] = LONG
        elif r > upper:
            out[i] = SHORT
        else:
            code = 0
            if r >= middle:
                code |= EXIT_LONG
            if r <= middle:
                code |= EXIT_SHORT
            out[i] = code


class IndicatorCache:
    """Indicator columns of one candle frame, computed once per spec (``"sma_10"`` → float64 array)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self._columns: dict[str, np.ndarray] = {}

    def __call__(self, spec: str) -> np.ndarray:
        column = self._columns.get(spec)
        if column is None:
            column = np.ascontiguousarray(make_indicator(spec).batch_array(self.frame)[:, 0])
            self._columns[spec] = column
        return column


CodesFn = Callable[[IndicatorCache, Mapping[str, Any], np.ndarray], None]


@dataclass(frozen=True, slots=True)
class ArrayForm:
    """A strategy's decisions as codes: ``fill(indicators, params, out)`` writes one code per bar."""

    name: str
    fill: CodesFn

    def codes(self, indicators: IndicatorCache, params: Mapping[str, Any]) -> np.ndarray:
        out = np.zeros(len(indicators.frame), dtype=np.int8)
        self.fill(indicators, params, out)
        return out


def _sma_cross(ind: IndicatorCache, params: Mapping[str, Any], out: np.ndarray) -> None:
    fast, slow = int(params.get("fast", 10)), int(params.get("slow", 30))
    sma_cross_codes(ind(f"sma_{fast}"), ind(f"sma_{slow}"), out)


def _rsi_reversion(ind: IndicatorCache, params: Mapping[str, Any], out: np.ndarray) -> None:
    period = int(params.get("period", 14))
    lower, upper = float(params.get("lower", 30.0)), float(params.get("upper", 70.0))
    rsi_reversion_codes(ind(f"rsi_{period}"), lower, upper, out)


def _buy_hold(ind: IndicatorCache, params: Mapping[str, Any], out: np.ndarray) -> None:
    out[:] = 0
    if len(out):
        out[0] = LONG


ARRAY_FORMS: dict[str, ArrayForm] = {
    "sma_cross": ArrayForm("sma_cross", _sma_cross),
    "rsi_reversion": ArrayForm("rsi_reversion", _rsi_reversion),
    "buy_hold": ArrayForm("buy_hold", _buy_hold),
}
"""Strategies with an array form, by registered name."""


def array_form(name: str) -> ArrayForm | None:
    """The array form of strategy ``name``, or None when it only runs event-driven."""
    return ARRAY_FORMS.get(name)


def checked_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as the registered strategy accepts them (its own checks: ``ConfigError`` if refused)."""
    from smartmarket.strategies.registry import make_strategy

    strategy = make_strategy(name, **params)
    checked = strategy.params()
    unknown = set(params) - set(checked)
    if unknown:
        raise ConfigError(f"strategy {name!r} has no parameter {sorted(unknown)}", hint=f"parameters: {checked}")
    return checked


__all__ = [
    "ARRAY_FORMS",
    "EXIT_LONG",
    "EXIT_SHORT",
    "LONG",
    "SHORT",
    "ArrayForm",
    "IndicatorCache",
    "array_form",
    "checked_params",
    "rsi_reversion_codes",
    "sma_cross_codes",
]
