"""Pickle-free artifacts: every saved model and fitted signal system reloads bit-identically from skops files read
with a fixed list of trusted types; foreign types, damaged files and pickles are refused with one line."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import DataFormatError
from smartmarket.core.safe_files import UnsafeFileError, find_unsafe_files
from smartmarket.models import persist
from smartmarket.models.baselines import BASELINE_TRUSTED_TYPES
from smartmarket.models.labels import LabelConfig
from smartmarket.models.pipeline import train_model
from smartmarket.models.registry import JOBLIB_FILE, MODEL_FILE, Registry
from smartmarket.models.training import TrainConfig
from smartmarket.signals.ensemble import SkillWeightedEnsemble
from smartmarket.signals.fit import SIGNAL_TRUSTED_TYPES
from smartmarket.signals.outcomes import SignalSamples
from smartmarket.signals.strength import SignalSystem, SignalSystemConfig


class Planted:
    """Unpickling this creates ``path`` (the code a hostile pickle would run)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.makedirs, (str(self.path),)


class Foreign:
    """A type no SmartMarket loader trusts."""

    def __init__(self) -> None:
        self.values = np.arange(3.0)


FOREIGN = f"{Foreign.__module__}.{Foreign.__qualname__}"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------- signal system


@pytest.fixture(scope="module")
def samples() -> SignalSamples:
    """3,000 samples: one skilled member, one weak, one noise; two regimes."""
    rng = np.random.default_rng(7)
    n = 3000
    y = rng.integers(0, 3, n)

    def member(skill: float) -> np.ndarray:
        p = rng.dirichlet([2.0, 2.0, 2.0], n)
        p[np.arange(n), y] += skill
        return p / p.sum(axis=1, keepdims=True)

    members = {"strong": member(0.5), "weak": member(0.1), "noise": rng.dirichlet([2.0, 2.0, 2.0], n)}
    regimes = np.where(rng.random(n) < 0.6, "trend", "range")
    t = np.arange(n)
    return SignalSamples.build(t, t + 5, y, members, regimes, ts=1_600_000_000_000 + t * 3_600_000)


@pytest.mark.parametrize("calibration", ["isotonic", "platt", "temperature"])
@pytest.mark.parametrize("ensemble", ["skill", "stacking"])
@pytest.mark.parametrize("meta", ["logistic", "lightgbm"])
def test_signal_system_round_trip_is_bit_identical(
    tmp_path: Path, samples: SignalSamples, calibration: str, ensemble: str, meta: str
) -> None:
    options: dict[str, Any] = {"calibration": calibration, "ensemble": ensemble, "meta": meta}
    config = SignalSystemConfig(**options, regime_min_samples=300)
    system = SignalSystem(config).fit(samples, len(samples) + 10)
    assert {c.method for c in system.calibrators.values()} == {calibration}
    path = tmp_path / "system.skops"
    persist.dump(system, path, trusted=SIGNAL_TRUSTED_TYPES)
    assert find_unsafe_files(tmp_path) == []
    loaded = persist.load(path, trusted=SIGNAL_TRUSTED_TYPES, expect=SignalSystem)

    probs, conf, members, weights = system.predict(samples)
    probs2, conf2, members2, weights2 = loaded.predict(samples)
    for before, after in ((probs, probs2), (conf, conf2), (weights, weights2)):
        np.testing.assert_array_equal(before, after)
    assert members.keys() == members2.keys()
    for name in members:
        np.testing.assert_array_equal(members[name], members2[name])
    assert [repr(s.to_dict()) for s in system.signals(samples)] == [repr(s.to_dict()) for s in loaded.signals(samples)]
    assert repr(system.report()) == repr(loaded.report())
    assert loaded.confidence.classifier is not None  # the meta model was fitted: compare it whatever was chosen
    args = (probs, np.stack([members[n] for n in members], axis=1), weights, samples.regimes, samples.t)
    np.testing.assert_array_equal(
        system.confidence.predict(*args, kind="meta"), loaded.confidence.predict(*args, kind="meta")
    )
    if isinstance(system.ensemble, SkillWeightedEnsemble):  # the rolling window survives: online updates agree
        assert isinstance(loaded.ensemble, SkillWeightedEnsemble)
        for i in range(150):
            row = {n: samples.members[n][i] for n in samples.members}
            system.ensemble.update(row, int(samples.y[i]), "trend")
            loaded.ensemble.update(row, int(samples.y[i]), "trend")
        for regime in (None, "trend"):
            assert system.ensemble.member_weights(regime) == loaded.ensemble.member_weights(regime)
        group = loaded.ensemble.groups["__global__"]
        assert group.window.maxlen == system.ensemble.groups["__global__"].window.maxlen


# ------------------------------------------------------------------------------------------------ baselines


@pytest.fixture(scope="module")
def market(shared_data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    candles = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz", nrows=1500)
    log_close = np.log(candles["close"])
    features = pd.DataFrame({
        "ts": candles["ts"], "ret_1": log_close.diff(), "ret_8": log_close.diff(8),
        "rvol_24": log_close.diff().rolling(24).std(),
    })  # fmt: skip
    return features, candles


@pytest.mark.parametrize("kind", ["logreg", "lightgbm", "majority"])
def test_baseline_round_trip_is_bit_identical_and_pickle_free(
    tmp_path: Path, market: tuple[pd.DataFrame, pd.DataFrame], kind: str
) -> None:
    features, candles = market
    model = train_model(kind, features, candles, symbol="BTCUSDT", timeframe="1h", feature_set="tiny",
                        label_config=LabelConfig(horizon=12), train_config=TrainConfig(batch_size=64))  # fmt: skip
    registry = Registry(tmp_path)
    model_id = registry.save(model)
    entry = tmp_path / model_id
    assert sorted(p.name for p in entry.iterdir()) == ["metadata.json", MODEL_FILE]
    assert find_unsafe_files(entry) == [] and not (entry / JOBLIB_FILE).exists()
    loaded = registry.load(model_id)
    pd.testing.assert_frame_equal(model.predict_frame(features), loaded.predict_frame(features), check_exact=True)
    assert loaded.classifier.hyperparameters() == model.classifier.hyperparameters()
    assert registry.list()[0].unsafe_files == ()


def test_lightgbm_text_matches_the_classifier_on_binary_and_multiclass() -> None:
    import lightgbm as lgb

    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 5))
    for y in (rng.integers(0, 2, 600), rng.integers(0, 3, 600) * 2):  # binary; classes {0, 2, 4}
        clf = lgb.LGBMClassifier(n_estimators=30, num_leaves=7, verbose=-1, n_jobs=1).fit(x, y)
        text = persist.LightGBMText.from_classifier(clf)
        np.testing.assert_array_equal(text.predict_proba(x), clf.predict_proba(x))
        np.testing.assert_array_equal(text.classes_, clf.classes_)


# --------------------------------------------------------------------------------------------- refusals


def test_a_type_outside_the_trusted_list_is_refused_naming_the_file_and_type(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    persist.dump({"x": Foreign()}, path, trusted=[FOREIGN])
    with pytest.raises(UnsafeFileError) as caught:
        persist.load(path, trusted=BASELINE_TRUSTED_TYPES, expect=dict)
    line = str(caught.value)
    assert "model.skops" in line and FOREIGN in line and "\n" not in line
    assert isinstance(persist.load(path, trusted=[FOREIGN], expect=dict)["x"], Foreign)  # the list decides


def test_dump_refuses_to_write_what_could_not_be_loaded(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Foreign"):
        persist.dump(Foreign(), tmp_path / "x.skops", trusted=BASELINE_TRUSTED_TYPES)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", ["pickle", "garbage", "empty"])
def test_a_damaged_or_pickled_skops_file_is_one_line_and_runs_nothing(tmp_path: Path, content: str) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "system.skops"
    data = {"pickle": pickle.dumps(Planted(marker)), "garbage": b"PK\x03\x04" + b"\x00" * 64, "empty": b""}
    path.write_bytes(data[content])
    with pytest.raises(DataFormatError) as caught:
        persist.load(path, trusted=SIGNAL_TRUSTED_TYPES, expect=SignalSystem)
    assert "system.skops" in str(caught.value) and "\n" not in str(caught.value)
    assert not marker.exists()


def test_a_file_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "system.skops"
    persist.dump({"not": "a system", "x": math.pi}, path, trusted=())
    with pytest.raises(DataFormatError, match="holds a dict"):
        persist.load(path, trusted=SIGNAL_TRUSTED_TYPES, expect=SignalSystem)
