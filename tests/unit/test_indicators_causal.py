"""Causality: the value at bar t uses bars ≤ t only.

Checked two ways on real candles for every indicator: computing on the history up to t gives exactly the
same rows as computing on the whole history, at many t; and scrambling everything after t changes nothing
at or before t.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.frame import CANDLE_COLUMNS, as_candle_frame
from smartmarket.features.base import Feature
from smartmarket.features.indicators import DEFAULT_SPECS, IndicatorSet

SPECS = (*DEFAULT_SPECS, "bb_20_2.5", "rvol_20_8760", "stoch_5_3_4", "macd_5_35_5", "keltner_10_1.5")
CUTS = (1, 2, 5, 13, 14, 15, 19, 20, 27, 33, 34, 199, 200, 201, 777, 1500, 2999, 4000)


def _bits(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64).view(np.int64)


def _rows(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(CANDLE_COLUMNS)].to_numpy(dtype=np.float64)


def _update(feature: Feature, row: np.ndarray) -> None:
    ts, o, h, lo, c, v = row.tolist()
    feature.update(int(ts), o, h, lo, c, v)


@pytest.fixture(scope="module", params=["BTCUSDT-1h", "ETHUSDT-4h"])
def candles(request: pytest.FixtureRequest, shared_data: Path) -> pd.DataFrame:
    return as_candle_frame(pd.read_csv(shared_data / f"{request.param}.csv.gz").iloc[5_000:9_000])


def test_prefix_equals_full_history(candles: pd.DataFrame) -> None:
    indicators = IndicatorSet(SPECS)
    full = indicators.batch(candles).to_numpy()
    for t in CUTS:
        prefix = indicators.batch(candles.iloc[:t]).to_numpy()
        assert np.array_equal(_bits(prefix), _bits(full[:t])), f"bars < {t} changed when later bars were added"


def test_future_bars_do_not_leak(candles: pd.DataFrame) -> None:
    indicators = IndicatorSet(SPECS)
    full = indicators.batch(candles).to_numpy()
    rng = np.random.default_rng(7)
    for t in (30, 250, 1234, 3500):
        scrambled = candles.copy()
        factor = rng.uniform(0.5, 1.5, size=len(candles) - t)
        for column in ("open", "high", "low", "close", "volume"):
            scrambled.loc[t:, column] = scrambled.loc[t:, column].to_numpy() * factor
        out = indicators.batch(scrambled).to_numpy()
        assert np.array_equal(_bits(out[:t]), _bits(full[:t]))
        assert not np.array_equal(_bits(out[t:]), _bits(full[t:]))  # the scramble did change something


def test_streaming_value_at_t_equals_batch_row_t(candles: pd.DataFrame) -> None:
    indicators = IndicatorSet(SPECS)
    full = indicators.batch(candles).to_numpy()
    indicators.reset()
    for t, row in enumerate(_rows(candles.iloc[:600])):
        _update(indicators, row)
        if t % 37 == 0:
            assert np.array_equal(_bits(np.array(indicators.values)), _bits(full[t]))
