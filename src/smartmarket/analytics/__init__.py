"""Analytics: metrics that never flatter, monthly returns, deflated Sharpe, and the HTML evaluation report.

Everything is computed from a real equity curve (int64 UTC ms index, one value per bar close) and the real
closed trades; see ``metrics`` for units and conventions.
"""

from smartmarket.analytics.deflated import (
    ReturnMoments,
    deflated_sharpe_from_returns,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    per_period_sharpe,
    probabilistic_sharpe_ratio,
    return_moments,
)
from smartmarket.analytics.metrics import (
    Metrics,
    bar_returns,
    compute_metrics,
    drawdown_series,
    max_drawdown_duration,
    periods_per_year,
)
from smartmarket.analytics.monthly import MonthlyReturns, monthly_returns
from smartmarket.analytics.report import render_report, write_report

__all__ = [
    "Metrics",
    "MonthlyReturns",
    "ReturnMoments",
    "bar_returns",
    "compute_metrics",
    "deflated_sharpe_from_returns",
    "deflated_sharpe_ratio",
    "drawdown_series",
    "expected_max_sharpe",
    "max_drawdown_duration",
    "monthly_returns",
    "per_period_sharpe",
    "periods_per_year",
    "probabilistic_sharpe_ratio",
    "render_report",
    "return_moments",
    "write_report",
]
