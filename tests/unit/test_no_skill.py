"""No-skill guards: a model worse than the base rate is marked ``no_skill``; an ensemble artifact that can never
signal says so, and promotion refuses it unless forced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import ValidationError
from smartmarket.data.synthetic import generate_market
from smartmarket.models.labels import LabelConfig, make_labels
from smartmarket.models.metrics import class_frequencies, classification_metrics, log_loss
from smartmarket.models.pipeline import train_model
from smartmarket.models.registry import EVALUATION_FILE, Registry
from smartmarket.models.skill import no_skill_line, skill_of
from smartmarket.signals.fit import default_system_config, fit_artifact, save_artifact
from smartmarket.signals.members import SMCMember, TechnicalMember

LABELS = LabelConfig(horizon=10, take_profit=1.5, stop_loss=1.5)


def random_walk(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    spread = np.abs(rng.normal(0, 0.004, n)) * close
    open_ = np.concatenate([[100.0], close[:-1]])
    return pd.DataFrame({
        "ts": np.arange(n, dtype=np.int64) * 3_600_000, "open": open_, "high": np.maximum(open_, close) + spread,
        "low": np.minimum(open_, close) - spread, "close": close, "volume": rng.lognormal(3, 1, n),
    })  # fmt: skip


def test_the_baseline_is_the_log_loss_of_the_training_class_frequencies() -> None:
    y_train, y = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 2, 2, 1])
    rates = class_frequencies(y_train, 3)
    assert np.allclose(rates, np.array([3, 2, 4]) / 9)  # Laplace-smoothed counts
    metrics = classification_metrics(y, np.full((4, 3), 1 / 3), rates)
    assert metrics["baseline_log_loss"] == pytest.approx(log_loss(y, np.tile(rates, (4, 1))))
    assert metrics["baseline_log_loss"] == pytest.approx(-np.mean(np.log([3 / 9, 4 / 9, 4 / 9, 2 / 9])))


def test_a_model_of_noise_is_marked_no_skill_in_the_registry(tmp_path: Path) -> None:
    candles = random_walk(3000, seed=5)
    features = pd.DataFrame(np.random.default_rng(6).normal(size=(3000, 6)), columns=[f"noise_{i}" for i in range(6)])
    model = train_model("lightgbm", features, candles, label_config=LABELS, validation=0.2, test=0.3, symbol="BTCUSDT",
                        timeframe="1h", overrides={"n_estimators": 200})  # fmt: skip
    skill = model.skill
    assert skill is not None and skill.sample == "validation" and skill.no_skill
    validation = model.metrics["validation"]
    assert skill.log_loss == validation["log_loss"] > validation["baseline_log_loss"] == skill.baseline_log_loss
    registry = Registry(tmp_path)
    record = registry.show(registry.save(model))
    assert record.metadata["no_skill"] is True and record.metadata["skill"]["no_skill"] is True
    warning = record.no_skill_warning
    assert warning is not None and "\n" not in warning and record.model_id in warning
    assert f"{skill.baseline_log_loss:.3f}" in warning and f"{skill.log_loss:.3f}" in warning
    assert registry.load(record.model_id).skill == skill  # survives the round trip


def test_a_model_that_sees_the_label_is_not_marked() -> None:
    """Positive control: the mark is not given to everything."""
    candles = random_walk(3000, seed=5)
    leak = np.nan_to_num(make_labels(candles, LABELS).y, nan=1.0)
    features = pd.DataFrame({"leak": leak + np.random.default_rng(7).normal(0, 0.1, 3000)})
    model = train_model("logreg", features, candles, label_config=LABELS, validation=0.2, test=0.3)
    assert model.skill is not None and not model.skill.no_skill
    assert no_skill_line("m", model.skill) is None


def test_models_without_a_recorded_baseline_are_unknown_not_flagged() -> None:
    assert skill_of({"validation": {"log_loss": 8.76}}) is None
    assert no_skill_line("old", None) is None
    only_test = skill_of({"test": {"log_loss": 1.2, "baseline_log_loss": 1.05}})
    assert only_test is not None and only_test.sample == "test" and only_test.no_skill


def _artifact(registry: Path, candles: pd.DataFrame, *, signalling: bool) -> str:
    overrides = (
        {"strength_targets": (0.0, 0.0, 0.0), "regime_target": 0.0, "z": 0.0, "min_count": 5, "require_skill": False}
        if signalling else {}
    )  # fmt: skip
    config = default_system_config(**overrides)
    artifact = fit_artifact(candles, [TechnicalMember(), SMCMember()], symbol="BTCUSDT", timeframe="1m",
                            label_config=LabelConfig(horizon=12), config=config)  # fmt: skip
    return save_artifact(artifact, registry)


def _attach(registry: Registry, artifact_id: str) -> None:
    """A current evaluation that does not stand in the way (none is in production; no verdict against it)."""
    doc = {"candidate_id": artifact_id, "against": None, "verdict": "no production to compare"}
    (registry.show(artifact_id).path / EVALUATION_FILE).write_text(json.dumps(doc))


def test_promotion_refuses_a_never_signalling_artifact_unless_forced(tmp_path: Path) -> None:
    candles = generate_market(1500, seed=11, start_price=25_000.0)
    registry = Registry(tmp_path)
    never = _artifact(tmp_path, candles, signalling=False)  # default system: members without skill weigh 0
    record = registry.show(never)
    assert record.metadata["never_signals"] and "weight is 0" in record.metadata["never_signals"]
    assert record.no_skill_warning is not None and "can never produce a signal" in record.no_skill_warning
    _attach(registry, never)
    with pytest.raises(ValidationError, match="can never produce a signal") as refused:
        registry.promote(never)
    assert "--force" in str(refused.value) and registry.show(never).stage == "candidate"
    promoted, _ = registry.promote(never, force=True)
    assert promoted.stage == "production" and "(forced)" in promoted.metadata["stage_history"][-1]["note"]

    can = _artifact(tmp_path, candles, signalling=True)
    assert registry.show(can).metadata["never_signals"] is None and registry.show(can).no_skill_warning is None


def test_compare_models_summary_marks_a_kind_worse_than_its_baseline() -> None:
    from smartmarket.models.compare import summarise

    row = {"n": 100.0, "balanced_accuracy": 0.34, "accuracy": 0.4, "brier": 0.7, "auc_ovr": 0.5,
           "chance_balanced_accuracy": 1 / 3, "balanced_accuracy_null_se": 0.05, "baseline_log_loss": 1.05}  # fmt: skip
    results = pd.DataFrame([
        {**row, "kind": "logreg", "fold": f, "log_loss": loss} for f, loss in enumerate((1.2, 1.3))
    ] + [{**row, "kind": "majority", "fold": f, "log_loss": 1.04} for f in range(2)])  # fmt: skip
    summary = {s["kind"]: s for s in summarise(results, ["logreg", "majority"])}
    assert summary["logreg"]["no_skill"] and summary["logreg"]["baseline_log_loss"] == pytest.approx(1.05)
    assert not summary["majority"]["no_skill"]
