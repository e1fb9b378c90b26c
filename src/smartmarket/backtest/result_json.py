"""A backtest as one JSON document, byte-identical for identical runs.

Layout (``schema`` = ``smartmarket.backtest/1``)::

    strategy, params, symbols, timeframe, initial_cash, final_equity
    candles          candles fed to the kernel, all symbols together
    metrics          analytics.Metrics.to_dict(): returns are fractions, undefined values null
    benchmark        e.g. {"buy_hold_return": 0.42}: context over the same bars
    trades           one object per closed round trip (entry_ts, exit_ts, side, prices, quantity, pnl, fees, …)
    open_positions   positions still open at the end (empty when positions are closed at the end)
    equity           [ts, value] per bar (ts = UTC epoch ms of the bar, value at its close)
    monthly_returns  [{"month": "YYYY-MM", "return": r}, …]
    provenance       engine.provenance.backtest_provenance(...)

The document holds no wall-clock time and no run duration. It is written with one list item per line, so
it stays readable and diffs well. The engine does not import ``analytics``: metrics and monthly returns come
in as plain data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.backtest.runner import BacktestResult
from smartmarket.core.errors import ValidationError
from smartmarket.core.trading import Trade
from smartmarket.execution.portfolio import Position

SCHEMA = "smartmarket.backtest/1"
# Lists written one item per line; everything else is written compactly on its key's line.
_LINE_PER_ITEM = frozenset({"trades", "open_positions", "equity", "monthly_returns"})


def trade_record(trade: Trade) -> dict[str, Any]:
    """A closed trade as plain data; ``return`` is net pnl over the entry notional (a fraction)."""
    return {
        "symbol": trade.symbol,
        "side": trade.side,
        "entry_ts": int(trade.entry_ts),
        "exit_ts": int(trade.exit_ts),
        "entry_price": float(trade.entry_price),
        "exit_price": float(trade.exit_price),
        "quantity": float(trade.quantity),
        "pnl": float(trade.pnl),
        "fees": float(trade.fees),
        "return": float(trade.return_pct),
        "entry_bar": int(trade.entry_bar),
        "exit_bar": int(trade.exit_bar),
        "exit_reason": trade.exit_reason,
    }


def position_record(position: Position) -> dict[str, Any]:
    """An open position: signed quantity (negative = short), average entry price and last mark."""
    return {
        "symbol": position.symbol,
        "quantity": float(position.quantity),
        "avg_price": float(position.avg_price),
        "entry_ts": int(position.entry_ts),
        "last_price": float(position.last_price),
        "entry_fees": float(position.entry_fees),
    }


def equity_records(equity: pd.Series) -> list[list[int | float]]:
    """``[[ts, value], …]`` with int ts and float values."""
    ts = equity.index.to_numpy(dtype=np.int64).tolist()
    values = equity.to_numpy(dtype=np.float64).tolist()
    return [[t, v] for t, v in zip(ts, values, strict=True)]


def backtest_document(
    result: BacktestResult,
    *,
    metrics: Mapping[str, Any],
    monthly_returns: Sequence[Mapping[str, Any]],
    provenance: Mapping[str, Any],
    benchmark: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-ready document of one run (see the module docstring for the layout).

    ``params`` are the strategy's full parameters (defaults included); ``result.params`` when omitted.
    """
    return {
        "schema": SCHEMA,
        "strategy": result.strategy,
        "params": dict(result.params if params is None else params),
        "symbols": list(result.symbols),
        "timeframe": result.timeframe.value if result.timeframe is not None else None,
        "initial_cash": float(result.initial_cash),
        "final_equity": float(result.final_equity),
        "candles": int(result.bars),
        "metrics": dict(metrics),
        "benchmark": dict(benchmark or {}),
        "trades": [trade_record(t) for t in result.trades],
        "open_positions": [position_record(p) for p in result.open_positions],
        "equity": equity_records(result.equity),
        "monthly_returns": [dict(m) for m in monthly_returns],
        "provenance": dict(provenance),
    }


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def dumps_document(document: Mapping[str, Any]) -> str:
    """Deterministic JSON text: one top-level key per line, the long lists one item per line.

    Raises ``ValidationError`` on NaN or infinity (they are not JSON): undefined values must be ``None``.
    """
    lines = []
    try:
        for key, value in document.items():
            if key in _LINE_PER_ITEM and isinstance(value, list) and value:
                items = ",\n".join(f"  {_dump(item)}" for item in value)
                lines.append(f"{_dump(key)}: [\n{items}\n]")
            else:
                lines.append(f"{_dump(key)}: {_dump(value)}")
    except ValueError as exc:
        bad = _first_non_finite(document)
        raise ValidationError(f"backtest document holds a non-JSON number ({exc})", where=bad) from None
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _first_non_finite(value: Any, path: str = "document") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, Mapping):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _first_non_finite(item, f"{path}.{key}")
        if found:
            return found
    return None


def write_document(path: Path, document: Mapping[str, Any]) -> Path:
    """Write ``dumps_document(document)`` as UTF-8 (parent directories created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dumps_document(document).encode("utf-8"))
    return path


__all__ = [
    "SCHEMA",
    "backtest_document",
    "dumps_document",
    "equity_records",
    "position_record",
    "trade_record",
    "write_document",
]
