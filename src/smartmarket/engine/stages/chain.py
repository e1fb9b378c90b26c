"""``SignalEngine.on_candle`` cut at its two seams, so three stages can run it: features, members, ensemble.

``on_candle`` is, in order: feature pipeline update → outcome tracking and learning → member updates → the
fitted system's signal. The three parts touch disjoint state (the feature pipeline; the members; the tracker,
queue, monitor and system), so running them as three steps, possibly in three processes each holding its own
engine built from the same artifact, computes exactly what ``on_candle`` computes. The parity tests check it
bit for bit against ``SignalEngine.run``. (The ``SignalEngine`` API may grow these steps itself; this adapter
then shrinks to calls.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from smartmarket.core.events import SignalFields, SignalGenerated
from smartmarket.core.types import Timeframe
from smartmarket.signals.engine import SignalEngine
from smartmarket.signals.members import Candle
from smartmarket.signals.outcomes import FloatArray, SignalSamples
from smartmarket.signals.pipeline import regime_name
from smartmarket.signals.strength import Signal

PROBABILITY_KEYS: tuple[str, str, str] = ("down", "flat", "up")


class SignalChain:
    """One engine, three steps (see the module docstring)."""

    def __init__(self, engine: SignalEngine) -> None:
        self.engine = engine
        self.members = tuple(m.name for m in engine.members)

    def features(self, candle: Candle) -> dict[str, float]:
        """Step 1: the feature pipeline takes the candle; its row by column."""
        pipeline = self.engine.pipeline
        return dict(zip(pipeline.columns, pipeline.update(*candle), strict=True))

    def predictions(self, candle: Candle, row: Mapping[str, float]) -> dict[str, FloatArray | None]:
        """Step 2: every member's raw probabilities (None while it warms up)."""
        return {m.name: m.update(candle, row) for m in self.engine.members}

    def signal(self, candle: Candle, row: Mapping[str, float], probs: Mapping[str, FloatArray | None]) -> Signal:
        """Step 3: outcomes released, learning, and the fitted system's signal (``on_candle``'s remainder)."""
        engine = self.engine
        engine.bar += 1
        bar = engine.bar
        for outcome, past in engine.tracker.update(candle, bar):
            engine.outcomes.append(outcome)
            engine.queue.push(outcome.t1, (outcome, past))
        for outcome, past in engine.queue.release(bar):
            engine._learn(outcome, past, bar)
        regime = regime_name(row.get("regime", math.nan))
        missing = [name for name in self.members if probs.get(name) is None]
        if missing:
            return engine._warming(candle, regime, missing)
        samples = SignalSamples.build(
            [candle.ts], [-1], [math.nan], {n: np.asarray(probs[n])[None, :] for n in self.members}, [regime],
            ts=[candle.ts],
        )  # fmt: skip
        signal = replace(engine.system.signals(samples)[0], bar=bar)
        engine.monitor.record_decision(regime, signal.direction)
        engine.tracker.add(bar, candle, signal)
        return signal


def probabilities_dict(p: FloatArray | None) -> dict[str, float]:
    """``(down, flat, up)`` → ``{"down": …, "flat": …, "up": …}``; ``{}`` while warming up."""
    if p is None:
        return {}
    values = np.asarray(p, dtype=np.float64)
    return {k: float(values[i]) for i, k in enumerate(PROBABILITY_KEYS)}


def probabilities_array(d: Mapping[str, float]) -> FloatArray | None:
    """The inverse of ``probabilities_dict``."""
    if not d:
        return None
    return np.asarray([d[k] for k in PROBABILITY_KEYS], dtype=np.float64)


def signal_fields(signal: Signal, *, symbol: str, timeframe: Timeframe, ts_event: int) -> dict[str, Any]:
    """A ``Signal`` as the fields of a signal event (``SignalGenerated`` or ``ShadowSignalGenerated``)."""
    ts = int(signal.ts if signal.ts is not None else ts_event - timeframe.ms)
    return {
        "symbol": symbol, "timeframe": timeframe, "ts": ts,
        "direction": str(signal.direction), "confidence": float(signal.confidence), "strength": str(signal.strength),
        "regime": signal.regime, "probabilities": probabilities_dict(np.asarray(signal.probabilities)),
        "member_probabilities": {k: probabilities_dict(np.asarray(v)) for k, v in signal.member_probabilities.items()},
        "member_weights": {k: float(v) for k, v in signal.member_weights.items()}, "reason": signal.reason,
    }  # fmt: skip


def signal_event(
    signal: Signal, *, symbol: str, timeframe: Timeframe, event_id: str, ts_event: int, correlation_id: str,
    causation_id: str | None, model_id: str | None = None,
) -> SignalGenerated:  # fmt: skip
    """The bus/log form of a ``Signal``; ``model_id``: the ensemble artifact that decided it."""
    return SignalGenerated(
        event_id=event_id, ts_event=ts_event, correlation_id=correlation_id, causation_id=causation_id,
        model_id=model_id, **signal_fields(signal, symbol=symbol, timeframe=timeframe, ts_event=ts_event),
    )  # fmt: skip


def signal_matches(event: SignalFields, signal: Signal) -> bool:
    """Bit-for-bit: the event carries exactly the signal's values (NaN equals NaN)."""

    def same(a: float, b: float) -> bool:
        return a == b or (math.isnan(a) and math.isnan(b))

    if (event.direction, event.strength, event.regime, event.reason) != (
        str(signal.direction),
        str(signal.strength),
        signal.regime,
        signal.reason,
    ):
        return False
    if not same(event.confidence, float(signal.confidence)) or event.ts != signal.ts:
        return False
    if event.member_weights.keys() != signal.member_weights.keys() or any(
        not same(event.member_weights[k], float(v)) for k, v in signal.member_weights.items()
    ):
        return False
    got = probabilities_array(event.probabilities)
    if got is None or not all(same(float(a), float(b)) for a, b in zip(got, signal.probabilities, strict=True)):
        return False
    if event.member_probabilities.keys() != signal.member_probabilities.keys():
        return False
    for name, probs in signal.member_probabilities.items():
        got = probabilities_array(event.member_probabilities[name])
        if got is None or not all(same(float(a), float(b)) for a, b in zip(got, probs, strict=True)):
            return False
    return True


__all__ = [
    "PROBABILITY_KEYS",
    "SignalChain",
    "probabilities_array",
    "probabilities_dict",
    "signal_event",
    "signal_fields",
    "signal_matches",
]
