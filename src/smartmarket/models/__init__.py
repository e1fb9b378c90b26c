"""Models: labels, purged splits, windowed datasets, networks, one training loop, baselines, a registry.

The API the CLI uses::

    model = train_model("transformer", features, candles, symbol="BTCUSDT", timeframe="1h", preset="small")
    model.metrics["test"]                  # out-of-sample metrics on purged, embargoed test samples
    model_id = Registry().save(model)      # versioned id; Registry().load(model_id) predicts identically
    evaluate(model, features, candles, start_ts=...)
    compare_models(["transformer", "cnn_lstm", "lightgbm", "logreg", "majority"], features, candles,
                   WalkForwardConfig(train=5000, validation=1000, test=1000, embargo=24))
"""

from smartmarket.models.baselines import BASELINE_KINDS, LightGBMBaseline, LogisticBaseline, MajorityBaseline
from smartmarket.models.datasets import GROUPS, WindowDataset, assign_groups, complete_windows, feature_matrix
from smartmarket.models.device import deterministic, seed_everything, select_device
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
from smartmarket.models.metrics import balanced_accuracy_null_se, classification_metrics
from smartmarket.models.networks import (
    NETWORK_KINDS,
    CNNLSTMConfig,
    GroupPatchTransformer,
    TransformerConfig,
    build_network,
    network_config,
)
from smartmarket.models.pipeline import (
    MODEL_KINDS,
    STAGES,
    TrainedModel,
    build_classifier,
    compare_models,
    evaluate,
    summarise_comparison,
    train_model,
)
from smartmarket.models.registry import ModelRecord, Registry
from smartmarket.models.splits import Split, WalkForwardConfig, chronological_split, make_split, walk_forward
from smartmarket.models.training import (
    Classifier,
    EpochReport,
    NetworkClassifier,
    TrainConfig,
    fit_network,
    rich_progress,
)

__all__ = [
    "BASELINE_KINDS",
    "CLASS_NAMES",
    "DOWN",
    "FLAT",
    "GROUPS",
    "MODEL_KINDS",
    "NETWORK_KINDS",
    "N_CLASSES",
    "STAGES",
    "UP",
    "CNNLSTMConfig",
    "Classifier",
    "EpochReport",
    "GroupPatchTransformer",
    "LabelConfig",
    "LabelSet",
    "LightGBMBaseline",
    "LogisticBaseline",
    "MajorityBaseline",
    "ModelRecord",
    "NetworkClassifier",
    "Registry",
    "Split",
    "TrainConfig",
    "TrainedModel",
    "TransformerConfig",
    "WalkForwardConfig",
    "WindowDataset",
    "assign_groups",
    "balanced_accuracy_null_se",
    "build_classifier",
    "build_network",
    "chronological_split",
    "classification_metrics",
    "compare_models",
    "complete_windows",
    "deterministic",
    "evaluate",
    "feature_matrix",
    "fit_network",
    "forward_sign_labels",
    "make_labels",
    "make_split",
    "network_config",
    "rich_progress",
    "seed_everything",
    "select_device",
    "summarise_comparison",
    "train_model",
    "triple_barrier_labels",
    "walk_forward",
]
