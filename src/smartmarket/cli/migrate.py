"""``smartmarket migrate``: copy candles and events between stores, resumable and verified."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from smartmarket.cli.context import announce_created, console, get_context, shown_url
from smartmarket.core.timeutil import format_ms

if TYPE_CHECKING:
    from smartmarket.store.checksum import Summary
    from smartmarket.store.migrate import MigrationReport


def _fmt_range(s: Summary, *, seq: bool) -> str:
    if s.min_ts is None or s.max_ts is None:
        return "-"
    if seq:
        return f"{s.min_ts}..{s.max_ts}"
    return f"{format_ms(s.min_ts)} .. {format_ms(s.max_ts)}"


def print_report(report: MigrationReport) -> None:
    table = Table(title=f"migration {shown_url(report.source_url)} → {shown_url(report.target_url)}")
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
            console.print(f"[red]chunk mismatch:[/] {escape(mismatch)}", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("migrate")
    def migrate_command(
        ctx: typer.Context,
        source: Annotated[
            str, typer.Option("--from", help="Source store URL; it must exist (a DuckDB file is never created).")
        ],
        target: Annotated[
            str, typer.Option("--to", help="Target store URL; a DuckDB file is created if missing (path printed).")
        ],
        symbols: Annotated[
            str | None, typer.Option("--symbols", "-s", help="Comma-separated symbols (events are then skipped).")
        ] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted migration.")] = False,
        verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Read every chunk back and compare.")] = True,
        chunk_rows: Annotated[int, typer.Option("--chunk-rows", min=1, help="Candles per chunk.")] = 200_000,
    ) -> None:
        """Copy candles and events from one store to another in checkpointed chunks.

        Safe to kill at any moment: run it again with --resume. Every chunk and every total is verified
        (row counts, first/last ts, volume sum, an order-independent checksum) unless --no-verify.

        duckdb:///copy.duckdb is relative to the working directory, duckdb:////tmp/copy.duckdb absolute.
        Passwords in the URLs are never printed nor written to the checkpoint (it keeps the redacted URLs,
        mode 0600): give the same URLs again with --resume.

        Example: smartmarket migrate --from postgresql://postgres@127.0.0.1:5432/test
        --to duckdb:////tmp/copy.duckdb --verify
        """
        from smartmarket.store.migrate import Checkpoint, migrate
        from smartmarket.store.url import open_store

        settings = get_context(ctx).settings
        checkpoint_path = Checkpoint.path_for(settings.home / "migrations", source, target)
        symbol_list = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
        if resume:  # a damaged or foreign checkpoint is refused before any store is opened (or created)
            Checkpoint(checkpoint_path, source, target).load()
        src = open_store(source, create=False)
        try:
            dst = open_store(target, create=True)
            announce_created(dst)
            try:
                with get_context(ctx).progress() as progress:
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
