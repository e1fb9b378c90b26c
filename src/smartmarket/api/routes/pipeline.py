"""Live pipeline health: stages, throughput, lag and latency, from the status provider the pipeline registers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from smartmarket.api.routes import errors, services
from smartmarket.api.schemas import PipelineStatus
from smartmarket.api.security import require_read

router = APIRouter(prefix="/api", tags=["pipeline"], dependencies=[Depends(require_read)], responses=errors(401, 403))


@router.get("/pipeline", response_model=PipelineStatus)
def get_pipeline(request: Request) -> PipelineStatus:
    """``running: false`` with the reason until a live pipeline registers its status with this server."""
    return services(request).status.pipeline()


__all__ = ["router"]
