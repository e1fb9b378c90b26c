"""The evaluation a candidate needs before promotion: out of sample, against the current production entry.

``evaluate_candidate(registry, store, candidate_id)`` finds the production entry of the candidate's (symbol,
timeframe, kind), runs both over the stored candles *after* everything either was fitted on (an ensemble artifact:
its frame's last candle; a model: its training/validation end plus the label horizon), on the same candles, and
compares them (``ops.abtest.compare``: hit rate, Brier, ECE, P&L after fees, Diebold-Mariano test). With nothing
in production the candidate is compared with the base rates: the outcome class frequencies of the stored candles
before the window (all known by then), forecast for every candle, never trading — a candidate has to show skill
beyond base rates, not merely beat a uniform guess. The document is attached to
the candidate in the registry (``Registry.attach_evaluation``); ``Registry.promote`` checks it.

Ensembles run through the per-candle ``SignalEngine`` (the live code), warmed up on ``warmup`` bars before the
window; models through their batch prediction (``ModelMember.batch``) over the window plus their context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.core.errors import ValidationError
from smartmarket.core.types import Timeframe
from smartmarket.models.labels import LabelConfig
from smartmarket.models.registry import ModelRecord, Registry
from smartmarket.ops.abtest import Forecasts, candle_outcomes, compare
from smartmarket.store.base import CandleStore

ENSEMBLE = "ensemble"

Progress = Callable[[str, int, int], None]
"""``progress(name, done, total)``, the convention of every use case."""


@dataclass(frozen=True)
class Entry:
    """A registry entry ready to run: its record, label configuration and the last candle it depends on."""

    record: ModelRecord
    label_config: LabelConfig
    fitted_until: int


def _entry(record: ModelRecord, timeframe: Timeframe) -> Entry:
    meta = record.metadata
    labels = LabelConfig.from_dict(meta["label_config"]) if "label_config" in meta else LabelConfig()
    if record.kind == ENSEMBLE:
        until = int(meta.get("data", {}).get("last_ts", 0))
    else:
        split = meta.get("split", {})
        ends = [p[1] for p in (split.get("train_ts"), split.get("validation_ts")) if p and p[1] is not None]
        until = int(max(ends)) + labels.horizon * timeframe.ms if ends else int(meta.get("data", {}).get("last_ts", 0))
    return Entry(record, labels, until)


def _forecasts(
    entry: Entry, registry: Registry, candles: pd.DataFrame, window_start: int, name: str,
    progress: Progress | None = None,
) -> Forecasts:  # fmt: skip
    record = entry.record
    task = f"run the {name} {record.model_id}"
    report = progress or (lambda _name, _done, _total: None)
    if record.kind == ENSEMBLE:
        from smartmarket.signals.engine import SignalEngine
        from smartmarket.signals.fit import load_artifact

        artifact = load_artifact(record.path)
        engine = SignalEngine.from_artifact(artifact, registry_dir=registry.directory)
        signals = engine.run(candles, progress=lambda done, total: report(task, done, total))
        forecasts = Forecasts.from_signals(name, record.model_id, signals)
    else:
        from smartmarket.features.pipeline import FeaturePipeline
        from smartmarket.signals.members import ModelMember

        report(task, 0, 1)
        member = ModelMember(registry.load(record.model_id))
        features = FeaturePipeline(member.feature_set or "default", record.timeframe).batch(candles)
        probs = member.batch(candles, features)
        report(task, 1, 1)
        forecasts = Forecasts.from_probabilities(name, record.model_id, candles["ts"].to_numpy(np.int64), probs)
    keep = forecasts.ts >= window_start
    return forecasts.at(forecasts.ts[keep])


def base_rates(candles: pd.DataFrame, labels: LabelConfig) -> np.ndarray:
    """Frequencies of (down, flat, up) outcomes among ``candles`` (all known before the window starts)."""
    _, outcomes = candle_outcomes(candles, labels)
    y = outcomes.y[outcomes.t1 >= 0].astype(np.int64)
    if len(y) == 0:
        return np.full(3, 1 / 3)
    counts = np.bincount(y, minlength=3).astype(np.float64) + 1.0  # Laplace: no class gets probability 0
    return counts / counts.sum()


def evaluate_candidate(
    registry: Registry, store: CandleStore, candidate_id: str, *, start: int | None = None, end: int | None = None,
    warmup: int = 1500, fee: float = 0.001, level: float = 0.05, progress: Progress | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The promotion evaluation of ``candidate_id`` (see the module docstring); not attached here.
    ``progress(name, done, total)``: each entry's run over the candles."""
    record = registry.show(candidate_id)
    timeframe = Timeframe.parse(record.timeframe)
    candidate = _entry(record, timeframe)
    current = registry.production(record.symbol, record.timeframe, record.kind)
    production = _entry(current, timeframe) if current is not None else None
    if current is not None and current.model_id == record.model_id:
        raise ValidationError(f"{record.model_id} is the production entry itself", hint="evaluate another candidate")
    fitted_until = max(candidate.fitted_until, production.fitted_until if production else 0)
    window_start = max(fitted_until + 1, start or 0)
    frame = store.read_candles(record.symbol, timeframe, None, end)
    frame = frame.reset_index(drop=True)
    first = int(np.searchsorted(frame["ts"].to_numpy(np.int64), window_start, side="left")) if len(frame) else 0
    if len(frame) - first < 100:
        raise ValidationError(
            f"only {max(0, len(frame) - first)} stored {record.symbol} {timeframe} candles after "
            f"{datetime.fromtimestamp(window_start / 1000, UTC):%Y-%m-%d %H:%M} (where both entries are out of sample)",
            where="promotion evaluation", hint="ingest newer candles, then evaluate again",
        )  # fmt: skip
    candles = frame.iloc[max(0, first - warmup) :].reset_index(drop=True)
    cand = _forecasts(candidate, registry, candles, window_start, "candidate", progress)
    labels = production.label_config if production is not None else candidate.label_config
    if production is not None:
        prod = _forecasts(production, registry, candles, window_start, "production", progress)
    else:
        prod = Forecasts.climatology(cand.ts, base_rates(frame.iloc[:first], labels), "no production: base rates")
    doc = compare(prod, cand, candles, labels, fee=fee, level=level)
    return {
        "candidate_id": record.model_id,
        "against": current.model_id if current is not None else None,
        "kind": record.kind,
        "symbol": record.symbol,
        "timeframe": str(timeframe),
        "window_start": window_start,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **doc,
    }


def evaluate_and_attach(
    registry_dir: str | Path | None, store: CandleStore, candidate_id: str, **options: Any
) -> dict[str, Any]:  # fmt: skip
    """``evaluate_candidate`` and attach the document to the candidate."""
    registry = Registry(registry_dir)
    doc = evaluate_candidate(registry, store, candidate_id, **options)
    registry.attach_evaluation(doc["candidate_id"], doc)
    return doc


__all__ = ["evaluate_and_attach", "evaluate_candidate"]
