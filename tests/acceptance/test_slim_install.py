"""README's first command in a fresh venv: `pip install -e .` (no extras) holds no test tools and runs the demo.

It installs about 2 GB, so it runs only when asked: SMARTMARKET_TEST_SLIM_INSTALL=1 (minutes; from the local wheel
cache here, 68 s to install). The static half of the check (every runtime import is a main dependency) runs
always: tests/unit/test_runtime_dependencies.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("SMARTMARKET_TEST_SLIM_INSTALL") != "1",
        reason="installs a fresh venv: set SMARTMARKET_TEST_SLIM_INSTALL=1",
    ),
]


def test_user_install_has_no_test_tools_and_runs_the_demo(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-e", str(ROOT)], check=True, timeout=1800)
    for tool in ("pytest", "mypy", "selenium", "schemathesis", "hypothesis"):
        probe = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {tool}"], capture_output=True)
        assert probe.returncode != 0, f"{tool} is installed by `pip install -e .`"
    env = {k: v for k, v in os.environ.items() if k not in ("SMARTMARKET_STORE", "PYTHONPATH", "SMARTMARKET_QUIET")}
    env["SMARTMARKET_HOME"] = str(tmp_path / "home")
    smartmarket = str(venv / "bin" / "smartmarket")
    version = subprocess.run([smartmarket, "--version"], capture_output=True, text=True, env=env, check=True)
    assert version.stdout.startswith("smartmarket ")
    demo = subprocess.run(
        [smartmarket, "demo", "--rows", "20000"], capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path
    )
    assert demo.returncode == 0, demo.stderr
    assert "promoted" in demo.stdout or "not promoted" in demo.stdout
    assert "demo stage 9/9: summary: done in " in demo.stderr
