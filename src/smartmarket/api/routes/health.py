"""``/api/health`` (store, bus, model registry, pipeline) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from smartmarket import __version__
from smartmarket.api.routes import errors, services
from smartmarket.api.schemas import ComponentHealth, HealthOut
from smartmarket.api.security import require_read
from smartmarket.core.errors import SmartMarketError
from smartmarket.core.redaction import redact_text

router = APIRouter(tags=["health"], dependencies=[Depends(require_read)], responses=errors(401, 403))
BUS_PING_TIMEOUT_S = 2.0


def _store_health(request: Request) -> ComponentHealth:
    try:
        series = services(request).market.series()
    except SmartMarketError as exc:
        return ComponentHealth(ok=False, detail=exc.what)
    scheme = request.app.state.store.url.split(":", 1)[0]
    return ComponentHealth(ok=True, detail=f"{scheme} store reachable, {len(series)} series")


async def _bus_health(request: Request) -> ComponentHealth | None:
    """The configured bus answering a ping now (``None`` without a bus: the in-process hub only)."""
    bus = request.app.state.bus
    if bus is None:
        return None
    scheme = str(getattr(bus, "url", "bus")).split(":", 1)[0]
    try:
        await asyncio.wait_for(bus.ping(), BUS_PING_TIMEOUT_S)
    except TimeoutError:
        return ComponentHealth(ok=False, detail=f"{scheme} bus unreachable: no answer in {BUS_PING_TIMEOUT_S:g} s")
    except SmartMarketError as exc:
        return ComponentHealth(ok=False, detail=f"{scheme} bus unreachable: {redact_text(exc.what)}")
    feed = request.app.state.bus_feed
    errors_seen = f", {feed.errors} read error(s) since start" if feed is not None and feed.errors else ""
    return ComponentHealth(ok=True, detail=f"{scheme} bus reachable{errors_seen}")


@router.get(
    "/api/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "the store or the configured bus is unreachable"}},
)
async def health(request: Request, response: Response) -> HealthOut:
    """Is the server usable: the store and the configured bus reachable (else HTTP 503), the model registry
    readable. ``bus`` is null when no bus is configured."""
    store = await run_in_threadpool(_store_health, request)
    bus = await _bus_health(request)
    models_ok, models_detail = await run_in_threadpool(services(request).models.health)
    pipeline = services(request).status.pipeline()
    reachable = store.ok and (bus is None or bus.ok)
    if not reachable:
        response.status_code = 503
    return HealthOut(
        status="ok" if reachable and models_ok else "degraded",
        version=__version__,
        store=store,
        bus=bus,
        models=ComponentHealth(ok=models_ok, detail=models_detail),
        pipeline=ComponentHealth(ok=True, detail="running" if pipeline.running else (pipeline.reason or "not running")),
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    """Prometheus text exposition of this server's metrics."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


__all__ = ["router"]
