"""``smartmarket migrate``: copy candles and events between stores, resumable and verified."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from smartmarket.cli.context import console, get_context, task_progress
from smartmarket.core.timeutil import format_ms
from smartmarket.store.checksum import Summary
from smartmarket.store.migrate import Checkpoint, MigrationReport, migrate
from smartmarket.store.url import open_store


def _fmt_range(s: Summary, *, seq: bool) -> str:
    if s.min_ts is None or s.max_ts is None:
        return "-"
    if seq:
        return f"{s.min_ts}..{s.max_ts}"
    return f"{format_ms(s.min_ts)} .. {format_ms(s.max_ts)}"


def print_report(report: MigrationReport) -> None:
    table = Table(title=f"migration {report.source_url} → {report.target_url}")
    for col in ("series", "rows src", "rows dst", "range", "volume src", "volume dst", "checksum", "copied", "status"):
        table.add_column(col, justify="right" if col.startswith(("rows", "vol", "copied")) else "left")
    for r in report.results:
        is_events = r.name == "events"
        if not report.verify:
            status = "[yellow]not verified[/]"
        else:
            status = "[green]verified[/]" if r.verified else "[red]MISMATCH[/]"
        table.add_row(
            r.name,
            str(r.source.rows),
            str(r.target.rows) if report.verify else "-",
            _fmt_range(r.source, seq=is_events),
            "" if is_events else f"{r.source.volume_sum:.6g}",
            "" if is_events or not report.verify else f"{r.target.volume_sum:.6g}",
            f"{r.source.checksum:016x}" + ("" if r.source.checksum == r.target.checksum else " ≠"),
            str(r.copied),
            status,
        )
    console.print(table)
    for r in report.results:
        for mismatch in r.chunk_mismatches:
            console.print(f"[red]chunk mismatch:[/] {mismatch}")


def register(app: typer.Typer) -> None:
    @app.command("migrate")
    def migrate_command(
        ctx: typer.Context,
        source: Annotated[str, typer.Option("--from", help="Source store URL.")],
        target: Annotated[str, typer.Option("--to", help="Target store URL.")],
        symbols: Annotated[
            str | None, typer.Option("--symbols", help="Comma-separated symbols (events are then skipped).")
        ] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted migration.")] = False,
        verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Read every chunk back and compare.")] = True,
        chunk_rows: Annotated[int, typer.Option("--chunk-rows", min=1, help="Candles per chunk.")] = 200_000,
    ) -> None:
        """Copy candles and events from one store to another in checkpointed chunks.

        Safe to kill at any moment: run it again with --resume. Every chunk and every total is verified
        (row counts, first/last ts, volume sum, an order-independent checksum) unless --no-verify.

        Example: smartmarket migrate --from postgresql://postgres@127.0.0.1:5432/test
        --to duckdb:///tmp/copy.duckdb --verify
        """
        settings = get_context(ctx).settings
        checkpoint_path = Checkpoint.path_for(settings.home / "migrations", source, target)
        symbol_list = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
        src = open_store(source)
        try:
            dst = open_store(target)
            try:
                with task_progress() as progress:
                    report = migrate(
                        src,
                        dst,
                        checkpoint_path=checkpoint_path,
                        symbols=symbol_list,
                        resume=resume,
                        verify=verify,
                        chunk_rows=chunk_rows,
                        progress=progress,
                    )
            finally:
                dst.close()
        finally:
            src.close()
        print_report(report)
        if not report.ok:
            console.print("[red]verification failed[/]: the target differs from the source (see above)")
            raise typer.Exit(4)
        console.print("[green]migration complete[/]" + (" and verified" if verify else " (not verified)"))
