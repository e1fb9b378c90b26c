"""Model commands: ``train``, ``evaluate``, ``models list|show|compare|upgrade``, ``compare-models``,
``bench inference``.

Candles come from the store (``--store`` / ``--home``), features from the declared feature pipeline computed over
the stored history up to ``--end`` (so a model sees the same feature values in training, evaluation and live),
models go to the registry under ``SMARTMARKET_HOME/models``. Every figure printed as "out of sample" was
measured on bars the model neither trained on nor used for early stopping; ``evaluate`` says "IN-SAMPLE" when
the range overlaps them.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

# Before torch is first imported: spin-waiting OpenMP threads make small models ~100× slower on busy cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer
from rich.markup import escape
from rich.table import Table

from smartmarket.cli import grammar
from smartmarket.cli.context import ProgressFn, console, err_console, get_context
from smartmarket.core.errors import ConfigError, NotFoundError
from smartmarket.core.timeutil import format_ms, parse_time
from smartmarket.core.types import Timeframe, normalize_symbol

if TYPE_CHECKING:  # numpy, pandas, torch and LightGBM load inside the commands (fast start-up)
    import pandas as pd

    from smartmarket.models.pipeline import TrainedModel
    from smartmarket.models.training import EpochReport
    from smartmarket.store.base import CandleStore

# The model kinds the CLI accepts, as stored (``logistic`` is stored as ``logreg``; ``lgbm``/``logreg`` are
# deprecated spellings, see cli/grammar.py).
KIND_ALIASES: dict[str, str] = {k: grammar.stored_kind(k) for k in grammar.MODEL_KINDS}
KIND_HELP = "Model kind: " + ", ".join(grammar.MODEL_KINDS) + "."
HEADLINE_METRICS = ("balanced_accuracy", "accuracy", "log_loss", "brier", "auc_ovr", "n")


class Preset(StrEnum):
    small = "small"
    seed = "seed"


class CompareTarget(StrEnum):
    direction = "direction"
    volatility = "volatility"


# ------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class MarketData:
    """Candles and their causal features, aligned row by row."""

    symbol: str
    timeframe: Timeframe
    feature_set: str
    candles: pd.DataFrame
    features: pd.DataFrame

    @property
    def model_features(self) -> pd.DataFrame:
        """The columns a model may take (scale-free ones; see ``features.scale_free.model_inputs``)."""
        from smartmarket.features.scale_free import model_inputs

        return model_inputs(self.features)


def load_market(
    store: CandleStore,
    symbol: str,
    timeframe: Timeframe | str,
    feature_set: str = "default",
    *,
    start: int | None = None,
    end: int | None = None,
    tail: int | None = None,
) -> MarketData:
    """Stored candles with ``ts < end`` → features over all of them → rows with ``ts ≥ start`` (last ``tail``).

    Features are computed from the first stored candle so that recursive indicators (EMAs) have the same values
    whatever range is asked for; the range only selects rows afterwards.
    """
    import numpy as np

    from smartmarket.features.pipeline import FeaturePipeline

    symbol, tf = normalize_symbol(symbol), Timeframe.parse(timeframe)
    candles = store.read_candles(symbol, tf, None, end)
    if candles.empty:
        raise NotFoundError(f"no {symbol} {tf} candles stored", where=store.url, hint="ingest some first")
    features = FeaturePipeline(feature_set, tf).batch(candles)
    keep = np.ones(len(candles), dtype=bool)
    if start is not None:
        keep &= candles["ts"].to_numpy() >= start
    rows = np.flatnonzero(keep)
    if tail is not None:
        rows = rows[-tail:]
    if rows.size == 0:
        raise NotFoundError(f"no {symbol} {tf} candles in that range", where=store.url)
    candles = candles.iloc[rows].reset_index(drop=True)
    features = features.iloc[rows].reset_index(drop=True)
    return MarketData(symbol, tf, feature_set, candles, features)


def set_threads(threads: int | None) -> None:
    """torch intra-op threads for this process (None leaves torch's default)."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be ≥ 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def _kind(choice: str) -> str:
    """A kind in the one vocabulary (deprecated spellings warned about) as artifacts store it."""
    return grammar.stored_kind(grammar.model_kind(choice))


def _epoch_logger(prefix: str) -> Any:
    def log(report: EpochReport) -> None:
        text = f"{prefix} epoch {report.epoch}/{report.epochs} loss {report.train_loss:.4f}"
        if report.validation_loss is not None:
            text += f" · val {report.validation_loss:.4f} · bacc {report.validation_balanced_accuracy:.3f}"
        err_console.print(f"[dim]{text} ({report.seconds:.1f} s)[/]", highlight=False)

    return log


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 10:
        return f"{int(value):,}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _date(ts: Any) -> str:
    return "n/a" if ts is None else format_ms(int(ts), short=True)


def warn(line: str | None) -> None:
    """One warning line on stderr (no-skill, never-signalling): never hidden by ``--json`` on stdout."""
    if line:
        err_console.print(line, style="yellow", highlight=False, markup=False, soft_wrap=True)


def _json(document: Any) -> str:
    from smartmarket.models.compare import json_safe

    return json.dumps(json_safe(document), indent=2, default=str, allow_nan=False)


# ------------------------------------------------------------------------------------------ training


def train_from_market(
    market: MarketData,
    kind: str,
    *,
    preset: str = "small",
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    batch_size: int = 64,
    horizon: int = 24,
    walk_forward_folds: int = 0,
    seed: int = 0,
    progress: Any = None,
) -> TrainedModel:
    """Train one model on a chronological, purged split (70/15/15); optionally add a walk-forward estimate.

    With ``walk_forward_folds`` = N ≥ 1, the same configuration is also trained and tested on the last N rolling
    walk-forward folds, and ``metrics["walk_forward"]`` holds the mean and standard error of their test metrics.
    """
    import numpy as np

    from smartmarket.models.compare import summarise, walk_forward_layout
    from smartmarket.models.datasets import complete_windows, feature_matrix
    from smartmarket.models.labels import LabelConfig
    from smartmarket.models.pipeline import build_classifier, compare_models, train_model
    from smartmarket.models.training import TrainConfig

    labels = LabelConfig(horizon=horizon)
    config = TrainConfig(batch_size=batch_size, steps_per_epoch=steps_per_epoch, seed=seed)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    common: dict[str, Any] = {"preset": preset, "label_config": labels, "train_config": config, "seed": seed}
    walk_summary: dict[str, float] | None = None
    if walk_forward_folds > 0:
        values, columns = feature_matrix(market.model_features)
        context = build_classifier(kind, len(columns), {"price": tuple(range(len(columns)))}, preset=preset).context
        ready = complete_windows(values, context)
        first = int(np.argmax(ready)) if ready.any() else len(values)
        layout = walk_forward_layout(len(values), walk_forward_folds, first_usable=first, embargo=horizon)
        results = compare_models([kind], market.model_features, market.candles, layout, progress=progress, **common)
        summary = summarise(results, [kind])
        walk_summary = {k: float(v) for k, v in summary[0].items() if isinstance(v, int | float)} if summary else {}
    model = train_model(
        kind, market.model_features, market.candles, symbol=market.symbol, timeframe=market.timeframe.value,
        feature_set=market.feature_set, progress=progress, **common,
    )  # fmt: skip
    if walk_summary is not None:
        model.metrics["walk_forward"] = walk_summary
    return model


def train_demo_model(
    store: CandleStore, symbol: str, timeframe: Timeframe | str, registry_dir: Path | str
) -> tuple[str, dict[str, float]]:
    """A small logistic model on the last 5,000 bars ('default' features): seconds. Returns (id, test metrics)."""
    from smartmarket.models.registry import Registry

    market = load_market(store, symbol, timeframe, "default", tail=5000)
    model = train_from_market(market, "logreg", horizon=24)
    model_id = Registry(registry_dir).save(model)
    return model_id, dict(model.metrics.get("test", {}))


def metrics_table(title: str, metrics: Mapping[str, Mapping[str, float]], stages: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for stage in stages:
        table.add_column(stage, justify="right")
    for name in HEADLINE_METRICS:
        table.add_row(name, *(_f(metrics.get(s, {}).get(name)) for s in stages))
    return table


# ------------------------------------------------------------------------------------------ evaluation


def sample_status(model: TrainedModel, first_ts: int | None) -> tuple[bool, str]:
    """Whether bars from ``first_ts`` on are out of sample for ``model``, and why not when they are not."""
    train_end = (model.split.get("train_ts") or [None, None])[1]
    validation_end = (model.split.get("validation_ts") or [None, None])[1]
    if first_ts is None:
        return False, "no bar evaluated"
    if train_end is None:
        return False, "the model records no training period: cannot tell"
    if first_ts <= train_end:
        return False, f"the range overlaps the training period (ends {_date(train_end)})"
    if validation_end is not None and first_ts <= validation_end:
        return False, f"the range overlaps the validation period used for early stopping (ends {_date(validation_end)})"
    return True, f"every bar after the training and validation periods (end {_date(validation_end or train_end)})"


def evaluate_model(
    store: CandleStore,
    model: TrainedModel,
    *,
    start: int | None = None,
    end: int | None = None,
    fee: float = 0.001,
    threshold: float = 0.45,
    long_only: bool = False,
) -> dict[str, Any]:
    """Classification metrics and a trading evaluation of ``model`` on ``start ≤ ts < end``.

    Without ``start``, evaluation starts at the model's test period (out of sample by construction). The
    trading evaluation backtests :class:`ProbabilityThreshold` on the same bars, after ``fee`` per side.
    """
    import numpy as np
    import pandas as pd

    from smartmarket.analytics import compute_metrics
    from smartmarket.backtest.runner import run_backtest
    from smartmarket.engine.kernel import KernelConfig
    from smartmarket.execution.fees import FeeModel
    from smartmarket.features.sets import FEATURE_SETS
    from smartmarket.models.datasets import WindowDataset, complete_windows
    from smartmarket.models.labels import CLASS_NAMES, make_labels
    from smartmarket.models.metrics import classification_metrics
    from smartmarket.models.pipeline import predict_dataset
    from smartmarket.models.skill import no_skill_line, skill_of
    from smartmarket.models.threshold_strategy import ProbabilityThreshold, probability_lookup

    if model.feature_set not in FEATURE_SETS:
        raise ConfigError(
            f"model {model.model_id} was trained on feature set {model.feature_set!r}, not a named set",
            hint=f"evaluate models trained with --feature-set {'/'.join(FEATURE_SETS)}",
        )
    if start is None:
        start = (model.split.get("test_ts") or [None, None])[0]
    market = load_market(store, model.symbol, model.timeframe, model.feature_set, end=end)
    candles, features = market.candles, market.features
    ts = candles["ts"].to_numpy()
    values = model._values(features)
    in_range = ts >= start if start is not None else np.ones(len(ts), dtype=bool)
    bars = np.flatnonzero(in_range & complete_windows(values, model.context))
    if bars.size == 0:
        raise NotFoundError("no bar in that range has a complete window for this model", where=store.url)
    ds = WindowDataset(values, bars, np.zeros(bars.size, dtype=np.int64), model.context)
    proba = predict_dataset(model.classifier, ds)
    labels = make_labels(candles, model.label_config)
    labelled = labels.valid[bars]
    y = labels.y[bars][labelled].astype(np.int64)
    metrics: dict[str, Any] = classification_metrics(
        y, proba[labelled], model.base_rates, horizon=model.label_config.horizon
    )
    out_of_sample, reason = sample_status(model, int(ts[bars[0]]))
    skill = skill_of({"test": metrics})
    skill = None if skill is None else replace(skill, sample="evaluated")

    frame = pd.DataFrame(proba, columns=[f"p_{c}" for c in CLASS_NAMES])
    lookup = probability_lookup(ts[bars], frame)
    range_candles = candles.iloc[int(bars[0]) :].reset_index(drop=True)
    config = KernelConfig(fees=FeeModel(maker=fee, taker=fee), long_only=long_only, close_at_end=True)

    def strategy(_symbol: str) -> ProbabilityThreshold:
        return ProbabilityThreshold(lookup, threshold=threshold, long_only=long_only)

    result = run_backtest(range_candles, strategy, config=config, timeframe=market.timeframe, symbol=market.symbol)
    perf = compute_metrics(
        result.equity, result.trades, market.timeframe, exposure=result.exposure, traded_notional=result.traded_notional
    )
    close = range_candles["close"].to_numpy()
    return {
        "model_id": model.model_id,
        "kind": model.kind,
        "symbol": market.symbol,
        "timeframe": market.timeframe.value,
        "first_ts": int(ts[bars[0]]),
        "last_ts": int(ts[bars[-1]]),
        "out_of_sample": out_of_sample,
        "sample": "out-of-sample" if out_of_sample else "in-sample",
        "sample_reason": reason,
        "metrics": metrics,
        "no_skill": None if skill is None else skill.no_skill,
        "no_skill_warning": no_skill_line(str(model.model_id), skill),
        "trading": {
            "strategy": "probability_threshold",
            "threshold": threshold,
            "long_only": long_only,
            "fee_per_side": fee,
            "total_return": perf.total_return,
            "annual_return": perf.annual_return,
            "sharpe": perf.sharpe,
            "max_drawdown": perf.max_drawdown,
            "num_trades": perf.num_trades,
            "win_rate": perf.win_rate,
            "profit_factor": perf.profit_factor,
            "exposure": perf.exposure,
            "total_fees": perf.total_fees,
            "buy_hold_return": float(close[-1] / close[0] - 1.0),
        },
    }


def _print_evaluation(doc: Mapping[str, Any]) -> None:
    label = "out of sample" if doc["out_of_sample"] else "IN-SAMPLE — not an out-of-sample result"
    style = "green" if doc["out_of_sample"] else "bold red"
    console.print(
        f"{doc['model_id']}: {doc['symbol']} {doc['timeframe']} {_date(doc['first_ts'])} → {_date(doc['last_ts'])}: "
        f"[{style}]{label}[/] ({doc['sample_reason']})",
        highlight=False,
    )
    m = doc["metrics"]
    table = Table(title="classification", title_justify="left")
    for col in ("samples", "accuracy", "balanced accuracy", "chance", "log-loss", "Brier", "AUC (OvR)"):
        table.add_column(col, justify="right")
    table.add_row(
        _f(m["n"]), _f(m["accuracy"]), _f(m["balanced_accuracy"]), _f(m["chance_balanced_accuracy"]),
        _f(m["log_loss"]), _f(m["brier"]), _f(m["auc_ovr"]),
    )  # fmt: skip
    console.print(table)
    t = doc["trading"]
    trading = Table(
        title=f"trading: long/short at p ≥ {t['threshold']} ({'long only, ' if t['long_only'] else ''}"
        f"fees {grammar.pct(t['fee_per_side'])} per side)",
        title_justify="left",
    )
    for col in ("total return", "buy & hold", "Sharpe", "max drawdown", "trades", "win rate", "exposure"):
        trading.add_column(col, justify="right")
    trading.add_row(
        grammar.pct(t["total_return"], signed=True), grammar.pct(t["buy_hold_return"], signed=True),
        _f(t["sharpe"], 2), grammar.pct(t["max_drawdown"]), str(t["num_trades"]), grammar.pct(t["win_rate"]),
        grammar.pct(t["exposure"]),
    )  # fmt: skip
    console.print(trading)


# ------------------------------------------------------------------------------------------ registry views


def _records_table(records: Sequence[Any], title: str) -> Table:
    """Kind, symbol and timeframe are part of each id, so the table stays narrow."""
    table = Table(title=title, title_justify="left")
    table.add_column("id", no_wrap=True, min_width=20)
    table.add_column("stage")
    table.add_column("test period", min_width=12)
    for col in ("bacc", "log-loss", "n"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in records:
        test = r.test_metrics
        period = r.metadata.get("split", {}).get("test_ts") or [None, None]
        dates = [_date(p)[:10] for p in period]
        stage = escape(r.stage)
        unsafe = getattr(r, "unsafe_files", ())
        if getattr(r, "no_skill_warning", None):
            stage += " [yellow]no skill[/]" if "no skill" in r.no_skill_warning else " [yellow]never signals[/]"
        if unsafe:  # never loaded: flagged by file name
            stage += f" [red]refused: {escape(unsafe[0].split(':')[0])}[/]" + (
                f" (+{len(unsafe) - 1})" if len(unsafe) > 1 else ""
            )
        table.add_row(
            escape(r.model_id), stage, f"{dates[0]} → {dates[1]}",
            _f(test.get("balanced_accuracy")), _f(test.get("log_loss")), _f(test.get("n")),
        )  # fmt: skip
    return table


def _record_summary(record: Any) -> dict[str, Any]:
    meta = record.metadata
    return {
        "id": record.model_id,
        "kind": record.kind,
        "symbol": record.symbol,
        "timeframe": record.timeframe,
        "symbols": meta.get("symbols") or [],
        "stage": record.stage,
        "created": record.created,
        "feature_set": meta.get("feature_set"),
        "context": meta.get("context"),
        "split": {k: meta.get("split", {}).get(k) for k in ("train_ts", "validation_ts", "test_ts")},
        "metrics": meta.get("metrics", {}),
        "no_skill": meta.get("no_skill"),
        "never_signals": meta.get("never_signals"),
        "unsafe_files": list(getattr(record, "unsafe_files", ())),
    }


# ------------------------------------------------------------------------------------------ commands


def register(app: typer.Typer) -> None:
    models_app = typer.Typer(
        help="The model registry: list, show, compare, evaluate-candidate, promote, retire and upgrade.\n\n"
        "Example: smartmarket models list",
        no_args_is_help=True,
    )
    app.add_typer(models_app, name="models")
    _register_train(app)
    _register_evaluate(app)
    _register_registry(models_app)
    from smartmarket.cli.promotion import register_models

    register_models(models_app)
    _register_compare(app)
    _register_bench()


def _registry(ctx: typer.Context) -> Any:
    from smartmarket.models.registry import Registry

    return Registry(get_context(ctx).settings.registry_dir)


def _register_train(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        ctx: typer.Context,
        model: Annotated[str, typer.Option("--model", help=KIND_HELP)],
        symbols: Annotated[
            str | None,
            typer.Option("--symbols", "-s", help="One symbol (default BTCUSDT), or several comma-separated pooled "
                         "into one model (universe training: split and purged by timestamp)."),
        ] = None,
        timeframe: Annotated[str, typer.Option("--timeframe", "-t")] = "1h",
        universe: Annotated[
            str | None, typer.Option("--universe", help="'all': pool every symbol stored for the timeframe.")
        ] = None,
        cross_section: Annotated[
            int | None,
            typer.Option("--cross-section", min=2, help="Universe: add return/volatility ranks over N bars."),
        ] = None,
        preset: Annotated[Preset, typer.Option("--preset", help="Network size (networks only).")] = Preset.small,
        start: Annotated[str | None, typer.Option("--start", help="First candle used.")] = None,
        end: Annotated[str | None, typer.Option("--end", help="Candles before this time only.")] = None,
        walk_forward: Annotated[
            int, typer.Option("--walk-forward", min=0, help="Also test on the last N rolling walk-forward folds.")
        ] = 0,
        epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Maximum epochs (networks).")] = None,
        steps_per_epoch: Annotated[
            int | None, typer.Option("--steps-per-epoch", min=1, help="Cap batches per epoch (random subset).")
        ] = None,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
        horizon: Annotated[int, typer.Option("--horizon", min=1, help="Label horizon in bars.")] = 24,
        feature_set: Annotated[str, typer.Option("--feature-set")] = "default",
        threads: Annotated[int | None, typer.Option("--threads", help="torch intra-op threads.")] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
        old_symbol: Annotated[str | None, grammar.SYMBOL_LIST.option()] = None,
    ) -> None:
        """Train a model on stored candles, save it to the registry, print its out-of-sample metrics.

        With -s S1,S2,… (several symbols, or --universe all) one model is trained on every symbol's windows
        pooled, split and purged by timestamp; it needs no symbol identity to predict.

        Example: smartmarket train --model cnn_lstm -s BTCUSDT -t 1h --epochs 5
        """
        from smartmarket.models.training import rich_progress

        set_threads(threads)
        kind = _kind(model)
        store = get_context(ctx).store
        given = grammar.SYMBOL_LIST.resolve(symbols, old_symbol)
        if given is not None and universe is not None:
            raise ConfigError("give either -s S1,S2,… or --universe all, not both")
        symbols = given or "BTCUSDT"
        pooled = "," in symbols or universe is not None
        if not pooled and cross_section is not None:
            raise ConfigError("--cross-section ranks a symbol within a universe", hint="give several: -s S1,S2,…")
        if pooled and walk_forward:
            raise ConfigError("--walk-forward is not available with several symbols or --universe yet",
                              hint="drop it")  # fmt: skip
        started = time.perf_counter()
        network = kind in ("transformer", "cnn_lstm")
        if pooled:
            from smartmarket.ops.universe_training import parse_symbols, resolve_universe, train_universe

            chosen = resolve_universe(
                store, timeframe, symbols=None if universe is not None else parse_symbols(symbols), universe=universe
            )
            description = f"{grammar.display_kind(kind)} {','.join(chosen)} {Timeframe.parse(timeframe)}"
            bar = rich_progress(description, transient=as_json, console=err_console) if network else nullcontext(None)
            with bar as progress:
                trained = train_universe(
                    store, chosen, timeframe, kind, feature_set=feature_set, start=parse_time(start),
                    end=parse_time(end), cross_section=cross_section, preset=preset.value, epochs=epochs,
                    steps_per_epoch=steps_per_epoch, batch_size=batch_size, horizon=horizon, seed=seed,
                    progress=progress,
                )  # fmt: skip
        else:
            market = load_market(store, symbols, timeframe, feature_set, start=parse_time(start), end=parse_time(end))
            description = f"{grammar.display_kind(kind)} {market.symbol} {market.timeframe}"
            bar = rich_progress(description, transient=as_json, console=err_console) if network else nullcontext(None)
            with bar as progress:
                trained = train_from_market(
                    market, kind, preset=preset.value, epochs=epochs, steps_per_epoch=steps_per_epoch,
                    batch_size=batch_size, horizon=horizon, walk_forward_folds=walk_forward, seed=seed,
                    progress=progress,
                )  # fmt: skip
        model_id = _registry(ctx).save(trained)
        elapsed = time.perf_counter() - started
        warn(_registry(ctx).show(model_id).no_skill_warning)
        if as_json:
            typer.echo(_json({"id": model_id, "seconds": elapsed, **_record_summary(_registry(ctx).show(model_id))}))
            return
        console.print(f"saved [bold]{model_id}[/] ({elapsed:.1f} s)", highlight=False)
        if trained.symbols:
            console.print(f"pooled over {', '.join(trained.symbols)} (split by timestamp)", highlight=False)
        split = trained.split
        periods = {name: split.get(f"{name}_ts") or [None, None] for name in ("train", "validation", "test")}
        console.print(
            " · ".join(f"{name} {_date(p[0])} → {_date(p[1])}" for name, p in periods.items())
            + f" (purged, embargo {split['embargo']} bars)",
            highlight=False,
        )
        stages = [s for s in ("validation", "test", "train") if s in trained.metrics]
        console.print(metrics_table("metrics (validation and test are out of sample; train = fit check)",
                                    trained.metrics, stages))  # fmt: skip
        per_symbol: Any = trained.metrics.get("per_symbol") or {}
        if per_symbol:
            table = Table(title="test, per symbol (out of sample)", title_justify="left")
            for col in ("symbol", "n", "accuracy", "log-loss", "base-rate log-loss"):
                table.add_column(col, justify="left" if col == "symbol" else "right")
            for name, m in per_symbol.items():
                table.add_row(name, _f(m.get("n")), _f(m.get("accuracy")), _f(m.get("log_loss")),
                              _f(m.get("baseline_log_loss")))  # fmt: skip
            console.print(table)
        wf = trained.metrics.get("walk_forward")
        if wf:
            console.print(
                f"walk-forward ({int(wf['folds'])} folds): balanced accuracy {wf['balanced_accuracy_mean']:.3f} "
                f"± {wf['balanced_accuracy_se']:.3f}, log-loss {wf['log_loss_mean']:.3f} ± {wf['log_loss_se']:.3f}",
                highlight=False,
            )


def _register_evaluate(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_command(
        ctx: typer.Context,
        model_id: Annotated[str, typer.Argument(help="A registry id (or a unique prefix).")],
        start: Annotated[str | None, typer.Option("--start", help="Default: the model's test period start.")] = None,
        end: Annotated[str | None, typer.Option("--end", help="Bars before this time only.")] = None,
        fee_bps: Annotated[float, typer.Option("--fee-bps", help="Fee per side, basis points (10 = 0.1 %).")] = 10.0,
        threshold: Annotated[float, typer.Option("--threshold", help="Probability needed to take a side.")] = 0.45,
        long_only: Annotated[bool, typer.Option("--long-only", help="Flat instead of short.")] = False,
        threads: Annotated[int | None, typer.Option("--threads", help="torch intra-op threads.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
        old_fee: Annotated[float | None, grammar.FEE.option()] = None,
    ) -> None:
        """Out-of-sample metrics and a trading evaluation (after fees) of a registered model.

        Numbers over a range that overlaps the model's training or validation period are labelled IN-SAMPLE.

        Example: smartmarket evaluate transformer-BTCUSDT-1h --json
        """
        fee = grammar.bps_to_fraction(grammar.FEE.resolve(fee_bps, old_fee))
        set_threads(threads)
        model = _registry(ctx).load(model_id)
        doc = evaluate_model(
            get_context(ctx).store, model, start=parse_time(start), end=parse_time(end), fee=fee,
            threshold=threshold, long_only=long_only,
        )  # fmt: skip
        warn(doc["no_skill_warning"])
        if as_json:
            typer.echo(_json(doc))
        else:
            _print_evaluation(doc)


def _register_registry(models_app: typer.Typer) -> None:
    @models_app.command("list")
    def list_command(
        ctx: typer.Context,
        symbol: Annotated[str | None, typer.Option("--symbol", "-s")] = None,
        timeframe: Annotated[str | None, typer.Option("--timeframe", "-t")] = None,
        kind: Annotated[str | None, typer.Option("--kind", help=KIND_HELP)] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Registered models, oldest first, with their test metrics.

        Example: smartmarket models list --symbol BTCUSDT --timeframe 1h
        """
        records = _registry(ctx).list(symbol=symbol, timeframe=timeframe, kind=_kind(kind) if kind else None)
        if as_json:
            typer.echo(_json([_record_summary(r) for r in records]))
        elif not records:
            console.print("no model registered yet: train one with `smartmarket train`")
        else:
            console.print(_records_table(records, f"{len(records)} model(s) in {_registry(ctx).directory}"))
        for record in records:
            warn(record.no_skill_warning)

    @models_app.command("show")
    def show_command(
        ctx: typer.Context,
        model_id: Annotated[str, typer.Argument(help="A registry id (or a unique prefix).")],
        as_json: Annotated[bool, typer.Option("--json", help="The full metadata as JSON.")] = False,
    ) -> None:
        """One model: its setup, periods and metrics (refused, naming the file, when the entry holds a pickle).

        Example: smartmarket models show logreg-BTCUSDT-1h
        """
        record = _registry(ctx).check(model_id)
        warn(record.no_skill_warning)
        if as_json:
            typer.echo(_json(record.metadata))
            return
        meta = record.metadata
        kind = grammar.display_kind(record.kind)
        console.print(f"[bold]{record.model_id}[/] · {kind} · stage {record.stage}", highlight=False)
        console.print(
            f"{record.symbol} {record.timeframe}, feature set '{meta.get('feature_set')}' "
            f"({len(meta.get('feature_columns', []))} columns), context {meta.get('context')} bars, "
            f"labels {meta.get('label_config', {}).get('method')} h={meta.get('label_config', {}).get('horizon')}",
            highlight=False,
        )
        split = meta.get("split", {})
        for name in ("train", "validation", "test"):
            period = split.get(f"{name}_ts") or [None, None]
            console.print(f"  {name:<10} {_date(period[0])} → {_date(period[1])}  ({split.get(f'n_{name}')} samples)")
        metrics = meta.get("metrics", {})
        stages = [s for s in ("validation", "test", "train") if s in metrics]
        console.print(metrics_table("metrics", metrics, stages))
        console.print(f"code {meta.get('code_version', {})}, data checksum {meta.get('data', {}).get('checksum')}")

    @models_app.command("upgrade")
    def upgrade_command(
        ctx: typer.Context,
        trust_pickle: Annotated[
            bool,
            typer.Option(
                "--trust-pickle",
                help="Load the registry's old pickle files (this runs their code): only for a registry you wrote.",
            ),
        ] = False,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Rewrite the registry's entries of earlier versions (model.joblib / system.joblib pickles) once, in the
        pickle-free formats. Without --trust-pickle it only names the first pickle and changes nothing.

        Example: smartmarket models upgrade --trust-pickle
        """
        from smartmarket.core.safe_files import unsafe_files_error
        from smartmarket.ops.upgrade import LEFT_HINT, upgrade_registry

        registry = _registry(ctx)
        report = upgrade_registry(registry, trust_pickle=trust_pickle)
        if as_json:
            upgraded = [{"id": entry, "upgraded": what} for entry, what in report.upgraded]
            typer.echo(_json({"upgraded": upgraded, "refused": [f"{p}: {r}" for p, r in report.left]}))
        else:
            for entry, what in report.upgraded:
                console.print(f"upgraded {escape(entry)}: {escape(what)}", highlight=False)
            if not report.upgraded and not report.left:
                console.print(f"nothing to upgrade in {escape(str(registry.directory))}", highlight=False)
        if report.left:
            raise unsafe_files_error(report.left, what="cannot upgrade", hint=LEFT_HINT)

    @models_app.command("compare")
    def compare_command(
        ctx: typer.Context,
        model_ids: Annotated[list[str] | None, typer.Argument(help="Ids to compare (default: all).")] = None,
        symbol: Annotated[str | None, typer.Option("--symbol", "-s")] = None,
        timeframe: Annotated[str | None, typer.Option("--timeframe", "-t")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Registered models' test metrics side by side (fair only on the same test period: see the note).

        Example: smartmarket models compare --symbol BTCUSDT --timeframe 1h
        """
        registry = _registry(ctx)
        if model_ids:
            records = [registry.show(m) for m in model_ids]
        else:
            records = registry.list(symbol=symbol, timeframe=timeframe)
        periods = {tuple(r.metadata.get("split", {}).get("test_ts") or ()) for r in records}
        same = len(periods) <= 1
        for record in records:
            warn(record.no_skill_warning)
        if as_json:
            typer.echo(_json({"same_test_period": same, "models": [_record_summary(r) for r in records]}))
            return
        if not records:
            console.print("no model registered yet: train one with `smartmarket train`")
            return
        ranked = sorted(records, key=lambda r: -(r.test_metrics.get("balanced_accuracy") or 0.0))
        console.print(_records_table(ranked, "test metrics, best balanced accuracy first"))
        if not same:
            console.print(
                "[yellow]note:[/] these models were tested on different periods or samples; for a fair comparison "
                "on identical test samples run `smartmarket compare-models`."
            )


def _register_compare(app: typer.Typer) -> None:
    @app.command("compare-models")
    def compare_models_command(
        ctx: typer.Context,
        symbol: Annotated[str, typer.Option("--symbol", "-s")] = "BTCUSDT",
        timeframe: Annotated[str, typer.Option("--timeframe", "-t")] = "1h",
        folds: Annotated[int, typer.Option("--folds", min=1, help="Rolling walk-forward folds (the latest N).")] = 3,
        preset: Annotated[Preset, typer.Option("--preset", help="Network size for both networks.")] = Preset.small,
        epochs: Annotated[int, typer.Option("--epochs", min=1, help="Maximum epochs per network.")] = 10,
        steps_per_epoch: Annotated[
            int | None, typer.Option("--steps-per-epoch", min=1, help="Cap batches per epoch (random subset).")
        ] = None,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
        horizon: Annotated[int, typer.Option("--horizon", min=1, help="Label horizon (bars); also the embargo.")] = 24,
        feature_set: Annotated[str, typer.Option("--feature-set")] = "default",
        start: Annotated[str | None, typer.Option("--start")] = None,
        end: Annotated[str | None, typer.Option("--end")] = None,
        last: Annotated[int | None, typer.Option("--last", min=100, help="Use only the last N candles.")] = None,
        threads: Annotated[int | None, typer.Option("--threads", help="torch intra-op threads.")] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="Markdown report (a .json twin is written).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
        target: Annotated[
            CompareTarget,
            typer.Option(
                "--target",
                help="direction: the classifiers on triple-barrier labels; volatility: forecasters of the realised "
                "variance over --horizon bars (constant, EWMA, HAR-RV, LightGBM) scored by QLIKE and log-MSE.",
            ),
        ] = CompareTarget.direction,
        vol_models: Annotated[
            str,
            typer.Option(
                "--vol-models",
                help="With --target volatility: comma-separated forecasters among constant, ewma, har, har_plain, "
                "lightgbm, transformer (the Transformer trains with --preset/--epochs/--steps-per-epoch/--batch-size).",
            ),
        ] = "constant,ewma,har,lightgbm",
    ) -> None:
        """Walk-forward comparison on identical test samples: Transformer, CNN-LSTM, logistic, LightGBM, majority.

        Writes a markdown table and a JSON document, and checks the claim "the Transformer is 20–30 % better than
        the CNN-LSTM" in numbers (balanced accuracy and log-loss, with standard errors). With ``--target
        volatility`` it compares volatility forecasters instead (``--preset``, ``--epochs``, ``--steps-per-epoch``
        and ``--batch-size`` apply only to a Transformer named in ``--vol-models``).

        Example: smartmarket compare-models --symbol BTCUSDT --timeframe 1h --folds 3 --out report.md
        """
        from smartmarket.models.compare import COMPARISON_KINDS, comparison_document, write_comparison

        set_threads(threads)
        app_ctx = get_context(ctx)
        if target is CompareTarget.volatility:
            from smartmarket.models.volatility import check_kinds

            kinds = check_kinds(vol_models.split(","))  # before the (slow) feature computation
        market = load_market(
            app_ctx.store, symbol, timeframe, feature_set, start=parse_time(start), end=parse_time(end), tail=last
        )
        if target is CompareTarget.volatility:
            network = {"preset": preset.value, "epochs": epochs, "batch_size": batch_size}
            if steps_per_epoch is not None:
                network["steps_per_epoch"] = steps_per_epoch
            with_net = "transformer" in kinds
            _compare_volatility(
                market, kinds, network, folds=folds, horizon=horizon, seed=seed, out=out, as_json=as_json,
                default_dir=app_ctx.settings.reports_dir,
                command=_canonical_command(
                    target="volatility", symbol=market.symbol, timeframe=market.timeframe.value, folds=folds,
                    horizon=horizon, vol_models=",".join(kinds), feature_set=feature_set, start=start, end=end,
                    last=last, preset=preset.value if with_net else None, epochs=epochs if with_net else None,
                    steps_per_epoch=steps_per_epoch if with_net else None,
                    batch_size=batch_size if with_net else None, threads=threads, seed=seed, out=out,
                ),
            )  # fmt: skip
            return
        command = _canonical_command(
            symbol=market.symbol, timeframe=market.timeframe.value, folds=folds, preset=preset.value, epochs=epochs,
            steps_per_epoch=steps_per_epoch, batch_size=batch_size, horizon=horizon, feature_set=feature_set,
            start=start, end=end, last=last, threads=threads, seed=seed, out=out,
        )  # fmt: skip
        with app_ctx.progress() as progress:
            results, setup = run_comparison(
                market, COMPARISON_KINDS, folds=folds, preset=preset.value, epochs=epochs,
                steps_per_epoch=steps_per_epoch, batch_size=batch_size, horizon=horizon, seed=seed, command=command,
                threads=threads, progress=None if app_ctx.quiet else progress,
            )  # fmt: skip
        document = comparison_document(results, setup)
        for entry in document["summary"]:
            if entry.get("no_skill"):
                warn(
                    f"warning: {entry['model']} has no skill: mean test log-loss {entry['log_loss_mean']:.3f} is worse "
                    f"than the base-rate baseline {entry['baseline_log_loss']:.3f} (training class frequencies)"
                )
        path = out or app_ctx.settings.reports_dir / f"compare-models-{market.symbol}-{market.timeframe}.md"
        md_path, json_path = write_comparison(document, path)
        if as_json:
            typer.echo(_json(document))
            return
        _print_comparison(document)
        console.print(f"written: {md_path} and {json_path}", highlight=False)


def _compare_volatility(
    market: MarketData, kinds: Sequence[str], network: Mapping[str, Any], *, folds: int, horizon: int, seed: int,
    out: Path | None, as_json: bool, default_dir: Path, command: str,
) -> None:  # fmt: skip
    """``compare-models --target volatility``: run the use case (models.volatility_compare), write, print."""
    from smartmarket.models.volatility_compare import verdicts, volatility_comparison, write_volatility_comparison

    document = volatility_comparison(
        market.candles, market.model_features, symbol=market.symbol, timeframe=market.timeframe.value,
        horizon=horizon, folds=folds, feature_set=market.feature_set, command=command, seed=seed, kinds=kinds,
        network=network,
    )  # fmt: skip
    path = out or default_dir / f"volatility-{market.symbol}-{market.timeframe}.md"
    md_path, json_path = write_volatility_comparison(document, path)
    if as_json:
        typer.echo(_json(document))
        return
    table = Table(
        title=f"volatility over {horizon} bars, walk-forward test folds (mean ± standard error across folds)",
        title_justify="left",
    )
    for col in ("forecaster", "QLIKE", "MSE log-variance", "folds", "test n"):
        table.add_column(col, justify="left" if col == "forecaster" else "right")
    for s in document["summary"]:
        table.add_row(
            s["model"], _f(s["qlike_mean"]) + ("" if s["qlike_se"] is None else f" ± {s['qlike_se']:.3f}"),
            _f(s["mse_log_mean"]) + ("" if s["mse_log_se"] is None else f" ± {s['mse_log_se']:.3f}"),
            str(s["folds"]), f"{s['test_samples']:,}",
        )  # fmt: skip
    console.print(table)
    for line in verdicts(document["summary"]):
        console.print(line, highlight=False)
    console.print(f"written: {md_path} and {json_path}", highlight=False)


def _canonical_command(**options: Any) -> str:
    parts = ["smartmarket compare-models"]
    for name, value in options.items():
        if value is None:
            continue
        parts.append(f"--{name.replace('_', '-')} {value}")
    return " ".join(parts)


def run_comparison(
    market: MarketData,
    kinds: Sequence[str],
    *,
    folds: int,
    preset: str,
    epochs: int,
    steps_per_epoch: int | None,
    batch_size: int,
    horizon: int,
    seed: int,
    command: str,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[pd.DataFrame, Any]:
    """Run :func:`compare_models` on the last ``folds`` rolling folds that fit ``market``; results and setup.
    ``progress(name, done, total)``: the fits done; with it, one line per network epoch too (on stderr)."""
    import numpy as np

    from smartmarket.models.compare import ComparisonSetup, walk_forward_layout
    from smartmarket.models.datasets import complete_windows, feature_matrix
    from smartmarket.models.labels import LabelConfig
    from smartmarket.models.networks import network_config
    from smartmarket.models.pipeline import code_version, compare_models, data_checksum
    from smartmarket.models.training import TrainConfig

    values, columns = feature_matrix(market.model_features)
    context = max(network_config(k, preset).context for k in kinds if k in ("transformer", "cnn_lstm"))
    ready = complete_windows(values, context)
    if not ready.any():
        raise NotFoundError(f"no bar has {context} complete feature rows: too little data for preset {preset!r}")
    layout = walk_forward_layout(len(values), folds, first_usable=int(np.argmax(ready)), embargo=horizon)
    labels = LabelConfig(horizon=horizon)
    config = TrainConfig(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, seed=seed)
    started = time.perf_counter()
    results = compare_models(
        list(kinds), market.model_features, market.candles, layout, label_config=labels, preset=preset,
        train_config=config, seed=seed, progress=_epoch_logger("  network") if progress else None, fits=progress,
    )  # fmt: skip
    if results.empty:
        raise NotFoundError("no walk-forward fold had training and test samples: use more data or fewer folds")
    ts = market.candles["ts"].to_numpy()
    setup = ComparisonSetup(
        command=command,
        symbol=market.symbol,
        timeframe=market.timeframe.value,
        feature_set=market.feature_set,
        n_features=len(columns),
        preset=preset,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        walk_forward={
            "train": layout.train,
            "validation": layout.validation,
            "test": layout.test,
            "embargo": layout.embargo,
            "folds": int(results["fold"].nunique()),
            "rolling": not layout.expanding,
            "batch_size": batch_size,
        },
        labels=labels.to_dict(),
        data={
            "rows": len(ts),
            "first_ts": int(ts[0]),
            "last_ts": int(ts[-1]),
            "checksum": data_checksum(market.candles, values),
        },
        hyperparameters={k: dict(vars(network_config(k, preset))) for k in kinds if k in ("transformer", "cnn_lstm")},
        code_version=dict(code_version()),
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        elapsed_s=round(time.perf_counter() - started, 1),
        threads=threads,
    )
    return results, setup


def _print_comparison(document: Mapping[str, Any]) -> None:
    table = Table(title="walk-forward test folds (mean ± standard error across folds)", title_justify="left")
    for col in ("model", "balanced accuracy", "accuracy", "log-loss", "Brier", "AUC", "folds", "test n"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for s in document["summary"]:

        def pm(metric: str, s: Mapping[str, Any] = s) -> str:
            mean, se = s[f"{metric}_mean"], s[f"{metric}_se"]
            return _f(mean) + ("" if se is None else f" ± {se:.3f}")

        table.add_row(
            s["model"], pm("balanced_accuracy"), pm("accuracy"), pm("log_loss"), pm("brier"), pm("auc_ovr"),
            str(s["folds"]), f"{s['test_samples']:,}",
        )  # fmt: skip
    console.print(table)
    claim = document["claim"]
    if claim.get("folds"):
        mean, se = claim["relative_improvement_mean"], claim["relative_improvement_se"]
        console.print(
            f'claim "Transformer 20–30 % better than CNN-LSTM" (balanced accuracy, paired per fold): '
            f"{grammar.pct(mean, signed=True)} ± {grammar.pct(se or 0)} → [bold]{claim['verdict']}[/]",
            highlight=False,
        )


def _register_bench() -> None:
    from smartmarket.cli.bench import bench_app

    @bench_app.command("inference")
    def bench_inference_command(
        context: Annotated[int, typer.Option("--context", min=16, help="Window length in bars.")] = 1024,
        iterations: Annotated[int, typer.Option("--iterations", min=1, help="Timed rounds per candidate.")] = 200,
        warmup: Annotated[int, typer.Option("--warmup", min=0)] = 20,
        threads: Annotated[int, typer.Option("--threads", min=1, help="torch intra-op threads.")] = 1,
        variants: Annotated[
            bool, typer.Option("--variants/--no-variants", help="Also time the Transformer design options.")
        ] = True,
        optimised: Annotated[
            bool, typer.Option("--optimised/--no-optimised", help="Also time TorchScript and ONNX Runtime.")
        ] = True,
        train_steps: Annotated[int, typer.Option("--train-steps", min=0, help="Timed training steps per net.")] = 3,
        train_batch: Annotated[int, typer.Option("--train-batch", min=1)] = 32,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    ) -> None:
        """Seed Transformer and CNN-LSTM on CPU at batch 1: p50/p99 latency, parameters, training samples/s.

        Example: smartmarket bench inference --json
        """
        from smartmarket.bench.inference import run_inference_benchmark

        result = run_inference_benchmark(
            context=context, iterations=iterations, warmup=warmup, threads=threads, variants=variants,
            optimised=optimised, train_steps=train_steps, train_batch=train_batch,
            log=lambda msg: err_console.print(f"[dim]{msg}[/]"),
        )  # fmt: skip
        if as_json:
            typer.echo(_json(result))
            return
        _print_inference(result)


def _print_inference(result: Mapping[str, Any]) -> None:
    machine = result["machine"]
    table = Table(
        title=f"inference, batch 1 × {result['transformer']['context']} bars, CPU, {machine['threads']} thread(s); "
        f"load average {machine['load_average_before'][0]}",
        title_justify="left",
    )
    for col in ("model", "p50 ms", "p99 ms", "CPU p50 ms", "CPU p99 ms", "params", "tokens", "GFLOP"):
        table.add_column(col, justify="left" if col == "model" else "right")

    def row(name: str, r: Mapping[str, Any]) -> None:
        table.add_row(
            name, _f(r["p50_ms"], 1), _f(r["p99_ms"], 1), _f(r["cpu_p50_ms"], 1), _f(r["cpu_p99_ms"], 1),
            f"{r['params']:,}" if "params" in r else "", str(r.get("tokens", "")), _f(r.get("gflop")),
        )  # fmt: skip

    t = result["transformer"]
    row(f"Transformer (seed: {t['mixing']}, stride {t['stride']})", t)
    row("CNN-LSTM (seed)", result["cnn_lstm"])
    for v in result["transformer_variants"][1:]:
        row(f"  Transformer option: {v['name']}", v)
    for key, info in result["optimised"].items():
        if key != "eager" and info is not None:
            row(f"  seed Transformer · {key.replace('_', ' ')}", {**info, "params": t["params"], "tokens": t["tokens"]})
    console.print(table)
    console.print(
        f"target p99 ≤ {t['target_p99_ms']} ms: wall {'met' if t['target_met_wall'] else 'missed'}, "
        f"CPU time {'met' if t['target_met_cpu'] else 'missed'} (wall p99 includes other processes' load)"
    )
    for name, tr in result["training"].items():
        console.print(
            f"training {name}: {tr['samples_per_s']} samples/s (batch {tr['batch_size']}, {tr['steps']} steps)"
        )


__all__ = [
    "KIND_ALIASES",
    "MarketData",
    "evaluate_model",
    "load_market",
    "register",
    "run_comparison",
    "sample_status",
    "train_demo_model",
    "train_from_market",
]
