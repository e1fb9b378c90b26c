"""``Feature.step`` (the kernel's hot path: update then values in one call) equals ``update`` + ``values``, also
on a copied feature.

A first version of the fast path kept a NumPy view of the indicator's output row; ``copy.deepcopy`` (strategies
and engines are copied when a pipeline builds its stages) turned the view into a detached array, so a copied
indicator reported NaN for ever and the demo's risk stage placed 0 orders from 400 signals.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from smartmarket.features.indicators import make_indicator

NAMES = ("sma_3", "ema_5", "rsi_7", "atr_5", "macd")


def candles(n: int = 120) -> list[tuple[int, float, float, float, float, float]]:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return [(i * 60_000, c * 0.999, c * 1.004, c * 0.995, c, 10.0 + i) for i, c in enumerate(close.tolist())]


@pytest.mark.parametrize("name", NAMES)
def test_step_equals_update_then_values_on_a_copy_too(name: str) -> None:
    reference = make_indicator(name)
    used = make_indicator(name)
    used.step(*candles()[0])  # state and output rows exist before the copy
    copied = copy.deepcopy(used)
    reference.update(*candles()[0])
    rows = candles()[1:]
    for bar in rows:
        reference.update(*bar)
        expected = reference.values
        got = copied.step(*bar)
        assert all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(got, expected, strict=True))
    assert not any(math.isnan(v) for v in copied.values)  # warmed up: a detached output row would stay NaN
