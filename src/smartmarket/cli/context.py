"""What every CLI command shares: settings from the global options, a lazily opened store, the console."""

from __future__ import annotations

from dataclasses import dataclass, field

import typer
from rich.console import Console

from smartmarket.core.config import Settings
from smartmarket.store.base import Store
from smartmarket.store.url import open_store

console = Console()
err_console = Console(stderr=True)


@dataclass
class AppContext:
    settings: Settings
    _store: Store | None = field(default=None, repr=False)

    @property
    def store(self) -> Store:
        """The store named by ``--store`` / ``SMARTMARKET_STORE``, or the embedded default. Opened once."""
        if self._store is None:
            self.settings.home.mkdir(parents=True, exist_ok=True)
            self._store = open_store(self.settings.store_url)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def get_context(ctx: typer.Context) -> AppContext:
    """The ``AppContext`` built by the root callback (works from any nested command)."""
    root = ctx.find_root()
    obj = root.obj
    if not isinstance(obj, AppContext):
        raise RuntimeError("CLI context missing: run commands through `smartmarket`")
    return obj


__all__ = ["AppContext", "console", "err_console", "get_context"]
