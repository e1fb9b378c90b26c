"""A simulated broker: fills orders against a reference price with slippage and fees, into a portfolio.

When the order reverses or flattens the position, the old position is closed first (one fill); the new
side is then a second fill at the same price. An order carries its target quantity, fixed at the decision
close (``execution.sizing.order_quantity``, the rule live orders follow); the fill trades the difference to
it. An order without one (``KernelConfig.size_at="fill_open"``, backtesting.py's convention, for the peer
parity tests) is sized here from the equity *after* the close, at the fill price with its slippage::

    quantity = target_fraction x equity / (fill_price x (1 + taker_rate))

which spends exactly ``target_fraction`` of equity including the entry fee, capped so the gross exposure of
all symbols stays within ``max_gross_exposure x equity``.
"""

from __future__ import annotations

from typing import Literal

from smartmarket.execution.fees import FeeModel
from smartmarket.execution.orders import Fill, Liquidity, Order
from smartmarket.execution.portfolio import Portfolio
from smartmarket.execution.sizing import order_quantity
from smartmarket.execution.slippage import slipped_price

_DUST = 1e-12  # relative size below which a trade is not worth sending


class PaperBroker:
    """Executes fills into ``portfolio``; keeps every fill and the total traded notional."""

    __slots__ = ("fees", "fills", "max_gross_exposure", "portfolio", "traded_notional")

    def __init__(self, portfolio: Portfolio, fees: FeeModel | None = None, *, max_gross_exposure: float = 1.0) -> None:
        self.portfolio = portfolio
        self.fees = fees if fees is not None else FeeModel()
        self.max_gross_exposure = max_gross_exposure
        self.fills: list[Fill] = []
        self.traded_notional = 0.0

    def execute(
        self,
        symbol: str,
        quantity: float,
        reference_price: float,
        ts: int,
        bar: int,
        *,
        slippage: float = 0.0,
        liquidity: Liquidity = "taker",
        reason: str = "signal",
        order_id: int = -1,
    ) -> Fill:
        """Fill signed ``quantity`` (buy > 0) near ``reference_price``; takers slip by ``slippage``."""
        side = 1 if quantity > 0 else -1
        price = slipped_price(reference_price, side, slippage) if liquidity == "taker" else reference_price
        fee = self.fees.fee(quantity * price, liquidity)
        self.portfolio.apply_fill(symbol, quantity, price, fee, ts, bar, reason)
        side_name: Literal["buy", "sell"] = "buy" if side > 0 else "sell"
        fill = Fill(order_id, symbol, ts, bar, side_name, abs(quantity), price, fee, liquidity, reason)
        self.fills.append(fill)
        self.traded_notional += abs(quantity) * price
        return fill

    def fill_target(self, order: Order, price: float, ts: int, bar: int, *, slippage: float = 0.0) -> list[Fill]:
        """Move ``order.symbol`` to ``order.target_fraction`` of equity at market (reference ``price``)."""
        pf = self.portfolio
        symbol = order.symbol
        held = pf.quantity(symbol)
        sign = order.target_sign
        fills: list[Fill] = []
        reason, order_id = order.reason, order.order_id
        if held != 0.0 and (sign == 0 or (held > 0) != (sign > 0)):
            fills.append(
                self.execute(symbol, -held, price, ts, bar, slippage=slippage, reason=reason, order_id=order_id)
            )
            held = 0.0
        if sign != 0:
            desired = order.quantity if order.quantity is not None else self._target_quantity(order, price, slippage)
            delta = desired - held
            if abs(delta) > _DUST * max(abs(desired), abs(held)):
                fills.append(
                    self.execute(symbol, delta, price, ts, bar, slippage=slippage, reason=reason, order_id=order_id)
                )
        order.status = "filled" if fills else "skipped"
        order.filled_ts = ts
        return fills

    def _target_quantity(self, order: Order, price: float, slippage: float) -> float:
        """Sizing at the fill (``size_at="fill_open"``): equity and price at the fill, with its slippage."""
        pf = self.portfolio
        symbol = order.symbol
        equity = pf.equity_at(symbol, price)
        room = self.max_gross_exposure * equity - pf.gross_exposure_excluding(symbol)
        return order_quantity(order.target_fraction, equity, price, self.fees.taker, room=room, slippage=slippage)


__all__ = ["PaperBroker"]
