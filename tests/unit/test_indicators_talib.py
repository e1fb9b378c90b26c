"""Indicator values against TA-Lib (and pandas references where TA-Lib lacks the indicator), on real candles.

Our seeding follows TA-Lib's, so parity is asserted from TA-Lib's very first value, not only after a warm-up:
max |ours − reference| ≤ 1e-8 × max |reference| over every bar where the reference is defined. The first
defined bar of every column is also checked against its documented warm-up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from smartmarket.core.frame import as_candle_frame
from smartmarket.features.indicators import IndicatorSet

REL_TOL = 1e-8
SPECS = (
    "sma_20", "ema_12", "ema_200", "wma_20", "rsi_14", "macd_12_26_9", "bb_20_2", "bb_20_2.5", "atr_14", "adx_14",
    "stoch_14_3_3", "stoch_5_3_4", "cci_20", "obv", "mfi_14", "roc_10", "mom_10", "vwap_20", "rvol_20",
    "rvol_20_8760", "chop_14", "donchian_20", "keltner_20_2",
)  # fmt: skip

Reference = Callable[[pd.DataFrame], np.ndarray]


def _hlc(f: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return f["high"].to_numpy(), f["low"].to_numpy(), f["close"].to_numpy()


def _hlcv(f: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return f["high"].to_numpy(), f["low"].to_numpy(), f["close"].to_numpy(), f["volume"].to_numpy()


def _typical(f: pd.DataFrame) -> pd.Series:
    return (f["high"] + f["low"] + f["close"]) / 3.0


def _true_range(f: pd.DataFrame) -> pd.Series:
    prev = f["close"].shift(1)
    ranges = pd.concat([f["high"] - f["low"], (f["high"] - prev).abs(), (f["low"] - prev).abs()], axis=1)
    return ranges.max(axis=1, skipna=False)


def _bbands(f: pd.DataFrame, mult: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    upper, middle, lower = talib.BBANDS(f["close"].to_numpy(), 20, mult, mult, talib.MA_Type.SMA)
    return upper, middle, lower


def _exact_bands(f: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Two-pass pandas reference (population std) for the derived Bollinger columns TA-Lib lacks."""
    middle = f["close"].rolling(20).mean()
    std = f["close"].rolling(20).std(ddof=0)
    return middle + 2 * std, middle, middle - 2 * std


def _stoch(f: pd.DataFrame, k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    sma = talib.MA_Type.SMA
    slow_k, slow_d = talib.STOCH(
        *_hlc(f), fastk_period=k, slowk_period=3, slowk_matype=sma, slowd_period=d, slowd_matype=sma
    )
    return slow_k, slow_d


def _bb_width(f: pd.DataFrame) -> np.ndarray:
    upper, middle, lower = _exact_bands(f)
    return ((upper - lower) / middle).to_numpy()


def _bb_pctb(f: pd.DataFrame) -> np.ndarray:
    upper, _, lower = _exact_bands(f)
    return ((f["close"] - lower) / (upper - lower)).to_numpy()


def _vwap(f: pd.DataFrame) -> np.ndarray:
    return ((_typical(f) * f["volume"]).rolling(20).sum() / f["volume"].rolling(20).sum()).to_numpy()


def _keltner(f: pd.DataFrame, side: float) -> np.ndarray:
    middle: np.ndarray = talib.EMA(f["close"].to_numpy(), 20)
    atr: np.ndarray = talib.ATR(*_hlc(f), 20)
    return middle + side * 2 * atr


def _chop(f: pd.DataFrame) -> np.ndarray:
    n = 14
    span = f["high"].rolling(n).max() - f["low"].rolling(n).min()
    ratio = _true_range(f).rolling(n).sum() / span
    return (100 * np.log10(ratio) / np.log10(n)).to_numpy()


# column -> (reference, first defined bar)
CASES: dict[str, tuple[Reference, int]] = {
    "sma_20": (lambda f: talib.SMA(f["close"].to_numpy(), 20), 19),
    "ema_12": (lambda f: talib.EMA(f["close"].to_numpy(), 12), 11),
    "ema_200": (lambda f: talib.EMA(f["close"].to_numpy(), 200), 199),
    "wma_20": (lambda f: talib.WMA(f["close"].to_numpy(), 20), 19),
    "rsi_14": (lambda f: talib.RSI(f["close"].to_numpy(), 14), 14),
    "macd_12_26_9": (lambda f: talib.MACD(f["close"].to_numpy(), 12, 26, 9)[0], 25),
    "macd_signal_12_26_9": (lambda f: talib.MACD(f["close"].to_numpy(), 12, 26, 9)[1], 33),
    "macd_hist_12_26_9": (lambda f: talib.MACD(f["close"].to_numpy(), 12, 26, 9)[2], 33),
    "bb_upper_20_2": (lambda f: _bbands(f, 2.0)[0], 19),
    "bb_middle_20_2": (lambda f: _bbands(f, 2.0)[1], 19),
    "bb_lower_20_2": (lambda f: _bbands(f, 2.0)[2], 19),
    "bb_upper_20_2.5": (lambda f: _bbands(f, 2.5)[0], 19),
    "bb_lower_20_2.5": (lambda f: _bbands(f, 2.5)[2], 19),
    "atr_14": (lambda f: talib.ATR(*_hlc(f), 14), 14),
    "adx_14": (lambda f: talib.ADX(*_hlc(f), 14), 27),
    "plus_di_14": (lambda f: talib.PLUS_DI(*_hlc(f), 14), 14),
    "minus_di_14": (lambda f: talib.MINUS_DI(*_hlc(f), 14), 14),
    "stoch_k_14_3_3": (lambda f: _stoch(f, 14, 3)[0], 15),
    "stoch_d_14_3_3": (lambda f: _stoch(f, 14, 3)[1], 17),
    "stoch_k_5_3_4": (lambda f: _stoch(f, 5, 4)[0], 6),
    "stoch_d_5_3_4": (lambda f: _stoch(f, 5, 4)[1], 9),
    "cci_20": (lambda f: talib.CCI(*_hlc(f), 20), 19),
    "obv": (lambda f: talib.OBV(f["close"].to_numpy(), f["volume"].to_numpy()), 0),
    "mfi_14": (lambda f: talib.MFI(*_hlcv(f), 14), 14),
    "roc_10": (lambda f: talib.ROC(f["close"].to_numpy(), 10), 10),
    "mom_10": (lambda f: talib.MOM(f["close"].to_numpy(), 10), 10),
    # TA-Lib lacks these: pandas / hand-computed references.
    "bb_width_20_2": (_bb_width, 19),
    "bb_pctb_20_2": (_bb_pctb, 19),
    "vwap_20": (_vwap, 19),
    "rvol_20": (lambda f: np.log(f["close"]).diff().rolling(20).std().to_numpy(), 20),
    "rvol_20_8760": (lambda f: np.log(f["close"]).diff().rolling(20).std().to_numpy() * np.sqrt(8760), 20),
    "chop_14": (_chop, 14),
    "donchian_upper_20": (lambda f: f["high"].rolling(20).max().to_numpy(), 19),
    "donchian_lower_20": (lambda f: f["low"].rolling(20).min().to_numpy(), 19),
    "donchian_mid_20": (lambda f: ((f["high"].rolling(20).max() + f["low"].rolling(20).min()) / 2).to_numpy(), 19),
    "keltner_middle_20_2": (lambda f: talib.EMA(f["close"].to_numpy(), 20), 19),
    "keltner_upper_20_2": (lambda f: _keltner(f, +1.0), 20),
    "keltner_lower_20_2": (lambda f: _keltner(f, -1.0), 20),
}

DATASETS = {"BTCUSDT-1h": slice(-8000, None), "ETHUSDT-4h": slice(2000, 8000)}


@pytest.fixture(scope="module", params=sorted(DATASETS))
def computed(request: pytest.FixtureRequest, shared_data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = pd.read_csv(shared_data / f"{request.param}.csv.gz")
    frame = as_candle_frame(raw.iloc[DATASETS[request.param]])
    return frame, IndicatorSet(SPECS).batch(frame)


def test_every_column_has_a_reference() -> None:
    assert set(IndicatorSet(SPECS).columns) - {"bb_middle_20_2.5", "bb_width_20_2.5", "bb_pctb_20_2.5"} == set(CASES)


@pytest.mark.parametrize("column", sorted(CASES))
def test_matches_reference(column: str, computed: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    frame, outputs = computed
    reference_of, first_bar = CASES[column]
    ours = outputs[column].to_numpy()
    reference = np.asarray(reference_of(frame), dtype=np.float64)

    defined = ~np.isnan(ours)
    assert defined.any() and int(np.argmax(defined)) == first_bar, "first defined bar differs from the documented one"
    assert defined[first_bar:].all(), "NaN after warm-up on clean real data"
    ref_defined = ~np.isnan(reference)
    assert not (ref_defined & ~defined).any(), "reference defined where ours is NaN"
    assert ref_defined.sum() > len(frame) - 250

    scale = np.max(np.abs(reference[ref_defined]))
    error = np.max(np.abs(ours[ref_defined] - reference[ref_defined]))
    assert error <= REL_TOL * scale, f"max error {error:.3g} vs scale {scale:.3g}"
