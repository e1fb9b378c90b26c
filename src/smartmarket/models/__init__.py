"""Models: labels, purged splits, windowed datasets, networks, one training loop, baselines, a registry.

The package root imports nothing heavy (torch and LightGBM load only with the modules that need them); the
API the CLI uses, by module::

    from smartmarket.models.pipeline import compare_models, evaluate, train_model
    from smartmarket.models.registry import Registry

    model = train_model("transformer", features, candles, symbol="BTCUSDT", timeframe="1h", preset="small")
    model.metrics["test"]                  # out-of-sample metrics on purged, embargoed test samples
    model_id = Registry().save(model)      # versioned id; Registry().load(model_id) predicts identically
    evaluate(model, features, candles, start_ts=...)
    compare_models(["transformer", "cnn_lstm", "lightgbm", "logreg", "majority"], features, candles,
                   WalkForwardConfig(train=5000, validation=1000, test=1000, embargo=24))
"""

from smartmarket.models.labels import (
    CLASS_NAMES,
    DOWN,
    FLAT,
    N_CLASSES,
    UP,
    LabelConfig,
    LabelSet,
    forward_sign_labels,
    make_labels,
    triple_barrier_labels,
)
from smartmarket.models.splits import Split, WalkForwardConfig, chronological_split, make_split, walk_forward

__all__ = [
    "CLASS_NAMES",
    "DOWN",
    "FLAT",
    "N_CLASSES",
    "UP",
    "LabelConfig",
    "LabelSet",
    "Split",
    "WalkForwardConfig",
    "chronological_split",
    "forward_sign_labels",
    "make_labels",
    "make_split",
    "triple_barrier_labels",
    "walk_forward",
]
