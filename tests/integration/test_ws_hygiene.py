"""WebSocket hygiene against a real uvicorn server on 127.0.0.1 and the ``websockets`` client library.

Each bad client (binary first frame, non-JSON, wrong schema, wrong key, oversized frame, silence past the
authentication deadline, a disconnect before authenticating, an invalid symbol) is closed with its documented
code, and the server writes at most one WARNING line for that connection, none with a traceback, none at ERROR,
never the key. A flood of bad connections stays bounded in the log and the server still serves a good client.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from smartmarket.api import SecurityConfig, create_app
from smartmarket.api.ws import WsRefusalLog
from smartmarket.core.config import Settings
from smartmarket.core.errors import ConfigError
from smartmarket.store import Store, open_store

WRITE_KEY = "ws-write-key-4f1c9e"
READ_KEY = "ws-read-key-8b27d0"
WRONG_KEY = "ws-wrong-key-93ae61"
AUTH_TIMEOUT_S = 0.5
MAX_FRAME = 1024


@dataclass
class Running:
    app: FastAPI
    server: uvicorn.Server
    port: int

    def url(self, path: str = "/ws/BTCUSDT") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def idle(self) -> None:
        """Wait until the server holds no connection and runs no handler (so every log line is written)."""
        deadline = time.monotonic() + 10
        while self.server.server_state.connections or self.server.server_state.tasks:
            assert time.monotonic() < deadline, "the server kept a connection open"
            time.sleep(0.02)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    home = tmp_path_factory.mktemp("wshome")
    with open_store(Settings(home=home).store_url) as opened:
        yield opened


def _serve(app: FastAPI) -> Iterator[Running]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_config=None, log_level="info", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Running(app, server, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


@pytest.fixture(scope="module")
def guarded(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """Reads need a key; a short authentication deadline and frame limit."""
    security = SecurityConfig(api_key=WRITE_KEY, read_key=READ_KEY, ws_auth_timeout_s=AUTH_TIMEOUT_S,
                              ws_max_message_bytes=MAX_FRAME)  # fmt: skip
    yield from _serve(create_app(Settings(home=tmp_path_factory.mktemp("g")), store=store, security=security))


@pytest.fixture(scope="module")
def open_reads(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """No read key: clients get the hello at once; what they send afterwards is still checked."""
    security = SecurityConfig(api_key=WRITE_KEY, ws_max_message_bytes=MAX_FRAME)
    yield from _serve(create_app(Settings(home=tmp_path_factory.mktemp("o")), store=store, security=security))


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


def dial(
    running: Running, path: str = "/ws/BTCUSDT", headers: dict[str, str] | None = None
) -> tuple[ClientConnection, int]:
    """A connected client and its local port (read before the server can close it)."""
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    port = sock.getsockname()[1]
    return connect(running.url(path), sock=sock, additional_headers=headers, open_timeout=10), port


def close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes; the close code it sent."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None, "the server did not send a close frame"
    return closed.value.rcvd.code


def connection_records(logs: pytest.LogCaptureFixture, port: int) -> list[logging.LogRecord]:
    return [r for r in logs.records if f":{port} " in r.getMessage()]


def check_log(logs: pytest.LogCaptureFixture, port: int, *, warnings: int) -> list[logging.LogRecord]:
    """``warnings`` WARNING lines (any number when negative) name this client; no record anywhere has a
    traceback, is an ERROR or shows a key."""
    mine = [r for r in connection_records(logs, port) if r.levelno >= logging.WARNING]
    assert warnings < 0 or len(mine) == warnings, [r.getMessage() for r in mine]
    for record in logs.records:
        text = record.getMessage()
        assert record.exc_info is None and record.exc_text is None and record.stack_info is None, text
        assert record.levelno < logging.ERROR, text
        assert "Traceback" not in text and "\n" not in text, text
        for key in (READ_KEY, WRITE_KEY, WRONG_KEY):
            assert key not in text, text
    return mine


def refused(
    running: Running,
    logs: pytest.LogCaptureFixture,
    act: Callable[[ClientConnection], None],
    *,
    path: str = "/ws/BTCUSDT",
    headers: dict[str, str] | None = None,
) -> tuple[int | None, str]:
    """Connect, ``act``, read the close; returns the close code and the one warning line (fresh log budget)."""
    running.app.state.ws_refusals = WsRefusalLog()
    ws, port = dial(running, path, headers)
    with ws:
        act(ws)
        code = close_code(ws)
    running.idle()
    (line,) = check_log(logs, port, warnings=1)
    return code, line.getMessage()


# ------------------------------------------------------------------------------------------ before authenticating


def test_binary_first_frame_is_closed_1003(guarded: Running, logs: pytest.LogCaptureFixture) -> None:
    code, line = refused(guarded, logs, lambda ws: ws.send(b"\x00\x01binary"))
    assert code == 1003 and "binary" in line and "127.0.0.1:" in line


def test_non_json_first_frame_is_closed_1008(guarded: Running, logs: pytest.LogCaptureFixture) -> None:
    code, line = refused(guarded, logs, lambda ws: ws.send("this is not json [/x] {"))
    assert code == 1008 and "not JSON" in line


@pytest.mark.parametrize(
    "frame",
    ['["key"]', '{"key": 42}', '{"apikey": "x"}', '{"key": "x", "extra": 1}', "null", "[" * 500 + "]" * 500,
     "[" * 1000],
)  # fmt: skip
def test_wrong_schema_first_frame_is_closed_1008(frame: str, guarded: Running, logs: pytest.LogCaptureFixture) -> None:
    code, line = refused(guarded, logs, lambda ws: ws.send(frame))
    assert code == 1008 and ("expected" in line or "not JSON" in line)


def test_wrong_key_is_closed_4401_and_never_logged(guarded: Running, logs: pytest.LogCaptureFixture) -> None:
    code, line = refused(guarded, logs, lambda ws: ws.send(json.dumps({"key": WRONG_KEY})))
    assert code == 4401 and "not accepted" in line
    code, _ = refused(guarded, logs, lambda ws: None, headers={"X-API-Key": WRONG_KEY})
    assert code == 4401


def test_oversized_frame_is_closed_1009(guarded: Running, logs: pytest.LogCaptureFixture) -> None:
    code, line = refused(guarded, logs, lambda ws: ws.send(json.dumps({"key": "k" * 100_000})))
    assert code == 1009 and f"larger than {MAX_FRAME} bytes" in line
    code, _ = refused(guarded, logs, lambda ws: ws.send(b"\xff" * 100_000))
    assert code in (1003, 1009)


def test_silence_past_the_deadline_is_closed_1008(guarded: Running, logs: pytest.LogCaptureFixture) -> None:
    code, line = refused(guarded, logs, lambda ws: None)
    assert code == 1008 and "no API key within" in line


def test_invalid_symbol_is_closed_1008_and_the_reason_fits_a_close_frame(
    guarded: Running, logs: pytest.LogCaptureFixture
) -> None:
    code, line = refused(guarded, logs, lambda ws: None, path="/ws/" + "%C3%A9" * 60)
    assert code == 1008 and "invalid symbol" in line
    assert len(line) < 400  # the user's text is cut, not copied whole


def test_disconnect_before_authenticating_logs_one_info_line(guarded: Running, logs: pytest.LogCaptureFixture) -> None:
    ws, port = dial(guarded)
    with ws:
        pass  # leaves at once, before sending a key
    guarded.idle()
    check_log(logs, port, warnings=0)
    lines = [r.getMessage() for r in connection_records(logs, port) if r.name.startswith("smartmarket")]
    assert len(lines) == 1 and "closed before authenticating" in lines[0], lines


# ------------------------------------------------------------------------------------------ authenticated clients


def test_the_key_as_first_message_or_header_gets_the_hello(guarded: Running, logs: pytest.LogCaptureFixture) -> None:
    ws, port = dial(guarded, "/ws/btcusdt?timeframe=1h")
    with ws:
        ws.send(json.dumps({"key": READ_KEY}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "hello", "symbol": "BTCUSDT", "timeframe": "1h"}
        time.sleep(AUTH_TIMEOUT_S * 2)  # past the deadline: an authenticated client is not cut
        ws.send(json.dumps({"key": READ_KEY}))  # a repeated key is harmless
        ws.ping().wait(10)
    with connect(guarded.url(), additional_headers={"X-API-Key": WRITE_KEY}, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
    guarded.idle()
    check_log(logs, port, warnings=0)


def test_frames_after_the_hello_are_checked_too(open_reads: Running, logs: pytest.LogCaptureFixture) -> None:
    def after_hello(frame: str | bytes) -> Callable[[ClientConnection], None]:
        def act(ws: ClientConnection) -> None:
            assert json.loads(ws.recv(timeout=10))["type"] == "hello"
            ws.send(json.dumps({"key": "the dashboard sends its key even when reads are open"}))
            ws.send(frame)

        return act

    assert refused(open_reads, logs, after_hello(b"\x00"))[0] == 1003
    assert refused(open_reads, logs, after_hello("nope"))[0] == 1008
    assert refused(open_reads, logs, after_hello("x" * (MAX_FRAME + 1)))[0] == 1009


def test_a_client_leaving_after_the_hello_logs_nothing_at_warning(
    open_reads: Running, logs: pytest.LogCaptureFixture
) -> None:
    ws, port = dial(open_reads)
    with ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
    open_reads.idle()
    check_log(logs, port, warnings=0)


# ------------------------------------------------------------------------------------------ floods


def test_a_flood_of_bad_clients_is_bounded_in_the_log_and_a_good_client_still_served(
    guarded: Running, logs: pytest.LogCaptureFixture
) -> None:
    guarded.app.state.ws_refusals = WsRefusalLog()
    ports = []
    bad: list[Callable[[ClientConnection], Any]] = [
        lambda ws: ws.send(b"\x00"), lambda ws: ws.send("{"), lambda ws: ws.send(json.dumps({"key": WRONG_KEY})),
    ]  # fmt: skip
    for i in range(50):
        ws, port = dial(guarded)
        ports.append(port)
        with ws:
            bad[i % len(bad)](ws)
            assert close_code(ws) in (1003, 1008, 4401)
    guarded.idle()
    for port in ports:
        assert len(check_log(logs, port, warnings=-1)) <= 1
    warnings = [r for r in logs.records if r.levelno >= logging.WARNING]
    assert 1 <= len(warnings) <= 50 and guarded.app.state.ws_refusals.refused == 50
    with connect(guarded.url(), additional_headers={"X-API-Key": READ_KEY}, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"


def test_past_the_burst_refusals_are_counted_not_logged(guarded: Running, logs: pytest.LogCaptureFixture) -> None:
    previous = guarded.app.state.ws_refusals
    guarded.app.state.ws_refusals = WsRefusalLog(burst=5, window_s=3600)
    try:
        for _ in range(30):
            with connect(guarded.url(), open_timeout=10) as ws:
                ws.send(b"\x00")
                assert close_code(ws) == 1003
        guarded.idle()
        ours = [r for r in logs.records if r.name == "smartmarket.api.ws"]
        assert len(ours) == 5 and all(r.levelno == logging.WARNING for r in ours)
        assert guarded.app.state.ws_refusals.refused == 30
        assert guarded.app.state.ws_refusals.suppressed == 25
    finally:
        guarded.app.state.ws_refusals = previous


# ------------------------------------------------------------------------------------------ the pieces


def test_refusal_log_reports_what_it_held_back_once_the_window_turns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    now = [0.0]
    refusals = WsRefusalLog(burst=2, window_s=60, clock=lambda: now[0])
    for i in range(5):
        refusals.warn("127.0.0.1:1000", "/ws/X", f"refused {i}")
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == ["refused 0", "refused 1"]
    now[0] = 61.0
    refusals.warn("127.0.0.1:1001", "/ws/X", "refused 5")
    last = caplog.records[-1].getMessage()
    assert "refused 5" in last and "3 more not logged in the last 61 s" in last
    assert refusals.refused == 6 and refusals.suppressed == 3


def test_security_config_reads_the_websocket_settings() -> None:
    config = SecurityConfig.from_env(
        {"SMARTMARKET_API_WS_AUTH_TIMEOUT": "2.5", "SMARTMARKET_API_WS_MAX_MESSAGE": "512"}
    )
    assert config.ws_auth_timeout_s == 2.5 and config.ws_max_message_bytes == 512
    defaults = SecurityConfig.from_env({})
    assert defaults.ws_auth_timeout_s == 5.0 and defaults.ws_max_message_bytes == 4096
    timeout, size = "SMARTMARKET_API_WS_AUTH_TIMEOUT", "SMARTMARKET_API_WS_MAX_MESSAGE"
    for name, value in ((timeout, "soon"), (timeout, "0"), (timeout, "nan"), (size, "-1"), (size, "1e9x")):
        with pytest.raises(ConfigError) as bad:
            SecurityConfig.from_env({name: value})
        assert name in bad.value.one_line() and "\n" not in bad.value.one_line()
