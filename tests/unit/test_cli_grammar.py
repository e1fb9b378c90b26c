"""The CLI grammar of docs/cli.md, checked on every command of the typer app (walked through click).

Needs no data. That each deprecated spelling still works, gives the new spelling's result and says so in one
line: tests/acceptance/test_cli_deprecated.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from smartmarket.cli import grammar
from smartmarket.cli.app import app

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"

# Spellings the grammar replaced: never a visible option again.
FORBIDDEN = {"--fees", "--fee", "--output", "--report", "--since", "--until", "--model-kind", "--symbol-list"}
# Each short flag means one thing everywhere.
SHORTS = {"-s": ("--symbol", "--symbols"), "-t": ("--timeframe",), "-o": ("--out",), "-p": ("--params",),
          "-n": ("--limit",), "-f": ("--format",)}  # fmt: skip


def commands() -> Iterator[tuple[str, Any]]:
    """Every leaf command, with its full name (``models list``)."""

    def walk(command: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
        if hasattr(command, "list_commands"):
            for name in command.list_commands(None):
                yield from walk(command.get_command(None, name), [*path, name])
        else:
            yield " ".join(path), command

    root = typer.main.get_command(app)
    yield "(global)", root
    yield from walk(root, [])


ALL = list(commands())


def options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option"]


def test_the_walk_finds_every_command() -> None:
    names = {name for name, _ in ALL}
    assert {
        "backtest",
        "candles",
        "train",
        "evaluate",
        "models list",
        "bench store",
        "run",
        "evaluate-signals",
    } <= names
    assert len(names) > 40


@pytest.mark.parametrize(("name", "command"), ALL, ids=[name for name, _ in ALL])
def test_visible_options_follow_the_grammar(name: str, command: Any) -> None:
    problems: list[str] = []
    for param in options(command):
        if param.hidden:
            continue
        spellings = [*param.opts, *param.secondary_opts]
        longs = [s for s in spellings if s.startswith("--")]
        for spelling in spellings:
            if spelling in FORBIDDEN:
                problems.append(f"{spelling} is a deprecated spelling (see docs/cli.md)")
            if spelling in SHORTS and not set(longs) & set(SHORTS[spelling]):
                problems.append(f"{spelling} means {'/'.join(SHORTS[spelling])}, not {'/'.join(longs)}")
        for long in longs:
            if "symbol" in long and long not in ("--symbol", "--symbols"):
                problems.append(f"{long}: a symbol is --symbol (one) or --symbols (a list)")
            if "timeframe" in long and long != "--timeframe":
                problems.append(f"{long}: the timeframe is --timeframe")
            if long in ("--symbol", "--symbols") and "-s" not in spellings:
                problems.append(f"{long} without its short -s")
            if long == "--timeframe" and "-t" not in spellings:
                problems.append("--timeframe without its short -t")
            if re.search(r"fee|slippage", long) and not long.endswith("-bps"):
                problems.append(f"{long}: fees and slippage are in basis points (--fee-bps, --slippage-bps)")
            if re.match(r"--(output|report|out-file|outfile|write|save)\b", long):
                problems.append(f"{long}: a file to write is --out PATH")
        if "--json" in spellings and not param.is_flag:
            problems.append("--json takes a value: it must be a flag (print JSON to stdout); a file is --out PATH")
        if "--out" in spellings and param.is_flag:
            problems.append("--out is a flag: it must take the PATH to write")
    for param in command.params:
        if param.param_type_name == "argument" and not param.hidden and param.name in ("symbol", "timeframe"):
            problems.append(f"positional {param.name.upper()}: symbol and timeframe are -s/-t options")
    assert not problems, f"{name}: " + "; ".join(problems)


@pytest.mark.parametrize(("name", "command"), ALL, ids=[name for name, _ in ALL])
def test_hidden_spellings_are_the_recorded_deprecations(name: str, command: Any) -> None:
    """Nothing hidden that is not in cli/grammar.py's table (and so in docs/cli.md's)."""
    recorded = {d.old for d in grammar.DEPRECATIONS}
    hidden = [s for p in options(command) if p.hidden for s in p.opts]
    assert set(hidden) <= recorded, f"{name}: hidden options not in grammar.DEPRECATIONS: {set(hidden) - recorded}"


def test_model_kind_choices_are_the_one_vocabulary() -> None:
    train = dict(ALL)["train"]
    (model,) = [p for p in train.params if "--model" in p.opts]
    for kind in grammar.MODEL_KINDS:
        assert kind in (model.help or "")
    assert "lgbm" not in (model.help or "") and "logreg" not in (model.help or "")


def test_docs_list_every_deprecation_and_the_rules() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for deprecated in grammar.DEPRECATIONS:
        assert f"`{deprecated.old}`" in text, f"docs/cli.md does not list {deprecated.old}"
        assert f"`{deprecated.new}`" in text
    for spelling in ("--symbol", "--symbols", "--timeframe", "--fee-bps", "--slippage-bps", "--json", "--out",
                     "--start", "--end", "12.34 %", *grammar.MODEL_KINDS):  # fmt: skip
        assert f"`{spelling}" in text, f"docs/cli.md does not define {spelling}"


def test_units_and_formats() -> None:
    assert grammar.fraction_to_bps(0.001) == 10.0
    assert grammar.fraction_to_bps(0.00075) == 7.5
    assert grammar.bps_to_fraction(grammar.fraction_to_bps(0.0123)) == pytest.approx(0.0123)
    assert grammar.pct(0.1234) == "12.34 %"
    assert grammar.pct(-0.05, signed=True) == "-5.00 %"
    assert grammar.pct(0.05, signed=True) == "+5.00 %"
    assert grammar.pct(None) == "n/a" and grammar.pct(float("nan")) == "n/a"
    assert grammar.stored_kind("logistic") == "logreg" and grammar.display_kind("logreg") == "logistic"
    assert grammar.stored_kind("lightgbm") == "lightgbm"
