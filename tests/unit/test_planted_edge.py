"""The synthetic market's planted edge: off by default, and when on, the trailing return's sign predicts the drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import ConfigError
from smartmarket.data.synthetic import MarketParams, generate_market


def _sign_vs_next(frame: pd.DataFrame, lookback: int) -> float:
    """Mean of sign(trailing lookback-bar log return) x next bar's log return, in units of the return std."""
    lc = np.log(frame["close"].to_numpy(np.float64))
    trailing = np.sign(lc[lookback:-1] - lc[: -lookback - 1])
    nxt = np.diff(lc)[lookback:]
    return float(np.mean(trailing * nxt) / np.std(nxt))


def test_no_edge_unless_asked() -> None:
    assert MarketParams().planted_edge == 0.0
    plain = generate_market(3000, timeframe="1h", seed=3)
    explicit = generate_market(3000, timeframe="1h", seed=3, params=MarketParams(planted_edge=0.0))
    assert plain.equals(explicit)


def test_the_planted_drift_follows_the_trailing_return() -> None:
    params = MarketParams(planted_edge=0.2, planted_edge_lookback=20)
    planted = [_sign_vs_next(generate_market(20_000, timeframe="1h", seed=s, params=params), 20) for s in range(3)]
    plain = [_sign_vs_next(generate_market(20_000, timeframe="1h", seed=s), 20) for s in range(3)]
    # about 0.2 bar sigmas a bar in the trailing return's direction (fat tails and jumps make the std larger)
    assert all(0.08 < x < 0.3 for x in planted), planted
    assert all(abs(x) < 0.05 for x in plain), plain


def test_a_bad_edge_is_refused() -> None:
    with pytest.raises(ConfigError):
        generate_market(100, params=MarketParams(planted_edge=float("nan")))
    with pytest.raises(ConfigError):
        generate_market(100, params=MarketParams(planted_edge=0.1, planted_edge_lookback=0))
