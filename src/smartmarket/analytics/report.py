"""One HTML evaluation report per backtest.

plotly.js (4.8 MB) is written once beside the reports (``plotly-<version>.min.js``) and each report loads it
by relative path, so a report is small and the folder opens offline; ``inline=True`` embeds it instead for a
single self-contained file (the API's in-memory reports are inline). The report holds: a metrics table, the
price chart with trade entries and exits, equity and drawdown, a monthly-return heatmap, the trade P&L
distribution and the run's provenance. The output is a pure function of the inputs: fixed div ids, no
clock, no random ids, so the same run written twice gives byte-identical files.

Long series are thinned for drawing only (metrics are always computed on every bar): each bucket of bars keeps
its first, last, lowest and highest point, so peaks, troughs and the deepest drawdown stay visible.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs, get_plotlyjs_version
from plotly.subplots import make_subplots

from smartmarket.analytics.metrics import Metrics, drawdown_series, validate_equity
from smartmarket.analytics.monthly import MONTH_NAMES, YEAR_COLUMN, MonthlyReturns
from smartmarket.core.timeutil import format_ms
from smartmarket.core.trading import Trade

CANDLE_LIMIT = 3_000  # draw candlesticks up to this many bars, a close line beyond
MAX_LINE_POINTS = 8_000  # thin longer lines to about this many points
PLOTLY_LIBRARY_ID = "plotly-library"  # id of the <script> holding (or loading) plotly.js
PLOTLY_FILE = f"plotly-{get_plotlyjs_version()}.min.js"  # the shared copy beside non-inline reports

GREEN, RED, BLUE, GREY = "#15803d", "#b91c1c", "#1d4ed8", "#6b7280"
LONG_COLOR, SHORT_COLOR = "#2563eb", "#f59e0b"
CONNECTOR_LIMIT = 300  # join entry and exit with a line up to this many trades
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}

# (key, label, format) per group; formats: pct (signed), frac (unsigned percent), ratio, prob, money, int,
# duration, date
_METRIC_GROUPS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    (
        "Returns",
        (
            ("total_return", "Total return", "pct"),
            ("annual_return", "Annual return (CAGR)", "pct"),
            ("start_equity", "Start equity", "money"),
            ("end_equity", "End equity", "money"),
            ("start_ts", "First bar", "date"),
            ("end_ts", "Last bar", "date"),
            ("num_bars", "Bars", "int"),
        ),
    ),
    (
        "Risk",
        (
            ("volatility", "Volatility (annual)", "frac"),
            ("sharpe", "Sharpe (annual)", "ratio"),
            ("sortino", "Sortino (annual)", "ratio"),
            ("calmar", "Calmar", "ratio"),
            ("probabilistic_sharpe", "P(Sharpe > 0)", "prob"),
            ("max_drawdown", "Max drawdown", "frac"),
            ("max_drawdown_ms", "Longest drawdown", "duration"),
            ("max_drawdown_bars", "Longest drawdown (bars)", "int"),
        ),
    ),
    (
        "Trades",
        (
            ("num_trades", "Trades", "int"),
            ("win_rate", "Win rate", "frac"),
            ("profit_factor", "Profit factor", "ratio"),
            ("expectancy", "Expectancy per trade", "money"),
            ("expectancy_return", "Expectancy per trade (return)", "pct"),
            ("avg_win", "Average win", "money"),
            ("avg_loss", "Average loss", "money"),
            ("best_trade_return", "Best trade", "pct"),
            ("worst_trade_return", "Worst trade", "pct"),
        ),
    ),
    (
        "Activity",
        (
            ("exposure", "Exposure (time in market)", "frac"),
            ("total_fees", "Fees paid", "money"),
            ("traded_notional", "Traded notional", "money"),
            ("turnover", "Turnover (× mean equity)", "ratio"),
            ("annual_turnover", "Turnover per year", "ratio"),
        ),
    ),
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f8fafc;color:#0f172a}
main{max-width:1300px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:0 0 12px}
.sub{color:#475569;margin:0 0 20px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:16px 20px;margin:0 0 20px}
.groups{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:16px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #f1f5f9;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
h3{font-size:13px;text-transform:uppercase;letter-spacing:.05em;color:#64748b;margin:0 0 6px}
pre{margin:0;font-size:13px;white-space:pre-wrap;word-break:break-all}
.neg{color:#b91c1c}.pos{color:#15803d}
"""


def render_report(
    *,
    title: str,
    prices: pd.DataFrame,
    trades: Sequence[Trade],
    equity: pd.Series,
    metrics: Metrics,
    monthly: MonthlyReturns,
    provenance: Mapping[str, Any],
    library_src: str | None = None,
) -> str:
    """The report as one HTML string (see ``write_report``): plotly.js inline, or loaded from ``library_src``."""
    curve = validate_equity(equity)
    sections = [
        _section("metrics", "Metrics", _metrics_html(metrics)),
        _section("price", "Price and trades", _figure_html(price_figure(prices, trades), "fig-price")),
        _section("equity", "Equity and drawdown", _figure_html(equity_figure(curve), "fig-equity")),
        _section("monthly", "Monthly returns", _figure_html(monthly_heatmap(monthly), "fig-monthly")),
        _section("pnl", "Trade P&L distribution", _figure_html(pnl_histogram(trades), "fig-pnl")),
        _section("provenance", "Provenance", _provenance_html(provenance)),
    ]
    subtitle = _data_range_text(prices)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_CSS}</style>",
            f'<script type="text/javascript" id="{PLOTLY_LIBRARY_ID}">{get_plotlyjs()}</script>'
            if library_src is None
            else f'<script type="text/javascript" id="{PLOTLY_LIBRARY_ID}" src="{html.escape(library_src)}"></script>',
            "</head>",
            "<body><main>",
            f"<h1>{html.escape(title)}</h1>",
            f'<p class="sub">{html.escape(subtitle)}</p>',
            *sections,
            "</main></body>",
            "</html>",
            "",
        ]
    )


def write_report(
    path: Path,
    *,
    title: str,
    prices: pd.DataFrame,
    trades: Sequence[Trade],
    equity: pd.Series,
    metrics: Metrics,
    monthly: MonthlyReturns,
    provenance: Mapping[str, Any],
    inline: bool = False,
) -> Path:
    """Write the HTML report to ``path`` (parents created) and return the path.

    plotly.js goes once into ``PLOTLY_FILE`` beside it (rewritten only when missing or different), loaded by
    relative path; ``inline=True`` embeds it instead (one self-contained file of about 5 MB).

    ``prices`` is a candle frame, ``equity`` the curve the metrics came from, ``provenance`` what makes the
    run reproducible (data range and checksum, strategy and parameters, fees, code version), shown verbatim.
    """
    text = render_report(
        title=title,
        prices=prices,
        trades=trades,
        equity=equity,
        metrics=metrics,
        monthly=monthly,
        provenance=provenance,
        library_src=None if inline else PLOTLY_FILE,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not inline:
        write_plotly_library(path.parent)
    path.write_bytes(text.encode("utf-8"))
    return path


def write_plotly_library(folder: Path) -> Path:
    """``folder/PLOTLY_FILE``, written when missing or different (an interrupted write never leaves it short)."""
    target = Path(folder) / PLOTLY_FILE
    data = get_plotlyjs().encode("utf-8")
    if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
        return target
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    partial.replace(target)
    return target


# ---------------------------------------------------------------------------------------------- figures


def price_figure(prices: pd.DataFrame, trades: Sequence[Trade]) -> go.Figure:
    """Candles (or a thinned close line for long series) with long/short entry and exit markers."""
    fig = go.Figure()
    n = len(prices)
    ts = prices["ts"].to_numpy(dtype=np.int64) if n else np.empty(0, dtype=np.int64)
    if 0 < n <= CANDLE_LIMIT:
        fig.add_trace(
            go.Candlestick(
                x=_iso(ts),
                open=prices["open"].to_numpy(dtype=np.float64),
                high=prices["high"].to_numpy(dtype=np.float64),
                low=prices["low"].to_numpy(dtype=np.float64),
                close=prices["close"].to_numpy(dtype=np.float64),
                name="Price",
                increasing={"line": {"color": "#059669"}},
                decreasing={"line": {"color": "#dc2626"}},
            )
        )
    elif n > CANDLE_LIMIT:
        close = prices["close"].to_numpy(dtype=np.float64)
        keep = thin_indices(close, MAX_LINE_POINTS)
        label = "Close" if len(keep) == n else f"Close ({len(keep):,} of {n:,} bars drawn)"
        fig.add_trace(go.Scatter(x=_iso(ts[keep]), y=close[keep], mode="lines", name=label, line={"color": GREY}))
    else:
        _note(fig, "No price data")
    _add_trade_markers(fig, trades)
    fig.update_layout(
        height=520,
        xaxis={"rangeslider": {"visible": False}, "title": "Time (UTC)"},
        yaxis={"title": "Price"},
    )
    return _styled(fig)


def _add_trade_markers(fig: go.Figure, trades: Sequence[Trade]) -> None:
    """Entries as triangles pointing the trade's way, exits as crosses, a dotted line joining each pair.
    Long trades blue, short trades orange: colours apart from the green/red candles."""
    many = len(trades) > 150  # many trades: smaller, see-through markers so the price stays visible
    size, opacity = (6, 0.75) if many else (12, 1.0)
    for side, entry_symbol, color in (("long", "triangle-up", LONG_COLOR), ("short", "triangle-down", SHORT_COLOR)):
        chosen = [t for t in trades if t.side == side]
        if not chosen:
            continue
        # Hover from numbers (P&L, return) through a template: per-trade strings doubled a report's size.
        outcome = np.array([[t.pnl, t.return_pct] for t in chosen], dtype=np.float64)
        reasons = [html.escape(t.exit_reason) for t in chosen]
        label = f"{side} {html.escape(chosen[0].symbol)}"
        result = "net P&L %{customdata[0]:,.2f} (%{customdata[1]:+.2%})"
        if len(trades) <= CONNECTOR_LIMIT:
            xs: list[str | None] = []
            ys: list[float | None] = []
            for t in chosen:
                xs += [*_iso(np.array([t.entry_ts, t.exit_ts], dtype=np.int64)), None]
                ys += [t.entry_price, t.exit_price, None]
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    line={"color": color, "width": 1.5, "dash": "dot"},
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
        for kind, symbol, ts, price, hover in (
            ("entry", entry_symbol, [t.entry_ts for t in chosen], [t.entry_price for t in chosen], ""),
            ("exit", "x", [t.exit_ts for t in chosen], [t.exit_price for t in chosen], ", %{text}"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=_iso(np.array(ts, dtype=np.int64)),
                    y=price,
                    mode="markers",
                    name=f"{side.title()} {kind}",
                    marker={
                        "symbol": symbol,
                        "size": size,
                        "color": color,
                        "opacity": opacity,
                        "line": {"width": 0.5 if many else 1, "color": "#111827"},
                    },
                    customdata=outcome,
                    text=reasons if kind == "exit" else None,
                    hovertemplate=f"{label}<br>{kind} %{{x}} @ %{{y:,.4g}}{hover}<br>{result}<extra>{kind}</extra>",
                )
            )


def equity_figure(equity: pd.Series) -> go.Figure:
    """Equity curve above its drawdown (under-water) chart, sharing the time axis."""
    curve = validate_equity(equity)
    ts = curve.index.to_numpy(dtype=np.int64)
    values = curve.to_numpy(dtype=np.float64)
    underwater = -drawdown_series(curve).to_numpy() * 100.0
    keep = np.union1d(thin_indices(values, MAX_LINE_POINTS // 2), thin_indices(underwater, MAX_LINE_POINTS // 2))
    x = _iso(ts[keep])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.05)
    fig.add_trace(go.Scatter(x=x, y=values[keep], mode="lines", name="Equity", line={"color": BLUE}), row=1, col=1)
    fig.add_trace(
        go.Scatter(
            x=x,
            y=underwater[keep],
            mode="lines",
            name="Drawdown",
            fill="tozeroy",
            line={"color": RED, "width": 1},
            hovertemplate="%{y:.2f}%<extra>drawdown</extra>",
        ),
        row=2,
        col=1,
    )
    fig.update_yaxes(title_text="Equity", row=1, col=1)
    fig.update_yaxes(title_text="Drawdown (%)", ticksuffix="%", row=2, col=1)
    fig.update_xaxes(title_text="Time (UTC)", row=2, col=1)
    fig.update_layout(height=560, showlegend=False)
    return _styled(fig)


def monthly_heatmap(monthly: MonthlyReturns) -> go.Figure:
    """Year × month heatmap of returns in percent, with a compounded ``Year`` column."""
    fig = go.Figure()
    table = monthly.table()
    if table.empty:
        _note(fig, "No monthly returns")
        fig.update_layout(height=200)
        return _styled(fig)
    pct = table.to_numpy(dtype=np.float64) * 100.0
    z = [[None if math.isnan(v) else round(float(v), 6) for v in row] for row in pct]
    text = [["" if math.isnan(v) else f"{v:+.1f}%" for v in row] for row in pct]
    month_part = pct[:, : len(MONTH_NAMES)]
    finite = month_part[np.isfinite(month_part)]
    limit = float(np.abs(finite).max()) if finite.size else 1.0
    limit = limit if limit > 0 else 1.0
    fig.add_trace(
        go.Heatmap(
            z=z,
            x=[*MONTH_NAMES, YEAR_COLUMN],
            y=[str(year) for year in table.index],
            text=text,
            texttemplate="%{text}",
            hovertemplate="%{y} %{x}: %{text}<extra></extra>",
            colorscale="RdYlGn",
            zmid=0.0,
            zmin=-limit,
            zmax=limit,
            xgap=2,
            ygap=2,
            colorbar={"title": {"text": "%"}, "ticksuffix": "%"},
        )
    )
    _styled(fig)
    fig.update_layout(
        height=max(230, 90 + 34 * len(table)),
        yaxis={"autorange": "reversed", "type": "category"},
        margin={"t": 60, "b": 20},  # room for the month labels above the modebar-free zone
    )
    fig.update_xaxes(side="top")
    return fig


def pnl_histogram(trades: Sequence[Trade]) -> go.Figure:
    """Histogram of net return per trade (%), winners and losers coloured apart on shared bins."""
    fig = go.Figure()
    if not trades:
        _note(fig, "No closed trades")
        fig.update_layout(height=240)
        return _styled(fig)
    returns = np.array([t.return_pct for t in trades], dtype=np.float64) * 100.0
    edges = zero_aligned_bins(returns)
    centres, widths = (edges[:-1] + edges[1:]) / 2.0, np.diff(edges)
    pnl = np.array([t.pnl for t in trades], dtype=np.float64)
    for name, mask, color in (("Winning trades", pnl > 0, GREEN), ("Losing or flat trades", pnl <= 0, RED)):
        counts, _ = np.histogram(returns[mask], bins=edges)
        fig.add_trace(
            go.Bar(
                x=centres,
                y=counts,
                width=widths,
                name=name,
                marker={"color": color, "line": {"width": 0}},
                hovertemplate="%{x:.2f}%: %{y} trades<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="stack",
        bargap=0.02,
        height=380,
        xaxis={
            "title": "Net return per trade (%)",
            "ticksuffix": "%",
            "type": "linear",
            "tick0": 0,
            "dtick": _nice_step((edges[-1] - edges[0]) / 10),
        },
        yaxis={"title": "Trades", "rangemode": "tozero", "tickformat": "d", "dtick": 1 if len(trades) <= 10 else None},
    )
    return _styled(fig)


def zero_aligned_bins(values: np.ndarray) -> np.ndarray:
    """Histogram edges of equal width with 0 on an edge, so no bar mixes gains and losses.
    About ``2·sqrt(n)`` bins, between 10 and 60."""
    lo, hi = float(min(values.min(), 0.0)), float(max(values.max(), 0.0))
    if hi - lo <= 0:
        return np.array([-0.5, 0.5])
    count = min(60, max(10, round(2 * math.sqrt(len(values)))))
    width = (hi - lo) / count
    first, last = math.floor(lo / width), math.ceil(hi / width)
    first -= first * width > lo  # guard against rounding leaving the extremes outside the edges
    last += last * width < hi
    return np.arange(first, last + 1) * width


def _nice_step(raw: float) -> float:
    """Smallest of 1, 2, 5 × 10^k at or above ``raw`` (axis tick spacing)."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def thin_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Sorted indices to draw ``values`` with at most about ``max_points`` points: per bucket of bars the
    first, last, lowest and highest. All indices when the series is already short enough."""
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    size = math.ceil(n / max(1, max_points // 4))
    padded = np.full(math.ceil(n / size) * size, np.nan)
    padded[:n] = values
    rows = padded.reshape(-1, size)
    starts = np.arange(rows.shape[0]) * size
    picks = [
        starts,
        np.minimum(starts + size - 1, n - 1),
        starts + np.nanargmin(rows, axis=1),
        starts + np.nanargmax(rows, axis=1),
    ]
    return np.unique(np.concatenate(picks))


# ---------------------------------------------------------------------------------------------- html pieces


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{html.escape(heading)}</h2>\n{body}\n</section>'


def _figure_html(fig: go.Figure, div_id: str) -> str:
    return str(
        pio.to_html(
            fig,
            include_plotlyjs=False,
            full_html=False,
            div_id=div_id,
            config=_PLOT_CONFIG,
            default_height=f"{int(fig.layout.height or 450)}px",
        )
    )


def _metrics_html(metrics: Metrics) -> str:
    values = metrics.to_dict()
    groups = []
    for group, rows in _METRIC_GROUPS:
        cells = []
        for key, label, kind in rows:
            value = values.get(key)
            css = _sign_class(value) if kind == "pct" or key in _SIGNED_MONEY else ""
            cells.append(
                f'<tr><th>{html.escape(label)}</th><td class="num{css}" data-key="{key}">'
                f"{html.escape(_format(value, kind))}</td></tr>"
            )
        groups.append(f"<div><h3>{html.escape(group)}</h3><table>{''.join(cells)}</table></div>")
    note = (
        '<p class="sub">Returns are fractions of equity; Sharpe and Sortino are annualised from per-bar returns '
        "on a 365-day calendar; drawdowns are shown as positive losses from the running peak; "
        "n/a marks a value this run does not define (for example a profit factor without losing trades).</p>"
    )
    return f'<div class="groups">{"".join(groups)}</div>\n{note}'


_SIGNED_MONEY = frozenset({"expectancy", "avg_win", "avg_loss"})


def _provenance_html(provenance: Mapping[str, Any]) -> str:
    if not provenance:
        return "<p>No provenance recorded.</p>"
    rows = []
    for key, value in provenance.items():
        if isinstance(value, Mapping | list | tuple):
            shown = f"<pre>{html.escape(json.dumps(value, sort_keys=True, indent=2, default=str))}</pre>"
        else:
            shown = html.escape(str(value))
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{shown}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _data_range_text(prices: pd.DataFrame) -> str:
    if prices.empty:
        return "No price data"
    first, last = int(prices["ts"].iloc[0]), int(prices["ts"].iloc[-1])
    return f"Data: {format_ms(first)} → {format_ms(last)}, {len(prices):,} bars"


def _format(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if kind == "pct":
        return f"{value * 100:+.2f}%" if value else "0.00%"
    if kind == "frac":
        return f"{value * 100:.2f}%"
    if kind == "prob":
        return f"{value * 100:.1f}%"
    if kind == "ratio":
        return f"{value:.2f}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "date":
        return _iso(np.array([int(value)]))[0]
    if kind == "duration":
        return _duration(int(value))
    return f"{int(value):,}"


def _duration(ms: int) -> str:
    if ms <= 0:
        return "none"
    minutes = ms // 60_000
    days, rem = divmod(minutes, 1440)
    hours, mins = divmod(rem, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return " ".join(p for p in parts if p) or "<1m"


def _sign_class(value: Any) -> str:
    if isinstance(value, int | float) and value:
        return " neg" if value < 0 else " pos"
    return ""


def _iso(ts_ms: np.ndarray) -> list[str]:
    """UTC epoch ms → ``2024-01-01 13:00`` strings plotly reads as dates (deterministic, compact)."""
    text = np.datetime_as_string(np.asarray(ts_ms, dtype=np.int64).astype("datetime64[ms]"), unit="m")
    return [s.replace("T", " ") for s in text.tolist()]


def _note(fig: go.Figure, message: str) -> None:
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 16})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)


def _styled(fig: go.Figure) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0},
        hovermode="closest",
    )
    return fig


__all__ = [
    "CANDLE_LIMIT",
    "MAX_LINE_POINTS",
    "PLOTLY_FILE",
    "PLOTLY_LIBRARY_ID",
    "equity_figure",
    "monthly_heatmap",
    "pnl_histogram",
    "price_figure",
    "render_report",
    "thin_indices",
    "write_plotly_library",
    "write_report",
    "zero_aligned_bins",
]
