"""Settings: defaults → config file(s) → environment (``SMARTMARKET_*``; nested ``SMARTMARKET__SECTION__KEY``)
→ CLI flags.

The config file is TOML (``smartmarket.toml``): top-level keys are settings (``home``, ``store``, ``bus``,
``debug``); each ``[command]`` table (``[backtest]``, ``[models.promote]``) holds defaults for that command's
options, which the CLI checks against the command and hands to click as its ``default_map``. Files are read from
``SMARTMARKET_HOME`` then the working directory (a later file wins key by key), or only the one named by
``--config`` / ``SMARTMARKET_CONFIG``. :func:`load_config_files` reads them; :func:`build_settings` layers them
under the environment and the CLI flags and says where each value came from. ``Settings()`` alone reads no file.

``SMARTMARKET_HOME`` holds everything the tool writes by default: the DuckDB store, quarantine files, the
model registry and reports. It defaults to the user's data directory (``platformdirs``).

Secrets (exchange and API keys) are read from the environment only; :func:`register_env_secrets` hands their
values to the one redaction rule (``core.redaction``) at start-up, so no printer, log or file shows them.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir
from pydantic import Field
from pydantic import ValidationError as PydanticValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from smartmarket.core.errors import ConfigError
from smartmarket.core.redaction import MASK, is_secret_param, redact_text, redact_url, register_secret

SECRET_ENV_VARS = (
    "SMARTMARKET_EXCHANGE_API_KEY",  # execution.ccxt_broker
    "SMARTMARKET_EXCHANGE_API_SECRET",
    "SMARTMARKET_EXCHANGE_API_PASSWORD",
    "SMARTMARKET_API_KEY",  # api.security
    "SMARTMARKET_API_READ_KEY",
)
"""Environment variables whose values are secrets: masked in every output once registered."""


DEFAULT_STORE_FILE = "smartmarket.duckdb"  # the embedded store's file under ``home``
DEFAULT_STORE_LOCK_TIMEOUT_S = 30.0  # how long a DuckDB open waits for another process's lock
STORE_LOCK_TIMEOUT_ENV = "SMARTMARKET_STORE_LOCK_TIMEOUT"


def store_lock_timeout(environ: Mapping[str, str] | None = None) -> float:
    """Seconds a DuckDB store waits for another process's lock on its file (``SMARTMARKET_STORE_LOCK_TIMEOUT``)."""
    raw = (os.environ if environ is None else environ).get(STORE_LOCK_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_STORE_LOCK_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(
            f"invalid {STORE_LOCK_TIMEOUT_ENV}={raw!r}", hint="give the seconds to wait as a number >= 0, e.g. 30"
        )
    return value


CONFIG_FILE = "smartmarket.toml"  # looked for in SMARTMARKET_HOME, then in the working directory
CONFIG_ENV = "SMARTMARKET_CONFIG"  # names one file explicitly (as --config does); then no other is read


def default_home() -> Path:
    return Path(user_data_dir("smartmarket", appauthor=False))


# The global settings read from config files while ``build_settings`` builds one ``Settings`` (below the
# environment); empty otherwise, so ``Settings()`` alone reads defaults and the environment only.
_FILE_VALUES: ContextVar[Mapping[str, Any] | None] = ContextVar("smartmarket_file_settings", default=None)


class _FileSettingsSource(PydanticBaseSettingsSource):
    """The settings of the config files being layered (see :func:`build_settings`)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_FILE_VALUES.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_VALUES.get() or {})


class Settings(BaseSettings):
    """Process-wide settings. Frozen: build a new one (``model_copy(update=…)``) to change anything."""

    model_config = SettingsConfigDict(env_prefix="SMARTMARKET_", env_nested_delimiter="__", frozen=True)

    home: Path = Field(default_factory=default_home)
    store: str | None = None
    bus: str | None = None  # SMARTMARKET_BUS: redis://… for Redis Streams; default the in-process bus
    debug: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: CLI flags (init) → environment → config files → defaults.
        return init_settings, env_settings, dotenv_settings, _FileSettingsSource(settings_cls), file_secret_settings

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:  # never print a URL's password
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name in ("store", "bus") and isinstance(value, str) else value

    @property
    def store_url(self) -> str:
        """The configured store URL, or the embedded DuckDB file under ``home``."""
        if self.store:
            return self.store
        return f"duckdb:///{(self.home / DEFAULT_STORE_FILE).resolve()}"

    @property
    def bus_url(self) -> str:
        """The configured bus URL, or the in-process bus."""
        return self.bus or "memory://"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def registry_dir(self) -> Path:
        return self.home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"


SETTING_NAMES = tuple(Settings.model_fields)
"""The global settings a config file may hold as top-level keys."""


def setting_env_var(name: str) -> str:
    """The environment variable of a global setting (``store`` → ``SMARTMARKET_STORE``)."""
    return f"SMARTMARKET_{name.upper()}"


def closest(name: str, valid: list[str] | tuple[str, ...]) -> str | None:
    """The valid name closest to ``name`` (difflib), if any is close enough."""
    found = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return found[0] if found else None


def did_you_mean(name: str, valid: list[str] | tuple[str, ...], what: str) -> str:
    """A hint naming the closest valid name, or listing them when none is close."""
    near = closest(name, valid)
    if near is not None:
        return f"did you mean {near!r}?"
    return f"valid {what}: {', '.join(sorted(valid))}" if valid else f"this takes no {what}"


@dataclass
class ConfigFiles:
    """The config files looked at (``candidates``, in reading order), those read (``files``), the global
    settings they hold (``settings``: name → value, ``setting_origin``: name → file) and their command tables
    merged (``commands``: nested tables, ``origin``: key path → the file it came from). ``named_by`` says how the
    one explicit file was named (``--config``, ``SMARTMARKET_CONFIG``), or None when files were looked for."""

    candidates: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    setting_origin: dict[str, Path] = field(default_factory=dict)
    commands: dict[str, Any] = field(default_factory=dict)
    origin: dict[tuple[str, ...], Path] = field(default_factory=dict)
    named_by: str | None = None


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def read_config_file(path: Path) -> dict[str, Any]:
    """One TOML config file; a missing, unreadable or invalid file is a one-line :class:`ConfigError`
    (``file:line:column`` for a syntax error)."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("config file not found", where=str(path), hint="check the path given to --config or "
                          f"{CONFIG_ENV}") from None  # fmt: skip
    except IsADirectoryError:
        raise ConfigError("config file is a directory", where=str(path), hint=f"name a {CONFIG_FILE} file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", where=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("invalid TOML: not UTF-8 text", where=str(path), hint="save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        where = f"{path}:{position.group(1)}:{position.group(2)}" if position else str(path)
        text = _TOML_POSITION.sub("", message) if position else message
        raise ConfigError(f"invalid TOML: {text}", where=where, hint="fix the file (TOML syntax: https://toml.io)") \
            from None  # fmt: skip


def config_candidates(home: Path, cwd: Path) -> list[Path]:
    """Where config files are looked for, in reading order (a later file wins): the home, then ``cwd``."""
    found: list[Path] = []
    for path in (home.expanduser() / CONFIG_FILE, cwd / CONFIG_FILE):
        if all(path.resolve() != seen.resolve() for seen in found):
            found.append(path)
    return found


def _merge(into: dict[str, Any], table: Mapping[str, Any], path: Path, origin: dict[tuple[str, ...], Path],
           prefix: tuple[str, ...]) -> None:  # fmt: skip
    for key, value in table.items():
        here = (*prefix, key)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, path, origin, here)
        elif isinstance(value, dict):
            into[key] = {}
            _merge(into[key], value, path, origin, here)
        else:
            into[key] = value
            origin[here] = path


def load_config_files(explicit: Path | None, *, home: Path, cwd: Path, named_by: str | None = None) -> ConfigFiles:
    """Read the config files: ``explicit`` alone (it must exist), else those of :func:`config_candidates` that
    exist. Top-level keys must be settings (:data:`SETTING_NAMES`) or command tables (checked by the CLI); a
    relative ``home`` in a file is relative to that file's folder."""
    loaded = ConfigFiles(named_by=named_by if explicit is not None else None)
    loaded.candidates = [explicit] if explicit is not None else config_candidates(home, cwd)
    for path in loaded.candidates:
        if explicit is None and not path.is_file():
            continue
        document = read_config_file(path)
        loaded.files.append(path)
        for key, value in document.items():
            if isinstance(value, dict) and key not in SETTING_NAMES:
                continue  # a command table: merged below, checked against the commands by the CLI
            if key not in SETTING_NAMES:
                raise ConfigError(
                    f"unknown setting {key!r} in config file", where=str(path),
                    hint=did_you_mean(key, SETTING_NAMES, "settings") + " (command defaults go in a [command] table)",
                )  # fmt: skip
            if key == "home" and isinstance(value, str):
                value = (path.parent / Path(value).expanduser()).resolve()
            loaded.settings[key] = value
            loaded.setting_origin[key] = path
        tables = {k: v for k, v in document.items() if isinstance(v, dict) and k not in SETTING_NAMES}
        _merge(loaded.commands, tables, path, loaded.origin, ())
    return loaded


def _env_name(name: str, environ: Mapping[str, str]) -> str | None:
    wanted = setting_env_var(name).lower()  # pydantic-settings matches names case-insensitively
    return next((key for key in environ if key.lower() == wanted), None)


def build_settings(
    files: ConfigFiles, cli: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> tuple[Settings, dict[str, str]]:
    """``Settings`` layered defaults → ``files`` → environment → ``cli`` (the flags given on the command line),
    and the source of each setting: ``default``, a file path, an environment variable's name, or ``cli``.
    A value that does not validate is a one-line :class:`ConfigError` naming its source."""
    env = os.environ if environ is None else environ
    sources: dict[str, str] = {}
    for name in SETTING_NAMES:
        env_name = _env_name(name, env)
        if name in cli:
            sources[name] = "cli"
        elif env_name is not None:
            sources[name] = env_name
        elif name in files.settings:
            sources[name] = str(files.setting_origin[name])
        else:
            sources[name] = "default"
    token = _FILE_VALUES.set(dict(files.settings))
    try:
        settings = Settings(**cli)
    except PydanticValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "settings"
        source = sources.get(name, "settings")
        raise ConfigError(
            f"invalid setting {name} (from {source}): {error['msg']}",
            hint="fix the value" + (f" in {source}" if source not in ("cli", "default") else ""),
        ) from None
    finally:
        _FILE_VALUES.reset(token)
    return settings, sources


def shown_value(key: str, value: Any) -> Any:
    """A configuration value as it may be printed: URLs and ``password=`` pairs redacted (the one rule), the
    value of a secret-named key (``api_key``, ``token``…) masked whole."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return MASK if is_secret_param(key) and value else redact_text(value)
    if isinstance(value, list):
        return [shown_value(key, v) for v in value]
    if isinstance(value, dict):
        return {k: shown_value(k, v) for k, v in value.items()}
    return value


def effective_config(settings: Settings, sources: Mapping[str, str], files: ConfigFiles) -> dict[str, Any]:
    """The effective configuration, redacted, with where each value came from: the files read (in order), every
    global setting (``store`` and ``bus`` as used: the embedded store and the in-process bus when unset) and
    every command default from the files, as ``{"value": …, "source": …}``."""
    values: dict[str, Any] = {
        "home": settings.home, "store": settings.store_url, "bus": settings.bus_url, "debug": settings.debug,
    }  # fmt: skip
    shown: dict[str, Any] = {
        "files": [str(p) for p in files.files],
        "settings": {
            name: {"value": shown_value(name, values.get(name, getattr(settings, name))), "source": sources[name]}
            for name in SETTING_NAMES
        },
        "commands": {},
    }

    def walk(table: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in table.items():
            here = (*prefix, key)
            if isinstance(value, dict) and here not in files.origin:
                walk(value, here)
            else:
                command = " ".join(prefix)
                shown["commands"].setdefault(command, {})[key] = {
                    "value": shown_value(key, value), "source": str(files.origin[here]),
                }  # fmt: skip

    walk(files.commands, ())
    return shown


def register_env_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Register the value of every :data:`SECRET_ENV_VARS` variable set in the environment with the one
    redaction rule; returns the names of those set. (Passwords in store and bus URLs need no registering:
    URL redaction removes them wherever the URL appears, and ``password=…`` pairs in any text.)"""
    env = os.environ if environ is None else environ
    found: list[str] = []
    for name in SECRET_ENV_VARS:
        value = env.get(name)
        if value:
            register_secret(value)
            found.append(name)
    return found


__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILE",
    "DEFAULT_STORE_FILE",
    "DEFAULT_STORE_LOCK_TIMEOUT_S",
    "SECRET_ENV_VARS",
    "SETTING_NAMES",
    "STORE_LOCK_TIMEOUT_ENV",
    "ConfigFiles",
    "Settings",
    "build_settings",
    "closest",
    "config_candidates",
    "default_home",
    "did_you_mean",
    "effective_config",
    "load_config_files",
    "read_config_file",
    "register_env_secrets",
    "setting_env_var",
    "shown_value",
    "store_lock_timeout",
]
