"""What every CLI command shares: settings from the config files and global options, a lazily opened store, the
console."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from smartmarket.core.errors import NotFoundError
from smartmarket.core.redaction import redact_url

if TYPE_CHECKING:  # the store (pandas, DuckDB) and settings (pydantic) load when a command uses them
    from smartmarket.core.config import ConfigFiles, Settings
    from smartmarket.store.base import Store

console = Console()
err_console = Console(stderr=True)


@dataclass
class AppContext:
    """``may_create``: whether this command writes to the store and so may create a DuckDB file that does not
    exist: its absolute path is printed once when the command ends; a command that fails leaves no empty store
    (nor the folders made for it) behind. Reading commands never create anything: a DuckDB path given with
    --store / SMARTMARKET_STORE that does not exist is a one-line error (exit 2); the default store not created
    yet prints "nothing is stored yet" with how to load data, and reads as empty."""

    settings: Settings
    may_create: bool = True
    config_files: ConfigFiles | None = None  # the smartmarket.toml files read (None: built without the CLI)
    sources: dict[str, str] = field(default_factory=dict)  # setting → default | file path | env var | cli
    _store: Store | None = field(default=None, repr=False)
    _created: list[Path] = field(default_factory=list, repr=False)  # the new file, then new folders, deepest first

    @property
    def store(self) -> Store:
        """The store named by ``--store`` / ``SMARTMARKET_STORE``, or the embedded default. Opened once."""
        if self._store is None:
            self._store = self._open()
        return self._store

    def _open(self) -> Store:
        from smartmarket.core.config import DEFAULT_STORE_FILE
        from smartmarket.store.url import open_store, store_created

        url = self.settings.store_url
        if self.may_create:
            new_paths = _missing_paths(url)
            if self.settings.store is None:
                self.settings.home.mkdir(parents=True, exist_ok=True)
            store = open_store(url, create=True)
            if store_created(store) is not None:
                self._created = new_paths
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

    def close(self, *, failed: bool = False) -> None:
        """Close the store. One this command created is announced, or removed when the command ``failed``
        before writing anything into it."""
        store, self._store = self._store, None
        if store is None:
            return
        created, self._created = self._created, []
        if created and failed and not store.list_series() and store.last_seq() == 0:
            store.close()
            _remove_created(created)
            return
        store.close()
        if created:
            err_console.print(f"created store {escape(str(created[0]))}", highlight=False, soft_wrap=True)


def _missing_paths(url: str) -> list[Path]:
    """For a DuckDB file URL: the file (and its WAL) and each missing folder above it, deepest first."""
    if not url.startswith("duckdb:///") or ":memory:" in url:
        return []
    from smartmarket.store.duckdb_store import database_path

    path = Path(database_path(url)).resolve()
    if path.exists():
        return []
    paths = [path]
    folder = path.parent
    while not folder.exists():
        paths.append(folder)
        folder = folder.parent
    return paths


def _remove_created(paths: list[Path]) -> None:
    """Undo the creation of an empty store: its file, its WAL, then the folders made for it (if still empty)."""
    file, folders = paths[0], paths[1:]
    for victim in (file, file.with_name(file.name + ".wal")):
        victim.unlink(missing_ok=True)
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # something else was written there: keep it
            break


def announce_created(store: Store) -> None:
    """Print once, on stderr, the absolute path of a DuckDB store that opening ``store`` just created."""
    from smartmarket.store.url import store_created

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
