"""``smartmarket features`` and ``smartmarket regimes``: feature frames and regime labels from any store."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from smartmarket.cli import grammar
from smartmarket.cli.context import console, get_context
from smartmarket.core.errors import ConfigError, NotFoundError
from smartmarket.core.timeutil import format_ms, parse_time
from smartmarket.core.types import Timeframe, normalize_symbol

if TYPE_CHECKING:  # numpy, pandas and the numba kernels load when a command runs
    import numpy as np
    import pandas as pd

    from smartmarket.store.base import Store

MIN_WARMUP = 500
SET_NAMES = ("minimal", "default", "full")  # features.sets.FEATURE_SETS, named here without loading it


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    parquet = "parquet"


def read_with_warmup(
    store: Store, symbol: str, timeframe: Timeframe, start: int | None, end: int | None, warmup: int,
    align_to: Timeframe | None = None,
) -> tuple[pd.DataFrame, int]:  # fmt: skip
    """Candles from ``warmup`` candle lengths before ``start`` (bucket-aligned to ``align_to``) up to ``end``.

    Returns the frame and the number of leading warm-up rows to drop from the output.
    """
    read_from = None
    if start is not None:
        read_from = start - warmup * timeframe.ms
        if align_to is not None:
            read_from = align_to.bucket_start(read_from)
    import numpy as np

    frame = store.read_candles(symbol, timeframe, read_from, end)
    if frame.empty:
        raise NotFoundError(f"no {symbol} {timeframe} candles in that range", where=store.url)
    skip = 0 if start is None else int(np.searchsorted(frame["ts"].to_numpy(), start, side="left"))
    if skip >= len(frame):
        raise NotFoundError(f"no {symbol} {timeframe} candles from {format_ms(start or 0)}", where=store.url)
    return frame, skip


def _print_table(features: pd.DataFrame, rows: int) -> None:
    tail = features.tail(rows)
    table = Table(title=f"{len(features.columns) - 1} features × {len(features):,} bars (last {len(tail)} shown)")
    table.add_column("feature")
    for ts in tail["ts"]:
        table.add_column(format_ms(int(ts), short=True), justify="right")
    for col in features.columns[1:]:
        table.add_row(col, *(f"{x:.6g}" for x in tail[col]))
    console.print(table)


def regime_report(candles: pd.DataFrame, codes: np.ndarray, horizon: int) -> pd.DataFrame:
    """Per label: share of bars, then forward return and volatility over the next ``horizon`` bars.

    Forward data is used here ONLY to evaluate the labels (it never feeds a feature).
    """
    import numpy as np
    import pandas as pd

    from smartmarket.features.regimes import KNOWN_LABELS, regime_names

    close = candles["close"].to_numpy(dtype=np.float64)
    log_close = np.log(close)
    forward_return = np.full(len(close), np.nan)
    forward_vol = np.full(len(close), np.nan)
    if len(close) > horizon:
        forward_return[:-horizon] = log_close[horizon:] - log_close[:-horizon]
        returns = np.diff(log_close)
        windows = np.lib.stride_tricks.sliding_window_view(returns, horizon)  # window i = returns i+1..i+horizon
        forward_vol[: len(windows)] = windows.std(axis=1, ddof=1) if horizon > 1 else np.abs(windows[:, 0])
    names = regime_names(codes)
    rows = []
    for label in ("unknown", *(r.label for r in KNOWN_LABELS)):
        mask = names == label
        episodes = int(np.sum(mask[1:] & ~mask[:-1]) + (1 if len(mask) and mask[0] else 0))
        rows.append(
            {
                "regime": label,
                "bars": int(mask.sum()),
                "share": float(mask.mean()) if len(mask) else 0.0,
                "episodes": episodes,
                "mean_bars": float(mask.sum() / episodes) if episodes else float("nan"),
                "fwd_return": float(np.nanmean(forward_return[mask])) if mask.any() else float("nan"),
                "fwd_vol": float(np.nanmean(forward_vol[mask])) if mask.any() else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def register(app: typer.Typer) -> None:
    """Add ``features`` and ``regimes`` to ``app``."""

    @app.command("features", cls=grammar.Command)
    def features(
        ctx: typer.Context,
        symbol: grammar.SymbolOpt = None,
        timeframe: grammar.TimeframeOpt = None,
        set_name: Annotated[str, typer.Option("--set", help=f"Feature set: {', '.join(SET_NAMES)}.")] = "default",
        start: Annotated[str | None, typer.Option("--start", help="First bar in the output (UTC).")] = None,
        end: Annotated[str | None, typer.Option("--end", help="Bars before this time (UTC, exclusive).")] = None,
        fmt: Annotated[
            OutputFormat, typer.Option("--format", "-f", help="table, csv or parquet.")
        ] = OutputFormat.table,
        output: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
        warmup: Annotated[
            int | None,
            typer.Option("--warmup", min=0, help="Warm-up candles read before --start (default: automatic)."),
        ] = None,
        rows: Annotated[int, typer.Option("--rows", min=1, help="Bars shown by --format table.")] = 5,
        old_symbol: grammar.OldSymbolArg = None,
        old_timeframe: grammar.OldTimeframeArg = None,
        old_output: Annotated[Path | None, grammar.OUTPUT.option()] = None,
    ) -> None:
        """Compute a feature set over stored candles: ts first, then one column per feature.

        Warm-up: with --start, earlier candles are read first (by default max(500, 3 × the set's warm-up),
        aligned to the higher timeframe's buckets) so every feature is defined at --start; those rows are
        dropped from the output. Recursive features (EMA, Wilder averages, OBV, the volatility history) still
        depend a little on where the history starts. Every value is causal: bar t uses bars ≤ t only.

        Examples:
          smartmarket features -s BTCUSDT -t 1h --start 2024-01-01 --format csv --out btc-1h.csv
          smartmarket features -s BTCUSDT -t 4h --set minimal --format parquet -o btc-4h.parquet
          smartmarket features -s BTCUSDT -t 1h --start 2024-06-01 --end 2024-06-02
        """
        symbol, timeframe = grammar.positional_or_option(symbol, timeframe, old_symbol, old_timeframe, "features")
        output = grammar.OUTPUT.resolve(output, old_output)
        from smartmarket.features.pipeline import FeaturePipeline

        store = get_context(ctx).store
        sym = normalize_symbol(symbol)
        tf = Timeframe.parse(timeframe)
        pipeline = FeaturePipeline(set_name, tf)
        warm = warmup if warmup is not None else max(MIN_WARMUP, 3 * pipeline.warmup_bars)
        htfs = [spec.resolve(tf) for spec in pipeline.feature_set.multi_timeframe]
        align = max(htfs, key=lambda t: t.ms) if htfs else None
        candles, skip = read_with_warmup(store, sym, tf, parse_time(start), parse_time(end), warm, align)
        result = pipeline.batch(candles).iloc[skip:].reset_index(drop=True)

        if fmt is OutputFormat.parquet:
            if output is None:
                raise ConfigError("--format parquet needs --out FILE")
            result.to_parquet(output, index=False)
        elif fmt is OutputFormat.csv:
            if output is None:
                result.to_csv(sys.stdout, index=False)
            else:
                result.to_csv(output, index=False)
        elif output is not None:
            raise ConfigError("--out needs --format csv or parquet")
        else:
            _print_table(result, rows)
        if output is not None:
            console.print(
                f"{sym} {tf} set {pipeline.feature_set.name}: {len(result):,} bars × {len(pipeline.columns)} "
                f"features ({skip:,} warm-up bars read and dropped) → {output}",
                highlight=False,
            )

    @app.command("regimes", cls=grammar.Command)
    def regimes(
        ctx: typer.Context,
        symbol: grammar.SymbolOpt = None,
        timeframe: grammar.TimeframeOpt = None,
        start: Annotated[str | None, typer.Option("--start", help="First bar evaluated (UTC).")] = None,
        end: Annotated[str | None, typer.Option("--end", help="Bars before this time (UTC, exclusive).")] = None,
        horizon: Annotated[int, typer.Option("--horizon", min=1, help="Forward bars for the evaluation.")] = 24,
        old_symbol: grammar.OldSymbolArg = None,
        old_timeframe: grammar.OldTimeframeArg = None,
    ) -> None:
        """Label every bar (trending up/down, ranging, volatile) and show what the labels were followed by.

        Labels use trailing data only. The forward return and forward volatility columns look at the NEXT
        --horizon bars: they are an after-the-fact evaluation of the labels, never an input to them.
        With --start, earlier candles are read first as warm-up and left out of the statistics.

        Examples:
          smartmarket regimes -s BTCUSDT -t 1h
          smartmarket regimes -s BTCUSDT -t 4h --start 2022-01-01 --horizon 12
        """
        symbol, timeframe = grammar.positional_or_option(symbol, timeframe, old_symbol, old_timeframe, "regimes")
        from smartmarket.features.regimes import RegimeConfig, RegimeFeature

        store = get_context(ctx).store
        sym = normalize_symbol(symbol)
        tf = Timeframe.parse(timeframe)
        feature = RegimeFeature(RegimeConfig())
        candles, skip = read_with_warmup(
            store, sym, tf, parse_time(start), parse_time(end), max(MIN_WARMUP, 3 * feature.warmup)
        )
        codes = feature.batch_array(candles)[:, 0]
        report = regime_report(candles.iloc[skip:].reset_index(drop=True), codes[skip:], horizon)
        first, last = int(candles["ts"].iloc[skip]), int(candles["ts"].iloc[-1])
        table = Table(
            title=f"{sym} {tf} regimes, {format_ms(first)} → {format_ms(last)} ({len(candles) - skip:,} bars)",
            caption=f"fwd = the next {horizon} bars (evaluation only, never used by the labels): mean log return "
            "and mean std of 1-bar log returns",
        )
        for col in ("regime", "share of bars", "episodes", "mean bars", "fwd return", "fwd volatility"):
            table.add_column(col, justify="left" if col == "regime" else "right")
        for row in report.itertuples():
            if row.bars == 0:
                table.add_row(str(row.regime), grammar.pct(0.0), "0", "-", "-", "-")
                continue
            share, fwd_return, fwd_vol = (float(v) for v in (row.share, row.fwd_return, row.fwd_vol))  # type: ignore[arg-type]
            table.add_row(
                str(row.regime), grammar.pct(share), f"{row.episodes:,}", f"{row.mean_bars:.1f}",
                grammar.pct(fwd_return, signed=True, digits=3), grammar.pct(fwd_vol, digits=3),
            )  # fmt: skip
        console.print(table)


__all__ = ["read_with_warmup", "regime_report", "register"]
