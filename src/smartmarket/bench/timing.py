"""Small timing helpers shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Latency:
    """Latency distribution of repeated calls, in microseconds."""

    p50_us: float
    p99_us: float
    mean_us: float
    runs: int


def measure_latency(fn: Callable[[], object], *, runs: int, warmup: int = 20) -> Latency:
    for _ in range(warmup):
        fn()
    samples = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        samples[i] = (time.perf_counter_ns() - t0) / 1000.0
    return Latency(
        p50_us=float(np.percentile(samples, 50)),
        p99_us=float(np.percentile(samples, 99)),
        mean_us=float(samples.mean()),
        runs=runs,
    )


def best_of(fn: Callable[[], object], *, repeat: int = 3) -> float:
    """Median wall time in seconds over ``repeat`` calls (the first call included)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


__all__ = ["Latency", "best_of", "measure_latency"]
