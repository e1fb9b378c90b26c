"""Metrics, monthly returns and PSR/DSR against values worked out by hand (arithmetic in the comments)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from smartmarket.analytics import (
    compute_metrics,
    deflated_sharpe_from_returns,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    monthly_returns,
    per_period_sharpe,
    probabilistic_sharpe_ratio,
    return_moments,
)
from smartmarket.analytics.metrics import max_drawdown_duration
from smartmarket.core.errors import ValidationError
from smartmarket.core.timeutil import parse_time
from smartmarket.core.trading import PositionSide, Trade
from smartmarket.core.types import DAY_MS, HOUR_MS, Timeframe

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def daily_curve(values: list[float], start: int = T0) -> pd.Series:
    return pd.Series(values, index=pd.Index([start + i * DAY_MS for i in range(len(values))], dtype=np.int64))


def ts(text: str) -> int:
    value = parse_time(text)
    assert value is not None
    return value


# Per-bar returns r = [+0.10, -0.10, +0.25, -0.20, +0.05, 0.00] from 100:
# equity 100 → 110 → 99 → 123.75 → 99 → 103.95 → 103.95 (7 daily points, 6 returns, span 6 days).
TINY = daily_curve([100.0, 110.0, 99.0, 123.75, 99.0, 103.95, 103.95])


class TestTinyEquityCurve:
    def test_total_return_and_cagr(self) -> None:
        m = compute_metrics(TINY, [], Timeframe.D1)
        # total = 103.95 / 100 - 1 = 0.0395
        assert m.total_return == pytest.approx(0.0395, rel=1e-12)
        # daily bars: periods_per_year = 365; span = 6 days = 6/365 years
        assert m.periods_per_year == 365.0
        assert m.years == pytest.approx(6 / 365)
        # CAGR = 1.0395^(365/6) - 1 = exp(60.8333 * ln 1.0395) - 1 = exp(60.8333 * 0.0387398) - 1
        #      = exp(2.356674) - 1 = 9.55577
        assert m.annual_return == pytest.approx(9.555773, rel=1e-6)
        assert (m.start_equity, m.end_equity) == (100.0, 103.95)

    def test_volatility_sharpe_sortino(self) -> None:
        m = compute_metrics(TINY, [], Timeframe.D1)
        # mean r = (0.10 - 0.10 + 0.25 - 0.20 + 0.05 + 0) / 6 = 0.1 / 6 = 0.0166667
        # deviations: 0.083333, -0.116667, 0.233333, -0.216667, 0.033333, -0.016667
        # squares sum: 0.0069444 + 0.0136111 + 0.0544444 + 0.0469444 + 0.0011111 + 0.0002778 = 0.1233333
        # sample variance (ddof=1) = 0.1233333 / 5 = 0.0246667; std = 0.1570563
        # volatility = 0.1570563 * sqrt(365) = 0.1570563 * 19.104973 = 3.000556
        assert m.volatility == pytest.approx(3.000556, rel=1e-6)
        # sharpe = 0.0166667 / 0.1570563 * sqrt(365) = 0.1061191 * 19.104973 = 2.027402
        assert m.sharpe == pytest.approx(2.027402, rel=1e-6)
        # downside deviation over all 6 bars: sqrt((0.1^2 + 0.2^2) / 6) = sqrt(0.05 / 6) = 0.0912871
        # sortino = 0.0166667 / 0.0912871 * 19.104973 = 0.1825742 * 19.104973 = 3.488075
        assert m.sortino == pytest.approx(3.488075, rel=1e-6)

    def test_risk_free_rate_is_annual_and_converted_per_bar(self) -> None:
        m = compute_metrics(TINY, [], Timeframe.D1, risk_free=0.05)
        # rf per bar = 1.05^(1/365) - 1 = 0.000133681; (0.0166667 - 0.000133681) / 0.1570563 * 19.104973 = 2.011141
        assert m.sharpe == pytest.approx(2.011141, rel=1e-6)

    def test_max_drawdown_and_duration(self) -> None:
        m = compute_metrics(TINY, [], Timeframe.D1)
        # running peak: 100, 110, 110, 123.75, 123.75, 123.75, 123.75
        # drawdowns: 0, 0, 1 - 99/110 = 0.10, 0, 1 - 99/123.75 = 0.20, 1 - 103.95/123.75 = 0.16, 0.16
        assert m.max_drawdown == pytest.approx(0.20, rel=1e-12)
        # under water #1: peak at bar 1, recovered at bar 3 → 2 bars
        # under water #2: peak at bar 3, never recovered, to the last bar 6 → 3 bars = 3 days (the longest)
        assert m.max_drawdown_bars == 3
        assert m.max_drawdown_ms == 3 * DAY_MS
        # calmar = CAGR / max drawdown = 9.555773 / 0.20 = 47.778864
        assert m.calmar == pytest.approx(47.778864, rel=1e-6)

    def test_recovered_drawdown_counts_to_the_recovery_bar(self) -> None:
        # peak 100 at bar 0, under water at bars 1..3, back to 100 at bar 4, then a new high
        curve = daily_curve([100.0, 90.0, 80.0, 95.0, 100.0, 120.0])
        assert max_drawdown_duration(curve) == (4, 4 * DAY_MS)
        # gaps in the index: duration in ms follows the timestamps, bars follow positions
        gappy = pd.Series([100.0, 90.0, 100.0], index=pd.Index([0, HOUR_MS, 10 * HOUR_MS], dtype=np.int64))
        assert max_drawdown_duration(gappy) == (2, 10 * HOUR_MS)

    def test_no_drawdown_means_no_calmar(self) -> None:
        m = compute_metrics(daily_curve([100.0, 101.0, 102.0, 103.0]), [], Timeframe.D1)
        assert m.max_drawdown == 0.0
        assert (m.max_drawdown_bars, m.max_drawdown_ms) == (0, 0)
        assert m.calmar is None
        assert m.sortino is None  # no bar below the target: downside deviation is 0


def trade(pnl: float, *, side: PositionSide = "long", entry_ts: int = T0, exit_ts: int = T0 + DAY_MS) -> Trade:
    # entry notional 100 × 1 = 100, so return_pct = pnl / 100
    exit_price = 100.0 + pnl if side == "long" else 100.0 - pnl
    return Trade("BTCUSDT", side, entry_ts, exit_ts, 100.0, exit_price, 1.0, pnl, 0.5)


TRADES = (trade(30.0), trade(-10.0), trade(20.0, side="short"), trade(-20.0), trade(0.0))


class TestTradeStatistics:
    def test_win_rate_profit_factor_expectancy(self) -> None:
        m = compute_metrics(TINY, TRADES, Timeframe.D1)
        assert m.num_trades == 5
        # wins: 30, 20 → 2 of 5 (a zero-pnl trade is not a win)
        assert m.win_rate == pytest.approx(0.4)
        # gross profit 50 / gross loss 30 = 1.666…
        assert m.profit_factor == pytest.approx(5 / 3)
        # (30 - 10 + 20 - 20 + 0) / 5 = 4.0; in return terms (0.30 - 0.10 + 0.20 - 0.20 + 0) / 5 = 0.04
        assert m.expectancy == pytest.approx(4.0)
        assert m.expectancy_return == pytest.approx(0.04)
        assert m.avg_win == pytest.approx(25.0)
        assert m.avg_loss == pytest.approx(-15.0)
        assert (m.best_trade, m.worst_trade) == (30.0, -20.0)
        assert m.best_trade_return == pytest.approx(0.30)
        assert m.worst_trade_return == pytest.approx(-0.20)
        assert m.total_fees == pytest.approx(2.5)

    def test_undefined_values_are_none_and_json_is_valid(self) -> None:
        only_wins = compute_metrics(TINY, [trade(5.0), trade(7.0)], Timeframe.D1)
        assert only_wins.profit_factor is None  # no losing trade: undefined, not infinity
        assert only_wins.avg_loss is None
        no_trades = compute_metrics(daily_curve([100.0, 100.0, 100.0]), [], Timeframe.D1)
        assert no_trades.win_rate is None and no_trades.expectancy is None
        assert no_trades.sharpe is None and no_trades.volatility == 0.0  # zero variance
        for m in (only_wins, no_trades):
            text = json.dumps(m.to_dict(), allow_nan=False)  # raises on NaN/inf
            assert json.loads(text)["num_trades"] == m.num_trades

    def test_to_dict_has_plain_types(self) -> None:
        d = compute_metrics(TINY, TRADES, Timeframe.D1).to_dict()
        required = {
            "total_return", "annual_return", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
            "max_drawdown_bars", "max_drawdown_ms", "win_rate", "profit_factor", "expectancy", "expectancy_return",
            "avg_win", "avg_loss", "exposure", "turnover", "num_trades", "best_trade", "worst_trade",
            "start_equity", "end_equity",
        }  # fmt: skip
        assert required <= d.keys()
        assert all(type(v) in (int, float, type(None)) for v in d.values())
        assert type(d["num_trades"]) is int and type(d["max_drawdown_ms"]) is int


class TestExposureAndTurnover:
    def test_exposure_from_trade_times(self) -> None:
        curve = daily_curve([100.0] * 11)  # span 10 days
        trades = [
            trade(1.0, entry_ts=T0 + 1 * DAY_MS, exit_ts=T0 + 3 * DAY_MS),
            trade(1.0, entry_ts=T0 + 2 * DAY_MS, exit_ts=T0 + 5 * DAY_MS),  # overlaps: union is days 1..5
            trade(1.0, entry_ts=T0 + 8 * DAY_MS, exit_ts=T0 + 9 * DAY_MS),
        ]
        # (4 + 1) days in the market out of 10
        assert compute_metrics(curve, trades, Timeframe.D1).exposure == pytest.approx(0.5)

    def test_exposure_from_per_bar_flags_or_float(self) -> None:
        assert compute_metrics(TINY, [], Timeframe.D1, exposure=np.array([True, False, True, True])).exposure == 0.75
        positions = pd.Series([0.0, 1.5, -2.0, 0.0, 0.0])  # signed positions: non-zero = exposed
        assert compute_metrics(TINY, [], Timeframe.D1, exposure=positions).exposure == pytest.approx(0.4)
        assert compute_metrics(TINY, [], Timeframe.D1, exposure=0.3).exposure == 0.3
        with pytest.raises(ValidationError):
            compute_metrics(TINY, [], Timeframe.D1, exposure=1.5)

    def test_turnover(self) -> None:
        # two trades: entry 100×1 + exits 130×1 and 90×1 → notional 100 + 130 + 100 + 90 = 420
        m = compute_metrics(TINY, [trade(30.0), trade(-10.0)], Timeframe.D1)
        assert m.traded_notional == pytest.approx(420.0)
        mean_equity = float(TINY.mean())  # (100+110+99+123.75+99+103.95+103.95)/7 = 105.664286
        assert m.turnover == pytest.approx(420.0 / mean_equity)
        assert m.annual_turnover == pytest.approx(420.0 / mean_equity / (6 / 365))
        given = compute_metrics(TINY, [], Timeframe.D1, traded_notional=1000.0)
        assert given.traded_notional == 1000.0


class TestRuinAndValidation:
    def test_total_loss_is_reported_not_hidden(self) -> None:
        m = compute_metrics(daily_curve([100.0, 50.0, 0.0, 0.0]), [], Timeframe.D1)
        assert m.total_return == -1.0
        assert m.annual_return == -1.0
        assert m.max_drawdown == 1.0
        assert m.max_drawdown_bars == 3  # from the peak at bar 0 to the last bar 3: never recovered
        json.dumps(m.to_dict(), allow_nan=False)

    @pytest.mark.parametrize(
        "curve",
        [
            pd.Series([], dtype=float),
            daily_curve([100.0, float("nan"), 101.0]),
            daily_curve([0.0, 1.0]),
            pd.Series([100.0, 101.0], index=pd.Index([DAY_MS, 0], dtype=np.int64)),
            pd.Series([100.0, 101.0], index=pd.DatetimeIndex(["2024-01-01", "2024-01-02"])),
        ],
    )
    def test_bad_curves_are_rejected(self, curve: pd.Series) -> None:
        with pytest.raises(ValidationError):
            compute_metrics(curve, [], Timeframe.D1)


def test_hourly_bars_annualise_with_8760_periods() -> None:
    curve = pd.Series([100.0, 101.0, 100.0], index=pd.Index([0, HOUR_MS, 2 * HOUR_MS], dtype=np.int64))
    m = compute_metrics(curve, [], Timeframe.H1)
    assert m.periods_per_year == 8760.0
    r = np.array([0.01, 100.0 / 101.0 - 1.0])
    assert m.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(8760))


class TestMonthly:
    # month ends: Nov 110, Dec 99, Jan 118.8, (no February bars), Mar 106.92; start 100
    CURVE = pd.Series(
        [100.0, 110.0, 90.0, 99.0, 120.0, 118.8, 106.92],
        index=pd.Index(
            [
                ts("2023-11-20T00:00Z"),
                ts("2023-11-30T23:00Z"),
                ts("2023-12-15T00:00Z"),
                ts("2023-12-31T23:00Z"),  # last hour of 2023 UTC: still December
                ts("2024-01-01T00:00Z"),  # first instant of 2024 UTC: January
                ts("2024-01-31T00:00Z"),
                ts("2024-03-05T00:00Z"),
            ],
            dtype=np.int64,
        ),
    )

    def test_records_across_a_year_boundary(self) -> None:
        records = monthly_returns(self.CURVE).to_records()
        assert [r["month"] for r in records] == ["2023-11", "2023-12", "2024-01", "2024-03"]
        # Nov 110/100 - 1 = 0.10; Dec 99/110 - 1 = -0.10; Jan 118.8/99 - 1 = 0.20; Mar 106.92/118.8 - 1 = -0.10
        assert [r["return"] for r in records] == pytest.approx([0.10, -0.10, 0.20, -0.10])
        json.dumps(records, allow_nan=False)

    def test_table_with_yearly_column(self) -> None:
        table = monthly_returns(self.CURVE).table()
        assert list(table.index) == [2023, 2024]
        assert list(table.columns)[-1] == "Year" and len(table.columns) == 13
        assert table.loc[2023, "Nov"] == pytest.approx(0.10)
        assert table.loc[2024, "Jan"] == pytest.approx(0.20)
        assert table["Feb"].isna().tolist() == [True, True]  # no February bars in either year
        assert table.isna().to_numpy()[0].tolist() == [True] * 10 + [False] * 3  # 2023: only Nov, Dec and Year
        # 2023: 1.1 × 0.9 - 1 = -0.01 (= 99 / 100 - 1); 2024: 1.2 × 0.9 - 1 = 0.08 (= 106.92 / 99 - 1)
        assert table.loc[2023, "Year"] == pytest.approx(-0.01)
        assert table.loc[2024, "Year"] == pytest.approx(0.08)


class TestDeflatedSharpe:
    def test_psr_by_hand(self) -> None:
        # SR = 0.1 per period, n = 101, normal returns (skew 0, kurtosis 3):
        # z = 0.1 * sqrt(100) / sqrt(1 - 0 + (3 - 1)/4 * 0.01) = 1 / sqrt(1.005) = 0.9975093
        # Φ(0.9975093) = 0.840741
        psr = probabilistic_sharpe_ratio(0.1, 101, 0.0, 3.0)
        assert psr == pytest.approx(NormalDist().cdf(1 / math.sqrt(1.005)))
        assert psr == pytest.approx(0.840741, abs=1e-6)
        # negative skew and fat tails widen the uncertainty: a lower probability for the same SR
        assert probabilistic_sharpe_ratio(0.1, 101, -2.0, 9.0) < psr

    def test_paper_numerical_example(self) -> None:
        # Bailey & López de Prado (2014), numerical example: best of N = 100 trials, annualised SR 2.5 on
        # T = 1250 daily returns, variance of the trials' annualised SR 0.5, skew -3, kurtosis 10 → DSR ≈ 0.9004.
        ppy = 250
        sr = per_period_sharpe(2.5, ppy)  # 2.5 / sqrt(250) = 0.158114
        variance = 0.5 / ppy
        # E[max SR] = sqrt(0.002) × (0.42278 × Φ⁻¹(0.99) + 0.57722 × Φ⁻¹(1 - 1/(100e)))
        #           = 0.044721 × (0.42278 × 2.326348 + 0.57722 × 2.680144) = 0.044721 × 2.530578 = 0.113172
        assert expected_max_sharpe(100, variance) == pytest.approx(0.113172, abs=1e-6)
        dsr = deflated_sharpe_ratio(sr, 1250, -3.0, 10.0, n_trials=100, sharpe_variance=variance)
        assert dsr == pytest.approx(0.9004, abs=5e-5)

    def test_dsr_falls_as_more_configurations_are_tried(self) -> None:
        args = (0.08, 1000, -0.5, 5.0)
        values = [deflated_sharpe_ratio(*args, n_trials=n, sharpe_variance=0.001) for n in (1, 2, 10, 100, 1000)]
        assert all(a > b for a, b in itertools.pairwise(values))
        assert values[0] == pytest.approx(probabilistic_sharpe_ratio(*args))  # one trial: nothing to deflate

    def test_return_moments_by_hand(self) -> None:
        # r = [0, 0, 0, 1]: mean 0.25; centred -0.25 ×3, 0.75
        # m2 = (3×0.0625 + 0.5625)/4 = 0.1875; m3 = (3×(-0.015625) + 0.421875)/4 = 0.09375
        # m4 = (3×0.00390625 + 0.31640625)/4 = 0.08203125
        # skew = 0.09375 / 0.1875^1.5 = 1.154701; kurtosis = 0.08203125 / 0.1875^2 = 2.333333
        # Sharpe = 0.25 / std(ddof=1) = 0.25 / sqrt(0.75/3) = 0.5
        m = return_moments(np.array([0.0, 0.0, 0.0, 1.0]))
        assert m.n_obs == 4
        assert m.sharpe == pytest.approx(0.5)
        assert m.skewness == pytest.approx(1.154701, rel=1e-6)
        assert m.kurtosis == pytest.approx(7 / 3)
        assert return_moments(np.ones(5)).sharpe is None

    def test_from_returns_matches_the_formula(self) -> None:
        rng = np.random.default_rng(7)
        r = rng.normal(0.001, 0.01, 500)
        m = return_moments(r)
        assert m.sharpe is not None and m.skewness is not None and m.kurtosis is not None
        expected = deflated_sharpe_ratio(m.sharpe, 500, m.skewness, m.kurtosis, n_trials=20, sharpe_variance=0.002)
        assert deflated_sharpe_from_returns(r, n_trials=20, sharpe_variance=0.002) == pytest.approx(expected)

    def test_invalid_inputs(self) -> None:
        with pytest.raises(ValueError):
            expected_max_sharpe(0, 0.1)
        with pytest.raises(ValueError):
            probabilistic_sharpe_ratio(0.1, 1, 0.0, 3.0)
        with pytest.raises(ValueError):
            probabilistic_sharpe_ratio(2.0, 100, 3.0, 3.0)  # 1 - 6 + 2 = -3: outside the formula's domain


@pytest.mark.filterwarnings("ignore:DatetimeIndex.dayofweek is deprecated")  # inside backtesting.py
def test_matches_backtesting_py_where_definitions_coincide(shared_data: Path) -> None:
    """Peer check: run backtesting.py on real candles, feed its equity curve and trades to our metrics."""
    pytest.importorskip("backtesting")
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    raw = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz").iloc[-2000:]
    data = pd.DataFrame(
        {"Open": raw.open.values, "High": raw.high.values, "Low": raw.low.values, "Close": raw.close.values,
         "Volume": raw.volume.values},
        index=pd.to_datetime(raw.ts.values, unit="ms"),
    )  # fmt: skip

    class SmaCross(Strategy):
        def init(self) -> None:
            close = pd.Series(self.data.Close)
            self.fast = self.I(lambda: close.rolling(24).mean().to_numpy())
            self.slow = self.I(lambda: close.rolling(96).mean().to_numpy())

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.position.close()
                self.buy(size=0.5)
            elif crossover(self.slow, self.fast):
                self.position.close()
                self.sell(size=0.5)

    bt = Backtest(data, SmaCross, cash=1_000_000, commission=0.001, finalize_trades=True)
    stats = bt.run()
    eq = stats._equity_curve["Equity"]
    equity = pd.Series(eq.to_numpy(), index=pd.Index(eq.index.to_numpy().astype("datetime64[ms]").astype(np.int64)))
    trades = [
        Trade(
            symbol="BTCUSDT",
            side="long" if row.Size > 0 else "short",
            entry_ts=int(pd.Timestamp(row.EntryTime).value // 1_000_000),
            exit_ts=int(pd.Timestamp(row.ExitTime).value // 1_000_000),
            entry_price=float(row.EntryPrice),
            exit_price=float(row.ExitPrice),
            quantity=float(abs(row.Size)),
            pnl=float(row.PnL),
            fees=float(row.Commission),
        )
        for row in stats._trades.itertuples()
    ]
    m = compute_metrics(equity, trades, Timeframe.H1)
    assert m.num_trades == stats["# Trades"] > 5
    assert m.total_return * 100 == pytest.approx(stats["Return [%]"], rel=1e-9)
    assert m.end_equity == pytest.approx(stats["Equity Final [$]"], rel=1e-12)
    # backtesting.py reports drawdown as a negative percentage
    assert m.max_drawdown * 100 == pytest.approx(-stats["Max. Drawdown [%]"], rel=1e-9)
    assert m.max_drawdown_ms == stats["Max. Drawdown Duration"].value // 1_000_000
    assert m.win_rate is not None and m.win_rate * 100 == pytest.approx(stats["Win Rate [%]"])
    # both define a trade's return as net P&L over the entry notional
    assert m.expectancy_return is not None
    assert m.expectancy_return * 100 == pytest.approx(stats["Expectancy [%]"], rel=1e-9)
    assert m.best_trade_return is not None and m.worst_trade_return is not None
    assert m.best_trade_return * 100 == pytest.approx(stats["Best Trade [%]"], rel=1e-9)
    assert m.worst_trade_return * 100 == pytest.approx(stats["Worst Trade [%]"], rel=1e-9)
