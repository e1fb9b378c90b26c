"""The per-candle kernel: one state machine shared by backtest, replay and live.

``Kernel.on_candle(symbol, bar)`` consumes one *closed* candle and runs, in this order:

1. **fills**: an order decided at an earlier close and now due fills at this bar's **open** (slippage, fees);
2. **protective exits**: stop-loss / take-profit / trailing stop inside this bar, conservatively
   (see :mod:`smartmarket.execution.risk`: gaps fill at the open, stop before target when both are in range);
3. **mark**: the portfolio is valued at this bar's close and one equity point is recorded per timestamp;
4. **features**: the strategy's features, bar history and the sizer's volatility forecaster (``--vol-model``)
   take this bar (O(1) incremental updates; HAR-RV refits once a day of bars);
5. **strategy**: ``on_bar(ctx)`` sees this bar and earlier ones only;
6. **orders**: sizing and risk turn a decision into an order that is pending until the open of the next bar
   (``latency_bars`` later with a latency setting): never at this bar's close. Its quantity is fixed here, at
   the decision close (``execution.sizing.order_quantity``: the rule the live risk stage follows too, so
   ``backtest`` and ``run`` fill the same quantities); a reversal fills as two fills at that open, the close
   of the old side, then the new side. With a price-dependent sizer
   that has a ``rebalance_band`` (volatility targeting), the sizer is re-evaluated at every close while the
   strategy's last decision wants a position and no order is pending; when its fraction differs from the held
   exposure by more than ``band`` x the held exposure, a resize order (reason ``rebalance``) goes out the same
   way. A protective exit ends that stance until the strategy decides again.

The kernel holds no data beyond the candles it was given, so a decision at bar t cannot depend on bar t+1.
``KernelConfig.size_at="fill_open"`` sizes at the fill instead (equity and price at the fill's open, with its
slippage): the convention of backtesting.py and vectorbt, kept only so the peer-parity tests can compare
trade for trade. A real broker needs the quantity when the order leaves, so nothing else uses it.

Candles of one symbol must arrive in increasing ``ts``; across symbols, timestamps must not go back.
``finish()`` ends a run: pending orders are cancelled and open positions are reported, or closed at their
last close when ``close_at_end`` (taker fee and slippage; reason ``end_of_data``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from smartmarket.core.errors import ValidationError
from smartmarket.core.events import CandleClosed
from smartmarket.core.types import Candle
from smartmarket.engine.strategy import BarContext, BarHistory, Strategy, StrategyFactory
from smartmarket.execution.fees import FeeModel
from smartmarket.execution.orders import DIRECTION_SIGN, Decision, Order
from smartmarket.execution.paper_broker import PaperBroker
from smartmarket.execution.portfolio import Portfolio, Position
from smartmarket.execution.risk import ProtectiveExit, ProtectiveStops, RiskConfig, stops_for_entry
from smartmarket.execution.sizing import FixedFraction, Sizer, order_quantity
from smartmarket.execution.slippage import NO_SLIPPAGE, SlippageModel, SlippageTracker
from smartmarket.execution.vol_forecast import VolForecaster
from smartmarket.features.base import Feature

NAN = math.nan
_new_context = partial(tuple.__new__, BarContext)  # BarContext from a tuple without a Python-level call
SizeAt = Literal["decision_close", "fill_open"]


@dataclass(frozen=True, slots=True)
class KernelConfig:
    """Everything that shapes execution; frozen so a run is described by its config and its candles."""

    initial_cash: float = 10_000.0
    fees: FeeModel = field(default_factory=FeeModel)
    slippage: SlippageModel = NO_SLIPPAGE
    sizer: Sizer = field(default_factory=FixedFraction)
    risk: RiskConfig = field(default_factory=RiskConfig)
    latency_bars: int = 0  # extra bars between a decision and its fill (0 = next bar's open)
    long_only: bool = False  # short decisions become flat
    close_at_end: bool = False  # finish() closes open positions at their last close
    size_at: SizeAt = "decision_close"  # "fill_open": backtesting.py's convention, peer-parity tests only

    def __post_init__(self) -> None:
        if self.latency_bars < 0:
            raise ValidationError(f"latency_bars must be >= 0, got {self.latency_bars}")
        if self.size_at not in ("decision_close", "fill_open"):
            raise ValidationError(f"size_at must be 'decision_close' or 'fill_open', got {self.size_at!r}")


class _SymbolState:
    """Per-symbol machinery: the strategy instance, its features, history, pending order and stops."""

    __slots__ = (
        "bar_index",
        "bars",
        "feature_index",
        "features",
        "history",
        "last_ts",
        "pending",
        "slippage",
        "slippage_updates",
        "stance",
        "stance_decision",
        "stops",
        "strategy",
        "symbol",
        "target_fraction",
        "vol",
    )

    def __init__(self, symbol: str, strategy: Strategy, slippage: SlippageTracker, history_size: int) -> None:
        self.symbol = symbol
        self.strategy = strategy
        self.features: tuple[Feature, ...] = tuple(strategy.features())
        index: dict[str, int] = {}
        for feature in self.features:
            for column in feature.columns:
                if column in index:
                    raise ValidationError(f"strategy {strategy.name!r} declares feature column {column!r} twice")
                index[column] = len(index)
        self.feature_index = index
        self.bars: deque[Candle] = deque(maxlen=max(1, history_size))
        self.history = BarHistory(self.bars)
        self.slippage = slippage
        self.slippage_updates = slippage.needs_updates
        self.pending: Order | None = None
        self.stops: ProtectiveStops | None = None
        self.bar_index = -1
        self.last_ts = -(2**63)
        self.target_fraction = 0.0
        self.stance = 0  # the sign the strategy's last decision wants (0 after a protective exit)
        self.stance_decision: Decision | None = None
        self.vol: VolForecaster | None = None  # the sizer's volatility forecaster, updated at every close


def _forecast(st: _SymbolState) -> float | None:
    """The symbol's volatility forecast at this close, for a sizer with a tracker (None without)."""
    return st.vol.forecast() if st.vol is not None else None


class Kernel:
    """Feed closed candles in; read ``portfolio``, ``orders``, ``broker.fills`` and the equity record out."""

    def __init__(self, strategy: StrategyFactory, config: KernelConfig | None = None) -> None:
        self.config = config if config is not None else KernelConfig()
        cfg = self.config
        self._factory = strategy
        self.portfolio = Portfolio(cfg.initial_cash, long_only=cfg.long_only)
        self.broker = PaperBroker(self.portfolio, cfg.fees, max_gross_exposure=cfg.risk.max_gross_exposure)
        self.orders: list[Order] = []
        self.equity_ts: list[int] = []
        self.equity_values: list[float] = []
        self.exposure_values: list[float] = []  # gross exposure / equity at each recorded point
        self.protective_exits: list[ProtectiveExit] = []  # each exit a stop or target took inside a bar
        self._states: dict[str, _SymbolState] = {}
        self._next_order_id = 1
        self._finished = False
        sizer = cfg.sizer
        self._rebalances = sizer.rebalance_band is not None and sizer.lookback > 0

    # ----------------------------------------------------------------------------------------- set-up
    def _add_symbol(self, symbol: str) -> _SymbolState:
        strategy = self._factory(symbol)
        sizer = self.config.sizer
        history = max(strategy.history_size, sizer.lookback + 1)
        state = _SymbolState(symbol, strategy, self.config.slippage.tracker(), history)
        state.vol = sizer.tracker()
        self._states[symbol] = state
        return state

    def strategy(self, symbol: str) -> Strategy:
        """The strategy instance serving ``symbol`` (KeyError before its first candle)."""
        return self._states[symbol].strategy

    def pending_order(self, symbol: str) -> Order | None:
        state = self._states.get(symbol)
        return state.pending if state is not None else None

    def stops(self, symbol: str) -> ProtectiveStops | None:
        state = self._states.get(symbol)
        return state.stops if state is not None else None

    def cancel_pending(self, symbol: str) -> bool:
        """Drop the pending order of ``symbol`` (status ``cancelled``); False when it has none."""
        state = self._states.get(symbol)
        if state is None or state.pending is None:
            return False
        state.pending.status = "cancelled"
        state.pending = None
        return True

    # ------------------------------------------------------------------------------------- the clock
    def on_event(self, event: CandleClosed) -> None:
        """Live/replay edge: a ``CandleClosed`` event is one closed candle."""
        self.on_candle(event.symbol, event.candle)

    def on_candle(self, symbol: str, bar: Candle) -> None:
        """Advance ``symbol`` by one closed candle (steps 1-6 of the module docstring)."""
        st = self._states.get(symbol)
        if st is None:
            st = self._add_symbol(symbol)
        ts, o, h, lo, c, v = bar
        if ts <= st.last_ts:
            raise ValidationError(f"candle ts {ts} is not after the previous one ({st.last_ts})", where=symbol)
        equity_ts = self.equity_ts
        if equity_ts and ts < equity_ts[-1]:
            raise ValidationError(f"candle ts {ts} goes back in time (kernel is at {equity_ts[-1]})", where=symbol)
        st.last_ts = ts
        i = st.bar_index = st.bar_index + 1
        pf = self.portfolio

        # 1. orders decided earlier fill at this bar's open
        order = st.pending
        if order is not None and order.fill_bar <= i:
            st.pending = None
            self.broker.fill_target(order, o, ts, i, slippage=st.slippage.fraction)
            self._after_order_fill(st, order)

        # 2. protective exits inside this bar
        stops = st.stops
        if stops is not None:
            self._check_stops(st, stops, ts, i, o, h, lo)

        # 3. mark to this bar's close and record equity (one point per timestamp)
        pf.last_prices[symbol] = c
        positions = pf.positions
        pos = positions.get(symbol)
        if pos is not None:
            pos.last_price = c
        equity = pf.cash
        gross = 0.0
        for p in positions.values():
            value = p.quantity * p.last_price
            equity += value
            gross += value if value > 0 else -value
        exposure = gross / equity if equity > 0 else 0.0
        if equity_ts and equity_ts[-1] == ts:
            self.equity_values[-1] = equity
            self.exposure_values[-1] = exposure
        else:
            equity_ts.append(ts)
            self.equity_values.append(equity)
            self.exposure_values.append(exposure)

        # 4. features and history take this bar
        values: tuple[float, ...] = ()
        for feature in st.features:
            values += feature.step(ts, o, h, lo, c, v)
        st.bars.append(bar)
        if st.slippage_updates:
            st.slippage.update(h, lo, c)
        if st.vol is not None:
            st.vol.update(c)

        # 5. the strategy sees this closed bar
        if pos is None:
            ctx = _new_context((symbol, i, bar, 0.0, NAN, st.history, values, st.feature_index))
        else:
            ctx = _new_context((symbol, i, bar, pos.quantity, pos.avg_price, st.history, values, st.feature_index))
        decision = st.strategy.on_bar(ctx)

        # 6. a decision becomes an order pending for a later open; a price-dependent sizer may resize
        if decision is not None:
            self._decide(st, decision, ts, i, c)
        if self._rebalances and st.stance != 0 and st.pending is None:
            self._rebalance(st, ts, i, c)

    def warm_up(self, symbol: str, bar: Candle) -> None:
        """Feed a bar to features, history and strategy (steps 4-6) without fills, exits or equity records.

        Primes a strategy on bars before an evaluation window. Its decisions still become pending orders
        (each replacing the previous one), so the window starts with the strategy's current stance: the last
        one fills at the open of the first bar given to ``on_candle``.
        """
        st = self._states.get(symbol)
        if st is None:
            st = self._add_symbol(symbol)
        ts, o, h, lo, c, v = bar
        if ts <= st.last_ts:
            raise ValidationError(f"candle ts {ts} is not after the previous one ({st.last_ts})", where=symbol)
        st.last_ts = ts
        i = st.bar_index = st.bar_index + 1
        values: tuple[float, ...] = ()
        for feature in st.features:
            values += feature.step(ts, o, h, lo, c, v)
        st.bars.append(bar)
        if st.slippage_updates:
            st.slippage.update(h, lo, c)
        if st.vol is not None:
            st.vol.update(c)
        self.portfolio.last_prices[symbol] = c
        decision = st.strategy.on_bar(BarContext(symbol, i, bar, 0.0, NAN, st.history, values, st.feature_index))
        if decision is not None:
            self._decide(st, decision, ts, i, c)
        if self._rebalances and st.stance != 0 and st.pending is None:
            self._rebalance(st, ts, i, c)

    def finish(self, close_positions: bool | None = None) -> list[Position]:
        """End the run: cancel pending orders; close positions at their last close if asked
        (``close_positions``, default ``config.close_at_end``). Returns the positions still open."""
        if self._finished:
            return list(self.portfolio.positions.values())
        self._finished = True
        close = self.config.close_at_end if close_positions is None else close_positions
        for st in self._states.values():
            if st.pending is not None:
                st.pending.status = "cancelled"
                st.pending = None
            if close and st.symbol in self.portfolio.positions:
                pos = self.portfolio.positions[st.symbol]
                self.broker.execute(
                    st.symbol,
                    -pos.quantity,
                    pos.last_price,
                    st.last_ts,
                    st.bar_index,
                    slippage=st.slippage.fraction,
                    reason="end_of_data",
                )
                st.stops = None
                st.target_fraction = 0.0
        if close and self.equity_values:
            self.equity_values[-1] = self.portfolio.equity
            self.exposure_values[-1] = 0.0
        return list(self.portfolio.positions.values())

    # ------------------------------------------------------------------------------------- internals
    def _after_order_fill(self, st: _SymbolState, order: Order) -> None:
        pos = self.portfolio.positions.get(st.symbol)
        if pos is None:
            st.stops = None
            return
        side = 1 if pos.quantity > 0 else -1
        stops = st.stops
        if stops is None or stops.side != side:
            st.stops = stops_for_entry(
                self.config.risk, side, pos.avg_price, order.stop_loss, order.take_profit, order.trailing_stop
            )
        else:
            _replace_levels(stops, order.stop_loss, order.take_profit, order.trailing_stop)

    def _check_stops(
        self, st: _SymbolState, stops: ProtectiveStops, ts: int, i: int, o: float, h: float, lo: float
    ) -> None:
        symbol = st.symbol
        held = self.portfolio.quantity(symbol)
        if held == 0.0:
            st.stops = None
            return
        hit = stops.check(o, h, lo)
        if hit is None:
            stops.after_bar(h, lo)
            return
        price, reason, liquidity = hit
        self.broker.execute(
            symbol, -held, price, ts, i, slippage=st.slippage.fraction, liquidity=liquidity, reason=reason
        )
        self.protective_exits.append(ProtectiveExit(symbol, ts, price, reason, liquidity))
        st.stops = None
        if st.pending is None:
            st.target_fraction = 0.0
            st.stance = 0

    def _other_gross_fraction(self, st: _SymbolState) -> float:
        """Gross exposure / equity of the other symbols, counting their pending targets as if filled."""
        pf = self.portfolio
        equity = pf.equity
        if not equity > 0:
            return math.inf
        total = 0.0
        for other in self._states.values():
            if other is st:
                continue
            if other.pending is not None:
                total += abs(other.pending.target_fraction)
            elif other.symbol in pf.positions:
                total += abs(pf.positions[other.symbol].market_value) / equity
        return total

    def _held_fraction(self, symbol: str) -> float:
        pos = self.portfolio.positions.get(symbol)
        equity = self.portfolio.equity
        return pos.quantity * pos.last_price / equity if pos is not None and equity > 0 else 0.0

    def _current_sign(self, st: _SymbolState) -> int:
        if st.pending is not None:
            return st.pending.target_sign
        held = self.portfolio.quantity(st.symbol)
        return (held > 0) - (held < 0)

    def _decide(self, st: _SymbolState, decision: Decision, ts: int, i: int, close: float) -> None:
        cfg = self.config
        sign = DIRECTION_SIGN[decision.direction]
        if sign < 0 and cfg.long_only:
            sign = 0
        st.stance, st.stance_decision = sign, decision
        current = self._current_sign(st)
        if sign == current and (sign == 0 or decision.size is None):
            if sign != 0:
                self._update_levels(st, decision)
            return
        held = self.portfolio.quantity(st.symbol)
        if st.pending is not None and sign == (held > 0) - (held < 0) and decision.size is None:
            # Back to the held direction before the pending change filled: cancel it, keep the position.
            st.pending.status = "cancelled"
            st.pending = None
            st.target_fraction = self._held_fraction(st.symbol)
            if sign != 0:
                self._update_levels(st, decision)
            return
        fraction = 0.0
        if sign != 0:
            sizer = cfg.sizer
            closes = st.history.closes(sizer.lookback + 1) if sizer.lookback else ()
            fraction = sign * sizer.fraction(decision, close, closes, _forecast(st))
            fraction = cfg.risk.limit_fraction(fraction, self._other_gross_fraction(st))
            if fraction == 0.0 and current == 0:
                return  # no room (exposure limits) or no size (sizer): nothing to do
            if sign == current and (
                abs(fraction - st.target_fraction) < 1e-12 or (st.pending is None and self._within_band(st, fraction))
            ):
                self._update_levels(st, decision)  # a sized repeat resizes only outside a rebalancing sizer's band
                return
        if st.pending is not None:
            st.pending.status = "cancelled"
        self._send(st, fraction, ts, i, close, decision, decision.reason)

    def _send(
        self, st: _SymbolState, fraction: float, ts: int, i: int, close: float, levels: Decision | None, reason: str
    ) -> None:
        """Make ``fraction`` the symbol's pending order, with ``levels``' protective levels; its quantity is
        fixed at this ``close`` (``order_quantity``) unless the config sizes at the fill's open."""
        quantity: float | None = None
        if self.config.size_at == "decision_close":
            pf = self.portfolio
            equity = pf.equity
            room = self.config.risk.max_gross_exposure * equity - pf.gross_exposure_excluding(st.symbol)
            quantity = order_quantity(fraction, equity, close, self.config.fees.taker, room=room)
        order = Order(
            order_id=self._next_order_id,
            symbol=st.symbol,
            target_fraction=fraction,
            created_ts=ts,
            created_bar=i,
            fill_bar=i + 1 + self.config.latency_bars,
            stop_loss=levels.stop_loss if levels is not None else None,
            take_profit=levels.take_profit if levels is not None else None,
            trailing_stop=levels.trailing_stop if levels is not None else None,
            reason=reason,
            quantity=quantity,
        )
        self._next_order_id += 1
        self.orders.append(order)
        st.pending = order
        st.target_fraction = fraction

    def _within_band(self, st: _SymbolState, fraction: float) -> bool:
        """Whether ``fraction`` is within a rebalancing sizer's band around the held exposure (False without)."""
        band = self.config.sizer.rebalance_band
        if not self._rebalances or band is None:
            return False
        held = self._held_fraction(st.symbol)
        return abs(fraction - held) <= band * abs(held)

    def _rebalance(self, st: _SymbolState, ts: int, i: int, close: float) -> None:
        """Resize toward the sizer's fraction at this close when it left the band around the held exposure."""
        decision = st.stance_decision
        if decision is None:
            return
        cfg = self.config
        sizer = cfg.sizer
        fraction = st.stance * sizer.fraction(decision, close, st.history.closes(sizer.lookback + 1), _forecast(st))
        fraction = cfg.risk.limit_fraction(fraction, self._other_gross_fraction(st))
        if self._within_band(st, fraction):
            return
        held = self._held_fraction(st.symbol)
        # entering from flat takes the decision's levels; a resize keeps the levels in force
        entering = (held > 0) - (held < 0) != st.stance
        self._send(st, fraction, ts, i, close, decision if entering else None, "rebalance")

    def _update_levels(self, st: _SymbolState, decision: Decision) -> None:
        """A decision repeating the direction may move its protective levels (effective from the next bar)."""
        if decision.stop_loss is None and decision.take_profit is None and decision.trailing_stop is None:
            return
        if st.pending is not None:
            order = st.pending
            order.stop_loss = decision.stop_loss if decision.stop_loss is not None else order.stop_loss
            order.take_profit = decision.take_profit if decision.take_profit is not None else order.take_profit
            order.trailing_stop = decision.trailing_stop if decision.trailing_stop is not None else order.trailing_stop
            return
        pos = self.portfolio.positions.get(st.symbol)
        if pos is None:
            return
        if st.stops is None:
            side = 1 if pos.quantity > 0 else -1
            st.stops = ProtectiveStops(side, best_price=pos.last_price)
        _replace_levels(st.stops, decision.stop_loss, decision.take_profit, decision.trailing_stop)

    # ------------------------------------------------------------------------------------- results
    @property
    def equity(self) -> float:
        return self.portfolio.equity

    @property
    def bars_seen(self) -> int:
        """Candles consumed by ``on_candle`` and ``warm_up`` over all symbols."""
        return sum(st.bar_index + 1 for st in self._states.values())


def _replace_levels(
    stops: ProtectiveStops, stop_loss: float | None, take_profit: float | None, trailing: float | None
) -> None:
    if stop_loss is not None:
        stops.stop_loss = stop_loss
    if take_profit is not None:
        stops.take_profit = take_profit
    if trailing is not None:
        stops.trailing_pct = trailing


__all__ = ["Kernel", "KernelConfig"]
