"""``open_bus(url)``: the bus adapter a URL names.

- ``memory://`` (the default): the in-process bus;
- ``redis://host:port/db``, ``rediss://…``, ``unix:///path/redis.sock``: Redis Streams.

Two query parameters are the bus's own and work with every scheme: ``namespace`` (key prefix, default ``sm``)
and ``max_backlog`` (backpressure bound, an integer or ``none``), e.g. ``redis://127.0.0.1:6379/0?namespace=paper``.
Keyword arguments override them and pass adapter options (see ``RedisStreamsBus``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from smartmarket.bus.base import Bus
from smartmarket.core.errors import ConfigError

DEFAULT_BUS_URL = "memory://"
_OWN_PARAMS = ("namespace", "max_backlog")


def _split_own_params(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without the bus's own query parameters, and those parameters."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own: dict[str, Any] = {}
    for key, value in query:
        if key == "namespace":
            own["namespace"] = value
        elif key == "max_backlog":
            try:
                own["max_backlog"] = None if value.lower() in ("", "none") else int(value)
            except ValueError:
                raise ConfigError(f"max_backlog must be an integer or 'none', got {value!r}", where=url) from None
    rest = urlencode([(k, v) for k, v in query if k not in _OWN_PARAMS])
    return urlunsplit(parts._replace(query=rest)), own


def open_bus(url: str | None = None, **options: Any) -> Bus:
    """Open the bus at ``url`` (``memory://`` when omitted)."""
    url = url or DEFAULT_BUS_URL
    scheme = urlsplit(url).scheme.lower()
    clean_url, own = _split_own_params(url)
    kwargs = {**own, **options}
    if scheme == "memory":
        from smartmarket.bus.inprocess import InProcessBus

        return InProcessBus(**kwargs)
    if scheme in ("redis", "rediss", "unix"):
        from smartmarket.bus.redis_streams import RedisStreamsBus

        return RedisStreamsBus(clean_url, **kwargs)
    raise ConfigError(f"unknown bus URL scheme {scheme!r}", where=url, hint="use memory:// or redis://host:port/db")


__all__ = ["DEFAULT_BUS_URL", "open_bus"]
