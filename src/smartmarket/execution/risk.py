"""Risk: protective exits (stop-loss, take-profit, trailing stop) and position / exposure limits.

Protective exits are resting orders at the exchange, so they may fill *inside* a bar. A bar only tells its
open, high, low and close, not the path between, so checks are conservative:

* a bar that opens beyond a level (a gap) fills at the open;
* if both the stop and the target lie inside the bar's range, the stop is assumed to have hit first;
* the trailing stop for a bar trails the best price of the *previous* bars (since entry): this bar's own
  high (long) or low (short) only moves the trail after the bar, because it might have come after the low.

Stops and trailing stops fill as takers (with slippage); take-profits rest as limit orders (maker, no
slippage, price improvement on a favourable gap).
"""

from __future__ import annotations

from dataclasses import dataclass

from smartmarket.core.errors import ConfigError
from smartmarket.execution.orders import Liquidity


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Default protective levels (fractions of the entry price) and limits (fractions of equity).

    ``stop_loss_pct``, ``take_profit_pct``, ``trailing_stop_pct`` apply to every new position whose decision
    did not give its own levels. ``max_position_fraction`` caps one symbol's target; ``max_gross_exposure``
    caps the sum over symbols of ``|position value| / equity`` (1.0 = no leverage).
    """

    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    trailing_stop_pct: float | None = None
    max_position_fraction: float = 1.0
    max_gross_exposure: float = 1.0

    def __post_init__(self) -> None:
        for name in ("stop_loss_pct", "take_profit_pct", "trailing_stop_pct"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise ConfigError(f"{name} must be a fraction in (0, 1), got {value!r}")
        if not (self.max_position_fraction > 0 and self.max_gross_exposure > 0):
            raise ConfigError("position and exposure limits must be positive")

    def limit_fraction(self, fraction: float, other_gross_fraction: float) -> float:
        """Clip a signed target fraction to the per-symbol cap and to what the gross cap leaves."""
        room = max(0.0, self.max_gross_exposure - other_gross_fraction)
        cap = min(self.max_position_fraction, room)
        return max(-cap, min(cap, fraction))


@dataclass(slots=True)
class ProtectiveStops:
    """The resting exits of one open position (``side`` +1 long, -1 short); levels are absolute prices."""

    side: int
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_pct: float | None = None
    best_price: float = 0.0  # best price seen since entry (the trail's anchor), updated after each bar

    @property
    def trailing_level(self) -> float | None:
        if self.trailing_pct is None:
            return None
        return self.best_price * (1.0 - self.side * self.trailing_pct)

    def effective_stop(self) -> tuple[float | None, str]:
        """The binding stop level (the tighter of the fixed and the trailing stop) and its reason."""
        stop, trail = self.stop_loss, self.trailing_level
        if trail is None:
            return stop, "stop_loss"
        if stop is None:
            return trail, "trailing_stop"
        tighter = trail > stop if self.side > 0 else trail < stop
        return (trail, "trailing_stop") if tighter else (stop, "stop_loss")

    def check(self, open_: float, high: float, low: float) -> tuple[float, str, Liquidity] | None:
        """The exit this bar triggers, as (reference price, reason, liquidity), or None."""
        stop, stop_reason = self.effective_stop()
        target = self.take_profit
        if self.side > 0:
            if stop is not None and open_ <= stop:
                return open_, stop_reason, "taker"
            if target is not None and open_ >= target:
                return open_, "take_profit", "maker"
            if stop is not None and low <= stop:
                return stop, stop_reason, "taker"
            if target is not None and high >= target:
                return target, "take_profit", "maker"
        else:
            if stop is not None and open_ >= stop:
                return open_, stop_reason, "taker"
            if target is not None and open_ <= target:
                return open_, "take_profit", "maker"
            if stop is not None and high >= stop:
                return stop, stop_reason, "taker"
            if target is not None and low <= target:
                return target, "take_profit", "maker"
        return None

    def after_bar(self, high: float, low: float) -> None:
        """Let the trail follow this bar's extreme (only after the bar has been checked)."""
        if self.side > 0:
            if high > self.best_price:
                self.best_price = high
        elif low < self.best_price:
            self.best_price = low


@dataclass(frozen=True)
class ProtectiveExit:
    """A protective exit the kernel took inside the bar opening at ``ts``: at ``level`` (its reference price before
    slippage: the stop or target, or the open when the bar gapped through it), for ``reason``."""

    symbol: str
    ts: int
    level: float
    reason: str
    liquidity: Liquidity


def exit_fill_price(side: int, kind: str, level: float, open_: float, high: float, low: float) -> float | None:
    """Where a resting protective order closing a ``side`` (+1 long, -1 short) position fills in a bar: ``kind``
    "stop" (stop-loss or trailing stop) or "limit" (take-profit) at ``level``; the open when the bar opens beyond
    it; None when the bar does not reach it. The rule of :meth:`ProtectiveStops.check` for one level."""
    if kind == "stop":
        if side > 0:
            return open_ if open_ <= level else level if low <= level else None
        return open_ if open_ >= level else level if high >= level else None
    if side > 0:
        return open_ if open_ >= level else level if high >= level else None
    return open_ if open_ <= level else level if low <= level else None


def exits_from_percent(
    stop_loss: float | None = None, take_profit: float | None = None, trailing_stop: float | None = None
) -> RiskConfig:
    """Protective exits given in **percent of the entry price** (``5`` = 5 %), as a :class:`RiskConfig`.

    Used by ``backtest --stop-loss/--take-profit/--trailing-stop``; they apply to every position of any strategy
    whose decision gives no level of its own.
    """
    given = {"stop-loss": stop_loss, "take-profit": take_profit, "trailing-stop": trailing_stop}
    for name, value in given.items():
        if value is not None and not 0.0 < value < 100.0:
            raise ConfigError(
                f"--{name} {value:g} is out of range",
                hint=f"give a percent of the entry price in (0, 100), e.g. --{name} 5",
            )
    frac = {k: (v / 100.0 if v is not None else None) for k, v in given.items()}
    return RiskConfig(
        stop_loss_pct=frac["stop-loss"], take_profit_pct=frac["take-profit"], trailing_stop_pct=frac["trailing-stop"]
    )


def stops_for_entry(
    config: RiskConfig,
    side: int,
    entry_price: float,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_pct: float | None = None,
) -> ProtectiveStops | None:
    """Protective exits for a new position: explicit levels first, else the config's percentages."""
    if stop_loss is None and config.stop_loss_pct is not None:
        stop_loss = entry_price * (1.0 - side * config.stop_loss_pct)
    if take_profit is None and config.take_profit_pct is not None:
        take_profit = entry_price * (1.0 + side * config.take_profit_pct)
    if trailing_pct is None:
        trailing_pct = config.trailing_stop_pct
    if stop_loss is None and take_profit is None and trailing_pct is None:
        return None
    return ProtectiveStops(side, stop_loss, take_profit, trailing_pct, entry_price)


__all__ = [
    "ProtectiveExit", "ProtectiveStops", "RiskConfig", "exit_fill_price", "exits_from_percent", "stops_for_entry",
]  # fmt: skip
