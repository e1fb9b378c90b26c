"""The FastAPI application: REST API under ``/api``, WebSocket ``/ws/{symbol}``, ``/metrics``, dashboard at ``/``.

``create_app(settings, store=..., bus=...)`` wires one app. Without ``store`` it opens the configured one
(``settings.store_url``) and closes it on shutdown; a passed store or bus stays the caller's to close.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smartmarket import __version__
from smartmarket.api.jobs import BacktestJobs, JobQueueFull
from smartmarket.api.routes import backtests, events, health, market, models, pipeline, signals
from smartmarket.api.security import API_KEY_HEADER, BodySizeLimit, SecurityConfig
from smartmarket.api.services import EventLog, MarketData, ModelCatalog, Services, StatusBoard
from smartmarket.api.telemetry import ApiMetrics, MetricsMiddleware
from smartmarket.api.ws import BusFeed, LiveHub, WsRefusalLog
from smartmarket.api.ws import router as ws_router
from smartmarket.core.config import Settings
from smartmarket.core.errors import (
    NotFoundError,
    RetryableError,
    SmartMarketError,
    StoreError,
)
from smartmarket.core.redaction import install_log_redaction
from smartmarket.store.base import Store
from smartmarket.store.url import open_store

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def error_status(exc: SmartMarketError) -> int:
    """HTTP status of a SmartMarket error: bad input 400, missing 404, busy 429, transient 503, store 500."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, JobQueueFull):
        return 429
    if isinstance(exc, RetryableError):
        return 503
    if isinstance(exc, StoreError):
        return 500
    return 400


async def _smartmarket_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SmartMarketError)
    status = error_status(exc)
    if status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc.one_line())
    return JSONResponse({"detail": exc.what, "hint": exc.hint}, status_code=status)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return JSONResponse({"detail": f"internal error ({type(exc).__name__})", "hint": None}, status_code=500)


class SecurityHeaders:
    """``nosniff`` on every answer; a strict Content-Security-Policy on the dashboard page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_dashboard = scope.get("path") in ("/", "/index.html")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                if is_dashboard:
                    headers.append((b"content-security-policy", DASHBOARD_CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadAsGet:
    """``HEAD`` on every GET route (FastAPI routes answer only the methods they declare): served as GET, the
    headers sent (Content-Length included), the body dropped."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    bus: Any = None,
    security: SecurityConfig | None = None,
) -> FastAPI:
    """One API app over ``store`` (or the configured store) and, optionally, a ``smartmarket.bus.Bus``."""
    install_log_redaction()  # the one redaction rule for every record the API logs, with or without the CLI
    settings = settings or Settings()
    security = security or SecurityConfig.from_env()
    owns_store = store is None
    if store is None:
        settings.home.mkdir(parents=True, exist_ok=True)
        store = open_store(settings.store_url)
    hub = LiveHub()
    jobs = BacktestJobs(store)
    metrics = ApiMetrics()
    metrics.bind(hub, jobs)
    feed = BusFeed(bus, hub) if bus is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if feed is not None:
            await feed.close()
        jobs.shutdown()
        if owns_store:
            store.close()

    app = FastAPI(
        title="SmartMarket API",
        version=__version__,
        description="Candles, features, regimes, signals, models, backtests and the event log of a SmartMarket "
        f"store. Requests that start work need the `{API_KEY_HEADER}` header (SMARTMARKET_API_KEY).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.security = security
    app.state.store = store
    app.state.bus = bus
    app.state.bus_feed = feed
    app.state.hub = hub
    app.state.ws_refusals = WsRefusalLog()  # the log budget for bad WebSocket clients
    app.state.jobs = jobs
    app.state.metrics = metrics
    app.state.services = Services(
        market=MarketData(store),
        events=EventLog(store),
        models=ModelCatalog(settings.registry_dir),
        status=StatusBoard(),
    )

    app.add_exception_handler(SmartMarketError, _smartmarket_error)
    app.add_exception_handler(Exception, _unexpected_error)
    for module in (health, market, signals, models, backtests, events, pipeline):
        app.include_router(module.router)
    app.include_router(ws_router)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # Middleware: the last added runs first (outermost).
    if security.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(security.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=[API_KEY_HEADER, "Content-Type", "Authorization"],
        )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodySizeLimit, max_bytes=security.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(HeadAsGet)
    return app


__all__ = ["DASHBOARD_CSP", "STATIC_DIR", "create_app", "error_status"]
