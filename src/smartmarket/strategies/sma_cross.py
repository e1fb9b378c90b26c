"""SMA crossover: long when the fast SMA crosses above the slow one, short when it crosses below.

A cross at bar t means ``fast[t-1] < slow[t-1]`` and ``fast[t] > slow[t]`` (strict on both sides, the
definition ``backtesting.lib.crossover`` uses). The strategy is flat until the first cross and always in the
market afterwards (flat instead of short in long-only mode). SMAs come from ``features.indicators``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from smartmarket.core.errors import ConfigError
from smartmarket.engine.strategy import BarContext, Strategy
from smartmarket.execution.orders import Decision
from smartmarket.features.base import Feature
from smartmarket.features.indicators import make_indicator

_LONG = Decision("long")
_SHORT = Decision("short")


class SmaCross(Strategy):
    """Parameters: ``fast`` and ``slow`` SMA periods (bars), ``fast < slow``."""

    name: ClassVar[str] = "sma_cross"
    history_size = 1

    def __init__(self, fast: int = 10, slow: int = 30) -> None:
        if not 1 <= fast < slow:
            raise ConfigError(f"sma_cross needs 1 <= fast < slow, got fast={fast}, slow={slow}")
        self.fast = int(fast)
        self.slow = int(slow)
        self._prev_fast = math.nan
        self._prev_slow = math.nan

    def features(self) -> Sequence[Feature]:
        return (make_indicator(f"sma_{self.fast}"), make_indicator(f"sma_{self.slow}"))

    def on_bar(self, ctx: BarContext) -> Decision | None:
        fast, slow = ctx.feature_values  # declared order: fast, slow
        prev_fast, prev_slow = self._prev_fast, self._prev_slow
        self._prev_fast, self._prev_slow = fast, slow
        if prev_fast < prev_slow and fast > slow:
            return _LONG
        if prev_fast > prev_slow and fast < slow:
            return _SHORT
        return None  # NaN while warming up compares False: no cross

    def params(self) -> dict[str, Any]:
        return {"fast": self.fast, "slow": self.slow}


__all__ = ["SmaCross"]
