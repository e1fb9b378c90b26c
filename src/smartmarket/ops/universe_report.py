"""The universe report: every signal system traded over several symbols as one account, against honest baselines.

``universe_report(frames, timeframe, config)`` runs the research walk-forward (``backtest.signal_evaluation``)
on each symbol separately — members trained per fold on earlier bars, the signal system fitted on outcomes known
before each test fold, test bars decided once — and then trades each system's out-of-sample signals over **all
symbols in one shared account** through the backtest kernel, with fees on both sides:

* **capital**: equal split, fixed at the start: each symbol's positions are sized on ``1/N`` of the account's
  equity (the ensemble's strength still scales them: 1/3, 2/3 or all of that share); with ``vol_target`` each
  symbol's position is instead sized so that its forecast volatility is ``vol_target / N`` a year (EWMA sizer, or
  HAR-RV with ``vol_model="har"``, for both vol-targeting sizers; ``execution.sizing.annual_volatility_target``,
  capped at ``max_leverage / N``), the strength scaling that;
* **baselines**, always: ``buy_and_hold`` (equal weight, ``1/N`` of the equity in each symbol at the first test
  bar, never rebalanced) and ``buy_and_hold_vol_target`` (each symbol held long, sized for ``baseline_vol_target
  / N`` annualised volatility, resized outside a 10 % band);
* test spans: each symbol's last ``folds x test_bars`` bars (the same calendar span when the symbols' candles end
  together and have no gaps); the warm-up bars before it only prime the sizers' volatility estimates.

Per system: **IC** — the Spearman rank correlation of the forecast ``P(up) − P(down)`` with the realised forward
log return over the label horizon, computed per symbol (ranks standardised within the symbol) and pooled by
timestamp; its **standard error** is Newey-West over ``horizon`` lags of the per-timestamp series (overlapping
horizons and cross-symbol correlation both widen it). **Brier skill** — ``1 − Brier / Brier(base rates)``, the
base rates being the class frequencies of the fold's fit-span outcomes known before the fold (3 classes, pooled
over symbols). **Sharpe** — annualised, of the account's per-bar returns after fees, with a percentile
confidence interval (95 %) from a circular **block bootstrap** (block length recorded; default
``max(horizon, ceil(n^(1/3)))`` bars). **Deflated Sharpe** — Bailey & López de Prado's DSR for the number of
systems tried (every non-baseline system; the variance of their per-bar Sharpes), given to the baselines too.
**Max drawdown**, **turnover** (traded notional / mean equity), **total return** and closed **trades**.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.analytics import bar_returns, compute_metrics, deflated_sharpe_from_returns, periods_per_year
from smartmarket.analytics.deflated import return_moments
from smartmarket.analytics.significance import newey_west_variance, sharpe_bootstrap_ci
from smartmarket.backtest.signal_evaluation import (
    EvaluationConfig,
    WalkForwardRuns,
    network_budget,
    replay_strategy,
    walk_forward_runs,
)
from smartmarket.core.errors import ConfigError
from smartmarket.core.types import Timeframe
from smartmarket.signals.calibration import brier_score

ProgressFn = Callable[[str], None]
BASELINES = ("buy_and_hold", "buy_and_hold_vol_target")
WARMUP_BARS = 200  # bars before the test span that prime a volatility sizer (its EWMA window is 75 returns)


@dataclass(frozen=True)
class UniverseConfig:
    """What the universe report runs: the per-symbol walk-forward and how the account is sized and measured."""

    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    vol_target: float | None = None  # annualised; None: the systems trade a fixed 1/N share (by strength)
    baseline_vol_target: float = 0.2  # the vol-targeted buy-and-hold's annualised target
    max_leverage: float = 1.0
    rebalance_band: float = 0.1
    vol_model: str = "ewma"  # the volatility forecast of both vol-targeting sizers (execution.sizing.VOL_MODELS)
    block: int | None = None  # bootstrap block length in bars (None: max(horizon, ceil(n^(1/3))))
    resamples: int = 1000
    level: float = 0.05
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "evaluation": self.evaluation.to_dict(),
            "vol_target": self.vol_target,
            "baseline_vol_target": self.baseline_vol_target,
            "max_leverage": self.max_leverage,
            "rebalance_band": self.rebalance_band,
            "vol_model": self.vol_model,
            "block": self.block,
            "resamples": self.resamples,
            "level": self.level,
            "seed": self.seed,
        }


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# --------------------------------------------------------------------------------------------- forecasts


def _forecast_rows(wf: WalkForwardRuns, name: str, horizon: int) -> pd.DataFrame:
    """One row per decided test bar of ``name`` on ``wf.symbol``: ts, forecast, forward return, label, probs,
    and the base-rate probabilities of its fold."""
    run = wf.runs[name]
    bars = np.concatenate(run.bars) if run.bars else np.zeros(0, dtype=np.int64)
    probs = np.array([s.probabilities for s in run.signals], dtype=np.float64).reshape(-1, 3)
    close = wf.frame["close"].to_numpy(np.float64)
    ts = wf.frame["ts"].to_numpy(np.int64)
    n = len(close)
    ahead = bars + horizon
    forward = np.full(len(bars), np.nan)
    ok = ahead < n
    forward[ok] = np.log(close[ahead[ok]] / close[bars[ok]])
    y = wf.data.outcomes.y[bars]
    t1 = wf.data.outcomes.t1
    base = np.full((len(bars), 3), np.nan)
    for fold in wf.folds:
        fit_start, s = fold["fit"]
        e = fold["test"][1]
        fit = np.arange(fit_start, s)
        labels = wf.data.outcomes.y[fit]
        known = ~np.isnan(labels) & (t1[fit] >= 0) & (t1[fit] < s)
        counts = np.bincount(labels[known].astype(np.int64), minlength=3)[:3].astype(np.float64)
        rates = (counts + 1.0) / (counts.sum() + 3.0)  # Laplace: no class gets probability 0
        base[(bars >= s) & (bars < e)] = rates
    return pd.DataFrame({
        "ts": ts[bars], "forecast": probs[:, 2] - probs[:, 0], "forward": forward, "y": y,
        "p0": probs[:, 0], "p1": probs[:, 1], "p2": probs[:, 2], "b0": base[:, 0], "b1": base[:, 1], "b2": base[:, 2],
    })  # fmt: skip


def information_coefficient(rows: Sequence[pd.DataFrame], horizon: int) -> tuple[float | None, float | None, int]:
    """Spearman IC pooled over symbols by timestamp, its Newey-West standard error, and the rows used."""
    parts = []
    for frame in rows:
        ok = frame[np.isfinite(frame["forecast"]) & np.isfinite(frame["forward"])]
        if len(ok) < 3:
            continue
        a = ok["forecast"].rank().to_numpy(np.float64)
        b = ok["forward"].rank().to_numpy(np.float64)
        if a.std() == 0 or b.std() == 0:
            continue  # a constant forecast carries no ranking
        za, zb = (a - a.mean()) / a.std(), (b - b.mean()) / b.std()
        parts.append(pd.DataFrame({"ts": ok["ts"].to_numpy(), "product": za * zb}))
    if not parts:
        return None, None, 0
    pooled = pd.concat(parts)
    series = pooled.groupby("ts")["product"].mean().sort_index().to_numpy(np.float64)
    if len(series) < 3:
        return None, None, len(pooled)
    ic = float(series.mean())
    se = math.sqrt(max(newey_west_variance(series, horizon), 0.0) / len(series))
    return ic, se, len(pooled)


def brier_skill(rows: Sequence[pd.DataFrame]) -> float | None:
    """``1 − Brier(system) / Brier(fold base rates)`` over every labelled decided bar of every symbol."""
    frame = pd.concat(rows) if rows else pd.DataFrame()
    if frame.empty:
        return None
    p = frame[["p0", "p1", "p2"]].to_numpy(np.float64)
    b = frame[["b0", "b1", "b2"]].to_numpy(np.float64)
    y = frame["y"].to_numpy(np.float64)
    ok = ~np.isnan(y) & np.isfinite(p).all(axis=1) & np.isfinite(b).all(axis=1)
    if not ok.any():
        return None
    reference = brier_score(b[ok], y[ok].astype(np.int64))
    if not reference > 0:
        return None
    return float(1.0 - brier_score(p[ok], y[ok].astype(np.int64)) / reference)


# --------------------------------------------------------------------------------------------- account


def _kernel_config(fee: float, sizer: Any) -> Any:
    from smartmarket.engine.kernel import KernelConfig
    from smartmarket.execution.fees import FeeModel

    return KernelConfig(fees=FeeModel(maker=fee, taker=fee), sizer=sizer)


def _account(
    test: Mapping[str, pd.DataFrame], warm: Mapping[str, pd.DataFrame], makers: Mapping[str, Callable[[], Any]],
    config: Any, tf: Timeframe,
) -> tuple[Any, Any]:  # fmt: skip
    from smartmarket.backtest.runner import run_backtest

    result = run_backtest(dict(test), lambda symbol: makers[symbol](), config=config, timeframe=tf, warmup=warm)
    metrics = compute_metrics(result.equity, result.trades, tf, exposure=result.exposure,
                              traded_notional=result.traded_notional)  # fmt: skip
    return result, metrics


def _account_doc(result: Any, metrics: Any) -> dict[str, Any]:
    return {
        "total_return": _finite(metrics.total_return),
        "max_drawdown": _finite(metrics.max_drawdown),
        "turnover": _finite(metrics.turnover),
        "trades": int(metrics.num_trades),
        "exposure": _finite(metrics.exposure),
        "volatility": _finite(metrics.volatility),
        "fees": _finite(metrics.total_fees),
    }


def universe_report(
    frames: Mapping[str, pd.DataFrame],
    timeframe: str,
    config: UniverseConfig | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """The universe report document (see the module docstring); ``frames``: symbol → candles (oldest first)."""
    from smartmarket.execution.sizing import FixedFraction, annual_volatility_target
    from smartmarket.strategies.buy_hold import BuyHold

    cfg = config or UniverseConfig()
    ev = cfg.evaluation
    say = progress or (lambda _: None)
    if not frames:
        raise ConfigError("the universe report needs at least one symbol", hint="e.g. --symbols BTCUSDT,ETHUSDT")
    tf = Timeframe.parse(timeframe)
    ppy = periods_per_year(tf)
    started, wall_started = time.process_time(), time.perf_counter()
    symbols = list(frames)
    share = 1.0 / len(symbols)
    wfs: dict[str, WalkForwardRuns] = {}
    for sym in symbols:
        try:
            wfs[sym] = walk_forward_runs(frames[sym], symbol=sym, timeframe=str(tf), config=ev,
                                         progress=_prefixed(say, sym))  # fmt: skip
        except ValueError as exc:
            if "too few" not in str(exc):
                raise
            raise ConfigError(
                f"{sym}: {exc}", hint="use fewer --walk-forward folds or fewer --test-bars/--fit-bars"
            ) from exc
    test = {s: wf.frame.iloc[wf.first_test :].reset_index(drop=True) for s, wf in wfs.items()}
    # HAR-RV's fit window is longer than the EWMA's: warm it up as far as it looks back (the data allowing)
    n_warm = max(WARMUP_BARS, annual_volatility_target(0.2, tf, model=cfg.vol_model).warmup_bars())
    warm = {s: wf.frame.iloc[max(0, wf.first_test - n_warm) : wf.first_test] for s, wf in wfs.items()}

    if cfg.vol_target is not None:
        system_sizer: Any = annual_volatility_target(cfg.vol_target, tf, max_leverage=cfg.max_leverage,
                                                     band=cfg.rebalance_band, share=share,
                                                     model=cfg.vol_model)  # fmt: skip
        max_size = 1.0  # the sizer holds the 1/N share; the strength scales its budget
    else:
        system_sizer, max_size = FixedFraction(1.0), share  # decision size = 1/N x strength
    horizon = ev.label_config.horizon
    names = list(next(iter(wfs.values())).runs)
    systems: dict[str, dict[str, Any]] = {}
    returns: dict[str, np.ndarray] = {}
    for name in names:
        say(f"{name}: trading the universe as one account")
        makers = {s: replay_strategy(wf.runs[name], wf.frame, (wf.first_test, len(wf.frame)), ev, max_size)
                  for s, wf in wfs.items()}  # fmt: skip
        result, metrics = _account(test, warm, makers, _kernel_config(ev.fee, system_sizer), tf)
        rows = [_forecast_rows(wf, name, horizon) for wf in wfs.values()]
        ic, ic_se, ic_n = information_coefficient(rows, horizon)
        active = sum(int(sum(1 for s in wf.runs[name].signals if s.direction != "flat")) for wf in wfs.values())
        returns[name] = bar_returns(result.equity)
        systems[name] = {
            "ic": ic, "ic_se": ic_se, "ic_rows": ic_n, "brier_skill": brier_skill(rows), "signals": active,
            **_account_doc(result, metrics),
        }  # fmt: skip

    say("baselines: buy_and_hold and buy_and_hold_vol_target")
    hold = {s: BuyHold for s in symbols}
    result, metrics = _account(test, warm, hold, _kernel_config(ev.fee, FixedFraction(share)), tf)
    returns["buy_and_hold"] = bar_returns(result.equity)
    systems["buy_and_hold"] = {"ic": None, "ic_se": None, "brier_skill": None, "signals": None,
                               **_account_doc(result, metrics)}  # fmt: skip
    vt = annual_volatility_target(cfg.baseline_vol_target, tf, max_leverage=cfg.max_leverage,
                                  band=cfg.rebalance_band, share=share, model=cfg.vol_model)  # fmt: skip
    result, metrics = _account(test, warm, hold, _kernel_config(ev.fee, vt), tf)
    returns["buy_and_hold_vol_target"] = bar_returns(result.equity)
    systems["buy_and_hold_vol_target"] = {"ic": None, "ic_se": None, "brier_skill": None, "signals": None,
                                          **_account_doc(result, metrics)}  # fmt: skip

    n_obs = max(len(r) for r in returns.values())
    block = cfg.block or max(horizon, math.ceil(n_obs ** (1 / 3)))
    tried = list(names)
    per_bar = [return_moments(returns[n]).sharpe for n in tried]
    finite = [s for s in per_bar if s is not None]
    variance = float(np.var(finite, ddof=1)) if len(finite) >= 2 else 0.0
    for name, r in returns.items():
        sharpe = _sharpe(r, ppy)
        ci = sharpe_bootstrap_ci(r, block=block, periods_per_year=ppy, resamples=cfg.resamples, level=cfg.level,
                                 seed=cfg.seed)  # fmt: skip
        dsr = deflated_sharpe_from_returns(r, n_trials=max(1, len(tried)), sharpe_variance=variance)
        systems[name].update(sharpe=sharpe, sharpe_ci=list(ci) if ci else None, deflated_sharpe=_finite(dsr))

    reference = systems["buy_and_hold_vol_target"]["sharpe"]
    verdicts = {
        n: None if systems[n]["sharpe"] is None or reference is None else bool(systems[n]["sharpe"] > reference)
        for n in names
    }
    first = wfs[symbols[0]]
    capital = f"one account, equal split: each of the {len(symbols)} symbols trades on 1/{len(symbols)} of the equity"
    if cfg.vol_target is not None:
        capital += f", sized for {cfg.vol_target:g}/{len(symbols)} annualised volatility"
    return {
        "symbols": symbols,
        "timeframe": str(tf),
        "capital": capital,
        "config": cfg.to_dict(),
        "test_spans": {s: [int(test[s]["ts"].iloc[0]), int(test[s]["ts"].iloc[-1]), len(test[s])] for s in symbols},
        "folds": {
            s: [{k: f[k] for k in ("fold", "fit", "test", "test_ts")} for f in wf.folds] for s, wf in wfs.items()
        },
        "members": {s: {f["fold"]: f["members"] for f in wf.folds} for s, wf in wfs.items()},
        "bootstrap": {
            "method": "circular block bootstrap of per-bar account returns",
            "block_bars": block,
            "resamples": cfg.resamples,
            "level": 1 - cfg.level,
        },
        "deflation": {"n_trials": len(tried), "sharpe_variance_per_bar": variance, "systems_tried": tried},
        "systems": systems,
        "beats_buy_and_hold_vol_target": verdicts,
        "network_budget": network_budget(ev) if first.networks else None,
        "cpu_seconds": round(time.process_time() - started, 1),
        "wall_seconds": round(time.perf_counter() - wall_started, 1),
    }


def _prefixed(say: ProgressFn, symbol: str) -> ProgressFn:
    def line(text: str) -> None:
        say(f"{symbol}: {text}")

    return line


def _sharpe(returns: np.ndarray, ppy: float) -> float | None:
    from smartmarket.analytics.metrics import annualised_sharpe

    return _finite(annualised_sharpe(returns, ppy))


# --------------------------------------------------------------------------------------------- report


def _f(value: Any, kind: str = "f") -> str:
    from smartmarket.backtest.signal_evaluation import format_value

    return format_value(value, kind)


def markdown_report(doc: Mapping[str, Any], command: str) -> str:
    """The universe report as Markdown: command, set-up, one row per system, the plain verdicts."""
    from smartmarket.core.timeutil import format_ms

    ev = doc["config"]["evaluation"]
    spans = doc["test_spans"]
    first = min(v[0] for v in spans.values())
    last = max(v[1] for v in spans.values())
    boot = doc["bootstrap"]
    lines = [
        f"# Universe report: {', '.join(doc['symbols'])} {doc['timeframe']} (walk-forward, out of sample)",
        "",
        f"Generated by `{command}` ({doc['cpu_seconds']} s CPU, {doc['wall_seconds']:.0f} s wall).",
        "",
        f"Test span {format_ms(first)} → {format_ms(last)}: each symbol's last {ev['folds']} × {ev['test_bars']:,} "
        f"bars; members trained per fold on at most {ev['train_bars']:,} earlier bars, the signal system fitted on "
        f"{ev['fit_bars']:,} bars of known outcomes before each fold. Fees {ev['fee'] * 100:.2f}% per side. "
        f"Members: {', '.join(ev['members'])}. {doc['capital']}.",
        "",
        f"Baselines: `buy_and_hold` (equal weight, never rebalanced) and `buy_and_hold_vol_target` (each symbol "
        f"sized for {doc['config']['baseline_vol_target']:g}/{len(doc['symbols'])} annualised volatility, "
        f"{doc['config'].get('vol_model', 'ewma').upper()} forecast, "
        f"leverage cap {doc['config']['max_leverage']:g}/{len(doc['symbols'])}).",
        "",
        f"Sharpe: annualised, per-bar account returns after fees; CI {boot['level'] * 100:.0f}% from a "
        f"{boot['method']} (blocks of {boot['block_bars']} bars, {boot['resamples']} resamples). Deflated Sharpe: "
        f"DSR for {doc['deflation']['n_trials']} systems tried. IC: Spearman of P(up) − P(down) with the "
        f"{ev['label_config']['horizon']}-bar forward log return, ± Newey-West SE. Brier skill: vs the fold's "
        "base rates (3 classes).",
        "",
    ]  # fmt: skip
    spans_text = "; ".join(
        f"{s} {format_ms(v[0], short=True)} → {format_ms(v[1], short=True)}" for s, v in spans.items()
    )
    lines += [f"Per-symbol test spans (UTC): {spans_text}.", ""]
    budget = doc.get("network_budget")
    if budget:
        steps = budget["steps_per_epoch"]
        lines += [
            f"**Networks trained under a CPU budget** in every fold: preset '{budget['preset']}', at most "
            f"{budget['epochs']} epochs" + (f" of {steps} batches" if steps else "")
            + f" of {budget['batch_size']} windows, torch threads {budget['torch_threads'] or 'default'}.",
            "",
        ]  # fmt: skip
    lines += [
        "| system | Sharpe | Sharpe 95% CI | deflated Sharpe | IC ± SE | Brier skill | max DD | turnover "
        "| total return | trades |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in doc["systems"].items():
        ic = "n/a" if r.get("ic") is None else f"{r['ic']:+.4f} ± {r['ic_se']:.4f}"
        lines.append(
            f"| {name} | {_f(r['sharpe'])} | {_f(r['sharpe_ci'], 'ci') if r['sharpe_ci'] else 'n/a'} "
            f"| {_f(r['deflated_sharpe'])} | {ic} | {_f(r['brier_skill'])} | {_f(r['max_drawdown'], '%')} "
            f"| {_f(r['turnover'], 'f')} | {_f(r['total_return'], '%')} | {_f(r['trades'], 'd')} |"
        )
    ref = doc["systems"]["buy_and_hold_vol_target"]["sharpe"]
    beat = [n for n, v in doc["beats_buy_and_hold_vol_target"].items() if v]
    lost = [n for n, v in doc["beats_buy_and_hold_vol_target"].items() if v is False]
    lines += [
        "",
        f"## Against volatility-targeted buy-and-hold (Sharpe {_f(ref)}, after fees)",
        "",
        f"- Beat it on Sharpe: {', '.join(beat) if beat else 'none'}.",
        f"- Did not: {', '.join(lost) if lost else 'none'}.",
        "",
        "A point comparison: where the Sharpe intervals overlap the difference is not established.",
        "",
    ]
    if not budget:
        lines += ["The networks (transformer, cnn_lstm) were not run here: pass them in --members (with a budget).", ""]
    return "\n".join(lines) + "\n"


__all__ = [
    "BASELINES",
    "UniverseConfig",
    "brier_skill",
    "information_coefficient",
    "markdown_report",
    "universe_report",
]
