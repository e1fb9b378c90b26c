"""The layer order of docs/architecture.md is enforced: import-linter's contract in pyproject.toml holds, fails on a
planted upward import (function-level imports count too), and no package ``__init__`` loads torch or LightGBM."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(src: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contract, on the package under ``src``."""
    return subprocess.run(
        [str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=REPO, capture_output=True,
        text=True, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def copy_of_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("src")
    shutil.copytree(REPO / "src" / "smartmarket", target / "smartmarket", ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_the_code_keeps_the_layer_contract(copy_of_src: Path) -> None:
    result = lint(copy_of_src)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_a_planted_upward_import_breaks_it_even_inside_a_function(copy_of_src: Path) -> None:
    planted = copy_of_src / "smartmarket" / "core" / "timeutil.py"
    original = planted.read_text()
    dodge = "\n\ndef _dodge() -> object:\n    from smartmarket.pipeline.live import LivePipeline\n\n"
    dodge += "    return LivePipeline\n"
    planted.write_text(original + dodge)
    try:
        result = lint(copy_of_src)
    finally:
        planted.write_text(original)
    assert result.returncode != 0
    assert "smartmarket.core is not allowed to import smartmarket.pipeline" in result.stdout
    assert "smartmarket.core.timeutil -> smartmarket.pipeline.live" in result.stdout


def test_no_package_init_loads_torch_or_lightgbm() -> None:
    packages = sorted(p.parent.name for p in (REPO / "src" / "smartmarket").glob("*/__init__.py"))
    code = (
        "import importlib, json, sys\n"
        f"for name in {packages!r}:\n"
        "    importlib.import_module('smartmarket.' + name)\n"
        "print(json.dumps(sorted(m for m in ('torch', 'lightgbm') if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(result.stdout) == [], f"a package __init__ imports {result.stdout.strip()}"
