"""The HTML report: sections present, small (plotly.js shared beside it) or self-contained (inline),
deterministic, free of NaN/undefined text."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

from smartmarket.analytics import compute_metrics, monthly_returns, write_report
from smartmarket.analytics.report import (
    CANDLE_LIMIT,
    PLOTLY_FILE,
    PLOTLY_LIBRARY_ID,
    equity_figure,
    monthly_heatmap,
    pnl_histogram,
    price_figure,
    thin_indices,
    zero_aligned_bins,
)
from smartmarket.core.frame import as_candle_frame
from smartmarket.core.trading import PositionSide, Trade
from smartmarket.core.types import HOUR_MS, Timeframe

T0 = 1_701_388_800_000  # 2023-12-01T00:00:00Z
SECTIONS = ("metrics", "price", "equity", "monthly", "pnl", "provenance")
PROVENANCE = {
    "data": "BTCUSDT 1h 2023-12-01 → 2024-02-29",
    "checksum": "sha256:0f1e2d3c",
    "strategy": "sma_cross",
    "params": {"slow": 48, "fast": 12},
    "fees": "0.1% taker <both sides>",
    "code_version": "abc1234",
}


def candles(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    return as_candle_frame(
        pd.DataFrame(
            {
                "ts": T0 + np.arange(n, dtype=np.int64) * HOUR_MS,
                "open": open_,
                "high": np.maximum(open_, close) * 1.002,
                "low": np.minimum(open_, close) * 0.998,
                "close": close,
                "volume": np.full(n, 5.0),
            }
        )
    )


def toy_run(n: int) -> tuple[pd.DataFrame, list[Trade], pd.Series]:
    """A long then a short trade, each 1 unit, and the equity they produce bar by bar."""
    prices = candles(n)
    close = prices["close"].to_numpy()
    legs: list[tuple[PositionSide, int, int]] = [("long", n // 10, n // 3), ("short", n // 2, 4 * n // 5)]
    equity = np.full(n, 1000.0)
    trades = []
    cash = 1000.0
    for side, i, j in legs:
        sign = 1.0 if side == "long" else -1.0
        pnl = sign * (close[j] - close[i])
        equity[i : j + 1] = cash + sign * (close[i : j + 1] - close[i])
        cash += pnl
        equity[j + 1 :] = cash
        trades.append(
            Trade("BTCUSDT", side, int(prices.ts[i]), int(prices.ts[j]), close[i], close[j], 1.0, pnl, 0.0, i, j)
        )
    return prices, trades, pd.Series(equity, index=pd.Index(prices["ts"].to_numpy(), dtype=np.int64))


def write(path: Path, prices: pd.DataFrame, trades: list[Trade], equity: pd.Series, *, inline: bool = False) -> Path:
    metrics = compute_metrics(equity, trades, Timeframe.H1)
    return write_report(
        path,
        title="SMA cross <test>",
        prices=prices,
        trades=trades,
        equity=equity,
        metrics=metrics,
        monthly=monthly_returns(equity),
        provenance=PROVENANCE,
        inline=inline,
    )


def without_library(text: str) -> str:
    """The report minus the plotly.js element (an inline bundle legitimately contains 'NaN' and 'undefined')."""
    start = text.index(f'<script type="text/javascript" id="{PLOTLY_LIBRARY_ID}"')
    end = text.index("</script>", start)
    return text[:start] + text[end:]


def visible_text(text: str) -> str:
    """What a reader sees: the HTML with every script and tag removed."""
    return re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", " ", text, flags=re.S))


def bad_tokens(text: str) -> list[str]:
    """NaN / Infinity / undefined / None standing alone in the report (not inside base64 array data)."""
    body = without_library(text)
    in_code = re.findall(r"(?<![A-Za-z0-9+/])(NaN|-?Infinity|undefined)(?![A-Za-z0-9+/=])", body)
    in_text = re.findall(r"\b(NaN|nan|inf|Infinity|undefined|None|null)\b", visible_text(text))
    return in_code + in_text


def assert_finite_figure(fig: go.Figure) -> None:
    for trace in fig.data:
        for name in ("x", "y", "z", "open", "high", "low", "close"):
            values = getattr(trace, name, None)
            if values is None or isinstance(values, str):
                continue
            flat = np.asarray(values, dtype=object).ravel()
            numbers = [v for v in flat if isinstance(v, int | float | np.floating | np.integer)]
            assert np.isfinite(np.asarray(numbers, dtype=np.float64)).all(), (trace.name, name)


@pytest.fixture(scope="module")
def small_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prices, trades, equity = toy_run(2_000)  # ~83 days: December to February, candlesticks
    return write(tmp_path_factory.mktemp("report") / "a" / "report.html", prices, trades, equity)


def test_sections_and_charts_present(small_report: Path) -> None:
    text = small_report.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in text
    for div_id in ("fig-price", "fig-equity", "fig-monthly", "fig-pnl"):
        assert f'<div id="{div_id}" class="plotly-graph-div"' in text
    body = without_library(text)
    assert body.count("Plotly.newPlot(") == 4
    assert '"type":"candlestick"' in body and '"type":"heatmap"' in body
    for marker in ("Long entry", "Long exit", "Short entry", "Short exit"):
        assert f'"name":"{marker}"' in body
    assert "<title>SMA cross &lt;test&gt;</title>" in text


def test_plotly_is_shared_beside_the_reports(small_report: Path) -> None:
    text = small_report.read_text(encoding="utf-8")
    assert f'id="{PLOTLY_LIBRARY_ID}" src="{PLOTLY_FILE}"></script>' in text  # relative: the folder opens offline
    assert "cdn.plot.ly" not in text and len(text) < 1_000_000
    library = small_report.with_name(PLOTLY_FILE)
    assert library.read_text(encoding="utf-8") == get_plotlyjs()
    written = library.stat().st_mtime_ns
    prices, trades, equity = toy_run(300)
    write(small_report.with_name("second.html"), prices, trades, equity)
    assert library.stat().st_mtime_ns == written  # one copy for the folder, not rewritten per report
    library.write_text("truncated", encoding="utf-8")
    write(small_report.with_name("third.html"), prices, trades, equity)
    assert library.read_text(encoding="utf-8") == get_plotlyjs()  # a damaged copy is replaced


def test_inline_is_self_contained(tmp_path: Path) -> None:
    prices, trades, equity = toy_run(300)
    text = write(tmp_path / "inline.html", prices, trades, equity, inline=True).read_text(encoding="utf-8")
    assert "<script src=" not in text and "cdn.plot.ly" not in without_library(text)
    start = text.index(f'id="{PLOTLY_LIBRARY_ID}">')
    assert len(text[start : text.index("</script>", start)]) > 1_000_000  # plotly.js inlined
    assert not (tmp_path / PLOTLY_FILE).exists()


def test_metrics_and_provenance_shown(small_report: Path) -> None:
    text = small_report.read_text(encoding="utf-8")
    assert re.search(r'data-key="num_trades">2<', text)
    assert re.search(r'data-key="max_drawdown">\d+\.\d\d%<', text)
    assert "sha256:0f1e2d3c" in text and "abc1234" in text
    assert "0.1% taker &lt;both sides&gt;" in text  # escaped, never raw HTML
    assert "&quot;fast&quot;: 12" in text  # parameters as sorted JSON
    assert text.index("&quot;fast&quot;") < text.index("&quot;slow&quot;")
    # monthly heatmap covers the three calendar months across the year boundary
    assert '"y":["2023","2024"]' in without_library(text)


def test_no_nan_or_undefined_text(small_report: Path) -> None:
    assert bad_tokens(small_report.read_text(encoding="utf-8")) == []
    prices, trades, equity = toy_run(2_000)
    for fig in (
        price_figure(prices, trades),
        equity_figure(equity),
        monthly_heatmap(monthly_returns(equity)),
        pnl_histogram(trades),
    ):
        assert_finite_figure(fig)


def test_byte_identical_when_written_twice(small_report: Path, tmp_path: Path) -> None:
    prices, trades, equity = toy_run(2_000)
    again = write(tmp_path / "report.html", prices, trades, equity)
    assert again.read_bytes() == small_report.read_bytes()


def test_degenerate_run_still_clean(tmp_path: Path) -> None:
    """No trades, flat equity: Sharpe, profit factor… are undefined and shown as n/a, not NaN."""
    prices = candles(50)
    equity = pd.Series(np.full(50, 1000.0), index=pd.Index(prices["ts"].to_numpy(), dtype=np.int64))
    text = write(tmp_path / "flat.html", prices, [], equity).read_text(encoding="utf-8")
    assert re.search(r'data-key="sharpe">n/a<', text)
    assert re.search(r'data-key="profit_factor">n/a<', text)
    assert "No closed trades" in text
    assert bad_tokens(text) == []


def test_long_series_drawn_as_thinned_line() -> None:
    prices, trades, _ = toy_run(60_000)
    fig = price_figure(prices, trades)
    line = fig.data[0]
    assert line.type == "scatter" and line.mode == "lines"
    assert len(line.x) < 10_000  # thinned for drawing
    close = prices["close"].to_numpy()
    assert max(line.y) == close.max() and min(line.y) == close.min()  # extremes survive thinning
    assert len(prices) > CANDLE_LIMIT


def test_real_data_report_deterministic(shared_data: Path, tmp_path: Path) -> None:
    """64k real hourly candles with gaps: the report renders, thinned, and twice gives the same bytes."""
    raw = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz")
    prices = as_candle_frame(raw)
    close = prices["close"].to_numpy()
    # buy-and-hold one unit from the first bar: equity = 10,000 + (close - close[0])
    equity = pd.Series(10_000.0 + close - close[0], index=pd.Index(prices["ts"].to_numpy(), dtype=np.int64))
    hold = [
        Trade("BTCUSDT", "long", int(prices.ts.iloc[0]), int(prices.ts.iloc[-1]), close[0], close[-1], 1.0,
              close[-1] - close[0], 0.0)
    ]  # fmt: skip
    first = write(tmp_path / "one.html", prices, hold, equity)
    second = write(tmp_path / "two.html", prices, hold, equity)
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text(encoding="utf-8")
    assert f"of {len(prices):,} bars drawn" in text
    assert bad_tokens(text) == []
    assert first.stat().st_size < 1_000_000  # plotly.js (4.8 MB) is beside it, not inside


def test_thin_indices_keeps_each_bucket_extremes() -> None:
    values = np.sin(np.linspace(0, 50, 100_001))
    values[77_777] = 5.0  # a lone spike must survive
    keep = thin_indices(values, 2_000)
    assert len(keep) <= 2_100
    assert keep[0] == 0 and keep[-1] == len(values) - 1
    assert 77_777 in keep
    assert np.all(np.diff(keep) > 0)
    assert list(thin_indices(np.arange(10.0), 100)) == list(range(10))


def test_histogram_bins_never_straddle_zero() -> None:
    values = np.array([-2.03, -1.0, 0.4, 3.3, 38.5])
    edges = zero_aligned_bins(values)
    assert edges[0] <= values.min() and edges[-1] >= values.max()
    assert np.any(np.isclose(edges, 0.0))
    assert np.allclose(np.diff(edges), edges[1] - edges[0])
    counts, _ = np.histogram(values, bins=edges)
    assert counts.sum() == len(values)
