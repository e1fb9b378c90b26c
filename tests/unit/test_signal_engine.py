"""The signal engine end to end: weights by measured skill, causality, run = on_candle, strength, regime filter,
outcomes used only once known, and the ensemble artifact round trip."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import ConfigError, ValidationError
from smartmarket.core.types import Candle
from smartmarket.models.labels import LabelConfig, make_labels
from smartmarket.signals.engine import EngineConfig, SignalEngine
from smartmarket.signals.fit import EnsembleArtifact, fit_artifact, load_artifact, save_artifact
from smartmarket.signals.members import FeatureRow, Member, TechnicalMember
from smartmarket.signals.strength import STRENGTH_ORDER, RegimeFilter, Signal

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
FIT_BARS = 2200
TOTAL_BARS = 2800
WARM = 400  # the engine starts this many bars before the end of the fitted span (enough to warm up)
START = FIT_BARS - WARM


class NoiseMember(Member):
    """Random probabilities, a deterministic function of the candle time (no skill at all)."""

    kind = "noise"

    def reset(self) -> None:
        pass

    def update(self, candle: Candle, row: FeatureRow) -> np.ndarray | None:
        return np.random.default_rng(candle.ts).dirichlet([2.0, 2.0, 2.0])

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name}


class PlantedMember(Member):
    """Skill planted by the test: knows the label of 60 % of the bars (a test device, not a causal member)."""

    kind = "planted"

    def __init__(self, labels: dict[int, int]) -> None:
        super().__init__()
        self.labels = labels

    def reset(self) -> None:
        pass

    def update(self, candle: Candle, row: FeatureRow) -> np.ndarray | None:
        rng = np.random.default_rng(candle.ts + 7)
        label = self.labels.get(candle.ts)
        if label is None or rng.random() > 0.6:
            return rng.dirichlet([3.0, 3.0, 3.0])
        p = np.full(3, 0.2)
        p[label] = 0.6
        return p

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name}


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    frame = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz", nrows=40_000 + TOTAL_BARS)
    return frame.iloc[40_000:].reset_index(drop=True)


@pytest.fixture(scope="module")
def members(candles: pd.DataFrame) -> list[Member]:
    labels = make_labels(candles, LabelConfig())
    known = {int(ts): int(y) for ts, y in zip(candles["ts"], labels.y, strict=True) if not math.isnan(y)}
    return [NoiseMember(), PlantedMember(known), TechnicalMember()]


@pytest.fixture(scope="module")
def artifact(candles: pd.DataFrame, members: list[Member]) -> EnsembleArtifact:
    return fit_artifact(candles.iloc[:FIT_BARS], members, symbol="BTCUSDT", timeframe="1h")


@pytest.fixture(scope="module")
def run_all(
    candles: pd.DataFrame, members: list[Member], artifact: EnsembleArtifact
) -> tuple[SignalEngine, list[Signal]]:
    engine = SignalEngine(members, artifact.system, timeframe="1h", config=EngineConfig(adapt=True))
    return engine, engine.run(candles.iloc[START:])


def _same(a: Signal, b: Signal) -> bool:
    return a.to_dict().__repr__() == b.to_dict().__repr__()  # NaN-safe, bit-exact through repr of floats


def test_noise_gets_zero_weight_and_planted_skill_the_most(run_all: tuple[SignalEngine, list[Signal]]) -> None:
    _, signals = run_all
    decided = [s for s in signals[WARM:] if s.member_weights]
    assert len(decided) > 500
    for s in decided:
        assert s.member_weights["noise"] < 0.01
        assert s.member_weights["planted"] == max(s.member_weights.values()) > 0.5
    assert sum(s.direction != "flat" for s in decided) > 50  # the planted skill produces signals


def test_signals_are_causal_prefix_equals_whole(
    candles: pd.DataFrame, members: list[Member], artifact: EnsembleArtifact, run_all: tuple[SignalEngine, list[Signal]]
) -> None:
    _, whole = run_all
    cut = WARM + 250
    prefix = SignalEngine(members, artifact.system, config=EngineConfig(adapt=True)).run(candles.iloc[START:][:cut])
    assert len(prefix) == cut and all(_same(a, b) for a, b in zip(prefix, whole[:cut], strict=True))


def test_run_equals_repeated_on_candle(
    candles: pd.DataFrame, members: list[Member], artifact: EnsembleArtifact
) -> None:
    part = candles.iloc[START : FIT_BARS + 150]
    by_run = SignalEngine(members, artifact.system, config=EngineConfig(adapt=True)).run(part)
    engine = SignalEngine(members, artifact.system, config=EngineConfig(adapt=True))
    rows = part[["ts", "open", "high", "low", "close", "volume"]].itertuples(index=False, name=None)
    by_candle = [
        engine.on_candle(int(ts), float(o), float(h), float(lo), float(c), float(v)) for ts, o, h, lo, c, v in rows
    ]
    assert len(by_run) == len(by_candle) == len(part)
    assert all(_same(a, b) for a, b in zip(by_run, by_candle, strict=True))


def _rows(frame: pd.DataFrame) -> list[Candle]:
    cols = frame[["ts", "open", "high", "low", "close", "volume"]].itertuples(index=False, name=None)
    return [Candle(int(ts), float(o), float(h), float(lo), float(c), float(v)) for ts, o, h, lo, c, v in cols]


def test_on_candle_is_its_three_public_steps_even_on_three_engines(
    candles: pd.DataFrame, members: list[Member], artifact: EnsembleArtifact, run_all: tuple[SignalEngine, list[Signal]]
) -> None:
    """As the features, predictions and signals stages run it: each step in its own engine, bit for bit."""
    whole_engine, whole = run_all

    def fresh() -> SignalEngine:
        return SignalEngine(copy.deepcopy(members), artifact.system, timeframe="1h", config=EngineConfig(adapt=True))

    features, predictions, decider = fresh(), fresh(), fresh()
    stepped = []
    for candle in _rows(candles.iloc[START:]):
        row = features.features(candle)
        assert tuple(row) == features.feature_columns
        probs = predictions.predictions(candle, row)
        assert tuple(probs) == predictions.member_names
        stepped.append(decider.decide(candle, row, probs))
    assert len(stepped) == len(whole) and all(_same(a, b) for a, b in zip(stepped, whole, strict=True))
    # outcomes were released and learnt from in the deciding engine, exactly as in on_candle
    assert len(decider.applied) > 400 and decider.applied == whole_engine.applied
    assert decider.state_summary() == whole_engine.state_summary()
    assert repr(decider.monitor.summary()) == repr(whole_engine.monitor.summary())


def test_decide_refuses_a_candle_it_already_took(candles: pd.DataFrame, artifact: EnsembleArtifact) -> None:
    members = [NoiseMember(), PlantedMember({}), TechnicalMember()]
    engine = SignalEngine(members, artifact.system)
    first, second = _rows(candles.iloc[START : START + 2])
    for candle in (first, second):
        row = engine.features(candle)
        engine.decide(candle, row, engine.predictions(candle, row))
    with pytest.raises(ValidationError, match="not after the last decided one") as info:
        engine.decide(first, {}, {})
    assert info.value.hint and engine.bar == 1  # refused before anything moved


def test_decide_counts_a_member_without_probabilities_as_warming_up(
    candles: pd.DataFrame, artifact: EnsembleArtifact
) -> None:
    engine = SignalEngine([NoiseMember(), PlantedMember({}), TechnicalMember()], artifact.system)
    (candle,) = _rows(candles.iloc[START : START + 1])
    probs = {"noise": np.full(3, 1 / 3), "technical": np.full(3, 1 / 3)}  # "planted" gave nothing
    signal = engine.decide(candle, {}, probs)
    assert (signal.direction, signal.bar, signal.ts) == ("flat", 0, candle.ts)
    assert signal.reason == "flat: warming up (planted not ready)"


def test_members_must_match_the_fitted_system(artifact: EnsembleArtifact) -> None:
    with pytest.raises(ConfigError, match="do not match the fitted system") as info:
        SignalEngine([TechnicalMember()], artifact.system)
    assert info.value.hint and "from_artifact" in info.value.hint
    with pytest.raises(ConfigError, match="must be unique"):
        SignalEngine([TechnicalMember(), TechnicalMember()], artifact.system)


def test_strength_is_monotone_in_confidence(run_all: tuple[SignalEngine, list[Signal]]) -> None:
    _, signals = run_all
    active = sorted((s for s in signals if s.direction != "flat"), key=lambda s: s.confidence)
    ranks = [STRENGTH_ORDER.index(s.strength) for s in active]
    assert ranks == sorted(ranks) and len(set(ranks)) >= 2
    assert all(s.strength == "none" for s in signals if s.direction == "flat")


def test_regime_filter_blocks_through_the_engine(
    candles: pd.DataFrame, members: list[Member], artifact: EnsembleArtifact, run_all: tuple[SignalEngine, list[Signal]]
) -> None:
    _, open_signals = run_all
    part = candles.iloc[START : FIT_BARS + 300]
    regimes = {s.regime for s in open_signals[WARM : WARM + 300] if s.direction != "flat"}
    assert regimes, "the unfiltered engine must signal somewhere"
    blocked = sorted(regimes)[0]
    system = artifact.system
    old = system.regime_filter
    system.regime_filter = RegimeFilter({**old.min_confidence, blocked: math.inf}, old.default)
    try:
        signals = SignalEngine(members, system).run(part)
    finally:
        system.regime_filter = old
    in_regime = [s for s in signals[WARM:] if s.regime == blocked and s.member_weights]
    assert in_regime and all(s.direction == "flat" for s in in_regime)
    assert any(f"below the {blocked} minimum" in s.reason for s in in_regime)


def test_outcomes_are_used_only_after_they_are_known(run_all: tuple[SignalEngine, list[Signal]]) -> None:
    engine, _ = run_all
    assert len(engine.applied) > 400
    assert all(a.decision_bar <= a.t1 < a.applied_bar for a in engine.applied)
    by_bar = {o.bar: o for o in engine.outcomes}
    assert all(by_bar[a.decision_bar].t1 == a.t1 for a in engine.applied)
    assert engine.monitor.summary().current["all"].n_outcomes > 0


def test_fit_uses_only_outcomes_known_at_the_end_of_its_data(
    candles: pd.DataFrame, members: list[Member], artifact: EnsembleArtifact
) -> None:
    data = artifact.data
    assert data["sample_last_ts"] < data["decision_ts"] == int(candles.ts.iloc[FIT_BARS - 1]) + 1
    # Changing every candle after the fitted span changes nothing in the fit.
    changed = candles.copy()
    changed.loc[FIT_BARS:, ["open", "high", "low", "close"]] *= 1.5
    again = fit_artifact(changed.iloc[:FIT_BARS], members, symbol="BTCUSDT", timeframe="1h")
    assert again.system.report() == artifact.system.report()


def test_artifact_round_trip_gives_identical_signals(
    tmp_path: Path, candles: pd.DataFrame, artifact: EnsembleArtifact
) -> None:
    rule_only = fit_artifact(candles.iloc[:FIT_BARS], [TechnicalMember()], symbol="BTCUSDT", timeframe="1h")
    artifact_id = save_artifact(rule_only, tmp_path)
    loaded = load_artifact("latest", tmp_path, symbol="BTCUSDT", timeframe="1h")
    assert loaded.artifact_id == artifact_id and artifact_id.startswith("ensemble-BTCUSDT-1h-")
    assert loaded.metadata()["report"] == rule_only.metadata()["report"]
    part = candles.iloc[START : FIT_BARS + 100]
    a = SignalEngine.from_artifact(loaded).run(part)
    b = SignalEngine([TechnicalMember()], rule_only.system).run(part)
    assert all(_same(x, y) for x, y in zip(a, b, strict=True))
    assert dataclasses.replace(a[-1], reason="").ts == int(part.ts.iloc[-1])


def test_research_batch_path_gives_the_engine_signals_for_rule_members(candles: pd.DataFrame) -> None:
    from smartmarket.signals.pipeline import research_data

    part = candles.iloc[START:].reset_index(drop=True)
    rule_only = fit_artifact(candles.iloc[:FIT_BARS], [TechnicalMember()], symbol="BTCUSDT", timeframe="1h")
    engine_signals = SignalEngine([TechnicalMember()], rule_only.system).run(part)
    data = research_data(part, [TechnicalMember()], timeframe="1h", label_config=LabelConfig())
    samples, rows = data.samples(coordinate="ts")
    batch = rule_only.system.signals(samples)
    assert len(batch) > 250
    for row, b in zip(rows, batch, strict=True):
        e = engine_signals[row]
        assert (e.direction, e.strength, e.ts) == (b.direction, b.strength, b.ts)
        assert np.allclose(e.probabilities, b.probabilities, rtol=0, atol=1e-12)
