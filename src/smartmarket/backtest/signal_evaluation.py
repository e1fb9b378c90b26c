"""Honest evaluation of the signal system: walk-forward, out of sample only, through the backtester with fees.

Layout of fold ``k`` (bars; test periods are consecutive and together cover the last ``folds × test_bars``)::

    member training (model members, ≤ train_bars) | horizon gap | signal-system fit (fit_bars) | test [s, e)

* model members (``logistic``, ``lightgbm``, ``transformer``, ``cnn_lstm``) are trained from scratch on the
  member-training span of each fold (``models.train_model``, its own purged validation for early stopping; the
  span ends ``horizon`` bars before the fit span, so no training label reaches it); rule members need no training;
* the networks train under a fixed CPU budget (``network_*`` fields: preset, epochs, batches per epoch, batch
  size, torch threads), recorded in the report: their figures are those of budget-limited networks;
* the signal system (calibration | ensemble weights | confidence | thresholds) is fitted at decision bar ``s``
  from samples in the fit span whose outcomes were known before ``s`` (``SignalSamples.known_before``);
* the test bars are decided by that system, once, without refitting: every figure is out of sample.

Systems compared on the same test bars: the ensemble (the deployed ``skill`` kind, and ``stacking`` for the
choice of default), each member *alone* (the same calibration, confidence, strength and regime filter with one
member — a fair "best single member"), and buy-and-hold. Signals are replayed through the backtest kernel
(``strategies.ensemble.ReplaySignals``: the ensemble strategy's trade policy, fees on both sides).

This is the **research path** (members predicted on whole frames, ``signals.pipeline``); the per-candle engine
would give the same signals for rule members (tested), not necessarily bit for bit for model members.

Definitions (docs/signals.md): *hit rate* — non-flat signals whose target barrier was touched first;
*false-signal rate* — non-flat signals that were false (``pipeline.is_false_signal``: stop first, both barriers
in one bar, or a time exit not beating the round-trip fee); *win rate* — closed backtest trades with positive
net P&L; *Brier*/*ECE* — of the system's 3-class probabilities on every decided, labelled bar (ECE top-label,
10 equal-mass bins); *confidence ECE* — of the confidence of the system's favoured non-flat side vs its hit.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.core.types import Timeframe
from smartmarket.models.labels import LabelConfig, barrier_scale
from smartmarket.signals.calibration import brier_score, expected_calibration_error
from smartmarket.signals.confidence import direction_probability, signal_direction, signal_hit
from smartmarket.signals.members import Member, ModelMember, SMCMember, TechnicalMember
from smartmarket.signals.outcomes import SignalSamples
from smartmarket.signals.pipeline import ResearchData, false_signal_mask, label_outcomes, regimes_of
from smartmarket.signals.strength import Signal, SignalSystem, SignalSystemConfig

ProgressFn = Callable[[str], None]
TABULAR_KINDS = {"logistic": "logreg", "logreg": "logreg", "lightgbm": "lightgbm", "lgbm": "lightgbm"}
NETWORK_KINDS = {"transformer": "transformer", "cnn_lstm": "cnn_lstm"}
MODEL_KINDS = {**TABULAR_KINDS, **NETWORK_KINDS}
RULE_KINDS = ("technical", "smc")


@dataclass(frozen=True)
class EvaluationConfig:
    members: tuple[str, ...] = ("technical", "smc", "logistic", "lightgbm")
    folds: int = 4
    test_bars: int = 7000
    fit_bars: int = 12000
    train_bars: int = 20000
    model_feature_set: str = "default"
    label_config: LabelConfig = field(default_factory=LabelConfig)
    fee: float = 0.001
    ensemble_kinds: tuple[str, ...] = ("skill", "stacking")
    calibration: str = "platt"
    lightgbm_trees: int = 150
    # the networks' per-fold training budget (sized for 4 folds of both networks in ~25 min on 2 busy CPU cores)
    network_preset: str = "small"
    network_epochs: int = 10
    network_steps_per_epoch: int | None = 100
    network_batch_size: int = 64
    torch_threads: int | None = 1
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["label_config"] = self.label_config.to_dict()
        return out


@dataclass
class SystemRun:
    """Out-of-sample signals of one system over all folds, aligned with bar positions."""

    name: str
    bars: list[np.ndarray] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)


def _model_member(
    name: str, candles: pd.DataFrame, features: pd.DataFrame, stop: int, cfg: EvaluationConfig, symbol: str,
    timeframe: str, say: ProgressFn,
) -> ModelMember:  # fmt: skip
    """Member ``name`` trained from scratch on bars ``[stop - train_bars, stop)`` only (nothing at or after stop)."""
    from smartmarket.features.scale_free import model_inputs
    from smartmarket.models.pipeline import train_model
    from smartmarket.models.training import EpochReport, TrainConfig

    kind = MODEL_KINDS[name]
    start = max(0, stop - cfg.train_bars)
    extra: dict[str, Any] = {}
    if kind in NETWORK_KINDS:

        def epoch_line(r: EpochReport) -> None:
            best = " *" if r.is_best else ""
            val = "" if r.validation_loss is None else f", validation {r.validation_loss:.4f}{best}"
            say(f"  {name} epoch {r.epoch}/{r.epochs}: loss {r.train_loss:.4f}{val} ({r.seconds:.0f} s)")

        extra = {
            "preset": cfg.network_preset,
            "train_config": TrainConfig(epochs=cfg.network_epochs, steps_per_epoch=cfg.network_steps_per_epoch,
                                        batch_size=cfg.network_batch_size, seed=cfg.seed),
            "progress": epoch_line,
        }  # fmt: skip
    elif kind == "lightgbm":
        extra = {"overrides": {"n_estimators": cfg.lightgbm_trees}}
    model = train_model(
        kind, model_inputs(features.iloc[start:stop].reset_index(drop=True)),
        candles.iloc[start:stop].reset_index(drop=True),
        symbol=symbol, timeframe=timeframe, feature_set=cfg.model_feature_set, label_config=cfg.label_config,
        validation=0.15, test=0.05, seed=cfg.seed, **extra,
    )  # fmt: skip
    return ModelMember(model, name=name)


def _member_record(member: ModelMember, bars: tuple[int, int], train_s: float, predict_s: float) -> dict[str, Any]:
    """What a fold's trained member was: its training bars, last learned candle, epochs, timings, validation."""
    model = member.model
    history = model.history
    best = [h["epoch"] for h in history if h.get("is_best")]
    validation = model.metrics.get("validation", {})
    return {
        "kind": model.kind,
        "train_bars": list(bars),
        "training_end_ts": member.training_end_ts(),
        "data_last_ts": model.data.get("last_ts"),  # the last candle the training call was given at all
        "context": member.context,
        "epochs_run": len(history) or None,
        "best_epoch": best[-1] if best else None,
        "train_seconds": round(train_s, 1),
        "predict_seconds": round(predict_s, 1),
        "validation_log_loss": _finite(validation.get("log_loss")),
        "validation_balanced_accuracy": _finite(validation.get("balanced_accuracy")),
    }


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch intra-op threads set to ``threads`` for the block (restored after); None leaves torch alone."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"torch threads must be >= 1, got {threads}")
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _system_config(kind: str, calibration: str) -> SignalSystemConfig:
    return SignalSystemConfig(ensemble=kind, calibration=calibration)  # type: ignore[arg-type]


def _decide(
    data: ResearchData, names: Sequence[str], probs: Mapping[str, np.ndarray], fit: tuple[int, int],
    test: tuple[int, int], kind: str, calibration: str,
) -> tuple[list[Signal], np.ndarray, dict[str, Any]]:  # fmt: skip
    """Fit a system on ``fit`` = [a, s) with outcomes known before s; decide ``test`` = [s, e)."""
    ok = np.ones(len(data.candles), dtype=bool)
    for n in names:
        ok &= np.isfinite(probs[n]).all(axis=1)
    rows = np.flatnonzero(ok & (np.arange(len(ok)) >= fit[0]) & (np.arange(len(ok)) < test[1]))
    samples = SignalSamples.build(
        rows, data.outcomes.t1[rows], data.outcomes.y[rows], {n: probs[n][rows] for n in names},
        data.regimes[rows], ts=data.candles["ts"].to_numpy(np.int64)[rows],
    )  # fmt: skip
    known = samples.known_before(test[0])
    system = SignalSystem(_system_config(kind, calibration)).fit(known, test[0])
    target = np.flatnonzero(samples.t >= test[0])
    return system.signals(samples.take(target)), rows[target], system.report()


@dataclass
class WalkForwardRuns:
    """One symbol's walk-forward before measuring: the frame, its research data, each system's out-of-sample
    signals over the test span ``[first_test, len(frame))`` and the per-fold records."""

    symbol: str
    frame: pd.DataFrame
    data: ResearchData
    runs: dict[str, SystemRun]
    folds: list[dict[str, Any]]
    first_test: int
    networks: bool


def walk_forward_runs(
    candles: pd.DataFrame, *, symbol: str, timeframe: str, config: EvaluationConfig, progress: ProgressFn | None = None
) -> WalkForwardRuns:
    """Train, fit and decide every fold (see the module docstring); nothing is measured yet."""
    from smartmarket.features.pipeline import FeaturePipeline

    cfg = config
    say = progress or (lambda _: None)
    frame = candles.reset_index(drop=True)
    n = len(frame)
    trained = [m for m in cfg.members if m in MODEL_KINDS]
    rules: list[Member] = [TechnicalMember() if m == "technical" else SMCMember() for m in cfg.members
                           if m in RULE_KINDS]  # fmt: skip
    unknown = [m for m in cfg.members if m not in MODEL_KINDS and m not in RULE_KINDS]
    if unknown:
        raise ValueError(
            f"walk-forward members must be technical, smc, logistic, lightgbm, transformer or cnn_lstm, not {unknown}"
        )
    networks = any(m in NETWORK_KINDS for m in cfg.members)
    first_test = n - cfg.folds * cfg.test_bars
    if first_test - cfg.fit_bars - cfg.label_config.horizon < 2000:
        raise ValueError(f"{n} candles are too few for {cfg.folds} folds of {cfg.test_bars} test bars")

    say(f"features ({cfg.model_feature_set}) and rule members over {n:,} candles")
    features = FeaturePipeline(cfg.model_feature_set, timeframe).batch(frame)
    rule_probs = {m.name: m.batch(frame, features) for m in rules}
    outcomes = label_outcomes(frame, cfg.label_config)
    data = ResearchData(frame, features, rule_probs, regimes_of(features), outcomes)

    systems = [f"ensemble_{k}" for k in cfg.ensemble_kinds] + list(cfg.members)
    runs = {name: SystemRun(name) for name in systems}
    folds: list[dict[str, Any]] = []
    for k in range(cfg.folds):
        s, e = first_test + k * cfg.test_bars, first_test + (k + 1) * cfg.test_bars
        fit_start = s - cfg.fit_bars
        train_stop = fit_start - cfg.label_config.horizon
        probs = dict(rule_probs)
        test_ts = [int(frame.ts.iloc[s]), int(frame.ts.iloc[e - 1])]
        fold_doc: dict[str, Any] = {"fold": k + 1, "fit": [fit_start, s], "test": [s, e], "test_ts": test_ts}
        fold_doc.update(fit_start_ts=int(frame.ts.iloc[fit_start]), members={}, systems={})
        for name in trained:
            train_start = max(0, train_stop - cfg.train_bars)
            say(f"fold {k + 1}/{cfg.folds}: training {name} on bars {train_start}–{train_stop}")
            with _torch_threads(cfg.torch_threads if name in NETWORK_KINDS else None):
                t0 = time.perf_counter()
                member = _model_member(name, frame, features, train_stop, cfg, symbol, timeframe, say)
                t1 = time.perf_counter()
                # one batched pass over the fit and test bars (plus the context rows the first fit bar needs)
                window = slice(max(0, fit_start - member.context + 1), e)
                p = np.full((n, 3), np.nan)
                p[window] = member.model.predict_frame(features.iloc[window]).to_numpy(np.float64)
                t2 = time.perf_counter()
            probs[name] = p
            record = _member_record(member, (train_start, train_stop), t1 - t0, t2 - t1)
            fold_doc["members"][name] = record
            say(f"fold {k + 1}/{cfg.folds}: {name} trained in {t1 - t0:.0f} s"
                + (f" ({record['epochs_run']} epochs, best {record['best_epoch']})" if record["epochs_run"] else "")
                + f", predicted {e - fit_start:,} bars in {t2 - t1:.0f} s")  # fmt: skip
        say(f"fold {k + 1}/{cfg.folds}: fitting systems on bars {fit_start}–{s}, testing {s}–{e}")
        for name in systems:
            # a member alone: the same system with one member and no skill gate (stacking = its recalibration)
            kind = name.removeprefix("ensemble_") if name.startswith("ensemble_") else "stacking"
            names = list(cfg.members) if name.startswith("ensemble_") else [name]
            signals, bars, report = _decide(data, names, probs, (fit_start, s), (s, e), kind, cfg.calibration)
            runs[name].signals.extend(signals)
            runs[name].bars.append(bars)
            runs[name].reports.append(report)
            fold_doc["systems"][name] = {
                "weights": (report["ensemble"] or {}).get("weights"),
                "member_skill": report["member_skill"],
                "confidence": report["confidence"]["chosen"],
                "thresholds": report["thresholds"],
            }
        folds.append(fold_doc)
    return WalkForwardRuns(symbol, frame, data, runs, folds, first_test, networks)


def run_walk_forward(
    candles: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    config: EvaluationConfig | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """The evaluation document (see the module docstring); ``progress`` receives one line per step."""
    cfg = config or EvaluationConfig()
    say = progress or (lambda _: None)
    started, wall_started = time.process_time(), time.perf_counter()
    wf = walk_forward_runs(candles, symbol=symbol, timeframe=timeframe, config=cfg, progress=say)
    frame, outcomes, first_test, n = wf.frame, wf.data.outcomes, wf.first_test, len(wf.frame)

    say("replaying signals through the backtester")
    test_span = (first_test, n)
    results = {name: measure(run, frame, outcomes, test_span, cfg, timeframe) for name, run in wf.runs.items()}
    results["buy_and_hold"] = buy_and_hold(frame, test_span, cfg, timeframe)
    doc = {
        "symbol": symbol,
        "timeframe": timeframe,
        "config": cfg.to_dict(),
        "candles": {"rows": n, "first_ts": int(frame.ts.iloc[0]), "last_ts": int(frame.ts.iloc[-1])},
        "test_span": {
            "bars": [first_test, n],
            "first_ts": int(frame.ts.iloc[first_test]),
            "last_ts": int(frame.ts.iloc[-1]),
        },
        "folds": wf.folds,
        "results": results,
        "default_choice": default_choice(results, cfg.ensemble_kinds),
        "claims": claims(results, cfg),
        "network_budget": network_budget(cfg) if wf.networks else None,
        "cpu_seconds": round(time.process_time() - started, 1),
        "wall_seconds": round(time.perf_counter() - wall_started, 1),
    }
    return doc


def network_budget(cfg: EvaluationConfig) -> dict[str, Any]:
    """The networks' per-fold training budget and architecture, as recorded in the report."""
    from smartmarket.models.networks import network_config

    kinds = [NETWORK_KINDS[m] for m in cfg.members if m in NETWORK_KINDS]
    return {
        "preset": cfg.network_preset,
        "epochs": cfg.network_epochs,
        "steps_per_epoch": cfg.network_steps_per_epoch,
        "batch_size": cfg.network_batch_size,
        "torch_threads": cfg.torch_threads,
        "max_training_windows_per_fold": (
            cfg.network_epochs * cfg.network_steps_per_epoch * cfg.network_batch_size
            if cfg.network_steps_per_epoch
            else None
        ),
        "architectures": {k: asdict(network_config(k, cfg.network_preset)) for k in kinds},
    }


# --------------------------------------------------------------------------------------------- measures


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def signal_metrics(
    signals: Sequence[Signal], bars: np.ndarray, outcomes: Any, fee: float
) -> dict[str, float | int | None]:
    """Hit rate, false-signal rate, Brier, ECE, confidence ECE and counts of one run's signals."""
    probs = np.array([s.probabilities for s in signals], dtype=np.float64).reshape(-1, 3)
    sign = np.array([1 if s.direction == "long" else -1 if s.direction == "short" else 0 for s in signals])
    y = outcomes.y[bars]
    known = ~np.isnan(y)
    active = (sign != 0) & known
    hits = signal_hit(sign[active], y[active]) if active.any() else np.zeros(0, dtype=bool)
    false = false_signal_mask(sign[active], outcomes, bars[active], fee)
    lab = known & np.isfinite(probs).all(axis=1)
    favoured = signal_direction(probs[lab]) if lab.any() else np.zeros(0, dtype=np.int64)
    cand = favoured != 0
    conf = direction_probability(probs[lab][cand], favoured[cand]) if cand.any() else np.zeros(0)
    cand_hit = signal_hit(favoured[cand], y[lab][cand]).astype(np.float64) if cand.any() else np.zeros(0)
    return {
        "decisions": len(signals),
        "signals": int((sign != 0).sum()),
        "signal_rate": _finite(float((sign != 0).mean())) if len(sign) else None,
        "hit_rate": _finite(float(hits.mean())) if hits.size else None,
        "false_signal_rate": _finite(float(false.mean())) if false.size else None,
        "brier": _finite(brier_score(probs[lab], y[lab].astype(np.int64))) if lab.any() else None,
        "ece": _finite(expected_calibration_error(probs[lab], y[lab].astype(np.int64))) if lab.any() else None,
        "confidence_ece": _finite(expected_calibration_error(conf, cand_hit)) if conf.size >= 10 else None,
        "candidates": int(cand.sum()),
    }


def _backtest(
    frame: pd.DataFrame, factory: Callable[[str], Any], cfg: EvaluationConfig, timeframe: str
) -> dict[str, Any]:
    from smartmarket.analytics import compute_metrics, monthly_returns
    from smartmarket.backtest.runner import run_backtest
    from smartmarket.engine.kernel import KernelConfig
    from smartmarket.execution.fees import FeeModel
    from smartmarket.execution.sizing import FixedFraction

    tf = Timeframe.parse(timeframe)
    config = KernelConfig(fees=FeeModel(maker=cfg.fee, taker=cfg.fee), sizer=FixedFraction(1.0))
    result = run_backtest(frame, factory, config=config, timeframe=tf, symbol="X")
    m = compute_metrics(result.equity, result.trades, tf, exposure=result.exposure,
                        traded_notional=result.traded_notional)  # fmt: skip
    monthly = monthly_returns(result.equity).returns.to_numpy()
    return {
        "trades": m.num_trades,
        "win_rate": _finite(m.win_rate),
        "sharpe": _finite(m.sharpe),
        "max_drawdown": _finite(m.max_drawdown),
        "total_return": _finite(m.total_return),
        "monthly_return_mean": _finite(float(monthly.mean())) if len(monthly) else None,
        "exposure": _finite(m.exposure),
        "fees": _finite(m.total_fees),
    }


def replay_strategy(
    run: SystemRun, frame: pd.DataFrame, span: tuple[int, int], cfg: EvaluationConfig, max_size: float = 1.0
) -> Callable[[], Any]:
    """A maker of fresh ``ReplaySignals`` trading ``run``'s non-flat signals over ``frame``'s bars ``span``."""
    from smartmarket.strategies.ensemble import ReplaySignals

    bars = np.concatenate(run.bars) if run.bars else np.zeros(0, dtype=np.int64)
    ts = frame["ts"].to_numpy(np.int64)
    replay = {
        int(ts[b]): (1 if s.direction == "long" else -1, str(s.strength), float(s.confidence))
        for b, s in zip(bars, run.signals, strict=True)
        if s.direction != "flat"
    }
    scale_all = barrier_scale(frame, cfg.label_config.scale, cfg.label_config.scale_window)
    scale = {int(ts[i]): float(scale_all[i]) for i in range(span[0], span[1])}
    lc = cfg.label_config

    def make() -> ReplaySignals:
        return ReplaySignals(replay, scale, horizon=lc.horizon, take_profit=lc.take_profit, stop_loss=lc.stop_loss,
                             max_size=max_size)  # fmt: skip

    return make


def measure(
    run: SystemRun, frame: pd.DataFrame, outcomes: Any, span: tuple[int, int], cfg: EvaluationConfig, timeframe: str
) -> dict[str, Any]:
    """Signal metrics and the replayed backtest of one system over the test span."""
    bars = np.concatenate(run.bars) if run.bars else np.zeros(0, dtype=np.int64)
    metrics: dict[str, Any] = dict(signal_metrics(run.signals, bars, outcomes, cfg.fee))
    strategy = replay_strategy(run, frame, span, cfg)
    test = frame.iloc[span[0] : span[1]].reset_index(drop=True)
    metrics.update(_backtest(test, lambda _symbol: strategy(), cfg, timeframe))
    weights = [r["ensemble"]["weights"] for r in run.reports if r.get("ensemble")]
    if weights:
        metrics["mean_weights"] = {k: float(np.mean([w[k] for w in weights])) for k in weights[0]}
    return metrics


def buy_and_hold(frame: pd.DataFrame, span: tuple[int, int], cfg: EvaluationConfig, timeframe: str) -> dict[str, Any]:
    from smartmarket.strategies.buy_hold import BuyHold

    test = frame.iloc[span[0] : span[1]].reset_index(drop=True)
    return _backtest(test, lambda _symbol: BuyHold(), cfg, timeframe)


def default_choice(results: Mapping[str, Mapping[str, Any]], kinds: Sequence[str]) -> dict[str, Any]:
    """Out-of-sample Brier of each ensemble kind (lower is better)."""
    briers = {k: results.get(f"ensemble_{k}", {}).get("brier") for k in kinds}
    valid = {k: v for k, v in briers.items() if v is not None}
    return {"brier": briers, "best_by_brier": min(valid, key=lambda k: valid[k]) if valid else None}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b - 1.0


def claims(results: Mapping[str, Mapping[str, Any]], cfg: EvaluationConfig) -> dict[str, Any]:
    """The promised "+40–60 % win rate" and "−70 % false signals", each against the best single member."""
    ensemble = results.get("ensemble_skill", {})
    singles = {m: results[m] for m in cfg.members if m in results}
    win = {m: float(r["win_rate"]) for m, r in singles.items() if r.get("win_rate") is not None and r.get("trades")}
    fsr = {m: float(r["false_signal_rate"]) for m, r in singles.items() if r.get("false_signal_rate") is not None}
    best_win = max(win, key=lambda m: win[m]) if win else None
    best_fsr = min(fsr, key=lambda m: fsr[m]) if fsr else None
    win_change = _ratio(ensemble.get("win_rate"), win[best_win] if best_win else None)
    fsr_change = _ratio(ensemble.get("false_signal_rate"), fsr[best_fsr] if best_fsr else None)
    return {
        "best_member_by_win_rate": best_win,
        "win_rate_change": win_change,
        "win_rate_claim_holds": None if win_change is None else bool(win_change >= 0.40),
        "best_member_by_false_signal_rate": best_fsr,
        "false_signal_rate_change": fsr_change,
        "false_signal_claim_holds": None if fsr_change is None else bool(fsr_change <= -0.70),
    }


# --------------------------------------------------------------------------------------------- report


def format_value(value: Any, kind: str = "f") -> str:
    """One cell of the signal reports: ``%`` a fraction as percent, ``d`` a count, ``ci`` an interval, else 3
    decimals; ``n/a`` for None."""
    if value is None:
        return "n/a"
    if kind == "%":
        return f"{value * 100:.1f}%"
    if kind == "d":
        return f"{int(value):,}"
    if kind == "ci":
        return f"[{value[0]:.2f}, {value[1]:.2f}]"
    return f"{value:.3f}"


_fmt = format_value  # the short name the report's table rows use


def markdown_report(doc: Mapping[str, Any], command: str) -> str:
    """The evaluation as Markdown: results table, claims, default choice, per-fold weights."""
    from smartmarket.core.timeutil import format_ms

    span = doc["test_span"]
    lines = [
        f"# Signal evaluation: {doc['symbol']} {doc['timeframe']} (walk-forward, out of sample)",
        "",
        f"Generated by `{command}` ({doc['cpu_seconds']} s CPU"
        + (f", {doc['wall_seconds']:.0f} s wall" if doc.get("wall_seconds") is not None else "") + ").",
        "",
        f"Test span: {format_ms(span['first_ts'])} → {format_ms(span['last_ts'])} "
        f"({span['bars'][1] - span['bars'][0]:,} bars, {len(doc['folds'])} folds); fees "
        f"{doc['config']['fee'] * 100:.2f}% per side. Members: {', '.join(doc['config']['members'])}.",
        "",
    ]  # fmt: skip
    budget = doc.get("network_budget")
    if budget:
        contexts = ", ".join(f"{k} {a['context']}" for k, a in budget["architectures"].items())
        steps = budget["steps_per_epoch"]
        lines += [
            f"**Networks trained under a CPU budget**, from scratch in every fold: preset '{budget['preset']}' "
            f"(context {contexts} bars), at most {budget['epochs']} epochs"
            + (f" of {steps} batches" if steps else "")
            + f" of {budget['batch_size']} windows (early stopping on their own validation), torch threads "
            f"{budget['torch_threads'] or 'default'}. More training might change the networks' figures.",
            "",
        ]  # fmt: skip
    lines += [
        "| system | signals | hit rate | false-signal rate | Brier | ECE | conf. ECE | trades | win rate | Sharpe "
        "| max DD | mean monthly | total return |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in doc["results"].items():
        lines.append(
            f"| {name} | {_fmt(r.get('signals'), 'd')} | {_fmt(r.get('hit_rate'), '%')} | "
            f"{_fmt(r.get('false_signal_rate'), '%')} | {_fmt(r.get('brier'))} | {_fmt(r.get('ece'))} | "
            f"{_fmt(r.get('confidence_ece'))} | {_fmt(r.get('trades'), 'd')} | {_fmt(r.get('win_rate'), '%')} | "
            f"{_fmt(r.get('sharpe'))} | {_fmt(r.get('max_drawdown'), '%')} | {_fmt(r.get('monthly_return_mean'), '%')} "
            f"| {_fmt(r.get('total_return'), '%')} |"
        )
    c = doc["claims"]
    lines += [
        "",
        "## The promised ratios (ensemble `skill` vs the best single member)",
        "",
        f"- Win rate: best member {c['best_member_by_win_rate']}, change {_fmt(c['win_rate_change'], '%')} "
        f"(claim: +40–60%) → **{_verdict(c['win_rate_claim_holds'])}**",
        f"- False-signal rate: best member {c['best_member_by_false_signal_rate']}, change "
        f"{_fmt(c['false_signal_rate_change'], '%')} (claim: −70%) → **{_verdict(c['false_signal_claim_holds'])}**",
        "",
        "## Default ensemble",
        "",
        f"Out-of-sample Brier by kind: {doc['default_choice']['brier']}; "
        f"best: {doc['default_choice']['best_by_brier']}.",
        "",
    ]
    trained = [(fold["fold"], name, r) for fold in doc["folds"] for name, r in (fold.get("members") or {}).items()]
    if trained:
        lines += [
            "## Trained members per fold (training ends before the fold's fit span)",
            "",
            "| fold | member | training bars | last learned candle | fit span starts | epochs (best) "
            "| validation log-loss | validation bal. acc. | train s | predict s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        fit_ts = {fold["fold"]: fold.get("fit_start_ts") for fold in doc["folds"]}
        for k, name, r in trained:
            end, fit = r.get("training_end_ts"), fit_ts.get(k)
            epochs = f"{r['epochs_run']} ({r['best_epoch']})" if r.get("epochs_run") else "n/a"
            lines.append(
                f"| {k} | {name} | {r['train_bars'][0]:,}–{r['train_bars'][1]:,} "
                f"| {format_ms(end) if end is not None else 'n/a'} | {format_ms(fit) if fit is not None else 'n/a'} "
                f"| {epochs} | {_fmt(r.get('validation_log_loss'))} | {_fmt(r.get('validation_balanced_accuracy'))} "
                f"| {r['train_seconds']:.0f} | {r['predict_seconds']:.0f} |"
            )
        lines.append("")
    lines += ["## Per-fold ensemble weights (skill) and member skill (nats/sample ± SE on the ensemble slice)", ""]
    for fold in doc["folds"]:
        sysdoc = fold["systems"].get("ensemble_skill", {})
        skill = ", ".join(f"{k} {v['nats']:+.4f}±{v['se']:.4f}" for k, v in (sysdoc.get("member_skill") or {}).items())
        weights = ", ".join(f"{k} {v:.2f}" for k, v in (sysdoc.get("weights") or {}).items())
        lines.append(
            f"- fold {fold['fold']} (test {format_ms(fold['test_ts'][0])} → {format_ms(fold['test_ts'][1])}): "
            f"weights {weights}; skill {skill}; confidence {sysdoc.get('confidence')}; thresholds "
            f"{sysdoc.get('thresholds')}"
        )
    return "\n".join(lines) + "\n"


def _verdict(holds: bool | None) -> str:
    return "undefined (no signals or trades to compare)" if holds is None else "holds" if holds else "does not hold"


__all__ = [
    "MODEL_KINDS",
    "NETWORK_KINDS",
    "EvaluationConfig",
    "SystemRun",
    "WalkForwardRuns",
    "buy_and_hold",
    "claims",
    "default_choice",
    "format_value",
    "markdown_report",
    "measure",
    "network_budget",
    "replay_strategy",
    "run_walk_forward",
    "signal_metrics",
    "walk_forward_runs",
]
