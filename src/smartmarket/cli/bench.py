"""``smartmarket bench …``: benchmarks that print each figure beside a baseline measured in the same run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from smartmarket.cli.context import console, err_console

bench_app = typer.Typer(
    help="Benchmarks (figures and ratios against a baseline measured in the same run).\n\n"
    "Example: smartmarket bench backtest --json",
    no_args_is_help=True,
)


def _default_shared_data() -> Path | None:
    env = os.environ.get("SMARTMARKET_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [
        Path.cwd().parent / "shared" / "data",
        Path(__file__).resolve().parents[3].parent / "shared" / "data",
    ]
    return next((p for p in candidates if p.is_dir()), None)


def _print_store(result: dict[str, Any]) -> None:
    duck, pg = result["backends"]["duckdb"], result["backends"]["postgres"]
    ratios = result["ratios_duckdb_vs_postgres"]
    table = Table(title=f"store benchmark: {result['rows']:,} one-minute candles ({result['data']})")
    for col in ("measure", "duckdb (embedded)", "postgresql", "ratio", "target (duckdb)"):
        table.add_column(col)

    def lat(d: dict[str, float] | None) -> str:
        return "-" if d is None else f"p50 {d['p50_us']:.0f} µs / p99 {d['p99_us']:.0f} µs"

    t = result["targets"]

    def ok(flag: bool) -> str:
        return "[green]met[/]" if flag else "[red]missed[/]"

    table.add_row(
        "bulk ingest",
        f"{duck['ingest_rows_per_s']:,} rows/s",
        f"{pg['ingest_rows_per_s']:,} rows/s",
        f"{ratios['ingest_speedup']}×",
        f"≥ 1.6 M rows/s {ok(t['ingest_rows_per_s>=1.6M'])}",
    )
    table.add_row(
        "latest 500 (store API)",
        lat(duck["latest500_cached_us"]),
        lat(pg["latest500_cached_us"]),
        "",
        f"p50 ≤ 150 µs {ok(t['latest500_p50<=150us'])}",
    )
    table.add_row(
        "latest 500 (SQL, no cache)",
        lat(duck["latest500_uncached_us"]),
        lat(pg["latest500_uncached_us"]),
        f"{ratios['latest500_p50_speedup']}× (p50, cached duckdb vs plain pg)",
        "",
    )
    table.add_row(
        "one-year range read",
        f"{duck['range_year_seconds'] * 1000:.1f} ms ({duck['range_year_rows']:,} rows)",
        f"{pg['range_year_seconds'] * 1000:.1f} ms",
        f"{ratios['range_year_speedup']}×",
        f"≥ 10× {ok(t['range_read>=10x_postgres'])}",
    )
    table.add_row(
        "one-year 1m→1h resample",
        f"{duck['resample_year_1m_to_1h_seconds'] * 1000:.1f} ms",
        f"{pg['resample_year_1m_to_1h_seconds'] * 1000:.1f} ms",
        f"{ratios['resample_year_speedup']}×",
        f"≥ 10× {ok(t['resample>=10x_postgres'])}",
    )
    if duck.get("bytes_per_candle") or pg.get("bytes_per_candle"):
        table.add_row(
            "bytes/candle on disk (synthetic)",
            str(duck.get("bytes_per_candle")),
            str(pg.get("bytes_per_candle")),
            f"{ratios['bytes_per_candle_postgres_over_duckdb']}× smaller",
            f"parquet backup: {result.get('parquet_backup_bytes_per_candle')}",
        )
    cli = result.get("cli_ingest")
    if cli:
        rates = cli["rows_per_s"]
        table.add_row(
            "`smartmarket ingest` end to end (.csv / .csv.gz)",
            f"{rates['csv']:,} / {rates['csv.gz']:,} rows/s",
            "",
            f"store write alone: {cli['store_write_rows_per_s']:,} rows/s",
            f"≥ 2 M rows/s {ok(t.get('cli_ingest_rows_per_s>=2M', False))}",
        )
    real = result.get("footprint_real_1h")
    if real:
        table.add_row(
            f"bytes/candle on disk (real 1h, {real['duckdb']['candles']:,} candles)",
            str(real["duckdb"]["bytes_per_candle"]),
            str(real["postgres"]["bytes_per_candle"]),
            f"{real['postgres']['bytes_per_candle'] / real['duckdb']['bytes_per_candle']:.2f}× smaller",
            f"parquet backup: {real['duckdb']['parquet_backup_bytes_per_candle']}",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
    register_backtest(bench_app)
    register_features(bench_app)
    register_bus(bench_app)

    @bench_app.command("store")
    def bench_store(
        rows: Annotated[int, typer.Option("--rows", min=10_000, help="One-minute candles to write.")] = 5_000_000,
        pg: Annotated[str, typer.Option("--pg", envvar="SMARTMARKET_BENCH_PG", help="PostgreSQL baseline URL.")] = (
            "postgresql://postgres@127.0.0.1:5432/test"
        ),
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
        seed: Annotated[int, typer.Option("--seed")] = 7,
    ) -> None:
        """Embedded DuckDB store vs plain PostgreSQL on the same candles: ingest, latest-500, range, resample.

        Example: smartmarket bench store --rows 5000000 --json
        """
        from smartmarket.bench.store import run_store_benchmark

        result = run_store_benchmark(
            rows=rows,
            pg_url=pg,
            shared_data=_default_shared_data(),
            seed=seed,
            log=lambda msg: err_console.print(f"[dim]{msg}[/]"),
        )
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
            _print_store(result)


def register_backtest(bench: typer.Typer) -> None:
    @bench.command("backtest")
    def bench_backtest_command(
        bars: Annotated[int, typer.Option("--bars", min=1_000, help="Random-walk 1m bars to run.")] = 500_000,
        repeat: Annotated[int, typer.Option("--repeat", min=1, help="Kernel runs (the best is kept).")] = 3,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    ) -> None:
        """The event-driven kernel, the compiled sweep (174 sma_cross sets) and backtesting.py on the same bars.

        Example: smartmarket bench backtest --bars 500000 --json
        """
        from smartmarket.backtest.bench import KERNEL_CASH, PEER_CASH, bench_backtest

        err_console.print(
            f"[dim]running sma_cross on {bars:,} bars: kernel ×{repeat}, compiled sweep ×{repeat}, backtesting.py ×1, "
            f"vectorbt ×{repeat} (peers only when installed)[/]"
        )
        res = bench_backtest(bars, repeat=repeat)
        result: dict[str, Any] = {
            "bars": res.bars,
            "strategy": {"name": "sma_cross", "fast": res.fast, "slow": res.slow},
            "kernel": {
                "bars_per_s": round(res.kernel_bars_per_s),
                "bars_per_cpu_s": round(res.kernel_bars_per_cpu_s),
                "trades": res.kernel_trades,
                "final_equity_multiple": res.kernel_final_equity / KERNEL_CASH,
            },
            "backtesting_py": None
            if res.peer is None
            else {
                "bars_per_s": round(res.peer_bars_per_s or 0),
                "bars_per_cpu_s": round(res.peer_bars_per_cpu_s or 0),
                "trades": res.peer_trades,
                "final_equity_multiple": (res.peer_final_equity or 0.0) / PEER_CASH,
            },
            "sweep": None
            if res.sweep is None
            else {
                "bars_per_s": round(res.sweep_bars_per_s or 0),
                "bars_per_cpu_s": round(res.sweep_bars_per_cpu_s or 0),
                "param_sets": res.sweep_param_sets,
                "final_equity_multiple": (res.sweep_final_equity or 0.0) / KERNEL_CASH,
                "speedup_vs_kernel_cpu": None if res.sweep_speedup is None else round(res.sweep_speedup, 1),
            },
            "vectorbt": None
            if res.vectorbt is None
            else {
                "version": res.vectorbt.version,
                "bars_per_s": round(res.vectorbt.bars_per_s),
                "bars_per_cpu_s": round(res.vectorbt.bars_per_cpu_s),
                "trades": res.vectorbt.trades,
                "final_equity_multiple": res.vectorbt.final_equity / KERNEL_CASH,
                "sweep": {
                    "bars_per_s": round(res.vectorbt.sweep_bars_per_s),
                    "bars_per_cpu_s": round(res.vectorbt.sweep_bars_per_cpu_s),
                    "param_sets": res.vectorbt.param_sets,
                    "final_equity_multiple": res.vectorbt.sweep_final_equity / KERNEL_CASH,
                },
            },
            "sweep_vs_vectorbt_cpu": None if res.sweep_vs_vectorbt is None else round(res.sweep_vs_vectorbt, 2),
            "speedup_cpu": None if res.speedup is None else round(res.speedup, 2),
            "targets": {
                "kernel>=100k_bars_per_s": res.kernel_bars_per_s >= 100_000,
                "kernel>=300k_bars_per_cpu_s": res.kernel_bars_per_cpu_s >= 300_000,  # issues 13 and 16
                "faster_than_backtesting_py": bool(res.speedup and res.speedup > 1.0),
                "sweep_at_least_vectorbt": None if res.sweep_vs_vectorbt is None else res.sweep_vs_vectorbt >= 1.0,
            },
        }
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        table = Table(title=f"backtest engine benchmark: sma_cross on {bars:,} bars")
        for col in ("engine", "bars/s (wall)", "bars/s (CPU)", "trades", "final equity ÷ initial cash"):
            table.add_column(col)
        k = result["kernel"]
        table.add_row(
            "smartmarket kernel",
            f"{k['bars_per_s']:,}",
            f"{k['bars_per_cpu_s']:,}",
            str(k["trades"]),
            f"{k['final_equity_multiple']:.10f}",
        )
        p = result["backtesting_py"]
        if p:
            table.add_row(
                "backtesting.py",
                f"{p['bars_per_s']:,}",
                f"{p['bars_per_cpu_s']:,}",
                str(p["trades"]),
                f"{p['final_equity_multiple']:.10f}",
            )
        sw = result["sweep"]
        if sw:
            table.add_row(
                f"compiled sweep (bars × {sw['param_sets']} sets)",
                f"{sw['bars_per_s']:,}",
                f"{sw['bars_per_cpu_s']:,}",
                "",
                f"{sw['final_equity_multiple']:.10f}",
            )
        vb = result["vectorbt"]
        if vb:
            for label, row in (("vectorbt", vb), (f"vectorbt (bars × {vb['sweep']['param_sets']} sets)", vb["sweep"])):
                table.add_row(
                    f"{label} {vb['version']}" if row is vb else label,
                    f"{row['bars_per_s']:,}",
                    f"{row['bars_per_cpu_s']:,}",
                    str(row.get("trades", "")),
                    f"{row['final_equity_multiple']:.10f}",
                )
        console.print(table)
        console.print(f"speed-up (CPU time): {result['speedup_cpu']}×; targets: {result['targets']}")
        if vb:
            console.print(
                f"compiled sweep vs vectorbt's on the same grid (CPU time): {result['sweep_vs_vectorbt_cpu']}×"
            )


def register_features(bench: typer.Typer) -> None:
    @bench.command("features")
    def bench_features_command(
        rows: Annotated[int, typer.Option("--rows", min=10_000, help="Synthetic candles for the batch run.")] = 500_000,
        feature_set: Annotated[str, typer.Option("--set", help="Feature set to measure.")] = "default",
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    ) -> None:
        """The feature pipeline in batch (training) and per-candle streaming (live).

        Example: smartmarket bench features --rows 500000 --json
        """
        from smartmarket.bench.features import run_features_benchmark

        result = run_features_benchmark(
            rows=rows, feature_set=feature_set, log=lambda msg: err_console.print(f"[dim]{msg}[/]")
        )
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        s = result["stream"]
        table = Table(title=f"feature pipeline benchmark: '{result['feature_set']}' set, {result['columns']} columns")
        for col in ("measure", "figure", "target"):
            table.add_column(col)
        table.add_row(
            "batch",
            f"{result['batch_seconds']:.3f} s for {rows:,} candles ({result['batch_candles_per_s']:,} candles/s)",
            "< 2 s",
        )
        table.add_row("streaming update per candle", f"p50 {s['p50_us']} µs / p99 {s['p99_us']} µs", "p99 ≤ 200 µs")
        full = result.get("full_set_with_smc")
        if full:
            table.add_row(
                "'full' set incl. SMC (batch)",
                f"{full['batch_us_per_candle']} µs/candle "
                f"(≈ {full['estimated_batch_seconds_for_rows']} s for {rows:,})",
                "",
            )
            table.add_row(
                "'full' set incl. SMC (streaming)",
                f"p50 {full['stream']['p50_us']} µs / p99 {full['stream']['p99_us']} µs",
                "",
            )
        console.print(table)
        console.print(
            f"numba compilation excluded: {result['compile_seconds_excluded']} s; targets: {result['targets']}"
        )


def register_bus(bench: typer.Typer) -> None:
    @bench.command("bus")
    def bench_bus_command(
        redis: Annotated[str, typer.Option("--redis", envvar="SMARTMARKET_BUS", help="Redis URL.")] = (
            "redis://127.0.0.1:6379/0"
        ),
        events: Annotated[int, typer.Option("--events", min=1_000, help="Events through one stream.")] = 200_000,
    ) -> None:
        """Event bus throughput and latency: Redis Streams (consumer group, pipelined) and in-process.

        Prints one JSON object.

        Example: smartmarket bench bus --events 200000
        """
        from smartmarket.bench.bus import run_bus_benchmark

        result = run_bus_benchmark(redis, events, log=lambda msg: err_console.print(f"[dim]{msg}[/]"))
        typer.echo(json.dumps(result, indent=2))
