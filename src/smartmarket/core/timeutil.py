"""Parsing and formatting of user-facing times. Internally every time is UTC epoch milliseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from smartmarket.core.errors import ConfigError


def now_ms() -> int:
    """Wall-clock time in UTC epoch ms."""
    return time.time_ns() // 1_000_000


def parse_time(text: str | int | None) -> int | None:
    """Parse ``2024-01-01``, ``2024-01-01T12:00``, ISO-8601 with offset, or epoch ms digits, to UTC ms."""
    if text is None:
        return None
    if isinstance(text, int):
        return text
    s = text.strip()
    if not s:
        return None
    if s.lstrip("-").isdigit():
        return int(s)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"cannot read time {text!r}", hint="use ISO-8601 like 2024-01-01 or 2024-01-01T12:00Z, or epoch ms"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def format_ms(ts_ms: int, *, short: bool = False) -> str:
    """``2024-01-01T00:00:00Z`` style (UTC); ``short`` gives ``2024-01-01 00:00`` for tables."""
    fmt = "%Y-%m-%d %H:%M" if short else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime(fmt)


__all__ = ["format_ms", "now_ms", "parse_time"]
