"""Per-symbol vs pooled (universe) training, walk-forward out of sample, on real 4h candles.

Ingests ``<data>/<SYMBOL>-<tf>.csv.gz`` for each symbol into a temporary store, computes the 'default' features
(scale-free model inputs only, as ``train`` does), pools them (``models.universe``) and runs
``compare_pooled``: on each fold of the shared timeline, one model per symbol trained on that symbol's training
samples, and one model trained on every symbol's, both scored on each symbol's identical test samples against
that symbol's training base rate. Writes ``<out>.md`` and ``<out>.json``.

    python benchmarks/universe_training.py --data ../shared/data --timeframe 4h \
        --symbols BTCUSDT,ETHUSDT,BNBUSDT,XRPUSDT,ADAUSDT,DOGEUSDT --end 2025-01-01 \
        --folds 3 --out docs/results/universe-training-4h
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--timeframe", default="4h")
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT,BNBUSDT,XRPUSDT,ADAUSDT,DOGEUSDT")
    parser.add_argument("--end", default="2025-01-01")
    parser.add_argument("--kinds", default="logreg,lightgbm")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--train", type=int, default=6000, help="training period, timeline steps")
    parser.add_argument("--validation", type=int, default=1000)
    parser.add_argument("--test", type=int, default=1500)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--cross-section", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from smartmarket.core.config import Settings
    from smartmarket.core.timeutil import format_ms, parse_time
    from smartmarket.data.ingest import ingest_file
    from smartmarket.models.labels import LabelConfig
    from smartmarket.models.pipeline import code_version
    from smartmarket.models.splits import WalkForwardConfig
    from smartmarket.models.universe import compare_pooled, pool
    from smartmarket.ops.universe_training import load_universe, parse_symbols
    from smartmarket.store import open_store

    started = time.perf_counter()
    symbols = parse_symbols(args.symbols)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    label_config = LabelConfig(horizon=args.horizon)
    walk = WalkForwardConfig(
        train=args.train, validation=args.validation, test=args.test, embargo=args.horizon, max_folds=args.folds
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp))
        with open_store(settings.store_url) as store:
            for symbol in symbols:
                ingest_file(
                    store, args.data / f"{symbol}-{args.timeframe}.csv.gz", quarantine_dir=settings.quarantine_dir
                )
            markets = load_universe(
                store, symbols, args.timeframe, end=parse_time(args.end), cross_section=args.cross_section
            )
    data = pool(markets, label_config)
    results = compare_pooled(kinds, data, walk, label_config=label_config)
    elapsed = time.perf_counter() - started

    command = "python benchmarks/universe_training.py " + " ".join(sys.argv[1:] if argv is None else argv)
    summary = _summary(results)
    document: dict[str, Any] = {
        "command": command,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(elapsed, 1),
        "code": code_version(),
        "symbols": list(symbols),
        "timeframe": args.timeframe,
        "end": args.end,
        "rows_per_symbol": {s: int(data.offsets[i + 1] - data.offsets[i]) for i, s in enumerate(symbols)},
        "first_ts_per_symbol": {s: format_ms(int(markets[s][1]["ts"].iloc[0])) for s in symbols},
        "feature_columns": len(data.columns),
        "cross_section_window": args.cross_section,
        "label_config": label_config.to_dict(),
        "walk_forward": {
            "train": args.train,
            "validation": args.validation,
            "test": args.test,
            "embargo": args.horizon,
            "folds": args.folds,
        },
        "folds": sorted(
            {
                (int(r.fold), format_ms(int(r.test_first_ts)), format_ms(int(r.test_last_ts)))
                for r in results.itertuples()
            }
        ),
        "summary": summary,
        "rows": results.to_dict(orient="records"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(document, indent=2, default=_default, allow_nan=True) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(document))
    print(_markdown(document))
    return 0


def _default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(type(value))


def _summary(results: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (kind, scheme, symbol): mean test log-loss, its excess over the base rate (± SE across folds), accuracy."""
    out = []
    results = results.assign(excess=results["log_loss"] - results["baseline_log_loss"])
    for (kind, scheme, symbol), g in results.groupby(["kind", "scheme", "symbol"], sort=True):
        n = len(g)
        se = float(g["excess"].std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        out.append(
            {
                "kind": kind,
                "scheme": scheme,
                "symbol": symbol,
                "folds": n,
                "n_test": int(g["n"].sum()),
                "n_train_mean": float(g["n_train"].mean()),
                "log_loss": float(g["log_loss"].mean()),
                "baseline_log_loss": float(g["baseline_log_loss"].mean()),
                "excess_log_loss": float(g["excess"].mean()),
                "excess_log_loss_se": se,
                "accuracy": float(g["accuracy"].mean()),
                "balanced_accuracy": float(g["balanced_accuracy"].mean()),
                "beats_base_rate_folds": int((g["excess"] < 0).sum()),
            }
        )
    return out


def _markdown(doc: dict[str, Any]) -> str:
    wf = doc["walk_forward"]
    lines = [
        f"# Universe training: per-symbol vs pooled, {doc['timeframe']}, walk-forward out of sample",
        "",
        "<!-- Generated by benchmarks/universe_training.py: figures come from the command below, never edited. -->",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Generated {doc['generated']} in {doc['seconds']} s; code {doc['code'].get('git_commit')}.",
        "",
        "## Setup",
        "",
        f"- Symbols and rows (candles before {doc['end']}): "
        + ", ".join(
            f"{s} {n:,} (from {doc['first_ts_per_symbol'][s][:10]})" for s, n in doc["rows_per_symbol"].items()
        ),
        f"- Features: set 'default', scale-free model inputs only ({doc['feature_columns']} columns)"
        + (
            f", plus cross-sectional ranks over {doc['cross_section_window']} bars."
            if doc["cross_section_window"]
            else "."
        ),
        f"- Labels: {doc['label_config']['method']}, horizon {doc['label_config']['horizon']} bars, barriers "
        f"±{doc['label_config']['take_profit']}/{doc['label_config']['stop_loss']} × atr.",
        f"- Walk-forward on the shared timeline (timestamps of all symbols): rolling train {wf['train']:,} steps, "
        f"validation {wf['validation']:,}, test {wf['test']:,}, embargo {wf['embargo']}, last {wf['folds']} folds; "
        "purged by timestamp across symbols.",
        "- Test periods: " + "; ".join(f"fold {f}: {a[:10]} → {b[:10]}" for f, a, b in doc["folds"]),
        "- Schemes: `per_symbol` = one model per symbol on its own training samples; `pooled` = one model on every "
        "symbol's training samples (no symbol identity). Both scored on the same test samples of each symbol.",
        "- Baseline: always predicting the symbol's training class frequencies (base rate). Excess log-loss = model "
        "− baseline: **negative means skill**. ± = standard error across folds.",
        "",
        "## Results (test folds, mean over folds)",
        "",
        "| kind | scheme | symbol | test n | log-loss | base rate | excess ± SE | folds < base | acc. | bal. acc. |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["summary"]:
        lines.append(
            f"| {r['kind']} | {r['scheme']} | {r['symbol']} | {r['n_test']:,} | {r['log_loss']:.4f} | "
            f"{r['baseline_log_loss']:.4f} | {r['excess_log_loss']:+.4f} ± {r['excess_log_loss_se']:.4f} | "
            f"{r['beats_base_rate_folds']}/{r['folds']} | {r['accuracy']:.3f} | {r['balanced_accuracy']:.3f} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
