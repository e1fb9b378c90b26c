"""Universe training: pooled samples are split and purged by timestamp across symbols; normaliser statistics
see training windows only; cross-sectional ranks use same-timestamp, closed data only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import ConfigError
from smartmarket.features.cross_section import cross_section_columns, cross_section_ranks
from smartmarket.models.datasets import WindowDataset, training_statistics
from smartmarket.models.labels import LabelConfig
from smartmarket.models.pipeline import build_classifier
from smartmarket.models.splits import WalkForwardConfig
from smartmarket.models.universe import PooledData, pool, pooled_split, pooled_walk_forward, train_pooled

HOUR = 3_600_000
LABELS = LabelConfig(horizon=6, scale_window=5)


def market(ts: np.ndarray, seed: int, level: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random-walk candles at the given open times and two scale-free features (returns), aligned."""
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0, 0.01, len(ts))))
    open_ = np.concatenate([[close[0]], close[:-1]])
    wiggle = np.abs(rng.normal(0, 0.004, len(ts)))
    candles = pd.DataFrame(
        {"ts": ts, "open": open_, "high": np.maximum(open_, close) * (1 + wiggle),
         "low": np.minimum(open_, close) * (1 - wiggle), "close": close, "volume": rng.uniform(1, 2, len(ts))}
    )  # fmt: skip
    ret = np.log(candles["close"]).diff()
    features = pd.DataFrame({"ts": ts, "ret_1": ret, "ret_3": ret.rolling(3).sum()})
    return features, candles


@pytest.fixture(scope="module")
def pooled() -> PooledData:
    """Three symbols whose timestamps interleave (B sits half an hour off A), differ in length, and have gaps."""
    t0 = 1_700_000_000_000
    a = t0 + HOUR * np.arange(400)
    b = t0 + HOUR // 2 + HOUR * np.arange(120, 330)  # starts later, ends earlier, off the hour
    c = t0 + HOUR * np.concatenate([np.arange(50, 200), np.arange(260, 420)])  # a gap, runs past A
    return pool({"A": market(a, 1, 100.0), "B": market(b, 2, 0.5), "C": market(c, 3, 30_000.0)}, LABELS)


def label_end_ts(data: PooledData, rows: np.ndarray) -> np.ndarray:
    return data.candles["ts"].to_numpy()[data.labels.t1[rows]]


def sample_ts(data: PooledData, rows: np.ndarray) -> np.ndarray:
    return data.candles["ts"].to_numpy()[rows]


def test_pooled_rows_keep_each_symbol_and_map_label_ends_onto_the_shared_timeline(pooled: PooledData) -> None:
    assert pooled.symbols == ("A", "B", "C")
    assert list(np.diff(pooled.offsets)) == [400, 210, 310]
    labelled = np.flatnonzero(pooled.labels.t1 >= 0)
    # a label ends inside its own symbol's rows, later than the sample, and the timeline position agrees
    assert (pooled.symbol_of_row[pooled.labels.t1[labelled]] == pooled.symbol_of_row[labelled]).all()
    assert (label_end_ts(pooled, labelled) > sample_ts(pooled, labelled)).all()
    assert (pooled.timeline[pooled.t1_position[labelled]] == label_end_ts(pooled, labelled)).all()
    # no window crosses from one symbol into the next: each symbol's first rows are not eligible
    eligible = pooled.eligible(5)
    for start in pooled.offsets[:-1]:
        assert not eligible[start : start + 4].any()


def check_fold(data: PooledData, split: object) -> None:
    train, validation, test = split.train, split.validation, split.test  # type: ignore[attr-defined]
    first_evaluated = data.timeline[
        split.validation_period[0] if validation.size else split.test_period[0]  # type: ignore[attr-defined]
    ]
    assert train.size and test.size
    # the claim: no training sample of ANY symbol has a label window reaching the first evaluated timestamp
    assert label_end_ts(data, train).max() < first_evaluated
    evaluated = np.concatenate([validation, test])
    assert label_end_ts(data, train).max() < sample_ts(data, evaluated).min()
    if validation.size:
        assert label_end_ts(data, validation).max() < data.timeline[split.test_period[0]]  # type: ignore[attr-defined]
        assert sample_ts(data, validation).max() < sample_ts(data, test).min()
    # the embargo (in timeline steps) holds no sample of any symbol
    gap = data.position[evaluated].min() - data.position[train].max()
    assert gap > split.embargo  # type: ignore[attr-defined]
    # the samples really are pooled across symbols
    assert len(set(data.symbol_of_row[train].tolist())) >= 2


def test_walk_forward_on_pooled_samples_purges_every_symbol_by_timestamp(pooled: PooledData) -> None:
    folds = pooled_walk_forward(pooled, 5, WalkForwardConfig(train=150, validation=40, test=40, embargo=6))
    assert len(folds) >= 3
    for split in folds:
        check_fold(pooled, split)
    # folds move forward in time: each test period starts after the previous one's
    starts = [pooled.timeline[s.test_period[0]] for s in folds]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


def test_chronological_pooled_split_purges_by_timestamp_and_the_naive_split_would_leak(pooled: PooledData) -> None:
    split = pooled_split(pooled, 5, validation=0.15, test=0.15, embargo=6)
    check_fold(pooled, split)
    # the same cut made per row index instead (a stacked matrix split by position) would put a later symbol's
    # early rows in "test" and another symbol's later rows in "train": exactly what the timeline prevents
    cut = int(0.7 * len(pooled.values))
    naive_train = np.arange(cut)[pooled.labels.t1[:cut] >= 0]
    assert label_end_ts(pooled, naive_train).max() > sample_ts(pooled, np.arange(cut, len(pooled.values))).min()


def test_a_pooled_model_trains_and_reports_each_symbol(pooled: PooledData) -> None:
    model = train_pooled("logreg", pooled, timeframe="1h", label_config=LABELS, name="UNIVERSE")
    assert model.symbols == ("A", "B", "C") and model.symbol == "UNIVERSE"
    assert model.metadata()["symbols"] == ["A", "B", "C"]
    assert set(model.metrics["per_symbol"]) <= {"A", "B", "C"} and model.metrics["per_symbol"]
    ps: dict[str, dict[str, float]] = model.metrics["per_symbol"]  # type: ignore[assignment]
    assert sum(m["n"] for m in ps.values()) == model.metrics["test"]["n"]
    test_ts = model.split["test_ts"]
    assert test_ts[0] > model.split["train_ts"][1]
    # prediction needs no identity: any frame with the feature columns will do
    features, _ = market(1_800_000_000_000 + HOUR * np.arange(50), 9, 7.0)
    proba = model.predict_frame(features).dropna()
    assert len(proba) > 40 and np.allclose(proba.sum(axis=1), 1.0)


def test_normaliser_statistics_cover_training_windows_only() -> None:
    """Stacked symbols: rows between two training runs (another symbol's later rows) stay out of the statistics."""
    values = np.zeros((30, 1), dtype=np.float32)
    values[10:20] = 1000.0  # e.g. a later symbol's evaluated rows, between the training samples
    samples = np.concatenate([np.arange(4, 10), np.arange(24, 30)])
    mean, std = training_statistics(WindowDataset(values, samples, np.zeros(samples.size), context=3))
    assert mean[0] == 0.0 and std[0] == 1.0  # 1000s never seen (std 0 → 1)
    # one symbol's contiguous samples: every row from the first window's start to the last sample, as before
    contiguous = training_statistics(WindowDataset(values, np.arange(8, 20), np.zeros(12), context=3))
    assert contiguous[0][0] == pytest.approx(values[6:20, 0].mean())


def frames(n: int = 80) -> dict[str, pd.DataFrame]:
    t0 = 1_700_000_000_000
    out = {}
    for i, (name, level) in enumerate((("X", 10.0), ("Y", 0.01), ("Z", 5_000.0))):
        _, candles = market(t0 + HOUR * np.arange(n), 10 + i, level)
        out[name] = candles
    out["Z"] = out["Z"].drop(index=[40, 41]).reset_index(drop=True)  # Z missing at two timestamps
    return out


def test_cross_sectional_ranks_use_same_timestamp_closed_data_only() -> None:
    window = 5
    full = frames()
    ranks = cross_section_ranks(full, window)
    ret_col, vol_col = cross_section_columns(window)
    # shift test: cutting every symbol's future (after ts_cut) and altering it changes no earlier rank
    ts_cut = int(full["X"]["ts"].iloc[50])
    altered = {}
    for name, frame in full.items():
        past = frame[frame["ts"] <= ts_cut].copy()
        future = frame[frame["ts"] > ts_cut].copy()
        future[["open", "high", "low", "close"]] *= np.linspace(0.2, 5.0, len(future))[:, None]
        altered[name] = pd.concat([past, future], ignore_index=True)
    again = cross_section_ranks(altered, window)
    truncated = cross_section_ranks({k: v[v["ts"] <= ts_cut].reset_index(drop=True) for k, v in full.items()}, window)
    for name in full:
        before = ranks[name][ranks[name]["ts"] <= ts_cut]
        pd.testing.assert_frame_equal(before, again[name][again[name]["ts"] <= ts_cut])
        pd.testing.assert_frame_equal(before.reset_index(drop=True), truncated[name])
    # a hand check at one timestamp: the ranks of the three window returns
    row = 30
    rets = {k: np.log(v["close"].iloc[row] / v["close"].iloc[row - window]) for k, v in full.items() if k != "Z"}
    z_row = int(np.flatnonzero(full["Z"]["ts"] == full["X"]["ts"].iloc[row])[0])
    rets["Z"] = np.log(full["Z"]["close"].iloc[z_row] / full["Z"]["close"].iloc[z_row - window])
    order = sorted(rets, key=rets.get)  # type: ignore[arg-type]
    for position, name in enumerate(order):
        at = ranks[name][ranks[name]["ts"] == full["X"]["ts"].iloc[row]]
        assert at[ret_col].item() == pytest.approx(position / 2)
        assert 0.0 <= at[vol_col].item() <= 1.0
    # Z has no candle at X's rows 40 and 41: X and Y are ranked between themselves there (0 and 1)
    for row in (40, 41):
        pair = sorted(float(ranks[n][ret_col].iloc[row]) for n in ("X", "Y"))
        assert pair == [0.0, 1.0]
    # warm-up: no rank before a full window
    assert ranks["X"][ret_col].iloc[:window].isna().all()


def test_cross_sectional_ranks_are_scale_free_model_inputs() -> None:
    from smartmarket.features.scale_free import check_model_inputs

    full = frames()
    ranks = cross_section_ranks(full, 5)
    scaled = dict(full)
    scaled["Y"] = full["Y"].assign(**{c: full["Y"][c] * 10 for c in ("open", "high", "low", "close")})
    scaled["Y"]["volume"] *= 7
    again = cross_section_ranks(scaled, 5)
    for name in full:
        pd.testing.assert_frame_equal(ranks[name], again[name])
    check_model_inputs(list(cross_section_columns(5)))  # accepted as model inputs (raises otherwise)


def test_pooling_mistakes_are_one_line_config_errors() -> None:
    """Direct callers of the library get the project's one-line errors with the fix, not a bare ValueError."""
    ts = 1_700_000_000_000 + HOUR * np.arange(50)
    with pytest.raises(ConfigError, match="at least two symbols") as one:
        pool({"A": market(ts, 1, 100.0)}, LABELS)
    assert one.value.hint is not None and "--universe all" in one.value.hint
    features_b, candles_b = market(ts, 2, 10.0)
    with pytest.raises(ConfigError, match="B has feature columns"):
        pool({"A": market(ts, 1, 100.0), "B": (features_b.drop(columns="ret_3"), candles_b)}, LABELS)
    with pytest.raises(ConfigError, match="unknown model kind 'xgboost'") as kind:
        build_classifier("xgboost", 2, {})
    assert kind.value.hint is not None and "lightgbm" in kind.value.hint
