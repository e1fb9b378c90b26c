"""ONNX Runtime for the networks: outputs equal eager within TOLERANCE, a torch fallback, cache invalidation."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from smartmarket.core.errors import ConfigError
from smartmarket.models.labels import LabelConfig
from smartmarket.models.networks import build_network, network_config
from smartmarket.models.pipeline import TrainedModel
from smartmarket.models.runtime import TOLERANCE, OnnxClassifier, with_runtime
from smartmarket.models.training import NetworkClassifier, TrainConfig

GROUPS = {"price": (0, 1, 2, 3), "volume": (4, 5)}
N_FEATURES = 6

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ort = pytest.importorskip("onnxruntime")


def model(kind: str = "transformer", seed: int = 0) -> TrainedModel:
    torch.manual_seed(seed)
    module = build_network(kind, network_config(kind, "small"), N_FEATURES, GROUPS).eval()
    network = NetworkClassifier(kind, module, TrainConfig())
    return TrainedModel(
        kind=kind, classifier=network, feature_columns=tuple(f"f{i}" for i in range(N_FEATURES)), groups=GROUPS,
        label_config=LabelConfig(), model_id=f"{kind}-test",
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["transformer", "cnn_lstm"])
def test_onnx_equals_eager_within_tolerance(kind: str, tmp_path: Path) -> None:
    trained = model(kind)
    eager = trained.classifier
    windows = np.random.default_rng(1).standard_normal((3, trained.context, N_FEATURES)).astype(np.float32)
    expected = eager.predict_proba(windows)
    with_runtime(trained, "onnx", tmp_path)
    assert isinstance(trained.classifier, OnnxClassifier)
    got = trained.predict_proba(windows)
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= TOLERANCE
    assert with_runtime(trained, "torch").classifier is eager


def test_falls_back_to_torch_without_onnxruntime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_ort(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "onnxruntime":
            raise ImportError("simulated: no onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    monkeypatch.delitem(__import__("sys").modules, "onnxruntime", raising=False)
    trained = model()
    assert isinstance(with_runtime(trained, "auto", tmp_path).classifier, NetworkClassifier)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="not installed"):
        with_runtime(trained, "onnx", tmp_path)


def test_cache_rebuilt_when_weights_change(tmp_path: Path) -> None:
    trained = model()
    with_runtime(trained, "onnx", tmp_path)
    first = sorted(p.name for p in tmp_path.glob("*.onnx"))
    with_runtime(trained, "onnx", tmp_path)  # same weights: same file, nothing new
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == first
    network = trained.classifier.network  # type: ignore[attr-defined]
    with torch.no_grad():
        next(network.module.parameters()).add_(0.5)
    windows = np.random.default_rng(2).standard_normal((2, trained.context, N_FEATURES)).astype(np.float32)
    with_runtime(trained, "onnx", tmp_path)
    assert len(list(tmp_path.glob("*.onnx"))) == 2
    assert np.max(np.abs(trained.predict_proba(windows) - network.predict_proba(windows))) <= TOLERANCE


def test_unknown_runtime_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown runtime"):
        with_runtime(model(), "tensorrt")  # type: ignore[arg-type]


def test_model_member_live_update_on_onnx_equals_torch(tmp_path: Path) -> None:
    from smartmarket.signals.members import ModelMember

    trained = model()
    eager = ModelMember(trained)
    fast = ModelMember(trained, runtime="auto", cache_dir=tmp_path)
    assert (eager.runtime, fast.runtime) == ("torch", "onnx")
    assert isinstance(trained.classifier, NetworkClassifier)  # the research path keeps torch
    rows = np.random.default_rng(3).standard_normal((trained.context + 2, N_FEATURES))
    for values in rows:
        row = dict(zip(trained.feature_columns, values, strict=True))
        a, b = eager.update(None, row), fast.update(None, row)  # type: ignore[arg-type]
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert np.max(np.abs(a - b)) <= TOLERANCE
    assert fast.use_runtime("torch") == "torch"


def test_onnx_cache_is_a_safe_file(tmp_path: Path) -> None:
    from smartmarket.core.safe_files import unsafe_reason

    with_runtime(model(), "onnx", tmp_path)
    (path,) = tmp_path.glob("*.onnx")
    assert unsafe_reason(path) is None


class _Recorder:
    kind, context, n_classes = "recorder", 5, 3

    def __init__(self) -> None:
        self.windows: list[np.ndarray] = []

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        self.windows.append(np.array(windows))
        return np.full((len(windows), 3), 1 / 3)


def test_model_member_ring_window_equals_the_last_rows_stacked() -> None:
    from smartmarket.signals.members import ModelMember

    recorder = _Recorder()
    trained = TrainedModel(
        kind="recorder", classifier=recorder, feature_columns=("a", "b"), groups={}, label_config=LabelConfig()
    )  # type: ignore[arg-type]
    member = ModelMember(trained)
    rng = np.random.default_rng(4)
    rows = rng.standard_normal((40, 2)).astype(np.float32)
    rows[12, 1] = np.nan  # a bad row: no prediction while it is inside the window
    expected, got = [], []
    for i, values in enumerate(rows):
        out = member.update(None, {"a": values[0], "b": values[1]})  # type: ignore[arg-type]
        window = rows[max(0, i - 4) : i + 1]
        usable = len(window) == 5 and np.isfinite(window).all()
        assert (out is not None) == usable
        if usable:
            expected.append(window)
    got = [w[0] for w in recorder.windows]
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    member.reset()
    assert member.update(None, {"a": 1.0, "b": 2.0}) is None  # type: ignore[arg-type]


def test_bench_pipeline_refuses_an_unknown_runtime_before_any_work() -> None:
    from smartmarket.bench.pipeline import run_pipeline_benchmark

    with pytest.raises(ConfigError, match="unknown runtime"):
        run_pipeline_benchmark(runtime="tensorrt")
