"""Backtests as background jobs: start one (needs the API key), watch its progress, fetch the result and report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse

from smartmarket.api.jobs import BacktestJob, BacktestJobs
from smartmarket.api.routes import READ_ERRORS, errors
from smartmarket.api.schemas import BacktestRequest, JobOut, JobsOut, StrategiesOut, StrategyOut, json_safe
from smartmarket.api.security import require_read, require_write
from smartmarket.strategies.registry import list_strategies

router = APIRouter(prefix="/api", tags=["backtests"], responses=READ_ERRORS)
JobIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the job id returned by POST /api/backtests")]


def _jobs(request: Request) -> BacktestJobs:
    jobs: BacktestJobs = request.app.state.jobs
    return jobs


def job_out(job: BacktestJob) -> JobOut:
    return JobOut(
        job_id=job.job_id, state=job.state, progress=round(job.progress, 4), stage=job.stage, error=job.error,
        created_ts=job.created_ts, started_ts=job.started_ts, finished_ts=job.finished_ts, request=job.request,
        summary=json_safe(job.summary) if job.summary is not None else None,
    )  # fmt: skip


@router.get("/strategies", response_model=StrategiesOut, dependencies=[Depends(require_read)])
def get_strategies() -> StrategiesOut:
    """Registered strategies with their parameters and defaults."""
    return StrategiesOut(
        strategies=[StrategyOut(name=s.name, params=json_safe(s.params), summary=s.summary) for s in list_strategies()]
    )


@router.post(
    "/backtests",
    response_model=JobOut,
    status_code=202,
    dependencies=[Depends(require_write)],
    responses=errors(413, 429),
)
def start_backtest(request: Request, body: BacktestRequest) -> JobOut:
    """Start a backtest in the background; poll ``GET /api/backtests/{job_id}`` for its progress."""
    return job_out(_jobs(request).submit(body))


@router.get("/backtests", response_model=JobsOut, dependencies=[Depends(require_read)])
def list_backtests(request: Request) -> JobsOut:
    """Jobs kept in memory, newest first."""
    return JobsOut(jobs=[job_out(j) for j in _jobs(request).list()])


@router.get("/backtests/{job_id}", response_model=JobOut, dependencies=[Depends(require_read)])
def get_backtest(request: Request, job_id: JobIdPath) -> JobOut:
    """State (queued, running, succeeded, failed), progress 0…1, current stage, error."""
    return job_out(_jobs(request).get(job_id))


def _finished(request: Request, job_id: str) -> BacktestJob:
    job = _jobs(request).get(job_id)
    if job.state == "failed":
        raise HTTPException(409, f"backtest job {job_id} failed: {job.error}")
    if job.state != "succeeded":
        raise HTTPException(409, f"backtest job {job_id} is {job.state} ({job.progress:.0%}): try again later")
    return job


@router.get("/backtests/{job_id}/result", dependencies=[Depends(require_read)], responses=errors(409))
def get_backtest_result(request: Request, job_id: JobIdPath) -> dict[str, object]:
    """The result document (schema ``smartmarket.backtest/1``: metrics, trades, equity, monthly returns, …)."""
    document = _finished(request, job_id).document
    return json_safe(document or {})


@router.get(
    "/backtests/{job_id}/report",
    dependencies=[Depends(require_read)],
    responses={**errors(409), 200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
)
def get_backtest_report(request: Request, job_id: JobIdPath) -> HTMLResponse:
    """The self-contained HTML report (price and trades, equity and drawdown, monthly returns, provenance)."""
    job = _finished(request, job_id)
    return HTMLResponse(_jobs(request).report_html(job))


__all__ = ["job_out", "router"]
