"""Strategies from the user's own files: ``path/to/file.py:ClassName``.

``load_strategy_class(spec)`` runs the file as a module (once per file version: the module is cached by path,
size and modification time) and returns the named :class:`~smartmarket.engine.strategy.Strategy` subclass.
Every mistake a user can make in the file (missing file or class, a syntax error, an exception while the file
runs, a class that is not a Strategy or leaves ``on_bar`` abstract) is one ``ConfigError`` naming the file and,
where there is one, the line. ``strategies.registry`` calls it for any strategy name spelled this way, so every
command taking a strategy name accepts a file.

A strategy file is code: loading it runs it with the user's rights, like ``python file.py``. Only the person
running the command chooses it (the API refuses file strategies, see ``docs/operations.md``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from types import ModuleType

from smartmarket.core.errors import ConfigError
from smartmarket.engine.strategy import Strategy

_CONTRACT = (
    "a strategy derives from smartmarket.engine.strategy.Strategy and defines on_bar(self, ctx); see docs/strategies.md"
)
_modules: dict[tuple[str, int, int], ModuleType] = {}


def is_strategy_file(spec: str) -> bool:
    """True when ``spec`` names a class in a Python file (``file.py:ClassName``) rather than a registered name."""
    path, sep, cls = spec.rpartition(":")
    return bool(sep) and path.endswith(".py") and bool(cls)


def split_spec(spec: str) -> tuple[Path, str]:
    """``"dir/file.py:Name"`` → (absolute path, ``"Name"``); a ConfigError when the spelling is wrong."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not name.isidentifier():
        raise ConfigError(f"cannot read strategy {spec!r}", hint="write a registered name or path/to/file.py:ClassName")
    return Path(path).expanduser().resolve(), name


def file_digest(spec: str) -> str:
    """The first 12 hex digits of the SHA-256 of the strategy file (runs record which version traded)."""
    path, _ = split_spec(spec)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise ConfigError(f"cannot read strategy file: {exc.strerror}", where=str(path)) from None


def error_site(exc: BaseException, path: Path) -> str:
    """``file:line`` of the innermost traceback frame inside ``path`` (``file`` alone when none is)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path:
            line = frame.lineno
    return f"{path}:{line}" if line is not None else str(path)


def _module(path: Path) -> ModuleType:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ConfigError("strategy file not found", where=str(path), hint="check the path before the ':'") from None
    except OSError as exc:
        raise ConfigError(f"cannot read strategy file: {exc.strerror}", where=str(path)) from None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    cached = _modules.get(key)
    if cached is not None:
        return cached
    name = f"smartmarket_user_strategy_{hashlib.sha256(key[0].encode()).hexdigest()[:12]}"
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ConfigError("cannot load strategy file", where=str(path), hint="give a .py file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # dataclasses and typing look the module up while it runs
    try:
        loader_spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        where = f"{path}:{exc.lineno}" if exc.lineno else str(path)
        raise ConfigError(f"syntax error in strategy file: {exc.msg}", where=where, hint="fix that line") from None
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ConfigError(
            f"strategy file failed while loading: {type(exc).__name__}: {exc}",
            where=error_site(exc, path),
            hint="fix that line (the file runs top to bottom when loaded)",
        ) from None
    _modules[key] = module
    return module


def _strategy_classes(module: ModuleType) -> list[str]:
    return sorted(
        n
        for n, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, Strategy) and obj.__module__ == module.__name__
    )


def load_strategy_class(spec: str) -> type[Strategy]:
    """The Strategy subclass named by ``spec`` (``path/to/file.py:ClassName``), loaded from that file."""
    path, name = split_spec(spec)
    module = _module(path)
    cls = getattr(module, name, None)
    if cls is None:
        found = _strategy_classes(module)
        hint = f"strategy classes in it: {', '.join(found)}" if found else _CONTRACT
        raise ConfigError(f"no class {name!r} in strategy file", where=str(path), hint=hint)
    own = inspect.isclass(cls) and cls.__module__ == module.__name__
    where = f"{path}:{_line(cls)}" if own else str(path)
    if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
        raise ConfigError(f"{name} is not a Strategy", where=where, hint=_CONTRACT)
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise ConfigError(f"{name} does not define {missing}", where=where, hint=_CONTRACT)
    return cls


def _line(cls: type) -> int | str:
    try:
        return inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return "?"


__all__ = ["error_site", "file_digest", "is_strategy_file", "load_strategy_class", "split_spec"]
