"""``smartmarket config show`` / ``config path``, and the per-command defaults of the config file.

A config file's ``[command]`` tables (``[backtest]``, ``[models.promote]``) become click's ``default_map``, so any
option of any command can be defaulted without touching the command: :func:`command_defaults` checks every key
against the command's options (flag spelling ``fee_bps``/``fee-bps`` or the parameter's name) and every value
against the option's type, each mistake a one-line ``ConfigError`` naming the file, the key and the closest
valid name. A global setting in the file also defaults every option that reads that setting's environment
variable (``bus`` → each ``--bus`` with ``envvar=SMARTMARKET_BUS``), below that command's own table.
Precedence, as click applies it: command line → environment → file (``default_map``) → the option's default.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from smartmarket.cli.context import console, get_context

if TYPE_CHECKING:
    from pathlib import Path

    from smartmarket.core.config import ConfigFiles

SHOW_HELP = """Show the effective configuration and where each value came from.

Sources: default, a config file (its path), an environment variable (its name) or cli (a global flag).
Settings come first (store and bus as used: the embedded store and in-process bus when unset), then the
per-command defaults of the config files. Passwords and keys are never shown.

Examples:

  smartmarket config show

  smartmarket --config ./ci.toml config show --json
"""

PATH_HELP = """List the config files looked for, in reading order (a later file wins key by key), and which exist.

Without --config / SMARTMARKET_CONFIG: smartmarket.toml in SMARTMARKET_HOME, then in the working directory.

Example:

  smartmarket config path
"""


# typer carries its own copy of click (typer._click, private): commands, options and contexts are handled here by
# what they do (``list_commands``, ``param_type_name``), never by their class.
Command = Any
Param = Any
ClickContext = Any


def _is_option(param: Param) -> bool:
    return getattr(param, "param_type_name", None) == "option" and param.name is not None


def _is_group(command: Command) -> bool:
    return hasattr(command, "list_commands") and hasattr(command, "get_command")


def _option_keys(command: Command) -> dict[str, Param]:
    """The keys a config table may use for ``command``'s options: each long flag without its dashes (``-`` or
    ``_`` between words) and the parameter's own name."""
    keys: dict[str, Param] = {}
    for param in command.params:
        if not _is_option(param):
            continue
        keys[param.name] = param
        for opt in param.opts:
            if opt.startswith("--"):
                keys[opt[2:].replace("-", "_")] = param
    return keys


def _shown_keys(command: Command) -> list[str]:
    """The key names suggested for ``command``: its first long flag's spelling (``fee_bps``)."""
    shown: list[str] = []
    for param in command.params:
        if _is_option(param) and not getattr(param, "hidden", False):
            long = [opt for opt in param.opts if opt.startswith("--")]
            shown.append(long[0][2:].replace("-", "_") if long else param.name)
    return shown


def _subcommands(group: Command, ctx: ClickContext) -> dict[str, Command]:
    commands: dict[str, Command] = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None:
            commands[name] = command
    return commands


def _table_defaults(
    command: Command,
    table: dict[str, Any],
    path: tuple[str, ...],
    parent: ClickContext,
    files: ConfigFiles,
    inherited: dict[str, Any],
) -> dict[str, Any]:
    """``table`` checked against ``command`` (and its subcommands, for a group) as a ``default_map``."""
    from smartmarket.core.config import did_you_mean
    from smartmarket.core.errors import ConfigError

    ctx = type(parent)(command, info_name=path[-1], parent=parent)
    keys = _option_keys(command)
    subcommands = _subcommands(command, ctx) if _is_group(command) else {}
    defaults: dict[str, Any] = {}
    for option in command.params:  # global settings that default this command's options (by env var)
        envvars = [option.envvar] if isinstance(option.envvar, str) else list(option.envvar or ())
        for envvar in envvars:
            if envvar in inherited and _is_option(option):
                defaults[option.name] = inherited[envvar]
    name = " ".join(path)
    for key, value in table.items():
        where = files.origin.get((*path, key))
        if isinstance(value, dict) and key in subcommands:
            defaults[key] = _table_defaults(subcommands[key], value, (*path, key), ctx, files, inherited)
            continue
        if isinstance(value, dict) and (*path, key) not in files.origin:
            nested = next((files.origin[k] for k in files.origin if k[: len(path) + 1] == (*path, key)), None)
            raise ConfigError(
                f"unknown command table [{'.'.join((*path, key))}] in config file",
                where=str(nested) if nested else None,
                hint=did_you_mean(key, list(subcommands), f"subcommands of `{name}`")
                if subcommands else f"`{name}` has no subcommands; its options are keys of [{'.'.join(path)}]",
            )  # fmt: skip
        if key in subcommands:
            raise ConfigError(
                f"{key!r} in [{'.'.join(path)}] is a subcommand of `{name}`, not an option",
                where=str(where),
                hint=f"give its option defaults in a [{'.'.join((*path, key))}] table",
            )
        param = keys.get(key.replace("-", "_"))
        if param is None:
            argument = next((p for p in command.params if p.name == key.replace("-", "_")), None)
            if argument is not None:
                raise ConfigError(
                    f"{key!r} in [{'.'.join(path)}] is an argument of `{name}`, not an option", where=str(where),
                    hint="give it on the command line",
                )  # fmt: skip
            raise ConfigError(
                f"unknown option {key!r} in [{'.'.join(path)}] of config file", where=str(where),
                hint=did_you_mean(key.replace("-", "_"), _shown_keys(command), f"options of `{name}`"),
            )  # fmt: skip
        try:
            param.process_value(ctx, value)
        except typer.BadParameter as exc:
            raise ConfigError(
                f"invalid value for {key!r} in [{'.'.join(path)}] of config file: {exc.message}",
                where=str(where),
                hint=f"see `smartmarket {name} --help`",
            ) from None
        assert param.name is not None
        defaults[param.name] = value
    for key, sub in subcommands.items():  # the global settings reach the options of nested commands too
        if key not in defaults and inherited:
            found = _table_defaults(sub, {}, (*path, key), ctx, files, inherited)
            if found:
                defaults[key] = found
    return defaults


def command_defaults(root: ClickContext, files: ConfigFiles) -> dict[str, Any]:
    """The ``default_map`` for the root context: the files' command tables, every key and value checked against
    the command (one-line ``ConfigError`` naming the file, the key and the closest valid name), plus the files'
    global settings for the options that read their environment variables."""
    from smartmarket.core.config import SETTING_NAMES, did_you_mean, setting_env_var
    from smartmarket.core.errors import ConfigError

    commands = _subcommands(root.command, root)
    inherited = {setting_env_var(name): files.settings[name] for name in files.settings}
    defaults: dict[str, Any] = {}
    for name, command in commands.items():
        table = files.commands.get(name)
        if table is not None or inherited:
            found = _table_defaults(command, table or {}, (name,), root, files, inherited)
            if found:
                defaults[name] = found
    for name in files.commands:
        if name not in commands:
            where = next((files.origin[k] for k in files.origin if k[0] == name), None)
            raise ConfigError(
                f"unknown command table [{name}] in config file", where=str(where) if where else None,
                hint=did_you_mean(name, [*commands, *SETTING_NAMES], "commands and settings"),
            )  # fmt: skip
    return defaults


def _files(ctx: typer.Context) -> ConfigFiles:
    from smartmarket.core.config import ConfigFiles

    return get_context(ctx).config_files or ConfigFiles()


def _text(value: Any) -> str:
    """A value as the table shows it: text as is, anything else in JSON (``true``, ``10``, ``["a", "b"]``)."""
    return value if isinstance(value, str) else json.dumps(value)


def config_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    from smartmarket.core.config import effective_config

    app_ctx = get_context(ctx)
    shown = effective_config(app_ctx.settings, app_ctx.sources, _files(ctx))
    if as_json:
        typer.echo(json.dumps(shown, indent=2, default=str))
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("setting", "value", "source"):
        table.add_column(column, overflow="fold")
    for name, item in shown["settings"].items():
        table.add_row(name, escape(_text(item["value"])), escape(item["source"]))
    for command, options in shown["commands"].items():
        for key, item in options.items():
            table.add_row(escape(f"[{command.replace(' ', '.')}] {key}"), escape(_text(item["value"])),
                          escape(item["source"]))  # fmt: skip
    console.print(table)
    files = shown["files"]
    console.print(f"config files read: {escape(', '.join(files)) if files else 'none'}", style="dim", soft_wrap=True)


def config_path(ctx: typer.Context) -> None:
    files = _files(ctx)
    candidates: list[Path] = files.candidates
    for path in candidates:
        if files.named_by is not None:
            state = f"named by {files.named_by}"
        else:
            state = "read" if path in files.files else "not found"
        typer.echo(f"{path}\t{state}")


def register(app: typer.Typer) -> None:
    """Add the ``config`` group to ``app``."""
    group = typer.Typer(
        help="The configuration: smartmarket.toml files, environment, flags.\n\nExample: smartmarket config show",
        no_args_is_help=True,
    )
    group.command("show", help=SHOW_HELP)(config_show)
    group.command("path", help=PATH_HELP)(config_path)
    app.add_typer(group, name="config")


__all__ = ["command_defaults", "config_path", "config_show", "register"]
