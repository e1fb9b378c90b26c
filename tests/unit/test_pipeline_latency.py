"""The run summary splits candle → signal time into backlog delay and processing latency, each labelled."""

from __future__ import annotations

import time

from smartmarket.cli.pipeline import LATENCY_LABELS
from smartmarket.pipeline.observability import PipelineMetrics


def test_backlog_delay_and_processing_latency_are_measured_apart() -> None:
    metrics = PipelineMetrics()
    metrics.published_at("candle-1")
    time.sleep(0.12)  # waiting in the backlog
    metrics.candle_taken("candle-1")
    time.sleep(0.03)  # the features, predictions and signals stages at work
    metrics.candle_taken("candle-1")  # a retry of the same candle is not a second wait
    metrics.signal_published("candle-1", "signal-1")
    [backlog] = metrics.latency_ms["candle_backlog"]
    [processing] = metrics.latency_ms["candle_processing"]
    [total] = metrics.latency_ms["candle_to_signal"]
    assert 120 <= backlog < total and 30 <= processing < total
    assert abs(backlog + processing - total) < 5


def test_a_signal_whose_candle_was_not_taken_here_counts_only_in_the_total() -> None:
    metrics = PipelineMetrics()
    metrics.published_at("candle-1")
    metrics.signal_published("candle-1", "signal-1")  # features ran in another process (a worker)
    assert len(metrics.latency_ms["candle_to_signal"]) == 1 and not metrics.latency_ms["candle_processing"]


def test_every_latency_in_the_summary_has_a_label() -> None:
    assert set(PipelineMetrics().latency_ms) == set(LATENCY_LABELS)
    assert "backlog delay" in LATENCY_LABELS["candle_backlog"]
    assert "processing latency" in LATENCY_LABELS["candle_processing"]
