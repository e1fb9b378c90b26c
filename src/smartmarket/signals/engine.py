"""The signal engine: one closed candle in, one ``Signal`` out, with the same code in backtests and live.

``SignalEngine(members, system)`` wires a ``FeaturePipeline`` (the set the members need), the members, and a
fitted ``SignalSystem`` (calibrators → ensemble → confidence → strength and regime filter; usually loaded from an
ensemble artifact, see ``fit``). Per candle, ``on_candle(ts, o, h, l, c, v)`` is exactly three public steps:

1. ``features(candle)``: the feature pipeline takes the candle; its row by column;
2. ``predictions(candle, row)``: every member's raw probabilities (``None`` while it warms up);
3. ``decide(candle, row, probs)``: pending decisions are checked against the candle (``BarrierTracker``);
   outcomes that became known at *earlier* candles are released (``OutcomeQueue``: ``t1 < this bar``) and
   update the quality monitor and, with ``EngineConfig.adapt``, the skill-weighted ensemble's capped online
   re-weighting and the confidence model's hit-rate history (flushed every ``history_flush`` outcomes); until
   every member is ready the signal is flat, "warming up"; otherwise the fitted system turns the probabilities
   into a ``Signal`` (the same ``SignalSystem.signals`` code the batch path runs, on one row), whose ``bar`` is
   the engine's candle counter and ``ts`` the candle's open time, and the decision is opened for tracking.

The steps touch disjoint state (the feature pipeline; the members; the tracker, queue, monitor and system), so
the pipeline's features, predictions and signals stages may each run one of them, in separate processes, on
engines built from the same artifact, and still compute exactly what ``on_candle`` computes. Each step must see
every candle once, in increasing ``ts``.

Deterministic by construction: no wall clock, no randomness, the system deep-copied at construction (online
adaptation never leaks between engines). ``run(candles)`` is exactly repeated ``on_candle``, so a backtest and a
live pipeline fed the same candles produce identical signals. The sample coordinate of the fitted system
(``t``/``t1``) is the candle open time in ms (artifacts are fitted that way), so an artifact works on any range.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from smartmarket.core.errors import ConfigError, ValidationError
from smartmarket.core.types import Candle, Direction
from smartmarket.features.pipeline import FeaturePipeline
from smartmarket.models.labels import LabelConfig
from smartmarket.signals.confidence import direction_class, signal_direction
from smartmarket.signals.ensemble import SkillWeightedEnsemble
from smartmarket.signals.members import FeatureRow, Member, make_member
from smartmarket.signals.monitor import MonitorConfig, SignalMonitor
from smartmarket.signals.outcomes import FloatArray, OutcomeQueue, SignalSamples
from smartmarket.signals.pipeline import BarrierTracker, Outcome, check_columns, choose_feature_set, regime_name
from smartmarket.signals.strength import Signal, SignalSystem, Strength

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
            raise ConfigError(f"member names must be unique: {names}", hint="give each member once")
        if system.ensemble is None:
            raise ConfigError("the signal system is not fitted", hint="fit it (signals.fit) or load an artifact")
        if list(system.calibrators) != names:
            raise ConfigError(
                f"members {names} do not match the fitted system's {list(system.calibrators)}",
                hint="build the engine from the artifact's own member specs (SignalEngine.from_artifact)",
            )
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
        self._last_ts: int | None = None  # the last candle ``decide`` took
        self._history: list[tuple[int, float, str]] = []  # confidence-history outcomes waiting to be flushed
        for member in self.members:
            member.reset()

    @classmethod
    def from_artifact(
        cls,
        artifact: EnsembleArtifact,
        *,
        registry_dir: str | Path | None = None,
        config: EngineConfig | None = None,
        runtime: str = "torch",
    ) -> SignalEngine:
        """Members rebuilt from the artifact's specs (model members loaded by id from ``registry_dir``); networks
        run on ``runtime`` in ``predictions`` (``auto``: ONNX Runtime when installed and equal to torch within
        tolerance; the live pipeline's default)."""
        members = [make_member(spec, registry_dir=registry_dir, runtime=runtime) for spec in artifact.member_specs]
        return cls(
            members, artifact.system, timeframe=artifact.timeframe, feature_set=artifact.feature_set,
            label_config=artifact.label_config, config=config,
        )  # fmt: skip

    @property
    def member_names(self) -> tuple[str, ...]:
        """The members' names, in member order (the keys of ``predictions``)."""
        return tuple(m.name for m in self.members)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """The columns of a ``features`` row, in order."""
        return tuple(self.pipeline.columns)

    # ------------------------------------------------------------------------------------------- per candle

    def on_candle(self, ts: int, open: float, high: float, low: float, close: float, volume: float) -> Signal:
        """Consume one closed candle (strictly increasing ``ts``) and return its signal: the three steps."""
        candle = Candle(int(ts), float(open), float(high), float(low), float(close), float(volume))
        row = self.features(candle)
        return self.decide(candle, row, self.predictions(candle, row))

    def features(self, candle: Candle) -> dict[str, float]:
        """Step 1: the feature pipeline takes ``candle``; its row, by column (``feature_columns``)."""
        pipeline = self.pipeline
        return dict(zip(pipeline.columns, pipeline.update(*candle), strict=True))

    def predictions(self, candle: Candle, row: FeatureRow) -> dict[str, FloatArray | None]:
        """Step 2: every member's raw ``(down, flat, up)`` for ``candle`` and its feature ``row``; None while it
        warms up. Keyed by member name, in member order."""
        return {m.name: m.update(candle, row) for m in self.members}

    def decide(self, candle: Candle, row: FeatureRow, probs: Mapping[str, npt.ArrayLike | None]) -> Signal:
        """Step 3: outcomes tracked and released, learning, and the fitted system's signal for ``candle``.

        ``row`` and ``probs`` are what steps 1 and 2 gave for this candle (here, or in another engine built from
        the same artifact); a member absent from ``probs`` counts as warming up.
        """
        if self._last_ts is not None and candle.ts <= self._last_ts:
            raise ValidationError(
                f"candle ts {candle.ts} is not after the last decided one ({self._last_ts})",
                where="SignalEngine.decide", hint="give each candle once, in increasing ts",
            )  # fmt: skip
        self._last_ts = candle.ts
        self.bar += 1
        bar = self.bar
        for outcome, past in self.tracker.update(candle, bar):
            self.outcomes.append(outcome)
            self.queue.push(outcome.t1, (outcome, past))
        for outcome, past in self.queue.release(bar):
            self._learn(outcome, past, bar)

        regime = regime_name(row.get("regime", math.nan))
        names = self.member_names
        missing = [name for name in names if probs.get(name) is None]
        if missing:
            return self._warming(candle, regime, missing)
        samples = SignalSamples.build(
            [candle.ts], [-1], [math.nan], {n: np.asarray(probs[n])[None, :] for n in names}, [regime],
            ts=[candle.ts],
        )  # fmt: skip
        signal = replace(self.system.signals(samples)[0], bar=bar)
        self.monitor.record_decision(regime, signal.direction)
        self.tracker.add(bar, candle, signal)
        return signal

    def run(
        self, candles: pd.DataFrame | Iterable[Sequence[float]], progress: Callable[[int, int], None] | None = None
    ) -> list[Signal]:
        """``on_candle`` for each candle in order (a candle frame, or rows ``ts, o, h, l, c, v``).

        ``progress(done, total)`` (a frame only: its length is the total) about every 1 % of the candles and once
        at the end."""
        if isinstance(candles, pd.DataFrame):
            rows: Iterable[Sequence[float]] = zip(
                *(candles[c].to_numpy().tolist() for c in ("ts", "open", "high", "low", "close", "volume")),
                strict=True,
            )
            total = len(candles)
        else:
            rows, total = candles, 0
        if progress is None or total == 0:
            return [self.on_candle(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]
        every = max(1, total // 100)
        signals: list[Signal] = []
        progress(0, total)
        for done, r in enumerate(rows, start=1):
            signals.append(self.on_candle(int(r[0]), r[1], r[2], r[3], r[4], r[5]))
            if done % every == 0 or done == total:
                progress(done, total)
        return signals

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
