"""The model registry: list, show and compare trained models (read-only)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from smartmarket.api.routes import READ_ERRORS, services
from smartmarket.api.schemas import ModelComparison, ModelDetail, ModelsOut, json_safe
from smartmarket.api.security import require_read
from smartmarket.api.services import parse_symbol, parse_timeframe, summarize_model
from smartmarket.core.errors import ConfigError

router = APIRouter(prefix="/api/models", tags=["models"], dependencies=[Depends(require_read)], responses=READ_ERRORS)
MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,199}$"  # ids and prefixes: never a path
_MODEL_ID = re.compile(MODEL_ID_PATTERN)
MODEL_IDS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]*(,[A-Za-z0-9][A-Za-z0-9_\-]*)*$"


@router.get("", response_model=ModelsOut)
def list_models(
    request: Request,
    symbol: Annotated[str | None, Query(max_length=40)] = None,
    timeframe: Annotated[str | None, Query(max_length=8)] = None,
    stage: Annotated[Literal["candidate", "production", "retired"] | None, Query()] = None,
) -> ModelsOut:
    """Registered models, oldest first, with their test metrics."""
    models = services(request).models.summaries(
        symbol=parse_symbol(symbol) if symbol else None,
        timeframe=parse_timeframe(timeframe).value if timeframe else None,
        stage=stage,
    )
    return ModelsOut(count=len(models), models=models)


@router.get("/compare", response_model=ModelComparison)
def compare_models(
    request: Request,
    ids: Annotated[
        str, Query(pattern=MODEL_IDS_PATTERN, max_length=2000, description="comma-separated model ids (or prefixes)")
    ],
) -> ModelComparison:
    """Test metrics of several models side by side (each measured on its own test split)."""
    wanted = [i.strip() for i in ids.split(",") if i.strip()]
    if not wanted:
        raise ConfigError("no model id given", hint="e.g. ?ids=logreg-BTCUSDT-1h-…,lightgbm-BTCUSDT-1h-…")
    bad = [i for i in wanted if not _MODEL_ID.match(i)]
    if bad:
        raise ConfigError(f"invalid model id {bad[0]!r}", hint="ids are letters, digits, '_' and '-'")
    if len(wanted) > 20:
        raise ConfigError("at most 20 models can be compared at once")
    models, metrics = services(request).models.compare(wanted)
    return ModelComparison(ids=[m.id for m in models], metrics=metrics, models=models)


@router.get("/{model_id}", response_model=ModelDetail)
def show_model(request: Request, model_id: Annotated[str, Path(pattern=MODEL_ID_PATTERN)]) -> ModelDetail:
    """One model (id or unique id prefix): summary plus its full metadata."""
    record = services(request).models.show(model_id)
    return ModelDetail(**summarize_model(record).model_dump(), metadata=json_safe(record.metadata))


__all__ = ["router"]
