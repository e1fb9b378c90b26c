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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from smartmarket.cli.context import console, err_console, get_context
from smartmarket.core.errors import ConfigError, NotFoundError
from smartmarket.core.timeutil import format_ms, parse_time
from smartmarket.core.types import Timeframe, normalize_symbol

if TYPE_CHECKING:  # numpy, pandas, torch and sklearn load inside the commands (fast start-up)
    import pandas as pd

    from smartmarket.signals.engine import SignalEngine
    from smartmarket.signals.fit import EnsembleArtifact
    from smartmarket.signals.strength import Signal
    from smartmarket.store.base import CandleStore

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


def read_candles(
    store: CandleStore, symbol: str, tf: Timeframe, start: int | None, end: int | None, warmup: int = 0
) -> tuple[pd.DataFrame, int]:
    """Candles in ``[start - warmup bars, end)`` and the row where ``start`` begins."""
    import numpy as np

    first = None if start is None else start - warmup * tf.ms
    try:
        frame = store.read_candles(symbol, tf, first, end)
    except NotFoundError as exc:
        raise NotFoundError(exc.what, where=exc.where, hint="load candles with `smartmarket ingest FILE`") from None
    if frame.empty:
        raise NotFoundError(f"no {symbol} {tf} candles in the requested range", hint="see `smartmarket symbols`")
    frame = frame.reset_index(drop=True)
    begin = 0 if start is None else int(np.searchsorted(frame["ts"].to_numpy(np.int64), start, side="left"))
    return frame, begin


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
    *, default_after_fit: bool = False,
) -> tuple[SignalEngine, list[Signal], EnsembleArtifact, int]:  # fmt: skip
    """The engine fed every candle of the range (plus warm-up); returns ``(engine, signals, artifact, first)``
    where ``signals[first:]`` are the bars at or after ``--start``."""
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
    return engine, engine.run(frame), art, begin


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def display_confidence(signal: Signal) -> float:
    """The calibrated probability of the favoured outcome: the signal's confidence for a long/short candidate,
    P(flat) when the ensemble favours flat, 0 while warming up (see docs/signals.md)."""
    if math.isfinite(signal.confidence):
        return float(signal.confidence)
    probs = [p for p in signal.probabilities if math.isfinite(p)]
    return max(probs) if probs else 0.0


def signal_record(signal: Signal) -> dict[str, Any]:
    ts = int(signal.ts or 0)
    return {
        "ts": ts,
        "time": format_ms(ts),
        "direction": str(signal.direction),
        "confidence": round(display_confidence(signal), 6),
        "strength": str(signal.strength),
        "regime": signal.regime,
        "p_down": _num(signal.probabilities[0]),
        "p_flat": _num(signal.probabilities[1]),
        "p_up": _num(signal.probabilities[2]),
        "weights": {k: round(v, 6) for k, v in signal.member_weights.items()},
        "members": {k: [round(x, 6) for x in v] for k, v in signal.member_probabilities.items()},
        "reason": signal.reason,
    }


def signals_csv(signals: Sequence[Signal], members: Sequence[str]) -> str:
    out = io.StringIO()
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
    return "n/a" if value is None or not math.isfinite(value) else f"{value * 100:.1f}%"


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


# ------------------------------------------------------------------------------------------ fit


def fit_signals(
    store: CandleStore, symbol: str, timeframe: str, members: Sequence[str], registry_dir: Path,
    start: int | None = None, end: int | None = None,
) -> EnsembleArtifact:  # fmt: skip
    """Fit and save an ensemble artifact from stored candles (used by ``fit-signals`` and the demo)."""
    from smartmarket.signals.fit import fit_artifact, save_artifact
    from smartmarket.signals.members import make_member

    sym, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
    built = [make_member(m, registry_dir=registry_dir, symbol=sym, timeframe=str(tf)) for m in members]
    frame, _ = read_candles(store, sym, tf, start, end)
    artifact = fit_artifact(frame, built, symbol=sym, timeframe=str(tf))
    save_artifact(artifact, registry_dir)
    return artifact


def _fit_summary(art: EnsembleArtifact) -> dict[str, Any]:
    report = art.system.report()
    return {
        "id": art.artifact_id,
        "symbol": art.symbol,
        "symbols": art.data.get("symbols", []),
        "timeframe": art.timeframe,
        "members": art.member_names,
        "member_model_ids": [s.get("model_id") for s in art.member_specs if s.get("model_id")],
        "data": art.data,
        "weights": (report["ensemble"] or {}).get("weights"),
        "member_skill": report["member_skill"],
        "calibration": report["calibration"],
        "confidence": report["confidence"],
        "thresholds": report["thresholds"],
        "regime_filter": report["regime_filter"],
        "never_signals": art.system.never_signals(),
    }


def never_signals_line(artifact_id: str | None, reason: str | None) -> str | None:
    """The one warning line for an artifact that can never produce a signal (None when it can)."""
    if not reason:
        return None
    return f"warning: {artifact_id} can never produce a signal: {reason}; `models promote` refuses it without --force"


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


def engine_outcomes(engine: SignalEngine) -> Any:
    """The engine's resolved outcomes as per-bar arrays (``pipeline.OutcomeArrays``)."""
    import numpy as np

    from smartmarket.signals.pipeline import OutcomeArrays

    n = engine.bar + 1
    y, t1 = np.full(n, np.nan), np.full(n, -1, dtype=np.int64)
    exits, ret = np.full(n, "", dtype=object), np.full(n, np.nan)
    for o in engine.outcomes:
        y[o.bar], t1[o.bar], exits[o.bar], ret[o.bar] = o.label, o.t1, o.exit, o.ret
    return OutcomeArrays(y, t1, exits, ret)


def evaluate_engine_run(
    engine: SignalEngine, signals: Sequence[Signal], first: int, fee: float = 0.001
) -> dict[str, Any]:
    """Hit rate, Brier, ECE, false-signal rate, weights and per-strength hit rates of ``signals[first:]``."""
    import numpy as np

    from smartmarket.backtest.signal_evaluation import signal_metrics

    decided = [s for s in signals[first:] if s.member_weights]
    bars = np.array([s.bar for s in decided], dtype=np.int64)
    outcomes = engine_outcomes(engine)
    doc: dict[str, Any] = dict(signal_metrics(decided, bars, outcomes, fee))
    names = engine.member_names
    doc["weights"] = {n: float(np.mean([s.member_weights[n] for s in decided])) if decided else 0.0 for n in names}
    per_strength: dict[str, dict[str, Any]] = {}
    for strength in ("weak", "moderate", "strong"):
        rows = [s for s in decided if s.strength == strength and outcomes.t1[s.bar] >= 0]
        hits = [(outcomes.y[s.bar] == (2 if s.direction == "long" else 0)) for s in rows]
        per_strength[strength] = {"signals": len(rows), "hit_rate": float(np.mean(hits)) if hits else None}
    doc["per_strength"] = per_strength
    return doc


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


def demo_signals_stage(store: CandleStore, symbol: str, timeframe: str, registry_dir: Path) -> dict[str, Any]:
    """The demo's signal stage: fit technical + SMC on all but the last 1,000 candles (at most 8,000 before
    them), save the artifact, run the engine over the last 1,000 and summarise (seconds, not minutes)."""
    import numpy as np

    sym, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
    frame = store.read_candles(sym, tf).reset_index(drop=True)
    test = min(1000, len(frame) // 4)
    fit_from = max(0, len(frame) - test - 8000)
    ts = frame["ts"].to_numpy(np.int64)
    art = fit_signals(store, sym, str(tf), ("technical", "smc"), registry_dir, int(ts[fit_from]),
                      int(ts[len(frame) - test]))  # fmt: skip
    from smartmarket.signals.engine import SignalEngine

    engine = SignalEngine.from_artifact(art, registry_dir=registry_dir)
    warm = max(0, len(frame) - test - DEFAULT_WARMUP)
    signals = engine.run(frame.iloc[warm:])
    doc = evaluate_engine_run(engine, signals, len(frame) - test - warm)
    last = signals[-1]
    return {
        "artifact": art.artifact_id,
        "members": list(art.member_names),
        "fit_weights": _fit_summary(art)["weights"],
        "never_signals": never_signals_line(art.artifact_id, art.system.never_signals()),
        "test_bars": test,
        "last_signal": signal_record(last),
        **{k: doc[k] for k in ("signals", "hit_rate", "false_signal_rate", "brier", "ece", "weights")},
    }


# ------------------------------------------------------------------------------------------ commands


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command("fit-signals")
    def fit_command(
        ctx: typer.Context,
        symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTCUSDT (with --symbols: the timeframe).")],
        timeframe: Annotated[str | None, typer.Argument(help="Bar timeframe, e.g. 1h.")] = None,
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
        symbols: Annotated[
            str | None, typer.Option("--symbols", help="Pool these symbols (comma list) into one artifact.")
        ] = None,
        universe: Annotated[
            str | None, typer.Option("--universe", help="'all': pool every symbol stored for the timeframe.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    ) -> None:
        """Fit a deployable ensemble artifact (calibration, weights, confidence, thresholds) and save it.

        With --symbols S1,S2,… (or --universe all), one artifact is fitted on every symbol's samples pooled by
        timestamp; model members are then the pooled models (train --symbols): `fit-signals 4h --symbols A,B`.

        Example: smartmarket fit-signals BTCUSDT 1h --members technical,smc --start 2022-01-01 --end 2024-01-01
        """
        from smartmarket.signals.members import parse_members

        app_ctx = get_context(ctx)
        start_ms, end_ms = _span(start, end)
        if symbols is not None or universe is not None:
            from smartmarket.ops import universe_training as uni

            if timeframe is None:
                symbol, timeframe = uni.UNIVERSE_NAME, symbol
            if normalize_symbol(symbol) != uni.UNIVERSE_NAME:
                raise ConfigError(
                    f"with --symbols/--universe give the timeframe only, not the symbol {symbol}",
                    hint=f"smartmarket fit-signals {timeframe} --symbols S1,S2,…",
                )  # fmt: skip
            chosen = uni.resolve_universe(
                app_ctx.store, timeframe, symbols=None if symbols is None else uni.parse_symbols(symbols),
                universe=universe,
            )  # fmt: skip
            art = uni.fit_universe_signals(app_ctx.store, chosen, timeframe, parse_members(members),
                                       app_ctx.settings.registry_dir, start=start_ms, end=end_ms)  # fmt: skip
        else:
            if timeframe is None:
                raise ConfigError("missing TIMEFRAME", hint="smartmarket fit-signals SYMBOL TIMEFRAME, e.g. BTCUSDT 1h")
            art = fit_signals(app_ctx.store, symbol, timeframe, parse_members(members),
                              app_ctx.settings.registry_dir, start_ms, end_ms)  # fmt: skip
        doc = _fit_summary(art)
        if as_json:
            typer.echo(_json_text(doc))
        else:
            _print_fit(doc)
        warning = never_signals_line(art.artifact_id, doc["never_signals"])
        if warning:
            err_console.print(warning, style="yellow", highlight=False, markup=False, soft_wrap=True)

    @app.command("signals")
    def signals_command(
        ctx: typer.Context,
        symbol: SymbolArg,
        timeframe: TimeframeArg,
        start: StartOpt = None,
        end: EndOpt = None,
        fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
        artifact: ArtifactOpt = "latest",
        warmup: WarmupOpt = DEFAULT_WARMUP,
        limit: Annotated[int, typer.Option("--limit", help="Table only: show the last N signals.")] = 30,
    ) -> None:
        """Per-candle ensemble signals (direction, confidence, strength, regime, reason) over stored candles.

        Example: smartmarket signals BTCUSDT 1h --start 2024-06-01 --format csv > signals.csv
        """
        if fmt not in FORMATS:
            raise ConfigError(f"unknown --format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")
        engine, signals, art, first = run_engine(ctx, symbol, timeframe, artifact, start, end, warmup)
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

    @app.command("evaluate-signals")
    def evaluate_command(
        ctx: typer.Context,
        symbol: SymbolArg,
        timeframe: TimeframeArg,
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
        report: Annotated[Path | None, typer.Option("--report", help="Walk-forward: write Markdown (+ .json).")] = None,
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
    ) -> None:  # fmt: skip
        """Measure signals out of sample: hit rate, Brier, ECE, weights, false-signal rate (see docs/signals.md).

        Without --walk-forward: the fitted artifact run candle by candle over --start/--end (default: the candles
        after the artifact's data). With --walk-forward N: refit everything per fold and compare the ensemble with
        each member alone and buy-and-hold through the backtester.

        Example: smartmarket evaluate-signals BTCUSDT 1h --walk-forward 4 --report docs/results/signals-BTCUSDT-1h.md
        """
        if walk_forward > 0:
            budget = NetworkBudget(network_preset, network_epochs, network_steps, network_batch, threads)
            _walk_forward(ctx, symbol, timeframe, start, end, walk_forward, members, test_bars, fit_bars, train_bars,
                          report, as_json, budget)  # fmt: skip
            return
        engine, signals, art, first = run_engine(ctx, symbol, timeframe, artifact, start, end, warmup,
                                                 default_after_fit=True)  # fmt: skip
        doc = evaluate_engine_run(engine, signals, first)
        doc["artifact"] = art.artifact_id
        doc["span"] = [format_ms(int(signals[first].ts or 0)), format_ms(int(signals[-1].ts or 0))]
        doc["artifact_data"] = [art.data.get("first"), art.data.get("last")]
        doc["out_of_sample"] = int(signals[first].ts or 0) > int(art.data["last_ts"])
        if as_json:
            typer.echo(_json_text(doc))
        else:
            _print_evaluation(doc)

    @app.command("monitor")
    def monitor_command(
        ctx: typer.Context,
        symbol: SymbolArg,
        timeframe: TimeframeArg,
        start: StartOpt = None,
        end: EndOpt = None,
        artifact: ArtifactOpt = "latest",
        warmup: WarmupOpt = DEFAULT_WARMUP,
        as_json: Annotated[bool, typer.Option("--json", help="Print the monitor summary as JSON.")] = False,
    ) -> None:
        """Signal quality over time: rolling hit rate, Brier/ECE, member contribution, signal rate, per regime,
        and drift alarms (reference: the first outcomes of the range).

        Example: smartmarket monitor BTCUSDT 1h --start 2024-01-01
        """
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
    budget: NetworkBudget | None = None,
) -> None:  # fmt: skip
    from smartmarket.backtest.signal_evaluation import (
        MODEL_KINDS,
        NETWORK_KINDS,
        EvaluationConfig,
        markdown_report,
        run_walk_forward,
    )
    from smartmarket.signals.members import RULE_MEMBERS, parse_members

    budget = budget or NetworkBudget()
    names = parse_members(members)
    unknown = [m for m in names if m not in MODEL_KINDS and m not in RULE_MEMBERS]
    if unknown:
        raise ConfigError(f"unknown walk-forward member(s) {', '.join(unknown)}",
                          hint="use technical, smc, logistic, lightgbm, transformer, cnn_lstm")  # fmt: skip
    networks = any(m in NETWORK_KINDS for m in names)
    if networks:
        from smartmarket.models.networks import CNN_LSTM_PRESETS

        if budget.preset not in CNN_LSTM_PRESETS:
            raise ConfigError(f"unknown --network-preset {budget.preset!r}",
                              hint=f"use one of: {', '.join(sorted(CNN_LSTM_PRESETS))}")  # fmt: skip
    sym, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
    start_ms, end_ms = _span(start, end)
    frame, _ = read_candles(get_context(ctx).store, sym, tf, start_ms, end_ms)
    cfg = EvaluationConfig(members=names, folds=folds, test_bars=test_bars, fit_bars=fit_bars, train_bars=train_bars,
                           network_preset=budget.preset, network_epochs=budget.epochs,
                           network_steps_per_epoch=budget.steps_per_epoch or None,
                           network_batch_size=budget.batch_size, torch_threads=budget.threads)  # fmt: skip
    say = (lambda line: None) if as_json else (lambda line: console.print(f"[dim]{line}[/]", highlight=False))
    try:
        doc = run_walk_forward(frame, symbol=sym, timeframe=str(tf), config=cfg, progress=say)
    except ValueError as exc:
        if "too few" not in str(exc):
            raise
        raise ConfigError(str(exc), hint="use fewer --walk-forward folds or fewer --test-bars/--fit-bars") from exc
    command = (f"smartmarket evaluate-signals {sym} {tf} --walk-forward {folds} --members {','.join(cfg.members)} "
               f"--test-bars {test_bars} --fit-bars {fit_bars} --train-bars {train_bars}")  # fmt: skip
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


__all__ = [
    "NetworkBudget",
    "demo_signals_stage",
    "display_confidence",
    "evaluate_engine_run",
    "fit_signals",
    "read_candles",
    "register",
    "run_engine",
    "signal_record",
    "signals_csv",
]
