"""Signal use cases shared by the CLI, the API and the demo: read candles, fit an ensemble artifact, run the
per-candle engine's outcomes into metrics, and the demo's signal stage (moved from ``cli.signals``: the CLI only
parses and prints). Heavy imports stay inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smartmarket.core.errors import NotFoundError
from smartmarket.core.timeutil import format_ms
from smartmarket.core.types import Timeframe, normalize_symbol

if TYPE_CHECKING:
    import pandas as pd

    from smartmarket.signals.engine import SignalEngine
    from smartmarket.signals.fit import EnsembleArtifact
    from smartmarket.signals.strength import Signal
    from smartmarket.store.base import CandleStore

DEFAULT_WARMUP = 1000
#: ``progress(name, done, total)``: the CLI's progress display (one task per name), or nothing.
Progress = Callable[[str, int, int], None]


def _no_progress(name: str, done: int, total: int) -> None:
    return None


@contextmanager
def stage(progress: Progress | None, name: str) -> Iterator[None]:
    """Report a step without counts of its own as a task of total 1: started, then done (when it succeeds)."""
    report = progress or _no_progress
    report(name, 0, 1)
    yield
    report(name, 1, 1)


def read_candles(
    store: CandleStore, symbol: str, tf: Timeframe, start: int | None, end: int | None, warmup: int = 0
) -> tuple[pd.DataFrame, int]:
    """Candles in ``[start - warmup bars, end)`` and the row where ``start`` begins."""
    import numpy as np

    first = None if start is None else start - warmup * tf.ms
    try:
        frame = store.read_candles(symbol, tf, first, end)
    except NotFoundError as exc:
        raise NotFoundError(exc.what, where=exc.where, hint="load candles with `smartmarket ingest FILE`") from None
    if frame.empty:
        raise NotFoundError(f"no {symbol} {tf} candles in the requested range", hint="see `smartmarket symbols`")
    frame = frame.reset_index(drop=True)
    begin = 0 if start is None else int(np.searchsorted(frame["ts"].to_numpy(np.int64), start, side="left"))
    return frame, begin


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def display_confidence(signal: Signal) -> float:
    """The calibrated probability of the favoured outcome: the signal's confidence for a long/short candidate,
    P(flat) when the ensemble favours flat, 0 while warming up (see docs/signals.md)."""
    if math.isfinite(signal.confidence):
        return float(signal.confidence)
    probs = [p for p in signal.probabilities if math.isfinite(p)]
    return max(probs) if probs else 0.0


def signal_record(signal: Signal) -> dict[str, Any]:
    ts = int(signal.ts or 0)
    return {
        "ts": ts,
        "time": format_ms(ts),
        "direction": str(signal.direction),
        "confidence": round(display_confidence(signal), 6),
        "strength": str(signal.strength),
        "regime": signal.regime,
        "p_down": _num(signal.probabilities[0]),
        "p_flat": _num(signal.probabilities[1]),
        "p_up": _num(signal.probabilities[2]),
        "weights": {k: round(v, 6) for k, v in signal.member_weights.items()},
        "members": {k: [round(x, 6) for x in v] for k, v in signal.member_probabilities.items()},
        "reason": signal.reason,
    }


def fit_signals(
    store: CandleStore, symbol: str, timeframe: str, members: Sequence[str], registry_dir: Path,
    start: int | None = None, end: int | None = None, progress: Progress | None = None,
) -> EnsembleArtifact:  # fmt: skip
    """Fit and save an ensemble artifact from stored candles (used by ``fit-signals`` and the demo).
    ``progress``: loading the members, then the fit (each a task of total 1)."""
    from smartmarket.signals.fit import fit_artifact, save_artifact
    from smartmarket.signals.members import make_member

    sym, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
    with stage(progress, f"load the members ({', '.join(members)})"):
        built = [make_member(m, registry_dir=registry_dir, symbol=sym, timeframe=str(tf)) for m in members]
    frame, _ = read_candles(store, sym, tf, start, end)
    with stage(progress, f"fit the ensemble ({', '.join(members)}) on {len(frame):,} {sym} {tf} candles"):
        artifact = fit_artifact(frame, built, symbol=sym, timeframe=str(tf))
    save_artifact(artifact, registry_dir)
    return artifact


def fit_summary(art: EnsembleArtifact) -> dict[str, Any]:
    report = art.system.report()
    return {
        "id": art.artifact_id,
        "symbol": art.symbol,
        "symbols": art.data.get("symbols", []),
        "timeframe": art.timeframe,
        "members": art.member_names,
        "member_model_ids": [s.get("model_id") for s in art.member_specs if s.get("model_id")],
        "data": art.data,
        "weights": (report["ensemble"] or {}).get("weights"),
        "member_skill": report["member_skill"],
        "calibration": report["calibration"],
        "confidence": report["confidence"],
        "thresholds": report["thresholds"],
        "regime_filter": report["regime_filter"],
        "never_signals": art.system.never_signals(),
    }


def never_signals_line(artifact_id: str | None, reason: str | None) -> str | None:
    """The one warning line for an artifact that can never produce a signal (None when it can)."""
    if not reason:
        return None
    return f"warning: {artifact_id} can never produce a signal: {reason}; `models promote` refuses it without --force"


def engine_outcomes(engine: SignalEngine) -> Any:
    """The engine's resolved outcomes as per-bar arrays (``pipeline.OutcomeArrays``)."""
    import numpy as np

    from smartmarket.signals.pipeline import OutcomeArrays

    n = engine.bar + 1
    y, t1 = np.full(n, np.nan), np.full(n, -1, dtype=np.int64)
    exits, ret = np.full(n, "", dtype=object), np.full(n, np.nan)
    for o in engine.outcomes:
        y[o.bar], t1[o.bar], exits[o.bar], ret[o.bar] = o.label, o.t1, o.exit, o.ret
    return OutcomeArrays(y, t1, exits, ret)


def evaluate_engine_run(
    engine: SignalEngine, signals: Sequence[Signal], first: int, fee: float = 0.001
) -> dict[str, Any]:
    """Hit rate, Brier, ECE, false-signal rate, weights and per-strength hit rates of ``signals[first:]``."""
    import numpy as np

    from smartmarket.backtest.signal_evaluation import signal_metrics

    decided = [s for s in signals[first:] if s.member_weights]
    bars = np.array([s.bar for s in decided], dtype=np.int64)
    outcomes = engine_outcomes(engine)
    doc: dict[str, Any] = dict(signal_metrics(decided, bars, outcomes, fee))
    names = engine.member_names
    doc["weights"] = {n: float(np.mean([s.member_weights[n] for s in decided])) if decided else 0.0 for n in names}
    per_strength: dict[str, dict[str, Any]] = {}
    for strength in ("weak", "moderate", "strong"):
        rows = [s for s in decided if s.strength == strength and outcomes.t1[s.bar] >= 0]
        hits = [(outcomes.y[s.bar] == (2 if s.direction == "long" else 0)) for s in rows]
        per_strength[strength] = {"signals": len(rows), "hit_rate": float(np.mean(hits)) if hits else None}
    doc["per_strength"] = per_strength
    return doc


def demo_signals_stage(
    store: CandleStore, symbol: str, timeframe: str, registry_dir: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """The demo's signal stage: fit technical + SMC on all but the last 1,000 candles (at most 8,000 before
    them), save the artifact, run the engine over the last 1,000 and summarise (seconds, not minutes)."""
    import numpy as np

    sym, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
    frame = store.read_candles(sym, tf).reset_index(drop=True)
    test = min(1000, len(frame) // 4)
    fit_from = max(0, len(frame) - test - 8000)
    ts = frame["ts"].to_numpy(np.int64)
    art = fit_signals(store, sym, str(tf), ("technical", "smc"), registry_dir, int(ts[fit_from]),
                      int(ts[len(frame) - test]), progress)  # fmt: skip
    from smartmarket.signals.engine import SignalEngine

    engine = SignalEngine.from_artifact(art, registry_dir=registry_dir)
    warm = max(0, len(frame) - test - DEFAULT_WARMUP)
    run = f"signals of {art.artifact_id} over the last {len(frame) - warm:,} candles"
    report = progress or _no_progress
    signals = engine.run(frame.iloc[warm:], progress=lambda done, total: report(run, done, total))
    doc = evaluate_engine_run(engine, signals, len(frame) - test - warm)
    last = signals[-1]
    return {
        "artifact": art.artifact_id,
        "members": list(art.member_names),
        "fit_weights": fit_summary(art)["weights"],
        "never_signals": never_signals_line(art.artifact_id, art.system.never_signals()),
        "test_bars": test,
        "last_signal": signal_record(last),
        **{k: doc[k] for k in ("signals", "hit_rate", "false_signal_rate", "brier", "ece", "weights")},
    }


__all__ = [
    "DEFAULT_WARMUP",
    "Progress",
    "demo_signals_stage",
    "display_confidence",
    "engine_outcomes",
    "evaluate_engine_run",
    "fit_signals",
    "fit_summary",
    "never_signals_line",
    "read_candles",
    "signal_record",
    "stage",
]
