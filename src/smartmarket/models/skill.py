"""Skill against the base rate: a model whose validation log-loss is worse than always predicting the training
class frequencies (``metrics.class_frequencies``) has no skill, and every place that shows it says so in one line.

``skill_of(metrics)`` reads a model's recorded metrics (``validation``, else ``test``, needs
``baseline_log_loss``: models trained before it was recorded give None: unknown); ``no_skill_line`` is the warning
every command prints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Skill:
    """Log-loss of the model and of the base-rate baseline on the same samples (``sample``)."""

    log_loss: float
    baseline_log_loss: float
    sample: str

    @property
    def no_skill(self) -> bool:
        return self.log_loss > self.baseline_log_loss

    def to_dict(self) -> dict[str, Any]:
        return {
            "no_skill": self.no_skill, "log_loss": self.log_loss, "baseline_log_loss": self.baseline_log_loss,
            "sample": self.sample,
        }  # fmt: skip


def skill_of(metrics: Mapping[str, Any]) -> Skill | None:
    """The skill recorded in a model's ``metrics`` (validation samples, else test), None when not measurable."""
    for sample in ("validation", "test"):
        part = metrics.get(sample) or {}
        loss, baseline = _number(part.get("log_loss")), _number(part.get("baseline_log_loss"))
        if loss is not None and baseline is not None:
            return Skill(loss, baseline, sample)
    return None


def no_skill_line(name: str, skill: Skill | None) -> str | None:
    """One warning line when ``skill`` says no skill, else None."""
    if skill is None or not skill.no_skill:
        return None
    return (
        f"warning: {name} has no skill: {skill.sample} log-loss {skill.log_loss:.3f} is worse than the base-rate "
        f"baseline {skill.baseline_log_loss:.3f} (always predicting the training class frequencies)"
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


__all__ = ["Skill", "no_skill_line", "skill_of"]
