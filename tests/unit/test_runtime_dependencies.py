"""The user install (`pip install -e .`, no extras) holds everything the product imports: every third-party
module imported under src/ belongs to a main dependency of pyproject.toml (or one they bring, named below), and
the test tools of `.[dev]` are never imported at run time except the optional peers, inside a function."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "smartmarket"

# Modules that come with a main dependency rather than being one: module -> the dependency that brings it.
BROUGHT_BY = {"starlette": "fastapi", "hiredis": "redis"}
# Optional peers, imported inside a function that falls back when they are absent (benchmarks, parity tests).
OPTIONAL = {"backtesting": "dev", "vectorbt": "dev", "onnxruntime": "onnx"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _imports() -> dict[str, list[tuple[Path, int, bool]]]:
    """Top-level third-party module -> (file, line, at module level) of each import."""
    found: dict[str, list[tuple[Path, int, bool]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "smartmarket" or top in sys.stdlib_module_names or top == "__future__":
                    continue
                found.setdefault(top, []).append((path, node.lineno, id(node) in top_level))
    return found


def test_every_runtime_import_is_a_main_dependency() -> None:
    project = _project()
    main = {_name(r) for r in project["dependencies"]}  # type: ignore[union-attr]
    extras = {k: {_name(r) for r in v} for k, v in project["optional-dependencies"].items()}  # type: ignore[union-attr]
    distributions = packages_distributions()
    missing = []
    for module, places in _imports().items():
        if module in OPTIONAL:
            assert not any(level for _, _, level in places), f"{module} imported at module level: {places}"
            owners = {_name(d) for d in distributions.get(module, [module])}
            assert owners & extras[OPTIONAL[module]], f"{module} is not in the {OPTIONAL[module]} extra"
            continue
        if module in BROUGHT_BY:
            assert BROUGHT_BY[module] in main
            continue
        owners = {_name(d) for d in distributions.get(module, [module])}
        if not owners & main:
            path, line, _ = places[0]
            missing.append(f"{module} ({path.relative_to(ROOT)}:{line}; distribution {sorted(owners)})")
    assert not missing, "imported at run time but not a main dependency: " + ", ".join(missing)


def test_no_test_tool_is_a_main_dependency_and_torch_is_a_range() -> None:
    project = _project()
    requirements = list(project["dependencies"])  # type: ignore[call-overload]
    main = {_name(r) for r in requirements}
    assert not main & {"pytest", "hypothesis", "mypy", "ruff", "selenium", "schemathesis", "import-linter"}
    torch = next(r for r in requirements if _name(r) == "torch")
    assert "==" not in torch and ">=" in torch and "<" in torch.replace("<=", "")
