"""Position sizing: how much of the equity a decision should put at work.

A sizer returns an *unsigned fraction of equity* for a long or short decision (the kernel applies the sign);
:func:`order_quantity` turns that fraction into a quantity — the one rule both drivers follow: the backtest kernel
and the live risk stage call it at the decision close (see its docstring). A decision carrying its own ``size``
overrides the sizer. Sizers that need recent prices declare ``lookback`` (closes required); they receive the closes
up to and including the decision bar, oldest first. A sizer with a ``rebalance_band`` (and a lookback) is
re-evaluated by the kernel at every close while its strategy wants a position: the position is resized when the
sizer's fraction differs from the held one by more than ``band`` x the held fraction (see ``engine.kernel``).
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smartmarket.analytics.metrics import periods_per_year
from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Timeframe
from smartmarket.execution.orders import Decision

if TYPE_CHECKING:
    from smartmarket.execution.vol_forecast import VolForecaster

VOL_MODELS: tuple[str, ...] = ("ewma", "har")
"""The volatility forecasters ``--vol-model`` chooses from (``execution.vol_forecast``)."""


class Sizer(ABC):
    """Decision → fraction of equity (≥ 0)."""

    __slots__ = ()
    lookback: int = 0
    rebalance_band: float | None = None  # None: size at the decision only

    def tracker(self) -> VolForecaster | None:
        """A fresh per-symbol volatility forecaster the kernel updates at every close (None: not needed)."""
        return None

    def warmup_bars(self) -> int:
        """Bars to feed before a window so that its first sizes are those of a longer run."""
        tracker = self.tracker()
        return max(self.lookback + 1, tracker.history if tracker is not None else 0)

    def fraction(
        self, decision: Decision, price: float, closes: Sequence[float] = (), vol: float | None = None
    ) -> float:
        """Fraction of equity for ``decision`` taken at a bar closing at ``price`` (``vol``: the symbol's
        ``tracker()`` forecast, for sizers that have one)."""
        if decision.size is not None:
            return max(0.0, float(decision.size))
        return max(0.0, self._fraction(decision, price, closes))

    @abstractmethod
    def _fraction(self, decision: Decision, price: float, closes: Sequence[float]) -> float: ...


def _confidence_scale(decision: Decision, use_confidence: bool) -> float:
    if not use_confidence or decision.confidence is None:
        return 1.0
    return min(1.0, max(0.0, decision.confidence))


@dataclass(frozen=True, slots=True)
class FixedFraction(Sizer):
    """Always ``fraction`` of equity (scaled by the decision's confidence when ``use_confidence``)."""

    fraction_of_equity: float = 1.0
    use_confidence: bool = False

    def __post_init__(self) -> None:
        if not self.fraction_of_equity > 0:
            raise ConfigError(f"fixed fraction must be positive, got {self.fraction_of_equity!r}")

    def _fraction(self, decision: Decision, price: float, closes: Sequence[float]) -> float:
        return self.fraction_of_equity * _confidence_scale(decision, self.use_confidence)


def realised_volatility(closes: Sequence[float]) -> float:
    """Sample standard deviation of the log returns of ``closes`` (NaN with fewer than 3 closes)."""
    if len(closes) < 3:
        return math.nan
    rets = [math.log(b / a) for a, b in itertools.pairwise(closes) if a > 0 and b > 0]
    n = len(rets)
    if n < 2:
        return math.nan
    mean = sum(rets) / n
    return math.sqrt(sum((r - mean) ** 2 for r in rets) / (n - 1))


def ewma_volatility(closes: Sequence[float], decay: float) -> float:
    """RiskMetrics volatility of the log returns of ``closes``: sqrt(sum w_k r_k^2 / sum w_k), w_k = decay^age.

    Zero-mean (the RiskMetrics convention), newest return weight 1; the weights are normalised over the window
    given, so a truncated window is not biased low. NaN with fewer than 2 returns or a non-positive close.
    """
    n = len(closes)
    if n < 3:
        return math.nan
    num = 0.0
    den = 0.0
    weight = 1.0
    for k in range(n - 1, 0, -1):  # newest first
        a, b = closes[k - 1], closes[k]
        if not (a > 0 and b > 0):
            return math.nan
        r = math.log(b / a)
        num += weight * r * r
        den += weight
        weight *= decay
    return math.sqrt(num / den)


@dataclass(frozen=True, slots=True, repr=False)
class VolatilityTarget(Sizer):
    """Size so the position's volatility is ``target_vol`` per bar: ``target_vol / forecast vol``, capped.

    The forecast is, over the last ``lookback`` log returns, their sample standard deviation (``decay`` None)
    or the RiskMetrics EWMA with that decay (e.g. 0.94). For an annual target pass
    ``target_vol = annual / sqrt(bars_per_year)``. Until ``lookback + 1`` closes exist it sizes zero (no
    estimate, no position). ``rebalance_band``: the kernel resizes a held position at a close when the target
    moved by more than this fraction of the held exposure (None: size at the decision only). A decision with
    its own ``size`` (in [0, 1]) gets that share of the volatility budget and of the cap. ``vol_model``: the
    forecaster (``VOL_MODELS``): ``ewma`` as above, ``har`` the HAR-RV of ``execution.vol_forecast`` on
    ``bars_per_day`` bars a day (EWMA until it is fitted); the kernel passes its forecast as ``vol``.
    """

    target_vol: float = 0.01
    lookback: int = 20
    max_fraction: float = 1.0
    decay: float | None = None
    rebalance_band: float | None = 0.1
    vol_model: str = "ewma"  # not "model": the run record names the sizer's class by that key
    bars_per_day: int = 1

    def __post_init__(self) -> None:
        check_vol_model(self.vol_model)
        if self.vol_model != "ewma" and (self.decay is None or self.bars_per_day < 1):
            raise ConfigError(f"--vol-model {self.vol_model} needs an EWMA decay (its fallback) and bars_per_day >= 1")
        if not (self.target_vol > 0 and self.lookback >= 2 and self.max_fraction > 0):
            raise ConfigError(
                "volatility targeting needs target_vol > 0, lookback >= 2, max_fraction > 0",
                hint="e.g. --vol-target 0.2 --max-leverage 1",
            )
        if self.decay is not None and not 0 < self.decay < 1:
            raise ConfigError(f"EWMA decay must be in (0, 1), got {self.decay!r}", hint="RiskMetrics uses 0.94")
        if self.rebalance_band is not None and not self.rebalance_band >= 0:
            raise ConfigError(f"rebalance band must be >= 0, got {self.rebalance_band!r}", hint="e.g. 0.1 (10 %)")

    def __repr__(self) -> str:
        # the vol model only when not the default, so the fingerprint of an EWMA run (which hashes this) is unchanged
        text = (
            f"VolatilityTarget(target_vol={self.target_vol!r}, lookback={self.lookback!r}, "
            f"max_fraction={self.max_fraction!r}, decay={self.decay!r}, rebalance_band={self.rebalance_band!r}"
        )
        if self.vol_model != "ewma":
            text += f", vol_model={self.vol_model!r}, bars_per_day={self.bars_per_day!r}"
        return text + ")"  # fmt: skip

    def tracker(self) -> VolForecaster | None:
        """The symbol's forecaster: EWMA over ``lookback`` returns, or HAR-RV (EWMA until fitted) for
        ``vol_model="har"``; None without a ``decay`` (sample standard deviation of the closes window)."""
        if self.decay is None:
            return None
        from smartmarket.execution.vol_forecast import EWMAVolatility, HARVolatility

        ewma = EWMAVolatility(self.decay, self.lookback)
        return ewma if self.vol_model == "ewma" else HARVolatility(self.bars_per_day, ewma)

    def fraction(
        self, decision: Decision, price: float, closes: Sequence[float] = (), vol: float | None = None
    ) -> float:
        """A decision's own ``size`` (e.g. the ensemble's strength) scales the volatility budget, not replaces it."""
        scale = 1.0 if decision.size is None else max(0.0, float(decision.size))
        if vol is None:
            return scale * max(0.0, self._fraction(decision, price, closes))
        return scale * (float(min(self.max_fraction, self.target_vol / vol)) if vol > 0 else 0.0)

    def forecast(self, closes: Sequence[float]) -> float:
        """Per-bar volatility forecast from the closes up to now (NaN until ``lookback + 1`` closes)."""
        window = list(closes)[-(self.lookback + 1) :]
        if len(window) < self.lookback + 1:
            return math.nan
        return realised_volatility(window) if self.decay is None else ewma_volatility(window, self.decay)

    def _fraction(self, decision: Decision, price: float, closes: Sequence[float]) -> float:
        vol = self.forecast(closes)
        if not vol > 0:
            return 0.0
        return float(min(self.max_fraction, self.target_vol / vol))


EWMA_DECAY = 0.94  # RiskMetrics (J.P. Morgan 1996), daily data
EWMA_LOOKBACK = 75  # returns in the window: the weights left out (0.94^75 < 1 %) are negligible


def check_vol_model(model: str) -> str:
    """``model`` if it is one of ``VOL_MODELS``; a one-line ``ConfigError`` otherwise."""
    if model not in VOL_MODELS:
        raise ConfigError(f"unknown --vol-model {model!r}", hint="use " + " or ".join(VOL_MODELS))
    return model


def vol_model_option(model: str | None, vol_target: float | None) -> str:
    """The ``--vol-model`` to size with: ``ewma`` when not given; ``ConfigError`` for an unknown name or a model
    given without ``--vol-target`` (what the commands taking ``--vol-target`` call)."""
    if model is None:
        return "ewma"
    if vol_target is None:
        raise ConfigError("--vol-model applies to --vol-target", hint=f"add --vol-target 0.2 --vol-model {model}")
    return check_vol_model(model)


def annual_volatility_target(
    annual: float, timeframe: Timeframe, *, max_leverage: float = 1.0, band: float = 0.1, share: float = 1.0,
    model: str = "ewma",
) -> VolatilityTarget:  # fmt: skip
    """The volatility-targeting sizer for an annualised target on ``timeframe`` bars (``model``: ``VOL_MODELS``;
    HAR-RV's "day" is one calendar day of ``timeframe`` bars, at least one bar).

    ``share``: the part of the account this position runs on (1/N with N symbols): its target is
    ``annual x share`` and its cap ``max_leverage x share``.
    """
    check_vol_model(model)
    if not annual > 0:
        raise ConfigError(f"--vol-target must be positive (annualised), got {annual!r}", hint="e.g. --vol-target 0.2")
    if not max_leverage > 0:
        raise ConfigError(f"--max-leverage must be positive, got {max_leverage!r}", hint="e.g. --max-leverage 1")
    if not band >= 0:
        raise ConfigError(f"--rebalance-band must be >= 0, got {band!r}", hint="e.g. --rebalance-band 0.1 (10 %)")
    per_bar = annual * share / math.sqrt(periods_per_year(timeframe))
    return VolatilityTarget(
        target_vol=per_bar, lookback=EWMA_LOOKBACK, max_fraction=max_leverage * share, decay=EWMA_DECAY,
        rebalance_band=band, vol_model=model, bars_per_day=max(1, round(86_400_000 / timeframe.ms)),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RiskPerTrade(Sizer):
    """Risk ``risk_fraction`` of equity between entry and stop: fraction = risk x price / |price - stop|.

    The stop is the decision's ``stop_loss``, else ``default_stop_pct`` below (long) / above (short) the price;
    without either the decision is not sized (zero). The result is capped at ``max_fraction``.
    """

    risk_fraction: float = 0.01
    default_stop_pct: float | None = None
    max_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.risk_fraction < 1 and self.max_fraction > 0):
            raise ConfigError("risk per trade needs 0 < risk_fraction < 1 and max_fraction > 0")

    def _fraction(self, decision: Decision, price: float, closes: Sequence[float]) -> float:
        if decision.stop_loss is not None:
            distance = abs(price - decision.stop_loss) / price
        elif self.default_stop_pct is not None:
            distance = self.default_stop_pct
        else:
            return 0.0
        if not distance > 0:
            return 0.0
        return min(self.max_fraction, self.risk_fraction / distance)


def order_quantity(
    fraction: float, equity: float, price: float, taker_fee: float, *, room: float = math.inf, slippage: float = 0.0
) -> float:
    """The signed quantity that holds ``fraction`` of ``equity`` (negative: short), bought or sold at ``price``.

    ``quantity = sign x min(|fraction| x equity, room) / (price x (1 + slippage) x (1 + taker_fee))``: it spends
    ``fraction`` of equity *including* the entry fee. ``room`` is the gross exposure still allowed
    (``max_gross_exposure x equity`` minus the other symbols' exposure); zero without equity or price.

    **The rule both drivers follow** (backtest kernel and live risk stage): ``equity`` is valued at the
    decision close and ``price`` *is* that close, so the quantity is known when the order leaves — a real
    broker needs it then — and a backtest fills exactly what a live run sends (``tests/integration/
    test_one_pipeline_fills.py``). The kernel's ``size_at="fill_open"`` passes the fill's open and the equity
    valued there, with the fill's slippage, instead: the convention of backtesting.py and vectorbt, used only by
    the parity tests against them.
    """
    if fraction == 0.0 or not equity > 0 or not price > 0:
        return 0.0
    notional = min(abs(fraction) * equity, max(0.0, room))
    sign = 1.0 if fraction > 0 else -1.0
    return sign * notional / (price * (1.0 + sign * slippage) * (1.0 + taker_fee))


__all__ = [
    "EWMA_DECAY",
    "EWMA_LOOKBACK",
    "VOL_MODELS",
    "FixedFraction",
    "RiskPerTrade",
    "Sizer",
    "VolatilityTarget",
    "annual_volatility_target",
    "check_vol_model",
    "ewma_volatility",
    "order_quantity",
    "realised_volatility",
    "vol_model_option",
]
