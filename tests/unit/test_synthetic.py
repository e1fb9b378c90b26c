"""The synthetic market: consistent candles, reproducibility, regimes that show in the prices, stylised facts,
continuation of real data, and the ``generate`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from smartmarket.core.config import Settings
from smartmarket.core.errors import ConfigError, ValidationError
from smartmarket.core.frame import CANDLE_COLUMNS
from smartmarket.core.types import Timeframe
from smartmarket.data.synthetic import (
    DEFAULT_START_TS,
    MarketParams,
    Regime,
    extend_with_synthetic,
    generate_market,
    regime_labels,
    simulate_market,
)

LONG_ROWS = 400_000  # about nine months of 1m candles: enough segments of every regime


@pytest.fixture(scope="module")
def long_market() -> tuple[pd.DataFrame, np.ndarray]:
    market = simulate_market(LONG_ROWS, seed=11)
    return market.candles, market.regimes


def log_returns(frame: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(frame["close"].to_numpy()), prepend=np.log(frame["open"].iloc[0]))


def robust_sigma(returns: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(returns - np.median(returns))))


def autocorrelation(x: np.ndarray, lag: int) -> float:
    return float(np.corrcoef(x[:-lag], x[lag:])[0, 1])


@pytest.mark.parametrize("timeframe", [Timeframe.M1, Timeframe.M15, Timeframe.H1, Timeframe.D1, Timeframe.W1])
def test_candles_are_canonical_and_internally_consistent(timeframe: Timeframe) -> None:
    frame = generate_market(3000, timeframe=timeframe, seed=5, start_price=123.45)
    assert list(frame.columns) == list(CANDLE_COLUMNS)
    assert frame["ts"].dtype == np.int64
    assert all(frame[c].dtype == np.float64 for c in CANDLE_COLUMNS[1:])
    ts = frame["ts"].to_numpy()
    assert ts[0] == DEFAULT_START_TS
    assert (np.diff(ts) == timeframe.ms).all()
    o, h, lo, c, v = (frame[col].to_numpy() for col in ("open", "high", "low", "close", "volume"))
    assert np.isfinite(frame[list(CANDLE_COLUMNS[1:])].to_numpy()).all()
    assert o[0] == 123.45
    assert (o[1:] == c[:-1]).all()  # every open is exactly the previous close
    assert (h >= np.maximum(o, c)).all()
    assert (lo <= np.minimum(o, c)).all()
    assert (lo > 0).all()
    assert (v > 0).all()
    assert (h > lo).mean() > 0.99  # real bars have a range


def test_same_seed_same_market_other_seed_other_market() -> None:
    a = generate_market(5000, timeframe=Timeframe.H1, seed=42)
    b = generate_market(5000, timeframe=Timeframe.H1, seed=42)
    c = generate_market(5000, timeframe=Timeframe.H1, seed=43)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["close"], c["close"])


def test_zero_rows_is_an_empty_candle_frame() -> None:
    frame = generate_market(0)
    assert frame.empty and list(frame.columns) == list(CANDLE_COLUMNS)
    assert frame["ts"].dtype == np.int64


def test_bad_arguments_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="not aligned"):
        generate_market(10, timeframe=Timeframe.H1, start_ts=DEFAULT_START_TS + 1)
    with pytest.raises(ConfigError, match="positive"):
        generate_market(10, start_price=0.0)
    with pytest.raises(ConfigError):
        generate_market(-1)


def test_regime_labels_are_the_path_used_by_the_generator(long_market: tuple[pd.DataFrame, np.ndarray]) -> None:
    _, regimes = long_market
    labels = regime_labels(LONG_ROWS, seed=11)
    assert labels.shape == (LONG_ROWS,)
    assert (labels == regimes).all()
    assert set(np.unique(labels)) == {r.value for r in Regime}
    assert not (labels == regime_labels(LONG_ROWS, seed=12)).all()


def test_regime_segments_respect_the_minimum_length() -> None:
    labels = regime_labels(200_000, timeframe=Timeframe.H1, seed=3)
    change = np.flatnonzero(np.diff(labels)) + 1
    lengths = np.diff(change)  # whole segments only (the first and the last may be cut)
    assert len(lengths) > 100
    assert lengths.min() >= MarketParams().min_regime_bars


def test_regimes_show_in_prices(long_market: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, regimes = long_market
    r = log_returns(frame)
    mean_by_regime = {reg: r[regimes == reg].mean() for reg in Regime}
    assert mean_by_regime[Regime.TREND_UP] > 0 > mean_by_regime[Regime.TREND_DOWN]
    assert abs(mean_by_regime[Regime.RANGE]) < abs(mean_by_regime[Regime.TREND_UP])
    sigma = {reg: robust_sigma(r[regimes == reg]) for reg in Regime}
    assert sigma[Regime.VOLATILE] > 1.8 * sigma[Regime.RANGE]
    assert sigma[Regime.TREND_UP] > sigma[Regime.RANGE]


def test_stylised_facts_fat_tails_and_volatility_clusters(long_market: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, _ = long_market
    r = log_returns(frame)
    kurtosis = float(((r - r.mean()) ** 4).mean() / r.var() ** 2)
    assert kurtosis > 6  # a normal distribution has 3
    assert abs(autocorrelation(r, 1)) < 0.05  # returns barely predictable...
    assert autocorrelation(np.abs(r), 1) > 0.15  # ...their size is (volatility clusters)
    assert autocorrelation(np.abs(r), 60) > 0.05
    assert (np.abs(r) > 15 * MarketParams().bar_sigma(Timeframe.M1)).sum() > 5  # jumps


def test_volume_follows_volatility(long_market: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, regimes = long_market
    volume = frame["volume"].to_numpy()
    assert np.corrcoef(volume, np.abs(log_returns(frame)))[0, 1] > 0.3
    assert np.median(volume[regimes == Regime.VOLATILE]) > 1.5 * np.median(volume[regimes == Regime.RANGE])
    assert 10 < np.median(volume) < 250  # near the calm 1m level of MarketParams().volume_per_minute


def test_extend_continues_real_data_at_its_level_and_volatility(shared_data: Path) -> None:
    real = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz").tail(3000).reset_index(drop=True)
    out = extend_with_synthetic(real, Timeframe.H1, 12_000, seed=4)
    assert len(out) == 12_000
    pd.testing.assert_frame_equal(out.iloc[:3000], real.astype({"ts": "int64"}), check_dtype=False)
    tail = out.iloc[3000:].reset_index(drop=True)
    assert tail["ts"].iloc[0] == real["ts"].iloc[-1] + Timeframe.H1.ms
    assert (np.diff(tail["ts"].to_numpy()) == Timeframe.H1.ms).all()
    assert tail["open"].iloc[0] == real["close"].iloc[-1]
    real_sigma = robust_sigma(np.diff(np.log(real["close"].to_numpy()[-2000:])))
    synthetic_sigma = robust_sigma(np.diff(np.log(tail["close"].to_numpy())))
    assert 0.5 < synthetic_sigma / real_sigma < 2.0
    real_volume = float(np.median(real["volume"].to_numpy()[-2000:]))
    assert 0.5 < float(np.median(tail["volume"])) / real_volume < 2.0


def test_extend_leaves_long_enough_data_alone_and_refuses_empty_data() -> None:
    real = generate_market(100, seed=1)
    pd.testing.assert_frame_equal(extend_with_synthetic(real, Timeframe.M1, 50, seed=2), real)
    with pytest.raises(ValidationError):
        extend_with_synthetic(real.iloc[:0], Timeframe.M1, 50, seed=2)


def test_generate_command_stores_a_synthetic_series(sm_home: Path) -> None:
    from smartmarket.cli.app import app
    from smartmarket.store.url import open_store

    runner = CliRunner(env={"COLUMNS": "200"})
    args = ["generate", "--symbol", "syn/usdt", "--timeframe", "1h", "--rows", "500", "--seed", "3"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "500 inserted" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "0 inserted, 500 unchanged" in again.output

    with open_store(Settings().store_url) as store:
        info = store.series_info("SYNUSDT", Timeframe.H1)
        assert info is not None and info.synthetic and info.count == 500
        stored = store.read_candles("SYNUSDT", Timeframe.H1)
    pd.testing.assert_frame_equal(stored, generate_market(500, timeframe=Timeframe.H1, seed=3))
