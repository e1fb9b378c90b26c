"""The web API over a real DuckDB store holding the real BTCUSDT-1h history, a real model registry and real buses.

Every endpoint, its answers checked against the store/registry/engine directly, plus auth failures, bad input,
the body limit, CORS, Prometheus metrics, the WebSocket (in-process hub, in-process bus, Redis Streams bus) and
``smartmarket serve`` as a subprocess.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from smartmarket.api import SecurityConfig, create_app
from smartmarket.api.schemas import HitRatePoint, PipelineStatus, QualityReport, StageStatus
from smartmarket.api.services import MIN_WARMUP
from smartmarket.backtest.runner import run_backtest
from smartmarket.core.config import Settings
from smartmarket.core.events import CandleClosed, SignalGenerated
from smartmarket.core.types import Timeframe
from smartmarket.data.ingest import ingest_file
from smartmarket.engine.kernel import KernelConfig
from smartmarket.execution.fees import FeeModel
from smartmarket.execution.sizing import FixedFraction
from smartmarket.execution.slippage import FixedBps
from smartmarket.features.regimes import RegimeFeature, label_regimes
from smartmarket.store import Store, open_store

WRITE_KEY = "write-key-for-tests"
READ_KEY = "read-key-for-tests"
H1 = Timeframe.H1


def signal(ts: int, direction: str = "long", *, symbol: str = "BTCUSDT", timeframe: Timeframe = H1) -> SignalGenerated:
    return SignalGenerated.model_validate({
        "ts_event": ts + timeframe.ms, "symbol": symbol, "timeframe": timeframe, "ts": ts, "direction": direction,
        "confidence": 0.64, "strength": "moderate", "regime": "ranging", "reason": f"test {direction}",
        "member_probabilities": {"technical": {"long": 0.5, "flat": 0.3, "short": 0.2}},
        "member_weights": {"technical": 1.0}, "correlation_id": f"chain-{ts}",
    })  # fmt: skip


class FixedQuality:
    """A quality provider with known numbers (the real monitor lands with the signals package)."""

    def quality(self, symbol: str, timeframe: Timeframe) -> QualityReport | None:
        if symbol != "BTCUSDT":
            return None
        return QualityReport(window=50, hit_rate=[HitRatePoint(ts=1, hit_rate=0.56)])


class FixedPipeline:
    def pipeline_status(self) -> PipelineStatus:
        return PipelineStatus(running=True, updated_ts=5, stages=[StageStatus(name="features", processed=10)])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "home"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def store(home: Path, shared_data: Path) -> Iterator[Store]:
    """Real BTCUSDT-1h candles, signals for the last candles, another symbol's and timeframe's signals."""
    settings = Settings(home=home)
    with open_store(settings.store_url) as opened:
        ingest_file(opened, shared_data / "BTCUSDT-1h.csv.gz", quarantine_dir=settings.quarantine_dir)
        last = opened.latest("BTCUSDT", H1, 100)["ts"].tolist()
        events: list[Any] = [signal(ts, "long" if i % 2 else "short") for i, ts in enumerate(last[::10])]
        events.append(signal(last[-1], symbol="ETHUSDT"))
        events.append(signal(last[0] - last[0] % Timeframe.H4.ms, timeframe=Timeframe.H4))
        row = opened.latest("BTCUSDT", H1, 1).iloc[0]
        events.append(CandleClosed(
            ts_event=int(row.ts) + H1.ms, symbol="BTCUSDT", timeframe=H1, ts=int(row.ts), open=row.open,
            high=row.high, low=row.low, close=row.close, volume=row.volume, correlation_id=f"chain-{last[-10]}",
        ))  # fmt: skip
        opened.append_events(events)
        yield opened


@pytest.fixture(scope="module")
def model_ids(home: Path, shared_data: Path) -> list[str]:
    """Two real baseline models trained on 1,500 real candles, saved in the home's registry."""
    from smartmarket.models.labels import LabelConfig
    from smartmarket.models.pipeline import train_model
    from smartmarket.models.registry import Registry

    candles = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz", nrows=1500)
    log_close = np.log(candles["close"])
    features = pd.DataFrame({"ts": candles["ts"], "ret_1": log_close.diff(), "ret_8": log_close.diff(8)})
    registry = Registry(Settings(home=home).registry_dir)
    ids = []
    for kind in ("majority", "logreg"):
        model = train_model(kind, features, candles, symbol="BTCUSDT", timeframe="1h", feature_set="tiny",
                            label_config=LabelConfig(horizon=12))  # fmt: skip
        ids.append(registry.save(model))
    return ids


@pytest.fixture(scope="module")
def app(home: Path, store: Store, model_ids: list[str]) -> FastAPI:
    return create_app(Settings(home=home), store=store, security=SecurityConfig(api_key=WRITE_KEY))


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def get(client: TestClient, url: str, status: int = 200, **kw: Any) -> Any:
    response = client.get(url, **kw)
    assert response.status_code == status, response.text
    return response.json()


# ------------------------------------------------------------------------------------------ market data


def test_health_reports_store_models_bus_and_pipeline(client: TestClient, model_ids: list[str]) -> None:
    health = get(client, "/api/health")
    assert health["status"] == "ok"
    assert health["store"] == {"ok": True, "detail": "duckdb store reachable, 1 series"}
    assert health["models"] == {"ok": True, "detail": f"{len(model_ids)} model(s)"}
    assert health["bus"] is None  # no bus configured
    assert health["pipeline"]["detail"] == "no live pipeline is running in this server"


def test_symbols_list_what_is_stored(client: TestClient, store: Store) -> None:
    info = store.series_info("BTCUSDT", H1)
    assert info is not None and info.count > 60_000
    body = get(client, "/api/symbols")
    assert body == {"symbols": [{"symbol": "BTCUSDT", "series": [{
        "timeframe": "1h", "count": info.count, "first_ts": info.first_ts, "last_ts": info.last_ts, "synthetic": False,
    }]}]}  # fmt: skip


def test_candles_newest_first_window_and_resampled(client: TestClient, store: Store) -> None:
    latest = get(client, "/api/candles/BTCUSDT/1h?limit=3")
    expected = store.latest("BTCUSDT", H1, 3)
    assert [c["ts"] for c in latest["candles"]] == expected["ts"].tolist()
    assert [c["close"] for c in latest["candles"]] == expected["close"].tolist()

    window = get(client, "/api/candles/btc-usdt/4h?start=2021-01-01&end=2021-01-02&limit=10")
    direct = store.read_candles("BTCUSDT", Timeframe.H4, 1609459200000, 1609545600000)
    assert window["symbol"] == "BTCUSDT" and window["count"] == len(direct) == 6
    assert [c["high"] for c in window["candles"]] == direct["high"].tolist()
    assert [c["volume"] for c in window["candles"]] == pytest.approx(direct["volume"].tolist())

    before = get(client, "/api/candles/BTCUSDT/1d?end=2021-01-01&limit=2")
    assert [c["ts"] for c in before["candles"]] == [1609286400000, 1609372800000]


@pytest.mark.parametrize(
    ("url", "status", "fragment"),
    [
        ("/api/candles/DOGEUSDT/1h", 404, "no candles stored for DOGEUSDT"),
        ("/api/candles/BTCUSDT/1m", 404, "resampled"),
        ("/api/candles/BTCUSDT/1h?start=yesterday", 400, "cannot read time"),
        ("/api/models/compare?ids=" + ",".join(["abc"] * 21), 400, "at most 20 models"),
        ("/api/candles/BTCUSDT/1h?start=2022-01-02&end=2022-01-01", 400, "must be after start"),
        ("/api/features/BTCUSDT/1h?set=huge", 400, "unknown feature set"),
        ("/api/signals/BTCUSDT/1h?end=noon", 400, "cannot read time"),
        ("/api/events?type=Nonsense", 400, "unknown event type"),
    ],
)
def test_bad_input_gets_a_clear_4xx(client: TestClient, url: str, status: int, fragment: str) -> None:
    body = get(client, url, status)
    assert fragment in body["detail"]


@pytest.mark.parametrize(
    "url",
    ["/api/candles/BTCUSDT/1h?limit=0", "/api/candles/BTCUSDT/1h?limit=10001", "/api/features/BTCUSDT/1h?limit=x",
     "/api/events?since=-1", "/api/models/.hidden", "/api/backtests/not-a-job-id", "/api/candles/BTCUSDT/7x",
     "/api/candles/BTC$USDT/1h", "/api/regimes/BTCUSDT/15x", "/api/models?stage=gold",
     "/api/models/compare?ids=a/../b"],
)  # fmt: skip
def test_malformed_parameters_get_422_saying_what_is_wrong(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert problems and all(p["msg"] and p["loc"][0] in ("path", "query") for p in problems)


def test_features_are_the_named_set_at_the_newest_bars(client: TestClient, store: Store) -> None:
    body = get(client, "/api/features/BTCUSDT/1h?set=minimal&limit=5")
    candles = store.latest("BTCUSDT", H1, 6)
    assert body["feature_set"] == "minimal" and body["count"] == 5
    assert body["ts"] == candles["ts"].tolist()[1:]
    assert {"rsi_14", "atr_14", "logret_1", "regime"} <= set(body["columns"])
    expected = np.log(candles["close"].to_numpy()[1:] / candles["close"].to_numpy()[:-1])
    assert body["columns"]["logret_1"] == pytest.approx(expected.tolist(), rel=1e-12)
    assert all(v is not None and math.isfinite(v) for v in body["columns"]["rsi_14"])


def test_regimes_match_the_labeller_over_the_same_window(client: TestClient, store: Store) -> None:
    body = get(client, "/api/regimes/BTCUSDT/1h?limit=300")
    warmup = max(MIN_WARMUP, 3 * RegimeFeature().warmup)
    frame = store.latest("BTCUSDT", H1, 300 + warmup)
    expected = label_regimes(frame).tolist()[-300:]
    assert body["regime"] == expected and body["ts"] == frame["ts"].tolist()[-300:]
    assert sum(span["bars"] for span in body["spans"]) == 300
    assert body["spans"][0]["start_ts"] == body["ts"][0] and body["spans"][-1]["end_ts"] == body["ts"][-1]
    assert sum(body["shares"].values()) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ signals, events


def test_signals_come_from_signal_generated_events_of_the_series(client: TestClient, store: Store) -> None:
    ours = [
        e.seq
        for e in store.read_events(types=["SignalGenerated"])
        if isinstance(e.message, SignalGenerated) and e.message.symbol == "BTCUSDT" and e.message.timeframe == H1
    ]
    body = get(client, "/api/signals/BTCUSDT/1h")
    assert body["count"] == len(ours) == 10
    assert [s["seq"] for s in body["history"]] == ours
    assert body["latest"] == body["history"][-1]
    assert body["latest"]["member_probabilities"] == {"technical": {"long": 0.5, "flat": 0.3, "short": 0.2}}
    assert body["latest"]["member_weights"] == {"technical": 1.0}
    assert get(client, "/api/signals/BTCUSDT/1h?limit=3")["history"] == body["history"][-3:]
    assert get(client, "/api/signals/BTCUSDT/4h")["count"] == 1
    empty = get(client, "/api/signals/BTCUSDT/1d")
    assert empty == {"symbol": "BTCUSDT", "timeframe": "1d", "count": 0, "latest": None, "history": []}


def test_events_filter_by_type_correlation_and_sequence(client: TestClient, store: Store) -> None:
    everything = get(client, "/api/events?limit=1000")
    assert everything["count"] == len(store.read_events()) == 13
    candles = get(client, "/api/events?type=CandleClosed")
    assert [e["type"] for e in candles["events"]] == ["CandleClosed"]
    chain = candles["events"][0]["correlation_id"]
    linked = get(client, f"/api/events?correlation_id={chain}")
    assert {e["type"] for e in linked["events"]} == {"CandleClosed", "SignalGenerated"}
    later = get(client, "/api/events?since=10")
    assert [e["seq"] for e in later["events"]] == [11, 12, 13] and later["last_seq"] == 13
    assert get(client, "/api/events?since=13") == {"count": 0, "last_seq": 13, "events": []}


def test_quality_and_pipeline_say_so_until_providers_register(app: FastAPI, client: TestClient) -> None:
    quality = get(client, "/api/quality/BTCUSDT/1h")
    assert quality["available"] is False and quality["reason"] == "the signal quality monitor is not running"
    assert quality["hit_rate"] == [] and quality["reliability"] == [] and quality["drift_alarms"] == []
    pipeline = get(client, "/api/pipeline")
    assert pipeline == {"running": False, "reason": "no live pipeline is running in this server", "updated_ts": None,
                        "stages": []}  # fmt: skip
    status = app.state.services.status
    status.register_quality(FixedQuality())
    status.register_pipeline(FixedPipeline())
    try:
        quality = get(client, "/api/quality/BTCUSDT/1h")
        assert quality["available"] is True and quality["window"] == 50
        assert quality["hit_rate"] == [{"ts": 1, "hit_rate": 0.56}]
        other = get(client, "/api/quality/ETHUSDT/4h")
        assert other["available"] is False and "no quality data for ETHUSDT 4h" in other["reason"]
        pipeline = get(client, "/api/pipeline")
        assert pipeline["running"] is True and pipeline["stages"][0]["name"] == "features"
        assert get(client, "/api/health")["pipeline"]["detail"] == "running"
    finally:
        status.register_quality(None)
        status.register_pipeline(None)


# ------------------------------------------------------------------------------------------ models


def test_models_list_show_and_compare(client: TestClient, model_ids: list[str]) -> None:
    listed = get(client, "/api/models")
    assert listed["count"] == 2 and sorted(m["id"] for m in listed["models"]) == sorted(model_ids)
    assert get(client, "/api/models?stage=production")["count"] == 0
    assert get(client, "/api/models?symbol=btc/usdt&timeframe=1h")["count"] == 2
    logreg = next(i for i in model_ids if i.startswith("logreg"))
    shown = get(client, f"/api/models/{logreg}")
    assert shown["kind"] == "logreg" and shown["metadata"]["id"] == logreg and shown["feature_set"] == "tiny"
    assert get(client, f"/api/models/{logreg[:-4]}")["id"] == logreg  # unique prefix
    assert "no model" in get(client, "/api/models/transformer-XYZ", 404)["detail"]
    compared = get(client, f"/api/models/compare?ids={','.join(model_ids)}")
    assert compared["ids"] == model_ids
    assert set(compared["metrics"]) == set(shown["test_metrics"]) and compared["metrics"]
    assert get(client, "/api/models/compare?ids=nope", 404)["detail"] == "no model 'nope'"


# ------------------------------------------------------------------------------------------ backtests


def wait_for_job(client: TestClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job: dict[str, Any] = get(client, f"/api/backtests/{job_id}")
        assert 0.0 <= job["progress"] <= 1.0
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    pytest.fail(f"backtest job {job_id} did not finish")


def test_a_backtest_job_runs_the_kernel_and_serves_result_and_report(client: TestClient, store: Store) -> None:
    request = {"symbols": ["BTCUSDT"], "timeframe": "4h", "strategy": "sma_cross", "params": {"fast": 5, "slow": 20},
               "start": "2023-01-01", "end": "2024-01-01", "fees": 0.0005, "slippage_bps": 2.0}  # fmt: skip
    started = client.post("/api/backtests", json=request, headers={"X-API-Key": WRITE_KEY})
    assert started.status_code == 202, started.text
    job = wait_for_job(client, started.json()["job_id"])
    assert job["state"] == "succeeded" and job["progress"] == 1.0 and job["error"] is None
    result = get(client, f"/api/backtests/{job['job_id']}/result")

    frame = store.read_candles("BTCUSDT", Timeframe.H4, 1672531200000, 1704067200000)
    config = KernelConfig(fees=FeeModel(maker=0.0005, taker=0.0005), slippage=FixedBps(2.0), sizer=FixedFraction(1.0),
                          close_at_end=True)  # fmt: skip
    direct = run_backtest({"BTCUSDT": frame}, "sma_cross", params={"fast": 5, "slow": 20}, config=config,
                          timeframe=Timeframe.H4)  # fmt: skip
    assert result["schema"] == "smartmarket.backtest/1" and result["candles"] == len(frame) == 2190
    assert result["final_equity"] == direct.final_equity
    assert len(result["trades"]) == len(direct.trades) > 0
    assert [p[1] for p in result["equity"]] == direct.equity.tolist()
    assert job["summary"]["num_trades"] == len(direct.trades)
    assert {m["month"] for m in result["monthly_returns"]} == {f"2023-{m:02d}" for m in range(1, 13)}

    report = client.get(f"/api/backtests/{job['job_id']}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "sma_cross(fast=5, slow=20) on BTCUSDT 4h" in report.text
    assert job["job_id"] in [j["job_id"] for j in get(client, "/api/backtests")["jobs"]]


def test_a_job_without_data_in_range_fails_with_its_reason(client: TestClient) -> None:
    request = {"symbols": ["BTCUSDT"], "start": "2030-01-01"}
    started = client.post("/api/backtests", json=request, headers={"X-API-Key": WRITE_KEY})
    job = wait_for_job(client, started.json()["job_id"])
    assert job["state"] == "failed" and "no BTCUSDT 1h candles in the requested range" in job["error"]
    assert "failed" in get(client, f"/api/backtests/{job['job_id']}/result", 409)["detail"]
    assert get(client, f"/api/backtests/{uuid.uuid4().hex}", 404)["detail"].startswith("no backtest job")


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"symbols": ["BTCUSDT"], "strategy": "moonshot"}, 400, "unknown strategy 'moonshot'"),
        ({"symbols": ["BTCUSDT"], "params": {"window": 3}}, 400, "bad parameters for strategy 'sma_cross'"),
        ({"symbols": ["BTCUSDT"], "timeframe": "2y"}, 400, "unknown timeframe '2y'"),
        ({"symbols": ["BTCUSDT"], "start": "2024-01-01", "end": "2023-01-01"}, 400, "must be after start"),
        ({"symbols": ["DOGEUSDT"]}, 404, "no candles stored for DOGEUSDT"),
        ({"symbols": []}, 422, None),
        ({"symbols": ["BTCUSDT"], "fees": 0.5}, 422, None),
        ({"symbols": ["BTCUSDT"], "leverage": 10}, 422, None),
    ],
)
def test_bad_backtest_requests_are_refused_before_any_work(
    client: TestClient, body: dict[str, Any], status: int, fragment: str | None
) -> None:
    before = len(get(client, "/api/backtests")["jobs"])
    response = client.post("/api/backtests", json=body, headers={"X-API-Key": WRITE_KEY})
    assert response.status_code == status, response.text
    if fragment:
        assert fragment in response.json()["detail"]
    assert len(get(client, "/api/backtests")["jobs"]) == before


# ------------------------------------------------------------------------------------------ security


def test_starting_work_needs_the_write_key(client: TestClient) -> None:
    body = {"symbols": ["BTCUSDT"]}
    assert client.post("/api/backtests", json=body).status_code == 401
    assert client.post("/api/backtests", json=body, headers={"X-API-Key": "guess"}).status_code == 403
    assert client.post("/api/backtests", json=body, headers={"Authorization": "Bearer guess"}).status_code == 403


def test_writes_are_off_without_a_configured_key(home: Path, store: Store) -> None:
    app = create_app(Settings(home=home), store=store, security=SecurityConfig())
    with TestClient(app) as plain:
        response = plain.post("/api/backtests", json={"symbols": ["BTCUSDT"]}, headers={"X-API-Key": ""})
        assert response.status_code == 403 and "SMARTMARKET_API_KEY" in response.json()["detail"]
        assert plain.get("/api/symbols").status_code == 200  # reads stay open without a read key


def test_a_read_key_guards_every_read_and_the_write_key_also_reads(home: Path, store: Store) -> None:
    security = SecurityConfig(api_key=WRITE_KEY, read_key=READ_KEY)
    with TestClient(create_app(Settings(home=home), store=store, security=security)) as guarded:
        for url in ("/api/symbols", "/api/health", "/metrics", "/api/signals/BTCUSDT/1h"):
            assert guarded.get(url).status_code == 401, url
            assert guarded.get(url, headers={"X-API-Key": "wrong"}).status_code == 403, url
            assert guarded.get(url, headers={"X-API-Key": READ_KEY}).status_code == 200, url
        assert guarded.get("/api/symbols", headers={"Authorization": f"Bearer {WRITE_KEY}"}).status_code == 200
        started = guarded.post("/api/backtests", json={"symbols": ["BTCUSDT"]}, headers={"X-API-Key": READ_KEY})
        assert started.status_code == 403  # the read key never starts work
        assert guarded.get("/").status_code == 200  # the page itself is static; its data calls need the key


def test_security_config_reads_the_environment_and_never_shows_keys() -> None:
    config = SecurityConfig.from_env({
        "SMARTMARKET_API_KEY": "s3cret", "SMARTMARKET_API_CORS": "https://a.example, https://b.example",
        "SMARTMARKET_API_MAX_BODY": "1000",
    })  # fmt: skip
    assert config.can_write("s3cret") and not config.can_write("s3cre") and not config.can_write(None)
    assert config.can_read(None)  # no read key: reads are open
    assert config.cors_origins == ("https://a.example", "https://b.example") and config.max_body_bytes == 1000
    assert "s3cret" not in repr(config)


def test_bodies_over_the_limit_get_413(client: TestClient) -> None:
    big = b'{"symbols": ["BTCUSDT"], "strategy": "' + b"x" * 70_000 + b'"}'
    headers = {"X-API-Key": WRITE_KEY, "Content-Type": "application/json"}
    response = client.post("/api/backtests", content=big, headers=headers)
    assert response.status_code == 413 and "larger than 65536 bytes" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield b'{"symbols": ["BTCUSDT"], "strategy": "'
        for _ in range(20):
            yield b"y" * 4096
        yield b'"}'

    streamed = client.post("/api/backtests", content=chunks(), headers=headers)
    assert streamed.status_code == 413


def test_cors_only_for_configured_origins(home: Path, store: Store, client: TestClient) -> None:
    preflight = {"Origin": "https://dash.example", "Access-Control-Request-Method": "GET"}
    assert "access-control-allow-origin" not in client.options("/api/symbols", headers=preflight).headers
    security = SecurityConfig(api_key=WRITE_KEY, cors_origins=("https://dash.example",))
    with TestClient(create_app(Settings(home=home), store=store, security=security)) as cors:
        allowed = cors.options("/api/symbols", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://dash.example"
        other = cors.get("/api/symbols", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_dashboard_page_openapi_and_metrics(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "lightweight-charts.standalone.production.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    bundle = client.get("/static/vendor/lightweight-charts.standalone.production.js")
    assert bundle.status_code == 200 and "Lightweight Charts" in bundle.text[:300]
    spec = get(client, "/openapi.json")
    paths = {"/api/candles/{symbol}/{timeframe}", "/api/backtests", "/api/models/compare", "/metrics"}
    assert paths <= set(spec["paths"])
    get(client, "/api/candles/BTCUSDT/1h?limit=1")
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'smartmarket_api_requests_total{method="GET",route="/api/candles/{symbol}/{timeframe}",status="200"}' in (
        metrics.text
    )
    assert "smartmarket_api_backtest_jobs" in metrics.text


# ------------------------------------------------------------------------------------------ live updates


def test_websocket_gets_hub_signals_of_its_symbol_and_timeframe(app: FastAPI, client: TestClient) -> None:
    with client.websocket_connect("/ws/btcusdt?timeframe=1h") as ws:
        assert ws.receive_json() == {"type": "hello", "symbol": "BTCUSDT", "timeframe": "1h"}
        hub = app.state.hub
        assert hub.publish(signal(1_000 * H1.ms, timeframe=Timeframe.H4)) == 0  # other timeframe
        assert hub.publish(signal(1_000 * H1.ms, symbol="ETHUSDT")) == 0  # other symbol
        live = signal(1_001 * H1.ms, "short")
        assert hub.publish(live) == 1
        frame = ws.receive_json()
        assert frame["type"] == "SignalGenerated" and frame["data"]["event_id"] == live.event_id
        assert frame["data"]["direction"] == "short" and frame["data"]["seq"] is None


def test_websocket_rejects_bad_symbols_and_missing_read_keys(home: Path, store: Store, client: TestClient) -> None:
    from starlette.websockets import WebSocketDisconnect

    with client.websocket_connect("/ws/BTC$") as ws, pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    assert closed.value.code == 1008
    security = SecurityConfig(api_key=WRITE_KEY, read_key=READ_KEY)
    with TestClient(create_app(Settings(home=home), store=store, security=security)) as guarded:
        with guarded.websocket_connect("/ws/BTCUSDT") as ws, pytest.raises(WebSocketDisconnect) as refused:
            ws.send_json({"key": "wrong"})
            ws.receive_json()
        assert refused.value.code == 4401
        with guarded.websocket_connect("/ws/BTCUSDT") as ws:
            ws.send_json({"key": READ_KEY})
            assert ws.receive_json()["type"] == "hello"


def _bus_round_trip(home: Path, store: Store, bus: Any) -> None:
    """A signal published on the bus reaches a WebSocket client; the bus is cleaned up on the app's loop."""
    app = create_app(Settings(home=home), store=store, bus=bus, security=SecurityConfig(api_key=WRITE_KEY))
    with TestClient(app) as bus_client:
        assert bus_client.portal is not None
        try:
            with bus_client.websocket_connect("/ws/BTCUSDT?timeframe=1h") as ws:
                assert ws.receive_json()["type"] == "hello"
                live = signal(2_000 * H1.ms)
                bus_client.portal.call(bus.publish, "signals", "BTCUSDT", live)
                frame = ws.receive_json()
                assert frame["type"] == "SignalGenerated" and frame["data"]["event_id"] == live.event_id
            assert get(bus_client, "/api/health")["bus"]["ok"] is True
        finally:
            bus_client.portal.call(app.state.bus_feed.close)
            bus_client.portal.call(bus.delete_namespace)
            bus_client.portal.call(bus.close)


def test_websocket_follows_the_in_process_bus(home: Path, store: Store) -> None:
    from smartmarket.bus import open_bus

    _bus_round_trip(home, store, open_bus("memory://"))


def test_websocket_follows_the_redis_streams_bus(home: Path, store: Store, redis_server: str) -> None:
    from smartmarket.bus import open_bus

    _bus_round_trip(home, store, open_bus(redis_server, namespace=f"apitest-{uuid.uuid4().hex[:8]}"))


# ------------------------------------------------------------------------------------------ the command


def test_smartmarket_serve_starts_the_api(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "SMARTMARKET_API_KEY": "k"}
    env.pop("SMARTMARKET_STORE", None)
    command = [sys.executable, "-m", "smartmarket.cli.app", "--home", str(tmp_path / "home"), "serve", "--port",
               str(port), "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).json()
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.2)
        assert health["store"] == {"ok": True, "detail": "duckdb store reachable, 0 series"}
        for path in ("/", "/api/health"):  # HEAD through the real server (uvicorn) too
            head = httpx.head(f"http://127.0.0.1:{port}{path}", timeout=5)
            assert head.status_code == 200 and head.content == b"", path
    finally:
        process.terminate()
        process.wait(timeout=20)
