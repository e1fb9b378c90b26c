"""Signal commands: ``fit-signals``, ``signals``, ``evaluate-signals`` and ``monitor``.

``fit-signals`` fits a deployable ensemble artifact (calibrators, ensemble weights, confidence, thresholds) on
stored candles and saves it in the model registry (kind ``ensemble``). ``signals``, ``monitor`` and
``evaluate-signals`` run the per-candle ``SignalEngine`` with that artifact over stored candles (warming up on
``--warmup`` bars before ``--start``). ``evaluate-signals --walk-forward N`` instead runs the research
walk-forward evaluation (``signals.evaluation``) and writes its report. Heavy imports (torch, sklearn) happen
inside the commands so the rest of the CLI starts fast.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from smartmarket.cli import grammar
from smartmarket.cli.context import ProgressFn, console, err_console, get_context, task
from smartmarket.core.errors import ConfigError, NotFoundError
from smartmarket.core.timeutil import format_ms, parse_time
from smartmarket.core.types import Timeframe, normalize_symbol

if TYPE_CHECKING:  # numpy, pandas, torch and sklearn load inside the commands (fast start-up)
    from smartmarket.signals.engine import SignalEngine
    from smartmarket.signals.fit import EnsembleArtifact
    from smartmarket.signals.strength import Signal

FORMATS = ("table", "csv", "json")
DEFAULT_WARMUP = 1000
# The walk-forward networks' default budget (the same as signals.evaluation.EvaluationConfig's, tested).
NETWORK_PRESET, NETWORK_EPOCHS, NETWORK_STEPS, NETWORK_BATCH, NETWORK_THREADS = "small", 10, 100, 64, 1

SymbolArg = Annotated[str, typer.Argument(help="Symbol, e.g. BTCUSDT.")]
TimeframeArg = Annotated[str, typer.Argument(help="Bar timeframe, e.g. 1h.")]
StartOpt = Annotated[str | None, typer.Option("--start", help="First bar open time (inclusive), ISO or epoch ms.")]
EndOpt = Annotated[str | None, typer.Option("--end", help="Bars opening before this time.")]
ArtifactOpt = Annotated[
    str, typer.Option("--artifact", help="Ensemble artifact id, id prefix or folder; 'latest' for this symbol.")
]
WarmupOpt = Annotated[int, typer.Option("--warmup", help="Bars before --start fed to warm the engine up.")]


# ------------------------------------------------------------------------------------------ helpers


def _span(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    start_ms, end_ms = parse_time(start), parse_time(end)
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise ConfigError(f"--end ({end}) must be after --start ({start})")
    return start_ms, end_ms


def _load(ctx: typer.Context, ref: str, symbol: str, tf: Timeframe) -> tuple[EnsembleArtifact, Path]:
    from smartmarket.signals.fit import load_artifact

    registry = get_context(ctx).settings.registry_dir
    return load_artifact(ref, registry, symbol=symbol, timeframe=str(tf)), registry


def run_engine(
    ctx: typer.Context, symbol: str, timeframe: str, artifact: str, start: str | None, end: str | None, warmup: int,
    *, default_after_fit: bool = False, progress: ProgressFn | None = None,
) -> tuple[SignalEngine, list[Signal], EnsembleArtifact, int]:  # fmt: skip
    """The engine fed every candle of the range (plus warm-up); returns ``(engine, signals, artifact, first)``
    where ``signals[first:]`` are the bars at or after ``--start``. ``progress``: the run, candle by candle."""
    from smartmarket.ops.signals import read_candles
    from smartmarket.signals.engine import SignalEngine

    sym, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
    start_ms, end_ms = _span(start, end)
    art, registry = _load(ctx, artifact, sym, tf)
    if start_ms is None and default_after_fit:
        start_ms = int(art.data["last_ts"]) + tf.ms  # out of sample: after the artifact's data
    frame, begin = read_candles(get_context(ctx).store, sym, tf, start_ms, end_ms, warmup)
    if begin >= len(frame):
        raise NotFoundError(
            f"no {sym} {tf} candles after {format_ms(start_ms or 0)}",
            hint="the artifact was fitted on all stored candles: pass --start/--end, or refit on an earlier span",
        )
    engine = SignalEngine.from_artifact(art, registry_dir=registry)
    name = f"signals of {art.artifact_id} over {len(frame):,} candles"
    return engine, engine.run(frame, progress=task(progress, name) if progress else None), art, begin


def signals_csv(signals: Sequence[Signal], members: Sequence[str]) -> str:
    out = io.StringIO()
    from smartmarket.ops.signals import signal_record

    writer = csv.writer(out, lineterminator="\n")
    header = ["ts", "time", "direction", "confidence", "strength", "regime", "p_down", "p_flat", "p_up"]
    writer.writerow(header + [f"weight_{m}" for m in members] + ["reason"])
    for s in signals:
        r = signal_record(s)
        probs = ["" if r[k] is None else f"{r[k]:.6f}" for k in ("p_down", "p_flat", "p_up")]
        weights = [f"{s.member_weights.get(m, 0.0):.6f}" for m in members]
        writer.writerow([r["ts"], r["time"], r["direction"], f"{r['confidence']:.6f}", r["strength"], r["regime"],
                         *probs, *weights, r["reason"]])  # fmt: skip
    return out.getvalue()


def _json_text(doc: Any) -> str:
    import numpy as np

    def clean(value: Any) -> Any:
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, np.generic):
            return clean(value.item())
        return value

    return json.dumps(clean(doc), indent=2)


def _pct(value: float | None) -> str:
    return grammar.pct(value)


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


# ------------------------------------------------------------------------------------------ fit


def _print_fit(doc: Mapping[str, Any]) -> None:
    console.print(f"saved [bold]{doc['id']}[/] ({doc['data']['samples']:,} samples "
                  f"{doc['data']['first']} → {doc['data']['last']})", highlight=False)  # fmt: skip
    table = Table(box=box.SIMPLE_HEAD, title="members", title_justify="left")
    for col in ("member", "weight", "skill (nats)", "± SE", "calibration"):
        table.add_column(col, justify="right" if col != "member" else "left")
    for name in doc["members"]:
        skill = doc["member_skill"].get(name, {})
        cal = doc["calibration"].get(name, {})
        table.add_row(name, _f((doc["weights"] or {}).get(name)), _f(skill.get("nats"), 4), _f(skill.get("se"), 4),
                      f"{cal.get('method')} (n={cal.get('n')})")  # fmt: skip
    console.print(table)
    console.print(f"confidence: {doc['confidence']['chosen']} — {doc['confidence']['reason']}", highlight=False)
    t = doc["thresholds"]
    console.print(f"strength thresholds: weak {_f(t['weak'])}, moderate {_f(t['moderate'])}, strong {_f(t['strong'])}"
                  " (inf: never given)", highlight=False)  # fmt: skip


# ------------------------------------------------------------------------------------------ evaluation


def _print_evaluation(doc: Mapping[str, Any]) -> None:
    title = f"signals of {doc['artifact']} on {doc['span'][0]} → {doc['span'][1]}"
    title += " (out of sample)" if doc["out_of_sample"] else " (overlaps the artifact's data: in sample)"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("decisions", f"{doc['decisions']:,}"), ("signals (long/short)", f"{doc['signals']:,}"),
        ("signal rate", _pct(doc["signal_rate"])), ("hit rate", _pct(doc["hit_rate"])),
        ("false-signal rate", _pct(doc["false_signal_rate"])), ("Brier (3-class)", _f(doc["brier"])),
        ("ECE (top-label)", _f(doc["ece"])), ("confidence ECE", _f(doc["confidence_ece"])),
    ]  # fmt: skip
    rows += [(f"weight {k}", _f(v)) for k, v in doc["weights"].items()]
    rows += [(f"hit rate {k}", f"{_pct(v['hit_rate'])} of {v['signals']}") for k, v in doc["per_strength"].items()]
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)


# ------------------------------------------------------------------------------------------ demo


_MOVED = ("demo_signals_stage", "display_confidence", "engine_outcomes", "evaluate_engine_run", "fit_signals",
          "fit_summary", "never_signals_line", "read_candles", "signal_record")  # fmt: skip


def __getattr__(name: str) -> Any:
    """The use cases moved to ``ops.signals`` stay importable from here (imported on first use: fast start-up)."""
    if name in _MOVED:
        from smartmarket.ops import signals as use_cases

        return getattr(use_cases, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------ commands


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command("fit-signals", cls=grammar.Command)
    def fit_command(
        ctx: typer.Context,
        symbols: Annotated[
            str | None,
            typer.Option(
                "--symbols",
                "-s",
                help="One symbol, or several comma-separated pooled into one artifact "
                "(model members are then the pooled models of `train -s S1,S2,…`).",
            ),
        ] = None,
        timeframe: grammar.TimeframeOpt = None,
        members: Annotated[
            str,
            typer.Option(
                "--members",
                help="Comma-separated: technical, smc, logistic, lightgbm, cnn_lstm, "
                "transformer (models: the production one of that kind, else the latest candidate).",
            ),
        ] = "technical,smc",
        start: StartOpt = None,
        end: EndOpt = None,
        universe: Annotated[
            str | None, typer.Option("--universe", help="'all': pool every symbol stored for the timeframe.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
        old_symbol: grammar.OldSymbolArg = None,
        old_timeframe: grammar.OldTimeframeArg = None,
        old_symbol_opt: Annotated[str | None, grammar.SYMBOL_LIST.option()] = None,
    ) -> None:
        """Fit a deployable ensemble artifact (calibration, weights, confidence, thresholds) and save it.

        With -s S1,S2,… (several symbols, or --universe all), one artifact is fitted on every symbol's samples
        pooled by timestamp; model members are then the pooled models (`train -s S1,S2,…`).

        Example: smartmarket fit-signals -s BTCUSDT -t 1h --members technical,smc --start 2022-01-01 --end 2024-01-01
        """
        symbols = grammar.SYMBOL_LIST.resolve(symbols, old_symbol_opt)
        members = grammar.members_text(members)
        from smartmarket.ops.signals import fit_signals, fit_summary, never_signals_line
        from smartmarket.signals.members import parse_members

        app_ctx = get_context(ctx)
        start_ms, end_ms = _span(start, end)
        if (symbols is not None and "," in symbols) or universe is not None:
            from smartmarket.ops import universe_training as uni

            example = "smartmarket fit-signals -s S1,S2,… -t 4h"
            if symbols is not None and universe is not None:
                raise ConfigError("give either -s S1,S2,… or --universe all, not both", hint=f"e.g. {example}")
            if old_symbol is not None or old_timeframe is not None:
                raise ConfigError(f"unexpected argument {old_symbol or old_timeframe!r}", hint=f"e.g. {example}")
            timeframe = grammar.require(timeframe, "--timeframe/-t", example)
            chosen = uni.resolve_universe(
                app_ctx.store, timeframe, symbols=None if symbols is None else uni.parse_symbols(symbols),
                universe=universe,
            )  # fmt: skip
            with app_ctx.progress() as progress:
                art = uni.fit_universe_signals(app_ctx.store, chosen, timeframe, parse_members(members),
                                           app_ctx.settings.registry_dir, start=start_ms, end=end_ms,
                                           progress=progress)  # fmt: skip
        else:
            symbol, timeframe = grammar.positional_or_option(symbols, timeframe, old_symbol, old_timeframe,
                                                             "fit-signals")  # fmt: skip
            with app_ctx.progress() as progress:
                art = fit_signals(app_ctx.store, symbol, timeframe, parse_members(members),
                                  app_ctx.settings.registry_dir, start_ms, end_ms, progress)  # fmt: skip
        doc = fit_summary(art)
        if as_json:
            typer.echo(_json_text(doc))
        else:
            _print_fit(doc)
        warning = never_signals_line(art.artifact_id, doc["never_signals"])
        if warning:
            err_console.print(warning, style="yellow", highlight=False, markup=False, soft_wrap=True)

    @app.command("signals", cls=grammar.Command)
    def signals_command(
        ctx: typer.Context,
        symbol: grammar.SymbolOpt = None,
        timeframe: grammar.TimeframeOpt = None,
        start: StartOpt = None,
        end: EndOpt = None,
        fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
        artifact: ArtifactOpt = "latest",
        warmup: WarmupOpt = DEFAULT_WARMUP,
        limit: Annotated[int, typer.Option("--limit", help="Table only: show the last N signals.")] = 30,
        old_symbol: grammar.OldSymbolArg = None,
        old_timeframe: grammar.OldTimeframeArg = None,
    ) -> None:
        """Per-candle ensemble signals (direction, confidence, strength, regime, reason) over stored candles.

        Example: smartmarket signals -s BTCUSDT -t 1h --start 2024-06-01 --format csv > signals.csv
        """
        from smartmarket.ops.signals import signal_record

        symbol, timeframe = grammar.positional_or_option(symbol, timeframe, old_symbol, old_timeframe, "signals")
        if fmt not in FORMATS:
            raise ConfigError(f"unknown --format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")
        with get_context(ctx).progress() as progress:
            engine, signals, art, first = run_engine(ctx, symbol, timeframe, artifact, start, end, warmup,
                                                     progress=progress)  # fmt: skip
        shown = signals[first:]
        if fmt == "csv":
            typer.echo(signals_csv(shown, engine.member_names), nl=False)
        elif fmt == "json":
            typer.echo(_json_text({"artifact": art.artifact_id, "signals": [signal_record(s) for s in shown]}))
        else:
            table = Table(title=f"{art.symbol} {art.timeframe} signals ({art.artifact_id})", title_justify="left",
                          box=box.SIMPLE_HEAD)  # fmt: skip
            for col in ("time (UTC)", "direction", "confidence", "strength", "regime", "reason"):
                table.add_column(col, no_wrap=col != "reason")
            for s in shown[-limit:]:
                r = signal_record(s)
                table.add_row(format_ms(r["ts"], short=True), r["direction"], f"{r['confidence']:.3f}",
                              r["strength"], r["regime"], r["reason"])  # fmt: skip
            console.print(table)
            active = sum(1 for s in shown if s.direction != "flat")
            console.print(f"{len(shown):,} bars, {active:,} long/short signals", style="dim", highlight=False)

    @app.command("evaluate-signals", cls=grammar.Command)
    def evaluate_command(
        ctx: typer.Context,
        symbols: Annotated[
            str | None,
            typer.Option("--symbols", "-s", help="One symbol, or several comma-separated for the universe report "
                         "(traded as one account; needs --walk-forward)."),
        ] = None,
        timeframe: grammar.TimeframeOpt = None,
        start: StartOpt = None,
        end: EndOpt = None,
        artifact: ArtifactOpt = "latest",
        warmup: WarmupOpt = DEFAULT_WARMUP,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
        walk_forward: Annotated[
            int, typer.Option("--walk-forward", help="N > 0: research walk-forward evaluation with N folds.")
        ] = 0,
        members: Annotated[
            str,
            typer.Option("--members", help="Walk-forward members: technical, smc, logistic, lightgbm, transformer, "
                         "cnn_lstm (the networks retrain per fold: ~20 min more on 2 cores)."),
        ] = "technical,smc,logistic,lightgbm",
        test_bars: Annotated[int, typer.Option("--test-bars", help="Walk-forward: test bars per fold.")] = 7000,
        fit_bars: Annotated[int, typer.Option("--fit-bars", help="Walk-forward: signal-system fit bars.")] = 12000,
        train_bars: Annotated[int, typer.Option("--train-bars", help="Walk-forward: model training bars.")] = 20000,
        network_preset: Annotated[
            str, typer.Option("--network-preset", help="Walk-forward networks: size preset (small or seed).")
        ] = NETWORK_PRESET,
        network_epochs: Annotated[
            int, typer.Option("--network-epochs", min=1, help="Walk-forward networks: at most this many epochs.")
        ] = NETWORK_EPOCHS,
        network_steps: Annotated[
            int,
            typer.Option("--network-steps-per-epoch", min=0,
                         help="Walk-forward networks: batches per epoch (a random subset; 0 = all)."),
        ] = NETWORK_STEPS,
        network_batch: Annotated[
            int, typer.Option("--network-batch-size", min=1, help="Walk-forward networks: batch size.")
        ] = NETWORK_BATCH,
        threads: Annotated[
            int, typer.Option("--threads", min=1, help="Walk-forward networks: torch intra-op threads.")
        ] = NETWORK_THREADS,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="Walk-forward: write the Markdown report here (+ .json).")
        ] = None,
        fee_bps: Annotated[
            float, typer.Option("--fee-bps", min=0.0, help="Walk-forward: fee per side in basis points.")
        ] = 10.0,
        vol_target: Annotated[
            float | None,
            typer.Option("--vol-target", help="Universe report: size every system's positions for this annualised "
                         "volatility (the vol-targeted buy-and-hold baseline uses it too; default 0.2 for it)."),
        ] = None,
        vol_model: Annotated[
            str | None,
            typer.Option("--vol-model", help="With --vol-target: the volatility forecast, ewma (default) or har."),
        ] = None,
        old_symbol: grammar.OldSymbolArg = None,
        old_timeframe: grammar.OldTimeframeArg = None,
        old_report: Annotated[Path | None, grammar.REPORT.option()] = None,
        old_symbol_opt: Annotated[str | None, grammar.SYMBOL_LIST.option()] = None,
    ) -> None:  # fmt: skip
        """Measure signals out of sample: hit rate, Brier, ECE, weights, false-signal rate (see docs/signals.md).

        Without --walk-forward: the fitted artifact run candle by candle over --start/--end (default: the candles
        after the artifact's data). With --walk-forward N: refit everything per fold and compare the ensemble with
        each member alone and buy-and-hold through the backtester.

        With -s S1,S2,… (several symbols) -t TIMEFRAME --walk-forward N: the universe report — every system over
        all symbols as one account (equal capital split), with IC, Brier skill, Sharpe with a bootstrap CI, deflated
        Sharpe, and both buy-and-hold baselines (equal weight and volatility-targeted); see docs/signals.md.

        Example: smartmarket evaluate-signals -s BTCUSDT -t 1h --walk-forward 4 --out docs/results/signals-BTCUSDT-1h.md

        Example: smartmarket evaluate-signals -s BTCUSDT,ETHUSDT -t 4h --walk-forward 4 --test-bars 1500
        --fit-bars 2000 --train-bars 4000 --out docs/results/universe-4h.md
        """
        report = grammar.REPORT.resolve(out, old_report)
        members = grammar.members_text(members)
        budget = NetworkBudget(network_preset, network_epochs, network_steps, network_batch, threads)
        symbols = grammar.SYMBOL_LIST.resolve(symbols, old_symbol_opt)
        if symbols is not None and "," in symbols:  # several symbols: the universe report
            example = "smartmarket evaluate-signals -s BTCUSDT,ETHUSDT -t 4h --walk-forward 4"
            if old_symbol is not None or old_timeframe is not None:
                raise ConfigError(f"unexpected argument {old_symbol or old_timeframe!r}", hint=f"e.g. {example}")
            timeframe = grammar.require(timeframe, "--timeframe/-t", example)
            if walk_forward < 1:
                raise ConfigError("several --symbols need --walk-forward N (the universe report)",
                                  hint="e.g. --walk-forward 4")  # fmt: skip
            layout = WalkForwardLayout(walk_forward, members, test_bars, fit_bars, train_bars, fee_bps)
            _universe(ctx, symbols, timeframe, start, end, layout, report, as_json, vol_target, budget, vol_model)
            return
        symbol, timeframe = grammar.positional_or_option(symbols, timeframe, old_symbol, old_timeframe,
                                                         "evaluate-signals")  # fmt: skip
        if vol_target is not None:
            raise ConfigError("--vol-target applies to the universe report", hint="give several symbols: -s S1,S2,…")
        if vol_model is not None:
            raise ConfigError("--vol-model applies to --vol-target", hint="in the universe report: -s S1,S2,…")
        if walk_forward > 0:
            _walk_forward(ctx, symbol, timeframe, start, end, walk_forward, members, test_bars, fit_bars, train_bars,
                          report, as_json, budget, fee_bps)  # fmt: skip
            return
        with get_context(ctx).progress() as progress:
            engine, signals, art, first = run_engine(ctx, symbol, timeframe, artifact, start, end, warmup,
                                                     default_after_fit=True, progress=progress)  # fmt: skip
        from smartmarket.ops.signals import evaluate_engine_run

        doc = evaluate_engine_run(engine, signals, first)
        doc["artifact"] = art.artifact_id
        doc["span"] = [format_ms(int(signals[first].ts or 0)), format_ms(int(signals[-1].ts or 0))]
        doc["artifact_data"] = [art.data.get("first"), art.data.get("last")]
        doc["out_of_sample"] = int(signals[first].ts or 0) > int(art.data["last_ts"])
        if as_json:
            typer.echo(_json_text(doc))
        else:
            _print_evaluation(doc)

    @app.command("monitor", cls=grammar.Command)
    def monitor_command(
        ctx: typer.Context,
        symbol: grammar.SymbolOpt = None,
        timeframe: grammar.TimeframeOpt = None,
        start: StartOpt = None,
        end: EndOpt = None,
        artifact: ArtifactOpt = "latest",
        warmup: WarmupOpt = DEFAULT_WARMUP,
        as_json: Annotated[bool, typer.Option("--json", help="Print the monitor summary as JSON.")] = False,
        old_symbol: grammar.OldSymbolArg = None,
        old_timeframe: grammar.OldTimeframeArg = None,
    ) -> None:
        """Signal quality over time: rolling hit rate, Brier/ECE, member contribution, signal rate, per regime,
        and drift alarms (reference: the first outcomes of the range).

        Example: smartmarket monitor -s BTCUSDT -t 1h --start 2024-01-01
        """
        symbol, timeframe = grammar.positional_or_option(symbol, timeframe, old_symbol, old_timeframe, "monitor")
        engine, _, art, _ = run_engine(ctx, symbol, timeframe, artifact, start, end, warmup)
        summary = engine.monitor.summary()
        if as_json:
            typer.echo(_json_text({"artifact": art.artifact_id, **summary.to_dict()}))
            return
        table = Table(title=f"signal quality, last {engine.monitor.config.window} outcomes ({art.artifact_id})",
                      title_justify="left", box=box.SIMPLE_HEAD)  # fmt: skip
        for col in ("group", "outcomes", "hit rate", "Brier", "ECE", "signal rate", "member contribution (nats)"):
            table.add_column(col, justify="left" if col in ("group", "member contribution (nats)") else "right")
        for group, st in summary.current.items():
            contrib = ", ".join(f"{m} {v['contribution']:+.4f}" for m, v in st.members.items()) or "—"
            table.add_row(group, f"{st.n_outcomes:,}", _pct(st.hit_rate), _f(st.brier), _f(st.ece),
                          _pct(st.signal_rate), contrib)  # fmt: skip
        console.print(table)
        if summary.alarms:
            for alarm in summary.alarms:
                console.print(f"[bold red]ALARM[/] {alarm.kind}: {alarm.message}", highlight=False)
        else:
            console.print("no drift alarm", style="dim")


def _stderr_lines(ctx: typer.Context) -> Callable[[str], None]:
    """The walk-forward reports' step lines: on stderr like every progress display (stdout keeps the report or the
    JSON), nothing with --quiet."""
    quiet = get_context(ctx).quiet

    def say(line: str) -> None:
        if not quiet:
            err_console.print(line, style="dim", highlight=False, markup=False)

    return say


@dataclass(frozen=True)
class NetworkBudget:
    """The walk-forward networks' training budget as given on the command line."""

    preset: str = NETWORK_PRESET
    epochs: int = NETWORK_EPOCHS
    steps_per_epoch: int = NETWORK_STEPS  # 0 = every batch
    batch_size: int = NETWORK_BATCH
    threads: int = NETWORK_THREADS

    def options(self) -> str:
        return (f"--network-preset {self.preset} --network-epochs {self.epochs} --network-steps-per-epoch "
                f"{self.steps_per_epoch} --network-batch-size {self.batch_size} --threads {self.threads}")  # fmt: skip


def _walk_forward(
    ctx: typer.Context, symbol: str, timeframe: str, start: str | None, end: str | None, folds: int, members: str,
    test_bars: int, fit_bars: int, train_bars: int, report: Path | None, as_json: bool,
    budget: NetworkBudget | None = None, fee_bps: float = 10.0,
) -> None:  # fmt: skip
    from smartmarket.backtest.signal_evaluation import markdown_report, run_walk_forward
    from smartmarket.ops.signals import read_candles

    budget = budget or NetworkBudget()
    cfg = _evaluation_config(WalkForwardLayout(folds, members, test_bars, fit_bars, train_bars, fee_bps), budget)
    networks = any(m in ("transformer", "cnn_lstm") for m in cfg.members)
    sym, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
    start_ms, end_ms = _span(start, end)
    frame, _ = read_candles(get_context(ctx).store, sym, tf, start_ms, end_ms)
    try:
        doc = run_walk_forward(frame, symbol=sym, timeframe=str(tf), config=cfg, progress=_stderr_lines(ctx))
    except ValueError as exc:
        if "too few" not in str(exc):
            raise
        raise ConfigError(str(exc), hint="use fewer --walk-forward folds or fewer --test-bars/--fit-bars") from exc
    command = (f"smartmarket evaluate-signals -s {sym} -t {tf} --walk-forward {folds} "
               f"--members {','.join(cfg.members)} --test-bars {test_bars} --fit-bars {fit_bars} "
               f"--train-bars {train_bars}")  # fmt: skip
    if fee_bps != 10.0:
        command += f" --fee-bps {fee_bps:g}"
    if networks:
        command += " " + budget.options()
    if start:
        command += f" --start {start}"
    if end:
        command += f" --end {end}"
    doc["command"] = command
    flat = {"hit_rate": doc["results"]["ensemble_skill"]["hit_rate"], **doc}
    flat.update({k: doc["results"]["ensemble_skill"].get(k) for k in ("brier", "ece", "false_signal_rate")})
    flat["weights"] = doc["results"]["ensemble_skill"].get("mean_weights")
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(markdown_report(doc, command))
        report.with_suffix(".json").write_text(_json_text(flat) + "\n")
    if as_json:
        typer.echo(_json_text(flat))
    else:
        console.print(markdown_report(doc, command), highlight=False)


@dataclass(frozen=True)
class WalkForwardLayout:
    """The walk-forward options as given on the command line."""

    folds: int
    members: str
    test_bars: int
    fit_bars: int
    train_bars: int
    fee_bps: float = 10.0

    def options(self, members: Sequence[str]) -> str:
        text = (f"--walk-forward {self.folds} --members {','.join(members)} --test-bars {self.test_bars} "
                f"--fit-bars {self.fit_bars} --train-bars {self.train_bars}")  # fmt: skip
        return text + (f" --fee-bps {self.fee_bps:g}" if self.fee_bps != 10.0 else "")


def _evaluation_config(layout: WalkForwardLayout, budget: NetworkBudget) -> Any:
    """The research ``EvaluationConfig`` for these options (members and network preset checked)."""
    from smartmarket.backtest.signal_evaluation import MODEL_KINDS, NETWORK_KINDS, EvaluationConfig
    from smartmarket.signals.members import RULE_MEMBERS, parse_members

    names = parse_members(layout.members)
    unknown = [m for m in names if m not in MODEL_KINDS and m not in RULE_MEMBERS]
    if unknown:
        raise ConfigError(f"unknown walk-forward member(s) {', '.join(unknown)}",
                          hint="use technical, smc, logistic, lightgbm, transformer, cnn_lstm")  # fmt: skip
    if any(m in NETWORK_KINDS for m in names):
        from smartmarket.models.networks import CNN_LSTM_PRESETS

        if budget.preset not in CNN_LSTM_PRESETS:
            raise ConfigError(f"unknown --network-preset {budget.preset!r}",
                              hint=f"use one of: {', '.join(sorted(CNN_LSTM_PRESETS))}")  # fmt: skip
    return EvaluationConfig(members=names, folds=layout.folds, test_bars=layout.test_bars, fit_bars=layout.fit_bars,
                            train_bars=layout.train_bars, fee=layout.fee_bps / 10_000.0,
                            network_preset=budget.preset, network_epochs=budget.epochs,
                            network_steps_per_epoch=budget.steps_per_epoch or None,
                            network_batch_size=budget.batch_size, torch_threads=budget.threads)  # fmt: skip


def _universe(
    ctx: typer.Context, symbols: str, timeframe: str, start: str | None, end: str | None, layout: WalkForwardLayout,
    out: Path | None, as_json: bool, vol_target: float | None, budget: NetworkBudget, vol_model: str | None = None,
) -> None:  # fmt: skip
    """``evaluate-signals --symbols … TIMEFRAME --walk-forward N``: parse, call ``ops.universe_report``, print."""
    from smartmarket.execution.sizing import vol_model_option
    from smartmarket.ops.signals import read_candles
    from smartmarket.ops.universe_report import UniverseConfig, markdown_report, universe_report

    names = [normalize_symbol(s) for s in symbols.split(",") if s.strip()]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"--symbols {symbols!r} must name distinct symbols", hint="e.g. --symbols BTCUSDT,ETHUSDT")
    if vol_target is not None and not vol_target > 0:
        raise ConfigError(f"--vol-target must be positive (annualised), got {vol_target!r}", hint="e.g. 0.2")
    model = vol_model_option(vol_model, vol_target)
    tf = Timeframe.parse(timeframe)
    start_ms, end_ms = _span(start, end)
    cfg = _evaluation_config(layout, budget)
    store = get_context(ctx).store
    frames = {sym: read_candles(store, sym, tf, start_ms, end_ms)[0] for sym in names}
    ucfg = UniverseConfig(evaluation=cfg, vol_target=vol_target, vol_model=model,
                          baseline_vol_target=vol_target if vol_target is not None else 0.2)  # fmt: skip
    doc = universe_report(frames, str(tf), ucfg, progress=_stderr_lines(ctx))
    command = f"smartmarket evaluate-signals -s {','.join(names)} -t {tf} {layout.options(cfg.members)}"
    if vol_target is not None:
        command += f" --vol-target {vol_target:g}" + (f" --vol-model {model}" if vol_model is not None else "")
    if doc.get("network_budget"):
        command += " " + budget.options()
    command += (f" --start {start}" if start else "") + (f" --end {end}" if end else "")
    doc["command"] = command
    text = markdown_report(doc, command)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(_json_text(doc) + "\n")
    if as_json:
        typer.echo(_json_text(doc))
    elif out is None:
        console.print(text, highlight=False, markup=False)
    else:
        console.print(f"wrote {out} and {out.with_suffix('.json')}", highlight=False)


__all__ = [
    "NetworkBudget",
    "WalkForwardLayout",
    "register",
    "run_engine",
    "signals_csv",
]
