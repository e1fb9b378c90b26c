"""Device selection, seeding and determinism for every network.

CUDA when present (mixed precision is allowed only there), else Apple MPS, else CPU. On CPU the training loop is
deterministic: same seed → same weights, bit for bit.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


def select_device(preference: str = "auto") -> torch.device:
    """``"auto"`` → CUDA, else MPS, else CPU; or an explicit ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``."""
    if preference != "auto":
        device = torch.device(preference)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("CUDA was requested but is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def amp_enabled(device: torch.device, requested: bool = True) -> bool:
    """Mixed precision only on CUDA: on CPU it is slower and changes results."""
    return requested and device.type == "cuda"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed everything and ask torch for deterministic kernels for the duration; restore the setting after."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_cudnn = torch.backends.cudnn.benchmark
    seed_everything(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)
        torch.backends.cudnn.benchmark = previous_cudnn


__all__ = ["amp_enabled", "deterministic", "seed_everything", "select_device"]
