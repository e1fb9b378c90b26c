"""Settings: defaults → environment (``SMARTMARKET_*``; nested ``SMARTMARKET__SECTION__KEY``) → CLI flags.

``SMARTMARKET_HOME`` holds everything the tool writes by default: the DuckDB store, quarantine files, the
model registry and reports. It defaults to the user's data directory (``platformdirs``).
"""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path(user_data_dir("smartmarket", appauthor=False))


class Settings(BaseSettings):
    """Process-wide settings. Frozen: build a new one (``model_copy(update=…)``) to change anything."""

    model_config = SettingsConfigDict(env_prefix="SMARTMARKET_", env_nested_delimiter="__", frozen=True)

    home: Path = Field(default_factory=default_home)
    store: str | None = None
    bus: str | None = None  # SMARTMARKET_BUS: redis://… for Redis Streams; default the in-process bus
    debug: bool = False

    @property
    def store_url(self) -> str:
        """The configured store URL, or the embedded DuckDB file under ``home``."""
        if self.store:
            return self.store
        return f"duckdb:///{(self.home / 'smartmarket.duckdb').resolve()}"

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


__all__ = ["Settings", "default_home"]
