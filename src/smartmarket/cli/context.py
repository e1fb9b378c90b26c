"""What every CLI command shares: settings from the global options, a lazily opened store, the console."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from smartmarket.core.config import DEFAULT_STORE_FILE, Settings
from smartmarket.core.errors import NotFoundError
from smartmarket.core.redaction import redact_url
from smartmarket.store.base import Store
from smartmarket.store.url import open_store, store_created

console = Console()
err_console = Console(stderr=True)


@dataclass
class AppContext:
    """``may_create``: whether this command writes to the store and so may create a DuckDB file that does not
    exist (printing its absolute path once). Reading commands never create anything: a DuckDB path given with
    --store / SMARTMARKET_STORE that does not exist is a one-line error (exit 2); the default store not created
    yet prints "nothing is stored yet" with how to load data, and reads as empty."""

    settings: Settings
    may_create: bool = True
    _store: Store | None = field(default=None, repr=False)

    @property
    def store(self) -> Store:
        """The store named by ``--store`` / ``SMARTMARKET_STORE``, or the embedded default. Opened once."""
        if self._store is None:
            self._store = self._open()
        return self._store

    def _open(self) -> Store:
        url = self.settings.store_url
        if self.may_create:
            if self.settings.store is None:
                self.settings.home.mkdir(parents=True, exist_ok=True)
            store = open_store(url, create=True)
            announce_created(store)
            return store
        try:
            return open_store(url, create=False)
        except NotFoundError:
            if self.settings.store is not None:  # a path the user gave: a typo must not look like an empty store
                raise
        # The default store before the first ingest: say so, and read from an empty in-memory store (nothing
        # is created on disk; reading commands then report "no series", "no candles" as for any empty store).
        path = (self.settings.home / DEFAULT_STORE_FILE).resolve()
        err_console.print(
            f"nothing is stored yet (no store at {escape(str(path))}): load candles with "
            "`smartmarket ingest FILE`, `smartmarket generate` or `smartmarket demo`",
            highlight=False,
            soft_wrap=True,
        )
        store = open_store("duckdb:///:memory:")
        store.url = url  # messages name the store the user asked for
        return store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def announce_created(store: Store) -> None:
    """Print once, on stderr, the absolute path of a DuckDB store that opening ``store`` just created."""
    path = store_created(store)
    if path is not None:
        err_console.print(f"created store {escape(path)}", highlight=False, soft_wrap=True)


def shown_url(url: str) -> str:
    """``url`` as any command may print it: redacted (the one rule) and with rich markup escaped."""
    return escape(redact_url(url))


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


__all__ = ["AppContext", "announce_created", "console", "err_console", "get_context", "shown_url", "task_progress"]
