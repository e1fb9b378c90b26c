"""Production vs candidate on the same candles: metrics, a significance test, and a verdict.

Used twice: ``ab-report`` (a shadow candidate's ``ShadowSignalGenerated`` events paired with production's
``SignalGenerated`` by candle, outcomes from the ``CandleClosed`` events the pipeline saw) and the promotion
evaluation (``ops.promotion``: both run offline over stored candles neither was fitted on).

Per system, on the candles where both decided and the outcome is known (triple-barrier, the production
artifact's label configuration): *hit rate* and *false-signal rate* of non-flat signals (``signals.pipeline``
definitions), *Brier* and *log-loss* of the 3-class probabilities, *ECE* (top-label, 10 equal-mass bins),
*confidence ECE* (the signal's confidence vs its hit), and *simulated P&L after fees*: each non-flat signal held to
its barrier exit, ``direction × return − 2 × fee`` (signals are counted independently, overlapping ones too).

The verdict rests on the **Diebold-Mariano test on the per-candle Brier losses** (a proper scoring rule defined on
every candle, so the pairing is complete; Newey-West variance over the label horizon). A paired block bootstrap of
the per-candle P&L difference is reported beside it. "candidate better" / "production better" need p < level;
otherwise "no significant difference".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.analytics.significance import diebold_mariano, paired_block_bootstrap
from smartmarket.core.errors import NotFoundError
from smartmarket.core.events import CandleClosed, ShadowSignalGenerated, SignalFields, SignalGenerated
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.models.labels import LabelConfig
from smartmarket.signals.calibration import expected_calibration_error
from smartmarket.signals.pipeline import OutcomeArrays, is_false_signal, label_outcomes
from smartmarket.signals.strength import Signal
from smartmarket.store.base import EventStore

KEYS = ("down", "flat", "up")
DIRECTION_SIGN = {"short": -1, "flat": 0, "long": 1}


@dataclass(frozen=True)
class Forecasts:
    """One system's decisions per candle: probabilities (down, flat, up), direction (−1/0/+1), confidence."""

    name: str
    model_id: str | None
    ts: np.ndarray
    probabilities: np.ndarray
    direction: np.ndarray
    confidence: np.ndarray

    @classmethod
    def from_events(cls, name: str, events: Sequence[SignalFields]) -> Forecasts:
        """From recorded signal events (one per candle; a later event for the same candle wins)."""
        by_ts = {e.ts: e for e in events}
        ordered = [by_ts[t] for t in sorted(by_ts)]
        ids = sorted({e.model_id for e in ordered if e.model_id})
        return cls(
            name, ",".join(ids) or None,
            np.array([e.ts for e in ordered], dtype=np.int64),
            np.array([[e.probabilities.get(k, math.nan) for k in KEYS] for e in ordered]).reshape(-1, 3),
            np.array([DIRECTION_SIGN[e.direction] for e in ordered], dtype=np.int64),
            np.array([e.confidence for e in ordered], dtype=np.float64),
        )  # fmt: skip

    @classmethod
    def from_signals(cls, name: str, model_id: str | None, signals: Sequence[Signal]) -> Forecasts:
        """From ``SignalEngine`` signals (``ts`` set)."""
        return cls(
            name, model_id,
            np.array([int(s.ts) for s in signals if s.ts is not None], dtype=np.int64),
            np.array([list(s.probabilities) for s in signals], dtype=np.float64).reshape(-1, 3),
            np.array([DIRECTION_SIGN[str(s.direction)] for s in signals], dtype=np.int64),
            np.array([s.confidence for s in signals], dtype=np.float64),
        )  # fmt: skip

    @classmethod
    def from_probabilities(cls, name: str, model_id: str | None, ts: np.ndarray, probs: np.ndarray) -> Forecasts:
        """A plain model: it signals its most probable class (flat when that is flat), confidence = that probability."""
        p = np.asarray(probs, dtype=np.float64).reshape(-1, 3)
        top = np.where(np.isfinite(p).all(axis=1), np.nanargmax(np.nan_to_num(p, nan=-1.0), axis=1), 1)
        direction = np.array([-1, 0, 1])[top]
        confidence = np.where(direction != 0, p[np.arange(len(p)), top], math.nan)
        return cls(name, model_id, np.asarray(ts, dtype=np.int64), p, direction, confidence)

    @classmethod
    def uniform(cls, ts: np.ndarray) -> Forecasts:
        """1/3 each, never trades."""
        return cls.climatology(ts, np.full(3, 1 / 3), "uniform, flat")

    @classmethod
    def climatology(cls, ts: np.ndarray, frequencies: np.ndarray, name: str = "base rates, flat") -> Forecasts:
        """The same class frequencies for every candle, never trades: skill beyond base rates is what beats it."""
        n = len(ts)
        probs = np.tile(np.asarray(frequencies, dtype=np.float64), (n, 1))
        return cls(name, None, np.asarray(ts, dtype=np.int64), probs, np.zeros(n, dtype=np.int64), np.full(n, math.nan))

    def at(self, ts: np.ndarray) -> Forecasts:
        """The rows at candle times ``ts`` (each must be present)."""
        index = {int(t): i for i, t in enumerate(self.ts)}
        rows = np.array([index[int(t)] for t in ts], dtype=np.int64)
        return Forecasts(
            self.name, self.model_id, self.ts[rows], self.probabilities[rows], self.direction[rows],
            self.confidence[rows],
        )  # fmt: skip


def candle_outcomes(candles: pd.DataFrame, config: LabelConfig) -> tuple[np.ndarray, OutcomeArrays]:
    """Candle times and their triple-barrier outcomes (unknown ones: ``t1 = -1``)."""
    frame = candles.sort_values("ts").reset_index(drop=True)
    return frame["ts"].to_numpy(np.int64), label_outcomes(frame, config)


def _system_metrics(f: Forecasts, y: np.ndarray, exits: np.ndarray, ret: np.ndarray, fee: float) -> dict[str, Any]:
    onehot = np.eye(3)[y]
    brier = np.sum((f.probabilities - onehot) ** 2, axis=1)
    p_true = np.clip(f.probabilities[np.arange(len(y)), y], 1e-12, 1.0)
    traded = f.direction != 0
    class_of = np.where(f.direction > 0, 2, 0)
    hits = (class_of == y) & traded
    false = np.array(
        [is_false_signal(int(s), str(e), float(r), fee) for s, e, r in zip(f.direction, exits, ret, strict=True)]
    )
    pnl = per_candle_pnl(f.direction, ret, fee)
    n_signals = int(traded.sum())
    conf = f.confidence[traded]
    conf_ok = np.isfinite(conf)
    return {
        "name": f.name,
        "model_id": f.model_id,
        "candles": len(y),
        "signals": n_signals,
        "hit_rate": float(hits.sum() / n_signals) if n_signals else None,
        "false_signal_rate": float(false[traded].mean()) if n_signals else None,
        "brier": float(brier.mean()),
        "log_loss": float(-np.log(p_true).mean()),
        "ece": float(expected_calibration_error(f.probabilities, y)),
        "confidence_ece": (
            float(expected_calibration_error(conf[conf_ok], hits[traded][conf_ok].astype(int)))
            if conf_ok.sum() >= 10 else None
        ),
        "pnl_after_fees": float(pnl.sum()),
        "pnl_per_signal": float(pnl.sum() / n_signals) if n_signals else None,
    }  # fmt: skip


def per_candle_pnl(direction: np.ndarray, ret: np.ndarray, fee: float) -> np.ndarray:
    """Each non-flat signal held to its barrier exit: ``sign × return − 2 × fee`` (0 when flat)."""
    sign = np.asarray(direction, dtype=np.float64)
    return sign * np.asarray(ret, dtype=np.float64) - 2.0 * fee * np.abs(sign)


def compare(
    production: Forecasts, candidate: Forecasts, candles: pd.DataFrame, label_config: LabelConfig, *,
    fee: float = 0.001, level: float = 0.05,
) -> dict[str, Any]:  # fmt: skip
    """The comparison document (see the module docstring)."""
    ts, outcomes = candle_outcomes(candles, label_config)
    known = {int(t): i for i, t in enumerate(ts) if outcomes.t1[i] >= 0}
    decided = lambda f: set(f.ts[np.isfinite(f.probabilities).all(axis=1)].tolist())  # noqa: E731
    common = np.array(sorted(decided(production) & decided(candidate) & set(known)), dtype=np.int64)
    doc: dict[str, Any] = {
        "candles": len(common),
        "first_ts": int(common[0]) if len(common) else None,
        "last_ts": int(common[-1]) if len(common) else None,
        "label_config": label_config.to_dict(),
        "fee": fee,
        "level": level,
    }
    if len(common) < 30:
        doc.update(production=None, candidate=None, test=None, pnl_test=None, verdict="not enough outcomes yet")
        return doc
    rows = np.array([known[int(t)] for t in common])
    y = outcomes.y[rows].astype(np.int64)
    exits, ret = outcomes.exit[rows], outcomes.ret[rows]
    prod, cand = production.at(common), candidate.at(common)
    doc["production"] = _system_metrics(prod, y, exits, ret, fee)
    doc["candidate"] = _system_metrics(cand, y, exits, ret, fee)
    onehot = np.eye(3)[y]
    loss_p = np.sum((prod.probabilities - onehot) ** 2, axis=1)
    loss_c = np.sum((cand.probabilities - onehot) ** 2, axis=1)
    test = diebold_mariano(loss_c, loss_p, horizon=label_config.horizon, level=level)
    pnl_test = paired_block_bootstrap(
        per_candle_pnl(cand.direction, ret, fee), per_candle_pnl(prod.direction, ret, fee),
        block=label_config.horizon, level=level,
    )  # fmt: skip
    doc["test"] = {**test.to_dict(), "loss": "brier (3-class)", "difference": "candidate − production"}
    doc["pnl_test"] = {**pnl_test.to_dict(), "difference": "candidate − production P&L per candle"}
    doc["verdict"] = verdict(test.mean_difference, test.significant)
    return doc


def verdict(loss_difference: float, significant: bool) -> str:
    """From the candidate − production loss difference and its test."""
    if not significant:
        return "no significant difference"
    return "candidate better" if loss_difference < 0 else "production better"


# ------------------------------------------------------------------------------------------ ab-report


def _label_config(registry_dir: str | Path | None, model_ids: Sequence[str | None]) -> LabelConfig:
    """The label configuration of the first of ``model_ids`` found in the registry (default otherwise)."""
    from smartmarket.models.registry import Registry

    registry = Registry(registry_dir)
    for model_id in model_ids:
        if not model_id:
            continue
        try:
            meta = registry.show(model_id).metadata
        except NotFoundError:
            continue
        if "label_config" in meta:
            return LabelConfig.from_dict(meta["label_config"])
    return LabelConfig()


def _candles_seen(store: EventStore, symbol: str, timeframe: Timeframe, start: int | None) -> pd.DataFrame:
    """The candles the pipeline saw (its ``CandleClosed`` events), one row per candle."""
    rows = {}
    for stored in store.read_events(start=start, types=["CandleClosed"]):
        m = stored.message
        if isinstance(m, CandleClosed) and m.symbol == symbol and m.timeframe == timeframe:
            rows[m.ts] = (m.ts, m.open, m.high, m.low, m.close, m.volume)
    return pd.DataFrame([rows[t] for t in sorted(rows)], columns=["ts", "open", "high", "low", "close", "volume"])


def shadow_report(
    store: EventStore, *, since: int | None = None, until: int | None = None, symbol: str | None = None,
    registry_dir: str | Path | None = None, fee: float = 0.001, level: float = 0.05,
) -> dict[str, Any]:  # fmt: skip
    """Every shadow candidate recorded in ``[since, until)`` compared with production on the same candles."""
    wanted = normalize_symbol(symbol) if symbol else None
    events = [
        e.message for e in store.read_events(start=since, end=until, types=["SignalGenerated", "ShadowSignalGenerated"])
        if isinstance(e.message, SignalFields) and (wanted is None or e.message.symbol == wanted)
    ]  # fmt: skip
    shadows: dict[tuple[str, Timeframe, str | None], list[SignalFields]] = {}
    for m in events:
        if isinstance(m, ShadowSignalGenerated):
            shadows.setdefault((m.symbol, m.timeframe, m.model_id), []).append(m)
    comparisons = []
    for (sym, tf, candidate_id), shadow in sorted(shadows.items(), key=lambda kv: tuple(map(str, kv[0]))):
        production = [m for m in events if isinstance(m, SignalGenerated) and m.symbol == sym and m.timeframe == tf]
        prod = Forecasts.from_events("production", production)
        cand = Forecasts.from_events("candidate", shadow)
        config = _label_config(registry_dir, [prod.model_id.split(",")[0] if prod.model_id else None, candidate_id])
        first = int(min(cand.ts)) - (config.scale_window + 2) * tf.ms
        candles = _candles_seen(store, sym, tf, first + tf.ms)
        doc = compare(prod, cand, candles, config, fee=fee, level=level) if len(candles) else {
            "candles": 0, "verdict": "not enough outcomes yet"}  # fmt: skip
        comparisons.append({"symbol": sym, "timeframe": str(tf), "candidate_id": candidate_id,
                            "production_ids": prod.model_id, **doc})  # fmt: skip
    return {"since": since, "until": until, "comparisons": comparisons}


__all__ = ["Forecasts", "candle_outcomes", "compare", "per_candle_pnl", "shadow_report", "verdict"]
