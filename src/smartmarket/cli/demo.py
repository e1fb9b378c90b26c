"""``smartmarket demo``: the main job, end to end on the embedded store. Later stages extend it."""

from __future__ import annotations

import time
from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from smartmarket.cli import grammar
from smartmarket.cli.context import AppContext, ProgressFn, console, get_context, stage, task
from smartmarket.core.timeutil import format_ms
from smartmarket.core.types import Timeframe

if TYPE_CHECKING:
    import pandas as pd

    from smartmarket.data.ingest import IngestReport
    from smartmarket.data.synthetic import MarketParams
    from smartmarket.store.base import Store

DEMO_START_TS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
DEMO_EVENT_TYPES = ("CandleClosed", "SignalGenerated", "SubmitOrder", "RiskRejected", "OrderFilled", "PositionChanged")


def _candle_table(title: str, frame: pd.DataFrame) -> Table:
    table = Table(title=title)
    for col in ("time (UTC)", "open", "high", "low", "close", "volume"):
        table.add_column(col, justify="right", no_wrap=True)
    for ts, *values in frame[["ts", "open", "high", "low", "close", "volume"]].itertuples(index=False):
        table.add_row(format_ms(int(ts), short=True), *(f"{v:,.2f}" for v in values))
    return table


STAGES = 9


def _stage(progress: ProgressFn, n: int, text: str) -> AbstractContextManager[None]:
    """A stage: its rule on stdout, and a progress task on stderr (started, done with its seconds)."""
    console.rule(f"[bold]stage {n}[/] · {text}")
    return stage(progress, f"demo stage {n}/{STAGES}: {text}")


def _ignore(name: str, done: int, total: int) -> None:
    return None


def stage_data(
    app_ctx: AppContext, data: Path | None, rows: int, seed: int, progress: ProgressFn = _ignore
) -> IngestReport:
    from smartmarket.data.ingest import ingest_file, ingest_frame
    from smartmarket.data.synthetic import generate_market

    settings, store = app_ctx.settings, app_ctx.store
    if data is not None:
        return ingest_file(
            store, data, quarantine_dir=settings.quarantine_dir, progress=task(progress, f"ingest {data.name}")
        )
    params = demo_market_params()
    frame = generate_market(rows, timeframe=Timeframe.M1, seed=seed, start_ts=DEMO_START_TS, params=params)
    console.print(
        f"PLANTED EDGE: this synthetic market has an edge put there on purpose — each 1m bar drifts "
        f"{params.planted_edge:g} bar sigmas in the direction of the trailing {params.planted_edge_lookback}-bar "
        f"({params.planted_edge_lookback // 60} h) return — so the demo's models have something real to find. "
        "Real markets carry no such planted edge; see `smartmarket evaluate-signals --symbols …` for them.",
        style="bold yellow",
        highlight=False,
    )
    return ingest_frame(
        store,
        "DEMOBTC",
        Timeframe.M1,
        frame,
        source=f"synthetic:seed={seed}:planted_edge={params.planted_edge:g}/{params.planted_edge_lookback}",
        quarantine_dir=settings.quarantine_dir,
        synthetic=True,
    )


DEMO_PLANTED_EDGE = 0.12  # bar sigmas per 1m bar: about 0.45 sigma per 15m bar
DEMO_PLANTED_LOOKBACK = 300  # 1m bars: the trailing 5 h (20 bars of the demo's 15m analysis timeframe)


def demo_market_params() -> MarketParams:
    """The demo's synthetic market: the default market with a planted momentum edge (``data.synthetic``)."""
    from smartmarket.data.synthetic import MarketParams

    return MarketParams(planted_edge=DEMO_PLANTED_EDGE, planted_edge_lookback=DEMO_PLANTED_LOOKBACK)


def analysis_timeframe(stored: Timeframe) -> Timeframe:
    """The bar size the later stages use: 15m for minute data (1m bars are fee-dominated), else the stored one."""
    return Timeframe.M15 if stored.ms < Timeframe.M15.ms else stored


def stage_features(store: Store, symbol: str, tf: Timeframe) -> None:
    from smartmarket.features import FeaturePipeline, label_regimes

    candles = store.read_candles(symbol, tf)
    t0 = time.perf_counter()
    pipeline = FeaturePipeline("default", tf)
    features = pipeline.batch(candles)
    took = time.perf_counter() - t0
    console.print(
        f"feature set 'default': {len(pipeline.columns)} columns over {len(candles):,} {tf} candles in {took:.2f} s "
        f"(every column causal: the value at bar t uses bars ≤ t only)"
    )
    sample = ["rsi_14", "adx_14", "atr_14", "bb_pctb_20_2", "regime_trend"]
    last = features.iloc[-1]
    console.print("last bar: " + ", ".join(f"{c}={last[c]:.4g}" for c in sample if c in features.columns))
    shares = label_regimes(candles).value_counts(normalize=True)
    console.print(
        "regimes (share of bars): "
        + ", ".join(f"{name} {grammar.pct(share, digits=0)}" for name, share in shares.items())
    )


def stage_backtest(app_ctx: AppContext, symbol: str, tf: Timeframe, progress: ProgressFn = _ignore) -> None:
    from smartmarket.analytics import compute_metrics, monthly_returns, write_report
    from smartmarket.backtest.runner import run_backtest
    from smartmarket.cli.backtest import buy_hold_return, kernel_config, summary_table

    candles = app_ctx.store.read_candles(symbol, tf)
    params = {"fast": 10, "slow": 30}
    config = kernel_config(
        cash=10_000.0, fees=0.001, slippage_bps=2.0, fraction=1.0, latency=0, long_only=False, close_at_end=True
    )
    result = run_backtest(
        {symbol: candles}, "sma_cross", params=params, config=config, timeframe=tf,
        progress=task(progress, f"backtest sma_cross(10, 30) over {len(candles):,} candles"),
    )  # fmt: skip
    metrics = compute_metrics(
        result.equity, result.trades, tf, exposure=result.exposure, traded_notional=result.traded_notional
    )
    title = f"demo: sma_cross(10, 30) on {symbol} {tf}, fees 0.1 %/side, slippage 2 bps"
    console.print(summary_table(title, metrics, result, buy_hold_return({symbol: candles})))
    report = app_ctx.settings.reports_dir / "demo-backtest.html"
    write_report(
        report,
        title=title,
        prices=candles,
        trades=result.trades,
        equity=result.equity,
        metrics=metrics,
        monthly=monthly_returns(result.equity),
        provenance={"strategy": "sma_cross", "params": params},
    )
    console.print(f"HTML report: {report}", highlight=False)


def stage_training(app_ctx: AppContext, symbol: str, tf: Timeframe) -> None:
    from smartmarket.cli.models import train_demo_model

    t0 = time.perf_counter()
    model_id, metrics = train_demo_model(app_ctx.store, symbol, tf, app_ctx.settings.registry_dir)
    shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("balanced_accuracy", "log_loss", "brier") if k in metrics)
    console.print(f"trained {model_id} in {time.perf_counter() - t0:.1f} s; out-of-sample test: {shown}")
    from smartmarket.models.registry import Registry

    warning = Registry(app_ctx.settings.registry_dir).show(model_id).no_skill_warning
    if warning:
        console.print(warning, style="yellow", highlight=False, markup=False, soft_wrap=True)
    console.print("(a small logistic baseline; `smartmarket train --model transformer` trains the Transformer)")


def stage_signals(
    app_ctx: AppContext, symbol: str, tf: Timeframe, progress: ProgressFn = _ignore, planted: bool = False
) -> str:
    """Fit and measure the ensemble; returns the new artifact's id. ``planted``: the market has a planted edge."""
    from smartmarket.ops.signals import demo_signals_stage

    summary = demo_signals_stage(app_ctx.store, symbol, str(tf), app_ctx.settings.registry_dir, progress)
    last = summary["last_signal"]

    def fmt(value: object) -> str:
        if value is None:
            return "n/a"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    console.print(
        f"ensemble {summary['artifact']} of {', '.join(summary['members'])} over the last {summary['test_bars']} "
        f"candles (out of sample): {summary['signals']} signals, hit rate {fmt(summary['hit_rate'])}, "
        f"false-signal rate {fmt(summary['false_signal_rate'])}, Brier {fmt(summary['brier'])}, "
        f"ECE {fmt(summary['ece'])}"
    )
    console.print(f"latest signal: {last.get('direction')} ({last.get('strength')}) — {last.get('reason')}")
    if planted and summary["signals"]:
        console.print(
            "these signals trade the edge PLANTED in this synthetic market (stage 1), not a market inefficiency: "
            "they show the loop finding a real edge, not what to expect on real data",
            style="yellow", highlight=False,
        )  # fmt: skip
    elif planted:
        console.print(
            "the edge PLANTED in this synthetic market (stage 1) was not found on so few candles: run the demo "
            "with more --rows (the default 100,000 finds it)",
            style="yellow", highlight=False,
        )  # fmt: skip
    if summary.get("never_signals"):
        console.print(summary["never_signals"], style="yellow", highlight=False, markup=False, soft_wrap=True)
    return str(summary["artifact"])


def stage_rollout(app_ctx: AppContext, artifact_id: str, progress: ProgressFn = _ignore) -> None:
    """Evaluate the new artifact against production out of sample, promote it if the evaluation allows."""
    from smartmarket.models.registry import Registry
    from smartmarket.ops.promotion import evaluate_and_attach

    registry = Registry(app_ctx.settings.registry_dir)
    doc = evaluate_and_attach(registry.directory, app_ctx.store, artifact_id, progress=progress)
    against = doc["against"] or "the base rates (nothing in production yet)"
    test = doc.get("test") or {}
    console.print(
        f"{artifact_id} vs {against} on {doc['candles']:,} candles neither was fitted on: Brier "
        f"{doc['candidate']['brier']:.4f} vs {doc['production']['brier']:.4f}, Diebold-Mariano p = "
        f"{test.get('p_value', float('nan')):.3f} → {doc['verdict']}"
        if doc.get("candidate") else f"{artifact_id}: {doc['verdict']}"
    )  # fmt: skip
    problems = registry.promotion_problems(artifact_id)
    if problems:
        console.print(f"not promoted: {'; '.join(problems)}; production stays {doc['against'] or 'empty'}")
        return
    promoted, retired = registry.promote(artifact_id)
    console.print(f"promoted {promoted.model_id} to production" + (f", retired {retired.model_id}" if retired else ""))


def stage_paper_trading(
    app_ctx: AppContext, symbol: str, tf: Timeframe, candidate: str, candles: int = 400
) -> None:  # fmt: skip
    from smartmarket.core.errors import NotFoundError
    from smartmarket.pipeline.live import demo_paper_trading
    from smartmarket.signals.engine import SignalEngine
    from smartmarket.signals.fit import load_artifact

    registry = app_ctx.settings.registry_dir
    try:
        artifact = load_artifact("production", registry, symbol=symbol, timeframe=str(tf))
        console.print(f"trading the production ensemble {artifact.artifact_id}")
    except NotFoundError:
        artifact = load_artifact(candidate, registry, symbol=symbol, timeframe=str(tf))
        console.print(f"nothing in production: paper-trading the unpromoted candidate {candidate} (paper only)")
    engine = SignalEngine.from_artifact(artifact, registry_dir=registry)
    frame = app_ctx.store.read_candles(symbol, tf).tail(candles).reset_index(drop=True)
    summary = demo_paper_trading(
        app_ctx.store, frame, symbol, tf, engine, artifact_id=artifact.artifact_id or candidate
    )
    counts = Counter(e.message.type_name for e in app_ctx.store.read_events(types=DEMO_EVENT_TYPES))
    console.print(
        f"{summary['candles']} candles through candles → features → predictions → signals → risk → execution → "
        f"portfolio on the in-process bus in {summary['seconds']:.1f} s (drained: {summary['drained']}); "
        "events in the store: " + ", ".join(f"{name} {counts.get(name, 0)}" for name in DEMO_EVENT_TYPES)
    )
    if "position" in summary:
        console.print(f"final position: {summary['position']}")
    console.print("every event is in the store: try `smartmarket events --type SignalGenerated --limit 5`")


def run_stages(app_ctx: AppContext, data: Path | None, rows: int, seed: int, progress: ProgressFn) -> None:
    """Stages 1-9 of the demo; ``progress(name, done, total)`` hears each stage and the steps inside it."""
    store = app_ctx.store
    console.print(f"SMARTMARKET_HOME = {app_ctx.settings.home}\nstore = {store.url}")

    with _stage(progress, 1, "ingest candles" if data else "generate a synthetic market"):
        t0 = time.perf_counter()
        report = stage_data(app_ctx, data, rows, seed, progress)
        console.print(
            f"{report.symbol} {report.timeframe}: {report.rows_read:,} read, {report.inserted:,} inserted, "
            f"{report.unchanged:,} unchanged, {report.quarantined:,} quarantined, {len(report.gaps):,} gaps "
            f"({report.missing_candles:,} missing candles) in {time.perf_counter() - t0:.2f} s"
        )

    symbol, tf = report.symbol, report.timeframe
    with _stage(progress, 2, "query and resample"):
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

    work_tf = analysis_timeframe(tf)
    with _stage(progress, 3, f"features and market regimes ({symbol} {work_tf})"):
        stage_features(store, symbol, work_tf)

    with _stage(progress, 4, f"backtest ({symbol} {work_tf})"):
        stage_backtest(app_ctx, symbol, work_tf, progress)

    with _stage(progress, 5, f"train a model ({symbol} {work_tf})"):
        stage_training(app_ctx, symbol, work_tf)

    with _stage(progress, 6, f"signal ensemble ({symbol} {work_tf})"):
        artifact_id = stage_signals(app_ctx, symbol, work_tf, progress, planted=data is None)

    with _stage(progress, 7, "evaluate against production and promote"):
        stage_rollout(app_ctx, artifact_id, progress)

    with _stage(progress, 8, f"paper trading on the in-process bus ({symbol} {work_tf})"):
        stage_paper_trading(app_ctx, symbol, work_tf, artifact_id)

    with _stage(progress, 9, "summary"):
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


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        ctx: typer.Context,
        data: Annotated[
            Path | None, typer.Option("--data", exists=True, dir_okay=False, help="Ingest this candle file instead.")
        ] = None,
        rows: Annotated[int, typer.Option("--rows", min=1_000, help="Synthetic 1m candles to generate.")] = 100_000,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic market.")] = 42,
        serve: Annotated[bool, typer.Option("--serve", help="Keep the dashboard running at the end.")] = False,
        port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Dashboard port with --serve.")] = 8000,
    ) -> None:
        """Run SmartMarket end to end on the embedded store: data → store → features → backtest → model →
        signal ensemble → evaluation and promotion → paper trading over the pipeline → dashboard URL.

        Without --data it generates a reproducible synthetic 1m market (marked synthetic in the store) with a
        planted momentum edge, and says so, so the ensemble has something real to learn and trade.

        Example: smartmarket demo --data ../shared/data/BTCUSDT-1h.csv.gz
        """
        app_ctx = get_context(ctx)
        with app_ctx.progress() as progress:
            run_stages(app_ctx, data, rows, seed, progress)
        store = app_ctx.store

        url = f"http://127.0.0.1:{port}/"
        if not serve:
            console.print(f"dashboard: {url} — run `smartmarket demo --serve` (or `smartmarket serve`) to open it")
            return
        import uvicorn

        from smartmarket.api.app import create_app

        console.print(f"dashboard: {url}  (Ctrl-C to stop)", highlight=False)
        uvicorn.run(create_app(app_ctx.settings, store=store), host="127.0.0.1", port=port, log_level="warning")
