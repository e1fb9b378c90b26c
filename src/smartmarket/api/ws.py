"""Live updates: ``/ws/{symbol}`` streams a symbol's closed candles and signals to the dashboard.

Two sources feed the ``LiveHub``:

- anything in the process calls ``hub.publish(message)`` (thread-safe; the pipeline when it runs in the
  server, tests);
- when the app has a bus, a ``BusFeed`` reads the symbol's ``candles`` and ``signals`` streams through the
  consumer group ``dashboard`` (started when the first client of a symbol connects, acknowledged at once) and
  publishes what it reads into the hub. Entries older than the feed itself are acknowledged and skipped, so a
  new dashboard does not replay history (the REST endpoints serve history).

Messages sent to the client are JSON: ``{"type": "hello", ...}`` once, then ``{"type": "SignalGenerated",
"data": {...}}`` (the ``/api/signals`` item shape) or ``{"type": "CandleClosed", "data": {ts, open, ...}}``.
When ``SMARTMARKET_API_READ_KEY`` is set, the client authenticates with the ``X-API-Key`` header or, from a
browser, with a first message ``{"key": "..."}`` (keys never travel in the URL, which servers log).

Clients are untrusted. The only frame a client may send is a text frame ``{"key": "<string>"}`` of at most
``SecurityConfig.ws_max_message_bytes``; once authenticated, repeating it is harmless. Anything else closes
the connection with a close code, and the server writes one line for it, without traceback or key:

- ``1003`` a binary frame; ``1009`` a frame over the size limit; ``1008`` a frame that is not JSON or not
  ``{"key": "<string>"}``, an invalid symbol or timeframe, or no key within ``ws_auth_timeout_s`` seconds;
- ``4401`` the key is missing or not accepted.

A client leaving before it authenticated gets one INFO line. All these lines share one budget
(:class:`WsRefusalLog`: ``burst`` lines per ``window_s``); past it they are counted, and the next line logged
says how many were held back, so a flood of bad clients cannot flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from smartmarket.api.schemas import json_safe
from smartmarket.api.security import SecurityConfig, presented_key
from smartmarket.core.errors import SmartMarketError
from smartmarket.core.events import CandleClosed, Message, SignalGenerated, from_msgpack
from smartmarket.core.redaction import redact_text
from smartmarket.core.timeutil import now_ms
from smartmarket.core.types import Timeframe, normalize_symbol

log = logging.getLogger(__name__)

QUEUE_SIZE = 256  # per client; the oldest update is dropped when a slow client falls this far behind
FEED_GROUP = "dashboard"
FEED_TOPICS = ("candles", "signals")  # smartmarket.bus.topics.CANDLES / SIGNALS


def signal_payload(message: SignalGenerated, seq: int | None = None) -> dict[str, Any]:
    """A signal as the API shows it (``/api/signals`` items and WebSocket updates)."""
    return json_safe(
        {
            "seq": seq,
            "event_id": message.event_id,
            "ts": message.ts,
            "ts_event": message.ts_event,
            "symbol": message.symbol,
            "timeframe": message.timeframe.value,
            "direction": message.direction,
            "confidence": message.confidence,
            "strength": message.strength,
            "regime": message.regime,
            "reason": message.reason,
            "member_probabilities": message.member_probabilities,
            "member_weights": message.member_weights,
            "correlation_id": message.correlation_id,
        }
    )


def live_payload(message: Message) -> dict[str, Any]:
    """The WebSocket frame of one message."""
    if isinstance(message, SignalGenerated):
        data = signal_payload(message)
    elif isinstance(message, CandleClosed):
        data = json_safe({
            "ts": message.ts, "open": message.open, "high": message.high, "low": message.low,
            "close": message.close, "volume": message.volume, "symbol": message.symbol,
            "timeframe": message.timeframe.value,
        })  # fmt: skip
    else:
        data = json_safe(message.to_dict())
    return {"type": message.type_name, "data": data}


@dataclass(eq=False)
class LiveClient:
    """One connected WebSocket: its filter and its queue (lives on the server's event loop)."""

    symbol: str
    timeframe: Timeframe | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: int = 0

    def wants(self, message: Message) -> bool:
        timeframe = getattr(message, "timeframe", None)
        return self.timeframe is None or timeframe is None or timeframe == self.timeframe

    def offer(self, payload: dict[str, Any]) -> None:
        """Queue ``payload`` from any thread."""
        with contextlib.suppress(RuntimeError):  # the loop closed: the client is gone
            self.loop.call_soon_threadsafe(self._put, payload)

    def _put(self, payload: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(payload)


class LiveHub:
    """Fan-out of live messages to the WebSocket clients of their symbol. ``publish`` works from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, set[LiveClient]] = {}
        self.published = 0

    def subscribe(self, symbol: str, timeframe: Timeframe | None) -> LiveClient:
        """A new client of ``symbol`` (call from the event loop that serves it)."""
        client = LiveClient(symbol, timeframe, asyncio.get_running_loop())
        with self._lock:
            self._clients.setdefault(symbol, set()).add(client)
        return client

    def unsubscribe(self, client: LiveClient) -> None:
        with self._lock:
            clients = self._clients.get(client.symbol)
            if clients is not None:
                clients.discard(client)
                if not clients:
                    del self._clients[client.symbol]

    def client_count(self) -> int:
        with self._lock:
            return sum(len(c) for c in self._clients.values())

    def publish(self, message: Message) -> int:
        """Send ``message`` to every client of its symbol (and timeframe); returns how many."""
        symbol = getattr(message, "symbol", None)
        if not isinstance(symbol, str):
            return 0
        with self._lock:
            targets = [c for c in self._clients.get(symbol, ()) if c.wants(message)]
            self.published += 1
        if targets:
            payload = live_payload(message)
            for client in targets:
                client.offer(payload)
        return len(targets)


class BusFeed:
    """Reads the bus's candle and signal streams of the symbols clients watch, into the hub."""

    def __init__(self, bus: Any, hub: LiveHub, *, consumer: str = "api") -> None:
        self.bus = bus
        self.hub = hub
        self.consumer = consumer
        self.errors = 0
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    def watch(self, symbol: str) -> None:
        """Start reading ``symbol``'s streams (once; call from the event loop)."""
        started = now_ms()  # messages made before the first client asked are history, not live
        for topic in FEED_TOPICS:
            key = (topic, symbol)
            if key not in self._tasks or self._tasks[key].done():
                self._tasks[key] = asyncio.get_running_loop().create_task(self._read(topic, symbol, started))

    async def _read(self, topic: str, symbol: str, started: int) -> None:
        sub = self.bus.subscription(topic, symbol, FEED_GROUP, self.consumer)
        try:
            await sub.ensure_group()
            while True:
                try:
                    deliveries = await sub.read_new(100, 1000)
                except SmartMarketError as exc:  # bus away: say so once per failure, retry
                    self.errors += 1
                    log.warning("bus feed %s/%s: %s", topic, symbol, exc.one_line())
                    await asyncio.sleep(1.0)
                    continue
                for delivery in deliveries:
                    self._forward(delivery.payload, started)
                if deliveries:
                    await sub.commit([], ack_only=deliveries)
        finally:
            with contextlib.suppress(Exception):
                await sub.close()

    def _forward(self, payload: bytes | None, started: int) -> None:
        if payload is None:
            return
        try:
            message = from_msgpack(payload)
        except SmartMarketError:
            self.errors += 1
            return
        if message.ts_init >= started:
            self.hub.publish(message)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()


router = APIRouter()


# Close codes (RFC 6455 section 7.4.1; 4401 is ours, the WebSocket twin of HTTP 401).
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_UNAUTHORIZED = 4401
_REASON_BYTES = 120  # a close frame's reason holds at most 123 bytes of UTF-8


class WsRefused(Exception):
    """A client broke the WebSocket's rules: close with ``code``; ``reason`` is our own text, sent and logged."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class WsClientGone(Exception):
    """The client disconnected."""


class WsRefusalLog:
    """The log lines about bad WebSocket clients: one per connection, ``burst`` per ``window_s`` at most.

    Lines past the budget are counted instead; the first line of a later window says how many were held back.
    Thread-safe; ``refused`` counts every refusal, ``suppressed`` every line not written.
    """

    def __init__(self, burst: int = 20, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.window_s = window_s
        self.refused = 0
        self.suppressed = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start: float | None = None
        self._in_window = 0
        self._held_back = 0

    def warn(self, peer: str, path: str, what: str) -> None:
        """One WARNING line: ``peer``'s connection to ``path`` was refused because ``what``."""
        with self._lock:
            self.refused += 1
        self._write(logging.WARNING, peer, path, what)

    def info(self, peer: str, path: str, what: str) -> None:
        self._write(logging.INFO, peer, path, what)

    def _write(self, level: int, peer: str, path: str, what: str) -> None:
        with self._lock:
            now = self._clock()
            held, since = 0, 0.0
            if self._window_start is None or now - self._window_start >= self.window_s:
                held, since = self._held_back, (now - self._window_start if self._window_start is not None else 0.0)
                self._window_start, self._in_window, self._held_back = now, 0, 0
            if self._in_window >= self.burst:
                self._held_back += 1
                self.suppressed += 1
                return
            self._in_window += 1
        more = f" ({held} more not logged in the last {since:.0f} s)" if held else ""
        log.log(level, "websocket %s %s: %s%s", _printable(peer), _printable(path), _printable(what, 200), more)


def _printable(text: str, limit: int = 80) -> str:
    """``text`` fit for one log line: secrets masked, control characters escaped, at most ``limit`` characters."""
    text = redact_text(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _close_reason(text: str) -> str:
    """``text`` cut to fit a close frame (whole UTF-8 characters, secrets masked)."""
    return redact_text(text).encode("utf-8")[:_REASON_BYTES].decode("utf-8", "ignore")


def _peer(websocket: WebSocket) -> str:
    client = websocket.client
    return f"{client.host}:{client.port}" if client is not None else "unknown"


async def _next_key(websocket: WebSocket, max_bytes: int) -> str:
    """The key in the client's next frame, which must be a text frame ``{"key": "<string>"}``."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WsClientGone
    text = message.get("text")
    if text is None:
        if len(message.get("bytes") or b"") > max_bytes:
            raise WsRefused(CLOSE_TOO_BIG, f"frame larger than {max_bytes} bytes")
        raise WsRefused(CLOSE_UNSUPPORTED, "binary frames are not accepted")
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise WsRefused(CLOSE_TOO_BIG, f"frame larger than {max_bytes} bytes")
    try:
        sent = json.loads(text)
    except (ValueError, RecursionError):
        raise WsRefused(CLOSE_POLICY, "frame is not JSON") from None
    if not (isinstance(sent, dict) and sent.keys() == {"key"} and isinstance(sent["key"], str)):
        raise WsRefused(CLOSE_POLICY, 'expected {"key": "<string>"}')
    key: str = sent["key"]
    return key


async def _authenticate(websocket: WebSocket, security: SecurityConfig) -> None:
    """Return when reads are open or the client presented an accepted key (header, else its first frame)."""
    if security.read_key is None:
        return
    key = presented_key(websocket.headers)
    if key is None:
        try:
            async with asyncio.timeout(security.ws_auth_timeout_s):
                key = await _next_key(websocket, security.ws_max_message_bytes)
        except TimeoutError:
            raise WsRefused(CLOSE_POLICY, f"no API key within {security.ws_auth_timeout_s:g} s") from None
    if not security.can_read(key):
        raise WsRefused(CLOSE_UNAUTHORIZED, "API key not accepted")


async def _refuse(websocket: WebSocket, refusals: WsRefusalLog, refused: WsRefused) -> None:
    """Log ``refused`` (one line) and close the connection with its code."""
    refusals.warn(_peer(websocket), websocket.url.path, f"closed {refused.code}: {refused.reason}")
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the client may be gone already
        await websocket.close(code=refused.code, reason=_close_reason(refused.reason))


def _refusals(websocket: WebSocket) -> WsRefusalLog:
    refusals = getattr(websocket.app.state, "ws_refusals", None)
    if not isinstance(refusals, WsRefusalLog):  # an app built without create_app
        refusals = websocket.app.state.ws_refusals = WsRefusalLog()
    return refusals


@router.websocket("/ws/{symbol}")
async def live_updates(websocket: WebSocket, symbol: str, timeframe: str | None = None) -> None:
    """Live candles and signals of ``symbol`` (optionally only ``?timeframe=1h``)."""
    state = websocket.app.state
    refusals = _refusals(websocket)
    await websocket.accept()
    try:
        sym = normalize_symbol(symbol)
        tf = Timeframe.parse(timeframe) if timeframe else None
    except SmartMarketError as exc:
        await _refuse(websocket, refusals, WsRefused(CLOSE_POLICY, exc.what))
        return
    try:
        await _authenticate(websocket, state.security)
    except WsRefused as refused:
        await _refuse(websocket, refusals, refused)
        return
    except (WsClientGone, WebSocketDisconnect):
        refusals.info(_peer(websocket), websocket.url.path, "closed before authenticating")
        return
    hub: LiveHub = state.hub
    client = hub.subscribe(sym, tf)
    feed: BusFeed | None = state.bus_feed
    if feed is not None:
        feed.watch(sym)
    receiver = asyncio.ensure_future(_listen(websocket, state.security.ws_max_message_bytes))
    try:
        await websocket.send_json({"type": "hello", "symbol": sym, "timeframe": tf.value if tf else None})
        while True:
            getter = asyncio.ensure_future(client.queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                getter.cancel()
                broken = receiver.result()
                if broken is not None:
                    await _refuse(websocket, refusals, broken)
                break
            await websocket.send_json(getter.result())
    except (WebSocketDisconnect, RuntimeError, OSError):  # the client went away mid-send
        pass
    finally:
        receiver.cancel()
        hub.unsubscribe(client)


async def _listen(websocket: WebSocket, max_bytes: int) -> WsRefused | None:
    """Read the client's frames until it disconnects (None) or breaks the rules (the refusal).

    A repeated ``{"key": ...}`` is ignored (the dashboard sends its key even when reads are open)."""
    while True:
        try:
            await _next_key(websocket, max_bytes)
        except WsRefused as refused:
            return refused
        except (WsClientGone, WebSocketDisconnect, RuntimeError):
            return None


__all__ = [
    "CLOSE_POLICY",
    "CLOSE_TOO_BIG",
    "CLOSE_UNAUTHORIZED",
    "CLOSE_UNSUPPORTED",
    "FEED_GROUP",
    "BusFeed",
    "LiveClient",
    "LiveHub",
    "WsRefusalLog",
    "live_payload",
    "router",
    "signal_payload",
]
