"""Trading records shared by execution (which produces them) and analytics (which measures them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

PositionSide = Literal["long", "short"]


@dataclass(frozen=True, slots=True)
class Trade:
    """One closed round trip. Times are UTC epoch ms of the fills; ``pnl`` is net of ``fees``."""

    symbol: str
    side: PositionSide
    entry_ts: int
    exit_ts: int
    entry_price: float
    exit_price: float
    quantity: float
    pnl: float
    fees: float
    entry_bar: int = -1
    exit_bar: int = -1
    exit_reason: str = "signal"

    @property
    def return_pct(self) -> float:
        """Net P&L relative to the entry notional."""
        notional = self.entry_price * self.quantity
        return self.pnl / notional if notional else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["PositionSide", "Trade"]
