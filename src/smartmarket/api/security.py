"""API security: keys, CORS origins and the request body limit.

- ``SMARTMARKET_API_KEY``: required (header ``X-API-Key`` or ``Authorization: Bearer …``) for anything that
  starts work or changes state. Without it such requests are refused: writes are off until a key is set.
- ``SMARTMARKET_API_READ_KEY`` (optional): when set, reads need it too (the write key is accepted as well).
- ``SMARTMARKET_API_CORS``: comma-separated origins allowed by CORS (default: none, same origin only).
- ``SMARTMARKET_API_MAX_BODY``: largest request body in bytes (default 64 KiB); larger ones get 413.
- ``SMARTMARKET_API_WS_AUTH_TIMEOUT``: seconds a WebSocket client has to send its key (default 5).
- ``SMARTMARKET_API_WS_MAX_MESSAGE``: largest frame a WebSocket client may send, in bytes (default 4 KiB).

Keys are compared with ``hmac.compare_digest`` and never logged or echoed: both are registered with
:func:`smartmarket.core.redaction.register_secret`, so any text that goes through the redaction rule masks them.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import HTTPException, Request, WebSocket
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smartmarket.core.errors import ConfigError
from smartmarket.core.redaction import register_secret

API_KEY_HEADER = "X-API-Key"
DEFAULT_MAX_BODY = 64 * 1024
DEFAULT_WS_AUTH_TIMEOUT_S = 5.0
DEFAULT_WS_MAX_MESSAGE = 4 * 1024


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """What the API asks of its callers. ``api_key`` guards writes, ``read_key`` (optional) guards reads."""

    api_key: str | None = None
    read_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY
    ws_auth_timeout_s: float = DEFAULT_WS_AUTH_TIMEOUT_S
    ws_max_message_bytes: int = DEFAULT_WS_MAX_MESSAGE

    def __post_init__(self) -> None:
        register_secret(self.api_key)  # masked by redact_text wherever they might turn up
        register_secret(self.read_key)

    def __repr__(self) -> str:  # never print the keys
        return (
            f"SecurityConfig(api_key={'set' if self.api_key else 'unset'}, "
            f"read_key={'set' if self.read_key else 'unset'}, cors_origins={self.cors_origins!r}, "
            f"max_body_bytes={self.max_body_bytes}, ws_auth_timeout_s={self.ws_auth_timeout_s:g}, "
            f"ws_max_message_bytes={self.ws_max_message_bytes})"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SecurityConfig:
        env = os.environ if environ is None else environ
        origins = tuple(o.strip() for o in env.get("SMARTMARKET_API_CORS", "").split(",") if o.strip())
        max_body = env.get("SMARTMARKET_API_MAX_BODY", "").strip()
        return cls(
            api_key=env.get("SMARTMARKET_API_KEY") or None,
            read_key=env.get("SMARTMARKET_API_READ_KEY") or None,
            cors_origins=origins,
            max_body_bytes=int(max_body) if max_body.isdigit() else DEFAULT_MAX_BODY,
            ws_auth_timeout_s=_positive(env, "SMARTMARKET_API_WS_AUTH_TIMEOUT", DEFAULT_WS_AUTH_TIMEOUT_S),
            ws_max_message_bytes=int(_positive(env, "SMARTMARKET_API_WS_MAX_MESSAGE", DEFAULT_WS_MAX_MESSAGE)),
        )

    def can_write(self, presented: str | None) -> bool:
        return _matches(presented, self.api_key)

    def can_read(self, presented: str | None) -> bool:
        if self.read_key is None:
            return True
        return _matches(presented, self.read_key) or _matches(presented, self.api_key)


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive number from the environment (an integer when ``default`` is one); ``default`` when unset."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text) if isinstance(default, int) else float(text)
    except ValueError:
        value = 0
    if not value > 0 or value == float("inf"):
        raise ConfigError(
            f"{name}={text[:40]!r} is not a positive {'whole ' if isinstance(default, int) else ''}number",
            where="environment",
            hint=f"unset it for the default ({default:g}) or give e.g. {name}={default:g}",
        )
    return value


def _matches(presented: str | None, expected: str | None) -> bool:
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a caller sent: ``X-API-Key``, else an ``Authorization: Bearer`` token."""
    key = headers.get(API_KEY_HEADER.lower()) or headers.get(API_KEY_HEADER)
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _config(request: Request | WebSocket) -> SecurityConfig:
    config: SecurityConfig = request.app.state.security
    return config


def require_read(request: Request) -> None:
    """FastAPI dependency: reads need the read key when one is configured."""
    config = _config(request)
    if config.read_key is None:
        return
    key = presented_key(request.headers)
    if key is None:
        raise HTTPException(401, "API key required: send it in the X-API-Key header")
    if not config.can_read(key):
        raise HTTPException(403, "API key not accepted")


def require_write(request: Request) -> None:
    """FastAPI dependency: state-changing requests need ``SMARTMARKET_API_KEY``."""
    config = _config(request)
    if config.api_key is None:
        raise HTTPException(403, "writes are disabled on this server: start it with SMARTMARKET_API_KEY set")
    key = presented_key(request.headers)
    if key is None:
        raise HTTPException(401, "API key required: send it in the X-API-Key header")
    if not config.can_write(key):
        raise HTTPException(403, "API key not accepted")


class BodySizeLimit:
    """ASGI middleware answering 413 when a request body exceeds ``max_bytes`` (declared or streamed).

    A streamed body that grows too large gets the 413 at once; the application then sees a client disconnect,
    and whatever it tries to send afterwards is dropped.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._reject(send)
            return
        received = 0
        started = False
        rejected = False

        async def counting_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not started:
                    rejected = True
                    await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body larger than {self.max_bytes} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


__all__ = [
    "API_KEY_HEADER",
    "DEFAULT_MAX_BODY",
    "DEFAULT_WS_AUTH_TIMEOUT_S",
    "DEFAULT_WS_MAX_MESSAGE",
    "BodySizeLimit",
    "SecurityConfig",
    "presented_key",
    "require_read",
    "require_write",
]
