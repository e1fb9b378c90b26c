"""Buy and hold: go long at the first bar's close (filled at the next open) and never trade again."""

from __future__ import annotations

from typing import Any, ClassVar

from smartmarket.engine.strategy import BarContext, Strategy
from smartmarket.execution.orders import Decision

_LONG = Decision("long")


class BuyHold(Strategy):
    """The benchmark every other strategy has to beat."""

    name: ClassVar[str] = "buy_hold"
    history_size = 1

    def __init__(self) -> None:
        self._done = False

    def on_bar(self, ctx: BarContext) -> Decision | None:
        if self._done:
            return None
        self._done = True
        return _LONG

    def params(self) -> dict[str, Any]:
        return {}


__all__ = ["BuyHold"]
