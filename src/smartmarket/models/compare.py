"""The model comparison report: walk-forward results → a summary table, a claim check, markdown and JSON.

Input is the frame :func:`smartmarket.models.pipeline.compare_models` returns (one row per fold and model kind,
every kind measured on the *same* test samples of each fold). The measures:

* **balanced accuracy** — mean recall over the classes present (down / flat / up), so a model cannot score by
  predicting the most frequent class; chance is 1/3. The headline accuracy measure.
* **log-loss** and **Brier** — quality of the probabilities (lower is better); AUC one-vs-rest; plain accuracy.

``±`` is the standard error of the mean across folds (sample std with ddof=1, over √folds). The claim "the
Transformer is 20–30 % better than the CNN-LSTM" is checked fold by fold on the paired relative improvement
``bacc_T / bacc_C − 1``, with a standard error that is the larger of the across-fold one and the sampling one
(each fold's balanced-accuracy standard error under no skill, propagated through the ratio). Verdict:
*confirmed* when the lower 2-SE bound reaches +20 %, *refuted* when the upper 2-SE bound stays below +20 %,
*inconclusive* otherwise. The same paired comparison is given for log-loss (relative reduction).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.models.splits import WalkForwardConfig

COMPARISON_KINDS: tuple[str, ...] = ("transformer", "cnn_lstm", "logreg", "lightgbm", "majority")
MODEL_LABELS: dict[str, str] = {
    "transformer": "Transformer (group-patch)",
    "cnn_lstm": "CNN-LSTM",
    "logreg": "Logistic regression",
    "lightgbm": "LightGBM",
    "majority": "Always-majority",
}
CLAIMED_IMPROVEMENT = (0.20, 0.30)
SUMMARY_METRICS = ("balanced_accuracy", "accuracy", "log_loss", "brier", "auc_ovr")


@dataclass(frozen=True)
class ComparisonSetup:
    """How a comparison was run: enough to repeat it."""

    command: str
    symbol: str
    timeframe: str
    feature_set: str
    n_features: int
    preset: str
    epochs: int
    steps_per_epoch: int | None
    walk_forward: dict[str, Any]
    labels: dict[str, Any]
    data: dict[str, Any]
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    code_version: dict[str, Any] = field(default_factory=dict)
    generated: str = ""
    elapsed_s: float = 0.0
    threads: int | None = None


def walk_forward_layout(
    n_bars: int, folds: int, *, first_usable: int = 0, embargo: int = 24, train_test_ratio: int = 2
) -> WalkForwardConfig:
    """Rolling folds that fit the data: test = validation = ``train / train_test_ratio`` bars, the last ``folds``.

    The usable span (bars from ``first_usable``, where features and the longest context are complete) holds
    ``train + validation + test × folds`` plus two embargoes, so the kept folds train on usable bars only.
    """
    if folds < 1:
        raise ValueError("at least one fold")
    usable = n_bars - first_usable - 2 * embargo
    unit = usable // (train_test_ratio + 1 + folds)
    if unit < 50:
        raise ValueError(f"{n_bars} bars are too few for {folds} folds (test periods of {unit} bars)")
    return WalkForwardConfig(
        train=train_test_ratio * unit, validation=unit, test=unit, embargo=embargo, max_folds=folds
    )


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else math.nan
    return float(arr.mean()), se


def summarise(results: pd.DataFrame, kinds: Sequence[str] = COMPARISON_KINDS) -> list[dict[str, Any]]:
    """One dict per kind (in ``kinds`` order): mean and SE across folds of each metric, test samples, folds."""
    out = []
    for kind in kinds:
        rows = results[results["kind"] == kind]
        if rows.empty:
            continue
        entry: dict[str, Any] = {"kind": kind, "model": MODEL_LABELS.get(kind, kind), "folds": len(rows)}
        entry["test_samples"] = int(rows["n"].sum())
        for metric in SUMMARY_METRICS:
            mean, se = _mean_se(rows[metric].tolist())
            entry[f"{metric}_mean"], entry[f"{metric}_se"] = mean, se
        entry["chance_balanced_accuracy"] = float(rows["chance_balanced_accuracy"].mean())
        if "baseline_log_loss" in rows:  # the base rate of each fold's training labels, on its test samples
            baseline = float(rows["baseline_log_loss"].mean())
            entry["baseline_log_loss"] = baseline
            entry["no_skill"] = bool(entry["log_loss_mean"] > baseline)
        entry["balanced_accuracy_sampling_se"] = float(
            math.sqrt(float(np.sum(np.square(rows["balanced_accuracy_null_se"])))) / len(rows)
        )
        out.append(entry)
    return out


def claim_check(
    results: pd.DataFrame,
    model: str = "transformer",
    reference: str = "cnn_lstm",
    claimed: tuple[float, float] = CLAIMED_IMPROVEMENT,
) -> dict[str, Any]:
    """Paired, fold-by-fold relative improvement of ``model`` over ``reference`` and a verdict on the claim."""
    a = results[results["kind"] == model].set_index("fold")
    b = results[results["kind"] == reference].set_index("fold")
    folds = sorted(set(a.index) & set(b.index))
    if not folds:
        return {"model": model, "reference": reference, "verdict": "not run", "folds": 0}
    a, b = a.loc[folds], b.loc[folds]
    ratio = (a["balanced_accuracy"] / b["balanced_accuracy"] - 1.0).to_numpy()
    mean, fold_se = _mean_se(ratio.tolist())
    sampling_var = (np.square(a["balanced_accuracy_null_se"]) + np.square(b["balanced_accuracy_null_se"])) / np.square(
        b["balanced_accuracy"]
    )
    sampling_se = float(math.sqrt(float(sampling_var.sum())) / len(folds))
    se = max((v for v in (fold_se, sampling_se) if np.isfinite(v)), default=math.nan)
    low, high = mean - 2 * se, mean + 2 * se
    claimed_low = claimed[0]
    if low >= claimed_low:
        verdict = "confirmed"
    elif high < claimed_low:
        verdict = "refuted"
    else:
        verdict = "inconclusive"
    logloss_gain = (1.0 - a["log_loss"] / b["log_loss"]).to_numpy()
    ll_mean, ll_se = _mean_se(logloss_gain.tolist())
    diff_pp = ((a["balanced_accuracy"] - b["balanced_accuracy"]) * 100).to_numpy()
    diff_mean, diff_se = _mean_se(diff_pp.tolist())
    return {
        "model": model,
        "reference": reference,
        "claimed_relative_improvement": list(claimed),
        "measure": "balanced accuracy, paired per fold: bacc_model / bacc_reference - 1",
        "folds": len(folds),
        "relative_improvement_per_fold": [float(v) for v in ratio],
        "relative_improvement_mean": mean,
        "relative_improvement_se": se,
        "relative_improvement_fold_se": fold_se,
        "relative_improvement_sampling_se": sampling_se,
        "interval_2se": [low, high],
        "balanced_accuracy_difference_pp_mean": diff_mean,
        "balanced_accuracy_difference_pp_se": diff_se,
        "log_loss_relative_reduction_mean": ll_mean,
        "log_loss_relative_reduction_se": ll_se,
        "verdict": verdict,
    }


def comparison_document(results: pd.DataFrame, setup: ComparisonSetup) -> dict[str, Any]:
    """The JSON document of a comparison: setup, summary per model, the claim check, every fold row."""
    document = {
        "setup": asdict(setup),
        "summary": summarise(results),
        "claim": claim_check(results),
        "folds": results.to_dict(orient="records"),
    }
    return dict(json_safe(document))


def _fmt(mean: float | None, se: float | None, digits: int = 3, pct: bool = False) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    scale = 100.0 if pct else 1.0
    text = f"{mean * scale:.{digits}f}"
    if se is not None and math.isfinite(se):
        text += f" ± {se * scale:.{digits}f}"
    return text + (" %" if pct else "")


def _date(ts: Any) -> str:
    from smartmarket.core.timeutil import format_ms

    return "n/a" if ts is None else format_ms(int(ts), short=True)


def render_markdown(document: Mapping[str, Any]) -> str:
    """The human report: what was run, the table with all models, the claim in numbers, per-fold figures."""
    setup, summary, claim = document["setup"], document["summary"], document["claim"]
    wf, data, labels = setup["walk_forward"], setup["data"], setup["labels"]
    lines = [
        f"# Model comparison: {setup['symbol']} {setup['timeframe']}, walk-forward out of sample",
        "",
        "<!-- Generated by `smartmarket compare-models`: figures are produced by the command below, "
        "never edited by hand. -->",
        "",
        f"Command: `{setup['command']}`",
        "",
        f"Generated {setup['generated']} in {setup['elapsed_s']:.0f} s "
        f"(torch threads: {setup.get('threads') or 'default'}); code {setup['code_version'].get('git_commit')}.",
        "",
        "## Setup",
        "",
        f"- Data: {data['rows']:,} candles from {_date(data.get('first_ts'))} to {_date(data.get('last_ts'))} "
        f"(checksum {data.get('checksum', 'n/a')}).",
        f"- Features: set '{setup['feature_set']}' ({setup['n_features']} causal columns).",
        f"- Labels: {labels['method']} — horizon {labels['horizon']} bars, barriers ±{labels['take_profit']}/"
        f"{labels['stop_loss']} × {labels['scale']}({labels['scale_window']}); classes down / flat / up.",
        f"- Walk-forward: {len(document['folds']) // max(len(summary), 1)} rolling folds; train {wf['train']:,} bars, "
        f"validation {wf['validation']:,} (early stopping), test {wf['test']:,}, embargo {wf['embargo']} bars; "
        "train samples purged of labels that reach the evaluated periods. Every model is scored on the *same* "
        "test samples (eligibility uses the longest context).",
        f"- Networks: preset '{setup['preset']}', at most {setup['epochs']} epochs"
        + (f" of {setup['steps_per_epoch']} batches (a fresh random subset of the training windows each epoch)"
           if setup.get("steps_per_epoch") else "")
        + "; baselines: logistic regression and LightGBM on the features at t, t−1, t−2 (their defaults).",
        "",
        "Accuracy measure: **balanced accuracy** (mean recall over down / flat / up; chance = 1/3), and "
        "**log-loss** for the probabilities. ± is the standard error across folds.",
        "",
        "## Results (test folds)",
        "",
        "| model | balanced accuracy | accuracy | log-loss | Brier | AUC (one-vs-rest) | folds | test samples |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for s in summary:
        lines.append(
            f"| {s['model']} | {_fmt(s['balanced_accuracy_mean'], s['balanced_accuracy_se'])} "
            f"| {_fmt(s['accuracy_mean'], s['accuracy_se'])} | {_fmt(s['log_loss_mean'], s['log_loss_se'])} "
            f"| {_fmt(s['brier_mean'], s['brier_se'])} | {_fmt(s['auc_ovr_mean'], s['auc_ovr_se'])} "
            f"| {s['folds']} | {s['test_samples']:,} |"
        )
    if summary:
        chance = summary[0]["chance_balanced_accuracy"]
        sampling = max(s["balanced_accuracy_sampling_se"] or 0.0 for s in summary)
        lines += [
            "",
            f"Chance balanced accuracy: {chance:.3f}. Sampling standard error of a fold-averaged balanced accuracy "
            f"under no skill: about {sampling:.3f} — differences smaller than ~2× that are noise.",
        ]
    lines += ["", '## The claim: "the Transformer is 20–30 % better than the CNN-LSTM"', ""]
    if claim.get("folds"):
        low, high = (math.nan if v is None else v for v in claim["interval_2se"])
        lines += [
            f"Measure: {claim['measure']} (averaged over {claim['folds']} folds).",
            "",
            f"- Relative improvement in balanced accuracy: **{_fmt(claim['relative_improvement_mean'], claim['relative_improvement_se'], 1, pct=True)}** "  # noqa: E501
            f"(2-SE interval {low * 100:+.1f} % … {high * 100:+.1f} %; per fold: "
            + ", ".join(f"{v * 100:+.1f} %" for v in claim["relative_improvement_per_fold"]) + ").",
            f"- Difference in balanced accuracy: {_fmt(claim['balanced_accuracy_difference_pp_mean'], claim['balanced_accuracy_difference_pp_se'], 2)} percentage points.",  # noqa: E501
            f"- Relative reduction of log-loss: {_fmt(claim['log_loss_relative_reduction_mean'], claim['log_loss_relative_reduction_se'], 1, pct=True)}.",  # noqa: E501
            "",
            f"**Verdict: {claim['verdict'].upper()}** — confirmed needs the lower 2-SE bound ≥ +20 %, refuted means "
            "the upper 2-SE bound < +20 %.",
        ]  # fmt: skip
    else:
        lines.append("Not measured: the Transformer and the CNN-LSTM were not both in this run.")
    lines += [
        "",
        "## Per fold",
        "",
        "| fold | test period | model | n | balanced accuracy | log-loss |",
        "|---|---|---|---|---|---|",
    ]
    for row in document["folds"]:
        lines.append(
            f"| {row['fold']} | {_date(row['test_first_ts'])} → {_date(row['test_last_ts'])} "
            f"| {MODEL_LABELS.get(row['kind'], row['kind'])} | {int(row['n']):,} "
            f"| {_fmt(row['balanced_accuracy'], None)} | {_fmt(row['log_loss'], None)} |"
        )
    return "\n".join(lines) + "\n"


def write_comparison(document: Mapping[str, Any], markdown_path: Path) -> tuple[Path, Path]:
    """Write the markdown report and its JSON twin (same name, ``.json``); returns both paths."""
    markdown_path = Path(markdown_path)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    json_path = markdown_path.with_suffix(".json")
    markdown_path.write_text(render_markdown(document), encoding="utf-8")
    json_path.write_text(json.dumps(document, indent=2, default=_json_default, allow_nan=False), encoding="utf-8")
    return markdown_path, json_path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_safe(value: Any) -> Any:
    """NaN/inf → None recursively, so documents are strict JSON."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


__all__ = [
    "CLAIMED_IMPROVEMENT",
    "COMPARISON_KINDS",
    "MODEL_LABELS",
    "ComparisonSetup",
    "claim_check",
    "comparison_document",
    "json_safe",
    "render_markdown",
    "walk_forward_layout",
    "write_comparison",
]
