"""The compiled fill loop behind :mod:`smartmarket.backtest.sweep`: the kernel's semantics over arrays.

One call of :func:`simulate` is one single-symbol run of :class:`~smartmarket.engine.kernel.Kernel` with
the paper broker, portfolio, sizing and protective stops, operation for operation (same float expressions in
the same order, so trades and equity agree with the event-driven driver to the last bit in practice):

1. a pending order due at bar i fills at its open (close the old side first, then the new side: the quantity fixed
   at the decision close, ``execution.sizing.order_quantity``; with ``I_SIZE_AT_OPEN`` — the kernel's
   ``size_at="fill_open"`` — sized from equity at the fill price including the taker fee, capped by the gross
   exposure);
2. stops/targets/trailing stops inside the bar (gap → open, stop before target, trail from earlier bars);
3. mark at the close: one equity point;
4. the slippage tracker takes the bar;
5. the bar's decision code (see :mod:`smartmarket.strategies.arrays`) becomes a pending order, its quantity
   fixed at this close (unless ``I_SIZE_AT_OPEN``);
6. with a rebalance band (``F_BAND`` not NaN: a price-dependent sizer that rebalances), while the last decision
   wants a position and no order is pending, a resize order when the bar's size fraction left the band around
   the held exposure (the kernel's ``_rebalance``).

Decision codes (int8 bit set): ``1`` long, ``2`` short, ``4`` flat if long, ``8`` flat if short.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# float parameters (``fparams``)
F_CASH, F_MAKER, F_TAKER, F_SLIP_BASE, F_SLIP_MULT, F_SLIP_ALPHA = 0, 1, 2, 3, 4, 5
F_SL_PCT, F_TP_PCT, F_TRAIL_PCT, F_MAX_POSITION, F_MAX_GROSS, F_BAND = 6, 7, 8, 9, 10, 11
N_FPARAMS = 12
# int parameters (``iparams``)
I_SLIP_VOL, I_LATENCY, I_LONG_ONLY, I_CLOSE_AT_END, I_SIZE_AT_OPEN = 0, 1, 2, 3, 4
N_IPARAMS = 5

# exit reasons
R_SIGNAL, R_STOP_LOSS, R_TAKE_PROFIT, R_TRAILING_STOP, R_END_OF_DATA, R_REBALANCE = 0, 1, 2, 3, 4, 5
EXIT_REASONS = ("signal", "stop_loss", "take_profit", "trailing_stop", "end_of_data", "rebalance")

# trade record columns
TF_ENTRY_PRICE, TF_EXIT_PRICE, TF_QUANTITY, TF_PNL, TF_FEES = 0, 1, 2, 3, 4
N_TF = 5
TI_ENTRY_TS, TI_EXIT_TS, TI_ENTRY_BAR, TI_EXIT_BAR, TI_SIDE, TI_REASON = 0, 1, 2, 3, 4, 5
N_TI = 6

# per-run statistics (``stats``)
S_FINAL, S_TRADES, S_WINS, S_MAX_DD, S_N, S_SUM, S_SUMSQ, S_DOWNSQ, S_FILLS, S_NOTIONAL = range(10)
N_STATS = 10
# per-block statistics of bar returns (``blocks``)
B_N, B_SUM, B_SUMSQ, B_DOWNSQ = 0, 1, 2, 3
N_BSTATS = 4

_DUST = 1e-12


@njit(cache=True, inline="always")
def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


@njit(cache=True, inline="always")
def _limited_fraction(sign: int, size: float, equity: float, max_gross: float, max_pos: float) -> float:
    """The signed target fraction within the exposure limits (``RiskConfig.limit_fraction``, one symbol)."""
    other = 0.0 if equity > 0 else math.inf
    cap = min(max_pos, max(0.0, max_gross - other))
    return max(-cap, min(cap, sign * max(0.0, size)))


@njit(cache=True, inline="always")
def _close_quantity(fraction: float, equity: float, price: float, taker: float, max_gross: float) -> float:
    """``execution.sizing.order_quantity`` at the decision close (one symbol: the room is ``max_gross x equity``)."""
    if fraction == 0.0 or not equity > 0 or not price > 0:
        return 0.0
    room = max_gross * equity - 0.0
    notion = min(abs(fraction) * equity, max(0.0, room))
    sign = 1.0 if fraction > 0 else -1.0
    return sign * notion / (price * (1.0 + sign * 0.0) * (1.0 + taker))


@njit(cache=True)
def simulate(
    ts: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    codes: np.ndarray,
    size_frac: np.ndarray,
    fp: np.ndarray,
    ip: np.ndarray,
    start: int,
    end: int,
    equity_out: np.ndarray,
    exposure_out: np.ndarray,
    trades_f: np.ndarray,
    trades_i: np.ndarray,
    stats: np.ndarray,
    blocks: np.ndarray,
) -> int:
    """Run bars ``[start, end)``; returns the number of trades (recorded when ``trades_f`` has rows).

    ``equity_out`` and ``exposure_out`` (length ``end - start``, or 0 for none) receive the equity and gross
    exposure / equity at each close; ``stats`` and ``blocks``
    (shape ``(B, 4)``: bar returns split into ``B`` equal consecutive blocks) are filled in every case.
    """
    cash = fp[F_CASH]
    maker, taker = fp[F_MAKER], fp[F_TAKER]
    slip_base, slip_mult, slip_alpha = fp[F_SLIP_BASE], fp[F_SLIP_MULT], fp[F_SLIP_ALPHA]
    sl_pct, tp_pct, trail_pct = fp[F_SL_PCT], fp[F_TP_PCT], fp[F_TRAIL_PCT]
    max_pos, max_gross = fp[F_MAX_POSITION], fp[F_MAX_GROSS]
    band = fp[F_BAND]
    rebalances = not math.isnan(band)
    slip_vol = ip[I_SLIP_VOL] != 0
    latency = ip[I_LATENCY]
    long_only = ip[I_LONG_ONLY] != 0
    close_at_end = ip[I_CLOSE_AT_END] != 0
    size_at_open = ip[I_SIZE_AT_OPEN] != 0
    record_eq = equity_out.shape[0] > 0
    cap_trades = trades_f.shape[0]
    n_blocks = blocks.shape[0]
    n_ret = end - start - 1

    slip = slip_base
    rng = math.nan

    # position
    qty = 0.0
    avg = 0.0
    entry_ts = 0
    entry_bar = 0
    entry_fees = 0.0
    last = 0.0
    # pending order
    has_pending = False
    pend_frac = 0.0
    pend_qty = 0.0  # the quantity fixed at the decision close
    pend_bar = 0  # (the kernel's ``target_fraction`` only matters for sized decisions, which codes never carry)
    pend_reason = R_SIGNAL
    stance = 0  # the sign the last decision wants (0 after a protective exit)
    # protective stops
    has_stops = False
    st_side = 0
    st_sl = math.nan
    st_tp = math.nan
    st_trail = math.nan
    st_best = 0.0

    n_trades = 0
    n_wins = 0
    n_fills = 0
    notional = 0.0
    peak = -math.inf  # running peak of the equity points (drawdown_series semantics)
    max_dd = 0.0
    prev_eq = 0.0
    cur_eq = 0.0
    r_n = 0
    r_sum = 0.0
    r_sumsq = 0.0
    r_down = 0.0
    for b in range(n_blocks):
        for k in range(N_BSTATS):
            blocks[b, k] = 0.0
    block = 0
    next_block = -(-n_ret // n_blocks) if n_ret > 0 else 0  # first return index of block 1

    for i in range(start, end):
        bi = i - start  # the kernel's bar index
        t = ts[i]
        # fills: up to two (close, open) from an order, one from a stop; each goes through _fill below
        for step in range(2 if (has_pending or has_stops) else 0):
            # ---------------------------------------------------------------------------- work out a fill
            fq = 0.0
            fref = 0.0
            fliq_maker = False
            freason = R_SIGNAL
            is_order = False
            if step == 0:
                if not (has_pending and pend_bar <= bi):
                    continue
                has_pending = False
                is_order = True
                freason = pend_reason
            else:
                if not has_stops:
                    continue
                if qty == 0.0:
                    has_stops = False
                    continue
                # effective stop: the tighter of the fixed and the trailing stop
                stop = st_sl
                stop_reason = R_STOP_LOSS
                if not math.isnan(st_trail):
                    trail = st_best * (1.0 - st_side * st_trail)
                    if math.isnan(stop) or ((trail > stop) if st_side > 0 else (trail < stop)):
                        stop = trail
                        stop_reason = R_TRAILING_STOP
                target = st_tp
                hit = False
                oi, hi_, li = o[i], h[i], lo[i]
                if st_side > 0:
                    if not math.isnan(stop) and oi <= stop:
                        hit, fref, freason = True, oi, stop_reason
                    elif not math.isnan(target) and oi >= target:
                        hit, fref, freason, fliq_maker = True, oi, R_TAKE_PROFIT, True
                    elif not math.isnan(stop) and li <= stop:
                        hit, fref, freason = True, stop, stop_reason
                    elif not math.isnan(target) and hi_ >= target:
                        hit, fref, freason, fliq_maker = True, target, R_TAKE_PROFIT, True
                else:
                    if not math.isnan(stop) and oi >= stop:
                        hit, fref, freason = True, oi, stop_reason
                    elif not math.isnan(target) and oi <= target:
                        hit, fref, freason, fliq_maker = True, oi, R_TAKE_PROFIT, True
                    elif not math.isnan(stop) and hi_ >= stop:
                        hit, fref, freason = True, stop, stop_reason
                    elif not math.isnan(target) and li <= target:
                        hit, fref, freason, fliq_maker = True, target, R_TAKE_PROFIT, True
                if not hit:
                    if st_side > 0:
                        if hi_ > st_best:
                            st_best = hi_
                    elif li < st_best:
                        st_best = li
                    continue
                fq = -qty
                has_stops = False
                if not has_pending:
                    stance = 0

            # an order: close the other side, then size the new one (paper_broker.fill_target)
            n_parts = 1
            if is_order:
                fref = o[i]
                n_parts = 2
            for part in range(n_parts):
                if is_order:
                    sign = _sign(pend_frac)
                    if part == 0:
                        if qty != 0.0 and (sign == 0 or (qty > 0) != (sign > 0)):
                            fq = -qty
                        else:
                            continue
                    else:
                        if sign == 0:
                            continue
                        equity = cash + qty * fref if qty != 0.0 else cash
                        desired = pend_qty
                        if size_at_open and equity > 0:
                            unit_cost = fref * (1.0 + sign * slip) * (1.0 + taker)
                            room = max_gross * equity - 0.0
                            notion = min(abs(pend_frac) * equity, max(0.0, room))
                            desired = sign * notion / unit_cost
                        elif size_at_open:
                            desired = 0.0
                        delta = desired - qty
                        if abs(delta) > _DUST * max(abs(desired), abs(qty)):
                            fq = delta
                        else:
                            continue
                # ------------------------------------------------------------- execute fq at fref (broker)
                side = 1 if fq > 0 else -1
                price = fref if fliq_maker else fref * (1.0 + side * slip)
                fee = abs(fq * price) * (maker if fliq_maker else taker)
                cash -= fq * price + fee
                n_fills += 1
                notional += abs(fq) * price
                if qty != 0.0:
                    last = price
                old = qty
                if old == 0.0 or (old > 0) == (fq > 0):
                    if old == 0.0:
                        qty, avg, entry_ts, entry_bar, entry_fees, last = fq, price, t, bi, fee, price
                    else:
                        new_qty = qty + fq
                        avg = (avg * qty + price * fq) / new_qty
                        qty = new_qty
                        entry_fees += fee
                else:
                    closed = min(abs(fq), abs(old))
                    exit_fee = fee * closed / abs(fq)
                    share = closed / abs(old)
                    efee = entry_fees * share
                    long = old > 0
                    gross = (price - avg) * closed if long else (avg - price) * closed
                    fees = efee + exit_fee
                    pnl = gross - fees
                    reason = freason
                    if n_trades < cap_trades:
                        trades_f[n_trades, TF_ENTRY_PRICE] = avg
                        trades_f[n_trades, TF_EXIT_PRICE] = price
                        trades_f[n_trades, TF_QUANTITY] = closed
                        trades_f[n_trades, TF_PNL] = pnl
                        trades_f[n_trades, TF_FEES] = fees
                        trades_i[n_trades, TI_ENTRY_TS] = entry_ts
                        trades_i[n_trades, TI_EXIT_TS] = t
                        trades_i[n_trades, TI_ENTRY_BAR] = entry_bar
                        trades_i[n_trades, TI_EXIT_BAR] = bi
                        trades_i[n_trades, TI_SIDE] = 1 if long else -1
                        trades_i[n_trades, TI_REASON] = reason
                    n_trades += 1
                    if pnl > 0:
                        n_wins += 1
                    if share >= 1.0 - 1e-12:
                        qty = 0.0
                    else:
                        qty += -closed if long else closed
                        entry_fees -= efee
                    remainder = fq + (closed if old > 0 else -closed)
                    if abs(remainder) > 1e-12 * abs(fq):
                        qty, avg, entry_ts, entry_bar, entry_fees, last = (
                            remainder,
                            price,
                            t,
                            bi,
                            fee - exit_fee,
                            price,
                        )
            if is_order:
                # kernel._after_order_fill: stops for a new side, levels kept for the same side
                if qty == 0.0:
                    has_stops = False
                else:
                    side = 1 if qty > 0 else -1
                    if not has_stops or st_side != side:
                        sl = avg * (1.0 - side * sl_pct) if not math.isnan(sl_pct) else math.nan
                        tp = avg * (1.0 + side * tp_pct) if not math.isnan(tp_pct) else math.nan
                        if math.isnan(sl) and math.isnan(tp) and math.isnan(trail_pct):
                            has_stops = False
                        else:
                            has_stops = True
                            st_side, st_sl, st_tp, st_trail, st_best = side, sl, tp, trail_pct, avg

        # mark at the close
        ci = c[i]
        gross_value = 0.0
        if qty != 0.0:
            last = ci
            value = qty * last
            equity = cash + value
            gross_value = value if value > 0 else -value
        else:
            equity = cash
        # the previous point is final now (only finish() may change the last one): book it
        if bi > 0:
            if cur_eq > peak:
                peak = cur_eq
            dd = 1.0 - cur_eq / peak
            if dd > max_dd:
                max_dd = dd
            if bi > 1:
                if bi - 2 >= next_block:  # return j lies in block j * n_blocks // n_ret
                    block += 1
                    next_block = -(-(block + 1) * n_ret // n_blocks)
                _account(prev_eq, cur_eq, block, blocks)
        prev_eq, cur_eq = cur_eq, equity
        if record_eq:
            equity_out[bi] = equity
            exposure_out[bi] = gross_value / equity if equity > 0 else 0.0

        # slippage tracker takes the bar
        if slip_vol and ci > 0.0:
            x = (h[i] - lo[i]) / ci
            rng = x if rng != rng else rng + slip_alpha * (x - rng)
            slip = slip_base + slip_mult * rng

        # the decision
        code = codes[i]
        dsign = 2  # no decision
        if code & 1:
            dsign = 1
        elif code & 2:
            dsign = -1
        elif ((code & 4) and qty > 0) or ((code & 8) and qty < 0):
            dsign = 0
        if dsign != 2:
            if dsign < 0 and long_only:
                dsign = 0
            stance = dsign
            held_sign = _sign(qty)
            current = _sign(pend_frac) if has_pending else held_sign
            if dsign == current:
                pass
            elif has_pending and dsign == held_sign:
                has_pending = False  # back to the held side before the change filled: cancel it
            else:
                fraction = 0.0
                eq_now = cash + qty * last if qty != 0.0 else cash
                if dsign != 0:
                    fraction = _limited_fraction(dsign, size_frac[i], eq_now, max_gross, max_pos)
                if dsign == 0 or fraction != 0.0 or current != 0:
                    has_pending = True
                    pend_frac = fraction
                    pend_qty = 0.0 if size_at_open else _close_quantity(fraction, eq_now, ci, taker, max_gross)
                    pend_bar = bi + 1 + latency
                    pend_reason = R_SIGNAL

        # a price-dependent sizer resizes the wanted position (kernel._rebalance)
        if rebalances and stance != 0 and not has_pending:
            eq_now = cash + qty * last if qty != 0.0 else cash
            fraction = _limited_fraction(stance, size_frac[i], eq_now, max_gross, max_pos)
            held = qty * last / eq_now if qty != 0.0 and eq_now > 0 else 0.0
            if abs(fraction - held) > band * abs(held):
                has_pending = True
                pend_frac = fraction
                pend_qty = 0.0 if size_at_open else _close_quantity(fraction, eq_now, ci, taker, max_gross)
                pend_bar = bi + 1 + latency
                pend_reason = R_REBALANCE

    # finish(): cancel the pending order, close at the last close when asked
    if end > start and close_at_end and qty != 0.0:
        t = ts[end - 1]
        bi = end - 1 - start
        fq = -qty
        side = 1 if fq > 0 else -1
        price = last * (1.0 + side * slip)
        fee = abs(fq * price) * taker
        cash -= fq * price + fee
        n_fills += 1
        notional += abs(fq) * price
        long = qty > 0
        closed = abs(qty)
        gross = (price - avg) * closed if long else (avg - price) * closed
        fees = entry_fees + fee * closed / abs(fq)
        pnl = gross - fees
        if n_trades < cap_trades:
            trades_f[n_trades, TF_ENTRY_PRICE] = avg
            trades_f[n_trades, TF_EXIT_PRICE] = price
            trades_f[n_trades, TF_QUANTITY] = closed
            trades_f[n_trades, TF_PNL] = pnl
            trades_f[n_trades, TF_FEES] = fees
            trades_i[n_trades, TI_ENTRY_TS] = entry_ts
            trades_i[n_trades, TI_EXIT_TS] = t
            trades_i[n_trades, TI_ENTRY_BAR] = entry_bar
            trades_i[n_trades, TI_EXIT_BAR] = bi
            trades_i[n_trades, TI_SIDE] = 1 if long else -1
            trades_i[n_trades, TI_REASON] = R_END_OF_DATA
        n_trades += 1
        if pnl > 0:
            n_wins += 1
        qty = 0.0
        cur_eq = cash
        if record_eq:
            equity_out[bi] = cash
            exposure_out[bi] = 0.0
    if end > start:
        if cur_eq > peak:
            peak = cur_eq
        dd = 1.0 - cur_eq / peak
        if dd > max_dd:
            max_dd = dd
    if end - start > 1:
        _account(prev_eq, cur_eq, n_blocks - 1, blocks)

    for b in range(n_blocks):
        r_n += int(blocks[b, B_N])
        r_sum += blocks[b, B_SUM]
        r_sumsq += blocks[b, B_SUMSQ]
        r_down += blocks[b, B_DOWNSQ]
    stats[S_FINAL] = cur_eq if end > start else fp[F_CASH]
    stats[S_TRADES] = n_trades
    stats[S_WINS] = n_wins
    stats[S_N] = r_n
    stats[S_SUM] = r_sum
    stats[S_SUMSQ] = r_sumsq
    stats[S_DOWNSQ] = r_down
    stats[S_FILLS] = n_fills
    stats[S_NOTIONAL] = notional
    stats[S_MAX_DD] = max_dd
    return n_trades


@njit(cache=True, inline="always")
def _account(prev: float, cur: float, b: int, blocks: np.ndarray) -> None:
    """Book one bar return (``bar_returns`` semantics: 0 after equity reached zero) into block ``b``."""
    r = cur / prev - 1.0 if prev > 0 else 0.0
    blocks[b, B_N] += 1.0
    blocks[b, B_SUM] += r
    blocks[b, B_SUMSQ] += r * r
    if r < 0.0:
        blocks[b, B_DOWNSQ] += r * r


@njit(cache=True, parallel=True)
def sweep(
    ts: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    codes: np.ndarray,
    size_frac: np.ndarray,
    fp: np.ndarray,
    ip: np.ndarray,
    start: int,
    end: int,
    stats: np.ndarray,
    blocks: np.ndarray,
) -> None:
    """Run every row of ``codes`` (one parameter set each) over ``[start, end)``; summaries only."""
    no_eq = np.empty(0, dtype=np.float64)
    no_tf = np.empty((0, N_TF), dtype=np.float64)
    no_ti = np.empty((0, N_TI), dtype=np.int64)
    for k in prange(codes.shape[0]):
        simulate(
            ts, o, h, lo, c, codes[k], size_frac, fp, ip, start, end, no_eq, no_eq, no_tf, no_ti, stats[k], blocks[k]
        )
