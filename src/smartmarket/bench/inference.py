"""Inference and training figures of the networks: one window at a time on CPU, as the live signal path runs them.

What is measured, all in one process and *interleaved* (every candidate runs once per round, so a burst of load
from other processes hits them all alike):

* the seed Transformer and the seed CNN-LSTM at batch 1 × ``context`` bars: wall-clock p50/p99 and the thread's
  CPU time p50/p99 (what the forward costs when the cores are not shared), parameters, tokens per sample;
* optionally the Transformer design options side by side (joint vs two-stage mixing, stride 8 vs 16), so the
  choice of the seed design can be re-checked on any machine;
* optionally optimised execution of the seed Transformer: TorchScript trace + freeze (no extra dependency) and
  ONNX Runtime (only when ``onnxruntime`` and ``onnx`` are installed), with their largest deviation from eager;
* training throughput (samples/s) of both seed networks: a few AdamW steps on random windows.

The wall-clock p99 on a shared machine mostly measures the other processes; the CPU-time p99 is the figure that
says whether the model itself fits its latency budget. Both are reported.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smartmarket.models.networks import build_network, count_parameters, network_config
from smartmarket.models.networks.transformer import GroupPatchTransformer, TransformerConfig

TARGET_P99_MS = 20.0
# The 'default' feature set's 73 model inputs (scale-free) as grouped by ``assign_groups``: 63 price, 4 volume,
# 6 volatility.
DEFAULT_GROUP_SIZES = {"price": 63, "volume": 4, "volatility": 6}
TRANSFORMER_OPTIONS: dict[str, dict[str, Any]] = {
    "joint, stride 8 (previous seed)": {"mixing": "joint", "stride": 8},
    "two-stage, stride 8": {"mixing": "two_stage", "stride": 8},
    "joint, stride 16": {"mixing": "joint", "stride": 16},
    "two-stage, stride 16": {"mixing": "two_stage", "stride": 16},
}

Log = Callable[[str], None]


def feature_groups(sizes: dict[str, int] | None = None) -> dict[str, tuple[int, ...]]:
    """Consecutive column indices per group, e.g. ``{"price": (0…63), "volume": (64…66), …}``."""
    out: dict[str, tuple[int, ...]] = {}
    start = 0
    for group, size in (sizes or DEFAULT_GROUP_SIZES).items():
        out[group] = tuple(range(start, start + size))
        start += size
    return out


def forward_flops(module: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward (matrix products and attention, as counted by ``torch.utils.flop_counter``).

    Counted on the regular (non-fused) path: the module is put in training mode under ``no_grad`` for the count,
    because the fused inference kernel of ``nn.TransformerEncoderLayer`` is invisible to the counter.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.train()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(x)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


def _percentiles(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples) * 1000.0
    return round(float(np.percentile(arr, 50)), 2), round(float(np.percentile(arr, 99)), 2)


def interleaved_latency(
    candidates: dict[str, Callable[[], object]], *, iterations: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Wall and thread-CPU p50/p99 (ms) per candidate, the candidates run round-robin ``iterations`` times."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {name: [] for name in candidates}
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(iterations):
        for name, fn in candidates.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.thread_time() - c0)
    out = {}
    for name in candidates:
        p50, p99 = _percentiles(wall[name])
        cpu50, cpu99 = _percentiles(cpu[name])
        out[name] = {"p50_ms": p50, "p99_ms": p99, "cpu_p50_ms": cpu50, "cpu_p99_ms": cpu99}
    return out


def _eager(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode():
            return module(x)

    return run


def torchscript_frozen(module: nn.Module, x: torch.Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` then ``torch.jit.freeze`` (weights folded in as constants) of an eval-mode module."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module.eval(), x)
        return torch.jit.freeze(traced)


def onnxruntime_session(module: nn.Module, x: torch.Tensor, threads: int) -> Any | None:
    """An ONNX Runtime CPU session of ``module`` (exported at this input shape), or None when not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "model.onnx"
        try:
            torch.onnx.export(
                module.eval(), (x,), path, input_names=["x"], output_names=["logits"], dynamo=False, opset_version=17
            )
        except ImportError:  # the exporter needs the ``onnx`` package
            return None
        model_bytes = path.read_bytes()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def training_throughput(
    module: nn.Module, n_features: int, *, batch_size: int, steps: int, seed: int = 0
) -> dict[str, float | int]:
    """Samples/s of forward + backward + AdamW step on random windows (the first step is a warm-up, not timed)."""
    generator = torch.Generator().manual_seed(seed)
    context = int(getattr(module, "context"))  # noqa: B009 - every network carries its context
    x = torch.randn(batch_size, context, n_features, generator=generator)
    y = torch.randint(0, 3, (batch_size,), generator=generator)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    module.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        criterion(module(x), y).backward()
        optimizer.step()

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - started
    module.eval()
    return {
        "samples_per_s": round(batch_size * steps / seconds, 1),
        "batch_size": batch_size,
        "steps": steps,
        "seconds": round(seconds, 3),
    }


def _describe_transformer(model: GroupPatchTransformer, x: torch.Tensor) -> dict[str, Any]:
    cfg = model.config
    return {
        "params": count_parameters(model),
        "context": cfg.context,
        "tokens": model.tokens_per_sample,
        "group_tokens": model.group_tokens_per_sample,
        "mixing": cfg.mixing,
        "patch_len": cfg.patch_len,
        "stride": cfg.stride,
        "d_model": cfg.d_model,
        "nhead": cfg.nhead,
        "num_layers": cfg.num_layers,
        "gflop": round(forward_flops(model, x) / 1e9, 3),
    }


def run_inference_benchmark(
    *,
    context: int = 1024,
    iterations: int = 200,
    warmup: int = 20,
    threads: int = 1,
    variants: bool = True,
    optimised: bool = True,
    train_steps: int = 3,
    train_batch: int = 32,
    seed: int = 0,
    log: Log | None = None,
) -> dict[str, Any]:
    """The figures described in the module docstring, as one JSON-ready dict.

    ``context`` (default 1024) applies to both seed networks; ``threads`` is torch's intra-op thread count
    during the run (restored after). Keys: ``transformer``, ``cnn_lstm`` (``p50_ms``, ``p99_ms``, ``cpu_*``,
    ``params``, ``context``, ``tokens`` …), ``transformer_variants``, ``optimised``, ``training``, ``machine``.
    """
    say = log or (lambda _msg: None)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(context, iterations, warmup, threads, variants, optimised, train_steps, train_batch, seed, say)
    finally:
        torch.set_num_threads(previous_threads)


def _run(
    context: int,
    iterations: int,
    warmup: int,
    threads: int,
    variants: bool,
    optimised: bool,
    train_steps: int,
    train_batch: int,
    seed: int,
    say: Log,
) -> dict[str, Any]:
    groups = feature_groups()
    n_features = sum(len(v) for v in groups.values())
    x = torch.randn(1, context, n_features, generator=torch.Generator().manual_seed(seed))
    load_before = os.getloadavg()

    def transformer(**overrides: Any) -> GroupPatchTransformer:
        torch.manual_seed(seed)
        config = network_config("transformer", "seed", context=context, **overrides)
        assert isinstance(config, TransformerConfig)
        module = build_network("transformer", config, n_features, groups)
        assert isinstance(module, GroupPatchTransformer)
        return module.eval()

    seed_transformer = transformer()
    torch.manual_seed(seed)
    cnn_lstm = build_network("cnn_lstm", network_config("cnn_lstm", "seed", context=context), n_features).eval()
    candidates: dict[str, Callable[[], object]] = {
        "transformer": _eager(seed_transformer, x),
        "cnn_lstm": _eager(cnn_lstm, x),
    }
    variant_models: dict[str, GroupPatchTransformer] = {}
    if variants:
        seed_cfg = seed_transformer.config
        for name, overrides in TRANSFORMER_OPTIONS.items():
            if replace(seed_cfg, **overrides) == seed_cfg:
                continue  # the seed itself is already measured
            variant_models[name] = transformer(**overrides)
            candidates[name] = _eager(variant_models[name], x)

    optimised_info: dict[str, Any] = {}
    if optimised:
        with torch.inference_mode():
            reference = seed_transformer(x)
        say("tracing the seed Transformer (TorchScript, frozen)")
        frozen = torchscript_frozen(seed_transformer, x)
        with torch.inference_mode():
            optimised_info["torchscript_frozen"] = {
                "max_abs_diff_vs_eager": float((frozen(x) - reference).abs().max()),
            }
        candidates["transformer · torchscript frozen"] = _eager(frozen, x)
        say("exporting the seed Transformer to ONNX Runtime (skipped when onnxruntime is not installed)")
        session = onnxruntime_session(seed_transformer, x, threads)
        if session is None:
            optimised_info["onnxruntime"] = None
        else:
            x_np = x.numpy()
            logits = session.run(None, {"x": x_np})[0]
            optimised_info["onnxruntime"] = {
                "max_abs_diff_vs_eager": float(np.abs(logits - reference.numpy()).max()),
            }
            candidates["transformer · onnxruntime"] = lambda: session.run(None, {"x": x_np})

    say(f"latency: {len(candidates)} candidates × {iterations} interleaved rounds, batch 1 × {context} bars")
    latency = interleaved_latency(candidates, iterations=iterations, warmup=warmup)

    variant_rows: list[dict[str, Any]] = []
    if variants:
        seed_name = f"seed: {seed_transformer.config.mixing}, stride {seed_transformer.config.stride}"
        variant_rows.append({"name": seed_name, **latency["transformer"], **_describe_transformer(seed_transformer, x)})
        for name, model in variant_models.items():
            variant_rows.append({"name": name, **latency[name], **_describe_transformer(model, x)})
    result: dict[str, Any] = {
        "transformer": {
            **latency["transformer"],
            **_describe_transformer(seed_transformer, x),
            "target_p99_ms": TARGET_P99_MS,
            "target_met_wall": latency["transformer"]["p99_ms"] <= TARGET_P99_MS,
            "target_met_cpu": latency["transformer"]["cpu_p99_ms"] <= TARGET_P99_MS,
        },
        "cnn_lstm": {
            **latency["cnn_lstm"],
            "params": count_parameters(cnn_lstm),
            "context": context,
            "tokens": int(getattr(cnn_lstm, "sequence_length")),  # noqa: B009 - LSTM steps after pooling
            "gflop": round(forward_flops(cnn_lstm, x) / 1e9, 3),
        },
        "transformer_variants": variant_rows,
        "optimised": {
            "eager": latency["transformer"],
            **{
                key: None if info is None else {**latency[f"transformer · {key.replace('_', ' ')}"], **info}
                for key, info in optimised_info.items()
            },
        },
    }

    training: dict[str, Any] = {}
    if train_steps > 0:
        for name, module in (("transformer", seed_transformer), ("cnn_lstm", cnn_lstm)):
            say(f"training throughput: {name}, {train_steps} steps of batch {train_batch}")
            training[name] = training_throughput(module, n_features, batch_size=train_batch, steps=train_steps)
    result["training"] = training
    result["machine"] = {
        "torch": torch.__version__,
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "processor": platform.processor() or platform.machine(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "iterations": iterations,
        "batch": 1,
        "n_features": n_features,
    }
    return result


__all__ = [
    "TARGET_P99_MS",
    "TRANSFORMER_OPTIONS",
    "feature_groups",
    "forward_flops",
    "interleaved_latency",
    "onnxruntime_session",
    "run_inference_benchmark",
    "torchscript_frozen",
    "training_throughput",
]
