"""The shared training loop: it learns, it is reproducible, early stopping really restores, noise stays chance."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

from smartmarket.models.datasets import WindowDataset
from smartmarket.models.labels import LabelConfig
from smartmarket.models.networks import build_network, network_config
from smartmarket.models.pipeline import compare_models, summarise_comparison, train_model
from smartmarket.models.splits import WalkForwardConfig
from smartmarket.models.training import (
    EpochReport,
    NetworkClassifier,
    TrainConfig,
    fit_network,
    rich_progress,
    snapshot,
)

GROUPS = {"price": (0, 1), "volume": (2,), "volatility": (3,)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def noise_dataset(n: int, context: int, seed: int, n_features: int = 4) -> WindowDataset:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n + context, n_features)).astype(np.float32)
    samples = np.arange(context - 1, context - 1 + n)
    return WindowDataset(values, samples, rng.integers(0, 3, n), context)


def small_network(kind: str, seed: int = 0, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(kind, network_config(kind, "small", **overrides), 4, GROUPS)


@pytest.mark.parametrize("kind", ["transformer", "cnn_lstm"])
def test_overfits_one_batch(kind: str) -> None:
    """16 samples of noise with arbitrary labels are memorised: the loop and the network can learn at all."""
    data = noise_dataset(16, 64, seed=1)
    module = small_network(kind, context=64, dropout=0.0)
    config = TrainConfig(epochs=120, batch_size=16, lr=2e-3, schedule="constant", weight_decay=0.0,
                         class_weighted=False, seed=0)  # fmt: skip
    result = fit_network(module, data, None, config)
    assert result.history[0].train_loss > 0.8
    assert result.history[-1].train_loss < 0.05
    with torch.inference_mode():
        predicted = module(data.batch()).argmax(dim=1).numpy()
    np.testing.assert_array_equal(predicted, data.labels)


@pytest.mark.parametrize("kind", ["transformer", "cnn_lstm"])
def test_same_seed_gives_the_same_weights(kind: str) -> None:
    train, val = noise_dataset(64, 32, seed=2), noise_dataset(32, 32, seed=3)
    config = TrainConfig(epochs=2, batch_size=16, seed=7)
    states = []
    for seed in (11, 11, 12):
        clf = NetworkClassifier(kind, small_network(kind, seed=seed, context=32), config)
        clf.fit(train, val)
        states.append(snapshot(clf.module))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])  # the comparison can fail


def test_early_stopping_restores_a_true_copy_of_the_best_weights() -> None:
    train, val = noise_dataset(96, 32, seed=4), noise_dataset(48, 32, seed=5)
    module = small_network("cnn_lstm", context=32)
    per_epoch: list[dict[str, torch.Tensor]] = []

    def remember(report: EpochReport) -> None:
        per_epoch.append(snapshot(module))

    # Random labels and a high learning rate: validation loss bottoms out early and then rises.
    config = TrainConfig(epochs=12, batch_size=16, lr=1e-2, schedule="constant", patience=4, seed=0)
    result = fit_network(module, train, val, config, progress=remember)
    assert len(per_epoch) == len(result.history) and result.history[0].validation_balanced_accuracy is not None
    assert result.best_epoch is not None and result.best_state is not None
    assert result.best_epoch < len(result.history)  # the best was not the last epoch, so restoring matters
    best = per_epoch[result.best_epoch - 1]
    last = per_epoch[-1]
    restored = module.state_dict()
    assert all(torch.equal(restored[k], best[k]) for k in best)
    assert not all(torch.equal(best[k], last[k]) for k in best)
    losses = [r.validation_loss for r in result.history]
    assert result.best_validation_loss == min(v for v in losses if v is not None)

    # The kept snapshot shares no storage with the live weights: mutating them leaves it intact.
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)
    assert not torch.equal(module.state_dict()["head.1.weight"], best["head.1.weight"])
    assert all(torch.equal(result.best_state[k], best[k]) for k in best)
    module.load_state_dict(result.best_state)
    assert all(torch.equal(module.state_dict()[k], best[k]) for k in best)


def test_rich_progress_bar_follows_the_epochs() -> None:
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    train, val = noise_dataset(32, 16, seed=1), noise_dataset(16, 16, seed=2)
    with rich_progress("cnn_lstm", console=console) as update:
        result = fit_network(small_network("cnn_lstm", context=16), train, val, TrainConfig(epochs=2), progress=update)
    shown = buffer.getvalue()
    assert len(result.history) == 2 and "2/2" in shown and "val " in shown and "bacc" in shown


def random_walk_candles(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    spread = np.abs(rng.normal(0, 0.004, n)) * close
    open_ = np.concatenate([[100.0], close[:-1]])
    return pd.DataFrame({
        "ts": np.arange(n, dtype=np.int64) * 3_600_000, "open": open_,
        "high": np.maximum(open_, close) + spread, "low": np.minimum(open_, close) - spread,
        "close": close, "volume": rng.lognormal(3, 1, n),
    })  # fmt: skip


@pytest.mark.parametrize("kind", ["lightgbm", "transformer"])
def test_noise_features_score_chance_out_of_sample(kind: str) -> None:
    """Pure-noise features, random-walk labels: a leak-free pipeline cannot beat chance on the test samples."""
    candles = random_walk_candles(3000, seed=5)
    rng = np.random.default_rng(6)
    features = pd.DataFrame(rng.normal(size=(3000, 4)), columns=["close_z", "ret_1", "volume_z", "atr_z"])
    labels = LabelConfig(horizon=10, take_profit=1.5, stop_loss=1.5)
    overrides = {"context": 32} if kind == "transformer" else None
    model = train_model(kind, features, candles, label_config=labels, overrides=overrides, epochs=3,
                        train_config=TrainConfig(batch_size=64), validation=0.2, test=0.3, seed=0)  # fmt: skip
    test = model.metrics["test"]
    assert test["n"] > 700
    bound = 3 * test["balanced_accuracy_null_se"]
    assert abs(test["balanced_accuracy"] - test["chance_balanced_accuracy"]) < bound
    if kind == "lightgbm":
        assert model.metrics["train"]["balanced_accuracy"] > test["chance_balanced_accuracy"] + bound  # it did fit


def test_the_chance_test_has_power_a_leaked_label_is_caught() -> None:
    """Positive control: a feature that leaks the future label scores far above the chance bound."""
    candles = random_walk_candles(3000, seed=5)
    labels = LabelConfig(horizon=10, take_profit=1.5, stop_loss=1.5)
    from smartmarket.models.labels import make_labels

    leak = np.nan_to_num(make_labels(candles, labels).y, nan=1.0)
    rng = np.random.default_rng(6)
    features = pd.DataFrame({"noise": rng.normal(size=3000), "leak": leak + rng.normal(0, 0.1, 3000)})
    model = train_model("logreg", features, candles, label_config=labels, validation=0.2, test=0.3)
    test = model.metrics["test"]
    assert test["balanced_accuracy"] > test["chance_balanced_accuracy"] + 3 * test["balanced_accuracy_null_se"]


def test_compare_models_scores_every_kind_on_the_same_test_samples() -> None:
    candles = random_walk_candles(1500, seed=8)
    rng = np.random.default_rng(9)
    features = pd.DataFrame(rng.normal(size=(1500, 4)), columns=["close_z", "ret_1", "volume_z", "atr_z"])
    walk = WalkForwardConfig(train=600, validation=150, test=200, embargo=10)
    results = compare_models(
        ["majority", "logreg", "cnn_lstm"], features, candles, walk,
        label_config=LabelConfig(horizon=10), overrides={"cnn_lstm": {"context": 16}},
        train_config=TrainConfig(epochs=1, batch_size=64),
    )  # fmt: skip
    assert sorted(results["kind"].unique()) == ["cnn_lstm", "logreg", "majority"]
    assert results["fold"].nunique() == 3  # test periods start at bars 770, 970, 1170
    per_fold = results.groupby("fold")
    assert (per_fold["n"].nunique() == 1).all()  # identical test samples for every kind
    assert (per_fold["test_first_ts"].nunique() == 1).all()
    majority = results[results["kind"] == "majority"]
    assert np.allclose(majority["balanced_accuracy"], 1 / 3)  # one class always: recall 1 for it, 0 for the others
    summary = summarise_comparison(results)
    assert list(summary.index) == ["cnn_lstm", "logreg", "majority"]
    assert {"balanced_accuracy_mean", "balanced_accuracy_se", "log_loss_mean", "log_loss_se"} <= set(summary.columns)
