"""``smartmarket ingest``: load candle files (or an exchange's history) into the store, with a summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from smartmarket.cli import grammar
from smartmarket.cli.context import console, err_console, get_context, task
from smartmarket.core.errors import ConfigError
from smartmarket.core.timeutil import format_ms, parse_time
from smartmarket.core.types import Timeframe
from smartmarket.data.formats import FORMATS

if TYPE_CHECKING:
    from smartmarket.data.ingest import IngestReport

QUARANTINE_EXIT_CODE = 3

HELP = """Load candles into the store: validate every row, quarantine bad ones, report gaps.

Files: generic CSV/CSV.gz/Parquet (ts,open,high,low,close,volume), Binance kline CSV, freqtrade JSON.
Symbol and timeframe come from the file name (BTCUSDT-1h.csv.gz) unless given.
CSV is read as plain numbers: a quote, a wrong field count, an impossible time (before 2009-01-03 or after
now + 1 day) quarantines that row alone, with its file line. Every data line is stored, quarantined or blank.
Exits with code 3 when rows were quarantined, unless --allow-quarantine.

Examples:

  smartmarket ingest BTCUSDT-1h.csv.gz

  smartmarket ingest BTCUSDT-1h-2024-01.csv --format binance

  smartmarket ingest --exchange binance -s BTC/USDT -t 1h --start 2024-01-01
"""


def _summary(report: IngestReport) -> Table:
    table = Table(
        title=f"{report.symbol} {report.timeframe}  ←  {report.source}", show_header=False, title_justify="left"
    )
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    lines = f"{report.data_lines:,}"
    if report.blank_lines:
        lines += f" ({report.blank_lines:,} blank)"
    table.add_row("data lines", lines)
    table.add_row("rows read", f"{report.rows_read:,}")
    table.add_row("inserted", f"{report.inserted:,}")
    table.add_row("unchanged", f"{report.unchanged:,}")
    if report.overwritten:
        table.add_row("overwritten", f"{report.overwritten:,}")
    table.add_row("conflicts", f"{report.conflicts:,}")
    by_reason = ", ".join(f"{reason} {count:,}" for reason, count in sorted(report.reasons.items()))
    table.add_row("quarantined", f"{report.quarantined:,}" + (f" ({by_reason})" if by_reason else ""))
    if report.out_of_order:
        table.add_row("out of order", f"{report.out_of_order:,} (sorted)")
    largest = report.largest_gap
    gaps = f"{len(report.gaps):,} gaps ({report.missing_candles:,} missing candles)"  # never "28, 128 missing"
    if largest is not None:
        gaps += f", the largest {largest.missing:,} candles after {format_ms(largest.after_ts)}"
    table.add_row("gaps", gaps)
    if report.first_ts is not None and report.last_ts is not None:
        table.add_row("first", format_ms(report.first_ts))
        table.add_row("last", format_ms(report.last_ts))
    return table


def _show(report: IngestReport) -> None:
    console.print(_summary(report))
    if report.quarantine_path is not None:
        console.print(f"quarantine file: {report.quarantine_path}", soft_wrap=True, highlight=False)


def _ingest_exchange(
    ctx: typer.Context, exchange: str, symbol: str | None, timeframe: str | None, since: str | None, until: str | None
) -> IngestReport:
    if not (symbol and timeframe and since):
        raise ConfigError(
            "--exchange needs --symbol, --timeframe and --start",
            hint="e.g. smartmarket ingest --exchange binance --symbol BTC/USDT --timeframe 1h --start 2024-01-01",
        )
    from smartmarket.data.exchange import ingest_from_exchange  # needs ccxt: imported only when used

    app_ctx = get_context(ctx)
    with app_ctx.progress() as progress:
        return ingest_from_exchange(
            app_ctx.store,
            exchange_id=exchange,
            symbol=symbol,
            timeframe=Timeframe.parse(timeframe),
            since_ms=parse_time(since),
            until_ms=parse_time(until),
            quarantine_dir=app_ctx.settings.quarantine_dir,
            progress=task(progress, f"{exchange} {symbol} {timeframe}"),
        )


def ingest(
    ctx: typer.Context,
    files: Annotated[list[Path] | None, typer.Argument(help="Candle files to load.", show_default=False)] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="Symbol, e.g. BTCUSDT or BTC/USDT.")] = None,
    timeframe: Annotated[str | None, typer.Option("--timeframe", "-t", help="Timeframe, e.g. 1h.")] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help=f"File format: auto or one of {', '.join(FORMATS)}.")
    ] = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace stored candles that differ instead of quarantining.")
    ] = False,
    allow_quarantine: Annotated[
        bool, typer.Option("--allow-quarantine", help="Exit 0 even when rows were quarantined.")
    ] = False,
    exchange: Annotated[
        str | None, typer.Option("--exchange", help="Download from an exchange (ccxt id, e.g. binance).")
    ] = None,
    since: Annotated[str | None, typer.Option("--start", help="Exchange form: start time (2024-01-01).")] = None,
    until: Annotated[str | None, typer.Option("--end", help="Exchange form: end time (default: now).")] = None,
    old_since: Annotated[str | None, grammar.SINCE.option()] = None,
    old_until: Annotated[str | None, grammar.UNTIL.option()] = None,
) -> None:
    since, until = grammar.SINCE.resolve(since, old_since), grammar.UNTIL.resolve(until, old_until)
    if fmt != "auto" and fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}", hint=f"use auto or one of: {', '.join(FORMATS)}")
    if exchange and files:
        raise ConfigError("give either files or --exchange, not both")
    if not exchange and not files:
        raise ConfigError(
            "nothing to ingest", hint="give candle files, or --exchange with --symbol/--timeframe/--start"
        )

    from smartmarket.data.ingest import ingest_file

    reports: list[IngestReport] = []
    if exchange:
        reports.append(_ingest_exchange(ctx, exchange, symbol, timeframe, since, until))
    else:
        app_ctx = get_context(ctx)
        tf = Timeframe.parse(timeframe) if timeframe else None
        for path in files or []:
            with app_ctx.progress() as progress:
                report = ingest_file(
                    app_ctx.store,
                    path,
                    quarantine_dir=app_ctx.settings.quarantine_dir,
                    symbol=symbol,
                    timeframe=tf,
                    fmt=None if fmt == "auto" else fmt,
                    overwrite=overwrite,
                    progress=task(progress, f"ingest {path.name}"),
                )
            reports.append(report)
            _show(report)
    if exchange:
        _show(reports[0])

    quarantined = sum(r.quarantined for r in reports)
    if quarantined and not allow_quarantine:
        err_console.print(
            f"{quarantined:,} rows quarantined (see the quarantine file); pass --allow-quarantine to accept",
            highlight=False,
        )
        raise typer.Exit(QUARANTINE_EXIT_CODE)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("ingest", help=HELP)(ingest)


__all__ = ["QUARANTINE_EXIT_CODE", "ingest", "register"]
