"""The dashboard end to end in headless Debian Chromium (selenium), served by uvicorn on a free localhost port.

The store holds the real BTCUSDT-1h history plus SignalGenerated events written for real candles (a simple
10-bar momentum rule stands in for the ensemble, which writes these events in production). Screenshots go to
``$SMARTMARKET_ARTIFACTS`` (e.g. ``artifacts/``, gitignored) or a temporary directory.

Outside CI a missing chromium/chromedriver skips these tests; with ``CI=true`` they fail (install with
``apt-get install -y chromium chromium-driver``).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI

from redis_server import free_port
from smartmarket.api import SecurityConfig, create_app
from smartmarket.core.config import Settings
from smartmarket.core.events import SignalGenerated
from smartmarket.core.types import Direction, Timeframe
from smartmarket.data.ingest import ingest_file
from smartmarket.features.regimes import label_regimes
from smartmarket.store import open_store

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = Path(os.environ.get("SMARTMARKET_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("SMARTMARKET_CHROMEDRIVER", "/usr/bin/chromedriver"))
API_KEY = "browser-test-key"
CHART_BARS = 500  # what the dashboard asks for


def momentum_signals(candles: pd.DataFrame, *, every: int = 20, lookback: int = 10) -> list[SignalGenerated]:
    """A signal every ``every`` candles from the last ``lookback``-bar return of real closes (a stand-in rule)."""
    closes = candles["close"].to_numpy()
    regimes = label_regimes(candles).to_numpy()
    signals = []
    for i in range(lookback, len(candles), every):
        move = float(closes[i] / closes[i - lookback] - 1.0)
        direction: Direction = "long" if move > 0.002 else "short" if move < -0.002 else "flat"
        confidence = min(0.5 + abs(move) * 10.0, 0.95)
        strength = "strong" if confidence >= 0.7 else "moderate" if confidence >= 0.6 else "weak"
        up = 0.5 + max(min(move * 20.0, 0.4), -0.4)
        ts = int(candles["ts"].iloc[i])
        signals.append(
            SignalGenerated(
                ts_event=ts + Timeframe.H1.ms,
                symbol="BTCUSDT",
                timeframe=Timeframe.H1,
                ts=ts,
                direction=direction,
                confidence=confidence,
                strength=strength,
                regime=str(regimes[i]),
                member_probabilities={
                    "technical": {"long": up * 0.8, "flat": 0.2, "short": (1 - up) * 0.8},
                    "smc": {"long": 0.4, "flat": 0.3, "short": 0.3},
                },
                member_weights={"technical": 0.65, "smc": 0.35},
                reason=f"{lookback}-bar return {move:+.2%}",
                correlation_id=f"browser-test-{ts}",
            )
        )
    return signals


@dataclass
class Served:
    url: str
    app: FastAPI
    signals: list[SignalGenerated]
    last_candles: pd.DataFrame


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Served]:
    """uvicorn serving the app over a real DuckDB store with BTCUSDT-1h and signals for its last candles."""
    home = tmp_path_factory.mktemp("dashboard") / "home"
    home.mkdir()
    settings = Settings(home=home)
    store = open_store(settings.store_url)
    ingest_file(store, shared_data / "BTCUSDT-1h.csv.gz", quarantine_dir=settings.quarantine_dir)
    last = store.latest("BTCUSDT", Timeframe.H1, CHART_BARS)
    signals = momentum_signals(last)
    store.append_events(signals)
    app = create_app(settings, store=store, security=SecurityConfig(api_key=API_KEY))
    try:
        with serving(app) as url:
            yield Served(url, app, signals, last)
    finally:
        store.close()


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a free localhost port; yields its URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("SMARTMARKET_ARTIFACTS")
    path = Path(where) / "dashboard" if where else tmp_path_factory.mktemp("dashboard-shots")
    path.mkdir(parents=True, exist_ok=True)
    FAILURE_SHOTS[:] = [path]
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists() or shutil.which(str(CHROMEDRIVER)) is None:
        message = f"browser tests need {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1440,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def dashboard_state(driver: Any) -> dict[str, Any]:
    state: dict[str, Any] = driver.execute_script("return window.smartmarketDashboard.state()")
    return state


FAILURE_SHOTS: list[Path] = []  # where to save a screenshot when a wait fails (set by the artifacts fixture)


def wait_for(driver: Any, condition: Any, timeout: float, message: str) -> Any:
    """Wait for ``condition(driver)``; on time-out save a screenshot and the page's error box, then fail."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, message)
    except TimeoutException:
        script = "const e = document.getElementById('error'); return e.hidden ? '' : e.textContent"
        error = driver.execute_script(script)
        if FAILURE_SHOTS:
            driver.save_screenshot(str(FAILURE_SHOTS[0] / f"failed-{int(time.time() * 1000)}.png"))
        pytest.fail(f"{message} (page error: {error or 'none'})")


def open_dashboard(driver: Any, served: Served) -> None:
    driver.get(f"{served.url}/?symbol=BTCUSDT&timeframe=1h")
    wait_for(
        driver,
        lambda d: d.execute_script("return document.body.dataset.loaded") == "BTCUSDT/1h",
        30,
        "the dashboard did not load BTCUSDT 1h",
    )


def test_dashboard_shows_real_candles_regimes_and_stored_signals(browser: Any, served: Served, artifacts: Path) -> None:
    open_dashboard(browser, served)
    state = dashboard_state(browser)["market"]
    first_ts = int(served.last_candles["ts"].iloc[0])
    in_view = [s for s in served.signals if s.ts >= first_ts]
    assert state["candles"] == CHART_BARS
    assert state["regimeBars"] == CHART_BARS
    assert state["markers"] == len(in_view) > 10
    latest = served.signals[-1]
    assert browser.find_element("id", "signal-direction").text.lower() == latest.direction
    assert browser.find_element("id", "signal-reason").text == latest.reason
    members = browser.find_elements("css selector", "#member-table tbody tr")
    assert [row.find_element("css selector", "td").text for row in members] == ["smc", "technical"]
    quality = browser.find_element("id", "quality-body").text
    assert "No data" in quality and "not running" in quality
    browser.save_screenshot(str(artifacts / "market.png"))


def test_a_live_signal_appears_on_the_page(browser: Any, served: Served, artifacts: Path) -> None:
    open_dashboard(browser, served)
    wait_for(browser, lambda d: d.find_element("id", "live-status").text == "live", 10, "WebSocket not connected")
    before = dashboard_state(browser)["market"]["markers"]
    last_ts = int(served.last_candles["ts"].iloc[-1])
    signal = SignalGenerated(
        ts_event=last_ts + Timeframe.H1.ms, symbol="BTCUSDT", timeframe=Timeframe.H1, ts=last_ts, direction="short",
        confidence=0.83, strength="strong", regime="volatile", reason="live test signal",
        member_probabilities={"transformer": {"long": 0.1, "flat": 0.2, "short": 0.7}},
        member_weights={"transformer": 1.0},
    )  # fmt: skip
    published_at = time.perf_counter()
    assert served.app.state.hub.publish(signal) == 1  # exactly this page is subscribed
    wait_for(
        browser,
        lambda d: dashboard_state(d)["market"]["lastLiveSignal"] == signal.event_id,
        5,
        "the live signal did not reach the page",
    )
    seen_after = time.perf_counter() - published_at
    assert browser.find_element("id", "signal-reason").text == "live test signal"
    assert browser.find_element("id", "signal-direction").text.lower() == "short"
    assert dashboard_state(browser)["market"]["markers"] == before + 1
    browser.save_screenshot(str(artifacts / "live-signal.png"))
    (artifacts / "live-signal-latency.txt").write_text(f"{seen_after * 1000:.0f} ms from publish to the page\n")


def test_a_backtest_started_from_the_page_completes_with_its_equity_curve(
    browser: Any, served: Served, artifacts: Path
) -> None:
    from selenium.webdriver.support.ui import Select

    open_dashboard(browser, served)
    browser.execute_script("window.smartmarketDashboard.selectTab('backtest')")
    key = browser.find_element("id", "api-key")
    key.clear()
    key.send_keys(API_KEY)
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", key)
    symbols = browser.find_element("id", "bt-symbols")
    symbols.clear()
    symbols.send_keys("BTCUSDT")
    Select(browser.find_element("id", "bt-timeframe")).select_by_visible_text("4h")
    Select(browser.find_element("id", "bt-strategy")).select_by_value("sma_cross")
    params = browser.find_element("id", "bt-params")
    params.clear()
    params.send_keys("fast=10, slow=30")
    browser.find_element("id", "bt-start").send_keys("01012022")
    browser.find_element("id", "bt-run").click()
    wait_for(
        browser,
        lambda d: (dashboard_state(d)["backtest"]["job"] or {}).get("state") in ("succeeded", "failed"),
        60,
        "the backtest did not finish",
    )
    wait_for(browser, lambda d: dashboard_state(d)["backtest"]["equityPoints"] > 0, 10, "no equity curve drawn")
    state = dashboard_state(browser)["backtest"]
    assert state["job"]["state"] == "succeeded"
    result = httpx.get(f"{served.url}/api/backtests/{state['job']['id']}/result").json()
    assert result["symbols"] == ["BTCUSDT"] and result["timeframe"] == "4h"
    assert result["params"] == {"fast": 10, "slow": 30}
    assert result["provenance"]["requested_range"]["start"] == "2022-01-01T00:00:00Z"
    assert state["equityPoints"] == state["drawdownPoints"] == len(result["equity"])
    trade_rows = browser.find_elements("css selector", "#trades-table tbody tr")
    assert len(trade_rows) == min(len(result["trades"]), 200) > 0
    months = browser.find_elements("css selector", "#monthly-table tbody tr")
    assert len(months) == len({m["month"][:4] for m in result["monthly_returns"]})
    total = browser.find_element("id", "bt-metrics").text
    assert f"{result['metrics']['total_return'] * 100:.1f}%" in total
    browser.execute_script("document.getElementById('bt-results').scrollIntoView()")
    browser.save_screenshot(str(artifacts / "backtest.png"))
    assert np.isfinite(result["final_equity"])


def test_pipeline_tab_says_not_running_until_a_pipeline_registers(
    browser: Any, served: Served, artifacts: Path
) -> None:
    open_dashboard(browser, served)
    browser.execute_script("window.smartmarketDashboard.selectTab('pipeline')")
    wait_for(browser, lambda d: "Not running" in d.find_element("id", "pipeline-body").text, 10, "no pipeline status")
    health = browser.find_element("id", "health-table").text
    assert "duckdb store reachable, 1 series" in health
    browser.save_screenshot(str(artifacts / "pipeline.png"))


def panel_texts(driver: Any) -> dict[str, str]:
    ids = "['signal-body', 'quality-body']"
    script = f"return Object.fromEntries({ids}.map((id) => [id, document.getElementById(id).textContent]))"
    texts: dict[str, str] = driver.execute_script(script)
    return texts


def test_opens_on_a_stored_series_and_every_panel_has_an_empty_state(
    browser: Any, tmp_path: Path, shared_data: Path
) -> None:
    """Only ETHUSDT 4h stored, no signals: the page opens on ETHUSDT 4h (not the 1h it cannot serve), shows no
    error, and the signal panels say there is nothing instead of "loading…"; an empty store says so too."""
    settings = Settings(home=tmp_path)
    with open_store(settings.store_url) as store:
        ingest_file(store, shared_data / "ETHUSDT-4h.csv.gz", quarantine_dir=settings.quarantine_dir)
        with serving(create_app(settings, store=store, security=SecurityConfig())) as url:
            browser.get(f"{url}/")
            loaded = "return document.body.dataset.loaded"
            wait_for(browser, lambda d: d.execute_script(loaded) == "ETHUSDT/4h", 30, "did not open on ETHUSDT 4h")
            assert dashboard_state(browser)["market"]["candles"] == CHART_BARS
            assert not browser.find_element("id", "error").is_displayed()
            wait_for(browser, lambda d: "loading" not in " ".join(panel_texts(d).values()), 10, "a panel kept loading")
            assert "No signals for this series yet" in panel_texts(browser)["signal-body"]
            browser.execute_script("window.smartmarketDashboard.selectTab('pipeline')")
            health = "return document.getElementById('health-body').textContent"
            wait_for(browser, lambda d: "loading" not in d.execute_script(health), 10, "health kept loading")
            assert "not configured" in browser.execute_script(health)  # no bus: shown as such, not an error

    empty_home = tmp_path / "empty"
    empty_home.mkdir()
    with (
        open_store(Settings(home=empty_home).store_url) as empty,
        serving(create_app(Settings(home=empty_home), store=empty, security=SecurityConfig())) as url,
    ):
        browser.get(f"{url}/?symbol=BTCUSDT&timeframe=1h")
        wait_for(browser, lambda d: "No data" in panel_texts(d)["signal-body"], 30, "empty store: panels loading")
        assert "No data" in panel_texts(browser)["quality-body"]
