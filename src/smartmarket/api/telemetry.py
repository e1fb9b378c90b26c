"""Prometheus metrics of one API app (its own registry, so several apps in one process never collide)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from smartmarket.api.jobs import BacktestJobs
    from smartmarket.api.ws import LiveHub


class ApiMetrics:
    """Request counts and latencies by route template, WebSocket clients, live messages, backtest jobs."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "smartmarket_api_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "smartmarket_api_request_seconds", "HTTP request duration", ["route"], registry=self.registry
        )
        self.ws_clients = Gauge(
            "smartmarket_api_websocket_clients", "connected WebSocket clients", registry=self.registry
        )
        self.live_messages = Gauge(
            "smartmarket_api_live_messages", "messages published to the live hub since start", registry=self.registry
        )
        self.jobs = Gauge("smartmarket_api_backtest_jobs", "backtest jobs by state", ["state"], registry=self.registry)

    def bind(self, hub: LiveHub, jobs: BacktestJobs) -> None:
        """Gauges read at scrape time from the hub and the job list."""
        self.ws_clients.set_function(lambda: float(hub.client_count()))
        self.live_messages.set_function(lambda: float(hub.published))
        for state in ("queued", "running", "succeeded", "failed"):
            self.jobs.labels(state).set_function(_job_counter(jobs, state))


def _job_counter(jobs: BacktestJobs, state: str) -> Callable[[], float]:
    return lambda: float(sum(1 for j in jobs.list() if j.state == state))


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template (``/api/candles/{symbol}/{timeframe}``)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope.get("method", ""), template, str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - started)


__all__ = ["ApiMetrics", "MetricsMiddleware"]
