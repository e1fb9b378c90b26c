"""The one redaction rule: secrets never reach output, logs, errors, reports or files.

A *secret* is the password in a URL's userinfo (``postgresql://user:secret@host``), a secret query parameter
(``?password=…``, ``sslpassword``, ``passfile``, ``token``, ``secret``, ``api_key``/``apikey``), and any
exchange/API key value registered with :func:`register_secret` (read from the environment at start-up).

* :func:`redact_url` cleans one URL and keeps everything else exactly (``duckdb:////abs`` keeps its slashes).
* :func:`redact_text` cleans free text: every URL inside it and every registered secret value.

Every printer, logger and error goes through these (``SmartMarketError`` redacts its own message).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_PARAMS = frozenset({"password", "passfile", "sslpassword", "token", "secret", "api_key", "apikey"})
MASK = "***"

# A URL with a scheme inside free text; stops at whitespace, quotes and closing brackets.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>)\]}]+")
# Values registered as secrets (API keys, …): masked wherever they appear in text.
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every later :func:`redact_text` (ignored when empty or shorter than 4 characters)."""
    if value and len(value) >= 4:
        _registered.add(value)


def redact_url(url: str) -> str:
    """``url`` without credentials: the password in the authority and secret query parameters are removed.
    A URL holding neither is returned unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable as a URL: fall back to the text rule for the authority
        return re.sub(r"(://[^:/@\s]*):[^@\s]*@", rf"\1:{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k.lower() not in SECRET_PARAMS]
    if netloc == parts.netloc and len(kept) == len(pairs):
        return url
    query = urlencode(kept) if len(kept) != len(pairs) else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted and every registered secret value masked."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    for secret in _registered:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


__all__ = ["MASK", "SECRET_PARAMS", "redact_text", "redact_url", "register_secret"]
