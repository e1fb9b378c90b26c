"""``smartmarket backtest``: run a strategy over stored candles; print the metrics, write JSON and HTML.

The command reads the candles once (resampled on the fly when only a finer timeframe is stored), runs the
event-driven kernel over them, measures the equity curve with ``analytics`` and, on request, writes the
deterministic JSON document (``engine.result_json``) and the HTML report (plotly.js beside it, or --inline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from smartmarket.cli import grammar
from smartmarket.cli.context import AppContext, console, err_console, get_context, stage, task
from smartmarket.core.errors import ConfigError, NotFoundError
from smartmarket.core.timeutil import format_ms, parse_time
from smartmarket.core.types import Timeframe, normalize_symbol

if TYPE_CHECKING:  # the engine, analytics and pandas load when the command runs (fast start-up)
    import pandas as pd
    from rich.console import Console

    from smartmarket.analytics import Metrics
    from smartmarket.backtest.runner import BacktestResult
    from smartmarket.engine.kernel import KernelConfig
    from smartmarket.execution.risk import RiskConfig
    from smartmarket.store.base import CandleStore

HELP = """Backtest a strategy over stored candles: metrics table, optional JSON result and HTML report.

Orders decided at a bar's close fill at a later bar's open, with fees and slippage. Several symbols
(--symbols BTCUSDT,ETHUSDT) share one cash account; each gets --fraction of equity (default 1/N).
Open positions are closed at the last close (taker fee) unless --keep-open, so the trades' P&L adds up to
the change in equity. Strategies: buy_hold, sma_cross, rsi_reversion, smc_bos, ensemble (the fitted signal
ensemble, sized by signal strength; fit it first with `smartmarket fit-signals`), or your own class:
--strategy path/to/file.py:ClassName (docs/strategies.md; the file runs as code).
--stop-loss/--take-profit/--trailing-stop are percent of the entry price and apply to any strategy; they fill
inside a bar (at the open on a gap; the stop first when both levels are in one bar's range).
Times are ISO-8601 or epoch ms; --start is inclusive, --end exclusive. Same inputs, same bytes out.

Examples:

  smartmarket backtest --symbols BTCUSDT --timeframe 1h --strategy sma_cross --params fast=10,slow=30

  smartmarket backtest -s BTCUSDT,ETHUSDT -t 4h --start 2023-01-01 --end 2024-01-01 --out bt.json --out bt.html

  smartmarket backtest -s ETHUSDT -t 4h --strategy examples/strategies/ema_cross.py:EmaCross --stop-loss 5
"""


# ------------------------------------------------------------------------------------------ parsing


def parse_params(text: str | None) -> dict[str, Any]:
    """``"fast=10,slow=30"`` → ``{"fast": 10, "slow": 30}``: ints, floats, true/false, none, else strings."""
    params: dict[str, Any] = {}
    if not text or not text.strip():
        return params
    for item in text.split(","):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"cannot read parameter {item.strip()!r}", hint="write --params name=value,name=value")
        if key in params:
            raise ConfigError(f"parameter {key!r} given twice")
        params[key] = _param_value(raw.strip())
    return params


def _param_value(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    return raw


def parse_symbols(text: str) -> list[str]:
    """``"BTCUSDT, eth/usdt"`` → ``["BTCUSDT", "ETHUSDT"]`` (order kept, duplicates dropped)."""
    symbols: list[str] = []
    for part in text.split(","):
        if part.strip():
            symbol = normalize_symbol(part.strip())
            if symbol not in symbols:
                symbols.append(symbol)
    if not symbols:
        raise ConfigError("no symbol given", hint="e.g. --symbols BTCUSDT or --symbols BTCUSDT,ETHUSDT")
    return symbols


def kernel_config(
    *,
    cash: float,
    fees: float,
    slippage_bps: float,
    fraction: float,
    latency: int,
    long_only: bool,
    close_at_end: bool,
    risk: RiskConfig | None = None,
    vol_target: float | None = None,
    max_leverage: float = 1.0,
    rebalance_band: float = 0.1,
    timeframe: Timeframe | None = None,
    vol_model: str | None = None,
) -> KernelConfig:
    """The execution settings of a CLI run (fees apply to makers and takers alike).

    ``risk``: protective exits (``--stop-loss`` …). ``vol_target`` (annualised, on ``timeframe`` bars): size each
    position by the EWMA volatility-targeting sizer (its share of the target is ``fraction``), rebalanced outside
    ``rebalance_band``, up to ``max_leverage`` x ``fraction`` each and ``max_leverage`` gross. ``vol_model``: its
    volatility forecaster (``ewma`` when None, or ``har``; ``execution.sizing.vol_model_option`` checks it).
    """
    from dataclasses import replace

    from smartmarket.engine.kernel import KernelConfig
    from smartmarket.execution.fees import FeeModel
    from smartmarket.execution.risk import RiskConfig
    from smartmarket.execution.sizing import FixedFraction, Sizer, annual_volatility_target, vol_model_option
    from smartmarket.execution.slippage import FixedBps

    if not cash > 0:
        raise ConfigError(f"--cash must be positive, got {cash!r}")
    if latency < 0:
        raise ConfigError(f"--latency must be >= 0 bars, got {latency!r}")
    if not 0 < fraction <= 1:
        raise ConfigError(f"--fraction must be in (0, 1], got {fraction!r}")
    sizer: Sizer = FixedFraction(fraction)
    model = vol_model_option(vol_model, vol_target)
    risk = risk if risk is not None else RiskConfig()
    if vol_target is not None:
        if timeframe is None:
            raise ConfigError("--vol-target needs the bar timeframe", hint="give --timeframe, e.g. -t 1d")
        sizer = annual_volatility_target(
            vol_target, timeframe, max_leverage=max_leverage, band=rebalance_band, share=fraction, model=model
        )
        risk = replace(risk, max_position_fraction=max_leverage, max_gross_exposure=max_leverage)
    elif max_leverage != 1.0 or rebalance_band != 0.1:
        raise ConfigError("--max-leverage and --rebalance-band apply to --vol-target", hint="add --vol-target 0.2")
    return KernelConfig(
        initial_cash=float(cash),
        fees=FeeModel(maker=fees, taker=fees),
        slippage=FixedBps(slippage_bps),
        sizer=sizer,
        risk=risk,
        latency_bars=latency,
        long_only=long_only,
        close_at_end=close_at_end,
    )


# ------------------------------------------------------------------------------------------ running


def read_frames(
    store: CandleStore, symbols: Sequence[str], timeframe: Timeframe, start: int | None, end: int | None
) -> dict[str, pd.DataFrame]:
    """The candles of every symbol in ``[start, end)``; a clear error when a series is missing or empty."""
    hint = "load candles with `smartmarket ingest FILE` (see `smartmarket symbols` for what is stored)"
    frames: dict[str, pd.DataFrame] = {}
    for symbol in symbols:
        try:
            frame = store.read_candles(symbol, timeframe, start, end)
        except NotFoundError as exc:
            raise NotFoundError(exc.what, where=exc.where, hint=hint) from None
        if frame.empty:
            span = f"from {format_ms(start) if start is not None else 'the start'}"
            span += f" to {format_ms(end) if end is not None else 'the end'}"
            raise NotFoundError(f"no {symbol} {timeframe} candles {span}", hint=_stored_range_hint(store, symbol))
        frames[symbol] = frame
    return frames


def _stored_range_hint(store: CandleStore, symbol: str) -> str:
    infos = [i for i in store.list_series() if i.symbol == symbol]
    if not infos:
        return "load candles with `smartmarket ingest FILE`"
    first, last = min(i.first_ts for i in infos), max(i.last_ts for i in infos)
    return (
        f"{symbol} is stored from {format_ms(first)} to {format_ms(last)}: pick --start/--end inside that, "
        "or load more with `smartmarket ingest FILE`"
    )


def buy_hold_return(frames: Mapping[str, pd.DataFrame]) -> float:
    """Equal-weight mean over symbols of ``last close / first close - 1`` (no fees): context, not a strategy."""
    returns = [float(f["close"].iloc[-1]) / float(f["close"].iloc[0]) - 1.0 for f in frames.values()]
    return sum(returns) / len(returns)


def full_params(strategy: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The strategy's parameters with defaults filled in (raises ``ConfigError`` on bad ones)."""
    from smartmarket.strategies.registry import make_strategy

    return make_strategy(strategy, **params).params() or dict(params)


# ------------------------------------------------------------------------------------------ output


def _pct(value: float | None) -> str:
    return grammar.pct(value, signed=True)


def _frac(value: float | None) -> str:
    return grammar.pct(value)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def summary_table(title: str, metrics: Metrics, result: BacktestResult, buy_hold: float) -> Table:
    """The metrics a person checks first, with buy and hold over the same bars for context."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_header=False, pad_edge=False)
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    rows = (
        ("Total return", _pct(metrics.total_return)),
        ("Annual return (CAGR)", _pct(metrics.annual_return)),
        ("Sharpe (annual)", _ratio(metrics.sharpe)),
        ("Sortino (annual)", _ratio(metrics.sortino)),
        ("Calmar", _ratio(metrics.calmar)),
        ("Max drawdown", _frac(metrics.max_drawdown)),
        ("Win rate", _frac(metrics.win_rate)),
        ("Profit factor", _ratio(metrics.profit_factor)),
        ("Expectancy per trade", _money(metrics.expectancy)),
        ("Trades", f"{metrics.num_trades:,}"),
        ("Exposure (time in market)", _frac(metrics.exposure)),
        ("Fees paid", _money(metrics.total_fees)),
        ("Final equity", f"{_money(result.final_equity)}  (from {_money(result.initial_cash)})"),
        ("Buy and hold (price, no fees)", _pct(buy_hold)),
    )
    for label, value in rows:
        table.add_row(label, value)
    return table


def _title(strategy: str, params: Mapping[str, Any], symbols: Sequence[str], timeframe: Timeframe) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"{strategy}({shown}) on {', '.join(symbols)} {timeframe}"


def _report_scope(symbols: Sequence[str]) -> str:
    if len(symbols) == 1:
        return f"{symbols[0]}: price chart, trades and metrics"
    return (
        f"metrics and equity cover {', '.join(symbols)}; the price chart and the trade P&L histogram show "
        f"{symbols[0]} only (every trade is in the JSON result)"
    )


def vol_target_line(metrics: Metrics, vol_target: float) -> str:
    """The realised annual volatility beside the target, and the turnover it cost."""
    turnover = f"{metrics.annual_turnover:.1f}x equity a year" if metrics.annual_turnover is not None else "n/a"
    return f"Volatility target {_frac(vol_target)}: realised {_frac(metrics.volatility)} a year; turnover {turnover}"


VOL_TARGET_HELP = (
    "Size positions for this annualised volatility (0.2 = 20 %) from an EWMA forecast (RiskMetrics 0.94), "
    "resized at closes as volatility moves."
)
VOL_MODEL_HELP = (
    "With --vol-target: the volatility forecast to size with: ewma (default) or har (HAR-RV, Corsi 2009, refitted "
    "daily on past bars)."
)
MAX_LEVERAGE_HELP = "With --vol-target: the most exposure per equity (gross), e.g. 2 for 2x."
BAND_HELP = (
    "With --vol-target: resize only when the target differs from the held exposure by more than this (0.1 = 10 %)."
)


# ------------------------------------------------------------------------------------------ command


def backtest(
    ctx: typer.Context,
    symbols_opt: Annotated[
        str | None, typer.Option("--symbols", "-s", help="Symbol(s), comma-separated: BTCUSDT,ETHUSDT (required).")
    ] = None,
    timeframe: Annotated[str, typer.Option("--timeframe", "-t", help="Bar timeframe, e.g. 1h, 4h, 1d.")] = "1h",
    strategy: Annotated[
        str, typer.Option("--strategy", help="Strategy name (see above) or path/to/file.py:ClassName.")
    ] = "sma_cross",
    params: Annotated[
        str | None, typer.Option("--params", "-p", help="Strategy parameters: name=value,name=value.")
    ] = None,
    start: Annotated[str | None, typer.Option("--start", help="First bar open time (inclusive).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Bars opening before this time.")] = None,
    cash: Annotated[float, typer.Option("--cash", help="Starting cash.")] = 10_000.0,
    fee_bps: Annotated[float, typer.Option("--fee-bps", help="Fee per side, basis points (10 = 0.1 %).")] = 10.0,
    slippage_bps: Annotated[
        float, typer.Option("--slippage-bps", help="Adverse slippage per market fill, basis points.")
    ] = 0.0,
    fraction: Annotated[
        float | None, typer.Option("--fraction", help="Fraction of equity per position (default 1/number of symbols).")
    ] = None,
    long_only: Annotated[bool, typer.Option("--long-only", help="Never short: short signals go flat.")] = False,
    latency: Annotated[int, typer.Option("--latency", help="Extra bars between a decision and its fill.")] = 0,
    keep_open: Annotated[
        bool, typer.Option("--keep-open", help="Leave positions open at the end instead of closing them.")
    ] = False,
    stop_loss: grammar.StopLossOpt = None,
    take_profit: grammar.TakeProfitOpt = None,
    trailing_stop: grammar.TrailingStopOpt = None,
    vol_target: Annotated[float | None, typer.Option("--vol-target", help=VOL_TARGET_HELP)] = None,
    vol_model: Annotated[str | None, typer.Option("--vol-model", help=VOL_MODEL_HELP)] = None,
    max_leverage: Annotated[float, typer.Option("--max-leverage", help=MAX_LEVERAGE_HELP)] = 1.0,
    rebalance_band: Annotated[float, typer.Option("--rebalance-band", help=BAND_HELP)] = 0.1,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full result as JSON on stdout instead of the tables.")
    ] = False,
    out: Annotated[
        list[Path] | None,
        typer.Option(
            "--out", "-o", help="Write a file: PATH.json (the full result) or PATH.html (the report); repeatable."
        ),
    ] = None,
    inline: Annotated[
        bool, typer.Option("--inline", help="Embed plotly.js in the report (one 5 MB file) instead of beside it.")
    ] = False,
    old_symbol: Annotated[str | None, grammar.SYMBOL_LIST.option()] = None,
    old_fees: Annotated[float | None, grammar.FEES.option()] = None,
    old_report: Annotated[Path | None, grammar.REPORT.option()] = None,
    old_json_path: Annotated[Path | None, grammar.JSON_PATH.argument()] = None,
) -> None:
    from smartmarket.analytics import compute_metrics, monthly_returns
    from smartmarket.backtest.provenance import backtest_provenance
    from smartmarket.backtest.result_json import backtest_document, dumps_document
    from smartmarket.backtest.runner import run_backtest, warmup_frames
    from smartmarket.execution.risk import exits_from_percent
    from smartmarket.strategies.registry import strategy_factory

    symbol = grammar.require(
        grammar.SYMBOL_LIST.resolve(symbols_opt, old_symbol), "--symbols/-s", "smartmarket backtest -s BTCUSDT -t 1h"
    )
    fee_bps = grammar.FEES.resolve(fee_bps, old_fees)
    json_path, report_path, as_json = _outputs(out or [], old_report, old_json_path, as_json)
    symbols = parse_symbols(symbol)
    tf = Timeframe.parse(timeframe)
    strategy_params = parse_params(params)
    strategy_factory(strategy, **strategy_params)  # unknown strategy or bad parameters: fail before reading data
    resolved = full_params(strategy, strategy_params)
    start_ms, end_ms = parse_time(start), parse_time(end)
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise ConfigError(f"--end ({end}) must be after --start ({start})")
    config = kernel_config(
        cash=cash,
        fees=grammar.bps_to_fraction(fee_bps),
        slippage_bps=slippage_bps,
        fraction=fraction if fraction is not None else 1.0 / len(symbols),
        latency=latency,
        long_only=long_only,
        close_at_end=not keep_open,
        risk=exits_from_percent(stop_loss, take_profit, trailing_stop),
        vol_target=vol_target,
        max_leverage=max_leverage,
        rebalance_band=rebalance_band,
        timeframe=tf,
        vol_model=vol_model,
    )

    app_ctx = get_context(ctx)
    store = app_ctx.store
    frames = read_frames(store, symbols, tf, start_ms, end_ms)
    warmup = None
    if start_ms is not None:  # the strategy sees the candles before --start first, as a live run would have
        factory = strategy_factory(strategy, **strategy_params)
        warmup = warmup_frames(store, symbols, tf, start_ms, factory, extra_bars=config.sizer.warmup_bars())
    with app_ctx.progress() as progress:
        result = run_backtest(
            frames, strategy, params=strategy_params, config=config, timeframe=tf, warmup=warmup,
            progress=task(progress, f"backtest {strategy}"),
        )  # fmt: skip
    metrics = compute_metrics(
        result.equity, result.trades, tf, exposure=result.exposure, traded_notional=result.traded_notional
    )
    monthly = monthly_returns(result.equity)
    buy_hold = buy_hold_return(frames)
    provenance = backtest_provenance(
        frames=frames, timeframe=tf, strategy=strategy, params=resolved, config=config, start=start_ms, end=end_ms
    )
    title = _title(strategy, resolved, symbols, tf)

    document = None
    if as_json or json_path is not None:
        document = backtest_document(
            result,
            metrics=metrics.to_dict(),
            monthly_returns=monthly.to_records(),
            provenance=provenance,
            benchmark={"buy_hold_return": buy_hold},
            params=resolved,
        )
    if as_json:  # stdout carries the JSON document only; what else is said goes to stderr
        assert document is not None
        typer.echo(dumps_document(document))
        _report_outputs(json_path, report_path, document, frames, result, metrics, monthly, provenance, title,
                        symbols, buy_hold, inline, err_console, app_ctx)  # fmt: skip
        return
    console.print(summary_table(title, metrics, result, buy_hold))
    first, last = int(result.equity.index[0]), int(result.equity.index[-1])
    per_symbol = f" x {len(symbols)} symbols" if len(symbols) > 1 else ""
    span = f"{len(result.equity):,} bars{per_symbol} from {format_ms(first)} to {format_ms(last)}"
    console.print(span, style="dim", highlight=False)
    if warmup is not None:
        warmed = sum(len(f) for f in warmup.values())
        console.print(f"warmed up on {warmed:,} candle(s) before --start (not traded)", style="dim", highlight=False)
    if result.open_positions:
        console.print(f"{len(result.open_positions)} position(s) left open (--keep-open)", style="dim")
    if vol_target is not None:
        console.print(vol_target_line(metrics, vol_target), highlight=False)

    _report_outputs(json_path, report_path, document, frames, result, metrics, monthly, provenance, title,
                    symbols, buy_hold, inline, console, app_ctx)  # fmt: skip


def _outputs(
    out: Sequence[Path], old_report: Path | None, old_json_path: Path | None, as_json: bool
) -> tuple[Path | None, Path | None, bool]:
    """``--out`` files by suffix (.json: the result, .html: the report), plus the deprecated ``--report PATH``
    and ``--json PATH`` (now ``--json`` is a flag: the path arrives as a hidden positional)."""
    json_path: Path | None = None
    report_path: Path | None = grammar.REPORT.resolve(None, old_report)
    if old_json_path is not None:
        if not as_json:
            raise ConfigError(f"unexpected argument {str(old_json_path)!r}", hint="backtest takes options only")
        json_path, as_json = grammar.JSON_PATH.resolve(None, old_json_path), False  # the old form: tables + a file
    for path in out:
        suffix = path.suffix.lower()
        if suffix == ".json":
            json_path = path
        elif suffix in (".html", ".htm"):
            report_path = path
        else:
            raise ConfigError(
                f"--out {path}: unknown file type {suffix or '(none)'!r}",
                hint="PATH.json writes the full result, PATH.html the report",
            )
    return json_path, report_path, as_json


def _report_outputs(
    json_path: Path | None,
    report_path: Path | None,
    document: Mapping[str, Any] | None,
    frames: Mapping[str, pd.DataFrame],
    result: BacktestResult,
    metrics: Metrics,
    monthly: Any,
    provenance: Mapping[str, Any],
    title: str,
    symbols: Sequence[str],
    buy_hold: float,
    inline: bool,
    out: Console,
    app_ctx: AppContext,
) -> None:
    """Write the ``--out`` files and say where (on ``out``: stderr when stdout carries JSON)."""
    from smartmarket.analytics import write_report
    from smartmarket.backtest.result_json import write_document

    if json_path is not None:
        assert document is not None
        out.print(f"JSON result: {write_document(json_path, document)}", highlight=False)
    if report_path is not None:
        chart_symbol = symbols[0]
        with app_ctx.progress() as progress, stage(progress, "write the HTML report"):
            written = write_report(
                report_path,
                title=title if len(symbols) == 1 else f"{title} — price chart: {chart_symbol}",
                prices=frames[chart_symbol],
                trades=[t for t in result.trades if t.symbol == chart_symbol],
                equity=result.equity,
                metrics=metrics,
                monthly=monthly,
                provenance={
                    "report_scope": _report_scope(symbols),
                    "buy_and_hold": f"{_pct(buy_hold)} over the same bars (last close / first close, no fees)",
                    **provenance,
                },
                inline=inline,
            )
        out.print(f"HTML report: {written}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("backtest", help=HELP, cls=grammar.Command)(backtest)


__all__ = [
    "backtest",
    "buy_hold_return",
    "full_params",
    "kernel_config",
    "parse_params",
    "parse_symbols",
    "read_frames",
    "register",
    "summary_table",
]
