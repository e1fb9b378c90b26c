"""CNN-LSTM: 1-D convolution blocks over the window, an LSTM over the downsampled sequence, a linear head.

Each conv block is ``Conv1d (same padding) → GroupNorm(1) → GELU → MaxPool → Dropout``: the convolutions find
local shapes across all features, the pooling shortens the sequence (1024 bars → 128 steps with three blocks),
so the LSTM, which is sequential and slow on CPU, runs over far fewer steps. The last LSTM output (which has
seen the whole window, most recent bars last) feeds the head. Same inputs and outputs as the Transformer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from smartmarket.models.networks import InputNormaliser, check_input


@dataclass(frozen=True)
class CNNLSTMConfig:
    context: int = 1024
    channels: tuple[int, ...] = (64, 128, 128)
    kernel_size: int = 5
    pool: int = 2
    hidden_size: int = 128
    lstm_layers: int = 2
    dropout: float = 0.1
    revin: bool = True
    n_classes: int = 3

    def __post_init__(self) -> None:
        if self.kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd (same padding)")
        if self.context // self.pool ** len(self.channels) < 1:
            raise ValueError("context too short for this many pooling blocks")


CNN_LSTM_PRESETS: dict[str, CNNLSTMConfig] = {
    "seed": CNNLSTMConfig(),
    "small": CNNLSTMConfig(context=256, channels=(16, 32), hidden_size=32, lstm_layers=1),
}


class CNNLSTM(nn.Module):
    def __init__(self, config: CNNLSTMConfig, n_features: int) -> None:
        super().__init__()
        self.config = config
        self.n_features = n_features
        self.context = config.context
        self.normaliser = InputNormaliser(n_features, revin=config.revin)
        blocks: list[nn.Module] = []
        width = n_features
        for out in config.channels:
            blocks += [
                nn.Conv1d(width, out, config.kernel_size, padding=config.kernel_size // 2),
                nn.GroupNorm(1, out),
                nn.GELU(),
                nn.MaxPool1d(config.pool),
                nn.Dropout(config.dropout),
            ]
            width = out
        self.convolutions = nn.Sequential(*blocks)
        self.lstm = nn.LSTM(
            width,
            config.hidden_size,
            num_layers=config.lstm_layers,
            batch_first=True,
            dropout=config.dropout if config.lstm_layers > 1 else 0.0,
        )
        self.head = nn.Sequential(nn.LayerNorm(config.hidden_size), nn.Linear(config.hidden_size, config.n_classes))

    @property
    def sequence_length(self) -> int:
        """Steps the LSTM runs over after pooling."""
        length = self.context
        for _ in self.config.channels:
            length //= self.config.pool
        return length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.context, self.n_features, type(self).__name__)
        x = self.normaliser(x).transpose(1, 2)  # (B, F, L) for Conv1d
        x = self.convolutions(x).transpose(1, 2)  # (B, L', C)
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


__all__ = ["CNNLSTM", "CNN_LSTM_PRESETS", "CNNLSTMConfig"]
