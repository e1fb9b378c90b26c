"""Parameter optimisation that reports how much to trust its winner (the use case behind ``smartmarket optimize``).

``optimize(frame, request)`` searches a strategy's parameter space on one candle series and returns, beside
the best parameters and their in-sample figures:

* the **deflated Sharpe ratio** of the winner for the number of configurations tried (``analytics.deflated``);
* the **probability of backtest overfitting** (PBO, combinatorially symmetric cross-validation over ``n_blocks``
  blocks of bars, ``analytics.pbo``);
* a **walk-forward** check: the same search re-run on each expanding training window, the winner traded on
  the following unseen window by the event-driven kernel, the out-of-sample windows stitched together; its
  objective is reported next to the in-sample one.

Search methods: ``grid`` (every combination; strategies with an array form run through the compiled sweep,
the others through ``run_backtest`` one by one) and ``tpe`` (Optuna's TPE sampler, each trial one compiled
or event-driven run). With ``storage`` (``postgresql://…``, or any SQLAlchemy URL) the study lives in that
database under ``study``: several processes or machines running the same request share it, and a trial
whose worker died is marked failed after the heartbeat grace period and run again by another worker.

The space is ``name=start:stop:step`` (inclusive), ``name=value`` or ``name=a|b|c``, comma-separated.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.analytics.deflated import deflated_sharpe_from_returns, expected_max_sharpe
from smartmarket.analytics.metrics import YEAR_MS, bar_returns, cagr, compute_metrics, periods_per_year
from smartmarket.analytics.pbo import pbo_from_blocks
from smartmarket.backtest.runner import BacktestResult, run_backtest
from smartmarket.backtest.sweep import (
    has_array_form,
    prepare,
    run_array_backtest,
    run_sweep,
    sharpe_from_sums,
    unsupported_reason,
)
from smartmarket.backtest.walkforward import FitOutcome, WalkForwardConfig, walk_forward
from smartmarket.core.errors import ConfigError, ValidationError
from smartmarket.core.frame import as_candle_frame
from smartmarket.core.types import Timeframe
from smartmarket.engine import sweep_kernel as sk
from smartmarket.engine.kernel import KernelConfig

OBJECTIVES = ("sharpe", "sortino", "calmar", "return")
METHODS = ("grid", "tpe")
MAX_GRID = 1_000_000
Progress = Callable[[str, int, int], None]
"""``progress(task, done, total)``."""


# ------------------------------------------------------------------------------------------ the space


@dataclass(frozen=True, slots=True)
class Dimension:
    """One parameter's candidate values (``start:stop:step`` inclusive, or an explicit list)."""

    name: str
    values: tuple[Any, ...]
    low: float | None = None
    high: float | None = None
    step: float | None = None

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in self.values)


def _number(raw: str, item: str) -> int | float:
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"bad --space value {raw!r} in {item!r}", hint="use numbers: fast=5:50:5") from None
    if not math.isfinite(value):
        raise ConfigError(f"bad --space value {raw!r} in {item!r}", hint="use finite numbers")
    return value


def _value(raw: str, item: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return _number(raw, item)
    except ConfigError:
        return raw


def parse_space(text: str) -> list[Dimension]:
    """``"fast=5:50:5,slow=20:200:10"`` → dimensions; ``ConfigError`` with the fix for any bad item."""
    hint = (
        "write name=start:stop:step (inclusive), name=value or name=a|b|c, comma-separated: "
        "fast=5:50:5,slow=20:200:10"
    )
    if not text or not text.strip():
        raise ConfigError("--space is empty", hint=hint)
    dims: list[Dimension] = []
    for item in (part.strip() for part in text.split(",")):
        name, sep, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name or not raw or not name.isidentifier():
            raise ConfigError(f"bad --space item {item!r}", hint=hint)
        if any(d.name == name for d in dims):
            raise ConfigError(f"--space names {name!r} twice", hint=hint)
        if ":" in raw:
            parts = raw.split(":")
            if len(parts) != 3:
                raise ConfigError(f"bad --space range {item!r}", hint=hint)
            start, stop, step = (_number(p.strip(), item) for p in parts)
            if not step > 0 or stop < start:
                raise ConfigError(f"bad --space range {item!r}: need step > 0 and stop >= start", hint=hint)
            count = math.floor((stop - start) / step + 1e-9) + 1
            if count > MAX_GRID:
                raise ConfigError(f"--space range {item!r} has {count:,} values", hint="use a larger step")
            if all(isinstance(v, int) for v in (start, stop, step)):
                values: tuple[Any, ...] = tuple(int(start) + k * int(step) for k in range(count))
            else:
                values = tuple(round(float(start) + k * float(step), 12) for k in range(count))
            dims.append(Dimension(name, values, float(start), float(values[-1]), float(step)))
        else:
            values = tuple(_value(v.strip(), item) for v in raw.split("|"))
            dims.append(Dimension(name, values))
    return dims


def grid_points(dims: Sequence[Dimension]) -> list[dict[str, Any]]:
    """Every combination of the dimensions' values (``ConfigError`` above ``MAX_GRID``)."""
    size = math.prod(len(d.values) for d in dims)
    if size > MAX_GRID:
        raise ConfigError(f"the grid has {size:,} points (limit {MAX_GRID:,})", hint="use larger steps or --method tpe")
    names = [d.name for d in dims]
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(d.values for d in dims))]


def valid_points(strategy: str, points: Sequence[Mapping[str, Any]], fixed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The points the strategy accepts (its own checks), merged with ``fixed`` and completed with defaults."""
    from smartmarket.strategies.arrays import checked_params

    out: list[dict[str, Any]] = []
    seen: set[tuple[tuple[str, Any], ...]] = set()
    for point in points:
        try:
            params = checked_params(strategy, {**fixed, **point})
        except ConfigError:
            continue
        key = tuple(sorted(params.items(), key=lambda kv: kv[0]))
        if key not in seen:
            seen.add(key)
            out.append(params)
    return out


# ------------------------------------------------------------------------------------------ requests


@dataclass(frozen=True, slots=True)
class OptimizeRequest:
    """What to optimise and how. ``walk_forward`` folds (0: none); ``trials`` for TPE."""

    strategy: str
    space: tuple[Dimension, ...]
    timeframe: Timeframe
    symbol: str = "SYMBOL"
    method: str = "grid"
    trials: int = 100
    objective: str = "sharpe"
    walk_forward: int = 4
    config: KernelConfig = field(default_factory=lambda: KernelConfig(close_at_end=True))
    fixed: Mapping[str, Any] = field(default_factory=dict)
    n_blocks: int = 16
    seed: int = 0
    storage: str | None = None
    study: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown --method {self.method!r}", hint=f"choose one of {', '.join(METHODS)}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown --objective {self.objective!r}", hint=f"choose one of {', '.join(OBJECTIVES)}")
        if self.trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {self.trials}")
        if self.walk_forward < 0:
            raise ConfigError(f"--walk-forward must be >= 0 folds, got {self.walk_forward}")
        if self.n_blocks < 2 or self.n_blocks % 2:
            raise ConfigError(f"PBO blocks must be an even number >= 2, got {self.n_blocks}")
        if self.study is not None and self.storage is None:
            raise ConfigError("--study needs --storage", hint="give --storage postgresql://user@host:5432/db")


# ------------------------------------------------------------------------------------------ evaluation


@dataclass(slots=True)
class Evaluations:
    """Summaries of evaluated parameter sets (rows): ``sweep_kernel.S_*`` stats and block sums."""

    params: list[dict[str, Any]]
    stats: np.ndarray
    blocks: np.ndarray
    start_ts: int
    end_ts: int
    initial_cash: float

    def objective(self, name: str, timeframe: Timeframe) -> np.ndarray:
        """Sharpe/Sortino annualised as ``analytics.compute_metrics`` does, Calmar or total return (NaN: undefined)."""
        return objective_values(self.stats, name, timeframe, self.initial_cash, self.start_ts, self.end_ts)


def objective_values(
    stats: np.ndarray, name: str, timeframe: Timeframe, initial_cash: float, start_ts: int, end_ts: int
) -> np.ndarray:
    """The objective of every row of ``stats`` (see :meth:`Evaluations.objective`)."""
    stats = np.atleast_2d(stats)
    ppy = periods_per_year(timeframe)
    n, total = stats[:, sk.S_N], stats[:, sk.S_SUM]
    if name == "sharpe":
        return np.asarray(sharpe_from_sums(n, total, stats[:, sk.S_SUMSQ]) * math.sqrt(ppy))
    if name == "sortino":
        with np.errstate(divide="ignore", invalid="ignore"):
            dd = np.sqrt(stats[:, sk.S_DOWNSQ] / n)
            out = (total / n) / dd * math.sqrt(ppy)
        return np.where((n >= 2) & (dd > 0), out, np.nan)
    final = stats[:, sk.S_FINAL]
    if name == "return":
        return np.asarray(final / initial_cash - 1.0)
    years = (end_ts - start_ts) / YEAR_MS
    annual = np.array([cagr(initial_cash, float(f), years) for f in final])
    max_dd = stats[:, sk.S_MAX_DD]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(max_dd > 0, annual / max_dd, np.nan)


def _event_driven_stats(result: BacktestResult, n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """The compiled sweep's summaries, from an event-driven run."""
    equity = result.equity
    returns = bar_returns(equity)
    stats = np.zeros(sk.N_STATS)
    blocks = np.zeros((n_blocks, sk.N_BSTATS))
    t = len(returns)
    which = np.arange(t) * n_blocks // max(t, 1)
    for b in range(n_blocks):
        part = returns[which == b]
        blocks[b] = (len(part), part.sum(), (part * part).sum(), (part[part < 0] ** 2).sum())
    values = equity.to_numpy()
    peak = np.maximum.accumulate(values)
    stats[sk.S_FINAL] = result.final_equity
    stats[sk.S_TRADES] = len(result.trades)
    stats[sk.S_WINS] = sum(1 for tr in result.trades if tr.pnl > 0)
    stats[sk.S_MAX_DD] = float((1.0 - values / peak).max()) if len(values) else 0.0
    stats[sk.S_N], stats[sk.S_SUM] = blocks[:, 0].sum(), blocks[:, 1].sum()
    stats[sk.S_SUMSQ], stats[sk.S_DOWNSQ] = blocks[:, 2].sum(), blocks[:, 3].sum()
    stats[sk.S_FILLS], stats[sk.S_NOTIONAL] = len(result.fills), result.traded_notional
    return stats, blocks


class Evaluator:
    """Runs parameter sets of one strategy over one candle frame: compiled when possible, else event-driven."""

    def __init__(
        self, frame: pd.DataFrame, strategy: str, config: KernelConfig, n_blocks: int, *, compiled: bool | None = None
    ) -> None:
        self.frame = as_candle_frame(frame)
        self.strategy = strategy
        self.config = config
        self.n_blocks = n_blocks
        possible = has_array_form(strategy) and unsupported_reason(config) is None
        self.compiled = possible if compiled is None else compiled and possible
        self._prepared = prepare(self.frame, config) if self.compiled else None

    @property
    def engine(self) -> str:
        return "compiled" if self.compiled else "event-driven"

    def evaluate(self, points: Sequence[dict[str, Any]], progress: Progress | None = None) -> Evaluations:
        ts = self.frame["ts"].to_numpy()
        start_ts, end_ts = int(ts[0]), int(ts[-1])
        m = len(points)
        stats = np.zeros((m, sk.N_STATS))
        blocks = np.zeros((m, self.n_blocks, sk.N_BSTATS))
        step = 256 if self.compiled else 1
        for first in range(0, m, step):
            rows = points[first : first + step]
            if self._prepared is not None:
                res = run_sweep(self._prepared, self.strategy, rows, n_blocks=self.n_blocks)
                stats[first : first + len(rows)], blocks[first : first + len(rows)] = res.stats, res.blocks
            else:
                for k, params in enumerate(rows):
                    result = run_backtest(self.frame, self.strategy, params=params, config=self.config)
                    stats[first + k], blocks[first + k] = _event_driven_stats(result, self.n_blocks)
            if progress is not None:
                progress("evaluating", min(first + step, m), m)
        return Evaluations(list(points), stats, blocks, start_ts, end_ts, self.config.initial_cash)

    def run(self, params: Mapping[str, Any], timeframe: Timeframe, symbol: str) -> BacktestResult:
        """One fully recorded run (the compiled path's result equals ``run_backtest``'s)."""
        if self._prepared is not None:
            return run_array_backtest(self._prepared, self.strategy, params=params, timeframe=timeframe, symbol=symbol)
        return run_backtest(
            self.frame, self.strategy, params=params, config=self.config, timeframe=timeframe, symbol=symbol
        )


# ------------------------------------------------------------------------------------------ the report


@dataclass(slots=True)
class WalkForwardFold:
    train_start_ts: int
    test_start_ts: int
    test_end_ts: int
    params: dict[str, Any]
    in_sample: float | None  # the objective of ``params`` on the training window
    out_of_sample: float | None  # the objective on the test window (event-driven run)


@dataclass(slots=True)
class OptimizeReport:
    """Everything a study found (see the module docstring)."""

    strategy: str
    symbol: str
    timeframe: Timeframe
    method: str
    objective: str
    engine: str
    bars: int
    start_ts: int
    end_ts: int
    n_points: int  # combinations in the space (grid) or trials asked for (tpe)
    n_trials: int  # configurations evaluated (the DSR/PBO trial count)
    best_params: dict[str, Any]
    best_value: float | None
    best_metrics: dict[str, Any]
    deflated_sharpe: float | None
    expected_max_sharpe: float | None  # annualised: what the best of n_trials no-skill tries would reach
    pbo: dict[str, Any] | None
    walk_forward_folds: list[WalkForwardFold]
    walk_forward_oos: float | None
    walk_forward_metrics: dict[str, Any] | None
    top: list[dict[str, Any]]
    elapsed_s: float
    study: str | None = None
    notes: list[str] = field(default_factory=list)
    evaluated: list[dict[str, Any]] = field(default_factory=list)  # every configuration: params and value

    @property
    def in_sample(self) -> float | None:
        return self.best_value

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "symbol": self.symbol,
            "timeframe": str(self.timeframe),
            "method": self.method,
            "objective": self.objective,
            "engine": self.engine,
            "bars": self.bars,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "n_points": self.n_points,
            "n_trials": self.n_trials,
            "best": {"params": self.best_params, "in_sample": self.best_value, "metrics": self.best_metrics},
            "deflated_sharpe": self.deflated_sharpe,
            "expected_max_sharpe": self.expected_max_sharpe,
            "pbo": self.pbo,
            "walk_forward": {
                "folds": [
                    {
                        "train_start_ts": f.train_start_ts,
                        "test_start_ts": f.test_start_ts,
                        "test_end_ts": f.test_end_ts,
                        "params": f.params,
                        "in_sample": f.in_sample,
                        "out_of_sample": f.out_of_sample,
                    }
                    for f in self.walk_forward_folds
                ],
                "in_sample": self.best_value,
                "out_of_sample": self.walk_forward_oos,
                "metrics": self.walk_forward_metrics,
            },
            "top": self.top,
            "evaluated": self.evaluated,
            "study": self.study,
            "elapsed_s": round(self.elapsed_s, 3),
            "notes": self.notes,
        }


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _metric(metrics: Any, name: str) -> float | None:
    key = "total_return" if name == "return" else name
    value = getattr(metrics, key, None)
    return _finite(value) if value is not None else None


def _best_index(values: np.ndarray) -> int | None:
    if not np.isfinite(values).any():
        return None
    return int(np.nanargmax(np.where(np.isfinite(values), values, np.nan)))


# ------------------------------------------------------------------------------------------ search


def _grid(evaluator: Evaluator, points: list[dict[str, Any]], progress: Progress | None) -> Evaluations:
    return evaluator.evaluate(points, progress)


def _sqlalchemy_url(url: str) -> str:
    """``postgresql://`` → ``postgresql+psycopg://`` (the driver this project ships); other URLs unchanged."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def retry_callback_class() -> Any:
    """Optuna's callback that re-queues a trial whose worker stopped beating (its name since Optuna 4.9)."""
    from optuna import storages

    return getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback


def open_study_storage(url: str, heartbeat_s: int = 10, grace_s: int = 30, attempts: int = 5) -> Any:
    """Optuna's RDB storage at ``url`` with heartbeats, creating its tables if needed.

    Workers started together on a fresh database race to create the same tables; PostgreSQL then refuses all
    but one (unique violation on ``pg_type`` or "already exists"). The losers try again: by then the tables
    exist and opening only reads them. Any other failure, or the last attempt's, is one line (ConfigError)."""
    from optuna.storages import RDBStorage
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    old_name = retry_callback_class().__name__ == "RetryFailedTrialCallback"
    key = "failed_trial_callback" if old_name else "heartbeat_stale_trial_callback"
    for attempt in range(1, attempts + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna calls heartbeats "experimental"
                retry = retry_callback_class()(max_retry=3)
                return RDBStorage(
                    _sqlalchemy_url(url), heartbeat_interval=heartbeat_s, grace_period=grace_s, **{key: retry}
                )
        except (IntegrityError, ProgrammingError) as exc:
            if attempt < attempts and ("already exists" in str(exc) or isinstance(exc, IntegrityError)):
                time.sleep(0.2 * attempt)  # another worker is creating the tables
                continue
            raise _storage_error(url, exc) from None
        except Exception as exc:  # SQLAlchemy/driver errors: one line, URL redacted by the error type
            raise _storage_error(url, exc) from None
    raise AssertionError("unreachable")  # the loop returns or raises


def _storage_error(url: str, exc: BaseException) -> ConfigError:
    first = (str(exc).splitlines() or [""])[0]
    return ConfigError(
        f"cannot open the study storage {url}: {type(exc).__name__}: {first}",
        hint="give --storage postgresql://user@host:5432/db (a reachable database)",
    )


def _optuna_search(
    evaluator: Evaluator,
    request: OptimizeRequest,
    progress: Progress | None,
    heartbeat_s: int,
    grace_s: int,
) -> tuple[Evaluations, str | None]:
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dims = request.space
    grid = request.method == "grid"
    total = len(grid_points(dims)) if grid else request.trials
    if grid:
        sampler: Any = optuna.samplers.GridSampler({d.name: list(d.values) for d in dims}, seed=request.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=request.seed)
    storage = open_study_storage(request.storage, heartbeat_s, grace_s) if request.storage else None
    name = request.study or (
        f"{request.strategy}-{request.symbol}-{request.timeframe}-{request.objective}" if storage else None
    )
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, direction="maximize", load_if_exists=True
    )
    fixed = dict(request.fixed)

    def suggest(trial: Any) -> dict[str, Any]:
        point: dict[str, Any] = {}
        for d in dims:
            if d.step is not None and d.low is not None and d.high is not None and len(d.values) > 1:
                if d.is_int:
                    point[d.name] = trial.suggest_int(d.name, int(d.low), int(d.high), step=int(d.step))
                else:
                    point[d.name] = trial.suggest_float(d.name, d.low, d.high, step=d.step)
            else:
                point[d.name] = trial.suggest_categorical(d.name, list(d.values))
        return point

    def objective(trial: Any) -> float:
        from smartmarket.strategies.arrays import checked_params

        try:
            params = checked_params(request.strategy, {**fixed, **suggest(trial)})
        except ConfigError as exc:
            trial.set_user_attr("refused", exc.what)
            raise optuna.TrialPruned() from None
        ev = evaluator.evaluate([params])
        value = ev.objective(request.objective, request.timeframe)[0]
        trial.set_user_attr("params", params)
        trial.set_user_attr("stats", ev.stats[0].tolist())
        trial.set_user_attr("blocks", ev.blocks[0].tolist())
        trial.set_user_attr("span", [ev.start_ts, ev.end_ts])
        return float(value) if math.isfinite(value) else -math.inf

    def report(study: Any, trial: Any) -> None:
        if progress is not None:
            done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            progress("trials", min(done, total), total)

    limit = MaxTrialsCallback(total, states=(TrialState.COMPLETE,))
    started = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if started < total:
        study.optimize(objective, n_trials=10 * total, callbacks=[limit, report], gc_after_trial=False)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done = [t for t in done if "stats" in t.user_attrs]
    if not done:
        raise ConfigError(f"no trial of {request.strategy!r} completed", hint="check the space against the strategy")
    ts = evaluator.frame["ts"].to_numpy()
    params = [dict(t.user_attrs["params"]) for t in done]
    stats = np.array([t.user_attrs["stats"] for t in done], dtype=np.float64)
    blocks = np.array([t.user_attrs["blocks"] for t in done], dtype=np.float64)
    if blocks.shape[1] != request.n_blocks or any(list(t.user_attrs["span"]) != [ts[0], ts[-1]] for t in done):
        raise ConfigError(
            f"study {name!r} holds trials of another request (candles or blocks differ)",
            hint="use a new --study name for a new question",
        )
    return Evaluations(params, stats, blocks, int(ts[0]), int(ts[-1]), request.config.initial_cash), name


# ------------------------------------------------------------------------------------------ the use case


def optimize(
    frame: pd.DataFrame,
    request: OptimizeRequest,
    *,
    progress: Progress | None = None,
    heartbeat_s: int = 10,
    grace_s: int = 30,
) -> OptimizeReport:
    """Search ``request.space`` on one candle series and measure how far to trust the winner."""
    from smartmarket.strategies.registry import make_strategy

    started = time.perf_counter()
    make_strategy(request.strategy, **dict(request.fixed))  # unknown strategy or fixed params: fail first
    unknown = {d.name for d in request.space} - set(make_strategy(request.strategy, **dict(request.fixed)).params())
    if unknown:
        raise ConfigError(
            f"strategy {request.strategy!r} has no parameter {', '.join(sorted(unknown))}",
            hint=f"its parameters: {', '.join(make_strategy(request.strategy).params()) or 'none'}",
        )
    frame = as_candle_frame(frame)
    if len(frame) < 4 * request.n_blocks:
        raise ValidationError(
            f"{len(frame)} candles are too few to optimise on", hint=f"need at least {4 * request.n_blocks}"
        )
    points = grid_points(request.space)
    valid = valid_points(request.strategy, points, request.fixed)
    if not valid:
        raise ConfigError(
            f"no combination of --space is accepted by {request.strategy!r}",
            hint="check the ranges against the strategy's rules (e.g. sma_cross needs fast < slow)",
        )
    evaluator = Evaluator(frame, request.strategy, request.config, request.n_blocks)
    notes: list[str] = []
    if len(valid) < len(points):
        notes.append(f"{len(points) - len(valid)} of {len(points)} combinations refused by the strategy")
    if not evaluator.compiled:
        notes.append(f"{request.strategy} has no compiled form here: each trial is an event-driven backtest")
    study_name: str | None = None
    if request.method == "grid" and request.storage is None:
        evals = _grid(evaluator, valid, progress)
        n_points = len(points)
    else:
        evals, study_name = _optuna_search(evaluator, request, progress, heartbeat_s, grace_s)
        n_points = len(points) if request.method == "grid" else request.trials
    values = evals.objective(request.objective, request.timeframe)
    best = _best_index(values)
    if best is None:
        raise ValidationError(
            f"the {request.objective} objective is undefined for every combination (no trades or no variance)",
            hint="widen the space or use --objective return",
        )
    best_params = evals.params[best]
    tf = request.timeframe
    result = evaluator.run(best_params, tf, request.symbol)
    metrics = compute_metrics(
        result.equity, result.trades, tf, exposure=result.exposure, traded_notional=result.traded_notional
    )
    # deflated Sharpe: per-bar Sharpe of the winner against the best of n_trials no-skill tries
    bar_sr = sharpe_from_sums(evals.stats[:, sk.S_N], evals.stats[:, sk.S_SUM], evals.stats[:, sk.S_SUMSQ])
    finite = bar_sr[np.isfinite(bar_sr)]
    n_trials = len(evals.params)
    variance = float(np.var(finite, ddof=1)) if len(finite) > 1 else 0.0
    dsr = deflated_sharpe_from_returns(bar_returns(result.equity), n_trials=n_trials, sharpe_variance=variance)
    emax = expected_max_sharpe(n_trials, variance) * math.sqrt(periods_per_year(tf))
    pbo = pbo_from_blocks(evals.blocks).to_dict() if n_trials >= 2 else None
    if pbo is None:
        notes.append("PBO needs at least 2 configurations")
    folds, wf_oos, wf_metrics = _walk_forward(frame, request, evals.params, progress)
    order = np.argsort(np.where(np.isfinite(values), -values, np.inf), kind="stable")[:10]
    top = [
        {
            "params": evals.params[k],
            "value": _finite(values[k]),
            "total_return": float(evals.stats[k, sk.S_FINAL] / evals.initial_cash - 1.0),
            "trades": int(evals.stats[k, sk.S_TRADES]),
            "max_drawdown": float(evals.stats[k, sk.S_MAX_DD]),
        }
        for k in order
    ]
    return OptimizeReport(
        strategy=request.strategy,
        symbol=request.symbol,
        timeframe=tf,
        method=request.method,
        objective=request.objective,
        engine=evaluator.engine,
        bars=len(frame),
        start_ts=evals.start_ts,
        end_ts=evals.end_ts,
        n_points=n_points,
        n_trials=n_trials,
        best_params=best_params,
        best_value=_finite(values[best]),
        best_metrics={
            "total_return": metrics.total_return,
            "sharpe": metrics.sharpe,
            "sortino": metrics.sortino,
            "calmar": metrics.calmar,
            "max_drawdown": metrics.max_drawdown,
            "trades": metrics.num_trades,
        },
        deflated_sharpe=dsr,
        expected_max_sharpe=emax,
        pbo=pbo,
        walk_forward_folds=folds,
        walk_forward_oos=wf_oos,
        walk_forward_metrics=wf_metrics,
        top=top,
        elapsed_s=time.perf_counter() - started,
        study=study_name,
        notes=notes,
        evaluated=[{"params": p, "value": _finite(v)} for p, v in zip(evals.params, values, strict=True)],
    )


def write_optimize_report(report: OptimizeReport, path: Path) -> Path:
    """Write ``report`` as one self-contained HTML page (summary, parameter plateau heat maps, top configurations)."""
    from smartmarket.analytics.optimize_report import optimize_report_html

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(optimize_report_html(report.to_dict()), encoding="utf-8")
    return path


def _walk_forward(
    frame: pd.DataFrame, request: OptimizeRequest, candidates: list[dict[str, Any]], progress: Progress | None
) -> tuple[list[WalkForwardFold], float | None, dict[str, Any] | None]:
    """Re-select among ``candidates`` on each expanding training window; trade the next window unseen."""
    k = request.walk_forward
    if k == 0:
        return [], None, None
    part = len(frame) // (k + 1)
    if part < 2 * request.n_blocks:
        raise ValidationError(
            f"{len(frame)} candles are too few for {k} walk-forward folds", hint="use fewer --walk-forward folds"
        )
    tf = request.timeframe
    fold_scores: list[float | None] = []

    def fit(train: dict[str, pd.DataFrame]) -> FitOutcome:
        train_frame = next(iter(train.values()))
        ev = Evaluator(train_frame, request.strategy, request.config, request.n_blocks).evaluate(candidates)
        values = ev.objective(request.objective, tf)
        best = _best_index(values)
        if best is None:
            best = 0
        fold_scores.append(_finite(values[best]))
        if progress is not None:
            progress("walk-forward", len(fold_scores), k)
        return FitOutcome(ev.params[best], _finite(values[best]))

    test_bars = -(-(len(frame) - part) // k)  # exactly k test windows cover the rest
    cfg = WalkForwardConfig(train_bars=part, test_bars=test_bars, anchored=True)
    wf = walk_forward(frame, request.strategy, fit, cfg, config=request.config, timeframe=tf, symbol=request.symbol)
    folds = []
    for w in wf.windows:
        res = w.result
        oos = None
        if len(res.equity) > 2:
            oos = _metric(compute_metrics(res.equity, res.trades, tf, exposure=res.exposure), request.objective)
        folds.append(
            WalkForwardFold(
                int(frame["ts"].iloc[w.window.train_start]),
                int(res.equity.index[0]),
                int(res.equity.index[-1]),
                dict(w.params),
                w.train_score,
                oos,
            )
        )
    metrics = compute_metrics(wf.equity, wf.trades, tf, exposure=wf.exposure, traded_notional=wf.traded_notional)
    summary = {
        "total_return": metrics.total_return,
        "sharpe": metrics.sharpe,
        "sortino": metrics.sortino,
        "calmar": metrics.calmar,
        "max_drawdown": metrics.max_drawdown,
        "trades": metrics.num_trades,
        "bars": len(wf.equity),
    }
    return folds, _metric(metrics, request.objective), summary


def with_config(request: OptimizeRequest, **changes: Any) -> OptimizeRequest:
    """A copy of ``request`` with fields replaced."""
    return replace(request, **changes)


__all__ = [
    "METHODS",
    "OBJECTIVES",
    "Dimension",
    "Evaluations",
    "Evaluator",
    "OptimizeReport",
    "OptimizeRequest",
    "WalkForwardFold",
    "grid_points",
    "objective_values",
    "open_study_storage",
    "optimize",
    "parse_space",
    "retry_callback_class",
    "valid_points",
    "with_config",
    "write_optimize_report",
]
