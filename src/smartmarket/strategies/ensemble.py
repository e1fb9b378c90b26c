"""Ensemble signals as a strategy: trade the signal engine's output, sized by confidence (strength class).

``EnsembleStrategy`` runs a ``SignalEngine`` (members + a fitted ensemble artifact from the model registry)
inside the backtest kernel, one closed candle at a time — the same ``on_candle`` a live pipeline calls.
Parameters: ``artifact`` (an id, id prefix or folder; ``"latest"``: the newest artifact for the symbol and
``timeframe``), ``timeframe`` (needed with ``latest`` when several timeframes are stored), ``registry`` (the
registry folder; default: ``Settings().registry_dir``), ``max_size`` (fraction of equity at strength strong),
``adapt`` (online re-weighting, see ``signals.engine``).

Trade policy (``SignalTrader``), matching what a signal's outcome measures (the triple barrier):

* a long/short signal opens (or reverses into) that position with the stop and target at the label's
  barriers (``close ∓ stop_loss·ATR``, ``close ± take_profit·ATR``) and size ``max_size`` × 1/3, 2/3 or 1 for
  strength weak / moderate / strong — higher confidence, larger position;
* a signal repeating the held direction refreshes the barriers and the holding clock, without trading;
* after ``horizon`` bars without a refresh the position is closed (the time barrier); a flat signal alone does
  not close a position (stop, target or time do).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from smartmarket.core.errors import ConfigError
from smartmarket.engine.strategy import BarContext, Strategy
from smartmarket.execution.orders import Decision

if TYPE_CHECKING:
    from smartmarket.signals.engine import SignalEngine

STRENGTH_SIZE: dict[str, float] = {"weak": 1 / 3, "moderate": 2 / 3, "strong": 1.0}


class SignalTrader:
    """Signals → target positions (see the module docstring). One instance per symbol."""

    def __init__(self, *, horizon: int, take_profit: float, stop_loss: float, max_size: float = 1.0) -> None:
        if horizon < 1 or take_profit <= 0 or stop_loss <= 0 or not 0 < max_size <= 1:
            raise ConfigError("trader needs horizon ≥ 1, positive barriers and 0 < max_size ≤ 1")
        self.horizon = horizon
        self.take_profit = take_profit
        self.stop_loss = stop_loss
        self.max_size = max_size
        self.held = 0

    def decide(
        self, sign: int, strength: str, confidence: float, close: float, scale: float, position: float
    ) -> Decision | None:
        """The decision for one bar: ``sign`` ±1/0 of the signal, ``scale`` the ATR at this bar."""
        held_sign = (position > 0) - (position < 0)
        if held_sign == 0:
            self.held = 0
        else:
            self.held += 1
        if sign != 0 and math.isfinite(scale) and scale > 0:
            direction = "long" if sign > 0 else "short"
            stop = close - sign * self.stop_loss * scale
            target = close + sign * self.take_profit * scale
            self.held = 0
            if sign == held_sign:  # refresh levels and clock, no trade
                return Decision(direction, stop_loss=stop, take_profit=target, reason="signal")  # type: ignore[arg-type]
            size = self.max_size * STRENGTH_SIZE.get(strength, 0.0)
            return Decision(
                direction, size=size, confidence=confidence, stop_loss=stop, take_profit=target,  # type: ignore[arg-type]
                reason="signal",
            )  # fmt: skip
        if held_sign != 0 and self.held >= self.horizon:
            self.held = 0
            return Decision("flat", reason="signal")
        return None


class EnsembleStrategy(Strategy):
    """The signal engine's signals, traded by ``SignalTrader`` (see the module docstring)."""

    name: ClassVar[str] = "ensemble"
    history_size = 1

    def __init__(
        self,
        artifact: str = "latest",
        timeframe: str | None = None,
        registry: str | None = None,
        max_size: float = 1.0,
        adapt: bool = False,
    ) -> None:
        if not 0 < max_size <= 1:
            raise ConfigError(f"ensemble max_size must be in (0, 1], got {max_size}")
        self.artifact = str(artifact)
        self.timeframe = timeframe
        self.registry = registry
        self.max_size = float(max_size)
        self.adapt = bool(adapt)
        self.engine: SignalEngine | None = None
        self.trader: SignalTrader | None = None

    def _registry_dir(self) -> Path:
        if self.registry:
            return Path(self.registry)
        from smartmarket.core.config import Settings

        return Settings().registry_dir

    def _build(self, symbol: str) -> SignalEngine:
        from smartmarket.signals.engine import EngineConfig, SignalEngine  # torch and sklearn: load on first use
        from smartmarket.signals.fit import list_artifacts, load_artifact

        registry = self._registry_dir()
        timeframe = self.timeframe
        if self.artifact == "latest" and timeframe is None:
            timeframes = {p.name.split("-")[2] for p in list_artifacts(registry, symbol)}
            if len(timeframes) > 1:
                raise ConfigError(
                    f"ensemble artifacts for {symbol} exist at several timeframes: {sorted(timeframes)}",
                    hint="pass --params timeframe=1h (or artifact=<id>)",
                )
        art = load_artifact(self.artifact, registry, symbol=symbol, timeframe=timeframe)
        engine = SignalEngine.from_artifact(art, registry_dir=registry, config=EngineConfig(adapt=self.adapt))
        labels = art.label_config
        self.trader = SignalTrader(
            horizon=labels.horizon, take_profit=labels.take_profit, stop_loss=labels.stop_loss, max_size=self.max_size
        )
        return engine

    def on_bar(self, ctx: BarContext) -> Decision | None:
        if self.engine is None:
            self.engine = self._build(ctx.symbol)
        engine, trader = self.engine, self.trader
        assert trader is not None
        b = ctx.bar
        signal = engine.on_candle(b.ts, b.open, b.high, b.low, b.close, b.volume)
        sign = signal.direction.sign
        return trader.decide(sign, str(signal.strength), signal.confidence, b.close, engine.tracker.scale, ctx.position)

    def warmup_bars(self) -> int:
        return 1

    def params(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact, "timeframe": self.timeframe, "registry": self.registry,
            "max_size": self.max_size, "adapt": self.adapt,
        }  # fmt: skip


class ReplaySignals(Strategy):
    """Research replay: precomputed signals by candle ts (``{ts: (sign, strength, confidence)}``) traded by
    ``SignalTrader``; ``scale`` maps ts → ATR. Used by the walk-forward evaluation, not by live paths."""

    name: ClassVar[str] = "replay_signals"
    history_size = 1

    def __init__(
        self,
        signals: Mapping[int, tuple[int, str, float]],
        scale: Mapping[int, float],
        *,
        horizon: int,
        take_profit: float,
        stop_loss: float,
        max_size: float = 1.0,
    ) -> None:
        self.signals = signals
        self.scale = scale
        self.trader = SignalTrader(horizon=horizon, take_profit=take_profit, stop_loss=stop_loss, max_size=max_size)

    def on_bar(self, ctx: BarContext) -> Decision | None:
        sign, strength, confidence = self.signals.get(ctx.ts, (0, "none", math.nan))
        return self.trader.decide(sign, strength, confidence, ctx.close, self.scale.get(ctx.ts, math.nan), ctx.position)

    def warmup_bars(self) -> int:
        return 1


__all__ = ["STRENGTH_SIZE", "EnsembleStrategy", "ReplaySignals", "SignalTrader"]
