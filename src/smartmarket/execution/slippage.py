"""Slippage: how much worse than the reference price a taker fill executes.

A model hands out one :class:`SlippageTracker` per symbol. The tracker's ``fraction`` is the adverse move
applied to the next taker fill (buy at ``price x (1 + fraction)``, sell at ``price x (1 - fraction)``); the
kernel calls ``update`` with each bar *after* that bar's fills, so a fill at the open of bar t+1 only uses
bars up to t. Maker fills (take-profit limits) never slip.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

from smartmarket.core.errors import ConfigError


def slipped_price(price: float, side_sign: int, fraction: float) -> float:
    """``price`` moved against a buyer (``side_sign`` +1) or seller (-1) by ``fraction``."""
    return price * (1.0 + side_sign * fraction)


class SlippageTracker(ABC):
    """Per-symbol slippage state."""

    fraction: float
    needs_updates: bool = True

    @abstractmethod
    def update(self, high: float, low: float, close: float) -> None:
        """Consume one closed bar."""


class SlippageModel(ABC):
    """A slippage rule; ``tracker()`` builds the state for one symbol."""

    __slots__ = ()

    @abstractmethod
    def tracker(self) -> SlippageTracker: ...


class _ConstantTracker(SlippageTracker):
    needs_updates = False

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def update(self, high: float, low: float, close: float) -> None:
        return None


@dataclass(frozen=True, slots=True)
class FixedBps(SlippageModel):
    """A constant adverse move of ``bps`` basis points (``5`` = 0.05 %) on every taker fill."""

    bps: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.bps < 1000.0:
            raise ConfigError(f"slippage of {self.bps!r} bps is out of range")

    def tracker(self) -> SlippageTracker:
        return _ConstantTracker(self.bps / 10_000.0)


class _VolatilityTracker(SlippageTracker):
    def __init__(self, base: float, multiplier: float, alpha: float) -> None:
        self._base = base
        self._multiplier = multiplier
        self._alpha = alpha
        self._range = math.nan  # EWMA of (high - low) / close
        self.fraction = base

    def update(self, high: float, low: float, close: float) -> None:
        if not close > 0.0:
            return
        x = (high - low) / close
        r = self._range
        self._range = x if r != r else r + self._alpha * (x - r)
        self.fraction = self._base + self._multiplier * self._range


@dataclass(frozen=True, slots=True)
class VolatilitySlippage(SlippageModel):
    """Slippage growing with recent volatility: ``base_bps / 1e4 + multiplier x EWMA((high - low) / close)``.

    The EWMA has span ``span`` bars (``alpha = 2 / (span + 1)``) and starts at the first bar's range; before
    any bar has been seen only the base applies. E.g. with ``multiplier=0.05`` bars spanning 2 % of the price
    cost 0.1 % per taker fill.
    """

    base_bps: float = 0.0
    multiplier: float = 0.05
    span: int = 20

    def __post_init__(self) -> None:
        if self.span < 1 or self.multiplier < 0 or self.base_bps < 0:
            raise ConfigError("volatility slippage needs span >= 1, multiplier >= 0, base_bps >= 0")

    def tracker(self) -> SlippageTracker:
        return _VolatilityTracker(self.base_bps / 10_000.0, self.multiplier, 2.0 / (self.span + 1.0))


NO_SLIPPAGE = FixedBps(0.0)

__all__ = ["NO_SLIPPAGE", "FixedBps", "SlippageModel", "SlippageTracker", "VolatilitySlippage", "slipped_price"]
