"""Settings: defaults → environment (``SMARTMARKET_*``; nested ``SMARTMARKET__SECTION__KEY``) → CLI flags.

``SMARTMARKET_HOME`` holds everything the tool writes by default: the DuckDB store, quarantine files, the
model registry and reports. It defaults to the user's data directory (``platformdirs``).

Secrets (exchange and API keys) are read from the environment only; :func:`register_env_secrets` hands their
values to the one redaction rule (``core.redaction``) at start-up, so no printer, log or file shows them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from smartmarket.core.errors import ConfigError
from smartmarket.core.redaction import redact_url, register_secret

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


def default_home() -> Path:
    return Path(user_data_dir("smartmarket", appauthor=False))


class Settings(BaseSettings):
    """Process-wide settings. Frozen: build a new one (``model_copy(update=…)``) to change anything."""

    model_config = SettingsConfigDict(env_prefix="SMARTMARKET_", env_nested_delimiter="__", frozen=True)

    home: Path = Field(default_factory=default_home)
    store: str | None = None
    bus: str | None = None  # SMARTMARKET_BUS: redis://… for Redis Streams; default the in-process bus
    debug: bool = False

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
    "DEFAULT_STORE_FILE",
    "DEFAULT_STORE_LOCK_TIMEOUT_S",
    "SECRET_ENV_VARS",
    "STORE_LOCK_TIMEOUT_ENV",
    "Settings",
    "default_home",
    "register_env_secrets",
    "store_lock_timeout",
]
