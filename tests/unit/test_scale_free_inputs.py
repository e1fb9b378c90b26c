"""Model inputs are scale-free: prices ×10 and volumes ×7 change no model input column and no prediction.

Tolerance: relative 1e-9 of the value or of the column's largest magnitude (a difference of two rounded prices
near zero, e.g. close/SMA − 1 at a crossing, carries rounding noise relative to the column's scale, not to the
value); NaN positions must be equal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Timeframe
from smartmarket.data.synthetic import generate_market
from smartmarket.features import FeaturePipeline, model_input_columns, model_inputs
from smartmarket.features.scale_free import column_scale
from smartmarket.models.labels import LabelConfig

RTOL = 1e-9
SETS = ("minimal", "default", "full")


def rescaled(candles: pd.DataFrame, price: float = 10.0, volume: float = 7.0) -> pd.DataFrame:
    out = candles.copy()
    for column in ("open", "high", "low", "close"):
        out[column] = out[column] * price
    out["volume"] = out["volume"] * volume
    return out


def offending(a: pd.DataFrame, b: pd.DataFrame, columns: tuple[str, ...]) -> list[str]:
    """Columns whose NaN positions differ or whose values differ beyond the tolerance (with the worst gap)."""
    bad = []
    for column in columns:
        x, y = a[column].to_numpy(dtype=np.float64), b[column].to_numpy(dtype=np.float64)
        nan_x, nan_y = np.isnan(x), np.isnan(y)
        if not np.array_equal(nan_x, nan_y):
            bad.append(f"{column} (NaN positions differ at {int((nan_x != nan_y).sum())} rows)")
            continue
        x, y = x[~nan_x], y[~nan_y]
        if x.size == 0:
            continue
        scale = float(np.max(np.abs(x)))
        gap = np.abs(x - y) - RTOL * (np.abs(y) + scale)
        if np.any(gap > 0) or not np.array_equal(np.isinf(x), np.isinf(y)):
            bad.append(f"{column} (max |diff| {float(np.max(np.abs(x - y))):.3g}, column scale {scale:.3g})")
    return bad


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return generate_market(4000, timeframe=Timeframe.H1, seed=11)


@pytest.fixture(scope="module")
def real(shared_data: Path) -> pd.DataFrame:
    frame = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz", nrows=24_000)
    return frame.iloc[20_000:].reset_index(drop=True)


@pytest.mark.parametrize("source", ["synthetic", "real"])
@pytest.mark.parametrize("set_name", SETS)
def test_no_model_input_column_moves_with_the_price_level_or_unit(
    request: pytest.FixtureRequest, source: str, set_name: str
) -> None:
    candles: pd.DataFrame = request.getfixturevalue(source)
    pipeline = FeaturePipeline(set_name, "1h")
    columns = model_input_columns(pipeline.columns)
    original, scaled = pipeline.batch(candles), pipeline.batch(rescaled(candles))
    assert len(columns) >= 20 and np.isfinite(original[list(columns)].to_numpy()).any(axis=0).all()  # none vacuous
    bad = offending(original, scaled, columns)
    assert not bad, f"{set_name} on {source} candles: model inputs not scale-free: {'; '.join(bad)}"


def test_every_refused_column_really_depends_on_scale(synthetic: pd.DataFrame) -> None:
    """The classification is not broader than needed, and the check above has power: each refused column of the
    full set moves under the same rescaling (and the companions replace the level/difference columns)."""
    pipeline = FeaturePipeline("full", "1h")
    refused = tuple(c for c in pipeline.columns if c not in model_input_columns(pipeline.columns))
    assert {"sma_20", "atr_14", "obv", "vwap_20", "bb_upper_20_2", "volz_20", "smc_swing_high"} <= set(refused)
    moved = offending(pipeline.batch(synthetic), pipeline.batch(rescaled(synthetic)), refused)
    assert len(moved) == len(refused), set(refused) - {m.split(" ")[0] for m in moved}
    for column in refused:
        scale = column_scale(column)
        if scale in ("level", "difference"):
            assert f"{column}_{'dist' if scale == 'level' else 'pct'}" in pipeline.columns


def test_the_new_columns_stream_as_they_batch(synthetic: pd.DataFrame) -> None:
    pipeline = FeaturePipeline("default", "1h")
    head = synthetic.iloc[:1500]
    new = ["ts", "obvz_20", "vrel_20", "sma_20_dist", "atr_14_pct", "macd_hist_12_26_9_pct", "htf_emadist_50"]
    assert np.array_equal(pipeline.batch(head)[new].to_numpy(), pipeline.stream(head)[new].to_numpy(), equal_nan=True)


@pytest.mark.parametrize("kind", ["logreg", "lightgbm"])
@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_predictions_of_a_trained_model_ignore_the_price_level(
    request: pytest.FixtureRequest, kind: str, source: str
) -> None:
    from smartmarket.models.pipeline import train_model

    candles: pd.DataFrame = request.getfixturevalue(source)
    pipeline = FeaturePipeline("default", "1h")
    features = model_inputs(pipeline.batch(candles))
    overrides = {"n_estimators": 40} if kind == "lightgbm" else None
    model = train_model(kind, features, candles, feature_set="default", label_config=LabelConfig(horizon=12),
                        overrides=overrides)  # fmt: skip
    original = model.predict_frame(features)
    scaled = model.predict_frame(model_inputs(pipeline.batch(rescaled(candles))))
    assert np.isfinite(original.to_numpy()).all(axis=1).sum() > 3000
    bad = offending(original, scaled, tuple(original.columns))
    assert not bad, f"{kind} predictions move with the price level: {'; '.join(bad)}"


def test_training_refuses_a_price_level_column_and_names_it(synthetic: pd.DataFrame) -> None:
    from smartmarket.models.pipeline import train_model

    features = FeaturePipeline("minimal", "1h").batch(synthetic)
    with pytest.raises(ConfigError) as caught:
        train_model("logreg", features, synthetic, label_config=LabelConfig(horizon=12))
    message = str(caught.value)
    assert "atr_14" in message and "bb_upper_20_2" in message and "rsi_14" not in message
    assert "model_inputs" in message  # the fix is in the one line


def test_columns_outside_the_pipeline_keep_their_meaning() -> None:
    assert column_scale("htf_sma_20") == "level" and column_scale("tf4h_ema_50") == "level"
    assert column_scale("smc_sweep_high") == "free" and column_scale("natr_14") == "free"
    assert column_scale("close_z") == "free" and column_scale("volume") == "volume"


def test_an_artifact_recorded_with_raw_columns_still_loads_and_predicts(
    synthetic: pd.DataFrame, tmp_path: Path
) -> None:
    """Models saved before the guard recorded raw price-level columns: the feature sets still give those columns,
    so such an entry loads and its member predicts as the model did when saved."""
    from smartmarket.models.baselines import LogisticBaseline
    from smartmarket.models.datasets import WindowDataset, assign_groups, complete_windows
    from smartmarket.models.labels import make_labels
    from smartmarket.models.pipeline import TrainedModel
    from smartmarket.models.registry import Registry
    from smartmarket.signals.members import ModelMember

    features = FeaturePipeline("minimal", "1h").batch(synthetic)
    old_columns = ("atr_14", "bb_upper_20_2", "rsi_14", "logret_1")  # as an earlier version recorded them
    values = features[list(old_columns)].to_numpy(dtype=np.float32)
    labels = make_labels(synthetic, LabelConfig(horizon=12))
    bars = np.flatnonzero(complete_windows(values, 3) & labels.valid)[:2000]
    classifier = LogisticBaseline().fit(WindowDataset(values, bars, labels.y[bars].astype(np.int64), 3))
    old = TrainedModel(kind="logreg", classifier=classifier, feature_columns=old_columns,
                       groups=assign_groups(old_columns), label_config=LabelConfig(horizon=12), symbol="BTCUSDT",
                       timeframe="1h", feature_set="minimal")  # fmt: skip
    registry = Registry(tmp_path)
    member = ModelMember(registry.load(registry.save(old)))
    assert member.required_columns == old_columns and registry.show(old.model_id or "").no_skill_warning is None
    probs = member.batch(synthetic, features)
    assert np.isfinite(probs).all(axis=1).sum() > 3500
    assert np.allclose(probs, old.predict_frame(features).to_numpy(), equal_nan=True)
