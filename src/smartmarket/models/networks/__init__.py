"""Networks: the PatchTST-style group Transformer and the CNN-LSTM, plus their shared input normaliser.

Every network takes windows ``(B, context, F)`` of raw features and returns class logits ``(B, n_classes)``.
The first layer of each is an :class:`InputNormaliser`: a per-feature scaler whose statistics are fitted on
training rows only (stored as buffers, so they travel with the weights), then optionally RevIN (Kim et al.,
ICLR 2022): each window normalised by its own per-feature mean and std, with a learnable per-feature affine.
A network raises on a window length or feature count it was not built for — no silent truncation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

import numpy as np
import torch
from torch import nn


class InputNormaliser(nn.Module):
    """Training-fitted per-feature scaling, then (when ``revin``) per-window normalisation with learnable affine."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_features: int, *, revin: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.n_features = n_features
        self.revin = revin
        self.eps = eps
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        if revin:
            self.affine_weight = nn.Parameter(torch.ones(n_features))
            self.affine_bias = nn.Parameter(torch.zeros(n_features))

    def set_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        if mean.shape != (self.n_features,) or std.shape != (self.n_features,):
            raise ValueError(f"statistics must have shape ({self.n_features},)")
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
            self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.revin:
            mu = x.mean(dim=1, keepdim=True)
            sigma = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps)
            x = (x - mu) / sigma * self.affine_weight + self.affine_bias
        return x


def check_input(x: torch.Tensor, context: int, n_features: int, name: str) -> None:
    """Raise unless ``x`` is ``(B, context, n_features)``: a network never silently crops its input."""
    if x.dim() != 3 or x.shape[1] != context or x.shape[2] != n_features:
        raise ValueError(
            f"{name} was built for windows (B, {context}, {n_features}), got {tuple(x.shape)}: "
            "build the dataset with the model's context and feature columns"
        )


def config_from_dict(cls: type[Any], data: Mapping[str, Any]) -> Any:
    """Rebuild a frozen config dataclass from JSON (lists back to tuples, unknown keys rejected)."""
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


from .cnn_lstm import CNN_LSTM_PRESETS, CNNLSTM, CNNLSTMConfig  # noqa: E402
from .transformer import TRANSFORMER_PRESETS, GroupPatchTransformer, TransformerConfig  # noqa: E402

NETWORK_KINDS: tuple[str, ...] = ("transformer", "cnn_lstm")


def network_config(kind: str, preset: str = "small", **overrides: Any) -> TransformerConfig | CNNLSTMConfig:
    """A preset (``"seed"`` or ``"small"``) with field overrides: ``network_config("transformer", context=512)``."""
    presets: Mapping[str, Any]
    if kind == "transformer":
        presets = TRANSFORMER_PRESETS
    elif kind == "cnn_lstm":
        presets = CNN_LSTM_PRESETS
    else:
        raise ValueError(f"unknown network kind {kind!r}: use one of {NETWORK_KINDS}")
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r} for {kind}: use one of {sorted(presets)}")
    return replace(presets[preset], **overrides)


def build_network(
    kind: str,
    config: TransformerConfig | CNNLSTMConfig | Mapping[str, Any],
    n_features: int,
    groups: Mapping[str, Sequence[int]] | None = None,
) -> GroupPatchTransformer | CNNLSTM:
    """Build a network from a config (or its JSON dict). ``groups`` (group → column indices) feeds the Transformer."""
    config_type = {"transformer": TransformerConfig, "cnn_lstm": CNNLSTMConfig}.get(kind)
    if config_type is None:
        raise ValueError(f"unknown network kind {kind!r}: use one of {NETWORK_KINDS}")
    cfg = config_from_dict(config_type, config) if isinstance(config, Mapping) else config
    if not isinstance(cfg, config_type):
        raise TypeError(f"a {kind} needs a {config_type.__name__}, got {type(cfg).__name__}")
    if isinstance(cfg, TransformerConfig):
        return GroupPatchTransformer(cfg, n_features, groups or {"price": tuple(range(n_features))})
    if isinstance(cfg, CNNLSTMConfig):
        return CNNLSTM(cfg, n_features)
    raise ValueError(f"unknown network kind {kind!r}: use one of {NETWORK_KINDS}")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "CNNLSTM",
    "CNN_LSTM_PRESETS",
    "NETWORK_KINDS",
    "TRANSFORMER_PRESETS",
    "CNNLSTMConfig",
    "GroupPatchTransformer",
    "InputNormaliser",
    "TransformerConfig",
    "build_network",
    "check_input",
    "config_from_dict",
    "count_parameters",
    "network_config",
]
