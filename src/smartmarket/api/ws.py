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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from smartmarket.api.schemas import json_safe
from smartmarket.api.security import SecurityConfig, presented_key
from smartmarket.core.errors import SmartMarketError
from smartmarket.core.events import CandleClosed, Message, SignalGenerated, from_msgpack
from smartmarket.core.timeutil import now_ms
from smartmarket.core.types import Timeframe, normalize_symbol

log = logging.getLogger(__name__)

QUEUE_SIZE = 256  # per client; the oldest update is dropped when a slow client falls this far behind
AUTH_TIMEOUT_S = 5.0
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


async def _authenticate(websocket: WebSocket, security: SecurityConfig) -> bool:
    """True when reads are open, or the client sent an accepted key (header or first message)."""
    if security.read_key is None:
        return True
    key = presented_key(websocket.headers)
    if key is None:
        try:
            first = await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT_S)
            sent = json.loads(first)
            key = sent.get("key") if isinstance(sent, dict) else None
        except (TimeoutError, ValueError):
            key = None
    return isinstance(key, str) and security.can_read(key)


@router.websocket("/ws/{symbol}")
async def live_updates(websocket: WebSocket, symbol: str, timeframe: str | None = None) -> None:
    """Live candles and signals of ``symbol`` (optionally only ``?timeframe=1h``)."""
    state = websocket.app.state
    await websocket.accept()
    try:
        sym = normalize_symbol(symbol)
        tf = Timeframe.parse(timeframe) if timeframe else None
    except SmartMarketError as exc:
        await websocket.close(code=1008, reason=exc.what[:120])
        return
    if not await _authenticate(websocket, state.security):
        await websocket.close(code=4401, reason="API key required or not accepted")
        return
    hub: LiveHub = state.hub
    client = hub.subscribe(sym, tf)
    feed: BusFeed | None = state.bus_feed
    if feed is not None:
        feed.watch(sym)
    receiver = asyncio.ensure_future(_drain(websocket))
    try:
        await websocket.send_json({"type": "hello", "symbol": sym, "timeframe": tf.value if tf else None})
        while True:
            getter = asyncio.ensure_future(client.queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                getter.cancel()
                break
            await websocket.send_json(getter.result())
    except (WebSocketDisconnect, RuntimeError):  # the client went away mid-send
        pass
    finally:
        receiver.cancel()
        hub.unsubscribe(client)


async def _drain(websocket: WebSocket) -> None:
    """Read and ignore client messages until it disconnects."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


__all__ = ["FEED_GROUP", "BusFeed", "LiveClient", "LiveHub", "live_payload", "router", "signal_payload"]
