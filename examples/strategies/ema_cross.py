"""EMA crossover with an RSI filter: a strategy in its own file, outside the SmartMarket package.

Backtest it (see docs/strategies.md):

    smartmarket backtest -s ETHUSDT -t 4h --strategy examples/strategies/ema_cross.py:EmaCross \
        --params fast=12,slow=26,rsi_max=70 --stop-loss 5

Long when the fast EMA crosses above the slow one (unless RSI says the market is already overbought), flat
when it crosses back below. Long only: it never asks for a short.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from smartmarket.core.errors import ConfigError
from smartmarket.engine.strategy import BarContext, Strategy
from smartmarket.execution.orders import Decision
from smartmarket.features.base import Feature
from smartmarket.features.indicators import make_indicator


class EmaCross(Strategy):
    """Parameters: ``fast`` and ``slow`` EMA periods (bars, fast < slow); ``rsi_max``: skip entries above it."""

    name = "ema_cross"
    history_size = 1  # bars kept in ctx.history (this strategy reads features only)

    def __init__(self, fast: int = 12, slow: int = 26, rsi_max: float = 70.0) -> None:
        if not 1 <= fast < slow:
            raise ConfigError(f"ema_cross needs 1 <= fast < slow, got fast={fast}, slow={slow}")
        self.fast, self.slow, self.rsi_max = int(fast), int(slow), float(rsi_max)
        self._above = math.nan  # was fast > slow at the previous bar? (NaN until both EMAs are warm)

    def features(self) -> Sequence[Feature]:
        # Columns: ema_<fast>, ema_<slow>, rsi_14; read with ctx.feature("ema_12") or ctx.feature_values.
        return (make_indicator(f"ema_{self.fast}"), make_indicator(f"ema_{self.slow}"), make_indicator("rsi_14"))

    def on_bar(self, ctx: BarContext) -> Decision | None:
        fast, slow, rsi = ctx.feature_values
        if math.isnan(fast) or math.isnan(slow):
            return None  # still warming up: no opinion
        above = fast > slow
        crossed = not math.isnan(self._above) and above != bool(self._above)
        self._above = float(above)
        if not crossed:
            return None  # keep whatever is held
        if above and not rsi > self.rsi_max:
            return Decision("long")
        if not above:
            return Decision("flat")
        return None

    def params(self) -> dict[str, Any]:
        return {"fast": self.fast, "slow": self.slow, "rsi_max": self.rsi_max}
