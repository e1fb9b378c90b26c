"""Exchange fees: a rate on the traded notional, per side, different for makers and takers.

Market orders and stop exits take liquidity (taker rate); take-profit exits rest as limit orders (maker
rate). The default, 0.1 % per side for both, is Binance spot's base tier.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartmarket.core.errors import ConfigError
from smartmarket.execution.orders import Liquidity


@dataclass(frozen=True, slots=True)
class FeeModel:
    """Fee = ``|quantity x price| x rate``; rates are fractions (``0.001`` = 0.1 %). Negative = rebate."""

    maker: float = 0.001
    taker: float = 0.001

    def __post_init__(self) -> None:
        for name, rate in (("maker", self.maker), ("taker", self.taker)):
            if not -0.01 <= rate < 0.1:
                hint = "give a fraction, e.g. 0.001 = 0.1 %"
                raise ConfigError(f"{name} fee rate {rate!r} is implausible", hint=hint)

    def rate(self, liquidity: Liquidity) -> float:
        return self.maker if liquidity == "maker" else self.taker

    def fee(self, notional: float, liquidity: Liquidity = "taker") -> float:
        """Fee charged on a fill of the given notional (sign of the notional ignored)."""
        return abs(notional) * (self.maker if liquidity == "maker" else self.taker)


NO_FEES = FeeModel(maker=0.0, taker=0.0)

__all__ = ["NO_FEES", "FeeModel"]
