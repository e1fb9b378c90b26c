"""The ``smartmarket`` command: global options, command registration and one-line error reporting."""

from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from smartmarket import __version__
from smartmarket.cli.context import AppContext, err_console
from smartmarket.core.errors import SmartMarketError
from smartmarket.core.redaction import install_log_redaction, redact_text

app = typer.Typer(
    name="smartmarket",
    help="SmartMarket: ML-driven crypto trading signals, measured and reproducible.\n\nExample: smartmarket demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module defines ``register(app)``; one command group per module keeps files small.
COMMAND_MODULES = (
    "smartmarket.cli.demo",
    "smartmarket.cli.ingest",
    "smartmarket.cli.generate",
    "smartmarket.cli.candles",
    "smartmarket.cli.migrate",
    "smartmarket.cli.bench",
    "smartmarket.cli.features",
    "smartmarket.cli.backtest",
    "smartmarket.cli.ops",
    "smartmarket.cli.serve",
    "smartmarket.cli.models",
    "smartmarket.cli.signals",
    "smartmarket.cli.pipeline",
    "smartmarket.cli.promotion",
    "smartmarket.cli.optimize",
    "smartmarket.cli.config",
)

# Commands that write to the store: they may create a DuckDB file that does not exist yet (and say so once).
# Every other command only reads: a store that does not exist is an error and nothing is created.
# (``migrate`` opens its own two stores: --from must exist, --to may be created.)
# serve too: a long-running API over an empty in-memory stand-in would never show what is ingested later.
WRITING_COMMANDS = frozenset({"demo", "ingest", "generate", "run", "worker", "restore", "serve"})

STORE_HELP = (
    "Store URL: duckdb:///relative/file.duckdb (relative to the working directory), "
    "duckdb:////absolute/file.duckdb (four slashes), postgresql://user@host:5432/db or questdb://host:9000. "
    "Default: smartmarket.duckdb under SMARTMARKET_HOME. Only commands that write (ingest, generate, run, "
    "restore, serve, migrate --to) create a DuckDB file, and print its absolute path; the others refuse a missing one. "
    "Put a password in the environment (SMARTMARKET_STORE) rather than on the command line; it is never printed."
)

CONFIG_ENV = "SMARTMARKET_CONFIG"  # = core.config.CONFIG_ENV (not imported here: pydantic loads with it)
CONFIG_HELP = (
    "Config file (TOML) to read instead of smartmarket.toml in SMARTMARKET_HOME and the working directory: "
    "global settings (store, home, bus, debug) as top-level keys, per-command option defaults in [command] tables. "
    "See docs/config.md and `smartmarket config show`."
)

_debug = False


def _failing() -> bool:
    """Whether the command is ending with an error (called while its context closes)."""
    exc = sys.exc_info()[1]
    if exc is None:
        return False
    code = getattr(exc, "exit_code", getattr(exc, "code", 1))  # typer/click Exit, SystemExit
    return isinstance(exc, BaseException) and code not in (0, None)


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not taken from the environment or a default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"smartmarket {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            envvar="SMARTMARKET_STORE",
            help=STORE_HELP,
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option("--home", envvar="SMARTMARKET_HOME", help="Directory for everything written by default."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", envvar=CONFIG_ENV, help=CONFIG_HELP, dir_okay=False),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", envvar="SMARTMARKET_QUIET", help="No progress on stderr (results and errors still print)."
        ),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    from smartmarket.cli.config import command_defaults
    from smartmarket.core.config import (  # pydantic: not needed by --help
        build_settings,
        default_home,
        load_config_files,
        register_env_secrets,
    )

    global _debug
    _debug = debug
    # The one redaction rule, before anything can print or log: secrets from the environment are masked,
    # and every log record (ours, uvicorn's, a library's) is redacted whatever handler writes it.
    register_env_secrets()
    install_log_redaction()
    # Layers: defaults → config files → environment → the flags given on the command line. --store and --home
    # also read their environment variables (click): only values typed on the command line are "cli".
    given = {
        name: value
        for name, value in (("store", store), ("home", home), ("debug", debug))
        if _on_command_line(ctx, name)
    }
    named_by = None
    if config is not None:
        named_by = "--config" if _on_command_line(ctx, "config") else CONFIG_ENV
    files = load_config_files(config, home=home or default_home(), cwd=Path.cwd(), named_by=named_by)
    settings, sources = build_settings(files, given)
    _debug = settings.debug
    # Per-command defaults from the files' [command] tables: click applies them below the environment.
    ctx.default_map = command_defaults(ctx, files)
    app_ctx = AppContext(
        settings=settings,
        may_create=ctx.invoked_subcommand in WRITING_COMMANDS,
        config_files=files,
        sources=sources,
        quiet=quiet,
    )
    ctx.obj = app_ctx
    ctx.call_on_close(lambda: app_ctx.close(failed=_failing()))


for _module in COMMAND_MODULES:
    import_module(_module).register(app)


def error_line(text: str) -> str:
    """One error line as printed: redacted (the one rule) and with rich markup escaped (a path or a symbol
    such as ``[/x]`` is text, never markup)."""
    return escape(" ".join(redact_text(text).split()))


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point. Errors print as one line (what, where, what to do) unless ``--debug``."""
    try:
        app(args=argv, prog_name="smartmarket")  # standalone: exits itself, usage errors included
    except SmartMarketError as exc:
        if _debug:
            raise
        err_console.print(f"[bold red]error:[/] {error_line(exc.one_line())}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:
        if _debug:
            raise
        err_console.print(
            f"[bold red]error:[/] {error_line(f'{type(exc).__name__}: {exc}')} — run again with --debug for the "
            "traceback",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
