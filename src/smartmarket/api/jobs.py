"""Background backtest jobs with progress, run one at a time on a worker thread.

A job reads its candles, feeds them to the event-driven kernel (the same one ``smartmarket backtest`` uses),
measures the result with ``analytics`` and keeps the deterministic JSON document (``engine.result_json``).
The HTML report is rendered on first request and cached. Jobs live in memory: the newest ``keep`` are kept.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from smartmarket.analytics import Metrics, compute_metrics, monthly_returns, render_report
from smartmarket.api.schemas import BacktestRequest
from smartmarket.backtest.provenance import backtest_provenance
from smartmarket.backtest.result_json import backtest_document
from smartmarket.backtest.runner import BacktestResult, run_backtest
from smartmarket.core.errors import ConfigError, NotFoundError, SmartMarketError
from smartmarket.core.timeutil import now_ms, parse_time
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.engine.kernel import KernelConfig
from smartmarket.execution.fees import FeeModel
from smartmarket.execution.sizing import FixedFraction
from smartmarket.execution.slippage import FixedBps
from smartmarket.store.base import CandleStore
from smartmarket.strategies.registry import STRATEGIES, make_strategy, strategy_factory

JobState = Literal["queued", "running", "succeeded", "failed"]


class JobQueueFull(SmartMarketError):
    """Too many backtests are waiting; try again when one has finished."""


@dataclass(frozen=True, slots=True)
class BacktestSpec:
    """A validated ``BacktestRequest``: normalised symbols, parsed timeframe and times, full parameters."""

    symbols: tuple[str, ...]
    timeframe: Timeframe
    strategy: str
    params: dict[str, Any]
    start: int | None
    end: int | None
    config: KernelConfig


def validate_request(request: BacktestRequest) -> BacktestSpec:
    """Check everything that can be checked without data; ``ConfigError`` with a clear message otherwise."""
    symbols: list[str] = []
    for text in request.symbols:
        symbol = normalize_symbol(text)
        if symbol not in symbols:
            symbols.append(symbol)
    timeframe = Timeframe.parse(request.timeframe)
    for key in request.params:
        if not key.isidentifier():
            raise ConfigError(f"invalid parameter name {key!r}")
    if request.strategy not in STRATEGIES:  # never a file: a strategy file is code, chosen by whoever runs the CLI
        known = ", ".join(sorted(STRATEGIES))
        raise ConfigError(f"unknown strategy {request.strategy!r}", hint=f"the API runs registered strategies: {known}")
    strategy_factory(request.strategy, **request.params)  # bad parameters
    params = make_strategy(request.strategy, **request.params).params() or dict(request.params)
    start, end = parse_time(request.start), parse_time(request.end)
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"end ({request.end}) must be after start ({request.start})")
    config = KernelConfig(
        initial_cash=float(request.cash),
        fees=FeeModel(maker=request.fees, taker=request.fees),
        slippage=FixedBps(request.slippage_bps),
        sizer=FixedFraction(1.0 / len(symbols)),
        long_only=request.long_only,
        close_at_end=True,
    )
    return BacktestSpec(tuple(symbols), timeframe, request.strategy, params, start, end, config)


@dataclass
class BacktestJob:
    """One job. ``progress`` runs 0 → 1; ``stage`` says what it is doing; ``error`` why it failed."""

    job_id: str
    request: BacktestRequest
    spec: BacktestSpec
    state: JobState = "queued"
    progress: float = 0.0
    stage: str = "queued"
    error: str | None = None
    created_ts: int = field(default_factory=now_ms)
    started_ts: int | None = None
    finished_ts: int | None = None
    document: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    report_inputs: dict[str, Any] | None = field(default=None, repr=False)
    report_html: str | None = field(default=None, repr=False)


def run_with_progress(
    frames: Mapping[str, pd.DataFrame], spec: BacktestSpec, progress: Callable[[int, int], None]
) -> BacktestResult:
    """``backtest.run_backtest`` reporting ``progress(done, total)`` as candles are processed."""
    return run_backtest(
        frames, spec.strategy, params=spec.params, config=spec.config, timeframe=spec.timeframe, progress=progress
    )


def _summary(metrics: Metrics, result: BacktestResult) -> dict[str, Any]:
    data = metrics.to_dict()
    keys = ("total_return", "annual_return", "sharpe", "sortino", "max_drawdown", "win_rate", "num_trades")
    return {"final_equity": result.final_equity, "bars": result.bars, **{k: data[k] for k in keys}}


class BacktestJobs:
    """Submit, track and fetch backtest jobs. Thread-safe; one worker thread runs them in order."""

    def __init__(self, store: CandleStore, *, max_waiting: int = 8, keep: int = 50) -> None:
        self.store = store
        self.max_waiting = max_waiting
        self.keep = keep
        self._jobs: OrderedDict[str, BacktestJob] = OrderedDict()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smartmarket-backtest")
        self.finished_count: dict[str, int] = {"succeeded": 0, "failed": 0}

    # -- API ---------------------------------------------------------------------------------------------------
    def submit(self, request: BacktestRequest) -> BacktestJob:
        spec = validate_request(request)
        stored = {info.symbol for info in self.store.list_series()}
        missing = [s for s in spec.symbols if s not in stored]
        if missing:
            raise NotFoundError(f"no candles stored for {', '.join(missing)}", hint="see /api/symbols")
        with self._lock:
            waiting = sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))
            if waiting >= self.max_waiting:
                raise JobQueueFull(f"{waiting} backtests are already waiting", hint="try again when one has finished")
            job = BacktestJob(job_id=uuid.uuid4().hex, request=request, spec=spec)
            self._jobs[job.job_id] = job
            self._forget_old()
        self._executor.submit(self._run, job)
        return job

    def get(self, job_id: str) -> BacktestJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no backtest job {job_id!r}", hint="jobs are kept in memory: see /api/backtests")
        return job

    def list(self) -> list[BacktestJob]:
        with self._lock:
            return list(reversed(self._jobs.values()))

    def report_html(self, job: BacktestJob) -> str:
        """The HTML report of a succeeded job (rendered once, then cached)."""
        with self._lock:
            if job.report_html is not None:
                return job.report_html
            inputs = job.report_inputs
        if inputs is None:
            raise NotFoundError(f"backtest job {job.job_id} has no report")
        html = render_report(**inputs)
        with self._lock:
            job.report_html = html
        return html

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- worker ------------------------------------------------------------------------------------------------
    def _set(self, job: BacktestJob, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(job, key, value)

    def _forget_old(self) -> None:
        done = [k for k, j in self._jobs.items() if j.state in ("succeeded", "failed")]
        for key in done[: max(len(self._jobs) - self.keep, 0)]:
            del self._jobs[key]

    def _run(self, job: BacktestJob) -> None:
        self._set(job, state="running", stage="reading candles", started_ts=now_ms(), progress=0.02)
        try:
            self._execute(job)
        except SmartMarketError as exc:
            self._fail(job, exc.one_line())
        except Exception as exc:  # reported on the job, never lost in a thread
            self._fail(job, f"{type(exc).__name__}: {exc}")

    def _fail(self, job: BacktestJob, message: str) -> None:
        self._set(job, state="failed", stage="failed", error=message, finished_ts=now_ms())
        with self._lock:
            self.finished_count["failed"] += 1

    def _execute(self, job: BacktestJob) -> None:
        spec = job.spec
        frames: dict[str, pd.DataFrame] = {}
        for symbol in spec.symbols:
            frame = self.store.read_candles(symbol, spec.timeframe, spec.start, spec.end)
            if frame.empty:
                raise NotFoundError(f"no {symbol} {spec.timeframe} candles in the requested range")
            frames[symbol] = frame
        self._set(job, stage="running strategy", progress=0.05)

        def progress(done: int, total: int) -> None:
            self._set(job, progress=0.05 + 0.8 * done / max(total, 1))

        result = run_with_progress(frames, spec, progress)
        self._set(job, stage="measuring", progress=0.9)
        metrics = compute_metrics(
            result.equity, result.trades, spec.timeframe, exposure=result.exposure,
            traded_notional=result.traded_notional,
        )  # fmt: skip
        monthly = monthly_returns(result.equity)
        returns = [float(f["close"].iloc[-1]) / float(f["close"].iloc[0]) - 1.0 for f in frames.values()]
        provenance = backtest_provenance(
            frames=frames, timeframe=spec.timeframe, strategy=spec.strategy, params=spec.params,
            config=spec.config, start=spec.start, end=spec.end,
        )  # fmt: skip
        document = backtest_document(
            result,
            metrics=metrics.to_dict(),
            monthly_returns=monthly.to_records(),
            provenance=provenance,
            benchmark={"buy_hold_return": sum(returns) / len(returns)},
            params=spec.params,
        )
        chart_symbol = spec.symbols[0]
        shown = ", ".join(f"{k}={v}" for k, v in spec.params.items())
        report_inputs = {
            "title": f"{spec.strategy}({shown}) on {', '.join(spec.symbols)} {spec.timeframe}",
            "prices": frames[chart_symbol],
            "trades": [t for t in result.trades if t.symbol == chart_symbol],
            "equity": result.equity,
            "metrics": metrics,
            "monthly": monthly,
            "provenance": provenance,
        }
        self._set(
            job, state="succeeded", stage="done", progress=1.0, finished_ts=now_ms(), document=document,
            summary=_summary(metrics, result), report_inputs=report_inputs,
        )  # fmt: skip
        with self._lock:
            self.finished_count["succeeded"] += 1


__all__ = [
    "BacktestJob",
    "BacktestJobs",
    "BacktestSpec",
    "JobQueueFull",
    "JobState",
    "run_with_progress",
    "validate_request",
]
