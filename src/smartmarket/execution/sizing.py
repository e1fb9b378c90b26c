"""Position sizing: how much of the equity a decision should put at work.

A sizer returns an *unsigned fraction of equity* for a long or short decision (the kernel applies the sign);
the broker turns it into a quantity at the fill price. A decision carrying its own ``size`` overrides the
sizer. Sizers that need recent prices declare ``lookback`` (closes required); they receive the closes up to
and including the decision bar, oldest first.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from smartmarket.core.errors import ConfigError
from smartmarket.execution.orders import Decision


class Sizer(ABC):
    """Decision → fraction of equity (≥ 0)."""

    __slots__ = ()
    lookback: int = 0

    def fraction(self, decision: Decision, price: float, closes: Sequence[float] = ()) -> float:
        """Fraction of equity for ``decision`` taken at a bar closing at ``price``."""
        if decision.size is not None:
            return max(0.0, float(decision.size))
        return max(0.0, self._fraction(decision, price, closes))

    @abstractmethod
    def _fraction(self, decision: Decision, price: float, closes: Sequence[float]) -> float: ...


def _confidence_scale(decision: Decision, use_confidence: bool) -> float:
    if not use_confidence or decision.confidence is None:
        return 1.0
    return min(1.0, max(0.0, decision.confidence))


@dataclass(frozen=True, slots=True)
class FixedFraction(Sizer):
    """Always ``fraction`` of equity (scaled by the decision's confidence when ``use_confidence``)."""

    fraction_of_equity: float = 1.0
    use_confidence: bool = False

    def __post_init__(self) -> None:
        if not self.fraction_of_equity > 0:
            raise ConfigError(f"fixed fraction must be positive, got {self.fraction_of_equity!r}")

    def _fraction(self, decision: Decision, price: float, closes: Sequence[float]) -> float:
        return self.fraction_of_equity * _confidence_scale(decision, self.use_confidence)


def realised_volatility(closes: Sequence[float]) -> float:
    """Sample standard deviation of the log returns of ``closes`` (NaN with fewer than 3 closes)."""
    if len(closes) < 3:
        return math.nan
    rets = [math.log(b / a) for a, b in itertools.pairwise(closes) if a > 0 and b > 0]
    n = len(rets)
    if n < 2:
        return math.nan
    mean = sum(rets) / n
    return math.sqrt(sum((r - mean) ** 2 for r in rets) / (n - 1))


@dataclass(frozen=True, slots=True)
class VolatilityTarget(Sizer):
    """Size so the position's volatility is ``target_vol`` per bar: ``target_vol / realised vol``, capped.

    Realised volatility is the standard deviation of the last ``lookback`` log returns. For an annual target,
    pass ``target_vol = annual / sqrt(bars_per_year)``. Until enough closes exist it sizes zero (no estimate,
    no position).
    """

    target_vol: float = 0.01
    lookback: int = 20
    max_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not (self.target_vol > 0 and self.lookback >= 2 and self.max_fraction > 0):
            raise ConfigError("volatility targeting needs target_vol > 0, lookback >= 2, max_fraction > 0")

    def _fraction(self, decision: Decision, price: float, closes: Sequence[float]) -> float:
        vol = realised_volatility(list(closes)[-(self.lookback + 1) :])
        if not vol > 0:
            return 0.0
        return min(self.max_fraction, self.target_vol / vol)


@dataclass(frozen=True, slots=True)
class RiskPerTrade(Sizer):
    """Risk ``risk_fraction`` of equity between entry and stop: fraction = risk x price / |price - stop|.

    The stop is the decision's ``stop_loss``, else ``default_stop_pct`` below (long) / above (short) the price;
    without either the decision is not sized (zero). The result is capped at ``max_fraction``.
    """

    risk_fraction: float = 0.01
    default_stop_pct: float | None = None
    max_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.risk_fraction < 1 and self.max_fraction > 0):
            raise ConfigError("risk per trade needs 0 < risk_fraction < 1 and max_fraction > 0")

    def _fraction(self, decision: Decision, price: float, closes: Sequence[float]) -> float:
        if decision.stop_loss is not None:
            distance = abs(price - decision.stop_loss) / price
        elif self.default_stop_pct is not None:
            distance = self.default_stop_pct
        else:
            return 0.0
        if not distance > 0:
            return 0.0
        return min(self.max_fraction, self.risk_fraction / distance)


__all__ = ["FixedFraction", "RiskPerTrade", "Sizer", "VolatilityTarget", "realised_volatility"]
