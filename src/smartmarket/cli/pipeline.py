"""The live pipeline commands: ``run``, ``worker``, ``events``, ``replay`` (and ``bench pipeline``).

smartmarket run --symbols BTCUSDT,ETHUSDT --timeframe 1m --source file:data/{symbol}-1m.csv.gz
smartmarket worker risk --bus redis://127.0.0.1:6379/0 --symbols BTCUSDT --timeframe 1m
smartmarket events --type SignalGenerated --format json
smartmarket replay --from 1 --format table
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from smartmarket.cli import grammar
from smartmarket.cli.context import console, err_console, get_context
from smartmarket.core.errors import ConfigError
from smartmarket.core.redaction import redact_text
from smartmarket.core.timeutil import format_ms, parse_time
from smartmarket.core.types import Timeframe, normalize_symbol

SymbolsOpt = Annotated[str, typer.Option("--symbols", "-s", help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT.")]
TimeframeOpt = Annotated[str, typer.Option("--timeframe", "-t", help="Candle timeframe, e.g. 1m, 1h.")]
BusOpt = Annotated[
    str,
    typer.Option("--bus", envvar="SMARTMARKET_BUS", help="memory:// (in-process, default) or redis://host:6379/0."),
]
ArtifactOpt = Annotated[
    str,
    typer.Option(
        "--artifact", help="Ensemble artifact per symbol: 'production' (the promoted one), 'latest', or an id (prefix)."
    ),
]
ShadowOpt = Annotated[
    str | None,
    typer.Option("--shadow", help="A candidate ensemble artifact run beside production: recorded, never traded."),
]
RegistryOpt = Annotated[Path | None, typer.Option("--registry", help="Model registry folder (default: in HOME).")]
CashOpt = Annotated[float, typer.Option("--cash", help="Paper cash per symbol (each symbol is a sub-account).")]
MaxSizeOpt = Annotated[float, typer.Option("--max-size", help="Fraction of the sub-account at strength strong.")]
FeeOpt = Annotated[float, typer.Option("--fee-bps", help="Taker and maker fee in basis points.")]
SlippageOpt = Annotated[float, typer.Option("--slippage-bps", help="Fixed slippage in basis points per fill.")]
NoChecksOpt = Annotated[bool, typer.Option("--no-risk-checks", help="Run without the pre-trade risk checks.")]
StrategyOpt = Annotated[
    str,
    typer.Option("--strategy", help="What trades: 'ensemble' (the signal stages, default) or any strategy that "
                 "backtest accepts (sma_cross, rsi_reversion, ..., or file.py:ClassName; see docs/strategies.md)."),
]  # fmt: skip
ParamsOpt = Annotated[str | None, typer.Option("--params", "-p", help="Strategy parameters: name=value,name=value.")]
VolTargetOpt = Annotated[
    float | None,
    typer.Option("--vol-target", help="Size each symbol's sub-account for this annualised volatility (see backtest)."),
]
VolModelOpt = Annotated[
    str | None,
    typer.Option("--vol-model", help="With --vol-target: its volatility forecast, ewma (default) or har (HAR-RV)."),
]
MaxLeverageOpt = Annotated[float, typer.Option("--max-leverage", help="With --vol-target: most exposure per equity.")]
BandOpt = Annotated[float, typer.Option("--rebalance-band", help="With --vol-target: resize outside this band.")]
ReconcileOpt = Annotated[
    str,
    typer.Option("--reconcile", help="--broker ccxt: compare the book with the exchange at start and every 5 min; "
                 "'check' halts new orders on a difference, 'adopt' takes the exchange's positions, 'off'."),
]  # fmt: skip


def _symbols(text: str) -> list[str]:
    symbols = [normalize_symbol(s) for s in text.split(",") if s.strip()]
    if not symbols:
        raise ConfigError("no symbol given", hint="e.g. --symbols BTCUSDT,ETHUSDT")
    return symbols


def _trading(
    cash: float, max_size: float, fee_bps: float, slippage_bps: float, no_checks: bool, reconcile: str = "check",
    vol_target: float | None = None, max_leverage: float = 1.0, band: float = 0.1, timeframe: str = "1h",
    vol_model: str | None = None, exits: tuple[float | None, float | None, float | None] = (None, None, None),
) -> Any:  # fmt: skip
    """The trading set-up of ``run``/``worker``; ``exits``: --stop-loss, --take-profit, --trailing-stop (percent)."""
    from dataclasses import replace

    from smartmarket.execution.fees import FeeModel
    from smartmarket.execution.reconcile import RECONCILE_MODES
    from smartmarket.execution.risk import exits_from_percent
    from smartmarket.execution.risk_checks import RiskLimits
    from smartmarket.execution.sizing import vol_model_option
    from smartmarket.execution.slippage import FixedBps
    from smartmarket.pipeline.stages.spec import TradingConfig

    model = vol_model_option(vol_model, vol_target)
    if reconcile not in RECONCILE_MODES:
        raise ConfigError(f"unknown --reconcile {reconcile!r}", hint=f"use {', '.join(RECONCILE_MODES)}")
    rate = fee_bps / 10_000
    trading = TradingConfig(
        initial_cash=cash, fees=FeeModel(maker=rate, taker=rate), slippage=FixedBps(slippage_bps),
        max_size=max_size, limits=None if no_checks else RiskLimits(), reconcile=reconcile,  # type: ignore[arg-type]
        risk=exits_from_percent(*exits),
    )  # fmt: skip
    if vol_target is None:
        if max_leverage != 1.0 or band != 0.1:
            raise ConfigError("--max-leverage and --rebalance-band apply to --vol-target", hint="add --vol-target 0.2")
        return trading
    from smartmarket.execution.sizing import annual_volatility_target

    sizer = annual_volatility_target(
        vol_target, Timeframe.parse(timeframe), max_leverage=max_leverage, band=band, model=model
    )
    risk = replace(trading.risk, max_position_fraction=max_leverage, max_gross_exposure=max_leverage)
    return replace(trading, sizer=sizer, risk=risk)


def _spec(
    ctx: typer.Context, symbols: Sequence[str], timeframe: str, artifact: str | dict[str, str], registry: Path | None,
    trading: Any, shadow: str | None = None, strategy: str = "ensemble", params: str | None = None,
) -> Any:  # fmt: skip
    from smartmarket.cli.backtest import parse_params
    from smartmarket.pipeline.stages.spec import ArtifactEngines, PipelineSpec, StrategyChoice

    tf = Timeframe.parse(timeframe)
    if strategy != "ensemble":
        if shadow:
            raise ConfigError("--shadow runs a candidate ensemble beside the production one",
                              hint="leave --strategy out to trade the ensemble with a shadow")  # fmt: skip
        choice = StrategyChoice(strategy, parse_params(params))
        return PipelineSpec.build(symbols, tf, None, trading, strategy=choice)
    if params:
        raise ConfigError("--params is for --strategy NAME", hint="the ensemble takes --artifact and --max-size")
    registry_dir = registry or get_context(ctx).settings.registry_dir
    engines = ArtifactEngines(registry_dir, tf, artifact)
    candidate = ArtifactEngines(registry_dir, tf, shadow) if shadow else None
    for symbol in symbols:  # fail now, with the fix, rather than inside a stage
        engines.version(symbol)
        if candidate is not None and candidate.version(symbol) == engines.version(symbol):
            raise ConfigError(f"--shadow {shadow} is the artifact already running for {symbol}",
                              hint="shadow a different candidate")  # fmt: skip
    return PipelineSpec.build(symbols, tf, engines, trading, shadow=candidate)


def _recorded_artifacts(store: Any, symbols: Sequence[str]) -> dict[str, str]:
    """Per symbol, the one ensemble artifact the log's ``SignalGenerated`` events name."""
    ids: dict[str, set[str]] = {s: set() for s in symbols}
    for stored in store.read_events(types=["SignalGenerated"]):
        m = stored.message
        if m.symbol in ids and getattr(m, "model_id", None):
            ids[m.symbol].add(m.model_id)
    for symbol, found in ids.items():
        if len(found) != 1:
            names = ", ".join(sorted(found)) or "none"
            raise ConfigError(f"the log's {symbol} signals name {len(found)} artifacts ({names})",
                              hint="give --artifact ID (and --from/--to around one run)")  # fmt: skip
    return {symbol: found.pop() for symbol, found in ids.items()}


def deployment_broker(name: str, exchange: str) -> str:
    """How every worker of a deployment names its broker (``--broker``, ``--exchange``), as ``RunStarted`` records
    it: only the execution worker opens the broker, but the risk worker must know it is live."""
    if name == "paper":
        return "paper"
    if name == "ccxt":
        return f"ccxt:{exchange}"
    raise ConfigError(f"unknown broker {name!r}", hint="use paper or ccxt")


def _broker(name: str, exchange: str, symbols: Sequence[str]) -> Any:
    if deployment_broker(name, exchange) == "paper":
        return None
    from smartmarket.execution.ccxt_broker import CcxtBroker

    return CcxtBroker(exchange, sandbox=True, symbols=symbols)


# What each latency of the run summary measures (``PipelineMetrics.latency_ms``): at --speed 0 a whole file is
# published at once, so the candles' wait in the backlog dwarfs the processing and must not be called latency.
LATENCY_LABELS = {
    "candle_backlog": "backlog delay: candle waiting for the features stage",
    "candle_processing": "processing latency: features stage → signal",
    "candle_to_signal": "candle → signal in all (backlog + processing)",
    "signal_to_order": "signal → order in all",
}


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title="pipeline run", show_header=False)
    for key in ("candles", "recorded", "dead_lettered", "handler_failures", "claimed", "orders_waiting", "drained"):
        table.add_row(key, str(summary.get(key)))
    for name, count in summary.get("published", {}).items():
        table.add_row(f"published {name}", str(count))
    latencies = summary.get("latency_ms", {})
    for name in sorted(latencies, key=lambda n: list(LATENCY_LABELS).index(n) if n in LATENCY_LABELS else 99):
        lat = latencies[name]
        if lat.get("n"):
            label = LATENCY_LABELS.get(name, name)
            table.add_row(f"{label}, p50 / p99 ms", f"{lat['p50_ms']:,} / {lat['p99_ms']:,} (n={lat['n']:,})")
    table.add_row("seconds", str(summary.get("seconds")))
    console.print(table)


def _run_pipeline(ctx: typer.Context, spec: Any, bus_url: str, options: Any, broker: Any, source: Any,
                  metrics_port: int | None) -> dict[str, Any]:  # fmt: skip
    from smartmarket.bus.url import open_bus
    from smartmarket.pipeline.live import LivePipeline

    store = get_context(ctx).store if "recorder" in options.stages or set(options.stages) - {"candles"} else None

    async def go() -> dict[str, Any]:
        bus = open_bus(bus_url)
        try:
            pipeline = LivePipeline(spec, store, bus, options=options, broker=broker)
            if metrics_port:
                from prometheus_client import start_http_server

                start_http_server(metrics_port, registry=pipeline.metrics.registry)
            pipeline.install_signal_handlers()
            return (await pipeline.run(source)).to_dict()
        finally:
            await bus.close()

    import asyncio  # here, not at module level: the CLI starts faster

    return asyncio.run(go())


def register(app: typer.Typer) -> None:
    """Add ``run``, ``worker``, ``events``, ``replay`` to ``app`` and ``pipeline`` to ``bench``."""

    @app.command("run")
    def run_command(
        ctx: typer.Context,
        symbols: SymbolsOpt,
        timeframe: TimeframeOpt = "1m",
        bus: BusOpt = "memory://",
        source: Annotated[
            str, typer.Option("--source", help="file:PATH (file, folder, or {symbol} pattern) or exchange:ID.")
        ] = "exchange:binance",
        broker: Annotated[str, typer.Option("--broker", help="paper (default) or ccxt (exchange sandbox).")] = "paper",
        exchange: Annotated[str, typer.Option("--exchange", help="Exchange of the ccxt broker.")] = "binance",
        speed: Annotated[float, typer.Option("--speed", help="File source: candle-seconds per second; 0 = max.")] = 0,
        artifact: ArtifactOpt = "production",
        shadow: ShadowOpt = None,
        registry: RegistryOpt = None,
        cash: CashOpt = 10_000.0,
        max_size: MaxSizeOpt = 1.0,
        fee_bps: FeeOpt = 10.0,
        slippage_bps: SlippageOpt = 0.0,
        no_risk_checks: NoChecksOpt = False,
        strategy: StrategyOpt = "ensemble",
        params: ParamsOpt = None,
        reconcile: ReconcileOpt = "check",
        vol_target: VolTargetOpt = None,
        vol_model: VolModelOpt = None,
        max_leverage: MaxLeverageOpt = 1.0,
        rebalance_band: BandOpt = 0.1,
        stop_loss: grammar.StopLossOpt = None,
        take_profit: grammar.TakeProfitOpt = None,
        trailing_stop: grammar.TrailingStopOpt = None,
        metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics.")] = None,
        json_logs: Annotated[bool, typer.Option("--json-logs", help="Structured JSON logs on stderr.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    ) -> None:
        """Run the whole pipeline in this process: candles → features → predictions → signals → risk →
        execution → portfolio, every event recorded in the store. A file source ends when consumed and drained.
        Uses each symbol's production ensemble by default; --shadow runs a candidate beside it (see ab-report);
        --strategy NAME paper-trades any strategy that backtest accepts instead (only the order path runs).

        Example: smartmarket run --symbols BTCUSDT --timeframe 1h --source file:BTCUSDT-1h.csv.gz
        Example: smartmarket run --symbols BTCUSDT --source file:BTC-1h.csv --strategy sma_cross -p fast=10,slow=30
        """
        from smartmarket.pipeline.live import RunOptions
        from smartmarket.pipeline.sources import open_source

        if json_logs:
            from smartmarket.pipeline.observability import use_json_logs

            use_json_logs()
        names = _symbols(symbols)
        trading = _trading(cash, max_size, fee_bps, slippage_bps, no_risk_checks, reconcile, vol_target, max_leverage,
                           rebalance_band, timeframe, vol_model, (stop_loss, take_profit, trailing_stop))  # fmt: skip
        spec = _spec(ctx, names, timeframe, artifact, registry, trading, shadow, strategy, params)
        candle_source = open_source(source, names, spec.timeframe, speed=speed)
        summary = _run_pipeline(ctx, spec, bus, RunOptions(), _broker(broker, exchange, names), candle_source,
                                metrics_port)  # fmt: skip
        if as_json:
            typer.echo(json.dumps(summary, indent=2, default=str))
        else:
            _print_summary(summary)
        if summary.get("not_idle"):
            raise typer.Exit(1)

    @app.command("worker")
    def worker_command(
        ctx: typer.Context,
        stage: Annotated[
            str, typer.Argument(help="candles, features, predictions, signals, risk, execution, portfolio or recorder.")
        ],
        symbols: SymbolsOpt,
        timeframe: TimeframeOpt = "1m",
        bus: BusOpt = "redis://127.0.0.1:6379/0",
        source: Annotated[str | None, typer.Option("--source", help="The candles worker's source.")] = None,
        speed: Annotated[float, typer.Option("--speed", help="File source speed (0 = max).")] = 0,
        broker: Annotated[str, typer.Option("--broker", help="paper or ccxt: the same on every worker of a deployment "
                                            "(only the execution worker opens the exchange).")] = "paper",
        exchange: Annotated[str, typer.Option("--exchange", help="Exchange of the ccxt broker.")] = "binance",
        consumer: Annotated[str | None, typer.Option("--consumer", help="Consumer name (default: host-pid).")] = None,
        claim_idle_ms: Annotated[
            int,
            typer.Option("--claim-idle-ms", help="Claim another consumer's entries idle this long (a dead worker's)."),
        ] = 30_000,
        artifact: ArtifactOpt = "production",
        shadow: ShadowOpt = None,
        registry: RegistryOpt = None,
        cash: CashOpt = 10_000.0,
        max_size: MaxSizeOpt = 1.0,
        fee_bps: FeeOpt = 10.0,
        slippage_bps: SlippageOpt = 0.0,
        no_risk_checks: NoChecksOpt = False,
        strategy: StrategyOpt = "ensemble",
        params: ParamsOpt = None,
        reconcile: ReconcileOpt = "check",
        vol_target: VolTargetOpt = None,
        vol_model: VolModelOpt = None,
        max_leverage: MaxLeverageOpt = 1.0,
        rebalance_band: BandOpt = 0.1,
        stop_loss: grammar.StopLossOpt = None,
        take_profit: grammar.TakeProfitOpt = None,
        trailing_stop: grammar.TrailingStopOpt = None,
        metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics.")] = None,
        json_logs: Annotated[bool, typer.Option("--json-logs", help="Structured JSON logs on stderr.")] = False,
    ) -> None:
        """Run one stage as its own process; start more with the same STAGE to share its consumer group.

        Runs until SIGINT/SIGTERM (graceful: the current batch finishes, the rest stays pending for others).
        Example: smartmarket worker risk --bus redis://127.0.0.1:6379/0 --symbols BTCUSDT --timeframe 1m
        """
        from smartmarket.pipeline.live import RunOptions
        from smartmarket.pipeline.sources import open_source
        from smartmarket.pipeline.stages import OPTIONAL_STAGES, SHADOW_STAGE, STAGE_NAMES

        if stage not in STAGE_NAMES + OPTIONAL_STAGES:
            known = ", ".join(STAGE_NAMES + OPTIONAL_STAGES)
            raise ConfigError(f"unknown stage {stage!r}", hint=f"use one of: {known}")
        if stage == SHADOW_STAGE and not shadow:
            raise ConfigError("the shadow worker needs the candidate", hint="give --shadow MODEL_ID")
        if json_logs:
            from smartmarket.pipeline.observability import use_json_logs

            use_json_logs()
        names = _symbols(symbols)
        trading = _trading(cash, max_size, fee_bps, slippage_bps, no_risk_checks, reconcile, vol_target, max_leverage,
                           rebalance_band, timeframe, vol_model, (stop_loss, take_profit, trailing_stop))  # fmt: skip
        spec = _spec(ctx, names, timeframe, artifact, registry, trading, shadow, strategy, params)
        if stage not in spec.stage_names((stage,)):
            raise ConfigError(f"a pipeline trading --strategy {strategy} has no {stage} stage",
                              hint="run the candles, risk, execution, portfolio and recorder workers")  # fmt: skip
        candle_source = None
        if stage == "candles":
            if not source:
                raise ConfigError("the candles worker needs --source", hint="file:PATH or exchange:binance")
            candle_source = open_source(source, names, spec.timeframe, speed=speed)
        options = RunOptions(stages=(stage,), consumer=consumer, claim_min_idle_ms=claim_idle_ms,
                             claim_every_ms=max(100, min(5_000, claim_idle_ms // 2)),
                             broker=deployment_broker(broker, exchange))  # fmt: skip
        the_broker = _broker(broker, exchange, names) if stage == "execution" else None
        summary = _run_pipeline(ctx, spec, bus, options, the_broker, candle_source, metrics_port)
        err_console.print(f"worker {stage} stopped: {json.dumps(summary.get('handled', {}))}")

    @app.command("events")
    def events_command(
        ctx: typer.Context,
        correlation: Annotated[str | None, typer.Option("--correlation", help="One candle's chain.")] = None,
        type_: Annotated[
            list[str] | None, typer.Option("--type", help="Event type, e.g. SignalGenerated (repeatable).")
        ] = None,
        since: Annotated[str | None, typer.Option("--start", help="ts_event from (ISO time or epoch ms).")] = None,
        until: Annotated[str | None, typer.Option("--end", help="ts_event before (ISO time or epoch ms).")] = None,
        symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="Only this symbol.")] = None,
        limit: Annotated[int, typer.Option("--limit", help="At most this many events (the latest).")] = 200,
        fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
        old_since: Annotated[str | None, grammar.SINCE.option()] = None,
        old_until: Annotated[str | None, grammar.UNTIL.option()] = None,
    ) -> None:
        """Show recorded events: a candle's whole chain with --correlation, or filtered by type and time.

        Example: smartmarket events --type SignalGenerated --start 2024-01-01 --format csv
        """
        since, until = grammar.SINCE.resolve(since, old_since), grammar.UNTIL.resolve(until, old_until)
        if fmt not in ("table", "csv", "json"):
            raise ConfigError(f"unknown format {fmt!r}", hint="use table, csv or json")
        from smartmarket.core.events import MESSAGE_TYPES

        for t in type_ or []:
            if t not in MESSAGE_TYPES:
                raise ConfigError(f"unknown event type {t!r}", hint=f"use one of: {', '.join(MESSAGE_TYPES)}")
        store = get_context(ctx).store
        events = store.read_events(
            start=parse_time(since), end=parse_time(until), types=type_ or None, correlation_id=correlation
        )
        if symbol:
            wanted = normalize_symbol(symbol)
            events = [e for e in events if getattr(e.message, "symbol", None) == wanted]
        events = events[-limit:] if limit > 0 else events
        rows = [{"seq": e.seq, **e.message.to_dict()} for e in events]
        if fmt == "json":
            typer.echo(json.dumps(rows, indent=2, default=str))
        elif fmt == "csv":
            typer.echo(_csv(rows), nl=False)
        else:
            _print_events(rows)

    @app.command("replay")
    def replay_command(
        ctx: typer.Context,
        from_: Annotated[
            str | None, typer.Option("--from", help="First seq (number) or time (ISO / epoch ms).")
        ] = None,
        to: Annotated[str | None, typer.Option("--to", help="Last seq (number) or end time.")] = None,
        run: Annotated[
            str | None, typer.Option("--run", help="The recorded run to replay (id or prefix; default: the latest).")
        ] = None,
        symbols: Annotated[
            str | None, typer.Option("--symbols", "-s", help="Default: every symbol of the run.")
        ] = None,
        timeframe: Annotated[str | None, typer.Option("--timeframe", "-t", help="Default: the log's only one.")] = None,
        artifact: Annotated[
            str,
            typer.Option(
                "--artifact",
                help="'recorded' (what the run recorded at its start), 'production', "
                "'latest' or an id (prefix): then give the run's trading options too.",
            ),
        ] = "recorded",
        registry: RegistryOpt = None,
        cash: Annotated[float | None, typer.Option("--cash", help="With --artifact: the run's --cash.")] = None,
        max_size: Annotated[float | None, typer.Option("--max-size", help="With --artifact: the run's.")] = None,
        fee_bps: Annotated[float | None, typer.Option("--fee-bps", help="With --artifact: the run's.")] = None,
        slippage_bps: Annotated[
            float | None, typer.Option("--slippage-bps", help="With --artifact: the run's.")
        ] = None,
        no_risk_checks: Annotated[
            bool | None, typer.Option("--no-risk-checks", help="With --artifact: the run's.", show_default=False)
        ] = None,
        fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    ) -> None:
        """Re-run the pipeline from the log's candles and compare what it derives with what was recorded, field by
        field (all fields but ts_init): signals, orders, risk rejections and, for a paper-trading run, the broker's
        answers, fills and positions. Exits 1 listing the differences, 0 when identical.

        What ran comes from the run's own record (RunStarted); --artifact and the trading options replay a log
        written before runs were recorded.

        Example: smartmarket replay --from 2024-01-01
        """
        from smartmarket.pipeline.replay import replay, replay_run

        store = get_context(ctx).store
        bounds = _replay_bounds(from_, to)
        options = {"--cash": cash, "--max-size": max_size, "--fee-bps": fee_bps, "--slippage-bps": slippage_bps,
                   "--no-risk-checks": no_risk_checks}  # fmt: skip
        given = [name for name, value in options.items() if value is not None]
        names = _symbols(symbols) if symbols else None
        if artifact == "recorded" and (run is not None or _records_runs(store)):
            if given:
                raise ConfigError(f"{given[0]} is recorded with the run", hint="leave it out, or replay --artifact ID")
            registry_dir = registry or get_context(ctx).settings.registry_dir
            report = replay_run(store, registry_dir, run_id=run, symbols=names, **bounds)
        else:
            if run is not None:
                raise ConfigError("--run replays a recorded run", hint="leave --artifact out (or give 'recorded')")
            candles = [e.message for e in store.read_events(types=["CandleClosed"])]
            if not candles:
                raise ConfigError("the event log holds no candles", hint="run the pipeline first (smartmarket run)")
            names = names or sorted({str(getattr(c, "symbol", "")) for c in candles})
            tf = timeframe or _only_timeframe(candles)
            refs: str | dict[str, str] = _recorded_artifacts(store, names) if artifact == "recorded" else artifact
            trading = _trading(
                10_000.0 if cash is None else cash, 1.0 if max_size is None else max_size,
                10.0 if fee_bps is None else fee_bps, slippage_bps or 0.0, bool(no_risk_checks),
            )  # fmt: skip
            spec = _spec(ctx, names, tf, refs, registry, trading)
            report = replay(store, spec, from_seq=bounds["from_seq"], to_seq=bounds["to_seq"], start=bounds["start"],
                            end=bounds["end"])  # fmt: skip
        if fmt == "json":
            typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
        else:
            compared = ", ".join(f"{n} {t}" for t, n in report.compared.items()) or "nothing"
            which = f"run {report.run_id}: " if report.run_id else ""
            console.print(f"{which}replayed {report.candles} candles, compared {compared}")
            for diff in report.differences[:200]:
                console.print(f"[red]{escape(diff.describe())}[/]", highlight=False, soft_wrap=True)
            if report.identical:
                console.print("[green]identical[/]")
            else:
                console.print(f"[red]{len(report.differences)} difference(s)[/]")
        if not report.identical:
            raise typer.Exit(1)

    from smartmarket.cli.bench import bench_app

    @bench_app.command("pipeline")
    def bench_pipeline_command(
        redis: Annotated[str, typer.Option("--redis", help="Redis URL for the Redis-bus half.")] = (
            "redis://127.0.0.1:6379/0"
        ),
        samples: Annotated[int, typer.Option("--samples", help="Candles timed per bus.")] = 300,
        gap_ms: Annotated[int, typer.Option("--gap-ms", help="Wall time between timed candles.")] = 80,
        bus_events: Annotated[int, typer.Option("--bus-events", help="Events for the Redis throughput.")] = 100_000,
        runtime: Annotated[
            str, typer.Option("--runtime", help="Transformer runtime: torch, onnx, both (side by side) or auto.")
        ] = "both",
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """End-to-end candle → SignalGenerated latency with the full ensemble (technical, SMC and a seed
        Transformer at 1024 candles), in-process and Redis buses, plus Redis throughput.

        Example: smartmarket bench pipeline --json
        """
        from smartmarket.bench.pipeline import run_pipeline_benchmark

        result = run_pipeline_benchmark(
            redis, samples=samples, gap_s=gap_ms / 1000, bus_events=bus_events, runtime=runtime,
            log=lambda msg: err_console.print(f"[dim]{escape(redact_text(msg))}[/]"),
        )  # fmt: skip
        if as_json:
            typer.echo(json.dumps(result, indent=2, default=str))
            return
        table = Table(title="pipeline latency: candle → SignalGenerated")
        for col in ("runtime", "bus", "p50 ms", "p99 ms", "events/s"):
            table.add_column(col)
        for name, figures in result.get("runtimes", {"-": result}).items():
            for bus_name in ("engine_only", "inprocess", "redis"):
                r = figures[bus_name]
                table.add_row(
                    name, bus_name, str(r.get("p50_ms")), str(r.get("p99_ms")), str(r.get("events_per_s", ""))
                )
        console.print(table)
        console.print(result.get("setup", {}))


def _replay_bounds(from_: str | None, to: str | None) -> dict[str, int | None]:
    """``--from``/``--to`` as replay's ``from_seq``/``to_seq`` (numbers) or ``start``/``end`` (times)."""
    bounds: dict[str, int | None] = {"from_seq": None, "to_seq": None, "start": None, "end": None}
    for text, seq_key, time_key in ((from_, "from_seq", "start"), (to, "to_seq", "end")):
        if text is not None:
            value, is_seq = _seq_or_time(text)
            bounds[seq_key if is_seq else time_key] = value
    return bounds


def _records_runs(store: Any) -> bool:
    """True when the log records run starts (``RunStarted``): logs written before that name artifacts only."""
    return bool(store.read_events(types=["RunStarted"], limit=1))


def _seq_or_time(text: str) -> tuple[int, bool]:
    """A small number is a sequence number; a date or an epoch-ms value is a time."""
    value = parse_time(text)
    assert value is not None
    return value, text.strip().isdigit() and value < 10**11


def _only_timeframe(candles: Sequence[Any]) -> str:
    found = sorted({str(getattr(c, "timeframe", "")) for c in candles})
    if len(found) != 1:
        raise ConfigError(f"the log holds candles of {found or 'no'} timeframes", hint="pass --timeframe")
    return found[0]


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return "" if value is None else str(value)


def _csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return out.getvalue()


def _print_events(rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(rows)} events")
    for col in ("seq", "type", "ts_event", "symbol", "detail", "correlation", "causation"):
        table.add_column(col, overflow="fold")
    for row in rows:
        detail = {k: v for k, v in row.items() if k not in _COMMON}
        table.add_row(
            str(row["seq"]), row["type"], format_ms(int(row["ts_event"]), short=True), str(row.get("symbol", "")),
            _short(detail), str(row.get("correlation_id", ""))[:12], str(row.get("causation_id") or "")[:12],
        )  # fmt: skip
    console.print(table)


_COMMON = {"seq", "type", "event_id", "ts_event", "ts_init", "correlation_id", "causation_id", "version", "symbol",
           "timeframe"}  # fmt: skip


def _short(detail: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={_cell(v)}" for k, v in detail.items() if k not in ("features", "member_probabilities"))
    return text if len(text) <= 90 else text[:87] + "..."


__all__ = ["LATENCY_LABELS", "register"]
