"""The signal stages' view of a ``SignalEngine``: its public per-candle steps, and the signal event helpers.

``SignalEngine.on_candle`` is exactly ``features`` → ``predictions`` → ``decide`` (see ``signals.engine``). The
features, predictions and signals stages each run one step, possibly in three processes each holding its own
engine built from the same artifact; the shadow stage runs all three. They see an engine only through
``SignalSteps`` (public methods only, no engine state written). The parity tests check the result bit for bit
against ``SignalEngine.run``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from smartmarket.core.events import SignalFields, SignalGenerated
from smartmarket.core.types import Candle, Timeframe
from smartmarket.signals.members import FeatureRow, Member
from smartmarket.signals.outcomes import FloatArray
from smartmarket.signals.strength import Signal

PROBABILITY_KEYS: tuple[str, str, str] = ("down", "flat", "up")


class SignalSteps(Protocol):
    """The public per-candle steps of a ``SignalEngine``: all the signal stages use of one."""

    @property
    def members(self) -> Sequence[Member]: ...

    @property
    def member_names(self) -> tuple[str, ...]: ...

    @property
    def feature_columns(self) -> tuple[str, ...]: ...

    def features(self, candle: Candle) -> dict[str, float]: ...

    def predictions(self, candle: Candle, row: FeatureRow) -> dict[str, FloatArray | None]: ...

    def decide(self, candle: Candle, row: FeatureRow, probs: Mapping[str, npt.ArrayLike | None]) -> Signal: ...


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
    "SignalSteps",
    "probabilities_array",
    "probabilities_dict",
    "signal_event",
    "signal_fields",
    "signal_matches",
]
