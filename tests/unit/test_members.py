"""Signal members: the 3-class contract, batch = streaming, causality, model windows, online outcomes."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Candle
from smartmarket.features import FeaturePipeline, model_inputs
from smartmarket.models.labels import LabelConfig, make_labels
from smartmarket.signals.members import (
    ModelMember,
    SMCMember,
    TechnicalMember,
    make_member,
    parse_members,
    score_probabilities,
)
from smartmarket.signals.pipeline import (
    BarrierTracker,
    check_columns,
    choose_feature_set,
    is_false_signal,
    label_outcomes,
)

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    frame = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz", nrows=33_000)
    return frame.iloc[30_000:].reset_index(drop=True)


@pytest.fixture(scope="module")
def features(candles: pd.DataFrame) -> pd.DataFrame:
    return FeaturePipeline("minimal", "1h").batch(candles)


def _candles(frame: pd.DataFrame) -> list[Candle]:
    rows = frame[["ts", "open", "high", "low", "close", "volume"]].itertuples(index=False, name=None)
    return [Candle(int(ts), float(o), float(h), float(lo), float(c), float(v)) for ts, o, h, lo, c, v in rows]


def _stream(
    member: TechnicalMember | SMCMember | ModelMember, candles: pd.DataFrame, features: pd.DataFrame
) -> np.ndarray:
    member.reset()
    out = np.full((len(candles), 3), np.nan)
    cols = list(features.columns.drop("ts"))
    rows = zip(_candles(candles), features[cols].itertuples(index=False, name=None), strict=True)
    for i, (candle, f) in enumerate(rows):
        p = member.update(candle, dict(zip(cols, f, strict=True)))
        if p is not None:
            out[i] = p
    return out


def test_score_probabilities_are_a_distribution_monotone_in_the_score() -> None:
    scores = np.linspace(-1, 1, 21)
    probs = np.array([score_probabilities(s) for s in scores])
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.allclose(probs[10], 1 / 3)
    assert np.all(np.diff(probs[:, 2]) > 0) and np.all(np.diff(probs[:, 0]) < 0)
    assert np.array_equal(score_probabilities(5.0), score_probabilities(1.0))  # clipped


@pytest.mark.parametrize("member_cls", [TechnicalMember, SMCMember])
def test_rule_member_batch_equals_streaming_and_is_causal(
    member_cls: type, candles: pd.DataFrame, features: pd.DataFrame
) -> None:
    member = member_cls()
    batch = member.batch(candles, features)
    assert np.array_equal(batch, _stream(member, candles, features), equal_nan=True)
    ready = np.isfinite(batch).all(axis=1)
    assert ready[500:].mean() > 0.99 and not ready[0]  # warms up, then always answers
    assert np.allclose(batch[ready].sum(axis=1), 1.0)
    assert batch[ready, 2].std() > 0.01  # the rules actually move
    cut = 1700
    prefix = member.batch(candles.iloc[:cut], features.iloc[:cut])
    assert np.array_equal(prefix, batch[:cut], equal_nan=True)  # later candles never change earlier outputs


def test_model_member_rolling_window_matches_the_model(candles: pd.DataFrame, features: pd.DataFrame) -> None:
    from smartmarket.models.pipeline import train_model

    model = train_model("logreg", model_inputs(features), candles, symbol="BTCUSDT", timeframe="1h",
                        feature_set="minimal")  # fmt: skip
    member = ModelMember(model, name="logistic")
    assert member.feature_set == "minimal" and member.context == 3
    streamed = _stream(member, candles, features)
    frame = member.batch(candles, features)
    both = np.isfinite(streamed).all(axis=1)
    assert np.array_equal(both, np.isfinite(frame).all(axis=1))
    assert both.sum() > 2500 and np.allclose(streamed[both], frame[both], atol=1e-9)
    assert member.training_end_ts() is not None and member.spec()["model_id"] is None  # not saved: no id yet


def test_make_member_by_name_and_errors() -> None:
    assert isinstance(make_member("technical"), TechnicalMember)
    assert isinstance(make_member({"kind": "smc", "name": "smc", "swing_length": 3}), SMCMember)
    assert parse_members(" technical, smc,technical ") == ("technical", "smc")
    with pytest.raises(ConfigError):
        make_member("astrology")
    with pytest.raises(ConfigError):
        parse_members(" , ")
    assert choose_feature_set([TechnicalMember(), SMCMember()]) == "minimal"


def test_online_outcomes_equal_the_batch_labels(candles: pd.DataFrame) -> None:
    config = LabelConfig()
    labels = make_labels(candles, config)
    batch = label_outcomes(candles, config)
    tracker = BarrierTracker(config)
    online: dict[int, tuple[int, int, str]] = {}
    for i, candle in enumerate(_candles(candles)):
        for outcome, payload in tracker.update(candle, i):
            assert payload == outcome.bar and outcome.t1 == i  # resolved at the candle that decided it
            online[outcome.bar] = (outcome.label, outcome.t1, outcome.exit)
        tracker.add(i, candle, i)
    labelled = np.flatnonzero(labels.valid)
    assert labelled.size > 2500
    for bar in labelled:
        label, t1, exit_kind = online[int(bar)]
        assert (label, t1, exit_kind) == (int(labels.y[bar]), int(labels.t1[bar]), batch.exit[bar])


def test_false_signal_definition() -> None:
    assert is_false_signal(1, "down", -0.02, 0.001) and not is_false_signal(1, "up", 0.02, 0.001)
    assert is_false_signal(-1, "up", 0.02, 0.001) and not is_false_signal(-1, "down", -0.02, 0.001)
    assert is_false_signal(1, "tie", 0.0, 0.001)
    assert is_false_signal(1, "time", 0.0015, 0.001) and not is_false_signal(1, "time", 0.003, 0.001)
    assert not is_false_signal(0, "down", -0.5, 0.001) and math.isfinite(0.0)


def test_a_cross_section_model_is_refused_by_signals(candles: pd.DataFrame, features: pd.DataFrame) -> None:
    """Signals compute one symbol at a time, so a model trained with universe ranks cannot be a member: one line."""
    from smartmarket.models.pipeline import train_model

    inputs = model_inputs(features).assign(xs_ret_rank_20=np.linspace(0.0, 1.0, len(features)))
    model = train_model("logreg", inputs, candles, symbol="BTCUSDT", timeframe="1h", feature_set="minimal")
    with pytest.raises(ConfigError, match=r"needs columns \['xs_ret_rank_20'\]") as refused:
        check_columns([ModelMember(model)], FeaturePipeline("minimal", "1h"))
    assert refused.value.hint is not None and "--cross-section" in refused.value.hint
    with pytest.raises(ConfigError, match="need feature set 'minimal'"):
        choose_feature_set([ModelMember(model)], "full")
