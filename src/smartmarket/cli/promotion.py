"""Safe model rollout: ``models evaluate-candidate|promote|retire`` and ``ab-report``.

smartmarket models evaluate-candidate ensemble-BTCUSDT-1h-2026…   # out of sample vs production, attached
smartmarket models promote ensemble-BTCUSDT-1h-2026…              # refuses without a current evaluation
smartmarket run --symbols BTCUSDT --timeframe 1h --source … --shadow ensemble-BTCUSDT-1h-2027…
smartmarket ab-report --start 2026-11-01
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.table import Table

from smartmarket.cli import grammar
from smartmarket.cli.context import console, err_console, get_context
from smartmarket.core.errors import ConfigError
from smartmarket.core.timeutil import format_ms, parse_time

ROWS = (
    ("signals", "signals", "d"),
    ("hit rate", "hit_rate", "%"),
    ("false-signal rate", "false_signal_rate", "%"),
    ("Brier (3-class)", "brier", "f"),
    ("log-loss", "log_loss", "f"),
    ("ECE", "ece", "f"),
    ("confidence ECE", "confidence_ece", "f"),
    ("P&L after fees (sum of returns)", "pnl_after_fees", "%"),
    ("P&L per signal", "pnl_per_signal", "%"),
)


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "d":
        return f"{int(value):,}"
    if kind == "%":
        return grammar.pct(float(value))
    return f"{float(value):.4f}"


def print_comparison(doc: Mapping[str, Any], title: str) -> None:
    """The two systems side by side, the tests and the verdict."""
    console.print(f"[bold]{title}[/]", highlight=False)
    if not doc.get("candidate"):
        console.print(f"{doc.get('candles', 0)} paired candles with known outcomes: {doc.get('verdict')}")
        return
    span = f"{format_ms(doc['first_ts'])} → {format_ms(doc['last_ts'])}"
    fee = f"fee {grammar.pct(doc['fee'])} per side"
    console.print(f"{doc['candles']:,} paired candles with known outcomes, {span}; {fee}")
    table = Table(title_justify="left")
    table.add_column("metric")
    table.add_column(f"production {doc['production'].get('model_id') or doc['production']['name']}", justify="right")
    table.add_column(f"candidate {doc['candidate'].get('model_id') or ''}", justify="right")
    for label, key, kind in ROWS:
        table.add_row(label, _fmt(doc["production"].get(key), kind), _fmt(doc["candidate"].get(key), kind))
    console.print(table)
    test, pnl = doc["test"], doc["pnl_test"]
    console.print(
        f"Diebold-Mariano on Brier (candidate − production): mean {test['mean_difference']:+.5f}, "
        f"stat {test['statistic']:.2f}, p = {test['p_value']:.4f}", highlight=False,
    )  # fmt: skip
    console.print(
        f"paired block bootstrap on P&L per candle (candidate − production): mean {pnl['mean_difference']:+.6f}, "
        f"{int(100 * (1 - pnl['level']))}% CI [{pnl['ci_low']:+.6f}, {pnl['ci_high']:+.6f}], p = {pnl['p_value']:.4f}",
        highlight=False,
    )  # fmt: skip
    console.print(f"verdict at level {doc['level']}: [bold]{doc['verdict']}[/]")


def register(app: typer.Typer) -> None:
    """``ab-report`` on ``app``; ``models evaluate-candidate|promote|retire`` via ``register_models``."""

    @app.command("ab-report")
    def ab_report_command(
        ctx: typer.Context,
        since: Annotated[str | None, typer.Option("--start", help="From this time (ISO or epoch ms).")] = None,
        until: Annotated[str | None, typer.Option("--end", help="Before this time (ISO or epoch ms).")] = None,
        symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="Only this symbol.")] = None,
        fee_bps: Annotated[float, typer.Option("--fee-bps", help="Fee per side for the simulated P&L.")] = 10.0,
        level: Annotated[float, typer.Option("--level", help="Significance level of the tests.")] = 0.05,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
        old_since: Annotated[str | None, grammar.SINCE.option()] = None,
        old_until: Annotated[str | None, grammar.UNTIL.option()] = None,
    ) -> None:
        """Shadow candidates vs production on the outcomes seen so far, with a significance test.

        Pairs every ShadowSignalGenerated (from `run --shadow`) with production's SignalGenerated of the same candle.
        Example: smartmarket ab-report --start 2026-11-01 --symbol BTCUSDT
        """
        since, until = grammar.SINCE.resolve(since, old_since), grammar.UNTIL.resolve(until, old_until)
        from smartmarket.ops.abtest import shadow_report

        if not 0 < level < 1:
            raise ConfigError(f"--level must be in (0, 1), got {level}")
        context = get_context(ctx)
        report = shadow_report(
            context.store, since=parse_time(since), until=parse_time(until), symbol=symbol,
            registry_dir=context.settings.registry_dir, fee=fee_bps / 10_000, level=level,
        )  # fmt: skip
        if as_json:
            typer.echo(json.dumps(report, indent=2, default=str))
            return
        if not report["comparisons"]:
            console.print(
                "no shadow signals recorded in this period: run a candidate beside production with "
                "`smartmarket run … --shadow MODEL_ID`"
            )
            return
        for doc in report["comparisons"]:
            print_comparison(doc, f"{doc['symbol']} {doc['timeframe']}: candidate {doc['candidate_id']}")


def register_models(models_app: typer.Typer) -> None:
    """``evaluate-candidate``, ``promote`` and ``retire`` under ``smartmarket models``."""

    @models_app.command("evaluate-candidate")
    def evaluate_candidate_command(
        ctx: typer.Context,
        model_id: Annotated[str, typer.Argument(help="The candidate's registry id (or a unique prefix).")],
        start: Annotated[str | None, typer.Option("--start", help="Evaluate from (ISO or epoch ms).")] = None,
        end: Annotated[str | None, typer.Option("--end", help="Evaluate before (ISO or epoch ms).")] = None,
        fee_bps: Annotated[float, typer.Option("--fee-bps", help="Fee per side for the simulated P&L.")] = 10.0,
        level: Annotated[float, typer.Option("--level", help="Significance level.")] = 0.05,
        as_json: Annotated[bool, typer.Option("--json", help="Print the evaluation as JSON.")] = False,
    ) -> None:
        """Compare a candidate with the current production entry, out of sample, and attach the result.

        Uses the stored candles after everything either was fitted on.

        Example: smartmarket models evaluate-candidate ensemble-BTCUSDT-1h-20261124
        """
        from smartmarket.ops.promotion import evaluate_and_attach

        context = get_context(ctx)
        with context.progress() as progress:
            doc = evaluate_and_attach(
                context.settings.registry_dir, context.store, model_id, start=parse_time(start), end=parse_time(end),
                fee=fee_bps / 10_000, level=level, progress=progress,
            )  # fmt: skip
        if as_json:
            typer.echo(json.dumps(doc, indent=2, default=str))
            return
        against = doc["against"] or "nothing in production (the base rates, never trading)"
        print_comparison(doc, f"{doc['candidate_id']} vs {against}")
        console.print("evaluation attached: `smartmarket models promote ID` can use it")

    @models_app.command("promote")
    def promote_command(
        ctx: typer.Context,
        model_id: Annotated[str, typer.Argument(help="The candidate's registry id (or a unique prefix).")],
        force: Annotated[
            bool,
            typer.Option(
                "--force",
                help="Promote even if the evaluation found production better or the artifact can never signal "
                "(recorded).",
            ),
        ] = False,
    ) -> None:
        """Make a candidate the production entry of its symbol, timeframe and kind (the previous one is retired).

        Refuses without an attached evaluation against the current production entry, and (unless --force) an
        ensemble artifact that can never produce a signal.

        Example: smartmarket models promote ensemble-BTCUSDT-1h
        """
        from smartmarket.models.registry import Registry

        promoted, retired = Registry(get_context(ctx).settings.registry_dir).promote(model_id, force=force)
        console.print(f"{promoted.model_id}: production", highlight=False)
        if promoted.no_skill_warning:
            err_console.print(promoted.no_skill_warning, style="yellow", highlight=False, markup=False, soft_wrap=True)
        if retired is not None:
            console.print(f"{retired.model_id}: retired", highlight=False)

    @models_app.command("retire")
    def retire_command(
        ctx: typer.Context,
        model_id: Annotated[str, typer.Argument(help="A registry id (or a unique prefix).")],
    ) -> None:
        """Take an entry out of use (a retired production entry leaves its series without one).

        Example: smartmarket models retire logreg-BTCUSDT-1h
        """
        from smartmarket.models.registry import Registry

        record = Registry(get_context(ctx).settings.registry_dir).retire(model_id)
        console.print(f"{record.model_id}: retired", highlight=False)


__all__ = ["print_comparison", "register", "register_models"]
