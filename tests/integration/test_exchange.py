"""Exchange ingestion with ccxt's real Binance class, pointed at a local HTTP server that answers like Binance.

The server (``FakeBinance``) serves ``/api/v3/exchangeInfo`` and ``/api/v3/klines`` from the recorded-format
fixtures in ``tests/fixtures/binance`` and logs every request, so tests can assert what ccxt actually asked
for. It only ever listens on 127.0.0.1; every ccxt API URL is rewritten to it, so nothing reaches the internet.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt
import pandas as pd
import pytest

from smartmarket.core.errors import ConfigError, RetryableError
from smartmarket.core.types import Timeframe
from smartmarket.data.exchange import RetryPolicy, fetch_ohlcv_pages, ingest_from_exchange, make_exchange
from smartmarket.data.ingest import IngestReport
from smartmarket.store.base import Store
from smartmarket.store.url import open_store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance"
START = 1_704_067_200_000  # first fixture candle: 2024-01-01T00:00Z
MIN = 60_000
FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)


@dataclass
class LoggedRequest:
    path: str
    params: dict[str, str]
    status: int
    returned: list[int]  # open times of the candles answered (klines only)


class FakeBinance:
    """A tiny Binance spot REST server on 127.0.0.1 with a controllable clock and injectable failures."""

    def __init__(self) -> None:
        self.exchange_info = json.loads((FIXTURES / "exchangeInfo.json").read_text())
        self.klines = {("BTCUSDT", "1m"): json.loads((FIXTURES / "klines-BTCUSDT-1m.json").read_text())}
        self.now_ms = START + 60 * MIN + 30_000  # the server only knows candles opened by now
        self.fail_next: list[int] = []  # HTTP statuses to answer (one per request) before serving again
        self.requests: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def kline_requests(self) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path == "/api/v3/klines"]

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, Any, list[int]]:
        with self._lock:
            if self.fail_next:
                status = self.fail_next.pop(0)
                return status, {"code": -1003, "msg": "Too many requests; slow down."}, []
        if path == "/api/v3/exchangeInfo":
            return 200, {**self.exchange_info, "serverTime": self.now_ms}, []
        if path == "/api/v3/time":
            return 200, {"serverTime": self.now_ms}, []
        if path == "/api/v3/klines":
            rows = self.klines.get((params.get("symbol", ""), params.get("interval", "")))
            if rows is None:
                return 400, {"code": -1121, "msg": "Invalid symbol."}, []
            start = int(params.get("startTime", 0))
            end = int(params.get("endTime", self.now_ms))
            limit = min(int(params.get("limit", 500)), 1000)
            # Like Binance: candles opened by now, the still-open one included.
            picked = [r for r in rows if start <= r[0] <= end and r[0] <= self.now_ms][:limit]
            return 200, picked, [r[0] for r in picked]
        return 404, {"code": -1, "msg": f"no fixture for {path}"}, []

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = dict(parse_qsl(url.query))
                status, body, returned = fake.answer(url.path, params)
                fake.requests.append(LoggedRequest(url.path, params, status, returned))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    server = FakeBinance()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def binance(fake: FakeBinance) -> ccxt.Exchange:
    """ccxt's real Binance class with every API URL pointed at the local fake."""
    exchange = make_exchange("binance")
    exchange.urls["api"] = {
        key: re.sub(r"^https?://[^/]+", fake.base_url, url) for key, url in exchange.urls["api"].items()
    }
    exchange.session.trust_env = False  # no proxy from the environment, even for 127.0.0.1
    return exchange


def fixture_frame(fake: FakeBinance, first: int, stop: int) -> pd.DataFrame:
    rows = fake.klines[("BTCUSDT", "1m")][first:stop]
    return pd.DataFrame(
        {
            "ts": [r[0] for r in rows],
            **{col: [float(r[i]) for r in rows] for i, col in enumerate(("open", "high", "low", "close", "volume"), 1)},
        }
    )


def collect(pages: Iterator[pd.DataFrame]) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    page_list = list(pages)
    return page_list, pd.concat(page_list, ignore_index=True) if page_list else pd.DataFrame()


def test_pagination_walks_forward_one_candle_past_each_page(fake: FakeBinance, binance: ccxt.Exchange) -> None:
    pages, got = collect(
        fetch_ohlcv_pages(binance, "BTC/USDT", Timeframe.M1, START, None, limit=7, now_ms=lambda: fake.now_ms)
    )
    pd.testing.assert_frame_equal(got, fixture_frame(fake, 0, 60))
    assert [len(p) for p in pages] == [7] * 8 + [4]
    starts = [int(r.params["startTime"]) for r in fake.kline_requests()]
    assert starts == [START + 7 * k * MIN for k in range(9)]
    assert all(r.params["symbol"] == "BTCUSDT" and r.params["interval"] == "1m" for r in fake.kline_requests())
    assert {r.path for r in fake.requests} <= {"/api/v3/exchangeInfo", "/api/v3/klines"}


def test_still_open_candle_is_never_yielded(fake: FakeBinance, binance: ccxt.Exchange) -> None:
    fake.now_ms = START + 20 * MIN + 30_000  # candle 20 opened 30 s ago
    _, got = collect(
        fetch_ohlcv_pages(binance, "BTC/USDT", Timeframe.M1, START, None, limit=8, now_ms=lambda: fake.now_ms)
    )
    served = [ts for r in fake.kline_requests() for ts in r.returned]
    assert START + 20 * MIN in served  # the server did send the open candle...
    assert got["ts"].max() == START + 19 * MIN  # ...and it was dropped
    pd.testing.assert_frame_equal(got, fixture_frame(fake, 0, 20))


def test_until_is_exclusive_and_stops_requests(fake: FakeBinance, binance: ccxt.Exchange) -> None:
    _, got = collect(
        fetch_ohlcv_pages(
            binance, "BTC/USDT", Timeframe.M1, START + 2 * MIN, START + 12 * MIN, limit=4, now_ms=lambda: fake.now_ms
        )
    )
    assert got["ts"].tolist() == [START + k * MIN for k in range(2, 12)]
    assert len(fake.kline_requests()) == 3


def test_unaligned_since_starts_at_next_candle(fake: FakeBinance, binance: ccxt.Exchange) -> None:
    _, got = collect(
        fetch_ohlcv_pages(
            binance, "BTC/USDT", Timeframe.M1, START + 90_000, START + 5 * MIN, now_ms=lambda: fake.now_ms
        )
    )
    assert got["ts"].tolist() == [START + k * MIN for k in range(2, 5)]


def test_rate_limit_answer_is_retried_after_backoff(fake: FakeBinance, binance: ccxt.Exchange) -> None:
    binance.load_markets()
    fake.fail_next = [429]
    sleeps: list[float] = []
    _, got = collect(
        fetch_ohlcv_pages(
            binance, "BTC/USDT", Timeframe.M1, START, None,
            limit=25, now_ms=lambda: fake.now_ms, retry=FAST_RETRY, sleep=sleeps.append,
        )
    )  # fmt: skip
    pd.testing.assert_frame_equal(got, fixture_frame(fake, 0, 60))
    klines = fake.kline_requests()
    assert [r.status for r in klines[:2]] == [429, 200]
    assert klines[0].params["startTime"] == klines[1].params["startTime"] == str(START)
    assert sleeps == [FAST_RETRY.delay(1)]


def test_persistent_failure_raises_retryable_error_after_bounded_attempts(
    fake: FakeBinance, binance: ccxt.Exchange
) -> None:
    binance.load_markets()
    fake.fail_next = [503] * 10
    sleeps: list[float] = []
    pages = fetch_ohlcv_pages(
        binance, "BTC/USDT", Timeframe.M1, START, None,
        now_ms=lambda: fake.now_ms, retry=FAST_RETRY, sleep=sleeps.append,
    )  # fmt: skip
    with pytest.raises(RetryableError, match="failed 3 times"):
        next(pages)
    assert len(fake.kline_requests()) == 3
    assert sleeps == [0.01, 0.02]


def test_unknown_symbol_is_a_config_error(fake: FakeBinance, binance: ccxt.Exchange) -> None:
    with pytest.raises(ConfigError, match="unknown symbol"):
        next(fetch_ohlcv_pages(binance, "DOGE/EUR", Timeframe.M1, START, None, now_ms=lambda: fake.now_ms))
    assert fake.kline_requests() == []


def test_unknown_exchange_id_is_a_config_error_with_hint() -> None:
    with pytest.raises(ConfigError) as info:
        make_exchange("not-an-exchange")
    assert info.value.hint and "binance" in info.value.hint


def test_retry_delays_grow_exponentially_and_are_capped() -> None:
    policy = RetryPolicy(attempts=6, base_delay_s=1.0, max_delay_s=5.0)
    assert [policy.delay(k) for k in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"duckdb:///{tmp_path}/s.duckdb") as opened:
        yield opened


def test_ingest_stores_closed_candles_then_resumes_after_the_last_stored(
    fake: FakeBinance, binance: ccxt.Exchange, store: Store, tmp_path: Path
) -> None:
    def ingest(progress: list[tuple[int, int]]) -> IngestReport:
        return ingest_from_exchange(
            store, exchange_id="binance", symbol="BTC/USDT", timeframe=Timeframe.M1, since_ms=START, until_ms=None,
            quarantine_dir=tmp_path / "quarantine", exchange=binance, limit=10, now_ms=lambda: fake.now_ms,
            progress=lambda done, total: progress.append((done, total)),
        )  # fmt: skip

    fake.now_ms = START + 25 * MIN + 10_000  # candle 25 still open
    progress: list[tuple[int, int]] = []
    first = ingest(progress)
    assert (first.symbol, first.source) == ("BTCUSDT", "exchange:binance")
    assert (first.inserted, first.unchanged, first.quarantined) == (25, 0, 0)
    assert (first.first_ts, first.last_ts) == (START, START + 24 * MIN)
    assert progress == [(10, 25), (20, 25), (25, 25)]
    pd.testing.assert_frame_equal(store.read_candles("BTCUSDT", Timeframe.M1), fixture_frame(fake, 0, 25))
    info = store.series_info("BTCUSDT", Timeframe.M1)
    assert info is not None and not info.synthetic

    fake.requests.clear()
    fake.now_ms = START + 60 * MIN + 10_000
    second = ingest([])
    starts = [int(r.params["startTime"]) for r in fake.kline_requests()]
    assert starts[0] == START + 25 * MIN  # resumed after the last stored candle, not from since_ms
    assert min(starts) == START + 25 * MIN
    assert (second.inserted, second.unchanged, second.quarantined) == (35, 0, 0)
    assert (second.first_ts, second.last_ts) == (START + 25 * MIN, START + 59 * MIN)
    assert second.gaps == []
    pd.testing.assert_frame_equal(store.read_candles("BTCUSDT", Timeframe.M1), fixture_frame(fake, 0, 60))

    fake.requests.clear()
    third = ingest([])  # nothing new has closed: no candle request at all
    assert fake.kline_requests() == []
    assert (third.rows_read, third.inserted) == (0, 0)


def test_ingest_until_and_rate_limit_together(
    fake: FakeBinance, binance: ccxt.Exchange, store: Store, tmp_path: Path
) -> None:
    binance.load_markets()
    fake.fail_next = [429]
    report = ingest_from_exchange(
        store, exchange_id="binance", symbol="BTC/USDT", timeframe=Timeframe.M1,
        since_ms=START + 5 * MIN, until_ms=START + 17 * MIN, quarantine_dir=tmp_path / "q",
        exchange=binance, limit=5, now_ms=lambda: fake.now_ms, retry=FAST_RETRY,
    )  # fmt: skip
    assert report.inserted == 12
    assert [r.status for r in fake.kline_requests()][:2] == [429, 200]
    pd.testing.assert_frame_equal(store.read_candles("BTCUSDT", Timeframe.M1), fixture_frame(fake, 5, 17))


def test_ingest_with_unknown_exchange_id_is_a_config_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown exchange"):
        ingest_from_exchange(
            store, exchange_id="nosuchexchange", symbol="BTC/USDT", timeframe=Timeframe.M1,
            since_ms=START, until_ms=None, quarantine_dir=tmp_path / "q",
        )  # fmt: skip
    assert store.list_series() == []
