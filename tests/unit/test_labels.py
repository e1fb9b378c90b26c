"""Triple-barrier and forward-sign labels on hand-built price paths, and on real candles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.models.labels import (
    DOWN,
    EXIT_DOWN,
    EXIT_NONE,
    EXIT_TIE,
    EXIT_TIME,
    EXIT_UP,
    FLAT,
    UP,
    LabelConfig,
    barrier_scale,
    forward_sign_labels,
    make_labels,
    triple_barrier_labels,
)

# Three quiet bars (high − low = 1, close 100) give ATR(2) = 1 at bar 2, so an entry at bar 2 has barriers
# 102 (take profit 2 × ATR) and 98 (stop 2 × ATR).
QUIET = [(100.5, 99.5, 100.0)] * 3
ENTRY = 2


def candles(rows: list[tuple[float, float, float]]) -> pd.DataFrame:
    high, low, close = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame(
        {"ts": np.arange(len(rows), dtype=np.int64) * 3_600_000, "open": open_, "high": high, "low": low,
         "close": close, "volume": np.ones(len(rows))}
    )  # fmt: skip


def config(**kw: object) -> LabelConfig:
    base: dict[str, object] = {"horizon": 3, "take_profit": 2.0, "stop_loss": 2.0, "scale": "atr", "scale_window": 2}
    base.update(kw)
    return LabelConfig(**base)  # type: ignore[arg-type]


def padded(path: list[tuple[float, float, float]], tail: int = 4) -> pd.DataFrame:
    """QUIET, then the path, then quiet bars so the entry's window is complete."""
    last_close = path[-1][2]
    return candles(QUIET + path + [(last_close + 0.1, last_close - 0.1, last_close)] * tail)


def test_scale_is_the_trailing_atr() -> None:
    frame = padded([(100.5, 99.5, 100.0)])
    np.testing.assert_allclose(barrier_scale(frame, "atr", 2)[ENTRY], 1.0)
    assert np.isnan(barrier_scale(frame, "atr", 2)[0])  # warm-up: not enough bars yet


def test_take_profit_first_is_up_and_t1_is_the_touch() -> None:
    labels = triple_barrier_labels(padded([(101.0, 99.6, 100.5), (102.5, 100.0, 102.0), (102.0, 97.0, 98.0)]), config())
    assert labels.y[ENTRY] == UP
    assert labels.t1[ENTRY] == ENTRY + 2
    assert labels.exit[ENTRY] == EXIT_UP


def test_stop_first_is_down_even_if_take_profit_comes_later() -> None:
    labels = triple_barrier_labels(padded([(100.2, 97.9, 98.5), (105.0, 98.0, 104.0)]), config())
    assert labels.y[ENTRY] == DOWN
    assert labels.t1[ENTRY] == ENTRY + 1
    assert labels.exit[ENTRY] == EXIT_DOWN


def test_tie_in_one_bar_is_flat_by_default_and_down_when_asked() -> None:
    frame = padded([(103.0, 97.0, 100.0)])
    flat = triple_barrier_labels(frame, config())
    assert flat.y[ENTRY] == FLAT and flat.exit[ENTRY] == EXIT_TIE and flat.t1[ENTRY] == ENTRY + 1
    down = triple_barrier_labels(frame, config(tie="down"))
    assert down.y[ENTRY] == DOWN and down.t1[ENTRY] == ENTRY + 1


def test_time_barrier_is_flat_or_the_sign_of_the_return() -> None:
    path = [(100.8, 99.6, 100.5), (101.2, 100.1, 101.0), (101.5, 100.5, 101.0)]  # never reaches 102 or 98
    frame = padded(path)
    flat = triple_barrier_labels(frame, config())
    assert flat.y[ENTRY] == FLAT and flat.exit[ENTRY] == EXIT_TIME and flat.t1[ENTRY] == ENTRY + 3
    signed = triple_barrier_labels(frame, config(time_barrier="sign"))
    assert signed.y[ENTRY] == UP  # 100 → 101 at the time barrier
    small = triple_barrier_labels(frame, config(time_barrier="sign", min_return=0.02))
    assert small.y[ENTRY] == FLAT  # +1 % is below the 2 % threshold


def test_no_label_without_a_full_window_even_if_a_barrier_was_touched() -> None:
    frame = candles([*QUIET, (105.0, 99.9, 104.0)])  # bar 3 touches 102, but bar 2's window needs bars 3…5
    labels = triple_barrier_labels(frame, config())
    assert np.isnan(labels.y[ENTRY]) and labels.t1[ENTRY] == -1 and labels.exit[ENTRY] == EXIT_NONE
    assert np.isnan(labels.y[-3:]).all()


def test_warm_up_and_bad_bars_have_no_label() -> None:
    path = [(100.8, 99.6, 100.5), (np.nan, np.nan, np.nan), (101.5, 100.5, 101.0)]
    labels = triple_barrier_labels(padded(path), config())
    assert np.isnan(labels.y[0])  # ATR(2) undefined at bar 0
    assert np.isnan(labels.y[ENTRY])  # its window holds a non-finite bar


def test_forward_sign_labels() -> None:
    closes = [100.0, 101.0, 99.0, 99.0, 103.0]
    frame = candles([(c + 0.5, c - 0.5, c) for c in closes])
    labels = forward_sign_labels(frame, LabelConfig(method="forward_sign", horizon=2))
    np.testing.assert_array_equal(labels.y[:3], [DOWN, DOWN, UP])  # 100→99, 101→99, 99→103
    assert np.isnan(labels.y[3:]).all()
    np.testing.assert_array_equal(labels.t1[:3], [2, 3, 4])
    thresholded = forward_sign_labels(frame, LabelConfig(method="forward_sign", horizon=2, min_return=0.015))
    assert thresholded.y[0] == FLAT  # −1 % is inside ±1.5 %


def test_volatility_scale_is_rolling_std_of_log_returns_times_close() -> None:
    rng = np.random.default_rng(1)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 50)))
    frame = candles([(c * 1.001, c * 0.999, c) for c in closes])
    scale = barrier_scale(frame, "volatility", 10)
    expected = np.std(np.diff(np.log(closes[20:31])), ddof=1) * closes[30]
    np.testing.assert_allclose(scale[30], expected)


@pytest.mark.parametrize("method", ["triple_barrier", "forward_sign"])
def test_labels_never_look_past_their_window_on_real_candles(shared_data: Path, method: str) -> None:
    """Labels computed on a prefix of the data equal the full-data labels wherever the prefix holds the window."""
    frame = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz", nrows=4000)
    cfg = LabelConfig(method=method, horizon=24)  # type: ignore[arg-type]
    full = make_labels(frame, cfg)
    cut = 3000
    prefix = make_labels(frame.iloc[:cut].reset_index(drop=True), cfg)
    inside = np.arange(cut - cfg.horizon)
    np.testing.assert_array_equal(prefix.y[inside], full.y[inside])
    np.testing.assert_array_equal(prefix.t1[inside], full.t1[inside])
    assert np.isnan(prefix.y[cut - cfg.horizon :]).all()
    valid = full.valid
    assert valid.sum() > 3900 - 24 and (full.t1[valid] > np.flatnonzero(valid)).all()
    assert (full.t1[valid] - np.flatnonzero(valid) <= cfg.horizon).all()
    if method == "triple_barrier":
        assert len(np.unique(full.y[valid])) == 3  # real data touches both barriers and the time barrier
