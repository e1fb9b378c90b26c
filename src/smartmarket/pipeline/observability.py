"""Pipeline metrics (Prometheus) and structured logs that carry correlation ids.

Metrics, in a registry of their own per pipeline (``PipelineMetrics.registry``; serve it with
``prometheus_client.start_http_server(port, registry=...)`` — ``smartmarket run --metrics-port``):

- ``smartmarket_pipeline_events_total{stage, type}``: events handled per stage (throughput) and
  ``smartmarket_pipeline_published_total{stage, type}``: events each stage emitted;
- ``smartmarket_pipeline_errors_total{stage}``: handler failures (retried, then dead-lettered);
- ``smartmarket_pipeline_pending{topic, symbol}``: the largest un-acknowledged backlog of any group on a stream
  (stream lag), sampled while the pipeline runs;
- ``smartmarket_pipeline_handler_seconds{stage}``: time in each stage's handler;
- ``smartmarket_pipeline_candle_to_signal_seconds`` and ``…_signal_to_order_seconds``: end-to-end latency
  from a ``CandleClosed`` being published to its ``SignalGenerated`` being published (and from the signal to
  its ``SubmitOrder``), measured in the process that publishes both (all stages in one process);
- the candle → signal time split in two: ``…_candle_backlog_seconds``, the **backlog delay** a candle waited on
  the bus before the features stage started on it (at ``--speed 0`` a whole file is published at once, so this
  is queueing, not a property of the pipeline), and ``…_candle_processing_seconds``, the **processing latency**
  from that start to the signal being published.

Exact latency samples are kept too (``latency_ms``) for the benchmark's percentiles.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict, deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from smartmarket.core.redaction import redact_text

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class PipelineMetrics:
    """The pipeline's Prometheus metrics plus exact latency samples."""

    def __init__(self, registry: CollectorRegistry | None = None, *, keep_samples: int = 100_000) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.handled = Counter("smartmarket_pipeline_events", "Events handled", ["stage", "type"], registry=r)
        self.published = Counter("smartmarket_pipeline_published", "Events emitted", ["stage", "type"], registry=r)
        self.errors = Counter("smartmarket_pipeline_errors", "Handler failures", ["stage"], registry=r)
        self.recorded = Counter("smartmarket_pipeline_recorded", "Events appended to the event store", registry=r)
        self.pending = Gauge("smartmarket_pipeline_pending", "Largest group backlog", ["topic", "symbol"], registry=r)
        self.handler_seconds = Histogram(
            "smartmarket_pipeline_handler_seconds", "Handler time", ["stage"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.candle_to_signal = Histogram(
            "smartmarket_pipeline_candle_to_signal_seconds", "CandleClosed published → SignalGenerated published",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.signal_to_order = Histogram(
            "smartmarket_pipeline_signal_to_order_seconds", "SignalGenerated published → SubmitOrder published",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.candle_backlog = Histogram(
            "smartmarket_pipeline_candle_backlog_seconds", "CandleClosed published → the features stage starts on it",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.candle_processing = Histogram(
            "smartmarket_pipeline_candle_processing_seconds",
            "The features stage starts on a CandleClosed → its SignalGenerated published",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.latency_ms: dict[str, deque[float]] = {
            name: deque(maxlen=keep_samples)
            for name in ("candle_to_signal", "candle_backlog", "candle_processing", "signal_to_order")
        }
        self._started: OrderedDict[str, float] = OrderedDict()  # event id → perf_counter when published
        self._taken: OrderedDict[str, float] = OrderedDict()  # candle id → perf_counter when features started it

    def published_at(self, event_id: str) -> None:
        """Remember when a chain's root (candle) or a signal left, to time what it causes."""
        self._started[event_id] = time.perf_counter()
        if len(self._started) > 100_000:
            self._started.popitem(last=False)

    def candle_taken(self, event_id: str) -> None:
        """The features stage starts on a candle: the time since it was published was backlog delay (a retry of
        the same candle is not counted again)."""
        started = self._started.get(event_id)
        if started is None or event_id in self._taken:
            return
        now = time.perf_counter()
        self._taken[event_id] = now
        if len(self._taken) > 100_000:
            self._taken.popitem(last=False)
        self.candle_backlog.observe(now - started)
        self.latency_ms["candle_backlog"].append((now - started) * 1000)

    def _elapsed(self, event_id: str | None) -> float | None:
        started = self._started.pop(event_id, None) if event_id else None
        return None if started is None else time.perf_counter() - started

    def signal_published(self, correlation_id: str, signal_id: str) -> None:
        taken = self._taken.pop(correlation_id, None)
        if taken is not None:
            processing = time.perf_counter() - taken
            self.candle_processing.observe(processing)
            self.latency_ms["candle_processing"].append(processing * 1000)
        seconds = self._elapsed(correlation_id)
        if seconds is not None:
            self.candle_to_signal.observe(seconds)
            self.latency_ms["candle_to_signal"].append(seconds * 1000)
        self.published_at(signal_id)

    def order_published(self, signal_id: str | None) -> None:
        seconds = self._elapsed(signal_id)
        if seconds is not None:
            self.signal_to_order.observe(seconds)
            self.latency_ms["signal_to_order"].append(seconds * 1000)

    def counts(self) -> dict[str, int]:
        """Handled events per stage (for summaries)."""
        out: dict[str, int] = {}
        for metric in self.handled.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    stage = sample.labels["stage"]
                    out[stage] = out.get(stage, 0) + int(sample.value)
        return out


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field (correlation ids…)."""

    _PLAIN = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
            "msg": record.getMessage(),
        }  # fmt: skip
        data.update({k: v for k, v in vars(record).items() if k not in self._PLAIN})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # tracebacks quote URLs and arguments: the one redaction rule applies to them too
            data["exc"] = redact_text(record.exc_text)
        return json.dumps(data, default=str)


def event_fields(message: Any) -> dict[str, Any]:
    """The ``extra`` of a log line about one event: type, id, symbol, correlation and causation ids."""
    return {
        "event_type": type(message).__name__,
        "event_id": getattr(message, "event_id", None),
        "symbol": getattr(message, "symbol", None),
        "correlation_id": getattr(message, "correlation_id", None),
        "causation_id": getattr(message, "causation_id", None),
    }


def use_json_logs(level: int = logging.INFO) -> None:
    """Route ``smartmarket`` logs to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("smartmarket")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


__all__ = ["LATENCY_BUCKETS", "JsonLogFormatter", "PipelineMetrics", "event_fields", "use_json_logs"]
