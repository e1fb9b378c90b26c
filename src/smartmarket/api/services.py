"""The service layer between the HTTP routes and the rest of SmartMarket.

Routes parse and validate input, call one service, and shape the answer; services hold no HTTP. Data that
does not exist yet is reported honestly: the pipeline status and the signal quality come from *providers*
that the live pipeline and the quality monitor register (``StatusBoard.register_pipeline`` /
``register_quality``); until then the API says "not running" / "no data".
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from smartmarket.api.schemas import ModelSummary, PipelineStatus, QualityOut, QualityReport, json_safe
from smartmarket.core.errors import ConfigError, NotFoundError
from smartmarket.core.events import MESSAGE_TYPES, SignalGenerated
from smartmarket.core.timeutil import parse_time
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.features.pipeline import FeaturePipeline
from smartmarket.features.regimes import RegimeFeature, regime_names
from smartmarket.store.base import SeriesInfo, Store, StoredEvent

if TYPE_CHECKING:
    from smartmarket.models.registry import ModelRecord

MIN_WARMUP = 500  # candles read before the first output bar so recursive features have settled


# ------------------------------------------------------------------------------------------------ input


def parse_symbol(text: str) -> str:
    return normalize_symbol(text)


def parse_timeframe(text: str) -> Timeframe:
    return Timeframe.parse(text)


def parse_range(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """``start``/``end`` (ISO-8601 or epoch ms) → ms; ``ConfigError`` unless ``start < end``."""
    start_ms, end_ms = parse_time(start), parse_time(end)
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise ConfigError(f"end ({end}) must be after start ({start})")
    return start_ms, end_ms


# ------------------------------------------------------------------------------------------------ market


class MarketData:
    """Candles, features and regimes read from the store (resampled on the fly by the store)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def series(self) -> list[SeriesInfo]:
        return self.store.list_series()

    def _span(self, symbol: str) -> tuple[int, int]:
        infos = [i for i in self.store.list_series() if i.symbol == symbol]
        if not infos:
            raise NotFoundError(f"no candles stored for {symbol}", hint="see /api/symbols for what is stored")
        return min(i.first_ts for i in infos), max(i.last_ts for i in infos)

    def candles(
        self, symbol: str, timeframe: Timeframe, start: int | None, end: int | None, limit: int
    ) -> pd.DataFrame:
        """Candles with ``start <= ts < end``: the first ``limit`` from ``start``, or the last ``limit``."""
        if start is not None:
            return self.store.read_candles(symbol, timeframe, start, end, limit)
        return self.tail(symbol, timeframe, end, limit)

    def tail(self, symbol: str, timeframe: Timeframe, end: int | None, n: int) -> pd.DataFrame:
        """The newest ``n`` candles opening before ``end``, read through a widening window (gaps allowed)."""
        first_ts, last_ts = self._span(symbol)
        anchor = last_ts + timeframe.ms if end is None else min(end, last_ts + timeframe.ms)
        span = max(n, 1) * timeframe.ms
        while True:
            low = anchor - span
            frame = self.store.read_candles(symbol, timeframe, low, end)
            if len(frame) >= n or low <= first_ts:
                return frame.iloc[len(frame) - min(n, len(frame)) :].reset_index(drop=True)
            span *= 4

    def _with_warmup(
        self, symbol: str, timeframe: Timeframe, start: int | None, end: int | None, limit: int, warmup: int,
        align_to: Timeframe | None = None,
    ) -> tuple[pd.DataFrame, int]:  # fmt: skip
        """Candles including ``warmup`` earlier ones, and how many leading rows are warm-up only."""
        if start is None:
            frame = self.tail(symbol, timeframe, end, limit + warmup)
            return frame, max(len(frame) - limit, 0)
        read_from = start - warmup * timeframe.ms
        if align_to is not None:
            read_from = align_to.bucket_start(read_from)
        frame = self.store.read_candles(symbol, timeframe, read_from, end)
        skip = int(np.searchsorted(frame["ts"].to_numpy(), start, side="left"))
        return frame.iloc[: skip + limit].reset_index(drop=True), skip

    def features(
        self, symbol: str, timeframe: Timeframe, set_name: str, start: int | None, end: int | None, limit: int
    ) -> tuple[str, pd.DataFrame]:
        """The feature set's values (``ts`` then one column per feature) for up to ``limit`` bars."""
        pipeline = FeaturePipeline(set_name, timeframe)
        warmup = max(MIN_WARMUP, 3 * pipeline.warmup_bars)
        higher = [spec.resolve(timeframe) for spec in pipeline.feature_set.multi_timeframe]
        align = max(higher, key=lambda t: t.ms) if higher else None
        frame, skip = self._with_warmup(symbol, timeframe, start, end, limit, warmup, align)
        values = pipeline.batch(frame) if len(frame) else pd.DataFrame(columns=["ts", *pipeline.columns])
        return pipeline.feature_set.name, values.iloc[skip:].reset_index(drop=True)

    def regimes(
        self, symbol: str, timeframe: Timeframe, start: int | None, end: int | None, limit: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(ts, label names)`` of up to ``limit`` bars, labelled from trailing data only."""
        feature = RegimeFeature()
        frame, skip = self._with_warmup(symbol, timeframe, start, end, limit, max(MIN_WARMUP, 3 * feature.warmup))
        codes = feature.batch_array(frame)[:, 0] if len(frame) else np.empty(0)
        ts = frame["ts"].to_numpy(dtype=np.int64)
        return ts[skip:], regime_names(codes)[skip:]


def regime_spans(ts: np.ndarray, names: np.ndarray) -> list[dict[str, Any]]:
    """Runs of equal labels: ``[{"regime", "start_ts", "end_ts", "bars"}, …]``."""
    spans: list[dict[str, Any]] = []
    for i, name in enumerate(names.tolist()):
        if spans and spans[-1]["regime"] == name:
            spans[-1]["end_ts"] = int(ts[i])
            spans[-1]["bars"] += 1
        else:
            spans.append({"regime": name, "start_ts": int(ts[i]), "end_ts": int(ts[i]), "bars": 1})
    return spans


# ------------------------------------------------------------------------------------------------ events


class EventLog:
    """Reads of the durable event log (the store's ``EventStore`` side)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def read(
        self,
        *,
        since: int | None = None,
        types: Sequence[str] | None = None,
        correlation_id: str | None = None,
        start: int | None = None,
        end: int | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        """Events after sequence number ``since`` (exclusive), oldest first, at most ``limit``."""
        unknown = [t for t in types or () if t not in MESSAGE_TYPES]
        if unknown:
            raise ConfigError(f"unknown event type {unknown[0]!r}", hint=f"known: {', '.join(MESSAGE_TYPES)}")
        return self.store.read_events(
            None if since is None else since + 1,
            start=start,
            end=end,
            types=list(types) if types else None,
            correlation_id=correlation_id,
            limit=limit,
        )

    def signals(
        self, symbol: str, timeframe: Timeframe, start: int | None, end: int | None, limit: int
    ) -> list[tuple[int, SignalGenerated]]:
        """The last ``limit`` ``SignalGenerated`` events of one series, oldest first, with their seq."""
        events = self.store.read_events(start=start, end=end, types=["SignalGenerated"])
        found = [
            (e.seq, e.message)
            for e in events
            if isinstance(e.message, SignalGenerated)
            and e.message.symbol == symbol
            and e.message.timeframe == timeframe
        ]
        return found[-limit:] if limit else []


# ------------------------------------------------------------------------------------------------ models


class ModelCatalog:
    """The model registry, opened lazily (it imports torch)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._registry: Any = None
        self._lock = threading.Lock()

    def _open(self) -> Any:
        with self._lock:
            if self._registry is None:
                from smartmarket.models.registry import Registry

                self._registry = Registry(self.directory)
            return self._registry

    def summaries(
        self, *, symbol: str | None = None, timeframe: str | None = None, stage: str | None = None
    ) -> list[ModelSummary]:
        """Registered models, oldest first, optionally filtered."""
        records = self._open().list(symbol=symbol, timeframe=timeframe, stage=stage)
        return [summarize_model(r) for r in records]

    def show(self, model_id: str) -> ModelRecord:
        record: ModelRecord = self._open().show(model_id)
        return record

    def compare(self, ids: Sequence[str]) -> tuple[list[ModelSummary], list[str]]:
        """The models' summaries in the order asked, and every test metric name any of them has."""
        summaries = [summarize_model(self.show(i)) for i in ids]
        names: list[str] = []
        for summary in summaries:
            names.extend(k for k in summary.test_metrics if k not in names)
        return summaries, names

    def health(self) -> tuple[bool, str]:
        if not self.directory.exists():
            return True, "no models yet (registry directory not created)"
        try:
            count = len(self._open().list())
        except Exception as exc:  # a broken registry must not break /api/health
            return False, f"registry unreadable: {type(exc).__name__}"
        return True, f"{count} model(s)"


def summarize_model(record: ModelRecord) -> ModelSummary:
    return ModelSummary(
        id=record.model_id,
        kind=record.kind,
        symbol=record.symbol,
        timeframe=record.timeframe,
        stage=record.stage,
        created=record.created,
        feature_set=str(record.metadata.get("feature_set", "")),
        test_metrics=json_safe(dict(record.test_metrics)),
    )


# ------------------------------------------------------------------------------------------------ providers


@runtime_checkable
class PipelineStatusProvider(Protocol):
    """What the live pipeline registers so ``/api/pipeline`` can report its stages."""

    def pipeline_status(self) -> PipelineStatus: ...


@runtime_checkable
class QualityProvider(Protocol):
    """What the signal quality monitor registers; ``None`` means no data for that series yet."""

    def quality(self, symbol: str, timeframe: Timeframe) -> QualityReport | None: ...


class StatusBoard:
    """Holds the optional providers; answers "not running" / "no data" while they are absent."""

    def __init__(self) -> None:
        self._pipeline: PipelineStatusProvider | None = None
        self._quality: QualityProvider | None = None

    def register_pipeline(self, provider: PipelineStatusProvider | None) -> None:
        self._pipeline = provider

    def register_quality(self, provider: QualityProvider | None) -> None:
        self._quality = provider

    def pipeline(self) -> PipelineStatus:
        if self._pipeline is None:
            return PipelineStatus(running=False, reason="no live pipeline is running in this server")
        return self._pipeline.pipeline_status()

    def quality(self, symbol: str, timeframe: Timeframe) -> QualityOut:
        tf = timeframe.value
        if self._quality is None:
            reason = "the signal quality monitor is not running"
            return QualityOut(symbol=symbol, timeframe=tf, available=False, reason=reason)
        report = self._quality.quality(symbol, timeframe)
        if report is None:
            reason = f"no quality data for {symbol} {timeframe} yet"
            return QualityOut(symbol=symbol, timeframe=tf, available=False, reason=reason)
        return QualityOut.model_validate({**report.model_dump(), "symbol": symbol, "timeframe": tf, "available": True})


@dataclass
class Services:
    """Everything the routes use, built once per app by ``create_app``."""

    market: MarketData
    events: EventLog
    models: ModelCatalog
    status: StatusBoard


__all__ = [
    "MIN_WARMUP",
    "EventLog",
    "MarketData",
    "ModelCatalog",
    "PipelineStatusProvider",
    "QualityProvider",
    "Services",
    "StatusBoard",
    "parse_range",
    "parse_symbol",
    "parse_timeframe",
    "regime_spans",
    "summarize_model",
]
