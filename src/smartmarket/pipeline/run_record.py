"""What a run runs, recorded in the event log at its start (``RunStarted``), and the spec rebuilt from it.

A run calls :func:`record_run_started` with :func:`run_started_event` before it publishes its first candle, so
the log says which artifact (per symbol) or which strategy and parameters traded, with which trading
configuration and version strings. ``replay`` then rebuilds the same :class:`PipelineSpec` with
:func:`spec_from_run` — no ``--artifact`` needed, even for a run that emitted no signal.

The trading configuration is recorded field by field (fees, slippage and sizing models by class name and
fields, risk settings, limits) and checked on the way back against the recorded fingerprint, so a rebuilt
configuration is the one that ran or an error, never something close.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from smartmarket.core.errors import ConfigError
from smartmarket.core.events import RunStarted, deterministic_event_id
from smartmarket.core.timeutil import now_ms as wall_ms
from smartmarket.execution.fees import FeeModel
from smartmarket.execution.risk import RiskConfig
from smartmarket.execution.risk_checks import RiskLimits
from smartmarket.execution.sizing import FixedFraction, RiskPerTrade, Sizer, VolatilityTarget
from smartmarket.execution.slippage import FixedBps, SlippageModel, VolatilitySlippage
from smartmarket.pipeline.stages.spec import (
    ArtifactEngines,
    PipelineSpec,
    StrategyChoice,
    TradingConfig,
    strategy_version,
)
from smartmarket.store.base import EventStore, StoredEvent
from smartmarket.strategies.loader import is_strategy_file

SLIPPAGE_MODELS: dict[str, type[SlippageModel]] = {m.__name__: m for m in (FixedBps, VolatilitySlippage)}
SIZERS: dict[str, type[Sizer]] = {m.__name__: m for m in (FixedFraction, VolatilityTarget, RiskPerTrade)}


def _model_fields(model: object) -> dict[str, Any]:
    """``{"model": class name, **fields}`` of a dataclass model; a model of another shape by its ``repr``."""
    if is_dataclass(model) and not isinstance(model, type):
        return {"model": type(model).__name__, **{f.name: getattr(model, f.name) for f in fields(model)}}
    return {"model": type(model).__name__, "repr": repr(model)}


def trading_fields(trading: TradingConfig) -> dict[str, Any]:
    """The trading configuration as plain JSON values (what ``RunStarted.trading`` holds)."""
    return {
        "initial_cash": trading.initial_cash,
        "fees": asdict(trading.fees),
        "slippage": _model_fields(trading.slippage),
        "sizer": _model_fields(trading.sizer),
        "risk": asdict(trading.risk),
        "max_size": trading.max_size,
        "limits": asdict(trading.limits) if trading.limits is not None else None,
        "reconcile": trading.reconcile,
    }


def _model(kind: str, known: Mapping[str, type[Any]], data: Mapping[str, Any]) -> Any:
    values = dict(data)
    name = str(values.pop("model", ""))
    cls = known.get(name)
    if cls is None or "repr" in values:
        raise ConfigError(
            f"the run used the {kind} model {name!r}, which replay cannot rebuild from the log",
            hint=f"replay with --artifact/--strategy and the run's trading options ({', '.join(known)} rebuild)",
        )
    return cls(**values)


def trading_from_fields(data: Mapping[str, Any], fingerprint: str = "") -> TradingConfig:
    """The :class:`TradingConfig` recorded by :func:`trading_fields`; checked against ``fingerprint`` if given."""
    try:
        limits = data.get("limits")
        trading = TradingConfig(
            initial_cash=float(data["initial_cash"]), fees=FeeModel(**data["fees"]),
            slippage=_model("slippage", SLIPPAGE_MODELS, data["slippage"]),
            sizer=_model("sizer", SIZERS, data["sizer"]), risk=RiskConfig(**data["risk"]),
            max_size=float(data["max_size"]), limits=RiskLimits(**limits) if limits is not None else None,
            reconcile=data.get("reconcile", "check"),
        )  # fmt: skip
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"the recorded trading configuration is incomplete or malformed ({exc})",
                          hint="replay with --artifact/--strategy and the run's trading options") from None  # fmt: skip
    if fingerprint and trading.fingerprint() != fingerprint:
        raise ConfigError(
            f"the rebuilt trading configuration's fingerprint is {trading.fingerprint()}, the run's {fingerprint}",
            hint="replay with --artifact/--strategy and the run's trading options",
        )
    return trading


def _versions(spec: PipelineSpec) -> dict[str, dict[str, str]]:
    versions = {"orders": {s: spec.order_version(s) for s in spec.symbols}}
    if spec.trades_signals:
        versions["signals"] = {s: spec.signal_version(s) for s in spec.symbols}
    if spec.shadow is not None:
        versions["shadow"] = {s: spec.shadow.version(s) for s in spec.symbols}
    return versions


def run_started_event(
    spec: PipelineSpec, *, broker: str = "paper", now_ms: int | None = None, run_id: str | None = None
) -> RunStarted:
    """The ``RunStarted`` of a run of ``spec`` through ``broker`` (``paper``, or e.g. ``ccxt:binance``).

    ``run_id`` defaults to a hash of what runs, so every process of one deployment (``run``, or the ``worker``s)
    builds the same event; give one to tell apart two runs of the same configuration. ``now_ms``: the start time.
    """
    versions = _versions(spec)
    strategy = spec.strategy
    content: dict[str, Any] = {
        "symbols": list(spec.symbols),
        "timeframe": str(spec.timeframe),
        "artifacts": dict(versions.get("signals", {})),
        "strategy": strategy.name if strategy is not None else None,
        "params": dict(strategy.params) if strategy is not None else {},
        "shadow": dict(versions.get("shadow", {})),
        "broker": broker,
        "trading": trading_fields(spec.trading),
        "fingerprint": spec.trading.fingerprint(),
        "versions": versions,
    }
    digest = deterministic_event_id("RunStarted", json.dumps(content, sort_keys=True, default=str), run_id or "")
    when = wall_ms() if now_ms is None else now_ms
    return RunStarted(
        event_id=digest, ts_event=when, ts_init=when, correlation_id=digest, run_id=run_id or digest[:16], **content
    )


def record_run_started(store: EventStore, event: RunStarted) -> bool:
    """Append ``event`` unless the log holds it already (same id); True when it was appended."""
    if any(e.message.event_id == event.event_id for e in store.read_events(types=["RunStarted"])):
        return False
    store.append_events([event])
    return True


def recorded_runs(store: EventStore) -> list[StoredEvent]:
    """Every ``RunStarted`` in the log, in log order."""
    return [e for e in store.read_events(types=["RunStarted"]) if isinstance(e.message, RunStarted)]


def find_run(
    store: EventStore, *, run_id: str | None = None, symbols: Sequence[str] = (), to_seq: int | None = None
) -> StoredEvent | None:
    """The run ``run_id`` (an id or a unique prefix), else the latest run recorded at or before ``to_seq`` that
    covers ``symbols``; None when the log records no such run (a log from an older version)."""
    runs = recorded_runs(store)
    if run_id is not None:
        found = [e for e in runs if _message(e).run_id.startswith(run_id)]
        ids = sorted({_message(e).run_id for e in found})
        if len(ids) != 1:
            known = ", ".join(sorted({_message(e).run_id for e in runs})) or "none"
            what = "matches no run" if not ids else f"matches {len(ids)} runs"
            raise ConfigError(f"--run {run_id} {what}", hint=f"recorded runs: {known}")
        return found[-1]
    wanted = set(symbols)
    candidates = [e for e in runs if (to_seq is None or e.seq <= to_seq) and wanted <= set(_message(e).symbols)]
    return candidates[-1] if candidates else None


def _message(stored: StoredEvent) -> RunStarted:
    assert isinstance(stored.message, RunStarted)
    return stored.message


def spec_from_run(
    run: RunStarted, registry_dir: str | Path, *, symbols: Sequence[str] | None = None
) -> PipelineSpec:  # fmt: skip
    """The :class:`PipelineSpec` the run ran (``symbols``: a subset to replay), checked against its versions."""
    names = list(symbols) if symbols else list(run.symbols)
    missing = [s for s in names if s not in run.symbols]
    if missing:
        raise ConfigError(
            f"run {run.run_id} did not run {', '.join(missing)}",
            hint=f"it ran {', '.join(run.symbols)}; choose --symbols among them or another --run",
        )
    trading = trading_from_fields(run.trading, run.fingerprint)
    recorded = run.versions.get("orders", {})
    if run.strategy is not None and is_strategy_file(run.strategy):
        # hashed before anything loads it: a file changed since the run is refused, never run
        expected = f"strategy:{strategy_version(run.strategy, run.params)}/{trading.fingerprint()}"
        changed = [s for s in names if s in recorded and recorded[s] != expected]
        if changed:
            raise ConfigError(
                f"{changed[0]}: the strategy file {run.strategy.rpartition(':')[0]} is not the version the run used",
                hint="the strategy file changed since the run (its sha256 is part of the version); restore it",
            )
    if run.strategy is not None:
        spec = PipelineSpec.build(
            names, run.timeframe, None, trading, strategy=StrategyChoice(run.strategy, run.params)
        )
    else:
        artifacts = {s: run.artifacts[s] for s in names if s in run.artifacts}
        if len(artifacts) != len(names):
            lacking = ", ".join(sorted(set(names) - set(artifacts)))
            raise ConfigError(f"run {run.run_id} records no artifact for {lacking}", hint="replay with --artifact ID")
        spec = PipelineSpec.build(
            names, run.timeframe, ArtifactEngines(registry_dir, run.timeframe, artifacts), trading
        )
    for symbol in names:
        if symbol in recorded and spec.order_version(symbol) != recorded[symbol]:
            raise ConfigError(
                f"{symbol}: the rebuilt pipeline's version {spec.order_version(symbol)} is not the run's "
                f"{recorded[symbol]}",
                hint="the strategy file changed since the run (its sha256 is part of the version)"
                if run.strategy is not None and is_strategy_file(run.strategy)
                else "is this the registry the run used? (--registry)",
            )
    return spec


__all__ = [
    "SIZERS",
    "SLIPPAGE_MODELS",
    "find_run",
    "record_run_started",
    "recorded_runs",
    "run_started_event",
    "spec_from_run",
    "trading_fields",
    "trading_from_fields",
]
