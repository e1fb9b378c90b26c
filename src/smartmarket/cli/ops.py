"""``smartmarket backup``, ``restore``, ``retention`` and ``doctor``: keep an installation safe and check that it
works."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from smartmarket.cli.context import announce_created, console, get_context, shown_url
from smartmarket.core.errors import ConfigError
from smartmarket.core.timeutil import format_ms
from smartmarket.core.types import DAY_MS

if TYPE_CHECKING:  # ops load pandas, pyarrow and DuckDB: imported by the commands that run them
    from smartmarket.ops.manifest import Manifest
    from smartmarket.ops.restore import RestoreReport
    from smartmarket.ops.retention import RetentionReport
    from smartmarket.store.checksum import Summary

ZSTD_LEVEL = 3  # ops.parquet_io.DEFAULT_ZSTD_LEVEL (a test keeps them equal), named here for --help
_STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


def _bounds(summary: Summary | None, *, seq: bool) -> tuple[str, str]:
    """First and last ts (short UTC dates) or seq of a summary, for tables."""
    if summary is None or summary.min_ts is None or summary.max_ts is None:
        return "-", "-"
    if seq:
        return f"seq {summary.min_ts}", f"seq {summary.max_ts}"
    return format_ms(summary.min_ts, short=True), format_ms(summary.max_ts, short=True)


def _short(summary: Summary) -> str:
    """The first 8 of the 16 hex digits of a checksum (the manifest keeps all of them)."""
    return f"{summary.checksum:016x}"[:8]


def print_manifest(manifest: Manifest, path: Path) -> None:
    table = Table(title=f"snapshot {path.name}")
    for col in ("item", "rows", "first", "last", "checksum", "bytes"):
        table.add_column(col, justify="right" if col in ("rows", "bytes") else "left", no_wrap=True)
    for s in manifest.series:
        first, last = _bounds(s.summary, seq=False)
        table.add_row(s.key, f"{s.summary.rows:,}", first, last, _short(s.summary), f"{s.file.bytes:,}")
    ev = manifest.events
    first, last = _bounds(ev.summary, seq=True)
    table.add_row("events", f"{ev.summary.rows:,}", first, last, _short(ev.summary), f"{ev.file.bytes:,}")
    for kind, files in (("quarantine", manifest.quarantine), ("models", manifest.registry)):
        if files:
            table.add_row(kind, f"{len(files)} files", "", "", "sha256", f"{sum(f.bytes for f in files):,}")
    console.print(table)


def print_restore(report: RestoreReport) -> None:
    table = Table(title=f"restore {escape(report.snapshot.name)} → {shown_url(report.target_url)}")
    for col in ("item", "expected", "in target", "written", "unchanged", "status"):
        table.add_column(col, justify="left" if col in ("item", "status") else "right")
    for item in report.items:
        if item.expected is None:  # a file: its sha256 was checked
            found = "1 file" if item.ok else "-"
            table.add_row(
                item.name, "1 file", found, str(item.written), str(item.unchanged), _status(item.ok, item.note)
            )
            continue
        actual = item.actual
        table.add_row(
            item.name + (f" ({item.note})" if item.note else ""),
            f"{item.expected.rows:,}",
            f"{actual.rows:,}" if actual is not None else "-",
            f"{item.written:,}",
            f"{item.unchanged:,}",
            _status(item.ok, "" if item.ok or actual is None else _difference(item.expected, actual)),
        )
    console.print(table)


def _difference(expected: Summary, actual: Summary) -> str:
    """Which of the compared figures differ, e.g. ``rows, checksum``."""
    fields = [
        name
        for name, a, b in (
            ("rows", expected.rows, actual.rows),
            ("first", expected.min_ts, actual.min_ts),
            ("last", expected.max_ts, actual.max_ts),
            ("checksum", expected.checksum, actual.checksum),
        )
        if a != b
    ]
    return ", ".join(fields) or "volume"


def _status(ok: bool, note: str) -> str:
    text = "[green]verified[/]" if ok else "[red]MISMATCH[/]"
    return f"{text} {note}".rstrip()


def print_retention(report: RetentionReport) -> None:
    """What retention archived and trimmed (or, in a dry run, would)."""
    verb = "would trim" if report.dry_run else "trimmed"
    for path in report.removed:
        note = "would remove" if report.dry_run else "removed"
        console.print(
            f"{note} leftover of an interrupted run: {escape(str(path))} (its events are still stored)",
            highlight=False,
            soft_wrap=True,
        )
    ev = report.events
    if ev is None and report.policy.trims_events:
        console.print(f"events: nothing to trim (log ends at seq {report.last_seq})")
    elif ev is not None:
        console.print(
            f"events: {verb} {ev.rows:,} (seq {ev.from_seq}..{ev.through_seq}); kept seq {ev.through_seq + 1}.."
            f"{report.last_seq}",
            highlight=False,
            soft_wrap=True,
        )
        for path in ev.written:
            console.print(
                f"  archived to {escape(str(path))} (read back and verified)", highlight=False, soft_wrap=True
            )
        for path in ev.reused:
            console.print(
                f"  already archived in {escape(str(path))} (verified against the store)",
                highlight=False,
                soft_wrap=True,
            )
        if not report.dry_run:
            console.print(f"  deleted {ev.deleted:,} events from the store", highlight=False, soft_wrap=True)
    if report.dead_letter_cutoff_ms is not None:
        before = format_ms(report.dead_letter_cutoff_ms, short=True)
        if not report.dead_letters:
            console.print(f"dead letters: none older than {before}", highlight=False, soft_wrap=True)
        for dl in report.dead_letters:
            line = f"dead letters {dl.symbol}: {verb} {dl.rows:,} older than {before}"
            if not report.dry_run:
                line += f"; archived {dl.archived:,} (+{dl.already_archived:,} already), deleted {dl.deleted:,}"
            console.print(line, highlight=False, soft_wrap=True)
            for path in dl.written:
                console.print(
                    f"  archived to {escape(str(path))} (read back and verified)", highlight=False, soft_wrap=True
                )


def register(app: typer.Typer) -> None:
    @app.command("backup")
    def backup_command(
        ctx: typer.Context,
        to: Annotated[Path, typer.Option("--to", help="Directory that receives the snapshot-… folder.")],
        chunk_rows: Annotated[int, typer.Option("--chunk-rows", min=1, help="Candles per exported chunk.")] = 200_000,
        zstd_level: Annotated[
            int, typer.Option("--zstd-level", min=1, max=22, help="Parquet zstd level (3: fast; 9: ~6% smaller).")
        ] = ZSTD_LEVEL,
    ) -> None:
        """Snapshot the store (candles, events), the quarantine files and the model registry.

        Safe while the pipeline runs: the snapshot holds what was stored when the backup started. Every
        file is read back and checked, and the snapshot appears under DIR only once complete.

        Example: smartmarket backup --to /backups/smartmarket
        """
        from smartmarket.ops.backup import create_backup

        app_ctx = get_context(ctx)
        settings = app_ctx.settings
        with app_ctx.progress() as progress:
            result = create_backup(
                app_ctx.store,
                to,
                quarantine_dir=settings.quarantine_dir,
                registry_dir=settings.registry_dir,
                chunk_rows=chunk_rows,
                zstd_level=zstd_level,
                progress=progress,
            )
        print_manifest(result.manifest, result.path)
        console.print(f"[green]backup complete[/]: {escape(str(result.path))}", highlight=False)

    @app.command("restore")
    def restore_command(
        ctx: typer.Context,
        source: Annotated[Path, typer.Option("--from", help="Snapshot directory (DIR/snapshot-…).")],
        target: Annotated[
            str | None, typer.Option("--to", help="Target store URL (default: the configured store).")
        ] = None,
        until_seq: Annotated[
            int | None,
            typer.Option("--until-seq", min=0, help="Point in time: restore events up to this seq (candles whole)."),
        ] = None,
        staging: Annotated[
            Path | None,
            typer.Option(
                "--staging",
                help="Directory for the verified copy of the snapshot (default: the system temp directory, $TMPDIR).",
            ),
        ] = None,
    ) -> None:
        """Restore a snapshot into a store; quarantine and model files go into the home (--home).

        Before anything is written: checks the manifest's own checksum, that the snapshot holds exactly
        the files it lists (no links, no pickled or unknown model files), copies them into a private
        staging directory checking each one's size and sha256, and reads every row back against the
        manifest. A refused snapshot leaves the target exactly as it was (exit 2). Then refuses a target
        holding different data (restore never overwrites; identical data is skipped), writes, reads
        everything back and verifies it (exit 4 when the target differs).

        Example: smartmarket --home /srv/sm restore --from /backups/smartmarket/snapshot-20250101T120000Z-1a2b3c4d
        """
        from smartmarket.ops.restore import (
            file_conflicts,
            open_snapshot,
            refuse_conflicts,
            restore_backup,
            restore_point,
            stage_snapshot,
        )
        from smartmarket.store.url import open_store

        app_ctx = get_context(ctx)
        settings = app_ctx.settings
        restore_point(open_snapshot(source), until_seq)  # a bad --until-seq is refused before the copy
        with app_ctx.progress() as progress, stage_snapshot(source, staging_dir=staging, progress=progress) as staged:
            refuse_conflicts(file_conflicts(staged.manifest, settings.quarantine_dir, settings.registry_dir), None)
            # Only now, the snapshot verified, is the target opened (a DuckDB file may be created) and written.
            store = open_store(target) if target else app_ctx.store
            try:
                if target:
                    announce_created(store)
                report = restore_backup(
                    staged,
                    store,
                    quarantine_dir=settings.quarantine_dir,
                    registry_dir=settings.registry_dir,
                    until_seq=until_seq,
                    progress=progress,
                )
            finally:
                if target:
                    store.close()
        checked = "manifest checksum ok" if report.manifest_checked else "no manifest checksum (older snapshot)"
        console.print(
            f"snapshot files verified: {report.files_checked} (sha256); {checked}; every row read back against "
            "the manifest; all before writing",
            highlight=False,
        )
        print_restore(report)
        if not report.ok:
            console.print("[red]verification failed[/]: the target differs from the snapshot (see above)")
            raise typer.Exit(4)
        console.print(f"[green]restore complete and verified[/] (events to seq {report.restore_point})")

    @app.command("retention")
    def retention_command(
        ctx: typer.Context,
        archive: Annotated[Path, typer.Option("--archive", help="Directory that keeps the Parquet archive.")],
        keep_days: Annotated[
            int | None, typer.Option("--keep-days", min=1, help="Keep events whose ts_event is newer than N days.")
        ] = None,
        keep_last: Annotated[int | None, typer.Option("--keep-last", min=1, help="Keep the newest N events.")] = None,
        dead_letters_days: Annotated[
            int | None,
            typer.Option("--dead-letters-days", min=1, help="Archive and delete dead letters older than N days."),
        ] = None,
        bus: Annotated[
            str | None, typer.Option("--bus", help="Redis bus URL for dead letters (default: $SMARTMARKET_BUS).")
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Only report what would be archived and trimmed.")
        ] = False,
    ) -> None:
        """Archive old events (and dead letters) to Parquet, verify the archive, then trim them.

        Trims a prefix of the event log (oldest sequence numbers first; with both limits the stricter one
        wins; the newest event always stays). Nothing is deleted before its archive was read back and checked;
        an interrupted run is completed by running it again, without duplicates.

        Example: smartmarket retention --archive /archive/smartmarket --keep-days 90 --dead-letters-days 30
        """
        if keep_days is None and keep_last is None and dead_letters_days is None:
            raise ConfigError(
                "retention needs a policy", hint="pass --keep-days N, --keep-last N and/or --dead-letters-days N"
            )
        from smartmarket.ops.retention import RetentionPolicy, apply_retention

        app_ctx = get_context(ctx)
        bus_url = bus or app_ctx.settings.bus
        if dead_letters_days is not None and not bus_url:
            raise ConfigError(
                "--dead-letters-days needs the Redis bus", hint="pass --bus redis://host:6379/0 or set SMARTMARKET_BUS"
            )
        policy = RetentionPolicy(
            keep_age_ms=keep_days * DAY_MS if keep_days is not None else None,
            keep_last=keep_last,
            dead_letter_age_ms=dead_letters_days * DAY_MS if dead_letters_days is not None else None,
        )
        with app_ctx.progress() as progress:
            report = apply_retention(
                app_ctx.store,
                policy,
                archive,
                bus=bus_url if dead_letters_days is not None else None,
                dry_run=dry_run,
                progress=progress,
            )
        print_retention(report)
        if dry_run:
            console.print("[yellow]dry run[/]: nothing was written or deleted")
        else:
            console.print(
                f"[green]retention complete[/]: archive in {escape(str(archive))}", highlight=False, soft_wrap=True
            )

    @app.command("doctor")
    def doctor_command(
        ctx: typer.Context,
        min_free_gb: Annotated[
            float, typer.Option("--min-free-gb", min=0.0, help="Warn when less disk space is free under the home.")
        ] = 1.0,
    ) -> None:
        """Check the store, the bus ($SMARTMARKET_BUS), the model registry, disk space and the quarantine.

        Prints ok / warn / fail per check with the fix; exits with 1 when any check fails.

        Example: SMARTMARKET_BUS=redis://127.0.0.1:6379/0 smartmarket doctor
        """
        from smartmarket.ops.doctor import run_doctor

        settings = get_context(ctx).settings
        checks = run_doctor(settings, min_free_bytes=int(min_free_gb * (1 << 30)))
        for check in checks:
            style = _STATUS_STYLE[check.status]
            console.print(f"[{style}]{check.status:<4}[/] {check.name:<10} {escape(check.detail)}", highlight=False)
            if check.fix:
                console.print(f"{'':<4} {'':<10} fix: {escape(check.fix)}", highlight=False)
        failed = sum(c.status == "fail" for c in checks)
        warned = sum(c.status == "warn" for c in checks)
        console.print(f"doctor: {len(checks) - failed - warned} ok, {warned} warn, {failed} fail")
        if failed:
            raise typer.Exit(1)


__all__ = ["print_manifest", "print_restore", "print_retention", "register"]
