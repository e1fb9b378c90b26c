"""The training pipeline: features + candles → labels → purged split → a fitted model with honest metrics.

``train_model`` trains one model of any kind (``transformer``, ``cnn_lstm``, ``logreg``, ``lightgbm``,
``majority``) on one chronological, purged, embargoed split and measures it on validation and test samples it
never trained on. ``evaluate`` measures a trained model on other data. ``compare_models`` runs several kinds
over the same walk-forward folds on *identical* test samples (eligibility uses the longest context among them),
which is the only fair way to say one model beats another.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.core.errors import ConfigError
from smartmarket.features.scale_free import check_model_inputs
from smartmarket.models.baselines import BASELINE_KINDS, LightGBMBaseline, LogisticBaseline, MajorityBaseline
from smartmarket.models.datasets import WindowDataset, assign_groups, complete_windows, feature_matrix
from smartmarket.models.device import seed_everything
from smartmarket.models.labels import CLASS_NAMES, LabelConfig, LabelSet, make_labels
from smartmarket.models.metrics import class_frequencies, classification_metrics
from smartmarket.models.networks import NETWORK_KINDS, build_network, network_config
from smartmarket.models.skill import Skill, skill_of
from smartmarket.models.splits import Split, WalkForwardConfig, chronological_split, walk_forward
from smartmarket.models.training import Classifier, NetworkClassifier, ProgressCallback, TrainConfig

MODEL_KINDS: tuple[str, ...] = NETWORK_KINDS + BASELINE_KINDS
STAGES: tuple[str, ...] = ("candidate", "production", "retired")
TRAIN_METRIC_SAMPLES = 2000


def build_classifier(
    kind: str,
    n_features: int,
    groups: Mapping[str, Sequence[int]],
    *,
    preset: str = "small",
    overrides: Mapping[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    progress: ProgressCallback | None = None,
    seed: int = 0,
) -> Classifier:
    """A fresh, untrained model of ``kind``; ``overrides`` change preset fields (networks) or constructor args."""
    overrides = dict(overrides or {})
    seed_everything(seed)  # network initial weights depend on the seed only
    if kind in NETWORK_KINDS:
        config = network_config(kind, preset, **overrides)
        module = build_network(kind, config, n_features, groups)
        return NetworkClassifier(kind, module, replace(train_config or TrainConfig(), seed=seed), progress)
    if kind == "logreg":
        return LogisticBaseline(**overrides)
    if kind == "lightgbm":
        return LightGBMBaseline(**{"seed": seed, **overrides})
    if kind == "majority":
        return MajorityBaseline()
    raise ConfigError(f"unknown model kind {kind!r}", hint=f"use one of {', '.join(MODEL_KINDS)}")


def predict_dataset(classifier: Classifier, dataset: WindowDataset, chunk: int = 2048) -> np.ndarray:
    """``predict_proba`` over a dataset in chunks (windows are materialised one chunk at a time)."""
    ds = dataset.with_context(classifier.context)
    starts = range(0, len(ds), chunk)
    parts = [classifier.predict_proba(ds.windows(np.arange(s, min(s + chunk, len(ds))))) for s in starts]
    return np.concatenate(parts) if parts else np.zeros((0, classifier.n_classes))


def _aligned_inputs(
    features: pd.DataFrame, candles: pd.DataFrame, *, guard: bool = True
) -> tuple[np.ndarray, tuple[str, ...]]:
    if guard:
        check_model_inputs([str(c) for c in features.columns])
    if len(features) != len(candles):
        raise ValueError(f"features ({len(features)} rows) and candles ({len(candles)} rows) must align row by row")
    if "ts" in features.columns and not np.array_equal(features["ts"].to_numpy(), candles["ts"].to_numpy()):
        raise ValueError("features.ts differs from candles.ts: the frames are not aligned")
    return feature_matrix(features)


def code_version() -> dict[str, str | None]:
    """``smartmarket.__version__`` and, when the package sits in a git work tree, the commit (+ ``-dirty``)."""
    from smartmarket import __version__

    commit: str | None = None
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", str(here)], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        commit = head + ("-dirty" if dirty else "") if head else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"version": __version__, "git_commit": commit}


def data_checksum(candles: pd.DataFrame, values: np.ndarray) -> str:
    digest = hashlib.sha256()
    for column in ("ts", "open", "high", "low", "close", "volume"):
        digest.update(np.ascontiguousarray(candles[column].to_numpy()).tobytes())
    digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()[:16]


def _ts_period(ts: np.ndarray, period: tuple[int, int]) -> list[int | None]:
    start, stop = period
    if stop <= start:
        return [None, None]
    return [int(ts[start]), int(ts[stop - 1])]


@dataclass
class TrainedModel:
    """A fitted classifier with everything needed to use it again and to judge it."""

    kind: str
    classifier: Classifier
    feature_columns: tuple[str, ...]
    groups: dict[str, tuple[int, ...]]
    label_config: LabelConfig
    symbol: str = ""
    timeframe: str = ""
    feature_set: str = "custom"
    symbols: tuple[str, ...] = ()
    """The universe a pooled model was trained on (empty for a one-symbol model); never needed to predict."""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 0
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))
    model_id: str | None = None
    stage: str = "candidate"
    code_version: dict[str, str | None] = field(default_factory=dict)

    @property
    def context(self) -> int:
        return self.classifier.context

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        return self.classifier.predict_proba(windows)

    @property
    def skill(self) -> Skill | None:
        """Validation log-loss against the base-rate baseline (None for models that did not record it)."""
        return skill_of(self.metrics)

    @property
    def base_rates(self) -> np.ndarray | None:
        """The training class frequencies (``metrics.class_frequencies``), when the split recorded them."""
        counts = self.split.get("class_counts_train")
        if not counts:
            return None
        return class_frequencies(np.repeat(np.arange(len(counts)), counts), len(counts))

    def _values(self, features: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.feature_columns if c not in features.columns]
        if missing:
            raise ValueError(f"features lack the model's columns {missing}")
        return features[list(self.feature_columns)].to_numpy(dtype=np.float32)

    def predict_frame(self, features: pd.DataFrame) -> pd.DataFrame:
        """Probabilities ``p_down, p_flat, p_up`` for every bar with a complete window (NaN elsewhere)."""
        values = self._values(features)
        bars = np.flatnonzero(complete_windows(values, self.context))
        out = np.full((len(values), self.classifier.n_classes), np.nan)
        if bars.size:
            ds = WindowDataset(values, bars, np.zeros(bars.size, dtype=np.int64), self.context)
            out[bars] = predict_dataset(self.classifier, ds)
        return pd.DataFrame(out, columns=[f"p_{c}" for c in CLASS_NAMES], index=features.index)

    def predict_latest(self, features: pd.DataFrame) -> np.ndarray:
        """Probabilities for the last bar (needs its window complete)."""
        values = self._values(features)
        if len(values) < self.context or not complete_windows(values[-self.context :], self.context)[-1]:
            raise ValueError(f"the last {self.context} rows must be present and finite")
        return self.classifier.predict_proba(values[None, -self.context :, :])[0]

    def metadata(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "kind": self.kind,
            "symbol": self.symbol,
            "symbols": list(self.symbols),
            "timeframe": self.timeframe,
            "stage": self.stage,
            "created": self.created,
            "context": self.context,
            "n_classes": self.classifier.n_classes,
            "classes": list(CLASS_NAMES),
            "hyperparameters": self.classifier.hyperparameters(),
            "feature_set": self.feature_set,
            "feature_columns": list(self.feature_columns),
            "feature_groups": {g: list(idx) for g, idx in self.groups.items()},
            "label_config": self.label_config.to_dict(),
            "data": self.data,
            "split": self.split,
            "metrics": self.metrics,
            "no_skill": None if self.skill is None else self.skill.no_skill,
            "skill": None if self.skill is None else self.skill.to_dict(),
            "history": self.history,
            "seed": self.seed,
            "code_version": self.code_version,
        }


def train_model(
    kind: str,
    features: pd.DataFrame,
    candles: pd.DataFrame,
    *,
    symbol: str = "",
    timeframe: str = "",
    feature_set: str = "custom",
    preset: str = "small",
    overrides: Mapping[str, Any] | None = None,
    label_config: LabelConfig | None = None,
    split: Split | None = None,
    validation: float = 0.15,
    test: float = 0.15,
    embargo: int | None = None,
    epochs: int | None = None,
    train_config: TrainConfig | None = None,
    seed: int = 0,
    group_patterns: Mapping[str, Sequence[str]] | None = None,
    sample_context: int | None = None,
    progress: ProgressCallback | None = None,
) -> TrainedModel:
    """Train one model and measure it out of sample.

    ``features`` is aligned row by row with ``candles`` (causal features; a ``ts`` column is checked and left
    out); every column must be scale-free (``ConfigError`` naming the others: select them with
    ``features.scale_free.model_inputs``). Without an explicit ``split``, the labelled span is cut
    chronologically into train / validation / test fractions, purged, with an embargo of
    ``label_config.horizon`` bars unless given. ``sample_context`` (≥ the model's context) restricts samples to
    bars with that many complete rows, so models of different contexts can be compared on the same samples.
    """
    label_config = label_config or LabelConfig()
    values, columns = _aligned_inputs(features, candles)
    groups = assign_groups(columns, group_patterns)
    labels = make_labels(candles, label_config)
    config = train_config or TrainConfig()
    if epochs is not None:
        config = replace(config, epochs=epochs)
    classifier = build_classifier(
        kind, len(columns), groups, preset=preset, overrides=overrides, train_config=config, progress=progress,
        seed=seed,
    )  # fmt: skip
    eligible = complete_windows(values, max(classifier.context, sample_context or 0))
    if split is None:
        gap = label_config.horizon if embargo is None else embargo
        split = chronological_split(labels.t1, validation=validation, test=test, embargo=gap, eligible=eligible)
    return _fit_and_measure(
        kind, classifier, split, values, columns, groups, labels, label_config, candles,
        symbol=symbol, timeframe=timeframe, feature_set=feature_set, seed=seed,
    )  # fmt: skip


def _fit_and_measure(
    kind: str,
    classifier: Classifier,
    split: Split,
    values: np.ndarray,
    columns: tuple[str, ...],
    groups: dict[str, tuple[int, ...]],
    labels: LabelSet,
    label_config: LabelConfig,
    candles: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    feature_set: str,
    seed: int,
    timeline: np.ndarray | None = None,
) -> TrainedModel:
    """Fit on ``split.train``, measure on validation/test. ``timeline``: the timestamps the split's periods index
    (pooled symbols); by default the candles' own ``ts`` (one symbol, periods in bars)."""
    ready = complete_windows(values, classifier.context)
    for name, bars in (("train", split.train), ("validation", split.validation), ("test", split.test)):
        if bars.size and not (ready[bars].all() and labels.valid[bars].all()):
            raise ValueError(f"{name} samples need a label and a complete window of {classifier.context} rows")
    if split.train.size == 0:
        raise ValueError("the split has no training sample")

    def dataset(bars: np.ndarray) -> WindowDataset:
        return WindowDataset(values, bars, labels.y[bars].astype(np.int64), classifier.context)

    train, val, test = dataset(split.train), dataset(split.validation), dataset(split.test)
    classifier.fit(train, val if len(val) else None)
    rates = class_frequencies(train.labels, classifier.n_classes)
    h = label_config.horizon  # overlapping outcomes: the skill test's Newey-West lags cover them
    metrics = {name: classification_metrics(ds.labels, predict_dataset(classifier, ds), rates, horizon=h)
               for name, ds in (("validation", val), ("test", test)) if len(ds)}  # fmt: skip
    # Fit check on the most recent training samples only (bounded cost for big models); not a skill measure.
    recent = train.subset(np.arange(max(0, len(train) - TRAIN_METRIC_SAMPLES), len(train)))
    metrics["train"] = classification_metrics(recent.labels, predict_dataset(classifier, recent), rates)

    ts = candles["ts"].to_numpy()
    periods_ts = ts if timeline is None else timeline
    history = []
    fit_result = getattr(classifier, "fit_result", None)
    if fit_result is not None:
        history = [vars(r).copy() for r in fit_result.history]
    return TrainedModel(
        kind=kind,
        classifier=classifier,
        feature_columns=columns,
        groups=groups,
        label_config=label_config,
        symbol=symbol,
        timeframe=timeframe,
        feature_set=feature_set,
        metrics=metrics,
        split={
            **split.to_dict(),
            "train_ts": _ts_period(periods_ts, split.train_period),
            "validation_ts": _ts_period(periods_ts, split.validation_period),
            "test_ts": _ts_period(periods_ts, split.test_period),
            "class_counts_train": np.bincount(train.labels, minlength=classifier.n_classes).tolist(),
        },
        data={
            "rows": len(candles),
            "first_ts": int(ts[0]) if len(ts) else None,
            "last_ts": int(ts[-1]) if len(ts) else None,
            "checksum": data_checksum(candles, values),
        },
        history=history,
        seed=seed,
        code_version=code_version(),
    )


def evaluate(
    model: TrainedModel,
    features: pd.DataFrame,
    candles: pd.DataFrame,
    *,
    start_ts: int | None = None,
    end_ts: int | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on every labelled bar with a complete window and ``start_ts ≤ ts ≤ end_ts``.

    ``overlaps_training`` tells whether any evaluated sample lies at or before the end of the model's training
    period — such numbers are not out of sample.
    """
    _aligned_inputs(features, candles, guard=False)  # an old model keeps its recorded columns
    values = model._values(features)
    labels = make_labels(candles, model.label_config)
    ts = candles["ts"].to_numpy()
    keep = complete_windows(values, model.context) & labels.valid
    if start_ts is not None:
        keep &= ts >= start_ts
    if end_ts is not None:
        keep &= ts <= end_ts
    bars = np.flatnonzero(keep)
    ds = WindowDataset(values, bars, labels.y[bars].astype(np.int64), model.context)
    result: dict[str, Any] = classification_metrics(
        ds.labels, predict_dataset(model.classifier, ds), model.base_rates, horizon=model.label_config.horizon
    )
    train_end = (model.split.get("train_ts") or [None, None])[1]
    result["overlaps_training"] = bool(bars.size and train_end is not None and ts[bars[0]] <= train_end)
    result["first_ts"] = int(ts[bars[0]]) if bars.size else None
    result["last_ts"] = int(ts[bars[-1]]) if bars.size else None
    return result


def compare_models(
    kinds: Sequence[str],
    features: pd.DataFrame,
    candles: pd.DataFrame,
    walk: WalkForwardConfig,
    *,
    label_config: LabelConfig | None = None,
    preset: str = "small",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    train_config: TrainConfig | None = None,
    seed: int = 0,
    group_patterns: Mapping[str, Sequence[str]] | None = None,
    progress: ProgressCallback | None = None,
    fits: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """Walk-forward comparison: one row per (fold, kind) of test metrics, every kind on the same test samples.

    ``progress``: each network's epochs; ``fits(name, done, total)``: the (fold, kind) fits done so far."""
    label_config = label_config or LabelConfig()
    values, columns = _aligned_inputs(features, candles)
    groups = assign_groups(columns, group_patterns)
    labels = make_labels(candles, label_config)
    overrides = overrides or {}

    def fresh(kind: str) -> Classifier:
        return build_classifier(
            kind, len(columns), groups, preset=preset, overrides=overrides.get(kind),
            train_config=train_config, progress=progress, seed=seed,
        )  # fmt: skip

    context = max(fresh(kind).context for kind in kinds)
    folds = walk_forward(labels.t1, walk, eligible=complete_windows(values, context))
    rows = []
    ts = candles["ts"].to_numpy()
    usable = [split for split in folds if split.train.size and split.test.size]
    name, total = f"walk-forward fits ({len(usable)} folds x {len(kinds)} models)", len(usable) * len(kinds)
    if fits is not None:
        fits(name, 0, total)
    for split in usable:
        for kind in kinds:
            model = _fit_and_measure(
                kind, fresh(kind), split, values, columns, groups, labels, label_config, candles,
                symbol="", timeframe="", feature_set="", seed=seed,
            )  # fmt: skip
            rows.append(
                {
                    "fold": split.fold,
                    "kind": kind,
                    "n_train": int(split.train.size),
                    "test_first_ts": int(ts[split.test[0]]),
                    "test_last_ts": int(ts[split.test[-1]]),
                    **model.metrics["test"],
                }
            )
            if fits is not None:
                fits(name, len(rows), total)
    return pd.DataFrame(rows)


def summarise_comparison(
    results: pd.DataFrame, metrics: Sequence[str] = ("balanced_accuracy", "log_loss")
) -> pd.DataFrame:
    """Mean and standard error across folds per kind for the given metrics."""
    grouped = results.groupby("kind")[list(metrics)]
    mean: pd.DataFrame = grouped.mean().add_suffix("_mean")
    se = pd.DataFrame(grouped.std(ddof=1) / grouped.count().pow(0.5)).add_suffix("_se")
    return pd.concat([mean, se], axis=1).sort_index(axis=1)


__all__ = [
    "MODEL_KINDS",
    "STAGES",
    "TrainedModel",
    "build_classifier",
    "code_version",
    "compare_models",
    "data_checksum",
    "evaluate",
    "predict_dataset",
    "summarise_comparison",
    "train_model",
]
