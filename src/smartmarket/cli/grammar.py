"""The one CLI grammar (docs/cli.md): deprecated spellings, model-kind vocabulary and how numbers print.

A renamed option keeps its old spelling for one release as a *hidden* typer option declared with
:meth:`Deprecated.option` (or a hidden positional with :meth:`Deprecated.argument`); the command passes both values
to :meth:`Deprecated.resolve`, which prints the one deprecation line on stderr, converts the old unit and returns
the value to use. :data:`DEPRECATIONS` lists every old spelling once: docs/cli.md's table and the contract test
(tests/unit/test_cli_grammar.py) are checked against it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand

from smartmarket.core.errors import ConfigError

T = TypeVar("T")


def deprecation_line(old: str, new: str, note: str = "") -> str:
    """``warning: --fees is deprecated, use --fee-bps (10 = 0.1 %)``."""
    return f"warning: {old} is deprecated, use {new}" + (f" ({note})" if note else "")


def warn_deprecated(old: str, new: str, note: str = "") -> None:
    """One line on stderr (plain text: it must read the same piped or not)."""
    print(deprecation_line(old, new, note), file=sys.stderr, flush=True)


def fraction_to_bps(value: float) -> float:
    """A fee or slippage rate given as a fraction (0.001) in basis points (10.0)."""
    return round(float(value) * 10_000, 9)


def bps_to_fraction(value: float) -> float:
    return float(value) / 10_000


@dataclass(frozen=True)
class Deprecated:
    """An old spelling (``old``) kept for one release; ``new`` is what to write instead.

    ``commands``: where it was accepted (docs and tests); ``note``: the unit hint of the deprecation line;
    ``convert``: from the old unit to the new one (a fee fraction to basis points)."""

    old: str
    new: str
    commands: tuple[str, ...]
    note: str = ""
    convert: Callable[[Any], Any] | None = None

    def option(self, *, help: str | None = None) -> Any:
        """The hidden typer option of the old spelling (its value ``None`` unless given)."""
        return typer.Option(self.old, hidden=True, show_default=False, help=help or f"Deprecated: {self.new}.")

    def argument(self) -> Any:
        """A hidden positional argument for a value that is now an option (``candles BTCUSDT 1h``)."""
        return typer.Argument(hidden=True, show_default=False)

    def resolve(self, new_value: T, old_value: Any) -> T:
        """``new_value`` unless the old spelling was given: then the deprecation line, and its converted value."""
        if old_value is None:
            return new_value
        warn_deprecated(self.old, self.new, self.note)
        return self.convert(old_value) if self.convert else old_value


class Command(TyperCommand):
    """A command whose hidden (deprecated) positional arguments stay out of its usage line too:
    ``app.command("candles", cls=grammar.Command)``."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not getattr(param, "hidden", False):
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


_TIME = ("ingest", "events", "ab-report")
_POSITIONAL = ("candles", "features", "regimes", "signals", "fit-signals", "evaluate-signals", "monitor")

FEES = Deprecated("--fees", "--fee-bps", ("backtest", "optimize"), "10 = 0.1 %", fraction_to_bps)
FEE = Deprecated("--fee", "--fee-bps", ("evaluate",), "10 = 0.1 %", fraction_to_bps)
SYMBOL_LIST = Deprecated(
    "--symbol", "--symbols/-s", ("backtest", "evaluate-signals", "train", "fit-signals"), "one or more, comma-separated"
)
OUTPUT = Deprecated("--output", "--out", ("features",))
REPORT = Deprecated("--report", "--out", ("backtest", "evaluate-signals"))
JSON_PATH = Deprecated("--json PATH", "--out PATH.json", ("backtest",), "--json alone prints JSON to stdout")
SINCE = Deprecated("--since", "--start", _TIME)
UNTIL = Deprecated("--until", "--end", _TIME)
SYMBOL_ARG = Deprecated("positional SYMBOL", "--symbol/-s", _POSITIONAL)
TIMEFRAME_ARG = Deprecated("positional TIMEFRAME", "--timeframe/-t", _POSITIONAL)
KIND_LGBM = Deprecated("model kind lgbm", "lightgbm", ("train", "models list", "evaluate-signals", "fit-signals"))
KIND_LOGREG = Deprecated("model kind logreg", "logistic", ("train", "models list", "evaluate-signals", "fit-signals"))

DEPRECATIONS: tuple[Deprecated, ...] = (
    FEES, FEE, SYMBOL_LIST, OUTPUT, REPORT, JSON_PATH, SINCE, UNTIL, SYMBOL_ARG, TIMEFRAME_ARG, KIND_LGBM, KIND_LOGREG,
)  # fmt: skip


# The grammar's shared options (docs/cli.md): one spelling each, everywhere.
SymbolOpt = Annotated[str | None, typer.Option("--symbol", "-s", help="Symbol, e.g. BTCUSDT or BTC/USDT (required).")]
TimeframeOpt = Annotated[
    str | None, typer.Option("--timeframe", "-t", help="Timeframe, e.g. 1h, 4h, 1d (required).", show_default=False)
]
StopLossOpt = Annotated[
    float | None,
    typer.Option("--stop-loss", help="Exit a position this many percent below (short: above) its entry price."),
]
TakeProfitOpt = Annotated[
    float | None, typer.Option("--take-profit", help="Take profit this many percent beyond the entry price.")
]
TrailingStopOpt = Annotated[
    float | None, typer.Option("--trailing-stop", help="Exit this many percent behind the best price since entry.")
]
OldSymbolArg = Annotated[str | None, SYMBOL_ARG.argument()]
OldTimeframeArg = Annotated[str | None, TIMEFRAME_ARG.argument()]


def require(value: T | None, option: str, example: str) -> T:
    """A value the command cannot run without (an option that replaced a required positional)."""
    if value is None or value == "":
        raise ConfigError(f"missing {option}", hint=f"e.g. {example}")
    return value


def positional_or_option(
    symbol: str | None, timeframe: str | None, old_symbol: str | None, old_timeframe: str | None, command: str
) -> tuple[str, str]:
    """Symbol and timeframe from ``-s/-t`` or, deprecated, from the old positional form."""
    example = f"smartmarket {command} -s BTCUSDT -t 1h"
    if old_symbol is not None and symbol is not None:
        raise ConfigError(f"unexpected argument {old_symbol!r}", hint=f"give the symbol once: {example}")
    if old_timeframe is not None and timeframe is not None:
        raise ConfigError(f"unexpected argument {old_timeframe!r}", hint=f"give the timeframe once: {example}")
    symbol = SYMBOL_ARG.resolve(symbol, old_symbol)
    timeframe = TIMEFRAME_ARG.resolve(timeframe, old_timeframe)
    return require(symbol, "--symbol/-s", example), require(timeframe, "--timeframe/-t", example)


# ------------------------------------------------------------------------------------------ model kinds

#: The one vocabulary of model kinds (options, members, displays). ``majority`` is the no-skill baseline.
MODEL_KINDS: tuple[str, ...] = ("logistic", "lightgbm", "transformer", "cnn_lstm", "majority")
#: The kind as stored in artifacts and registry ids: logistic models were saved as ``logreg`` (ids ``logreg-…``),
#: which every reader still loads; nothing stored is renamed.
STORED_KIND: dict[str, str] = {"logistic": "logreg"}
_DEPRECATED_KINDS: dict[str, tuple[Deprecated, str]] = {
    "lgbm": (KIND_LGBM, "lightgbm"),
    "logreg": (KIND_LOGREG, "logistic"),
}


def model_kind(text: str, *, allowed: tuple[str, ...] = MODEL_KINDS) -> str:
    """A model kind in the one vocabulary (``lgbm``/``logreg`` accepted with a deprecation line)."""
    name = text.strip().lower()
    if name in _DEPRECATED_KINDS:
        deprecated, name = _DEPRECATED_KINDS[name]
        deprecated.resolve(name, name)
    if name not in allowed:
        raise ConfigError(f"unknown model kind {text!r}", hint=f"use one of {', '.join(allowed)}")
    return name


def members_text(text: str) -> str:
    """A ``--members`` list with its model kinds in the one vocabulary (``lgbm``/``logreg`` warned about)."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    return ",".join(model_kind(m) if m.lower() in _DEPRECATED_KINDS else m for m in names)


def stored_kind(kind: str) -> str:
    """The kind as artifacts and registry ids spell it (``logistic`` → ``logreg``)."""
    return STORED_KIND.get(kind, kind)


def display_kind(stored: str) -> str:
    """A stored kind in the one vocabulary (``logreg`` → ``logistic``)."""
    return {v: k for k, v in STORED_KIND.items()}.get(stored, stored)


# ------------------------------------------------------------------------------------------ numbers


def pct(value: float | None, *, signed: bool = False, digits: int = 2) -> str:
    """A fraction as the one percentage format: ``12.34 %`` (``+12.34 %`` when signed); ``n/a`` if unknown."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value) * 100:{'+' if signed else ''}.{digits}f} %"
