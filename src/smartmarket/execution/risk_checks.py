"""Pre-trade risk checks: the last gate an order passes before it reaches a broker. They can say no.

``RiskChecks(limits).check(intent, state, now_ms)`` answers :class:`Approved` or :class:`Rejected` (which
check, and why in one line). ``intent`` is the order to judge; ``state`` a snapshot of the account; ``now_ms``
the caller's clock (nothing here reads the wall clock, so a replay judges exactly as live did).

Checks, in the order they run:

1. ``kill_switch``: while engaged, *every* order is refused, closing ones included.
2. ``invalid_order``: quantity and reference price must be finite and > 0 (such an order is not an order).
3. Risk-reducing orders (closing or shrinking a position, never flipping it) pass from here on.
4. ``circuit_breaker``: tripped by ``max_consecutive_failures`` rejected/failed orders in a row (reported
   with :meth:`RiskChecks.record_failure`) or by a drawdown of ``max_drawdown`` from the equity peak; it
   stays tripped until :meth:`RiskChecks.reset_breaker` or until ``breaker_cooldown_ms`` has passed.
5. ``daily_loss``: a loss of ``max_daily_loss`` of the start-of-day equity blocks new risk for the rest of
   that UTC day, even if equity recovers; the block lifts at 00:00 UTC.
6. ``max_open_orders``, ``price_band`` (fat finger: the reference price within ``price_band`` of the last
   price), ``min_notional``, ``position_limit`` (per-symbol notional), ``gross_exposure`` (Σ |notional| as a
   fraction of equity).

Open orders are assumed to fill: a symbol's *projected* position is its position plus its open orders, and
limits apply to the projected position after the new order. A breaker tripped by drawdown trips again on
the next check unless the peak is rebased (:meth:`EquityWatermarks.rebase_peak`): resuming after a
drawdown is a decision to accept the loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from smartmarket.core.errors import ConfigError
from smartmarket.core.events import RiskRejected, Side, deterministic_event_id
from smartmarket.core.types import DAY_MS
from smartmarket.execution.portfolio import Portfolio

CheckName = Literal[
    "kill_switch",
    "invalid_order",
    "circuit_breaker",
    "daily_loss",
    "max_open_orders",
    "price_band",
    "min_notional",
    "position_limit",
    "gross_exposure",
]

_REDUCE_TOLERANCE = 1e-9  # relative slack when deciding whether an order only reduces a position


def utc_day(ts_ms: int) -> int:
    """Days since 1970-01-01 of a UTC epoch-ms time (UTC days begin at multiples of ``DAY_MS``)."""
    return ts_ms // DAY_MS


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Pre-trade limits; ``None`` turns a limit off. Fractions are of equity (``0.05`` = 5 %).

    ``max_position_notional`` caps one symbol's ``|projected quantity| x price`` (quote currency);
    ``max_gross_exposure`` caps Σ over symbols of that, over equity (1.0 = no leverage); ``max_daily_loss``
    is a fraction of the start-of-day equity; ``max_drawdown`` a fraction of the equity peak;
    ``breaker_cooldown_ms`` ``None`` keeps a tripped breaker tripped until reset by hand; ``price_band`` is the
    largest relative distance of the reference price from the last price.
    """

    max_position_notional: float | None = None
    max_gross_exposure: float | None = 1.0
    max_open_orders: int | None = 10
    max_daily_loss: float | None = 0.05
    max_consecutive_failures: int | None = 5
    max_drawdown: float | None = 0.25
    breaker_cooldown_ms: int | None = None
    min_order_notional: float = 0.0
    price_band: float | None = 0.05

    def __post_init__(self) -> None:
        for name in ("max_position_notional", "max_gross_exposure"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number or None, got {value!r}")
        for name in ("max_daily_loss", "max_drawdown", "price_band"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise ConfigError(f"{name} must be a fraction in (0, 1) or None, got {value!r}")
        for name in ("max_open_orders", "max_consecutive_failures", "breaker_cooldown_ms"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 or None, got {value!r}")
        if not (math.isfinite(self.min_order_notional) and self.min_order_notional >= 0):
            raise ConfigError(f"min_order_notional must be >= 0, got {self.min_order_notional!r}")


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order to judge: ``quantity`` (> 0) units of ``symbol`` to ``side``, expected near ``reference_price``."""

    symbol: str
    side: Side
    quantity: float
    reference_price: float

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.side == "buy" else -self.quantity


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An order at the broker not yet (fully) filled: ``quantity`` is what remains to fill."""

    symbol: str
    side: Side
    quantity: float

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.side == "buy" else -self.quantity


@dataclass(frozen=True, slots=True)
class AccountState:
    """A snapshot of the account: equity and cash, signed positions, last prices, open orders, watermarks."""

    equity: float
    cash: float
    day_start_equity: float
    peak_equity: float
    positions: Mapping[str, float] = field(default_factory=dict)
    last_prices: Mapping[str, float] = field(default_factory=dict)
    open_orders: Sequence[OpenOrder] = ()

    @classmethod
    def from_portfolio(
        cls, portfolio: Portfolio, watermarks: EquityWatermarks, open_orders: Sequence[OpenOrder] = ()
    ) -> AccountState:
        """The snapshot of a :class:`Portfolio` (marked to its last prices) and its watermarks."""
        return cls(
            equity=portfolio.equity,
            cash=portfolio.cash,
            day_start_equity=watermarks.day_start_equity,
            peak_equity=watermarks.peak_equity,
            positions={sym: pos.quantity for sym, pos in portfolio.positions.items()},
            last_prices=dict(portfolio.last_prices),
            open_orders=tuple(open_orders),
        )

    def projected_position(self, symbol: str) -> float:
        """Position in ``symbol`` once its open orders have filled."""
        pending = sum(o.signed_quantity for o in self.open_orders if o.symbol == symbol)
        return self.positions.get(symbol, 0.0) + pending


class EquityWatermarks:
    """Start-of-UTC-day equity and the running equity peak, fed every equity observation.

    The first observation at or after 00:00 UTC becomes the new day's start equity. Feed observations in
    time order (e.g. after each candle is marked); ``rebase_peak`` restarts the peak after a drawdown.
    """

    __slots__ = ("day", "day_start_equity", "peak_equity")

    def __init__(self, equity: float, now_ms: int) -> None:
        self.day = utc_day(now_ms)
        self.day_start_equity = float(equity)
        self.peak_equity = float(equity)

    def update(self, equity: float, now_ms: int) -> None:
        day = utc_day(now_ms)
        if day > self.day:
            self.day = day
            self.day_start_equity = float(equity)
        if equity > self.peak_equity:
            self.peak_equity = float(equity)

    def rebase_peak(self, equity: float) -> None:
        """Make ``equity`` the new peak (accepting the drawdown so far)."""
        self.peak_equity = float(equity)


@dataclass(frozen=True, slots=True)
class Approved:
    """The order may go. ``reducing`` tells whether it only reduces a position (most checks skipped)."""

    reducing: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    """The order must not go: ``check`` names the rule, ``reason`` says why in one line."""

    check: CheckName
    reason: str

    def to_event(
        self, intent: OrderIntent, now_ms: int, *, correlation_id: str = "", causation_id: str | None = None
    ) -> RiskRejected:
        """The :class:`RiskRejected` event for this verdict (deterministic id, times = ``now_ms``)."""
        event_id = deterministic_event_id("RiskRejected", intent.symbol, now_ms, self.check, causation_id)
        return RiskRejected(
            event_id=event_id,
            ts_event=now_ms,
            ts_init=now_ms,
            correlation_id=correlation_id,
            causation_id=causation_id,
            symbol=intent.symbol,
            check=self.check,
            reason=self.reason,
        )


Verdict = Approved | Rejected


class RiskChecks:
    """Judges orders against :class:`RiskLimits`; remembers the breaker, the daily block and the kill switch."""

    __slots__ = ("_blocked_day", "_failures", "_kill_reason", "_trip_reason", "_tripped_at", "limits")

    def __init__(self, limits: RiskLimits | None = None) -> None:
        self.limits = limits if limits is not None else RiskLimits()
        self._failures = 0
        self._tripped_at: int | None = None
        self._trip_reason = ""
        self._blocked_day: int | None = None
        self._kill_reason: str | None = None

    # ------------------------------------------------------------------------------ operator controls
    def engage_kill_switch(self, reason: str = "engaged by operator") -> None:
        """Refuse every order, closing ones included, until :meth:`release_kill_switch`."""
        self._kill_reason = reason

    def release_kill_switch(self) -> None:
        self._kill_reason = None

    @property
    def kill_switch_engaged(self) -> bool:
        return self._kill_reason is not None

    def reset_breaker(self) -> None:
        """Close the circuit breaker and forget the failure streak."""
        self._tripped_at = None
        self._trip_reason = ""
        self._failures = 0

    # ------------------------------------------------------------------------------ order outcomes
    def record_failure(self, now_ms: int, reason: str = "") -> None:
        """An order was rejected by the broker or failed; enough in a row trips the breaker."""
        self._failures += 1
        limit = self.limits.max_consecutive_failures
        if limit is not None and self._failures >= limit and self._tripped_at is None:
            detail = f" (last: {reason})" if reason else ""
            self._trip(now_ms, f"{self._failures} consecutive order failures{detail}")

    def record_success(self) -> None:
        """An order was accepted: the failure streak starts again from zero."""
        self._failures = 0

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def breaker_tripped(self, now_ms: int) -> bool:
        self._expire_breaker(now_ms)
        return self._tripped_at is not None

    def daily_blocked(self, now_ms: int) -> bool:
        return self._blocked_day == utc_day(now_ms)

    # ------------------------------------------------------------------------------ the check
    def check(self, intent: OrderIntent, state: AccountState, now_ms: int) -> Verdict:
        """Approve or reject ``intent`` given the account ``state`` at ``now_ms`` (UTC epoch ms)."""
        if self._kill_reason is not None:
            return Rejected("kill_switch", f"kill switch engaged: {self._kill_reason}")
        invalid = _invalid_reason(intent)
        if invalid is not None:
            return Rejected("invalid_order", invalid)

        self._expire_breaker(now_ms)
        self._watch_drawdown(state, now_ms)
        self._watch_daily_loss(state, now_ms)

        projected = state.projected_position(intent.symbol)
        if _is_reducing(projected, intent.signed_quantity):
            return Approved(reducing=True)

        if self._tripped_at is not None:
            return Rejected("circuit_breaker", f"circuit breaker tripped: {self._trip_reason}")
        if self._blocked_day == utc_day(now_ms):
            return Rejected("daily_loss", self._daily_loss_reason(state))
        for rule in (self._open_orders, self._price_band, self._min_notional, self._position, self._gross):
            verdict = rule(intent, state, projected)
            if verdict is not None:
                return verdict
        return Approved()

    # ------------------------------------------------------------------------------ stateful rules
    def _trip(self, now_ms: int, reason: str) -> None:
        self._tripped_at = now_ms
        self._trip_reason = reason

    def _expire_breaker(self, now_ms: int) -> None:
        cooldown = self.limits.breaker_cooldown_ms
        if self._tripped_at is not None and cooldown is not None and now_ms >= self._tripped_at + cooldown:
            self.reset_breaker()

    def _watch_drawdown(self, state: AccountState, now_ms: int) -> None:
        limit = self.limits.max_drawdown
        if limit is None or self._tripped_at is not None or not state.peak_equity > 0:
            return
        drawdown = (state.peak_equity - state.equity) / state.peak_equity
        if drawdown >= limit:
            peak = state.peak_equity
            self._trip(now_ms, f"drawdown {drawdown:.1%} from the equity peak {peak:g} (limit {limit:.1%})")

    def _watch_daily_loss(self, state: AccountState, now_ms: int) -> None:
        limit = self.limits.max_daily_loss
        if limit is None or not state.day_start_equity > 0:
            return
        loss = (state.day_start_equity - state.equity) / state.day_start_equity
        if loss >= limit:
            self._blocked_day = utc_day(now_ms)

    def _daily_loss_reason(self, state: AccountState) -> str:
        loss = (state.day_start_equity - state.equity) / state.day_start_equity if state.day_start_equity > 0 else 0
        return (
            f"daily loss limit {self.limits.max_daily_loss:.1%} reached (now {loss:.1%} below the start-of-day "
            f"equity {state.day_start_equity:g}); new risk is blocked until 00:00 UTC"
        )

    # ------------------------------------------------------------------------------ stateless rules
    def _open_orders(self, intent: OrderIntent, state: AccountState, projected: float) -> Rejected | None:
        limit = self.limits.max_open_orders
        if limit is not None and len(state.open_orders) >= limit:
            return Rejected("max_open_orders", f"{len(state.open_orders)} orders already open (limit {limit})")
        return None

    def _price_band(self, intent: OrderIntent, state: AccountState, projected: float) -> Rejected | None:
        band = self.limits.price_band
        if band is None:
            return None
        last = state.last_prices.get(intent.symbol)
        if last is None or not (math.isfinite(last) and last > 0):
            return Rejected("price_band", f"no last price for {intent.symbol} to check the order price against")
        distance = abs(intent.reference_price - last) / last
        if distance > band:
            return Rejected(
                "price_band",
                f"price {intent.reference_price:g} is {distance:.1%} from the last price {last:g} (band {band:.1%})",
            )
        return None

    def _min_notional(self, intent: OrderIntent, state: AccountState, projected: float) -> Rejected | None:
        notional = intent.quantity * intent.reference_price
        minimum = self.limits.min_order_notional
        if notional < minimum:
            return Rejected("min_notional", f"order notional {notional:g} is below the minimum {minimum:g}")
        return None

    def _position(self, intent: OrderIntent, state: AccountState, projected: float) -> Rejected | None:
        limit = self.limits.max_position_notional
        if limit is None:
            return None
        after = abs(projected + intent.signed_quantity) * intent.reference_price
        if after > limit:
            return Rejected(
                "position_limit", f"{intent.symbol} position would be worth {after:g}, above the limit {limit:g}"
            )
        return None

    def _gross(self, intent: OrderIntent, state: AccountState, projected: float) -> Rejected | None:
        limit = self.limits.max_gross_exposure
        if limit is None:
            return None
        if not state.equity > 0:
            return Rejected("gross_exposure", f"equity is {state.equity:g}: no room for new exposure")
        gross = abs(projected + intent.signed_quantity) * intent.reference_price
        held = set(state.positions) | {o.symbol for o in state.open_orders}
        for symbol in sorted(held - {intent.symbol}):
            quantity = state.projected_position(symbol)
            if quantity == 0.0:
                continue
            price = state.last_prices.get(symbol)
            if price is None or not math.isfinite(price):
                return Rejected("gross_exposure", f"no last price for the held {symbol}: exposure unknown")
            gross += abs(quantity) * price
        fraction = gross / state.equity
        if fraction > limit:
            return Rejected(
                "gross_exposure", f"gross exposure would be {fraction:.2f}x equity, above the limit {limit:.2f}x"
            )
        return None


def _invalid_reason(intent: OrderIntent) -> str | None:
    if intent.side not in ("buy", "sell"):
        return f"side must be buy or sell, got {intent.side!r}"
    if not (math.isfinite(intent.quantity) and intent.quantity > 0):
        return f"quantity must be finite and > 0, got {intent.quantity!r}"
    if not (math.isfinite(intent.reference_price) and intent.reference_price > 0):
        return f"reference price must be finite and > 0, got {intent.reference_price!r}"
    return None


def _is_reducing(projected: float, signed_quantity: float) -> bool:
    """True when the order moves the projected position towards zero without crossing it."""
    if projected == 0.0 or (projected > 0) == (signed_quantity > 0):
        return False
    return abs(signed_quantity) <= abs(projected) * (1.0 + _REDUCE_TOLERANCE)


__all__ = [
    "AccountState",
    "Approved",
    "CheckName",
    "EquityWatermarks",
    "OpenOrder",
    "OrderIntent",
    "Rejected",
    "RiskChecks",
    "RiskLimits",
    "Verdict",
    "utc_day",
]
