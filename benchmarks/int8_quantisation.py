"""Int8 dynamic quantisation of the seed Transformer under ONNX Runtime: is it faster, and does it stay within
the runtime tolerance (``models.runtime.TOLERANCE``, max |Δp| on probabilities)? (issue 16 item 4)

Exports the seed-size Transformer (d_model 256, 8 heads, 6 layers, 1024 candles, the 'default' scale-free inputs,
untrained weights: the question is speed and numerical agreement, not skill) the way the live runtime does
(``models.runtime.export_onnx``), quantises its weights with ``onnxruntime.quantization.quantize_dynamic``
(QInt8), then compares both on 16 random windows and times one window at a time, alternating the two sessions.

    python benchmarks/int8_quantisation.py
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

from smartmarket.features.pipeline import FeaturePipeline
from smartmarket.features.scale_free import model_input_columns
from smartmarket.models.datasets import assign_groups
from smartmarket.models.pipeline import build_classifier
from smartmarket.models.runtime import TOLERANCE, export_onnx


def session(path: Path) -> ort.InferenceSession:
    """The live runtime's session settings (``models.runtime.OnnxClassifier``)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = min(2, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def probabilities(s: ort.InferenceSession, windows: np.ndarray) -> np.ndarray:
    rows = []
    for window in windows:  # one window per call, as live
        (logits,) = s.run(["logits"], {"window": window[None]})
        z = logits.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        rows.append(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))
    return np.concatenate(rows)


def latency_ms(s: ort.InferenceSession, window: np.ndarray, runs: int = 150) -> list[float]:
    for _ in range(10):
        s.run(["logits"], {"window": window})
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        s.run(["logits"], {"window": window})
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> dict[str, Any]:
    columns = model_input_columns(FeaturePipeline("default", "1m").columns)
    classifier = build_classifier("transformer", len(columns), assign_groups(columns), preset="seed", seed=0)
    folder = Path(tempfile.mkdtemp(prefix="int8-"))
    fp32 = export_onnx(classifier.module, classifier.context, len(columns), folder / "fp32.onnx")
    int8 = folder / "int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    sessions = {"fp32": session(fp32), "int8": session(int8)}
    probe = np.random.default_rng(0).standard_normal((16, classifier.context, len(columns))).astype(np.float32)
    p32, p8 = (probabilities(sessions[k], probe) for k in ("fp32", "int8"))
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(2):  # alternating, so load changes hit both
        for name, s in sessions.items():
            times[name] += latency_ms(s, probe[:1])
    return {
        "max_abs_probability_difference": float(np.abs(p32 - p8).max()),
        "tolerance": TOLERANCE,
        "within_tolerance": bool(np.abs(p32 - p8).max() <= TOLERANCE),
        "same_argmax_share": float((p32.argmax(axis=1) == p8.argmax(axis=1)).mean()),
        "file_mb": {k: round(os.path.getsize(p) / 1e6, 2) for k, p in (("fp32", fp32), ("int8", int8))},
        "latency_ms": {
            k: {"p50": round(float(np.percentile(v, 50)), 2), "p99": round(float(np.percentile(v, 99)), 2)}
            for k, v in times.items()
        },
        "load_average_1m": os.getloadavg()[0],
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
