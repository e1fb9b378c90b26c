"""Pre-trade risk checks: every rule against hand-built account snapshots, with its boundary on both sides."""

from __future__ import annotations

import dataclasses
import math

import pytest

from smartmarket.core.errors import ConfigError
from smartmarket.core.events import RiskRejected
from smartmarket.core.types import DAY_MS, HOUR_MS, MINUTE_MS
from smartmarket.execution.portfolio import Portfolio
from smartmarket.execution.risk_checks import (
    AccountState,
    Approved,
    EquityWatermarks,
    OpenOrder,
    OrderIntent,
    Rejected,
    RiskChecks,
    RiskLimits,
    utc_day,
)

DAY0 = 1_704_067_200_000  # 2024-01-01T00:00Z
NOON = DAY0 + 12 * HOUR_MS
PRICE = 100.0

# Every limit off except the one under test, so each test isolates a single rule.
OPEN = RiskLimits(
    max_position_notional=None,
    max_gross_exposure=None,
    max_open_orders=None,
    max_daily_loss=None,
    max_consecutive_failures=None,
    max_drawdown=None,
    price_band=None,
)


def state(
    equity: float = 10_000.0,
    *,
    positions: dict[str, float] | None = None,
    prices: dict[str, float] | None = None,
    open_orders: tuple[OpenOrder, ...] = (),
    day_start: float | None = None,
    peak: float | None = None,
) -> AccountState:
    return AccountState(
        equity=equity,
        cash=equity,
        day_start_equity=equity if day_start is None else day_start,
        peak_equity=equity if peak is None else peak,
        positions=positions or {},
        last_prices={"BTCUSDT": PRICE, **(prices or {})},
        open_orders=open_orders,
    )


def buy(quantity: float = 1.0, price: float = PRICE, symbol: str = "BTCUSDT") -> OrderIntent:
    return OrderIntent(symbol, "buy", quantity, price)


def sell(quantity: float = 1.0, price: float = PRICE, symbol: str = "BTCUSDT") -> OrderIntent:
    return OrderIntent(symbol, "sell", quantity, price)


def checks(**limits: object) -> RiskChecks:
    return RiskChecks(dataclasses.replace(OPEN, **limits))  # type: ignore[arg-type]


def rejected_by(verdict: Approved | Rejected) -> str:
    assert isinstance(verdict, Rejected), f"expected a rejection, got {verdict}"
    return verdict.check


# ------------------------------------------------------------------------------------------- validity
@pytest.mark.parametrize("quantity", [0.0, -1.0, math.nan, math.inf])
def test_quantity_must_be_finite_and_positive(quantity: float) -> None:
    verdict = checks().check(buy(quantity), state(), NOON)
    assert rejected_by(verdict) == "invalid_order"
    assert "quantity" in verdict.reason  # type: ignore[union-attr]


@pytest.mark.parametrize("price", [0.0, -5.0, math.nan, math.inf])
def test_reference_price_must_be_finite_and_positive(price: float) -> None:
    assert rejected_by(checks().check(buy(1.0, price), state(), NOON)) == "invalid_order"


def test_even_a_closing_order_with_zero_quantity_is_invalid() -> None:
    long = state(positions={"BTCUSDT": 2.0})
    assert rejected_by(checks().check(sell(0.0), long, NOON)) == "invalid_order"


def test_everything_off_approves_a_plain_buy() -> None:
    assert checks().check(buy(), state(), NOON) == Approved(reducing=False)


# ------------------------------------------------------------------------------------------- sizes
def test_min_order_notional() -> None:
    rc = checks(min_order_notional=50.0)
    assert isinstance(rc.check(buy(0.5), state(), NOON), Approved)  # 50 is not below 50
    verdict = rc.check(buy(0.49), state(), NOON)
    assert rejected_by(verdict) == "min_notional"
    assert "49" in verdict.reason  # type: ignore[union-attr]


def test_position_notional_per_symbol_counts_the_held_position_and_open_orders() -> None:
    rc = checks(max_position_notional=1_000.0)
    assert isinstance(rc.check(buy(10.0), state(), NOON), Approved)  # exactly 1000
    assert rejected_by(rc.check(buy(10.01), state(), NOON)) == "position_limit"
    held = state(positions={"BTCUSDT": 6.0})
    assert isinstance(rc.check(buy(4.0), held, NOON), Approved)
    assert rejected_by(rc.check(buy(4.5), held, NOON)) == "position_limit"
    pending = state(positions={"BTCUSDT": 6.0}, open_orders=(OpenOrder("BTCUSDT", "buy", 3.0),))
    assert rejected_by(rc.check(buy(1.5), pending, NOON)) == "position_limit"  # 6 + 3 + 1.5 = 10.5
    # Another symbol's position does not count against BTCUSDT's limit.
    other = state(positions={"ETHUSDT": 100.0}, prices={"ETHUSDT": 50.0})
    assert isinstance(rc.check(buy(10.0), other, NOON), Approved)


def test_short_positions_count_by_their_absolute_notional() -> None:
    rc = checks(max_position_notional=1_000.0)
    short = state(positions={"BTCUSDT": -8.0})
    assert rejected_by(rc.check(sell(2.5), short, NOON)) == "position_limit"
    assert isinstance(rc.check(sell(2.0), short, NOON), Approved)


def test_gross_exposure_sums_all_symbols_against_equity() -> None:
    rc = checks(max_gross_exposure=1.5)
    # ETH long worth 5 000 and a SOL short worth 5 000: 10 000 gross on 10 000 equity.
    book = state(positions={"ETHUSDT": 100.0, "SOLUSDT": -50.0}, prices={"ETHUSDT": 50.0, "SOLUSDT": 100.0})
    assert isinstance(rc.check(buy(50.0), book, NOON), Approved)  # + 5 000 = 1.5x
    verdict = rc.check(buy(51.0), book, NOON)
    assert rejected_by(verdict) == "gross_exposure"
    assert "1.51x" in verdict.reason  # type: ignore[union-attr]
    with_orders = dataclasses.replace(book, open_orders=(OpenOrder("ETHUSDT", "buy", 10.0),))  # +500
    assert rejected_by(rc.check(buy(50.0), with_orders, NOON)) == "gross_exposure"


def test_gross_exposure_fails_closed_without_a_price_or_equity() -> None:
    rc = checks(max_gross_exposure=2.0)
    unpriced = state(positions={"ETHUSDT": 1.0})
    verdict = rc.check(buy(1.0), unpriced, NOON)
    assert rejected_by(verdict) == "gross_exposure"
    assert "ETHUSDT" in verdict.reason  # type: ignore[union-attr]
    assert rejected_by(rc.check(buy(1.0), state(0.0), NOON)) == "gross_exposure"


def test_max_open_orders() -> None:
    rc = checks(max_open_orders=2)
    one = state(open_orders=(OpenOrder("ETHUSDT", "buy", 1.0),))
    two = state(open_orders=(OpenOrder("ETHUSDT", "buy", 1.0), OpenOrder("SOLUSDT", "sell", 1.0)))
    assert isinstance(rc.check(buy(), one, NOON), Approved)
    assert rejected_by(rc.check(buy(), two, NOON)) == "max_open_orders"


# ------------------------------------------------------------------------------------------- fat finger
def test_price_band_against_the_last_price() -> None:
    rc = checks(price_band=0.05)
    assert isinstance(rc.check(buy(1.0, 105.0), state(), NOON), Approved)
    assert isinstance(rc.check(buy(1.0, 95.0), state(), NOON), Approved)
    verdict = rc.check(buy(1.0, 1_000.0), state(), NOON)  # one zero too many
    assert rejected_by(verdict) == "price_band"
    assert "900.0%" in verdict.reason  # type: ignore[union-attr]
    assert rejected_by(rc.check(buy(1.0, 94.0), state(), NOON)) == "price_band"


def test_price_band_without_a_last_price_refuses() -> None:
    verdict = checks(price_band=0.05).check(buy(1.0, 100.0, "ETHUSDT"), state(), NOON)
    assert rejected_by(verdict) == "price_band"
    assert "no last price" in verdict.reason  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------- reducing orders
def strict() -> RiskChecks:
    """Limits so tight that only risk-reducing orders can pass."""
    return checks(
        max_position_notional=1.0, max_gross_exposure=0.0001, max_open_orders=1, min_order_notional=1e9,
        price_band=0.01, max_daily_loss=0.01, max_drawdown=0.01,
    )  # fmt: skip


def test_reducing_orders_pass_every_limit() -> None:
    rc = strict()
    rc.engage_kill_switch()
    rc.release_kill_switch()
    hurt = state(
        9_000.0, positions={"BTCUSDT": 5.0}, day_start=10_000.0, peak=12_000.0,
        open_orders=(OpenOrder("ETHUSDT", "buy", 1.0),),
    )  # fmt: skip
    assert rc.check(sell(5.0, 1e6), hurt, NOON) == Approved(reducing=True)  # close, even at a silly price
    assert rc.check(sell(2.0), hurt, NOON) == Approved(reducing=True)  # shrink
    assert rc.check(buy(3.0), state(positions={"BTCUSDT": -3.0}), NOON) == Approved(reducing=True)
    assert rc.breaker_tripped(NOON) and rc.daily_blocked(NOON)  # both tripped, yet the closes passed


def test_flipping_through_zero_or_adding_is_not_reducing() -> None:
    rc = strict()
    held = state(positions={"BTCUSDT": 5.0})
    assert isinstance(rc.check(sell(5.5), held, NOON), Rejected)  # would open a short
    assert isinstance(rc.check(buy(0.1), held, NOON), Rejected)
    # A pending sell already closes the position: another sell would open a short.
    closing = state(positions={"BTCUSDT": 5.0}, open_orders=(OpenOrder("BTCUSDT", "sell", 5.0),))
    assert isinstance(rc.check(sell(1.0), closing, NOON), Rejected)


def test_kill_switch_refuses_even_closing_orders_until_released() -> None:
    rc = checks()
    rc.engage_kill_switch("exchange incident")
    held = state(positions={"BTCUSDT": 5.0})
    verdict = rc.check(sell(5.0), held, NOON)
    assert rejected_by(verdict) == "kill_switch"
    assert "exchange incident" in verdict.reason  # type: ignore[union-attr]
    assert rc.kill_switch_engaged
    rc.release_kill_switch()
    assert isinstance(rc.check(sell(5.0), held, NOON), Approved)


# ------------------------------------------------------------------------------------------- daily loss
def test_daily_loss_blocks_the_rest_of_the_utc_day_then_lifts_at_midnight() -> None:
    rc = checks(max_daily_loss=0.05)
    assert isinstance(rc.check(buy(), state(9_501.0, day_start=10_000.0), NOON), Approved)  # -4.99 %
    verdict = rc.check(buy(), state(9_500.0, day_start=10_000.0), NOON)  # -5 %
    assert rejected_by(verdict) == "daily_loss"
    assert "00:00 UTC" in verdict.reason  # type: ignore[union-attr]
    # Equity recovers the same day: still blocked, up to the last millisecond of the day.
    recovered = state(10_200.0, day_start=10_000.0)
    assert rejected_by(rc.check(buy(), recovered, NOON + HOUR_MS)) == "daily_loss"
    assert rejected_by(rc.check(buy(), recovered, DAY0 + DAY_MS - 1)) == "daily_loss"
    assert rc.daily_blocked(DAY0 + DAY_MS - 1)
    # 00:00 UTC: a new day with its own start equity.
    assert not rc.daily_blocked(DAY0 + DAY_MS)
    assert isinstance(rc.check(buy(), state(10_200.0), DAY0 + DAY_MS), Approved)


def test_a_loss_measured_against_the_new_day_blocks_again() -> None:
    rc = checks(max_daily_loss=0.05)
    assert isinstance(rc.check(buy(), state(9_000.0, day_start=10_000.0), NOON), Rejected)
    # Next day starts at 9 000; 8 600 is only -4.4 % of that.
    assert isinstance(rc.check(buy(), state(8_600.0, day_start=9_000.0), DAY0 + DAY_MS + MINUTE_MS), Approved)
    assert isinstance(rc.check(buy(), state(8_500.0, day_start=9_000.0), DAY0 + DAY_MS + HOUR_MS), Rejected)


def test_watermarks_roll_the_day_start_at_utc_midnight_and_keep_the_peak() -> None:
    marks = EquityWatermarks(10_000.0, DAY0 + 9 * HOUR_MS)
    marks.update(11_000.0, DAY0 + 10 * HOUR_MS)
    marks.update(10_500.0, DAY0 + DAY_MS - 1)
    assert (marks.day_start_equity, marks.peak_equity) == (10_000.0, 11_000.0)
    marks.update(10_400.0, DAY0 + DAY_MS)  # first observation of the new UTC day
    marks.update(10_100.0, DAY0 + DAY_MS + HOUR_MS)
    assert (marks.day_start_equity, marks.peak_equity) == (10_400.0, 11_000.0)
    marks.rebase_peak(10_100.0)
    assert marks.peak_equity == 10_100.0
    assert utc_day(DAY0 + DAY_MS - 1) + 1 == utc_day(DAY0 + DAY_MS)


def test_watermarks_with_the_checks_through_a_day_rollover() -> None:
    rc = checks(max_daily_loss=0.10)
    pf = Portfolio(10_000.0)
    marks = EquityWatermarks(pf.equity, DAY0 + 20 * HOUR_MS)
    pf.apply_fill("BTCUSDT", 100.0, 100.0, 0.0, DAY0 + 20 * HOUR_MS, 0)
    pf.mark("BTCUSDT", 89.0)  # -11 % on the day
    marks.update(pf.equity, DAY0 + 23 * HOUR_MS)
    snapshot = AccountState.from_portfolio(pf, marks)
    assert snapshot.positions == {"BTCUSDT": 100.0} and snapshot.equity == 8_900.0
    assert rejected_by(rc.check(buy(1.0, 89.0), snapshot, DAY0 + 23 * HOUR_MS)) == "daily_loss"
    marks.update(pf.equity, DAY0 + DAY_MS)
    assert marks.day_start_equity == 8_900.0
    verdict = rc.check(buy(1.0, 89.0), AccountState.from_portfolio(pf, marks), DAY0 + DAY_MS)
    assert isinstance(verdict, Approved)


# ------------------------------------------------------------------------------------------- circuit breaker
def test_consecutive_failures_trip_the_breaker_and_a_success_restarts_the_count() -> None:
    rc = checks(max_consecutive_failures=3)
    rc.record_failure(NOON, "insufficient balance")
    rc.record_failure(NOON)
    rc.record_success()
    rc.record_failure(NOON)
    rc.record_failure(NOON)
    assert rc.consecutive_failures == 2
    assert isinstance(rc.check(buy(), state(), NOON), Approved)
    rc.record_failure(NOON, "exchange down")
    verdict = rc.check(buy(), state(), NOON)
    assert rejected_by(verdict) == "circuit_breaker"
    assert "3 consecutive order failures" in verdict.reason and "exchange down" in verdict.reason  # type: ignore[union-attr]


def test_breaker_stays_tripped_until_reset_without_a_cooldown() -> None:
    rc = checks(max_consecutive_failures=1)
    rc.record_failure(NOON)
    assert rejected_by(rc.check(buy(), state(), NOON + 30 * DAY_MS)) == "circuit_breaker"
    rc.reset_breaker()
    assert rc.consecutive_failures == 0
    assert isinstance(rc.check(buy(), state(), NOON + 30 * DAY_MS), Approved)


def test_breaker_cooldown_resets_it_at_the_boundary() -> None:
    rc = checks(max_consecutive_failures=2, breaker_cooldown_ms=15 * MINUTE_MS)
    rc.record_failure(NOON)
    rc.record_failure(NOON + MINUTE_MS)  # trips here
    assert rejected_by(rc.check(buy(), state(), NOON + 16 * MINUTE_MS - 1)) == "circuit_breaker"
    assert isinstance(rc.check(buy(), state(), NOON + 16 * MINUTE_MS), Approved)
    assert rc.consecutive_failures == 0


def test_drawdown_from_the_peak_trips_the_breaker() -> None:
    rc = checks(max_drawdown=0.20)
    assert isinstance(rc.check(buy(), state(8_001.0, peak=10_000.0), NOON), Approved)
    verdict = rc.check(buy(), state(8_000.0, peak=10_000.0), NOON)
    assert rejected_by(verdict) == "circuit_breaker"
    assert "drawdown 20.0%" in verdict.reason  # type: ignore[union-attr]
    # Tripped: refuses even once equity is back above the threshold...
    assert rejected_by(rc.check(buy(), state(9_000.0, peak=10_000.0), NOON + 1)) == "circuit_breaker"
    # ...until reset; a reset with the drawdown still there trips again at once.
    rc.reset_breaker()
    assert rejected_by(rc.check(buy(), state(7_000.0, peak=10_000.0), NOON + 2)) == "circuit_breaker"
    rc.reset_breaker()
    assert isinstance(rc.check(buy(), state(7_000.0, peak=7_000.0), NOON + 3), Approved)  # peak rebased


# ------------------------------------------------------------------------------------------- order of rules, events
def test_rules_report_the_first_failing_check() -> None:
    rc = checks(max_open_orders=1, price_band=0.05, min_order_notional=1e6)
    crowded = state(open_orders=(OpenOrder("ETHUSDT", "buy", 1.0),))
    assert rejected_by(rc.check(buy(1.0, 1_000.0), crowded, NOON)) == "max_open_orders"
    assert rejected_by(rc.check(buy(1.0, 1_000.0), state(), NOON)) == "price_band"
    assert rejected_by(rc.check(buy(1.0), state(), NOON)) == "min_notional"


def test_rejection_becomes_a_deterministic_risk_rejected_event() -> None:
    verdict = Rejected("price_band", "too far")
    first = verdict.to_event(buy(), NOON, correlation_id="c1", causation_id="sig-1")
    again = verdict.to_event(buy(), NOON, correlation_id="c1", causation_id="sig-1")
    assert isinstance(first, RiskRejected)
    assert first == again  # same inputs, same event (ids included): replays reproduce it
    assert (first.symbol, first.check, first.reason, first.ts_event, first.ts_init) == (
        "BTCUSDT", "price_band", "too far", NOON, NOON,
    )  # fmt: skip
    assert first.causation_id == "sig-1" and first.correlation_id == "c1"


def test_default_limits_are_on_and_sane() -> None:
    rc = RiskChecks()
    assert isinstance(rc.check(buy(50.0), state(), NOON), Approved)  # half the equity
    assert rejected_by(rc.check(buy(101.0), state(), NOON)) == "gross_exposure"


@pytest.mark.parametrize(
    "bad",
    [
        {"max_daily_loss": 1.5},
        {"max_drawdown": 0.0},
        {"price_band": -0.1},
        {"max_open_orders": 0},
        {"max_position_notional": -1.0},
        {"max_gross_exposure": math.nan},
        {"min_order_notional": -5.0},
        {"breaker_cooldown_ms": 0},
    ],
)
def test_bad_limits_are_config_errors(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RiskLimits(**bad)  # type: ignore[arg-type]
