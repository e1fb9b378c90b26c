"""What every CLI command shares: settings from the global options, a lazily opened store, the console."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

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


@contextmanager
def task_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display; yields ``progress(task, done, total)`` adding one bar per task name."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=max(total, 1))
            bar.update(tasks[name], completed=done)

        yield progress


__all__ = ["AppContext", "console", "err_console", "get_context", "task_progress"]
