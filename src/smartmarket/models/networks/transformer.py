"""A PatchTST-style Transformer (Nie et al., ICLR 2023) with a real attention over price, volume and volatility.

Patches. The context (1024 bars at the seed preset) is cut into patches of ``patch_len`` bars every ``stride``
bars, without padding: ``num_patches = (context − patch_len) // stride + 1``. The feature columns are split into
groups (price, volume, volatility; see :func:`smartmarket.models.datasets.assign_groups`). For each non-empty
group and each patch position, the group's columns over that patch are flattened and embedded by the group's own
linear layer into one ``d_model`` *group token*, plus a learned group embedding.

Two ways to let the groups meet (``TransformerConfig.mixing``):

* ``"two_stage"`` (the default, Crossformer-style, Zhang & Yan, ICLR 2023): per patch position, one pre-norm
  multi-head self-attention over that position's G group tokens (price attends to volume and volatility, and
  back), then a linear fusion of the G tokens into one *patch token*. The positional encoding is added to the
  patch tokens, and the temporal encoder (``num_layers`` pre-norm layers) attends over ``num_patches`` tokens.
* ``"joint"``: every group token of every patch in one sequence of ``G × num_patches`` tokens through the
  temporal encoder (price at patch i attends to volume at patch j in every layer).

Why the seed preset is two-stage with non-overlapping patches (stride 16): at 1024 bars, the joint model with
the PatchTST stride of 8 runs 3 × 127 = 381 tokens through 6 layers of d_model 256 — 4.6 GFLOP and, on 2
busy CPU cores, p99 around 100–175 ms for one window, far from the 20 ms target. Cost is linear in tokens (the
feed-forward and projections dominate at this length), so the two levers are the token count per layer:
two-stage attention divides it by G (381 → 127) and non-overlapping patches halve it again (127 → 64, the
PatchTST paper evaluates both strides: overlap buys little). Together: 64 tokens in the temporal encoder,
0.8 GFLOP, CPU-time p99 ≈ 18 ms per window (``smartmarket bench inference``, ``docs/models.md``).
What two-stage gives up: a cross-group interaction between *different* patch positions is no longer a single
attention hop — it goes through the fused patch token (the temporal layers then carry it across time), which is
how Crossformer's cross-dimension stage works too. The cross-group attention still sees the content of every
group at every patch.

Then a final LayerNorm, mean pooling over the encoder's tokens, and a linear head to class logits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from smartmarket.models.networks import InputNormaliser, check_input

Mixing = Literal["two_stage", "joint"]


@dataclass(frozen=True)
class TransformerConfig:
    context: int = 1024
    patch_len: int = 16
    stride: int = 16
    d_model: int = 256
    nhead: int = 8
    num_layers: int = 6
    dim_feedforward: int = 1024
    dropout: float = 0.1
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"
    revin: bool = True
    n_classes: int = 3
    mixing: Mixing = "two_stage"

    def __post_init__(self) -> None:
        if self.context < self.patch_len:
            raise ValueError("context must be at least one patch long")
        if self.stride < 1:
            raise ValueError("stride must be at least 1 bar")
        if self.d_model % self.nhead:
            raise ValueError("d_model must be divisible by nhead")
        if self.positional not in ("sinusoidal", "learned"):
            raise ValueError("positional must be 'sinusoidal' or 'learned'")
        if self.mixing not in ("two_stage", "joint"):
            raise ValueError("mixing must be 'two_stage' or 'joint'")

    @property
    def num_patches(self) -> int:
        return (self.context - self.patch_len) // self.stride + 1


TRANSFORMER_PRESETS: dict[str, TransformerConfig] = {
    "seed": TransformerConfig(),
    "small": TransformerConfig(context=256, stride=8, d_model=64, nhead=4, num_layers=2, dim_feedforward=128),
}


def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    """The fixed sine/cosine positional table of Vaswani et al. (2017), shape ``(length, dim)``."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class CrossGroupAttention(nn.Module):
    """Per patch position: pre-norm self-attention over the G group tokens, then a linear fusion into one token."""

    def __init__(self, d_model: int, nhead: int, n_groups: int, dropout: float) -> None:
        super().__init__()
        self.n_groups = n_groups
        self.norm = nn.LayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.fuse = nn.Linear(n_groups * d_model, d_model)

    def forward(self, group_tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, G, d)`` group tokens → ``(B, N, d)`` patch tokens."""
        b, n, g, d = group_tokens.shape
        x = group_tokens.reshape(b * n, g, d)
        h = self.norm(x)
        x = x + self.attention(h, h, h, need_weights=False)[0]
        return self.fuse(x.reshape(b, n, g * d))


class GroupPatchTransformer(nn.Module):
    """Patch tokens per feature group, mixed across groups then encoded over time; see the module docstring."""

    def __init__(self, config: TransformerConfig, n_features: int, groups: Mapping[str, Sequence[int]]) -> None:
        super().__init__()
        self.config = config
        self.n_features = n_features
        self.context = config.context
        self.group_names = tuple(g for g, idx in groups.items() if len(idx) > 0)
        if not self.group_names:
            raise ValueError("at least one feature group must have columns")
        covered = sorted(i for g in self.group_names for i in groups[g])
        if covered != list(range(n_features)):
            raise ValueError("feature groups must cover every column exactly once")
        self.group_columns = {g: tuple(int(i) for i in groups[g]) for g in self.group_names}
        for g in self.group_names:
            self.register_buffer(f"columns_{g}", torch.tensor(self.group_columns[g], dtype=torch.long))

        d = config.d_model
        self.normaliser = InputNormaliser(n_features, revin=config.revin)
        self.patch_embeddings = nn.ModuleDict(
            {g: nn.Linear(len(self.group_columns[g]) * config.patch_len, d) for g in self.group_names}
        )
        self.group_embedding = nn.Parameter(torch.randn(len(self.group_names), d) * 0.02)
        self.cross_group: CrossGroupAttention | None = None
        if config.mixing == "two_stage":
            self.cross_group = CrossGroupAttention(d, config.nhead, len(self.group_names), config.dropout)
        if config.positional == "learned":
            self.positional = nn.Parameter(torch.randn(config.num_patches, d) * 0.02)
        else:
            self.register_buffer("positional", sinusoidal_encoding(config.num_patches, d))
        self.token_dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=d,
            nhead=config.nhead,
            dim_feedforward=config.dim_feedforward,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=config.num_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False
        )
        self.head = nn.Linear(d, config.n_classes)

    @property
    def num_patches(self) -> int:
        return self.config.num_patches

    @property
    def group_tokens_per_sample(self) -> int:
        """Group tokens embedded per window (``num_patches × groups``)."""
        return self.num_patches * len(self.group_names)

    @property
    def tokens_per_sample(self) -> int:
        """Tokens the temporal encoder attends over per window."""
        return self.num_patches if self.cross_group is not None else self.group_tokens_per_sample

    def group_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Embedded group tokens ``(B, num_patches, groups, d_model)`` (group embedding added, no position)."""
        check_input(x, self.context, self.n_features, type(self).__name__)
        x = self.normaliser(x)
        cfg = self.config
        parts = []
        for i, g in enumerate(self.group_names):
            columns = getattr(self, f"columns_{g}")
            xg = x.index_select(2, columns)  # (B, L, Fg)
            patches = xg.unfold(1, cfg.patch_len, cfg.stride)  # (B, N, Fg, P)
            patches = patches.reshape(x.shape[0], cfg.num_patches, -1)
            parts.append(self.patch_embeddings[g](patches) + self.group_embedding[i])
        return torch.stack(parts, dim=2)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's input ``(B, tokens_per_sample, d_model)``, positions encoded."""
        grouped = self.group_tokens(x)
        if self.cross_group is not None:
            out = self.cross_group(grouped) + self.positional
        else:  # joint: group-major sequence, every group token at its patch's position
            out = (grouped + self.positional.unsqueeze(1)).transpose(1, 2).reshape(x.shape[0], -1, grouped.shape[-1])
        return self.token_dropout(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder(self.tokens(x))
        return self.head(encoded.mean(dim=1))


__all__ = [
    "TRANSFORMER_PRESETS",
    "CrossGroupAttention",
    "GroupPatchTransformer",
    "Mixing",
    "TransformerConfig",
    "sinusoidal_encoding",
]
