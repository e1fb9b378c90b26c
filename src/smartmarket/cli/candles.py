"""``smartmarket candles`` (print a series, resampled on the fly when needed) and ``smartmarket symbols``."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from smartmarket.cli import grammar
from smartmarket.cli.context import console, err_console, get_context
from smartmarket.core.errors import ConfigError
from smartmarket.core.timeutil import format_ms, parse_time
from smartmarket.core.types import Timeframe, normalize_symbol

if TYPE_CHECKING:
    import pandas as pd

    from smartmarket.store.base import SeriesInfo, Store

CANDLES_HELP = """Print the candles of one series: stored, or resampled on the fly from a finer stored timeframe.

Times are ISO-8601 (2024-01-01, 2024-01-01T12:00Z) or epoch ms; --start is inclusive, --end exclusive.
--limit N prints at most N candles: the first N from --start, else the most recent N. Without it the table
shows the last 30 candles of the range (--all shows every one); csv and json write the whole range.
CSV columns: ts,open,high,low,close,volume with ts in UTC epoch ms of the candle open.

Examples:

  smartmarket candles -s BTCUSDT -t 1h --limit 24

  smartmarket candles -s BTC/USDT -t 1d --start 2024-01-01 --end 2024-02-01 --format csv > btc-jan.csv
"""

SYMBOLS_HELP = """List the stored series: candle count, first and last candle time, synthetic flag.

Example:

  smartmarket symbols --format json
"""


TABLE_ROWS = 30  # candles the table shows unless --limit / --all


class CandleFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class SeriesFormat(StrEnum):
    table = "table"
    json = "json"


def most_recent(
    store: Store, symbol: str, timeframe: Timeframe, n: int, *, end: int | None = None, include_partial: bool = False
) -> pd.DataFrame:
    """The last ``n`` candles opening before ``end`` (stored or resampled), reading a window that grows
    until it holds ``n`` candles or reaches the start of the stored history."""
    from smartmarket.core.frame import empty_candles
    from smartmarket.store.resample import series_not_found

    symbol = normalize_symbol(symbol)
    infos = [i for i in store.list_series() if i.symbol == symbol]
    if not infos:
        raise series_not_found(symbol, timeframe, ())
    if n <= 0:
        return empty_candles()
    first = min(i.first_ts for i in infos)
    anchor = end if end is not None else max(i.last_ts for i in infos) + timeframe.ms
    span = n * timeframe.ms
    while True:
        start = anchor - span
        frame = store.read_candles(symbol, timeframe, start=start, end=end, include_partial=include_partial)
        if len(frame) >= n or start <= first:
            return frame.iloc[-n:].reset_index(drop=True)
        span *= 4


def _table_tail(
    store: Store, symbol: str, tf: Timeframe, start: int | None, end: int | None, include_partial: bool
) -> tuple[pd.DataFrame, int]:
    """The last ``TABLE_ROWS`` candles of the range and how many it holds (a whole stored series is counted
    from its metadata, without reading it)."""
    info = store.series_info(symbol, tf) if start is None and end is None else None
    if info is not None:
        return most_recent(store, symbol, tf, TABLE_ROWS, include_partial=include_partial), info.count
    frame = store.read_candles(symbol, tf, start, end, include_partial=include_partial)
    return frame.iloc[-TABLE_ROWS:].reset_index(drop=True), len(frame)


def _number(value: float) -> str:
    return f"{value:.10g}"


def _candle_table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("time (UTC)", no_wrap=True)
    values = ("open", "high", "low", "close", "volume")
    for name in values:
        table.add_column(name, justify="right", no_wrap=True)
    for ts, *numbers in zip(frame["ts"].tolist(), *(frame[c].tolist() for c in values), strict=True):
        table.add_row(format_ms(int(ts)), *(_number(float(v)) for v in numbers))
    return table


def candles(
    ctx: typer.Context,
    symbol: grammar.SymbolOpt = None,
    timeframe: grammar.TimeframeOpt = None,
    start: Annotated[str | None, typer.Option("--start", help="First candle open time (inclusive).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Candles opening before this time.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="At most N candles.")] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help=f"Table: every candle of the range, not the last {TABLE_ROWS}.")
    ] = False,
    output: Annotated[CandleFormat, typer.Option("--format", "-f", help="Output format.")] = CandleFormat.table,
    include_partial: Annotated[
        bool, typer.Option("--include-partial", help="Keep a trailing resampled candle that is not complete yet.")
    ] = False,
    old_symbol: grammar.OldSymbolArg = None,
    old_timeframe: grammar.OldTimeframeArg = None,
) -> None:
    symbol, timeframe = grammar.positional_or_option(symbol, timeframe, old_symbol, old_timeframe, "candles")
    tf = Timeframe.parse(timeframe)
    sym = normalize_symbol(symbol)
    if limit is not None and show_all:
        raise ConfigError("--limit and --all contradict each other", hint="give one of them")
    store = get_context(ctx).store
    start_ms, end_ms = parse_time(start), parse_time(end)
    total: int | None = None  # candles in the range, when the table shows only its last TABLE_ROWS
    if output is CandleFormat.table and limit is None and not show_all:
        frame, total = _table_tail(store, sym, tf, start_ms, end_ms, include_partial)
    elif limit is not None and start_ms is None:
        frame = most_recent(store, sym, tf, limit, end=end_ms, include_partial=include_partial)
    else:
        frame = store.read_candles(sym, tf, start_ms, end_ms, limit, include_partial=include_partial)

    if output is CandleFormat.csv:
        typer.echo(frame.to_csv(index=False, lineterminator="\n"), nl=False)
    elif output is CandleFormat.json:
        typer.echo(json.dumps(frame.to_dict(orient="records")))
    else:
        resampled = store.series_info(sym, tf) is None
        title = f"{sym} {tf}" + ("  (resampled on the fly)" if resampled else "")
        console.print(_candle_table(frame, title))
        if frame.empty:
            err_console.print("no candles in that range")
        elif total is not None and total > len(frame):
            console.print(
                f"showing the last {len(frame):,} of {total:,} candles (--limit N or --all for more)", style="dim"
            )
        else:
            console.print(f"{len(frame):,} candles", style="dim")


def _series_record(info: SeriesInfo) -> dict[str, object]:
    return {
        "symbol": info.symbol,
        "timeframe": info.timeframe.value,
        "count": info.count,
        "first_ts": info.first_ts,
        "last_ts": info.last_ts,
        "first": format_ms(info.first_ts),
        "last": format_ms(info.last_ts),
        "synthetic": info.synthetic,
    }


def symbols(
    ctx: typer.Context,
    output: Annotated[SeriesFormat, typer.Option("--format", "-f", help="Output format.")] = SeriesFormat.table,
) -> None:
    infos = get_context(ctx).store.list_series()
    if output is SeriesFormat.json:
        typer.echo(json.dumps([_series_record(i) for i in infos]))
        return
    if not infos:
        err_console.print("no series stored yet: load some with `smartmarket ingest FILE` or `smartmarket generate`")
        return
    table = Table(title="stored series", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("symbol", no_wrap=True)
    table.add_column("tf", no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("first (UTC)", no_wrap=True)
    table.add_column("last (UTC)", no_wrap=True)
    table.add_column("synthetic", no_wrap=True)
    for i in infos:
        table.add_row(
            i.symbol, i.timeframe.value, f"{i.count:,}", format_ms(i.first_ts), format_ms(i.last_ts),
            "yes" if i.synthetic else "",
        )  # fmt: skip
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("candles", help=CANDLES_HELP, cls=grammar.Command)(candles)
    app.command("symbols", help=SYMBOLS_HELP)(symbols)


__all__ = ["CandleFormat", "SeriesFormat", "candles", "most_recent", "register", "symbols"]
