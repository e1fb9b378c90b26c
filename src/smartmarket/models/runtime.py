"""Inference runtimes for the networks: torch eager, or ONNX Runtime on an exported graph (the default when
``onnxruntime`` is installed).

A network is exported once per weights (``torch.onnx.export``, fixed window length, dynamic batch) to
``<cache>/<model id>-<sha>.onnx`` where ``sha`` hashes the weights and the input shape, so changed weights
build a new file. On load the ONNX probabilities are compared with eager on a probe window; a difference above
:data:`TOLERANCE` (max abs on probabilities) keeps torch. The ``.onnx`` file is a protobuf graph: loading it runs
no Python code (not a pickle).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from smartmarket.core.errors import ConfigError
from smartmarket.models.pipeline import TrainedModel
from smartmarket.models.training import NetworkClassifier

Runtime = Literal["auto", "torch", "onnx"]
RUNTIMES: tuple[str, ...] = ("auto", "torch", "onnx")
TOLERANCE = 1e-4  # max abs difference allowed between ONNX and eager probabilities
CACHE_DIR = ".onnx-cache"


def onnxruntime_available() -> bool:
    try:
        importlib.import_module("onnxruntime")
    except ImportError:
        return False
    return True


def weights_digest(module: torch.nn.Module, context: int, n_features: int) -> str:
    """A short hash of the weights (and the input shape): the export is rebuilt when it changes."""
    h = hashlib.sha256(f"{context}x{n_features}".encode())
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def export_onnx(module: torch.nn.Module, context: int, n_features: int, path: Path) -> Path:
    """Export ``module`` (input ``(batch, context, n_features)`` → logits) to ``path``, atomically."""
    module.eval()
    example = torch.zeros(1, context, n_features, dtype=torch.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        # grad on: keeps torch off its fused attention fast path, which has no ONNX form
        with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer/deprecation chatter of the TorchScript exporter
            torch.onnx.export(
                module, (example,), tmp, input_names=["window"], output_names=["logits"],
                dynamic_axes={"window": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
            )  # fmt: skip
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class OnnxClassifier:
    """A :class:`NetworkClassifier` run by ONNX Runtime: same contract (``predict_proba`` → softmax)."""

    def __init__(self, network: NetworkClassifier, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.kind = network.kind
        self.context = network.context
        self.n_classes = network.n_classes
        self.network = network
        self.path = path
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __deepcopy__(self, memo: dict[int, Any]) -> OnnxClassifier:
        return self  # holds no state between calls: copies of an engine share the session

    def fit(self, train: Any, validation: Any = None) -> OnnxClassifier:
        raise TypeError("an ONNX classifier runs a trained network; fit the torch network instead")

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(windows, dtype=np.float32)
        if len(x) == 0:
            return np.zeros((0, self.n_classes))
        (logits,) = self._session.run(["logits"], {"window": x})
        z = logits.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)

    def hyperparameters(self) -> dict[str, Any]:
        return self.network.hyperparameters()


def max_abs_difference(a: Any, b: Any, context: int, n_features: int, seed: int = 0) -> float:
    """Largest absolute difference between two classifiers' probabilities on random probe windows."""
    probe = np.random.default_rng(seed).standard_normal((4, context, n_features)).astype(np.float32)
    return float(np.max(np.abs(a.predict_proba(probe) - b.predict_proba(probe))))


def runtime_classifier(model: TrainedModel, runtime: Runtime = "auto", cache_dir: str | Path | None = None) -> Any:
    """The classifier that runs ``model``'s network on ``runtime`` (``model`` is left as it is). ``auto``: ONNX
    Runtime when installed and equal to eager within :data:`TOLERANCE`, else torch. ``onnx``: ONNX or a
    ``ConfigError``. A baseline's classifier is returned unchanged."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}", hint=f"use one of: {', '.join(RUNTIMES)}")
    network = model.classifier
    if isinstance(network, OnnxClassifier):
        network = network.network
    if not isinstance(network, NetworkClassifier):
        return network
    if runtime == "torch" or (runtime == "auto" and not onnxruntime_available()):
        return network
    if not onnxruntime_available():
        raise ConfigError("runtime onnx asked for, onnxruntime is not installed", hint="pip install onnxruntime")
    n_features = len(model.feature_columns)
    folder = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / "smartmarket-onnx"
    digest = weights_digest(network.module, network.context, n_features)
    path = folder / f"{model.model_id or model.kind}-{digest}.onnx"
    if not path.is_file():
        export_onnx(network.module, network.context, n_features, path)
    onnx = OnnxClassifier(network, path)
    diff = max_abs_difference(onnx, network, network.context, n_features)
    if diff <= TOLERANCE:
        return onnx
    if runtime == "onnx":
        raise ConfigError(f"ONNX output differs from torch by {diff:.2e} (> {TOLERANCE:g})", hint="use runtime torch")
    return network


def with_runtime(model: TrainedModel, runtime: Runtime = "auto", cache_dir: str | Path | None = None) -> TrainedModel:
    """``model`` itself, its classifier replaced by :func:`runtime_classifier`."""
    model.classifier = runtime_classifier(model, runtime, cache_dir)
    return model
