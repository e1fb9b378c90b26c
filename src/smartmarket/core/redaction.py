"""The one redaction rule: secrets never reach output, logs, errors, reports or files.

A *secret* is the password in a URL's userinfo (``postgresql://user:secret@host``), a secret query parameter
(``?password=…``, ``sslpassword``, ``passfile``, ``token``, ``secret``, ``api_key``/``apikey``), and any
exchange/API key value registered with :func:`register_secret` (read from the environment at start-up).

* :func:`redact_url` cleans one URL and keeps everything else exactly (``duckdb:////abs`` keeps its slashes).
* :func:`redact_text` cleans free text: every URL inside it, every ``password=…`` pair (libpq conninfo
  style) and every registered secret value.
* :class:`RedactingFilter` applies :func:`redact_text` to log records; :func:`install_log_redaction` makes every
  record any logger creates (SmartMarket's, uvicorn's, a library's) pass through it, whatever the handler.

Every printer, logger and error goes through these (``SmartMarketError`` redacts its own message).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

SECRET_PARAMS = frozenset({"password", "passfile", "sslpassword", "token", "secret", "api_key", "apikey"})
MASK = "***"


def is_secret_param(name: str) -> bool:
    """Whether a query parameter holds a secret: one of :data:`SECRET_PARAMS`, or a name ending in one
    (``http_password``, ``http_token``, ``api_secret``…)."""
    key = name.lower()
    return key in SECRET_PARAMS or key.endswith(("password", "_secret", "_token", "_key", "apikey"))


# A URL with a scheme inside free text; stops at whitespace, quotes and closing brackets.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>)\]}]+")
# ``password=value`` pairs in free text (libpq conninfo, driver messages, ``API_SECRET=…``), outside any URL.
_PAIR_IN_TEXT = re.compile(
    r"(?i)\b([a-z0-9_]*(?:password|passfile|secret|token|api_?key))(\s*=\s*)('[^']*'|\"[^\"]*\"|[^\s&,;'\"]+)"
)
# Values registered as secrets (API keys, …): masked wherever they appear in text.
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every later :func:`redact_text` (ignored when empty or shorter than 4 characters)."""
    if value and len(value) >= 4:
        _registered.add(value)


def redact_url(url: str) -> str:
    """``url`` without credentials: the password in the authority and secret query parameters are removed.
    A URL holding neither is returned unchanged."""
    if "://" not in url and "@" in url:  # ``user:password@host/db`` without a scheme
        head, _, host = url.rpartition("@")
        return f"{head.split(':', 1)[0]}@{host}" if ":" in head else url
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable as a URL: fall back to the text rule for the authority
        return re.sub(r"(://[^:/@\s]*):[^@\s]*@", rf"\1:{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{host}" if user else host
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if not is_secret_param(k)]
    if netloc == parts.netloc and len(kept) == len(pairs):
        return url
    query = urlencode(kept) if len(kept) != len(pairs) else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The secret values ``url`` holds (its password, secret query parameters): to mask them in a driver's
    message that quotes them outside URL form."""
    try:
        parts = urlsplit(url)
        password = parts.password
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return []
    found = [password, unquote(password)] if password else []
    found += [v for k, v in pairs if is_secret_param(k) and v]
    return sorted(set(found), key=len, reverse=True)


def redact_text(text: str, also: Iterable[str] = ()) -> str:
    """``text`` with every URL in it redacted, every ``password=…`` pair and every registered secret value (and
    each value in ``also``) masked."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    if "=" in text:
        text = _PAIR_IN_TEXT.sub(
            lambda m: m.group(0) if m.group(3) == MASK else f"{m.group(1)}{m.group(2)}{MASK}", text
        )
    for secret in (*_registered, *also):
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Runs :func:`redact_text` over a record's message and its exception text (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def _redacted_args(args: Any) -> Any:
    if isinstance(args, tuple):
        return tuple(redact_text(a) if isinstance(a, str) else a for a in args)
    if isinstance(args, Mapping):
        return {k: redact_text(v) if isinstance(v, str) else v for k, v in args.items()}
    return args


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact ``record`` in place: its formatted message, then its traceback text (formatted once, cached in
    ``exc_text`` where every standard formatter reads it)."""
    if getattr(record, "_sm_redacted", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: leave it to the handler to report, as logging does
        return record
    if redact_text(message) != message:
        # Redact the arguments one by one, so formatters that read ``record.args`` themselves (uvicorn's access
        # log unpacks a 5-tuple) still find them; only a secret spread over the format string itself (rare)
        # collapses the record into its redacted text.
        record.args = _redacted_args(record.args)
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        message = record.getMessage()
        if redact_text(message) != message:
            record.msg, record.args = redact_text(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    record._sm_redacted = True
    return record


_installed = False


def install_log_redaction() -> None:
    """Redact every log record from now on, whichever logger creates it and whichever handler writes it
    (wraps the log record factory; calling it again does nothing)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        return redact_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed = True


__all__ = [
    "MASK",
    "SECRET_PARAMS",
    "RedactingFilter",
    "install_log_redaction",
    "is_secret_param",
    "redact_record",
    "redact_text",
    "redact_url",
    "register_secret",
    "url_secrets",
]
