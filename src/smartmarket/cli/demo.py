"""``smartmarket demo``: the main job, end to end on the embedded store. Later stages extend it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from smartmarket.cli.context import AppContext, console, get_context
from smartmarket.core.timeutil import format_ms
from smartmarket.core.types import Timeframe
from smartmarket.data.ingest import IngestReport, ingest_file, ingest_frame
from smartmarket.data.synthetic import generate_market

DEMO_START_TS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def _candle_table(title: str, frame: pd.DataFrame) -> Table:
    table = Table(title=title)
    for col in ("time (UTC)", "open", "high", "low", "close", "volume"):
        table.add_column(col, justify="right", no_wrap=True)
    for ts, *values in frame[["ts", "open", "high", "low", "close", "volume"]].itertuples(index=False):
        table.add_row(format_ms(int(ts), short=True), *(f"{v:,.2f}" for v in values))
    return table


def _stage(n: int, text: str) -> None:
    console.rule(f"[bold]stage {n}[/] · {text}")


def stage_data(app_ctx: AppContext, data: Path | None, rows: int, seed: int) -> IngestReport:
    settings, store = app_ctx.settings, app_ctx.store
    if data is not None:
        return ingest_file(store, data, quarantine_dir=settings.quarantine_dir)
    frame = generate_market(rows, timeframe=Timeframe.M1, seed=seed, start_ts=DEMO_START_TS)
    return ingest_frame(
        store,
        "DEMOBTC",
        Timeframe.M1,
        frame,
        source=f"synthetic:seed={seed}",
        quarantine_dir=settings.quarantine_dir,
        synthetic=True,
    )


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        ctx: typer.Context,
        data: Annotated[
            Path | None, typer.Option("--data", exists=True, dir_okay=False, help="Ingest this candle file instead.")
        ] = None,
        rows: Annotated[int, typer.Option("--rows", min=1_000, help="Synthetic 1m candles to generate.")] = 100_000,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic market.")] = 42,
    ) -> None:
        """Run SmartMarket end to end on the embedded store: data → store → queries and resampling.

        Without --data it generates a reproducible synthetic 1m market (marked synthetic in the store).

        Example: smartmarket demo --data ../shared/data/BTCUSDT-1h.csv.gz
        """
        app_ctx = get_context(ctx)
        store = app_ctx.store
        console.print(f"SMARTMARKET_HOME = {app_ctx.settings.home}\nstore = {store.url}")

        _stage(1, "ingest candles" if data else "generate a synthetic market")
        t0 = time.perf_counter()
        report = stage_data(app_ctx, data, rows, seed)
        console.print(
            f"{report.symbol} {report.timeframe}: read {report.rows_read:,}, inserted {report.inserted:,}, "
            f"unchanged {report.unchanged:,}, quarantined {report.quarantined:,}, gaps {len(report.gaps)} "
            f"({time.perf_counter() - t0:.2f} s)"
        )

        _stage(2, "query and resample")
        symbol, tf = report.symbol, report.timeframe
        console.print(_candle_table(f"latest 5 {symbol} {tf} candles", store.latest(symbol, tf, 5)))
        for target in (Timeframe.H4, Timeframe.D1):
            if target.ms <= tf.ms:
                continue
            t0 = time.perf_counter()
            resampled = store.read_candles(symbol, target)
            took = (time.perf_counter() - t0) * 1000
            console.print(
                _candle_table(
                    f"{symbol} {tf} → {target}: {len(resampled):,} complete candles in {took:.1f} ms (last 3)",
                    resampled.tail(3),
                )
            )

        _stage(3, "summary")
        table = Table(title="stored series")
        for col in ("symbol", "timeframe", "candles", "first", "last", "synthetic"):
            table.add_column(col)
        for info in store.list_series():
            table.add_row(
                info.symbol,
                str(info.timeframe),
                f"{info.count:,}",
                format_ms(info.first_ts, short=True),
                format_ms(info.last_ts, short=True),
                "yes" if info.synthetic else "no",
            )
        console.print(table)
