"""``/api/health`` (store, bus, model registry, pipeline) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from smartmarket import __version__
from smartmarket.api.routes import errors, services
from smartmarket.api.schemas import ComponentHealth, HealthOut
from smartmarket.api.security import require_read
from smartmarket.core.errors import SmartMarketError

router = APIRouter(tags=["health"], dependencies=[Depends(require_read)], responses=errors(401, 403))


def _store_health(request: Request) -> ComponentHealth:
    try:
        series = services(request).market.series()
    except SmartMarketError as exc:
        return ComponentHealth(ok=False, detail=exc.what)
    scheme = request.app.state.store.url.split(":", 1)[0]
    return ComponentHealth(ok=True, detail=f"{scheme} store, {len(series)} series")


def _bus_health(request: Request) -> ComponentHealth:
    bus = request.app.state.bus
    if bus is None:
        return ComponentHealth(ok=True, detail="no bus configured: live updates come from the in-process hub only")
    feed = request.app.state.bus_feed
    scheme = str(getattr(bus, "url", "bus")).split(":", 1)[0]
    if feed is not None and feed.errors:
        return ComponentHealth(ok=False, detail=f"{scheme} bus: {feed.errors} read error(s) since start")
    return ComponentHealth(ok=True, detail=f"{scheme} bus configured")


@router.get("/api/health", response_model=HealthOut)
def health(request: Request) -> HealthOut:
    """Is the server usable: store reachable, bus configured and reading, model registry readable."""
    store = _store_health(request)
    bus = _bus_health(request)
    models_ok, models_detail = services(request).models.health()
    pipeline = services(request).status.pipeline()
    return HealthOut(
        status="ok" if store.ok and bus.ok and models_ok else "degraded",
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
