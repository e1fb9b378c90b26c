"""Walk-forward comparison of volatility forecasters (``compare-models --target volatility``).

Folds are the purged, embargoed rolling walk-forward of ``models.splits`` (each target's end bar ``t + H`` is its
``t1``; embargo = ``H``), laid out by ``models.compare.walk_forward_layout``. Every forecaster is fitted on the
training bars of a fold (LightGBM stops early on its validation bars) and scored on the *same* test bars.

Measures per fold: mean QLIKE and mean squared error of the log-variance; the summary gives each as mean ± standard
error across folds (sample std, ddof = 1, over √folds). Against HAR-RV, a Diebold–Mariano test on the per-sample
loss differences of all test bars in time order, with a Newey–West (Bartlett) variance of lag ``5 H`` (targets over
``H`` bars overlap, and volatility losses stay correlated for longer), normal p-value; negative means the model's
loss is lower than HAR-RV's.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smartmarket.core.errors import ConfigError, NotFoundError
from smartmarket.models.compare import json_safe, walk_forward_layout
from smartmarket.models.splits import walk_forward
from smartmarket.models.volatility import (
    VOLATILITY_KINDS,
    VOLATILITY_LABELS,
    VolatilityData,
    qlike,
    squared_log_error,
    volatility_data,
    volatility_forecaster,
)

if TYPE_CHECKING:
    import pandas as pd

REFERENCE = "har"
DM_LAG_HORIZONS = 5


@dataclass(frozen=True)
class VolatilitySetup:
    """How a volatility comparison was run: enough to repeat it."""

    command: str
    symbol: str
    timeframe: str
    horizon: int
    feature_set: str
    n_features: int
    walk_forward: dict[str, Any]
    data: dict[str, Any]
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    code_version: dict[str, Any] = field(default_factory=dict)
    generated: str = ""
    elapsed_s: float = 0.0


def newey_west_se(d: np.ndarray, lag: int) -> float:
    """Standard error of the mean of ``d`` with a Bartlett-kernel (Newey–West) long-run variance of ``lag``."""
    d = np.asarray(d, dtype=np.float64)
    n = d.size
    if n < 2:
        return math.nan
    e = d - d.mean()
    var = float(e @ e) / n
    for k in range(1, min(lag, n - 1) + 1):
        var += 2.0 * (1.0 - k / (lag + 1)) * float(e[k:] @ e[:-k]) / n
    return math.sqrt(max(var, 0.0) / n)


def diebold_mariano(loss: np.ndarray, reference: np.ndarray, lag: int) -> dict[str, float]:
    """Mean loss difference ``loss − reference``, its Newey–West standard error, the z statistic, two-sided p."""
    d = np.asarray(loss, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    mean = float(d.mean()) if d.size else math.nan
    se = newey_west_se(d, lag)
    z = mean / se if se > 0 else math.nan
    p = math.erfc(abs(z) / math.sqrt(2.0)) if math.isfinite(z) else math.nan
    return {"mean_difference": mean, "se": se, "z": z, "p_value": p, "lag": lag, "n": int(d.size)}


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else math.nan
    return float(arr.mean()), se


def evaluate_volatility(
    data: VolatilityData,
    *,
    folds: int,
    kinds: Sequence[str] = VOLATILITY_KINDS,
    seed: int = 0,
    network: Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Fit and score ``kinds`` on the last ``folds`` walk-forward folds of ``data``.

    ``network``: options of the Transformer (preset, epochs, steps_per_epoch, batch_size). Returns the fold rows,
    the per-sample test losses per kind (``qlike``/``mse``/``bar``, time order) and the layout used. Raises
    ``ConfigError`` when the data cannot hold the folds.
    """
    if folds < 1:
        raise ConfigError(f"--folds must be >= 1, got {folds}")
    kinds = list(dict.fromkeys(kinds))
    if not kinds:
        raise ConfigError("no volatility forecaster to compare", hint="e.g. --vol-models constant,ewma,har,lightgbm")
    network = dict(network or {})
    context = 1
    for kind in kinds:
        model = volatility_forecaster(kind, **(network if kind == "transformer" else {}))  # unknown kinds fail now
        context = max(context, int(getattr(model, "context", 1)))
    eligible = data.eligible(context)
    if not eligible.any():
        raise NotFoundError("no bar has a defined target and complete inputs: too little data")
    try:
        layout = walk_forward_layout(data.n, folds, first_usable=int(np.argmax(eligible)), embargo=data.horizon)
    except ValueError as exc:
        raise ConfigError(str(exc), hint="use more data (--start/--last) or fewer --folds") from exc
    splits = walk_forward(data.t1, layout, eligible=eligible)
    rows: list[dict[str, Any]] = []
    losses: dict[str, dict[str, list[np.ndarray]]] = {k: {"qlike": [], "mse": [], "bar": []} for k in kinds}
    hyper: dict[str, Any] = {}
    for split in splits:
        if split.train.size == 0 or split.test.size == 0:
            continue
        y = data.target[split.test]
        for kind in kinds:
            started = time.perf_counter()
            options = network if kind == "transformer" else {}
            model = volatility_forecaster(kind, seed=seed, **options).fit(data, split.train, split.validation)
            forecast = model.predict(data, split.test)
            q, m = qlike(y, forecast), squared_log_error(y, forecast)
            smearing = float(getattr(model, "smearing", 0.0))
            losses[kind]["qlike"].append(q)
            losses[kind]["mse"].append(m)
            losses[kind]["bar"].append(split.test)
            hyper.setdefault(kind, []).append(model.hyperparameters())
            rows.append({
                "fold": split.fold, "kind": kind, "n": int(split.test.size), "n_train": int(split.train.size),
                "test_first_bar": int(split.test[0]), "test_last_bar": int(split.test[-1]),
                "qlike": float(np.mean(q)), "mse_log": float(np.mean(m)), "smearing": smearing,
                "mse_log_no_smearing": float(np.mean(squared_log_error(y, forecast - smearing))),
                "mean_log_forecast": float(np.mean(forecast)), "mean_log_realised": float(np.mean(y)),
                "fit_s": round(time.perf_counter() - started, 2),
            })  # fmt: skip
    if not rows:
        raise NotFoundError("no walk-forward fold had training and test bars: use more data or fewer folds")
    pooled = {k: {name: np.concatenate(parts) for name, parts in v.items()} for k, v in losses.items()}
    meta = {
        "train": layout.train, "validation": layout.validation, "test": layout.test, "embargo": layout.embargo,
        "folds": len({r["fold"] for r in rows}), "rolling": not layout.expanding, "hyperparameters": hyper,
    }  # fmt: skip
    return rows, pooled, meta


def summarise_volatility(
    rows: Sequence[Mapping[str, Any]], pooled: Mapping[str, Mapping[str, np.ndarray]], horizon: int
) -> list[dict[str, Any]]:
    """Per kind: QLIKE and log-MSE mean ± SE across folds, and the Diebold–Mariano comparison with HAR-RV."""
    out = []
    lag = DM_LAG_HORIZONS * horizon
    for kind in pooled:
        mine = [r for r in rows if r["kind"] == kind]
        entry: dict[str, Any] = {"kind": kind, "model": VOLATILITY_LABELS.get(kind, kind), "folds": len(mine)}
        entry["test_samples"] = int(sum(r["n"] for r in mine))
        for metric in ("qlike", "mse_log", "mse_log_no_smearing"):
            entry[f"{metric}_mean"], entry[f"{metric}_se"] = _mean_se([r[metric] for r in mine])
        if REFERENCE in pooled and kind != REFERENCE:
            entry["vs_har"] = {
                "qlike": diebold_mariano(pooled[kind]["qlike"], pooled[REFERENCE]["qlike"], lag),
                "mse_log": diebold_mariano(pooled[kind]["mse"], pooled[REFERENCE]["mse"], lag),
            }
        out.append(entry)
    return out


def volatility_comparison(
    candles: pd.DataFrame,
    features: pd.DataFrame | None,
    *,
    symbol: str,
    timeframe: str,
    horizon: int,
    folds: int,
    feature_set: str,
    command: str,
    kinds: Sequence[str] = VOLATILITY_KINDS,
    seed: int = 0,
    network: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The use case: target, walk-forward fits and scores → the JSON document (setup, summary, fold rows)."""
    from datetime import UTC, datetime

    from smartmarket.models.pipeline import code_version

    started = time.perf_counter()
    if features is None and "lightgbm" in kinds:
        raise ConfigError("LightGBM needs the feature set's model inputs")
    data = volatility_data(candles["close"].to_numpy(dtype=np.float64), horizon, features)
    rows, pooled, meta = evaluate_volatility(data, folds=folds, kinds=kinds, seed=seed, network=network)
    ts = candles["ts"].to_numpy()
    for row in rows:
        row["test_first_ts"], row["test_last_ts"] = int(ts[row["test_first_bar"]]), int(ts[row["test_last_bar"]])
    hyper = meta.pop("hyperparameters")
    setup = VolatilitySetup(
        command=command, symbol=symbol, timeframe=timeframe, horizon=horizon, feature_set=feature_set,
        n_features=len(data.feature_names), walk_forward=meta,
        data={"rows": len(ts), "first_ts": int(ts[0]), "last_ts": int(ts[-1])},
        hyperparameters={k: v[-1] for k, v in hyper.items()}, code_version=dict(code_version()),
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        elapsed_s=round(time.perf_counter() - started, 1),
    )  # fmt: skip
    document = {
        "target": "volatility",
        "setup": asdict(setup),
        "summary": summarise_volatility(rows, pooled, horizon),
        "folds": rows,
    }
    return dict(json_safe(document))


def _fmt(mean: float | None, se: float | None, digits: int = 3) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + ("" if se is None or not math.isfinite(se) else f" ± {se:.{digits}f}")


def _dm(entry: Mapping[str, Any], metric: str) -> str:
    dm = (entry.get("vs_har") or {}).get(metric)
    if not dm or dm.get("z") is None:
        return "—"
    return f"{dm['mean_difference']:+.4f} (z {dm['z']:+.1f}, p {dm['p_value']:.3g})"


def render_volatility_markdown(document: Mapping[str, Any]) -> str:
    """The human report: setup, the table (QLIKE, log-MSE, DM vs HAR-RV), a plain verdict, per-fold figures."""
    from smartmarket.core.timeutil import format_ms

    def date(ts: Any) -> str:
        return "n/a" if ts is None else format_ms(int(ts), short=True)

    setup, summary = document["setup"], document["summary"]
    wf, data, h = setup["walk_forward"], setup["data"], setup["horizon"]
    lines = [
        f"# Volatility forecasts: {setup['symbol']} {setup['timeframe']}, walk-forward out of sample",
        "",
        "<!-- Generated by `smartmarket compare-models --target volatility`: figures are produced by the command "
        "below, never edited by hand. -->",
        "",
        f"Command: `{setup['command']}`",
        "",
        f"Generated {setup['generated']} in {setup['elapsed_s']:.0f} s; "
        f"code {setup['code_version'].get('git_commit')}.",
        "",
        "## Setup",
        "",
        f"- Data: {data['rows']:,} candles from {date(data.get('first_ts'))} to {date(data.get('last_ts'))}.",
        f"- Target: realised variance over the next {h} bars, sum of squared log returns of bars t+1..t+{h} "
        "(closed candles); forecasts and losses on its log.",
        f"- HAR-RV components: trailing mean squared return over {h}, {5 * h} and {22 * h} bars (a 'day' = the "
        f"horizon), scaled to {h} bars, in logs; OLS with numpy lstsq plus the smearing term.",
        f"- EWMA: RiskMetrics λ = 0.94 over 75 returns (`execution.sizing.ewma_volatility`), × {h}.",
        f"- LightGBM: HAR components + {setup['n_features']} scale-free inputs of feature set "
        f"'{setup['feature_set']}' at t; early stopping on the validation bars.",
        f"- Walk-forward: {wf['folds']} rolling folds; train {wf['train']:,} bars, validation {wf['validation']:,}, "
        f"test {wf['test']:,}, embargo {wf['embargo']} bars; training targets purged where they reach the "
        "evaluated periods. Every forecaster is scored on the same test bars.",
        "",
        "QLIKE = σ²/σ̂² − log(σ²/σ̂²) − 1 (0 is perfect); MSE of log-variance. Forecasts are of the variance "
        "(its mean): models fitted on logs add the smearing term log mean exp(residual); 'MSE, E[log] forecast' "
        "scores them without it (the forecast MSE on logs calls for). ± is the standard error across folds. "
        f"vs HAR-RV: mean per-sample loss difference (negative = better than HAR-RV) over all test bars, "
        f"Diebold–Mariano z with a Newey–West lag of {DM_LAG_HORIZONS * h} bars.",
        "",
        "## Results (test folds)",
        "",
        "| forecaster | QLIKE | MSE log-variance | MSE, E[log] forecast | QLIKE vs HAR-RV | MSE vs HAR-RV | folds "
        "| test samples |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['model']} | {_fmt(s['qlike_mean'], s['qlike_se'])} | {_fmt(s['mse_log_mean'], s['mse_log_se'])} "
            f"| {_fmt(s['mse_log_no_smearing_mean'], s['mse_log_no_smearing_se'])} | {_dm(s, 'qlike')} "
            f"| {_dm(s, 'mse_log')} | {s['folds']} | {s['test_samples']:,} |"
        )
    lines += ["", "## Reading", ""] + [f"- {line}" for line in verdicts(summary)]
    lines += ["", "## Per fold", "", "| fold | test period | forecaster | n | QLIKE | MSE log-variance |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for row in document["folds"]:
        lines.append(
            f"| {row['fold']} | {date(row.get('test_first_ts'))} → {date(row.get('test_last_ts'))} "
            f"| {VOLATILITY_LABELS.get(row['kind'], row['kind'])} | {row['n']:,} | {_fmt(row['qlike'], None)} "
            f"| {_fmt(row['mse_log'], None)} |"
        )
    return "\n".join(lines) + "\n"


def verdicts(summary: Sequence[Mapping[str, Any]]) -> list[str]:
    """One plain sentence per forecaster against HAR-RV (5 % two-sided) and HAR-RV against the constant."""
    out = []
    by_kind = {s["kind"]: s for s in summary}
    for s in summary:
        dm = (s.get("vs_har") or {}).get("qlike")
        if not dm or dm.get("z") is None:
            continue
        if dm["p_value"] < 0.05:
            word = "beats" if dm["mean_difference"] < 0 else "loses to"
            out.append(f"{s['model']} {word} HAR-RV on QLIKE (p = {dm['p_value']:.2g}).")
        else:
            out.append(f"{s['model']} is not distinguishable from HAR-RV on QLIKE (p = {dm['p_value']:.2g}).")
    har, const = by_kind.get("har"), by_kind.get("constant")
    if har and const and har.get("qlike_mean") is not None and const.get("qlike_mean") is not None:
        gain = 1.0 - har["qlike_mean"] / const["qlike_mean"] if const["qlike_mean"] else math.nan
        out.append(f"HAR-RV's QLIKE is {gain * 100:.0f} % below the constant (unconditional) forecast's.")
    return out


def write_volatility_comparison(document: Mapping[str, Any], markdown_path: Path) -> tuple[Path, Path]:
    """Write the markdown report and its JSON twin (same name, ``.json``)."""
    markdown_path = Path(markdown_path)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    json_path = markdown_path.with_suffix(".json")
    markdown_path.write_text(render_volatility_markdown(document), encoding="utf-8")
    json_path.write_text(json.dumps(document, indent=2, allow_nan=False), encoding="utf-8")
    return markdown_path, json_path


__all__ = [
    "VolatilitySetup",
    "diebold_mariano",
    "evaluate_volatility",
    "newey_west_se",
    "render_volatility_markdown",
    "summarise_volatility",
    "verdicts",
    "volatility_comparison",
    "write_volatility_comparison",
]
