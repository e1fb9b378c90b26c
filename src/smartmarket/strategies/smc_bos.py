"""SMC break-of-structure: trade a BOS in the trend's direction with the stop beyond the last swing.

At a bullish BOS (a close above the last swing high while the trend is up) go long with the stop at the last
confirmed swing low; at a bearish BOS go short with the stop at the last swing high. A BOS repeating the
held direction moves the stop (and target) to the new swing. With ``reward_risk`` set, the take-profit sits
that many stop distances from the close. A change of character (CHoCH) against the position closes it.
Breaks come from ``features.smc.SMCFeatures`` (close-based, causal).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from smartmarket.core.errors import ConfigError
from smartmarket.engine.strategy import BarContext, Strategy
from smartmarket.execution.orders import Decision
from smartmarket.features.base import Feature
from smartmarket.features.smc import SMC_COLUMNS, SMCFeatures

_FLAT = Decision("flat", reason="signal")
_BOS, _CHOCH = SMC_COLUMNS.index("smc_bos"), SMC_COLUMNS.index("smc_choch")
_SWING_HIGH, _SWING_LOW = SMC_COLUMNS.index("smc_range_high"), SMC_COLUMNS.index("smc_range_low")


class SmcBos(Strategy):
    """Parameters: ``swing_length`` (bars each side of a swing), ``reward_risk`` (None = no target)."""

    name: ClassVar[str] = "smc_bos"
    history_size = 1

    def __init__(self, swing_length: int = 5, reward_risk: float | None = 2.0, exit_on_choch: bool = True) -> None:
        if swing_length < 1 or (reward_risk is not None and reward_risk <= 0):
            raise ConfigError(f"smc_bos needs swing_length >= 1 and reward_risk > 0, got {swing_length}, {reward_risk}")
        self.swing_length = int(swing_length)
        self.reward_risk = reward_risk
        self.exit_on_choch = exit_on_choch

    def features(self) -> Sequence[Feature]:
        return (SMCFeatures(swing_length=self.swing_length),)

    def on_bar(self, ctx: BarContext) -> Decision | None:
        values = ctx.feature_values
        bos, choch = values[_BOS], values[_CHOCH]
        close = ctx.close
        if bos > 0:
            stop = values[_SWING_LOW]
            if stop < close:  # False for NaN: no swing low yet, no trade
                return self._entry("long", close, stop)
        elif bos < 0:
            stop = values[_SWING_HIGH]
            if stop > close:
                return self._entry("short", close, stop)
        elif self.exit_on_choch and choch != 0 and choch * ctx.position < 0:
            return _FLAT
        return None

    def _entry(self, direction: str, close: float, stop: float) -> Decision:
        target = None
        if self.reward_risk is not None:
            target = close + self.reward_risk * (close - stop)
        return Decision(direction, stop_loss=stop, take_profit=target)  # type: ignore[arg-type]

    def params(self) -> dict[str, Any]:
        return {"swing_length": self.swing_length, "reward_risk": self.reward_risk, "exit_on_choch": self.exit_on_choch}


__all__ = ["SmcBos"]
