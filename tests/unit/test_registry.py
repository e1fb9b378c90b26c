"""Registry round-trips: save → load gives identical predictions; ids, metadata, listing and stages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import NotFoundError
from smartmarket.models.labels import LabelConfig
from smartmarket.models.pipeline import TrainedModel, evaluate, train_model
from smartmarket.models.registry import METADATA_FILE, Registry
from smartmarket.models.training import TrainConfig

ID_PATTERN = re.compile(r"^(transformer|cnn_lstm|lightgbm|logreg|majority)-BTCUSDT-1h-\d{14}-[0-9a-f]{8}$")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def market(shared_data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """1,500 real hourly candles and a few causal features computed from them."""
    candles = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz", nrows=1500)
    log_close = np.log(candles["close"])
    features = pd.DataFrame({
        "ts": candles["ts"],
        "ret_1": log_close.diff(),
        "ret_8": log_close.diff(8),
        "volume_z": np.log1p(candles["volume"]).diff(),
        "rvol_24": log_close.diff().rolling(24).std(),
    })  # fmt: skip
    return features, candles


def train(kind: str, market: tuple[pd.DataFrame, pd.DataFrame], **kw: object) -> TrainedModel:
    features, candles = market
    return train_model(kind, features, candles, symbol="BTC/USDT", timeframe="1h", feature_set="tiny",
                       label_config=LabelConfig(horizon=12), epochs=1, train_config=TrainConfig(batch_size=64),
                       **kw)  # type: ignore[arg-type]  # fmt: skip


def meta_test_start(model: TrainedModel) -> int:
    return int(model.split["test_ts"][0])


@pytest.mark.parametrize(("kind", "overrides"), [("transformer", {"context": 32}), ("lightgbm", None)])
def test_save_load_gives_identical_predictions(
    tmp_path: Path, market: tuple[pd.DataFrame, pd.DataFrame], kind: str, overrides: dict[str, int] | None
) -> None:
    features, candles = market
    model = train(kind, market, overrides=overrides)
    registry = Registry(tmp_path / "models")
    model_id = registry.save(model)
    assert ID_PATTERN.match(model_id) and model.model_id == model_id
    loaded = registry.load(model_id)
    before, after = model.predict_frame(features), loaded.predict_frame(features)
    assert before.notna().all(axis=1).sum() > 1000
    pd.testing.assert_frame_equal(before, after)
    np.testing.assert_allclose(before.dropna().sum(axis=1), 1.0, atol=1e-6)
    assert loaded.metrics == json.loads(json.dumps(model.metrics))
    everything = evaluate(loaded, features, candles)
    assert everything["n"] == evaluate(model, features, candles)["n"] and everything["overlaps_training"]
    later = evaluate(loaded, features, candles, start_ts=meta_test_start(model))
    assert not later["overlaps_training"]
    assert later["balanced_accuracy"] == pytest.approx(model.metrics["test"]["balanced_accuracy"])

    meta = json.loads((tmp_path / "models" / model_id / METADATA_FILE).read_text())
    assert meta["kind"] == kind and meta["stage"] == "candidate" and meta["id"] == model_id
    assert meta["feature_columns"] == ["ret_1", "ret_8", "volume_z", "rvol_24"]
    assert meta["feature_groups"] == {"price": [0, 1], "volume": [2], "volatility": [3]}
    assert meta["label_config"]["horizon"] == 12 and meta["feature_set"] == "tiny"
    assert meta["data"]["rows"] == 1500 and len(meta["data"]["checksum"]) == 16
    assert {"validation", "test", "train"} <= set(meta["metrics"]) and meta["metrics"]["test"]["n"] > 100
    assert meta["code_version"]["version"]
    assert meta["split"]["train_ts"][1] < meta["split"]["validation_ts"][0] < meta["split"]["test_ts"][0]


def test_listing_latest_prefix_and_stages(tmp_path: Path, market: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    registry = Registry(tmp_path)
    first = registry.save(train("majority", market))
    second = registry.save(train("logreg", market))
    third = registry.save(train("logreg", market, seed=1))
    assert [r.model_id for r in registry.list()] == [first, second, third]
    assert [r.model_id for r in registry.list(kind="logreg")] == [second, third]
    assert registry.latest("BTCUSDT", "1h").model_id == third
    assert registry.latest("btc/usdt", "1h", "majority").model_id == first
    assert registry.show(third[:-4]).model_id == third  # a unique prefix is enough
    registry.set_stage(second, "production")
    assert registry.latest("BTCUSDT", "1h", stage="production").model_id == second
    assert registry.load(second).stage == "production"
    with pytest.raises(NotFoundError):
        registry.latest("ETHUSDT", "1h")
    with pytest.raises(NotFoundError):
        registry.show("logreg-")  # ambiguous
    with pytest.raises(ValueError):
        registry.set_stage(first, "archived")
    loaded = registry.load(first)
    np.testing.assert_array_equal(loaded.classifier.predict_proba(np.zeros((2, 1, 4))),
                                  registry.load(first).classifier.predict_proba(np.zeros((2, 1, 4))))  # fmt: skip


def test_default_registry_lives_in_smartmarket_home(sm_home: Path) -> None:
    assert Registry().directory == sm_home / "models"
    assert Registry().list() == []
