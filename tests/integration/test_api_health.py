"""``/api/health`` says whether the store and the configured bus are reachable now (HTTP 503 when one is not),
and ``HEAD`` works on GET routes. Real stores, a real ``redis-server`` stopped mid-test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from redis_server import PrivateRedis
from smartmarket.api import SecurityConfig, create_app
from smartmarket.core.config import Settings
from smartmarket.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"duckdb:///{tmp_path / 'health.duckdb'}", create=True) as opened:
        yield opened


def test_no_bus_configured_store_reachable(tmp_path: Path, store: Store) -> None:
    with TestClient(create_app(Settings(home=tmp_path), store=store, security=SecurityConfig())) as client:
        response = client.get("/api/health")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok" and body["bus"] is None
        assert body["store"] == {"ok": True, "detail": "duckdb store reachable, 0 series"}

        store.close()  # the store gone: unreachable, 503, the body still says what is wrong
        response = client.get("/api/health")
        assert response.status_code == 503
        assert response.json()["store"]["ok"] is False and "closed" in response.json()["store"]["detail"]


def test_redis_bus_reachability_is_checked_each_time(tmp_path: Path, store: Store) -> None:
    from smartmarket.bus import open_bus

    server = PrivateRedis()
    server.start()
    try:
        bus = open_bus(server.url)
        app = create_app(Settings(home=tmp_path), store=store, bus=bus, security=SecurityConfig())
        with TestClient(app) as client:
            assert client.portal is not None
            try:
                up = client.get("/api/health")
                assert up.status_code == 200, up.text
                assert up.json()["bus"] == {"ok": True, "detail": "redis bus reachable"}

                server.stop()
                down = client.get("/api/health")
                assert down.status_code == 503
                body = down.json()
                assert body["status"] == "degraded" and body["store"]["ok"] is True
                assert body["bus"]["ok"] is False and body["bus"]["detail"].startswith("redis bus unreachable")
            finally:
                client.portal.call(bus.close)
    finally:
        server.stop()


def test_head_is_allowed_on_get_routes(tmp_path: Path, store: Store) -> None:
    with TestClient(create_app(Settings(home=tmp_path), store=store, security=SecurityConfig())) as client:
        for path in ("/", "/api/health", "/api/symbols", "/static/app.js"):
            got, head = client.get(path), client.head(path)
            assert head.status_code == got.status_code == 200, path
            assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"], path
            assert head.headers["content-length"] == str(len(got.content)), path
        assert client.head("/api/nothing-here").status_code == 404
