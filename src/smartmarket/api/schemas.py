"""Request and response models of the web API (they are the OpenAPI schema at ``/openapi.json``).

Times are UTC epoch milliseconds, like everywhere in SmartMarket. Undefined numbers (a feature still warming
up, a Sharpe ratio without variance) are ``null``, never NaN.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Number = float | None
SYMBOL_PATTERN = r"^[A-Za-z0-9]{1,12}[-_/]?[A-Za-z0-9]{0,8}$"  # normalises to 1-20 letters and digits


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN or infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer of the API (except FastAPI's own 422 for malformed requests)."""

    detail: str
    hint: str | None = None


# ------------------------------------------------------------------------------------------------ health


class ComponentHealth(BaseModel):
    ok: bool
    detail: str


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    store: ComponentHealth
    bus: ComponentHealth | None  # None: no bus configured (the in-process hub only)
    models: ComponentHealth
    pipeline: ComponentHealth


# ------------------------------------------------------------------------------------------------ market


class SeriesOut(BaseModel):
    timeframe: str
    count: int
    first_ts: int
    last_ts: int
    synthetic: bool


class SymbolOut(BaseModel):
    symbol: str
    series: list[SeriesOut]


class SymbolsOut(BaseModel):
    symbols: list[SymbolOut]


class CandleOut(BaseModel):
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class CandlesOut(BaseModel):
    symbol: str
    timeframe: str
    count: int
    candles: list[CandleOut]


class FeaturesOut(BaseModel):
    symbol: str
    timeframe: str
    feature_set: str
    count: int
    ts: list[int]
    columns: dict[str, list[Number]] = Field(description="feature name → one value per ts (null while warming up)")


class RegimeSpan(BaseModel):
    """Consecutive bars with one label: ``start_ts`` is the first bar's open, ``end_ts`` the last bar's open."""

    regime: str
    start_ts: int
    end_ts: int
    bars: int


class RegimesOut(BaseModel):
    symbol: str
    timeframe: str
    count: int
    ts: list[int]
    regime: list[str]
    spans: list[RegimeSpan]
    shares: dict[str, float]


# ------------------------------------------------------------------------------------------------ signals


class SignalOut(BaseModel):
    seq: int | None = Field(None, description="event log sequence number (null for a live, unstored signal)")
    event_id: str
    ts: int
    ts_event: int
    symbol: str
    timeframe: str
    direction: str
    confidence: Number
    strength: str
    regime: str
    reason: str
    member_probabilities: dict[str, dict[str, Number]]
    member_weights: dict[str, Number]
    correlation_id: str


class SignalsOut(BaseModel):
    symbol: str
    timeframe: str
    count: int
    latest: SignalOut | None
    history: list[SignalOut]


class HitRatePoint(BaseModel):
    ts: int
    hit_rate: Number


class ReliabilityBin(BaseModel):
    confidence_low: float
    confidence_high: float
    mean_confidence: Number
    hit_rate: Number
    count: int


class DriftAlarm(BaseModel):
    ts: int
    kind: str
    message: str


class QualityReport(BaseModel):
    """What a signal quality monitor reports for one series (see ``services.QualityProvider``)."""

    window: int = 0
    hit_rate: list[HitRatePoint] = Field(default_factory=list)
    reliability: list[ReliabilityBin] = Field(default_factory=list)
    drift_alarms: list[DriftAlarm] = Field(default_factory=list)


class QualityOut(QualityReport):
    symbol: str
    timeframe: str
    available: bool
    reason: str | None = None


# ------------------------------------------------------------------------------------------------ models


class ModelSummary(BaseModel):
    id: str
    kind: str
    symbol: str
    timeframe: str
    stage: str
    created: str
    feature_set: str
    test_metrics: dict[str, Any]


class ModelDetail(ModelSummary):
    metadata: dict[str, Any]


class ModelsOut(BaseModel):
    count: int
    models: list[ModelSummary]


class ModelComparison(BaseModel):
    ids: list[str]
    metrics: list[str] = Field(description="metric names present in at least one model's test metrics")
    models: list[ModelSummary]


# ------------------------------------------------------------------------------------------------ backtests

ParamValue = int | float | bool | str | None


class BacktestRequest(BaseModel):
    """A backtest to run in the background (the same inputs as ``smartmarket backtest``)."""

    model_config = ConfigDict(extra="forbid")

    symbols: list[Annotated[str, Field(pattern=SYMBOL_PATTERN)]] = Field(
        min_length=1, max_length=10, examples=[["BTCUSDT"]]
    )
    timeframe: str = Field("1h", max_length=8)
    strategy: str = Field("sma_cross", max_length=64)
    params: dict[str, ParamValue] = Field(default_factory=dict, max_length=32, examples=[{"fast": 10, "slow": 30}])
    start: str | None = Field(None, max_length=40, description="first bar open time: ISO-8601 or epoch ms")
    end: str | None = Field(None, max_length=40, description="bars opening before this time")
    fees: float = Field(0.001, ge=0.0, le=0.1, description="fee rate per side, a fraction")
    slippage_bps: float = Field(0.0, ge=0.0, le=1000.0)
    cash: float = Field(10_000.0, gt=0.0, le=1e12)
    long_only: bool = False


class JobOut(BaseModel):
    job_id: str
    state: Literal["queued", "running", "succeeded", "failed"]
    progress: float = Field(ge=0.0, le=1.0)
    stage: str
    error: str | None
    created_ts: int
    started_ts: int | None
    finished_ts: int | None
    request: BacktestRequest
    summary: dict[str, Any] | None = Field(None, description="headline metrics once the job succeeded")


class JobsOut(BaseModel):
    jobs: list[JobOut]


class StrategyOut(BaseModel):
    name: str
    params: dict[str, Any]
    summary: str


class StrategiesOut(BaseModel):
    strategies: list[StrategyOut]


# ------------------------------------------------------------------------------------------------ events


class EventOut(BaseModel):
    seq: int
    type: str
    event_id: str
    ts_event: int
    ts_init: int
    correlation_id: str
    causation_id: str | None
    payload: dict[str, Any]


class EventsOut(BaseModel):
    count: int
    last_seq: int = Field(description="highest sequence number returned (the `since` of the next poll)")
    events: list[EventOut]


# ------------------------------------------------------------------------------------------------ pipeline


class StageStatus(BaseModel):
    """One pipeline stage as its status provider measures it."""

    name: str
    processed: int = 0
    throughput_per_s: Number = None
    lag_ms: Number = None
    latency_ms_p50: Number = None
    latency_ms_p99: Number = None
    errors: int = 0


class PipelineStatus(BaseModel):
    running: bool
    reason: str | None = None
    updated_ts: int | None = None
    stages: list[StageStatus] = Field(default_factory=list)


__all__ = [
    "SYMBOL_PATTERN",
    "BacktestRequest",
    "CandleOut",
    "CandlesOut",
    "ComponentHealth",
    "DriftAlarm",
    "ErrorBody",
    "EventOut",
    "EventsOut",
    "FeaturesOut",
    "HealthOut",
    "HitRatePoint",
    "JobOut",
    "JobsOut",
    "ModelComparison",
    "ModelDetail",
    "ModelSummary",
    "ModelsOut",
    "ParamValue",
    "PipelineStatus",
    "QualityOut",
    "QualityReport",
    "RegimeSpan",
    "RegimesOut",
    "ReliabilityBin",
    "SeriesOut",
    "SignalOut",
    "SignalsOut",
    "StageStatus",
    "StrategiesOut",
    "StrategyOut",
    "SymbolOut",
    "SymbolsOut",
    "json_safe",
]
