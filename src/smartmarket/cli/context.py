"""What every CLI command shares: settings from the config files and global options, a lazily opened store, the
console."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

from smartmarket.core.errors import NotFoundError
from smartmarket.core.redaction import redact_url

if TYPE_CHECKING:  # the store (pandas, DuckDB) and settings (pydantic) load when a command uses them
    from smartmarket.core.config import ConfigFiles, Settings
    from smartmarket.store.base import Store

console = Console()
err_console = Console(stderr=True)

ProgressFn = Callable[[str, int, int], None]
"""The progress convention of every use case: ``progress(name, done, total)``, one task per name."""


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
    quiet: bool = False  # ``--quiet``: no progress on stderr (results and errors still print)
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

    def progress(self) -> AbstractContextManager[ProgressFn]:
        """``task_progress`` for this command: silent under ``--quiet``."""
        return task_progress(quiet=self.quiet)

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


class PlainProgress:
    """Progress for a stderr that is not a terminal (a pipe, a CI log): plain lines, never a carriage return.

    A task of ``total`` 1 is a stage: one line when it starts, one with its seconds when it ends. Any other task:
    one line when it starts, one each time it passes another ``step`` of its total (10 % by default) and one when
    it ends, each with the share done and the seconds since it started (counts are left out: their units vary,
    candles, bytes, milliseconds of a span; a task's name says what it counts when that matters)."""

    def __init__(self, out: Console, *, step: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self._out, self._clock = out, clock
        self._buckets = max(1, round(1 / step))
        self._tasks: dict[str, tuple[float, int]] = {}  # name -> (started, last bucket printed)

    def __call__(self, name: str, done: int, total: int) -> None:
        now = self._clock()
        started, last = self._tasks.get(name, (now, -1))
        finished = total > 0 and done >= total
        if finished:
            bucket = self._buckets
        elif total > 0:
            bucket = min(self._buckets - 1, int(max(done, 0) * self._buckets // total))
        else:  # unknown total: the start line only, then the end is unknown too
            bucket = 0
        if bucket <= last:
            return
        self._tasks[name] = (started, bucket)
        seconds = now - started
        if total == 1:
            line = f"{name}: done in {seconds:.1f} s" if finished else f"{name} …"
        elif total > 0:
            line = f"{name}: {100 * min(max(done, 0), total) / total:.0f} %, {seconds:.1f} s"
        else:
            line = f"{name}: started"
        self._out.print(line, highlight=False, markup=False, soft_wrap=True)


def _ignore(name: str, done: int, total: int) -> None:
    return None


@contextmanager
def task_progress(*, quiet: bool = False, out: Console | None = None) -> Iterator[ProgressFn]:
    """The one progress display of the CLI, on stderr (stdout stays for results: ``--json`` stays pure JSON).

    Yields ``progress(name, done, total)`` (one task per name): a rich progress bar per task when stderr is a
    terminal (removed when done), plain lines when it is not (``PlainProgress``), nothing with ``quiet``."""
    out = out or err_console
    if quiet:
        yield _ignore
        return
    if not out.is_terminal:
        yield PlainProgress(out)
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
        console=out, transient=True, redirect_stdout=console.is_terminal,  # stdout to a file stays there
    ) as bar:  # fmt: skip
        tasks: dict[str, TaskID] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total if total > 0 else None)
            bar.update(tasks[name], completed=done, total=total if total > 0 else None)

        yield progress


@contextmanager
def stage(progress: ProgressFn, name: str) -> Iterator[None]:
    """Report a step without counts of its own as a task of total 1: started, then done (when it succeeds)."""
    progress(name, 0, 1)
    yield
    progress(name, 1, 1)


def task(progress: ProgressFn, name: str) -> Callable[[int, int], None]:
    """``progress`` for the functions that report ``(done, total)`` of a single task (ingest, the backtester)."""
    return lambda done, total: progress(name, done, total)


__all__ = [
    "AppContext",
    "PlainProgress",
    "ProgressFn",
    "announce_created",
    "console",
    "err_console",
    "get_context",
    "shown_url",
    "stage",
    "task",
    "task_progress",
]
