"""Retention policy: what to keep of the event log and of the dead letters (``RetentionPolicy``, ``parse_age``)."""

from __future__ import annotations

from dataclasses import dataclass

from smartmarket.core.errors import ValidationError
from smartmarket.core.types import DAY_MS, HOUR_MS, MINUTE_MS

_AGE_UNITS = {"m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}


def parse_age(text: str) -> int:
    """``90d`` / ``12h`` / ``30m`` / ``2w`` → milliseconds (a positive whole number of the unit)."""
    value = text.strip().lower()
    unit = _AGE_UNITS.get(value[-1:]) if value else None
    number = value[:-1]
    if unit is None or not number.isdigit() or int(number) <= 0:
        raise ValidationError(f"invalid age {text!r}", hint="write a positive number and a unit: 90d, 12h, 30m, 2w")
    return int(number) * unit


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """What to keep. ``None`` means "no limit of this kind"; a policy without event limits trims no event.

    - ``keep_age_ms``: keep events whose ``ts_event`` is newer than ``now - keep_age_ms``;
    - ``keep_last``: keep the newest N events;
    - ``dead_letter_age_ms``: archive and delete dead letters older than this.
    """

    keep_age_ms: int | None = None
    keep_last: int | None = None
    dead_letter_age_ms: int | None = None

    def __post_init__(self) -> None:
        for name, value, low in (
            ("keep_age_ms", self.keep_age_ms, 1),
            ("keep_last", self.keep_last, 1),
            ("dead_letter_age_ms", self.dead_letter_age_ms, 1),
        ):
            if value is not None and value < low:
                raise ValidationError(f"retention {name} must be at least {low}, got {value}")

    @classmethod
    def from_ages(
        cls, keep: str | None = None, *, keep_last: int | None = None, dead_letters: str | None = None
    ) -> RetentionPolicy:
        """``RetentionPolicy.from_ages("90d", keep_last=1_000_000, dead_letters="30d")``."""
        return cls(
            keep_age_ms=parse_age(keep) if keep is not None else None,
            keep_last=keep_last,
            dead_letter_age_ms=parse_age(dead_letters) if dead_letters is not None else None,
        )

    @property
    def trims_events(self) -> bool:
        return self.keep_age_ms is not None or self.keep_last is not None


__all__ = ["RetentionPolicy", "parse_age"]
