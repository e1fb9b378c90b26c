"""One exceptions module for the whole package.

Every error carries a *what*, optionally a *where* and a *hint* (what to do), so the CLI can print one
clear line. ``RetryableError`` marks failures worth retrying (a server briefly away); everything else is
``FatalError``.
"""

from __future__ import annotations

from smartmarket.core.redaction import redact_text


class SmartMarketError(Exception):
    """Base class: ``what`` went wrong, ``where`` (file, URL, series) and a ``hint`` for the user."""

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None) -> None:
        # One redaction rule: no password or key in a URL survives into any error text.
        self.what = redact_text(what)
        self.where = redact_text(where) if where is not None else None
        self.hint = redact_text(hint) if hint is not None else None
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = [self.what]
        if self.where:
            parts.append(f"at {self.where}")
        line = " ".join(parts)
        if self.hint:
            line += f" — {self.hint}"
        return line


class FatalError(SmartMarketError):
    """Retrying will not help: bad input, bad configuration, a bug."""


class RetryableError(SmartMarketError):
    """A transient failure (network, a server restarting): the same call may succeed later."""


class ConfigError(FatalError):
    """Settings or a URL that cannot be used."""


class DataFormatError(FatalError):
    """An input file whose format cannot be read or recognised."""


class ValidationError(FatalError):
    """Data that breaks a rule (raised only where rows cannot be quarantined instead)."""


class StoreError(FatalError):
    """A store operation failed for a reason retrying will not fix."""


class StoreUnavailableError(RetryableError):
    """The store server could not be reached."""


class NotFoundError(FatalError):
    """The requested series, model or record does not exist."""


class PipelineError(FatalError):
    """The live pipeline cannot go on: a stage, the recorder or the source died, or a run did not record
    every event its stages must produce."""


__all__ = [
    "ConfigError",
    "DataFormatError",
    "FatalError",
    "NotFoundError",
    "PipelineError",
    "RetryableError",
    "SmartMarketError",
    "StoreError",
    "StoreUnavailableError",
    "ValidationError",
]
