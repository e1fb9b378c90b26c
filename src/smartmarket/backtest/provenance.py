"""Provenance of a backtest: everything needed to reproduce it, as plain JSON-ready data.

It records the exact candles (range, row count and an order-independent checksum per symbol), the strategy
and its parameters, the execution settings (cash, fees, slippage, sizing, risk, latency) and the code
version (package version plus the git commit when the code runs from a git checkout). Nothing here reads
a clock, so the same run always has the same provenance.
"""

from __future__ import annotations

import dataclasses
import functools
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

import smartmarket
from smartmarket.core.timeutil import format_ms
from smartmarket.core.types import Timeframe
from smartmarket.engine.kernel import KernelConfig
from smartmarket.store.checksum import summarize_candles

_GIT_TIMEOUT_S = 5.0


def _git(package_dir: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(package_dir), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def code_version() -> dict[str, Any]:
    """``{"smartmarket": version, "git_commit": sha or None, "git_dirty": bool or None}``.

    ``git_dirty`` is true when the package's own files differ from the commit. Computed once per process,
    so runs within one process always agree even if the checkout changes meanwhile.
    """
    package_dir = Path(smartmarket.__file__).resolve().parent
    commit = _git(package_dir, "rev-parse", "HEAD")
    dirty: bool | None = None
    if commit is not None:
        status = _git(package_dir, "status", "--porcelain", "--", ".")
        dirty = None if status is None else bool(status)
    return {"smartmarket": smartmarket.__version__, "git_commit": commit, "git_dirty": dirty}


def data_provenance(frames: Mapping[str, pd.DataFrame], timeframe: Timeframe) -> list[dict[str, Any]]:
    """Per symbol: timeframe, rows, first/last candle open (ms and ISO) and the candle checksum (hex)."""
    records = []
    for symbol, frame in frames.items():
        summary = summarize_candles(frame)
        first, last = summary.min_ts, summary.max_ts
        records.append(
            {
                "symbol": symbol,
                "timeframe": timeframe.value,
                "rows": summary.rows,
                "first_ts": first,
                "last_ts": last,
                "first": format_ms(first) if first is not None else None,
                "last": format_ms(last) if last is not None else None,
                "checksum": f"{summary.checksum:016x}",
            }
        )
    return records


def describe_component(component: object) -> dict[str, Any]:
    """A frozen config object (fee, slippage or sizing model) as ``{"model": class name, **fields}``."""
    fields: dict[str, Any] = {}
    if dataclasses.is_dataclass(component) and not isinstance(component, type):
        fields = {f.name: getattr(component, f.name) for f in dataclasses.fields(component)}
    return {"model": type(component).__name__, **fields}


def execution_provenance(config: KernelConfig) -> dict[str, Any]:
    """Cash, fees, slippage, sizing, risk limits and timing of a run, as plain data."""
    return {
        "initial_cash": config.initial_cash,
        "fees": describe_component(config.fees),
        "slippage": describe_component(config.slippage),
        "sizer": describe_component(config.sizer),
        "risk": describe_component(config.risk),
        "latency_bars": config.latency_bars,
        "long_only": config.long_only,
        "close_at_end": config.close_at_end,
    }


def backtest_provenance(
    *,
    frames: Mapping[str, pd.DataFrame],
    timeframe: Timeframe,
    strategy: str,
    params: Mapping[str, Any],
    config: KernelConfig,
    start: int | None = None,
    end: int | None = None,
) -> dict[str, Any]:
    """The provenance document of one backtest.

    ``start``/``end`` are the requested bounds (``None`` = open); ``data`` says what was actually read.
    ``params`` should be the strategy's full parameters, defaults included.
    """
    return {
        "requested_range": {
            "start_ts": start,
            "end_ts": end,
            "start": format_ms(start) if start is not None else None,
            "end": format_ms(end) if end is not None else None,
        },
        "data": data_provenance(frames, timeframe),
        "strategy": {"name": strategy, "params": dict(params)},
        "execution": execution_provenance(config),
        "code": dict(code_version()),
    }


__all__ = [
    "backtest_provenance",
    "code_version",
    "data_provenance",
    "describe_component",
    "execution_provenance",
]
