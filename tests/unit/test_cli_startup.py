"""Start-up stays instant: importing the CLI loads no heavy library, and ``smartmarket --help`` lists every command;
every command's ``--help`` shows an example.

Each check runs in a fresh interpreter (this test process has long imported everything). Times are printed,
never asserted (benchmarks measure; tests check behaviour).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main

from smartmarket import __version__
from smartmarket.cli.app import app

# Libraries that only the commands using them may load (each costs 0.1-1 s to import).
HEAVY = ("torch", "lightgbm", "fastapi", "uvicorn", "numba", "optuna", "sklearn", "duckdb", "pandas", "pydantic")


def _run(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "COLUMNS": "200"}
    t0 = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, check=False)
    return result, time.perf_counter() - t0


def _smartmarket() -> list[str]:
    script = Path(sys.executable).with_name("smartmarket")
    return [str(script)] if script.exists() else [sys.executable, "-m", "smartmarket.cli.app"]


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = (
        "import json, sys\n"
        "import smartmarket.cli.app\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))\n"
    )
    result, took = _run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    print(f"import smartmarket.cli.app: {took:.2f} s in a fresh interpreter")
    loaded = json.loads(result.stdout)
    assert loaded == [], f"importing smartmarket.cli.app loads {', '.join(loaded)}: import them inside the command"


def test_help_lists_every_command() -> None:
    result, took = _run(*_smartmarket(), "--help")
    print(f"smartmarket --help: {took:.2f} s")
    assert result.returncode == 0, result.stderr
    names = list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert len(names) > 20
    missing = [name for name in names if name not in result.stdout]
    assert not missing, f"--help does not list {missing}"


def test_version() -> None:
    result, took = _run(*_smartmarket(), "--version")
    print(f"smartmarket --version: {took:.2f} s")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"smartmarket {__version__}\n"


def test_help_constants_mirror_the_library() -> None:
    """Names the CLI spells out for --help (so as not to import the library at start-up) equal the real ones."""
    from smartmarket.cli.app import CONFIG_ENV
    from smartmarket.cli.features import SET_NAMES
    from smartmarket.cli.ops import ZSTD_LEVEL
    from smartmarket.core import config
    from smartmarket.features.sets import FEATURE_SETS
    from smartmarket.ops.parquet_io import DEFAULT_ZSTD_LEVEL

    assert tuple(FEATURE_SETS) == SET_NAMES
    assert ZSTD_LEVEL == DEFAULT_ZSTD_LEVEL
    assert CONFIG_ENV == config.CONFIG_ENV


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every command and group under ``command``, with its full name (``models promote``)."""
    yield " ".join(path) or "smartmarket", command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_command_help_has_an_example() -> None:
    found = dict(_commands(typer.main.get_command(app)))
    assert "models promote" in found and "bench store" in found  # groups are walked too
    missing = [name for name, command in found.items() if not re.search(r"^\s*Examples?:", command.help or "", re.M)]
    assert not missing, f"--help without an 'Example:' line: {', '.join(missing)}"
