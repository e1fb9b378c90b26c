"""Skill against the base rate: a model whose validation log-loss is not significantly better than always
predicting the training class frequencies (``metrics.class_frequencies``) has no skill, and every place that shows
it says so in one line.

"Significantly": the one-sided Diebold-Mariano p-value of the per-sample log-loss differences
(``metrics.skill_p_value``, Newey-West variance over the label horizon) is below ``SKILL_LEVEL`` (0.05). A model
a hair below the baseline on noise (e.g. 1.0937 vs 1.0941) has no skill. Models recorded before the p-value
was kept are judged by the losses alone.

``skill_of(metrics)`` reads a model's recorded metrics (``validation``, else ``test``, needs
``baseline_log_loss``: models trained before it was recorded give None: unknown); ``no_skill_line`` is the warning
every command prints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smartmarket.models.metrics import SKILL_LEVEL


@dataclass(frozen=True)
class Skill:
    """Log-loss of the model and of the base-rate baseline on the same samples (``sample``)."""

    log_loss: float
    baseline_log_loss: float
    sample: str
    p_value: float | None = None  # one-sided: the model's loss is below the baseline's (None: not recorded)

    @property
    def worse(self) -> bool:
        return self.log_loss > self.baseline_log_loss

    @property
    def no_skill(self) -> bool:
        return self.worse or (self.p_value is not None and self.p_value >= SKILL_LEVEL)

    def to_dict(self) -> dict[str, Any]:
        return {
            "no_skill": self.no_skill, "log_loss": self.log_loss, "baseline_log_loss": self.baseline_log_loss,
            "skill_p_value": self.p_value, "sample": self.sample,
        }  # fmt: skip


def skill_of(metrics: Mapping[str, Any]) -> Skill | None:
    """The skill recorded in a model's ``metrics`` (validation samples, else test), None when not measurable."""
    for sample in ("validation", "test"):
        part = metrics.get(sample) or {}
        loss, baseline = _number(part.get("log_loss")), _number(part.get("baseline_log_loss"))
        if loss is not None and baseline is not None:
            return Skill(loss, baseline, sample, _number(part.get("skill_p_value")))
    return None


def no_skill_line(name: str, skill: Skill | None) -> str | None:
    """One warning line when ``skill`` says no skill, else None."""
    if skill is None or not skill.no_skill:
        return None
    p = "" if skill.p_value is None else f", one-sided p = {skill.p_value:.2f}"
    verdict = "is worse than" if skill.worse else "is not significantly better than"
    return (
        f"warning: {name} has no skill: {skill.sample} log-loss {skill.log_loss:.3f} {verdict} the base-rate "
        f"baseline {skill.baseline_log_loss:.3f} (always predicting the training class frequencies{p})"
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


__all__ = ["Skill", "no_skill_line", "skill_of"]
