"""One training loop for every network, and the classifier contract every model (network or baseline) meets.

The loop: AdamW; linear warm-up then cosine decay (or OneCycle, or constant) stepped per batch; gradient
clipping; optionally class-weighted cross-entropy (inverse class frequency of the training set); early stopping
on validation loss that restores a *true* copy of the best weights (every tensor cloned when it was the best,
so later updates cannot touch it); seeded and deterministic on CPU (global seeds, deterministic kernels, data
order from a seeded ``torch.Generator``); the device chosen by :mod:`smartmarket.models.device`; mixed precision
on CUDA only. Progress is reported through a callback per epoch (:func:`rich_progress` draws a bar).

The contract (:class:`Classifier`): ``context`` (window length it needs), ``fit(train, validation)`` on
:class:`~smartmarket.models.datasets.WindowDataset`, ``predict_proba(windows (N, context, F)) -> (N, n_classes)``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from rich.console import Console
from torch import nn

from smartmarket.models.datasets import WindowDataset, training_statistics
from smartmarket.models.device import amp_enabled, deterministic, select_device
from smartmarket.models.metrics import accuracy, balanced_accuracy


@runtime_checkable
class Classifier(Protocol):
    """What every model offers: a window length, ``fit`` and ``predict_proba``."""

    kind: str
    context: int
    n_classes: int

    def fit(self, train: WindowDataset, validation: WindowDataset | None = None) -> Classifier: ...

    def predict_proba(self, windows: np.ndarray) -> np.ndarray: ...

    def hyperparameters(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.01
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_fraction: float = 0.1
    grad_clip: float | None = 1.0
    class_weighted: bool = True
    patience: int = 5
    min_delta: float = 0.0
    steps_per_epoch: int | None = None  # cap batches per epoch (a fresh random subset each epoch); None = all
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # honoured on CUDA only
    eval_batch_size: int = 256

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    epochs: int
    train_loss: float
    validation_loss: float | None
    validation_accuracy: float | None
    validation_balanced_accuracy: float | None
    lr: float
    seconds: float
    is_best: bool


ProgressCallback = Callable[[EpochReport], None]


@dataclass
class FitResult:
    history: list[EpochReport] = field(default_factory=list)
    best_epoch: int | None = None
    best_validation_loss: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    stopped_early: bool = False


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A deep copy of the state dict: every tensor detached and cloned (on CPU), sharing no storage."""
    return {k: v.detach().to("cpu", copy=True).clone() for k, v in module.state_dict().items()}


def class_weights(counts: np.ndarray) -> torch.Tensor:
    """Inverse-frequency weights, mean 1 over the present classes; absent classes get 0."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def _scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=max(total_steps, 1), pct_start=max(config.warmup_fraction, 1e-3)
        )
    warmup = int(total_steps * config.warmup_fraction)

    def factor(step: int) -> float:
        if config.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.inference_mode()
def predict_logits(
    module: nn.Module, dataset: WindowDataset, device: torch.device, batch_size: int = 256
) -> torch.Tensor:
    module.eval()
    out = []
    for start in range(0, len(dataset), batch_size):
        positions = np.arange(start, min(start + batch_size, len(dataset)))
        with torch.autocast(device.type, enabled=amp_enabled(device)):
            out.append(module(dataset.batch(positions).to(device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def fit_network(
    module: nn.Module,
    train: WindowDataset,
    validation: WindowDataset | None,
    config: TrainConfig,
    progress: ProgressCallback | None = None,
) -> FitResult:
    """Train ``module`` in place; with a validation set, stop early and restore the best weights."""
    if len(train) == 0:
        raise ValueError("empty training set")
    device = select_device(config.device)
    use_amp = amp_enabled(device, config.amp)
    n_classes = int(getattr(module, "config").n_classes)  # noqa: B009 - every network carries its config
    with deterministic(config.seed):
        generator = torch.Generator().manual_seed(config.seed)
        module.to(device)
        weights = class_weights(train.class_counts(n_classes)) if config.class_weighted else None
        criterion = nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None else None)
        optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        batches = math.ceil(len(train) / config.batch_size)
        if config.steps_per_epoch is not None:
            batches = min(batches, config.steps_per_epoch)
        scheduler = _scheduler(optimizer, config, batches * config.epochs)
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        result = FitResult()
        bad_epochs = 0
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            module.train()
            order = torch.randperm(len(train), generator=generator).numpy()
            total, seen = 0.0, 0
            for b in range(batches):
                positions = order[b * config.batch_size : (b + 1) * config.batch_size]
                x = train.batch(positions).to(device)
                y = train.targets(positions).to(device)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, enabled=use_amp):
                    loss = criterion(module(x), y)
                scaler.scale(loss).backward()
                if config.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                total += float(loss.detach()) * len(positions)
                seen += len(positions)

            val_loss = val_acc = val_bacc = None
            is_best = False
            if validation is not None and len(validation) > 0:
                logits = predict_logits(module, validation, device, config.eval_batch_size)
                targets = validation.targets()
                val_loss = float(criterion(logits.to(device), targets.to(device)))
                proba = torch.softmax(logits, dim=1).numpy()
                val_acc = accuracy(targets.numpy(), proba)
                val_bacc = balanced_accuracy(targets.numpy(), proba)
                if result.best_validation_loss is None or val_loss < result.best_validation_loss - config.min_delta:
                    result.best_validation_loss, result.best_epoch = val_loss, epoch
                    result.best_state = snapshot(module)
                    is_best, bad_epochs = True, 0
                else:
                    bad_epochs += 1
            report = EpochReport(
                epoch=epoch,
                epochs=config.epochs,
                train_loss=total / max(seen, 1),
                validation_loss=val_loss,
                validation_accuracy=val_acc,
                validation_balanced_accuracy=val_bacc,
                lr=float(optimizer.param_groups[0]["lr"]),
                seconds=time.perf_counter() - started,
                is_best=is_best,
            )
            result.history.append(report)
            if progress is not None:
                progress(report)
            if result.best_state is not None and bad_epochs >= config.patience:
                result.stopped_early = True
                break
        if result.best_state is not None:
            module.load_state_dict(result.best_state)
        module.to("cpu").eval()
    return result


class NetworkClassifier:
    """A network behind the :class:`Classifier` contract: training-fitted scaler inside, the shared loop to fit."""

    def __init__(
        self,
        kind: str,
        module: nn.Module,
        train_config: TrainConfig | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.kind = kind
        self.module = module
        self.train_config = train_config or TrainConfig()
        self.progress = progress
        self.context = int(getattr(module, "context"))  # noqa: B009
        self.n_classes = int(getattr(module, "config").n_classes)  # noqa: B009
        self.fit_result: FitResult | None = None

    def fit(self, train: WindowDataset, validation: WindowDataset | None = None) -> NetworkClassifier:
        mean, std = training_statistics(train)
        normaliser = getattr(self.module, "normaliser")  # noqa: B009
        normaliser.set_statistics(mean, std)
        self.fit_result = fit_network(self.module, train, validation, self.train_config, self.progress)
        return self

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(windows, dtype=np.float32))
        self.module.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), self.train_config.eval_batch_size):
                logits = self.module(x[start : start + self.train_config.eval_batch_size])
                out.append(torch.softmax(logits.float(), dim=1))
        if not out:
            return np.zeros((0, self.n_classes))
        return torch.cat(out).numpy().astype(np.float64)

    def hyperparameters(self) -> dict[str, Any]:
        return {"network": asdict(getattr(self.module, "config")), "training": self.train_config.to_dict()}  # noqa: B009


@contextlib.contextmanager
def rich_progress(
    description: str = "training", *, transient: bool = False, console: Console | None = None
) -> Iterator[ProgressCallback]:
    """A rich progress bar over epochs showing train/validation loss and validation (balanced) accuracy."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        transient=transient,
        console=console,
    ) as bar:
        task = bar.add_task(description, total=None, status="")

        def update(report: EpochReport) -> None:
            status = f"loss {report.train_loss:.4f}"
            if report.validation_loss is not None:
                status += f" · val {report.validation_loss:.4f}"
                status += f" · acc {report.validation_accuracy:.3f} · bacc {report.validation_balanced_accuracy:.3f}"
                status += " ★" if report.is_best else ""
            bar.update(task, total=report.epochs, completed=report.epoch, status=status)

        yield update


__all__ = [
    "Classifier",
    "EpochReport",
    "FitResult",
    "NetworkClassifier",
    "ProgressCallback",
    "TrainConfig",
    "class_weights",
    "fit_network",
    "predict_logits",
    "rich_progress",
    "snapshot",
]
