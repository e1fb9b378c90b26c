"""One candle file, two drivers: ``backtest`` and ``run`` give identical fills (issue 13 item 4).

The same candles go through the backtest runner (the synchronous driver: the kernel, its paper broker) and
through the live pipeline (risk stage → ``SubmitOrder`` → execution stage → ``OrderFilled`` in the event store),
on the in-process bus, on a real Redis bus, and with every consumer stage in a separate ``smartmarket worker``
process on Redis, stopped with SIGTERM at the end. Both size an order at the
decision close (``order_quantity``) and reverse a position in two legs (close, then open), so every fill — time,
side, quantity, price, fee — is the same for ``sma_cross``, ``rsi_reversion`` and an ensemble.

Protective exits (stop-loss, take-profit, trailing stop) fill inside their bar in both: the risk stage sends the
exit its decision model took as a stop (or limit) order, which the paper execution stage fills at that level
inside the same candle; sma_cross with percent exits and an ensemble whose ATR barriers are touched show it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from smartmarket.backtest.runner import run_backtest
from smartmarket.bus.inprocess import InProcessBus
from smartmarket.bus.redis_streams import RedisStreamsBus
from smartmarket.bus.topics import StreamNames
from smartmarket.core.events import Message, OrderFilled, SubmitOrder
from smartmarket.execution.orders import Fill
from smartmarket.execution.risk import exits_from_percent
from smartmarket.models.labels import LabelConfig
from smartmarket.pipeline.live import LivePipeline, RunOptions
from smartmarket.pipeline.replay import replay
from smartmarket.pipeline.sources import FileSource
from smartmarket.pipeline.stages import CONSUMER_STAGES, ArtifactEngines, PipelineSpec, TradingConfig, stage_inputs
from smartmarket.pipeline.stages.base import EventLog, append_new
from smartmarket.pipeline.stages.candles import candle_closed
from smartmarket.pipeline.stages.execution import ExecutionStage
from smartmarket.pipeline.stages.risk import RiskStage
from smartmarket.pipeline.stages.spec import StrategyChoice
from smartmarket.signals.fit import default_system_config, fit_artifact, save_artifact
from smartmarket.signals.members import SMCMember, TechnicalMember
from smartmarket.store.base import EventStore
from smartmarket.store.url import open_store
from smartmarket.strategies.ensemble import EnsembleStrategy

SYMBOL = "BTCUSDT"
REPO = Path(__file__).resolve().parents[2]
ROWS = 600
FIT_ROWS = 1_500
ENSEMBLE_ROWS = 250
TRADING = TradingConfig(limits=None)
STRATEGIES: dict[str, dict[str, Any]] = {
    "sma_cross": {"fast": 5, "slow": 20},
    "rsi_reversion": {"period": 7, "lower": 35.0, "upper": 65.0},
}
FillKey = tuple[int, str, float, float, float]


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    """Real hourly candles: their opens differ from the previous close, so sizing at the open would show."""
    return pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz").iloc[20_000 : 20_000 + ROWS].reset_index(drop=True)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, pd.DataFrame]:
    """A trade-happy ensemble artifact and the real candles after its fitting window (barriers out of reach)."""
    return fit_ensemble(tmp_path_factory, shared_data, LabelConfig(horizon=12, take_profit=50.0, stop_loss=50.0))


@pytest.fixture(scope="module")
def ensemble_with_barriers(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, pd.DataFrame]:
    """The same with ATR barriers its trades touch: protective exits inside the bar."""
    return fit_ensemble(tmp_path_factory, shared_data, LabelConfig(horizon=12, take_profit=1.5, stop_loss=1.0))


def fit_ensemble(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path, barriers: LabelConfig
) -> tuple[Path, pd.DataFrame]:
    registry = tmp_path_factory.mktemp("registry")
    rows = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz").iloc[30_000 : 30_000 + FIT_ROWS + ENSEMBLE_ROWS]
    frame = rows.reset_index(drop=True)
    config = default_system_config(
        ensemble="stacking", strength_targets=(0.0, 0.0, 0.0), regime_target=0.0, z=0.0, min_count=5,
        require_skill=False,
    )  # fmt: skip
    labels = replace(barriers, time_barrier="sign")
    artifact = fit_artifact(
        frame.iloc[:FIT_ROWS], [TechnicalMember(), SMCMember()], symbol=SYMBOL, timeframe="1h",
        label_config=labels, config=config,
    )  # fmt: skip
    save_artifact(artifact, registry)
    return registry, frame.iloc[FIT_ROWS:].reset_index(drop=True)


EXITS = {
    "stop_and_target": exits_from_percent(stop_loss=1.0, take_profit=2.0),
    "trailing": exits_from_percent(trailing_stop=1.5),
}
PROTECTIVE = {"stop_loss", "take_profit", "trailing_stop"}


def backtest_fills(fills: list[Fill]) -> list[FillKey]:
    return [(f.ts, f.side, f.quantity, f.price, f.fee) for f in fills]


def live_fills(
    spec: PipelineSpec, frame: pd.DataFrame, tmp_path: Path, redis_url: str | None, *, replayed: bool = False
) -> list[FillKey]:
    """The run's recorded fills; ``replayed``: and its replay regenerates every order and fill identically."""
    store = open_store(f"duckdb:///{tmp_path / f'events-{uuid.uuid4().hex[:8]}.duckdb'}")

    async def go() -> None:
        bus: Any = (
            InProcessBus() if redis_url is None else RedisStreamsBus(redis_url, namespace=f"t{uuid.uuid4().hex[:10]}")
        )
        try:
            pipeline = LivePipeline(spec, store, bus, options=RunOptions(drain_timeout_s=60))
            summary = await pipeline.run(FileSource({SYMBOL: frame}))
            assert summary.drained, summary.not_idle
        finally:
            if redis_url is not None:
                await bus.delete_namespace()
                await bus.close()

    try:
        asyncio.run(go())
        if replayed:
            report = replay(store, spec)
            assert report.identical, [d.describe() for d in report.differences[:5]]
            assert report.compared.get("OrderFilled", 0) > 10
        return recorded_fills(store)
    finally:
        store.close()


def recorded_fills(store: EventStore) -> list[FillKey]:
    fills = [e.message for e in store.read_events(types=["OrderFilled"])]
    out = [(m.ts_event, m.side, m.quantity, m.price, m.fee) for m in fills if isinstance(m, OrderFilled)]
    return sorted(out, key=lambda f: f[0])  # stable: a reversal's close leg stays before its open leg


def assert_same_fills(live: list[FillKey], backtest: list[FillKey]) -> None:
    assert len(backtest) > 10  # the comparison covers real trading, reversals included
    assert len(live) == len(backtest), (len(live), len(backtest))
    for k, (a, b) in enumerate(zip(live, backtest, strict=True)):
        assert (a[0], a[1]) == (b[0], b[1]), (k, a, b)
        assert a[2] == pytest.approx(b[2], rel=1e-9), (k, a, b)
        assert a[3] == pytest.approx(b[3], rel=1e-12), (k, a, b)
        assert a[4] == pytest.approx(b[4], rel=1e-9), (k, a, b)


def has_reversal(fills: list[FillKey]) -> bool:
    return any(a[0] == b[0] and a[1] == b[1] for a, b in itertools.pairwise(fills))


@pytest.mark.parametrize("bus", ["inprocess", "redis"])
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_strategy_fills_the_same_in_backtest_and_run(
    name: str, bus: str, candles: pd.DataFrame, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    params = STRATEGIES[name]
    expected = backtest_fills(
        run_backtest(candles, name, params=params, config=TRADING.kernel_config(), symbol=SYMBOL).fills
    )
    redis_url = request.getfixturevalue("redis_server") if bus == "redis" else None
    spec = PipelineSpec.build([SYMBOL], "1h", None, TRADING, strategy=StrategyChoice(name, params))
    assert_same_fills(live_fills(spec, candles, tmp_path, redis_url), expected)
    if name == "sma_cross":
        assert has_reversal(expected)  # a long → short flip is two fills at one open, in both drivers


@pytest.mark.parametrize(("exits", "bus"), [("stop_and_target", "redis"), ("trailing", "inprocess")])
def test_protective_exits_fill_inside_their_bar_in_backtest_and_run(
    exits: str, bus: str, candles: pd.DataFrame, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    trading = replace(TRADING, risk=EXITS[exits])
    params = STRATEGIES["sma_cross"]
    result = run_backtest(candles, "sma_cross", params=params, config=trading.kernel_config(), symbol=SYMBOL)
    taken = {f.reason for f in result.fills} & PROTECTIVE
    assert taken == ({"stop_loss", "take_profit"} if exits == "stop_and_target" else {"trailing_stop"})
    redis_url = request.getfixturevalue("redis_server") if bus == "redis" else None
    spec = PipelineSpec.build([SYMBOL], "1h", None, trading, strategy=StrategyChoice("sma_cross", params))
    live = live_fills(spec, candles, tmp_path, redis_url, replayed=True)
    assert_same_fills(live, backtest_fills(result.fills))


def test_a_decision_held_for_its_exit_is_released_when_the_answer_is_only_in_the_log(candles: pd.DataFrame) -> None:
    """The risk stage's answers consumer lags (or a restarted worker's has not met the answer yet): the exit's fill
    reaches the stage only through the event log. The decision held back for it must still leave, sized against
    the book holding that fill, before the next candle's decision — the backtest's fills, exactly."""
    trading = replace(TRADING, risk=EXITS["stop_and_target"])
    params = STRATEGIES["sma_cross"]
    result = run_backtest(candles, "sma_cross", params=params, config=trading.kernel_config(), symbol=SYMBOL)
    same_bar = {f.ts for f in result.fills if f.reason in PROTECTIVE} & {
        f.ts for f in result.fills if f.reason == "signal"
    }  # an exit and a decision at one candle: fills at its open (the exit) and the next open (the decision)
    spec = PipelineSpec.build([SYMBOL], "1h", None, trading, strategy=StrategyChoice("sma_cross", params))
    store = open_store("duckdb:///:memory:")
    risk, execution = RiskStage(spec, EventLog(store)), ExecutionStage(spec, None)

    async def to_execution(orders: Sequence[Message]) -> None:  # answers go to the log only, never to the stage
        append_new(store, list(orders))
        for order in orders:
            append_new(store, execution.step(order))

    risk.publisher = to_execution
    released_late = 0

    async def go() -> None:
        nonlocal released_late
        for row in candles.itertuples():
            ts, o, h, lo, c, v = int(row.ts), row.open, row.high, row.low, row.close, row.volume
            candle = candle_closed(SYMBOL, spec.timeframe, ts, o, h, lo, c, v)
            append_new(store, [*execution.step(candle), candle])
            outputs = await risk.handle(candle)
            released_late += sum(isinstance(m, SubmitOrder) and m.ts_event < candle.ts_event for m in outputs)
            await to_execution([m for m in outputs if isinstance(m, SubmitOrder)])

    try:
        asyncio.run(go())
        assert recorded_fills(store) and len(same_bar) > 0
        assert_same_fills(recorded_fills(store), backtest_fills(result.fills))
        assert released_late == 0  # each held decision left through the publisher, before the next decision
    finally:
        store.close()


@pytest.mark.parametrize(
    ("barriers", "bus"), [("out_of_reach", "inprocess"), ("out_of_reach", "redis"), ("touched", "inprocess")]
)  # touched on Redis: the killed-risk-worker test (tests/integration/test_pipeline_faults.py) trades exits there
def test_the_ensemble_fills_the_same_in_backtest_and_run(
    barriers: str, bus: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Barriers out of reach: every exit is a signal's; touched: stop and target exits inside the bar too."""
    touched = barriers == "touched"
    registry, frame = request.getfixturevalue("ensemble_with_barriers" if touched else "ensemble")
    strategy = EnsembleStrategy(artifact="latest", timeframe="1h", registry=str(registry))
    result = run_backtest(frame, lambda _s: strategy, config=TRADING.kernel_config(), symbol=SYMBOL)
    reasons = {f.reason for f in result.fills}
    assert reasons >= {"stop_loss", "take_profit"} if touched else reasons == {"signal"}
    redis_url = request.getfixturevalue("redis_server") if bus == "redis" else None
    spec = PipelineSpec.build([SYMBOL], "1h", ArtifactEngines(registry, "1h"), TRADING)
    live = live_fills(spec, frame, tmp_path, redis_url, replayed=touched)
    assert_same_fills(live, backtest_fills(result.fills))


def start_stage_worker(
    stage: str, system: list[str], bus_url: str, store_url: str, home: Path, logs: Path
) -> subprocess.Popen[bytes]:
    """``smartmarket worker STAGE`` trading ``system`` (its CLI options); ``--no-risk-checks`` and the CLI's
    default cash, fees and slippage: TRADING. Its stderr goes to a file (an unread pipe can block a worker)."""
    cmd = [
        sys.executable, "-m", "smartmarket.cli.app", "--store", store_url, "--home", str(home),
        "worker", stage, "--bus", bus_url, "--symbols", SYMBOL, "--timeframe", "1h", *system,
        "--no-risk-checks", "--consumer", f"{stage}-1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with open(logs / f"{stage}.log", "wb") as stderr:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def log_tail(logs: Path, stage: str) -> str:
    path = logs / f"{stage}.log"
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def fills_through_workers(
    spec: PipelineSpec, candles: pd.DataFrame, workers: dict[str, subprocess.Popen[bytes]], redis_url: str, ns: str,
    store_url: str, logs: Path,
) -> list[FillKey]:  # fmt: skip
    """Once every worker reads its first stream: the candles and the recorder here, until drained; the fills."""
    names = StreamNames(ns)
    client = redis.Redis.from_url(redis_url)
    first_input = {stage: topics[0] for stage, topics in stage_inputs(spec).items()}

    def reading(stage: str) -> bool:
        try:
            consumers = client.xinfo_consumers(names.stream(first_input[stage], SYMBOL), stage)
        except redis.ResponseError:  # the stream or its group is not declared yet
            return False
        return f"{stage}-1" in {c["name"].decode() for c in consumers}

    try:
        deadline = time.monotonic() + 120
        while not all(reading(stage) for stage in workers):
            for stage, proc in workers.items():
                assert proc.poll() is None, (stage, log_tail(logs, stage))
            assert time.monotonic() < deadline, "the stage workers never read their streams"
            time.sleep(0.05)
    finally:
        client.close()
    store = open_store(store_url)

    async def front() -> None:
        bus = RedisStreamsBus(redis_url, namespace=ns)
        try:
            options = RunOptions(stages=("candles", "recorder"), drain_timeout_s=120)
            summary = await LivePipeline(spec, store, bus, options=options).run(FileSource({SYMBOL: candles}))
            assert summary.drained, summary.not_idle
        finally:
            await bus.close()  # not the namespace: the workers still read it

    try:
        asyncio.run(front())
        return recorded_fills(store)
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", [*sorted(STRATEGIES), "ensemble"])
def test_a_system_fills_the_same_in_backtest_and_in_separate_worker_processes(
    name: str, candles: pd.DataFrame, redis_server: str, pg_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Every consumer stage of the system's deployment (the ensemble's features, predictions and signals too) in a
    ``worker`` process of its own on Redis and PostgreSQL; all stop within 10 s of SIGTERM."""
    if name == "ensemble":
        registry, frame = request.getfixturevalue("ensemble")
        strategy = EnsembleStrategy(artifact="latest", timeframe="1h", registry=str(registry))
        expected = backtest_fills(run_backtest(frame, lambda _s: strategy, config=TRADING.kernel_config(),
                                               symbol=SYMBOL).fills)  # fmt: skip
        spec = PipelineSpec.build([SYMBOL], "1h", ArtifactEngines(registry, "1h"), TRADING)
        system = ["--artifact", "latest", "--registry", str(registry)]
    else:
        frame, params = candles, STRATEGIES[name]
        # sma_cross with protective exits (the workers' --stop-loss/--take-profit): exits inside the bar
        exits = name == "sma_cross"
        trading = replace(TRADING, risk=EXITS["stop_and_target"]) if exits else TRADING
        result = run_backtest(frame, name, params=params, config=trading.kernel_config(), symbol=SYMBOL)
        assert exits == bool({f.reason for f in result.fills} & PROTECTIVE)
        expected = backtest_fills(result.fills)
        spec = PipelineSpec.build([SYMBOL], "1h", None, trading, strategy=StrategyChoice(name, params))
        system = ["--strategy", name, "--params", ",".join(f"{k}={v}" for k, v in params.items())]
        system += ["--stop-loss", "1", "--take-profit", "2"] if exits else []
    stages = [stage for stage in stage_inputs(spec) if stage in CONSUMER_STAGES]  # no recorder, no shadow
    assert ("features" in stages) == (name == "ensemble")
    ns = f"t{uuid.uuid4().hex[:10]}"
    logs = tmp_path / "logs"
    logs.mkdir()
    stage_workers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for stage in stages:
            bus_url = f"{redis_server}?namespace={ns}"
            stage_workers[stage] = start_stage_worker(stage, system, bus_url, pg_url, tmp_path / "home", logs)
        live = fills_through_workers(spec, frame, stage_workers, redis_server, ns, pg_url, logs)
        stop_deadline = time.monotonic() + 10
        for proc in stage_workers.values():
            proc.send_signal(signal.SIGTERM)
        for stage, proc in stage_workers.items():
            try:
                proc.wait(max(0.0, stop_deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"the {stage} worker did not exit within 10 s of SIGTERM")
            assert proc.returncode == 0, (stage, proc.returncode, log_tail(logs, stage))
    finally:
        for proc in stage_workers.values():  # only those a failure left running
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        client = redis.Redis.from_url(redis_server)  # the namespace goes once no worker can recreate it
        for key in client.scan_iter(match=StreamNames(ns).pattern(), count=1000):
            client.delete(key)
        client.close()
    assert_same_fills(live, expected)
    if name == "sma_cross":
        assert has_reversal(expected)  # a long → short flip: its close and open legs through the worker processes too
