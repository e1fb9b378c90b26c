"""The portfolio: one cash account, positions in any number of symbols, closed trades.

Accounting (long and short alike): a fill of signed quantity ``q`` at ``price`` with fee ``fee`` moves cash
by ``-q x price - fee``; a position is worth ``quantity x last price`` (negative for shorts); equity is cash
plus the positions' worth. So ``cash + Σ positions = equity`` holds exactly after every fill and mark.

Positions keep an average entry price. Reducing or closing a position books a :class:`~smartmarket.core.
trading.Trade` for the closed part, with its share of the entry fees plus the exit fee; a fill through zero
closes the old position and opens the new one with the remainder. In long-only mode a fill that would leave
a short position raises.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartmarket.core.errors import ValidationError
from smartmarket.core.trading import Trade


@dataclass(slots=True)
class Position:
    """An open position. ``quantity`` is signed (negative = short); ``entry_fees`` not yet booked to trades."""

    symbol: str
    quantity: float
    avg_price: float
    entry_ts: int
    entry_bar: int
    entry_fees: float
    last_price: float

    @property
    def side(self) -> str:
        return "long" if self.quantity > 0 else "short"

    @property
    def market_value(self) -> float:
        return self.quantity * self.last_price

    @property
    def unrealized_pnl(self) -> float:
        return self.quantity * (self.last_price - self.avg_price)


class Portfolio:
    """Cash, open positions and closed trades of one account."""

    __slots__ = ("cash", "initial_cash", "last_prices", "long_only", "positions", "trades")

    def __init__(self, initial_cash: float, *, long_only: bool = False) -> None:
        if not initial_cash > 0:
            raise ValidationError(f"initial cash must be positive, got {initial_cash!r}")
        self.initial_cash = float(initial_cash)
        self.cash = float(initial_cash)
        self.long_only = long_only
        self.positions: dict[str, Position] = {}  # open positions only
        self.last_prices: dict[str, float] = {}
        self.trades: list[Trade] = []

    def quantity(self, symbol: str) -> float:
        pos = self.positions.get(symbol)
        return pos.quantity if pos is not None else 0.0

    def mark(self, symbol: str, price: float) -> None:
        """Value ``symbol`` at ``price`` from now on (a bar's close)."""
        self.last_prices[symbol] = price
        pos = self.positions.get(symbol)
        if pos is not None:
            pos.last_price = price

    @property
    def equity(self) -> float:
        value = self.cash
        for pos in self.positions.values():
            value += pos.quantity * pos.last_price
        return value

    @property
    def gross_exposure(self) -> float:
        """Σ |position value| in cash terms."""
        return sum(abs(p.quantity * p.last_price) for p in self.positions.values())

    def equity_at(self, symbol: str, price: float) -> float:
        """Equity with ``symbol`` valued at ``price`` and every other position at its last mark."""
        value = self.cash
        for sym, pos in self.positions.items():
            value += pos.quantity * (price if sym == symbol else pos.last_price)
        return value

    def gross_exposure_excluding(self, symbol: str) -> float:
        gross = 0.0  # a loop, not sum() over a generator: called for every order of a backtest
        for s, p in self.positions.items():
            if s != symbol:
                gross += abs(p.quantity * p.last_price)
        return gross

    def apply_fill(
        self, symbol: str, quantity: float, price: float, fee: float, ts: int, bar: int, reason: str = "signal"
    ) -> list[Trade]:
        """Book a fill of signed ``quantity`` (buy > 0); returns the trades it closed."""
        if quantity == 0.0:
            return []
        pos = self.positions.get(symbol)
        old = pos.quantity if pos is not None else 0.0
        if self.long_only and old + quantity < -1e-12 * max(1.0, abs(old)):
            raise ValidationError(f"long-only portfolio cannot sell {-quantity} {symbol} holding {old}")
        self.cash -= quantity * price + fee
        self.mark(symbol, price)  # a fill is a price observation: equity moves only by the fee
        if pos is None or (old > 0) == (quantity > 0):
            self._increase(pos, symbol, quantity, price, fee, ts, bar)
            return []
        closed_qty = min(abs(quantity), abs(old))
        exit_fee = fee * closed_qty / abs(quantity)
        trade = self._close_part(pos, closed_qty, price, exit_fee, ts, bar, reason)
        remainder = quantity + (closed_qty if old > 0 else -closed_qty)
        if abs(remainder) > 1e-12 * abs(quantity):
            self._increase(None, symbol, remainder, price, fee - exit_fee, ts, bar)
        return [trade]

    def _increase(
        self, pos: Position | None, symbol: str, quantity: float, price: float, fee: float, ts: int, bar: int
    ) -> None:
        if pos is None:
            self.positions[symbol] = Position(symbol, quantity, price, ts, bar, fee, price)
            return
        new_qty = pos.quantity + quantity
        pos.avg_price = (pos.avg_price * pos.quantity + price * quantity) / new_qty
        pos.quantity = new_qty
        pos.entry_fees += fee

    def _close_part(
        self, pos: Position, qty: float, price: float, exit_fee: float, ts: int, bar: int, reason: str
    ) -> Trade:
        share = qty / abs(pos.quantity)
        entry_fee = pos.entry_fees * share
        long = pos.quantity > 0
        gross = (price - pos.avg_price) * qty if long else (pos.avg_price - price) * qty
        fees = entry_fee + exit_fee
        trade = Trade(
            symbol=pos.symbol,
            side="long" if long else "short",
            entry_ts=pos.entry_ts,
            exit_ts=ts,
            entry_price=pos.avg_price,
            exit_price=price,
            quantity=qty,
            pnl=gross - fees,
            fees=fees,
            entry_bar=pos.entry_bar,
            exit_bar=bar,
            exit_reason=reason,
        )
        self.trades.append(trade)
        if share >= 1.0 - 1e-12:
            del self.positions[pos.symbol]
        else:
            pos.quantity += -qty if long else qty
            pos.entry_fees -= entry_fee
        return trade


__all__ = ["Portfolio", "Position"]
