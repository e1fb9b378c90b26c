"""A simple threshold strategy on a model's class probabilities, for judging a model by trading it.

The probabilities are computed beforehand for every bar (``TrainedModel.predict_frame``: the window ending at
bar t, causal features), and looked up by the bar's ``ts`` when the kernel reaches that bar. The decision made
at the close of bar t fills at the open of bar t+1 (the kernel's rule), so nothing from bar t+1 is used.

Rule at each bar, with ``p_down, p_flat, p_up`` for that bar:

* long  when ``p_up ≥ threshold`` and ``p_up > p_down``;
* short when ``p_down ≥ threshold`` and ``p_down > p_up`` (flat instead in long-only mode);
* flat otherwise, and while the bar has no probabilities (window incomplete).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from smartmarket.engine.strategy import BarContext, Strategy
from smartmarket.execution.orders import Decision

_FLAT = Decision("flat", reason="signal")


class ProbabilityThreshold(Strategy):
    """Trade the model's most likely direction when its probability reaches ``threshold``."""

    name: ClassVar[str] = "probability_threshold"
    history_size = 1

    def __init__(
        self, probabilities: Mapping[int, tuple[float, float, float]], threshold: float = 0.45, long_only: bool = False
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        self.probabilities = probabilities
        self.threshold = float(threshold)
        self.long_only = bool(long_only)

    def on_bar(self, ctx: BarContext) -> Decision | None:
        p = self.probabilities.get(ctx.bar.ts)
        if p is None:
            return _FLAT
        p_down, _p_flat, p_up = p
        if math.isnan(p_up) or math.isnan(p_down):
            return _FLAT
        if p_up >= self.threshold and p_up > p_down:
            return Decision("long", confidence=p_up)
        if p_down >= self.threshold and p_down > p_up:
            return _FLAT if self.long_only else Decision("short", confidence=p_down)
        return _FLAT

    def params(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "long_only": self.long_only}


def probability_lookup(ts: np.ndarray, proba: pd.DataFrame) -> dict[int, tuple[float, float, float]]:
    """``ts → (p_down, p_flat, p_up)`` for the rows of a ``predict_frame`` result (NaN rows left out)."""
    values = proba[["p_down", "p_flat", "p_up"]].to_numpy(dtype=np.float64)
    keep = np.isfinite(values).all(axis=1)
    return {
        int(t): (float(a), float(b), float(c))
        for t, (a, b, c) in zip(np.asarray(ts)[keep].tolist(), values[keep].tolist(), strict=True)
    }


__all__ = ["ProbabilityThreshold", "probability_lookup"]
