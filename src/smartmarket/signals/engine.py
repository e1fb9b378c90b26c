"""The signal engine: one closed candle in, one ``Signal`` out, with the same code in backtests and live.

``SignalEngine(members, system)`` wires a ``FeaturePipeline`` (the set the members need), the members, and a
fitted ``SignalSystem`` (calibrators → ensemble → confidence → strength and regime filter; usually loaded from an
ensemble artifact, see ``fit``). Per candle, ``on_candle(ts, o, h, l, c, v)``:

1. the feature pipeline takes the candle; pending decisions are checked against it (``BarrierTracker``);
2. outcomes that became known at *earlier* candles are released (``OutcomeQueue``: ``t1 < this bar``) and
   update the quality monitor and, with ``EngineConfig.adapt``, the skill-weighted ensemble's capped online
   re-weighting and the confidence model's hit-rate history (flushed every ``history_flush`` outcomes);
3. every member gives raw probabilities; until all of them are ready the signal is flat, "warming up";
4. the fitted system turns them into a ``Signal`` (the same ``SignalSystem.signals`` code the batch path runs,
   on one row), whose ``bar`` is the engine's candle counter and ``ts`` the candle's open time;
5. the decision is opened for outcome tracking.

Deterministic by construction: no wall clock, no randomness, the system deep-copied at construction (online
adaptation never leaks between engines). ``run(candles)`` is exactly repeated ``on_candle``, so a backtest and a
live pipeline fed the same candles produce identical signals. The sample coordinate of the fitted system
(``t``/``t1``) is the candle open time in ms (artifacts are fitted that way), so an artifact works on any range.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from smartmarket.features.pipeline import FeaturePipeline
from smartmarket.models.labels import LabelConfig
from smartmarket.signals.confidence import direction_class, signal_direction
from smartmarket.signals.ensemble import SkillWeightedEnsemble
from smartmarket.signals.members import Candle, Member
from smartmarket.signals.monitor import MonitorConfig, SignalMonitor
from smartmarket.signals.outcomes import OutcomeQueue, SignalSamples
from smartmarket.signals.pipeline import BarrierTracker, Outcome, check_columns, choose_feature_set, regime_name
from smartmarket.signals.strength import Direction, Signal, SignalSystem, Strength

if TYPE_CHECKING:
    from smartmarket.signals.fit import EnsembleArtifact

NAN3 = (math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class EngineConfig:
    """``adapt``: learn online from released outcomes (skill ensemble re-weighting, confidence history)."""

    adapt: bool = False
    history_flush: int = 50
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


@dataclass(frozen=True)
class AppliedOutcome:
    """Audit record: the outcome of ``decision_bar`` (known at ``t1``) was used at ``applied_bar`` (> t1)."""

    decision_bar: int
    t1: int
    applied_bar: int


class SignalEngine:
    """Per-candle signals from members and a fitted signal system (see the module docstring)."""

    def __init__(
        self,
        members: Sequence[Member],
        system: SignalSystem,
        *,
        timeframe: str = "1h",
        feature_set: str | None = None,
        label_config: LabelConfig | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique: {names}")
        if system.ensemble is None:
            raise ValueError("the signal system is not fitted")
        if list(system.calibrators) != names:
            raise ValueError(f"members {names} do not match the fitted system's {list(system.calibrators)}")
        self.members = list(members)
        self.system = copy.deepcopy(system)
        self.config = config or EngineConfig()
        self.pipeline = FeaturePipeline(choose_feature_set(self.members, feature_set), timeframe)
        check_columns(self.members, self.pipeline)
        self.label_config = label_config or LabelConfig()
        self.tracker = BarrierTracker(self.label_config)
        self.queue: OutcomeQueue[tuple[Outcome, Signal]] = OutcomeQueue()
        self.monitor = SignalMonitor(self.config.monitor)
        self.outcomes: list[Outcome] = []  # every resolved decision, in resolution order
        self.applied: list[AppliedOutcome] = []
        self.bar = -1
        self._history: list[tuple[int, float, str]] = []  # confidence-history outcomes waiting to be flushed
        for member in self.members:
            member.reset()

    @classmethod
    def from_artifact(
        cls, artifact: EnsembleArtifact, *, registry_dir: str | Path | None = None, config: EngineConfig | None = None
    ) -> SignalEngine:
        """Members rebuilt from the artifact's specs (model members loaded by id from ``registry_dir``)."""
        from smartmarket.signals.members import make_member

        members = [make_member(spec, registry_dir=registry_dir) for spec in artifact.member_specs]
        return cls(
            members, artifact.system, timeframe=artifact.timeframe, feature_set=artifact.feature_set,
            label_config=artifact.label_config, config=config,
        )  # fmt: skip

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    # ------------------------------------------------------------------------------------------- per candle

    def on_candle(self, ts: int, open: float, high: float, low: float, close: float, volume: float) -> Signal:
        """Consume one closed candle (strictly increasing ``ts``) and return its signal."""
        candle = Candle(int(ts), float(open), float(high), float(low), float(close), float(volume))
        self.bar += 1
        bar = self.bar
        values = self.pipeline.update(*candle)
        row = dict(zip(self.pipeline.columns, values, strict=True))
        for outcome, signal in self.tracker.update(candle, bar):
            self.outcomes.append(outcome)
            self.queue.push(outcome.t1, (outcome, signal))
        for outcome, signal in self.queue.release(bar):
            self._learn(outcome, signal, bar)

        regime = regime_name(row.get("regime", math.nan))
        probs = {m.name: m.update(candle, row) for m in self.members}
        missing = [name for name, p in probs.items() if p is None]
        if missing:
            return self._warming(candle, regime, missing)
        samples = SignalSamples.build(
            [candle.ts], [-1], [math.nan], {n: np.asarray(p)[None, :] for n, p in probs.items()}, [regime],
            ts=[candle.ts],
        )  # fmt: skip
        signal = replace(self.system.signals(samples)[0], bar=bar)
        self.monitor.record_decision(regime, signal.direction)
        self.tracker.add(bar, candle, signal)
        return signal

    def run(self, candles: pd.DataFrame | Iterable[Sequence[float]]) -> list[Signal]:
        """``on_candle`` for each candle in order (a candle frame, or rows ``ts, o, h, l, c, v``)."""
        if isinstance(candles, pd.DataFrame):
            rows: Iterable[Sequence[float]] = zip(
                *(candles[c].to_numpy().tolist() for c in ("ts", "open", "high", "low", "close", "volume")),
                strict=True,
            )
        else:
            rows = candles
        return [self.on_candle(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]

    # ------------------------------------------------------------------------------------------- internals

    def _warming(self, candle: Candle, regime: str, missing: Sequence[str]) -> Signal:
        return Signal(
            direction=Direction.FLAT, confidence=math.nan, strength=Strength.NONE, regime=regime,
            probabilities=NAN3, member_probabilities={}, member_weights={},
            reason=f"flat: warming up ({', '.join(missing)} not ready)", bar=self.bar, ts=candle.ts,
        )  # fmt: skip

    def _learn(self, outcome: Outcome, signal: Signal, bar: int) -> None:
        """Use one outcome known before ``bar``: monitor always, online adaptation when configured."""
        self.applied.append(AppliedOutcome(outcome.bar, outcome.t1, bar))
        self.monitor.record_signal_outcome(signal, outcome.label)
        if not self.config.adapt:
            return
        ensemble = self.system.ensemble
        if isinstance(ensemble, SkillWeightedEnsemble) and signal.member_probabilities:
            ensemble.update(signal.member_probabilities, outcome.label, signal.regime)
        sign = int(signal_direction(np.asarray([signal.probabilities]))[0])
        if sign != 0:
            hit = float(direction_class(np.array([sign]))[0] == outcome.label)
            self._history.append((outcome.t1_ts, hit, signal.regime))
        if len(self._history) >= self.config.history_flush:
            t1, hits, regimes = zip(*self._history, strict=True)
            self.system.confidence.add_outcomes(np.array(t1), np.array(hits), np.array(regimes))
            self._history.clear()

    def state_summary(self) -> dict[str, Any]:
        """Bars seen, decisions pending, outcomes resolved and applied (for logs and the CLI)."""
        return {
            "bars": self.bar + 1,
            "pending": len(self.tracker),
            "resolved": len(self.outcomes),
            "applied": len(self.applied),
            "feature_set": self.pipeline.feature_set.name,
        }


__all__ = ["AppliedOutcome", "EngineConfig", "SignalEngine"]
