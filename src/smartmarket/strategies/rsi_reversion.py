"""RSI mean reversion: buy oversold, sell overbought, step aside once RSI is back in the middle.

Long when RSI(period) < ``lower``; short when RSI > ``upper`` (flat instead in long-only mode); an open
position is closed when RSI crosses back through the midpoint ``(lower + upper) / 2``. RSI is Wilder's, from
``features.indicators``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from smartmarket.core.errors import ConfigError
from smartmarket.engine.strategy import BarContext, Strategy
from smartmarket.execution.orders import Decision
from smartmarket.features.base import Feature
from smartmarket.features.indicators import make_indicator

_LONG = Decision("long")
_SHORT = Decision("short")
_FLAT = Decision("flat")


class RsiReversion(Strategy):
    """Parameters: ``period`` (bars), ``lower`` and ``upper`` thresholds (0 < lower < upper < 100)."""

    name: ClassVar[str] = "rsi_reversion"
    history_size = 1

    def __init__(self, period: int = 14, lower: float = 30.0, upper: float = 70.0) -> None:
        if not (period >= 2 and 0.0 < lower < upper < 100.0):
            raise ConfigError(
                f"rsi_reversion needs period >= 2 and 0 < lower < upper < 100, got {period}, {lower}, {upper}"
            )
        self.period = int(period)
        self.lower = float(lower)
        self.upper = float(upper)
        self.middle = (self.lower + self.upper) / 2.0

    def features(self) -> Sequence[Feature]:
        return (make_indicator(f"rsi_{self.period}"),)

    def on_bar(self, ctx: BarContext) -> Decision | None:
        rsi = ctx.feature_values[0]
        if rsi < self.lower:
            return _LONG
        if rsi > self.upper:
            return _SHORT
        if (ctx.position > 0 and rsi >= self.middle) or (ctx.position < 0 and rsi <= self.middle):
            return _FLAT
        return None

    def params(self) -> dict[str, Any]:
        return {"period": self.period, "lower": self.lower, "upper": self.upper}


__all__ = ["RsiReversion"]
