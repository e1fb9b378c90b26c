"""``smartmarket generate``: a reproducible synthetic market, stored and marked synthetic."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from smartmarket.cli import grammar
from smartmarket.cli.context import console, get_context, shown_url
from smartmarket.core.errors import ConfigError
from smartmarket.core.timeutil import format_ms, parse_time
from smartmarket.core.types import Timeframe, normalize_symbol

if TYPE_CHECKING:
    import numpy as np


def _regime_shares(regimes: np.ndarray) -> str:
    import numpy as np

    from smartmarket.data.synthetic import Regime

    counts = np.bincount(regimes, minlength=len(Regime))
    total = max(int(counts.sum()), 1)
    return ", ".join(f"{r.name.lower().replace('_', ' ')} {grammar.pct(counts[r] / total, digits=0)}" for r in Regime)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command("generate")
    def generate(
        ctx: typer.Context,
        symbol: Annotated[str, typer.Option("--symbol", "-s", help="Symbol to store the market under.")] = "SYN",
        timeframe: Annotated[str, typer.Option("--timeframe", "-t", help="Candle timeframe, e.g. 1m, 1h, 1d.")] = "1m",
        rows: Annotated[int, typer.Option("--rows", min=1, help="Number of candles to generate.")] = 100_000,
        seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed gives the same market.")] = 0,
        start: Annotated[str, typer.Option("--start", help="Open time of the first candle (UTC).")] = "2024-01-01",
        start_price: Annotated[float, typer.Option("--start-price", min=0.0, help="First open price.")] = 30000.0,
    ) -> None:
        """Generate a synthetic market (trends, ranges, volatility clusters, jumps) and store it as synthetic.

        Example: smartmarket generate --symbol SYN --timeframe 1m --rows 1000000 --seed 7 --start 2024-01-01
        """
        from smartmarket.data.ingest import ingest_frame
        from smartmarket.data.synthetic import simulate_market

        app_ctx = get_context(ctx)
        tf = Timeframe.parse(timeframe)
        sym = normalize_symbol(symbol)
        start_ts = parse_time(start)
        if start_ts is None:
            raise ConfigError("--start is empty", hint="give a date such as 2024-01-01")

        t0 = time.perf_counter()
        market = simulate_market(rows, timeframe=tf, seed=seed, start_ts=start_ts, start_price=start_price)
        generated_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = ingest_frame(
            app_ctx.store,
            sym,
            tf,
            market.candles,
            source=f"synthetic:seed={seed}",
            quarantine_dir=app_ctx.settings.quarantine_dir,
            synthetic=True,
        )
        stored_s = time.perf_counter() - t0

        closes = market.candles["close"]
        first, last = report.first_ts, report.last_ts
        span = f"{format_ms(first)} → {format_ms(last)}" if first is not None and last is not None else "-"
        console.print(
            f"{sym} {tf} (synthetic, seed {seed}): {rows:,} candles {span}\n"
            f"  stored in {shown_url(app_ctx.store.url)}: {report.inserted:,} inserted, "
            f"{report.unchanged:,} unchanged, {report.quarantined:,} quarantined\n"
            f"  close {closes.iloc[0]:,.2f} → {closes.iloc[-1]:,.2f} "
            f"(min {closes.min():,.2f}, max {closes.max():,.2f})\n"
            f"  regimes: {_regime_shares(market.regimes)}\n"
            f"  generated in {generated_s:.2f} s, stored in {stored_s:.2f} s",
            highlight=False,
        )


__all__ = ["register"]
