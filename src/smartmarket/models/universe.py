"""Universe training: every symbol's windows pooled into one model, split and purged by timestamp.

Each symbol keeps its own rows (its feature matrix, its labels, windows that never cross into another symbol);
the matrices are stacked and a sample is a (symbol, bar) pair. Every sample gets a place on one shared
*timeline* — the sorted distinct candle timestamps of all symbols — and its label window's end ``t1`` is mapped
onto the same timeline. :mod:`smartmarket.models.splits` then cuts train / validation / test periods on that
timeline, so purging and the embargo hold across symbols: a fold's training never contains a sample of *any*
symbol whose label window reaches the first evaluated timestamp, and the embargo is counted in timeline steps.

Normalisation: model inputs are scale-free (``features.scale_free``: returns, ratios, distances in ATR or
volatility units, z-scores, ranks), so one symbol's inputs are comparable with another's without a per-symbol
scaler and without its identity; the models' own scalers are fitted on the pooled training rows only. The model
never sees a symbol id, so it predicts on any symbol, stored in the universe or not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.core.errors import ConfigError
from smartmarket.models.datasets import assign_groups, complete_windows
from smartmarket.models.labels import LabelConfig, LabelSet, make_labels
from smartmarket.models.metrics import class_frequencies, classification_metrics
from smartmarket.models.pipeline import (
    TrainedModel,
    _aligned_inputs,
    _fit_and_measure,
    build_classifier,
    predict_dataset,
)
from smartmarket.models.splits import Split, WalkForwardConfig, chronological_split, walk_forward
from smartmarket.models.training import ProgressCallback, TrainConfig


@dataclass(frozen=True)
class PooledData:
    """Several symbols' rows stacked: values, labels (``t1`` as a row index), timeline positions per row."""

    symbols: tuple[str, ...]
    values: np.ndarray
    columns: tuple[str, ...]
    candles: pd.DataFrame  # stacked candles (``ts`` etc.), row by row with ``values``
    labels: LabelSet  # ``t1``: row index of the label end in the stacked matrix, -1 = no label
    symbol_of_row: np.ndarray  # index into ``symbols``
    timeline: np.ndarray  # sorted distinct timestamps of every symbol
    position: np.ndarray  # per row: its ts's place on the timeline
    t1_position: np.ndarray  # per row: the timeline place of its label end, -1 = no label
    offsets: np.ndarray  # first row of each symbol, plus the total

    def rows_of(self, symbol: str) -> slice:
        i = self.symbols.index(symbol)
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def eligible(self, context: int) -> np.ndarray:
        """Complete windows of ``context`` rows, computed per symbol (no window spans two symbols)."""
        parts = [complete_windows(self.values[self.rows_of(s)], context) for s in self.symbols]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def pool(markets: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], label_config: LabelConfig) -> PooledData:
    """Stack ``{symbol: (model features, candles)}`` (each aligned row by row; the same feature columns)."""
    if len(markets) < 2:
        raise ConfigError("pooling needs at least two symbols", hint="pass two or more with -s S1,S2 or --universe all")
    symbols = tuple(markets)
    values_parts, candle_parts, y, t1, exits, owner = [], [], [], [], [], []
    columns: tuple[str, ...] | None = None
    offsets = [0]
    for i, symbol in enumerate(symbols):
        features, candles = markets[symbol]
        values, cols = _aligned_inputs(features, candles)
        if columns is None:
            columns = cols
        elif cols != columns:
            raise ConfigError(
                f"{symbol} has feature columns {cols}, the others {columns}",
                hint="compute every symbol's features with the same feature set",
            )
        labels = make_labels(candles, label_config)
        values_parts.append(values)
        candle_parts.append(candles[["ts", "open", "high", "low", "close", "volume"]])
        y.append(labels.y)
        t1.append(np.where(labels.t1 >= 0, labels.t1 + offsets[-1], -1))
        exits.append(labels.exit)
        owner.append(np.full(len(values), i, dtype=np.int64))
        offsets.append(offsets[-1] + len(values))
    stacked = pd.concat(candle_parts, ignore_index=True)
    ts = stacked["ts"].to_numpy(dtype=np.int64)
    timeline = np.unique(ts)
    position = np.searchsorted(timeline, ts)
    t1_rows = np.concatenate(t1).astype(np.int64)
    t1_position = np.where(t1_rows >= 0, position[np.maximum(t1_rows, 0)], -1)
    assert columns is not None
    return PooledData(
        symbols=symbols,
        values=np.concatenate(values_parts),
        columns=columns,
        candles=stacked,
        labels=LabelSet(np.concatenate(y), t1_rows, np.concatenate(exits)),
        symbol_of_row=np.concatenate(owner),
        timeline=timeline,
        position=position,
        t1_position=t1_position,
        offsets=np.asarray(offsets, dtype=np.int64),
    )


def pooled_split(
    data: PooledData,
    context: int,
    *,
    validation: float = 0.15,
    test: float = 0.15,
    embargo: int = 0,
) -> Split:
    """One chronological split of the pooled samples by timestamp (purged and embargoed across symbols)."""
    return chronological_split(
        data.t1_position, validation=validation, test=test, embargo=embargo,
        eligible=data.eligible(context), positions=data.position,
    )  # fmt: skip


def pooled_walk_forward(data: PooledData, context: int, config: WalkForwardConfig) -> list[Split]:
    """Walk-forward folds on the shared timeline (periods and embargo in timeline steps)."""
    return walk_forward(data.t1_position, config, eligible=data.eligible(context), positions=data.position)


def restrict(split: Split, keep: np.ndarray) -> Split:
    """The same periods with only the samples where ``keep`` (a per-row mask) holds: one symbol's share."""
    return Split(
        split.fold, split.train[keep[split.train]], split.validation[keep[split.validation]],
        split.test[keep[split.test]], split.train_period, split.validation_period, split.test_period, split.embargo,
    )  # fmt: skip


def train_pooled(
    kind: str,
    data: PooledData,
    *,
    timeframe: str = "",
    feature_set: str = "custom",
    label_config: LabelConfig | None = None,
    preset: str = "small",
    overrides: Mapping[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    split: Split | None = None,
    validation: float = 0.15,
    test: float = 0.15,
    embargo: int | None = None,
    seed: int = 0,
    group_patterns: Mapping[str, Sequence[str]] | None = None,
    progress: ProgressCallback | None = None,
    name: str = "UNIVERSE",
) -> TrainedModel:
    """One model on every symbol's samples; metrics pooled, and per symbol under ``metrics["per_symbol"]``."""
    label_config = label_config or LabelConfig()
    groups = assign_groups(data.columns, group_patterns)
    classifier = build_classifier(
        kind, len(data.columns), groups, preset=preset, overrides=overrides, train_config=train_config,
        progress=progress, seed=seed,
    )  # fmt: skip
    if split is None:
        gap = label_config.horizon if embargo is None else embargo
        split = pooled_split(data, classifier.context, validation=validation, test=test, embargo=gap)
    model = _fit_and_measure(
        kind, classifier, split, data.values, data.columns, groups, data.labels, label_config, data.candles,
        symbol=name, timeframe=timeframe, feature_set=feature_set, seed=seed, timeline=data.timeline,
    )  # fmt: skip
    model.symbols = data.symbols
    model.metrics["per_symbol"] = per_symbol_metrics(model, data, split)  # type: ignore[assignment]
    ts = data.candles["ts"].to_numpy()
    model.data.update(
        first_ts=int(ts.min()), last_ts=int(ts.max()), symbols=list(data.symbols),
        rows_per_symbol={s: int(data.offsets[i + 1] - data.offsets[i]) for i, s in enumerate(data.symbols)},
        train_samples_per_symbol={s: int((data.symbol_of_row[split.train] == i).sum())
                                  for i, s in enumerate(data.symbols)},
    )  # fmt: skip
    return model


def per_symbol_metrics(model: TrainedModel, data: PooledData, split: Split) -> dict[str, dict[str, float]]:
    """Test metrics of ``model`` on each symbol's test samples (base rates: that symbol's training labels)."""
    from smartmarket.models.datasets import WindowDataset

    out: dict[str, dict[str, float]] = {}
    for i, symbol in enumerate(data.symbols):
        mine = data.symbol_of_row == i
        test = split.test[mine[split.test]]
        train = split.train[mine[split.train]]
        if test.size == 0 or train.size == 0:
            continue
        y = data.labels.y[test].astype(np.int64)
        rates = class_frequencies(data.labels.y[train].astype(np.int64), model.classifier.n_classes)
        ds = WindowDataset(data.values, test, y, model.context)
        out[symbol] = classification_metrics(
            y, predict_dataset(model.classifier, ds), rates, horizon=model.label_config.horizon
        )
    return out


def compare_pooled(
    kinds: Sequence[str],
    data: PooledData,
    config: WalkForwardConfig,
    *,
    label_config: LabelConfig,
    seed: int = 0,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Per-symbol vs pooled training on identical folds and test samples.

    One row per (fold, kind, scheme, symbol) with the test metrics on that symbol's test samples, ``scheme`` =
    ``per_symbol`` (trained on that symbol's training samples only) or ``pooled`` (on every symbol's). Both see
    the same timeline periods, purging and embargo; ``baseline_log_loss`` is the symbol's training base rate.
    """
    overrides = overrides or {}
    groups = assign_groups(data.columns)

    def fresh(kind: str) -> Any:
        return build_classifier(kind, len(data.columns), groups, overrides=overrides.get(kind), seed=seed)

    context = max(fresh(k).context for k in kinds)
    folds = pooled_walk_forward(data, context, config)
    rows: list[dict[str, Any]] = []
    for split in folds:
        if split.train.size == 0 or split.test.size == 0:
            continue
        for kind in kinds:
            pooled = _fit_and_measure(
                kind, fresh(kind), split, data.values, data.columns, groups, data.labels, label_config,
                data.candles, symbol="", timeframe="", feature_set="", seed=seed, timeline=data.timeline,
            )  # fmt: skip
            for symbol, metrics in per_symbol_metrics(pooled, data, split).items():
                rows.append(_row(split, data, kind, "pooled", symbol, metrics))
            for i, symbol in enumerate(data.symbols):
                own = restrict(split, data.symbol_of_row == i)
                if own.train.size == 0 or own.test.size == 0:
                    continue
                alone = _fit_and_measure(
                    kind, fresh(kind), own, data.values, data.columns, groups, data.labels, label_config,
                    data.candles, symbol=symbol, timeframe="", feature_set="", seed=seed, timeline=data.timeline,
                )  # fmt: skip
                rows.append(_row(split, data, kind, "per_symbol", symbol, alone.metrics["test"]))
    return pd.DataFrame(rows)


def _row(
    split: Split, data: PooledData, kind: str, scheme: str, symbol: str, metrics: Mapping[str, float]
) -> dict[str, Any]:
    i = data.symbols.index(symbol)
    mine = data.symbol_of_row == i
    return {
        "fold": split.fold,
        "kind": kind,
        "scheme": scheme,
        "symbol": symbol,
        "n_train": int(split.train.size if scheme == "pooled" else mine[split.train].sum()),
        "test_first_ts": int(data.timeline[split.test_period[0]]),
        "test_last_ts": int(data.timeline[split.test_period[1] - 1]),
        **{k: float(v) for k, v in metrics.items()},
    }


__all__ = [
    "PooledData",
    "compare_pooled",
    "per_symbol_metrics",
    "pool",
    "pooled_split",
    "pooled_walk_forward",
    "restrict",
    "train_pooled",
]
