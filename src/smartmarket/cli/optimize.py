"""``smartmarket optimize``: search a strategy's parameters and say how far to trust the winner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from smartmarket.cli import grammar
from smartmarket.cli.backtest import (
    BAND_HELP,
    MAX_LEVERAGE_HELP,
    VOL_MODEL_HELP,
    VOL_TARGET_HELP,
    kernel_config,
    parse_params,
    read_frames,
)
from smartmarket.cli.context import console, err_console, get_context
from smartmarket.core.errors import ConfigError
from smartmarket.core.timeutil import format_ms, parse_time
from smartmarket.core.types import Timeframe, normalize_symbol

if TYPE_CHECKING:  # the optimiser (numba sweep, Optuna) loads when the command runs
    from smartmarket.ops.optimize import OptimizeReport

HELP = """Optimise a strategy's parameters on stored candles, with the figures that tell luck from skill.

Beside the best parameters it reports the deflated Sharpe ratio for the number of configurations tried, the
probability of backtest overfitting (PBO, combinatorially symmetric cross-validation) and a walk-forward
check (the search re-run on each expanding training window, its winner traded on the next unseen window).
Grid search is exhaustive; sma_cross, rsi_reversion and buy_hold run through the compiled sweep, other
strategies through the event-driven backtest. TPE uses Optuna. With --storage postgresql://… the study is
kept in that database: run the same command on several machines with one --study name to share it.
See docs/optimize.md.

Examples:

  smartmarket optimize --strategy sma_cross --symbol BTCUSDT --timeframe 1h --space fast=5:50:5,slow=20:200:10

  smartmarket optimize --strategy rsi_reversion -s BTCUSDT -t 4h --space period=7:28:7,lower=20:35:5 \
    --method tpe --trials 50 --json

  smartmarket optimize --strategy sma_cross -s BTCUSDT -t 1h --space fast=5:50:5,slow=20:200:10 --out opt.html
"""


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "—" if value is None else fmt.format(value)


def print_report(report: OptimizeReport) -> None:
    """The study as tables: best parameters and trust figures, walk-forward folds, top configurations."""
    d = report.to_dict()
    title = f"optimize {report.strategy} on {report.symbol} {report.timeframe} ({report.method}, {report.objective})"
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("value")
    pbo = d["pbo"] or {}
    wf = d["walk_forward"]
    rows: list[tuple[str, str]] = [
        ("best parameters", ", ".join(f"{k}={v}" for k, v in report.best_params.items())),
        (f"in-sample {report.objective}", _num(report.best_value)),
        (f"walk-forward out-of-sample {report.objective}", _num(wf["out_of_sample"])),
        ("deflated Sharpe ratio", _num(report.deflated_sharpe)),
        ("Sharpe the best of N no-skill tries reaches", _num(report.expected_max_sharpe)),
        ("probability of backtest overfitting", _num(pbo.get("pbo"))),
        ("configurations tried", f"{report.n_trials:,} of {report.n_points:,}"),
        ("engine", report.engine),
        ("bars", f"{report.bars:,} from {format_ms(report.start_ts)} to {format_ms(report.end_ts)}"),
        ("total return (best, in-sample)", grammar.pct(report.best_metrics.get("total_return"), signed=True)),
        ("max drawdown (best, in-sample)", grammar.pct(report.best_metrics.get("max_drawdown"))),
        ("trades (best, in-sample)", str(report.best_metrics.get("trades"))),
    ]
    if report.study:
        rows.append(("study", report.study))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if report.walk_forward_folds:
        folds = Table(title="walk-forward folds (expanding training window)")
        for col in ("test from", "test to", "chosen parameters", "in-sample", "out-of-sample"):
            folds.add_column(col)
        for f in report.walk_forward_folds:
            params = ", ".join(f"{k}={v}" for k, v in f.params.items())
            folds.add_row(
                format_ms(f.test_start_ts), format_ms(f.test_end_ts), params, _num(f.in_sample), _num(f.out_of_sample)
            )
        console.print(folds)
    top = Table(title=f"top {len(report.top)} configurations (in-sample)")
    for col in ("parameters", report.objective, "total return", "trades", "max drawdown"):
        top.add_column(col)
    for entry in report.top:
        top.add_row(
            ", ".join(f"{k}={v}" for k, v in entry["params"].items()), _num(entry["value"]),
            grammar.pct(entry["total_return"], signed=True), str(entry["trades"]), grammar.pct(entry["max_drawdown"]),
        )  # fmt: skip
    console.print(top)
    for note in report.notes:
        console.print(note, style="dim", highlight=False)


def optimize_command(
    ctx: typer.Context,
    strategy: Annotated[str, typer.Option("--strategy", help="sma_cross, rsi_reversion, smc_bos, … or file.py:Class")],
    symbol: Annotated[str, typer.Option("--symbol", "-s", help="One symbol, e.g. BTCUSDT.")],
    space: Annotated[str, typer.Option("--space", help="Parameters to search: fast=5:50:5,slow=20:200:10.")],
    timeframe: Annotated[str, typer.Option("--timeframe", "-t", help="Bar timeframe, e.g. 1h.")] = "1h",
    method: Annotated[str, typer.Option("--method", help="grid (exhaustive) or tpe (Optuna).")] = "grid",
    trials: Annotated[int, typer.Option("--trials", help="TPE trials (grid: all points).")] = 100,
    objective: Annotated[str, typer.Option("--objective", help="sharpe, sortino, calmar or return.")] = "sharpe",
    walk_forward: Annotated[int, typer.Option("--walk-forward", help="Walk-forward folds (0: none).")] = 4,
    params: Annotated[str | None, typer.Option("--params", "-p", help="Fixed parameters: name=value,…")] = None,
    start: Annotated[str | None, typer.Option("--start", help="First bar open time (inclusive).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Bars opening before this time.")] = None,
    cash: Annotated[float, typer.Option("--cash", help="Starting cash.")] = 10_000.0,
    fee_bps: Annotated[float, typer.Option("--fee-bps", help="Fee per side, basis points (10 = 0.1 %).")] = 10.0,
    slippage_bps: Annotated[float, typer.Option("--slippage-bps", help="Slippage per market fill, bps.")] = 0.0,
    long_only: Annotated[bool, typer.Option("--long-only", help="Never short: short signals go flat.")] = False,
    vol_target: Annotated[float | None, typer.Option("--vol-target", help=VOL_TARGET_HELP)] = None,
    vol_model: Annotated[str | None, typer.Option("--vol-model", help=VOL_MODEL_HELP)] = None,
    max_leverage: Annotated[float, typer.Option("--max-leverage", help=MAX_LEVERAGE_HELP)] = 1.0,
    rebalance_band: Annotated[float, typer.Option("--rebalance-band", help=BAND_HELP)] = 0.1,
    storage: Annotated[
        str | None, typer.Option("--storage", envvar="SMARTMARKET_OPTUNA_STORAGE", help="Study database URL.")
    ] = None,
    study: Annotated[str | None, typer.Option("--study", help="Study name to create or join (with --storage).")] = None,
    heartbeat_s: Annotated[
        int, typer.Option("--heartbeat-s", min=1, help="With --storage: seconds between a worker's heartbeats.")
    ] = 10,
    grace_s: Annotated[
        int, typer.Option("--grace-s", min=1, help="With --storage: a trial silent this long is failed and retried.")
    ] = 30,
    seed: Annotated[int, typer.Option("--seed", help="Sampler seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Also write an HTML report (summary, parameter plateau heat maps) to this file."
        ),
    ] = None,
    old_fees: Annotated[float | None, grammar.FEES.option()] = None,
) -> None:
    fees = grammar.bps_to_fraction(grammar.FEES.resolve(fee_bps, old_fees))
    from smartmarket.ops.optimize import OptimizeRequest, optimize, parse_space, write_optimize_report

    symbols = [normalize_symbol(s) for s in symbol.split(",") if s.strip()]
    if len(symbols) != 1:
        raise ConfigError(f"optimize takes one --symbol, got {symbol!r}", hint="e.g. --symbol BTCUSDT")
    tf = Timeframe.parse(timeframe)
    start_ms, end_ms = parse_time(start), parse_time(end)
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise ConfigError(f"--end ({end}) must be after --start ({start})")
    config = kernel_config(
        cash=cash, fees=fees, slippage_bps=slippage_bps, fraction=1.0, latency=0, long_only=long_only,
        close_at_end=True, vol_target=vol_target, max_leverage=max_leverage, rebalance_band=rebalance_band,
        timeframe=tf, vol_model=vol_model,
    )  # fmt: skip
    request = OptimizeRequest(
        strategy=strategy,
        space=tuple(parse_space(space)),
        timeframe=tf,
        symbol=symbols[0],
        method=method,
        trials=trials,
        objective=objective,
        walk_forward=walk_forward,
        config=config,
        fixed=parse_params(params),
        seed=seed,
        storage=storage,
        study=study,
    )
    from smartmarket.strategies.registry import make_strategy

    make_strategy(strategy, **dict(request.fixed))  # unknown strategy: fail before reading data
    app_ctx = get_context(ctx)
    frame = read_frames(app_ctx.store, symbols, tf, start_ms, end_ms)[symbols[0]]
    with app_ctx.progress() as progress:
        report = optimize(frame, request, progress=progress, heartbeat_s=heartbeat_s, grace_s=grace_s)
    if out is not None:
        written = write_optimize_report(report, out)
        err_console.print(f"HTML report: {written.resolve()}", highlight=False)
    if as_json:
        document: dict[str, Any] = report.to_dict()
        typer.echo(json.dumps(document, indent=2, default=str))
        return
    print_report(report)


def register(app: typer.Typer) -> None:
    """Add ``optimize`` to ``app``."""
    app.command("optimize", help=HELP)(optimize_command)


__all__ = ["optimize_command", "print_report", "register"]
