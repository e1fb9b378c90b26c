"""The live pipeline end to end: every event recorded with its chain, and parity with the backtest.

Parity (``docs/pipeline.md``): the signals the pipeline produces from candles equal ``SignalEngine.run`` on the
same candles bit for bit, on the in-process bus and on Redis; the risk stage's orders are the ``ensemble``
strategy's orders in the backtest kernel (same decision times, same target fractions).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from smartmarket.backtest.runner import run_kernel
from smartmarket.bus.inprocess import InProcessBus
from smartmarket.bus.redis_streams import RedisStreamsBus
from smartmarket.core.events import CandleClosed, SignalGenerated, SubmitOrder
from smartmarket.data.synthetic import generate_market
from smartmarket.engine.kernel import Kernel
from smartmarket.models.labels import LabelConfig
from smartmarket.pipeline.live import LivePipeline, RunOptions, demo_paper_trading
from smartmarket.pipeline.sources import FileSource
from smartmarket.pipeline.stages import ArtifactEngines, PipelineSpec, RiskStage, TradingConfig
from smartmarket.pipeline.stages.chain import signal_matches
from smartmarket.signals.fit import default_system_config, fit_artifact, save_artifact
from smartmarket.signals.members import SMCMember, TechnicalMember
from smartmarket.store.url import open_store
from smartmarket.strategies.ensemble import EnsembleStrategy

SYMBOLS = ("BTCUSDT", "ETHUSDT")
FIT_ROWS = 1_500
LIVE_ROWS = 250


def fit_registry(registry: Path, symbols: tuple[str, ...] = SYMBOLS) -> dict[str, pd.DataFrame]:
    """Fit and save one (trade-happy) ensemble artifact per symbol; returns each symbol's live candles."""
    frames = {}
    for k, symbol in enumerate(symbols):
        candles = generate_market(FIT_ROWS + LIVE_ROWS, seed=3 + k, start_price=30_000.0 / (k + 1))
        config = default_system_config(
            ensemble="stacking",
            strength_targets=(0.0, 0.0, 0.0),
            regime_target=0.0,
            z=0.0,
            min_count=5,
            require_skill=False,  # synthetic members have no skill; these tests need orders to flow
        )
        artifact = fit_artifact(
            candles.iloc[:FIT_ROWS], [TechnicalMember(), SMCMember()], symbol=symbol, timeframe="1m",
            label_config=LabelConfig(horizon=12), config=config,
        )  # fmt: skip
        save_artifact(artifact, registry)
        frames[symbol] = candles.iloc[FIT_ROWS:].reset_index(drop=True)
    return frames


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pd.DataFrame]]:
    registry = tmp_path_factory.mktemp("registry")
    return registry, fit_registry(registry)


def make_spec(registry: Path, symbols: tuple[str, ...] = SYMBOLS) -> PipelineSpec:
    return PipelineSpec.build(symbols, "1m", ArtifactEngines(registry, "1m"), TradingConfig(limits=None))


def run(spec: PipelineSpec, store: object, bus: object, frames: dict[str, pd.DataFrame]) -> LivePipeline:
    pipeline = LivePipeline(spec, store, bus, options=RunOptions(drain_timeout_s=60))  # type: ignore[arg-type]
    summary = asyncio.run(pipeline.run(FileSource(frames)))
    assert summary.drained and not summary.not_idle
    return pipeline


def recorded_signals(store: object, symbol: str) -> list[SignalGenerated]:
    events = [e.message for e in store.read_events(types=["SignalGenerated"])]  # type: ignore[attr-defined]
    return sorted((m for m in events if isinstance(m, SignalGenerated) and m.symbol == symbol), key=lambda m: m.ts)


def assert_parity(spec: PipelineSpec, store: object, frames: dict[str, pd.DataFrame]) -> None:
    for symbol, frame in frames.items():
        reference = spec.engines.engine(symbol).run(frame)
        live = recorded_signals(store, symbol)
        assert [s.ts for s in live] == frame["ts"].tolist()
        assert sum(s.direction != "flat" for s in live) > 10  # the comparison covers real decisions
        mismatched = [s.ts for s, r in zip(live, reference, strict=True) if not signal_matches(s, r)]
        assert mismatched == []


def test_inprocess_run_records_every_event_with_its_chain(
    setup: tuple[Path, dict[str, pd.DataFrame]], tmp_path: Path
) -> None:
    registry, frames = setup
    spec = make_spec(registry)
    store = open_store(f"duckdb:///{tmp_path / 'events.duckdb'}")
    pipeline = run(spec, store, InProcessBus(), frames)
    summary = pipeline.summary

    stored = store.read_events()
    seqs = [e.seq for e in stored]
    assert seqs == list(range(1, len(stored) + 1))
    assert stored[0].message.type_name == "RunStarted"  # the run records what it runs, then the recorder the rest
    stored = stored[1:]
    assert summary.recorded == len(stored)
    assert len({e.message.event_id for e in stored}) == len(stored)
    by_type: dict[str, int] = {}
    for e in stored:
        by_type[e.message.type_name] = by_type.get(e.message.type_name, 0) + 1
    n = sum(len(f) for f in frames.values())
    assert by_type["CandleClosed"] == by_type["FeaturesComputed"] == by_type["SignalGenerated"] == n
    assert by_type["PredictionMade"] == 2 * n
    assert by_type["SubmitOrder"] > 4
    # every order left the risk stage with a real quantity and was filled at the next candle's open
    orders = [e.message for e in stored if isinstance(e.message, SubmitOrder)]
    assert all(o.quantity > 0 for o in orders)
    assert (
        by_type["OrderFilled"]
        == by_type["OrderSubmitted"]
        == by_type["PositionChanged"]
        == len(orders) - (summary.orders_waiting)
    )

    # one order's whole chain: candle → features → predictions → signal → order → submitted → fill → position
    order = orders[0]
    chain = store.read_events(correlation_id=order.correlation_id)
    types = [e.message.type_name for e in chain]
    for expected in ("CandleClosed", "FeaturesComputed", "PredictionMade", "SignalGenerated", "SubmitOrder"):
        assert expected in types
    root = chain[types.index("CandleClosed")].message
    assert isinstance(root, CandleClosed) and root.event_id == order.correlation_id and root.causation_id is None
    ids = {e.message.event_id for e in chain}
    assert all(e.message.causation_id in ids for e in chain if e.message is not root)
    fill = next(m for m in (e.message for e in store.read_events(types=["OrderFilled"])) if m.causation_id)
    fills_chain = [e.message.type_name for e in store.read_events(correlation_id=fill.correlation_id)]
    assert {"SubmitOrder", "OrderSubmitted", "OrderFilled", "PositionChanged"} <= set(fills_chain)
    next_open = {int(ts): o for f in frames.values() for ts, o in zip(f["ts"], f["open"], strict=True)}
    filled = [m for m in (e.message for e in stored) if m.type_name == "OrderFilled"]
    assert all(f.ts_event in next_open for f in filled)  # stamped with the fill candle's open time

    assert_parity(spec, store, frames)
    store.close()


def test_redis_bus_signals_equal_the_backtest_bit_for_bit(
    setup: tuple[Path, dict[str, pd.DataFrame]], redis_server: str, tmp_path: Path
) -> None:
    registry, frames = setup
    spec = make_spec(registry)
    store = open_store(f"duckdb:///{tmp_path / 'events.duckdb'}")

    async def go() -> None:
        bus = RedisStreamsBus(redis_server, namespace=f"t{uuid.uuid4().hex[:10]}")
        try:
            pipeline = LivePipeline(spec, store, bus, options=RunOptions(drain_timeout_s=60))
            summary = await pipeline.run(FileSource(frames))
            assert summary.drained
        finally:
            await bus.delete_namespace()
            await bus.close()

    asyncio.run(go())
    assert_parity(spec, store, frames)
    store.close()


def test_risk_stage_orders_are_the_ensemble_strategys_orders_in_the_kernel(
    setup: tuple[Path, dict[str, pd.DataFrame]], tmp_path: Path
) -> None:
    registry, frames = setup
    symbol = SYMBOLS[0]
    spec = make_spec(registry, (symbol,))
    store = open_store(f"duckdb:///{tmp_path / 'events.duckdb'}")
    pipeline = run(spec, store, InProcessBus(), {symbol: frames[symbol]})
    risk = next(s for s in pipeline.stages if isinstance(s, RiskStage))
    live_orders = risk.accounts[symbol].kernel.orders

    strategy_kernel = Kernel(
        lambda _s: EnsembleStrategy(artifact="latest", timeframe="1m", registry=str(registry)),
        spec.trading.kernel_config(),
    )
    run_kernel(strategy_kernel, {symbol: frames[symbol]})
    backtest_orders = strategy_kernel.orders

    assert len(backtest_orders) > 4
    assert [(o.created_ts, o.target_fraction, o.stop_loss, o.take_profit) for o in live_orders] == [
        (o.created_ts, o.target_fraction, o.stop_loss, o.take_profit) for o in backtest_orders
    ]
    # and each kernel decision left the pipeline as one SubmitOrder at that candle's close
    sent = {m.ts_event - spec.timeframe.ms for m in (e.message for e in store.read_events(types=["SubmitOrder"]))}
    assert {o.created_ts for o in backtest_orders} <= sent
    store.close()


def test_demo_paper_trading_reports_the_final_position(setup: tuple[Path, dict[str, pd.DataFrame]]) -> None:
    registry, frames = setup
    symbol = SYMBOLS[0]
    engines = make_spec(registry, (symbol,)).engines
    engine, artifact_id = engines.engine(symbol), engines.version(symbol)
    store = open_store("duckdb:///:memory:")
    summary = demo_paper_trading(store, frames[symbol], symbol, "1m", engine, artifact_id=artifact_id)
    assert summary["drained"] and summary["candles"] == len(frames[symbol])
    signals = recorded_signals(store, symbol)  # they name the artifact traded, not a placeholder
    assert signals and {s.model_id for s in signals} == {artifact_id} and artifact_id.startswith("ensemble")
    fills = [e.message for e in store.read_events(types=["OrderFilled"])]
    assert len(fills) > 4
    position = summary["position"]
    last = store.read_events(types=["PositionChanged"])[-1].message
    assert position["quantity"] == last.quantity and position["cash"] == last.cash  # type: ignore[attr-defined]
    assert engine.bar == -1  # the caller's engine was copied, not consumed
    store.close()


def test_a_pipeline_that_stops_making_progress_is_reported_not_drained(
    setup: tuple[Path, dict[str, pd.DataFrame]],
) -> None:
    """Only the source and features run here while the deployment declares every stage: the backlog stops
    shrinking, so the run gives up after ``drain_timeout_s`` without progress and says so."""
    registry, frames = setup
    options = RunOptions(stages=("candles", "features"), drain_timeout_s=0.5)
    pipeline = LivePipeline(make_spec(registry), None, InProcessBus(), options=options)
    started = time.monotonic()
    summary = asyncio.run(pipeline.run(FileSource({SYMBOLS[0]: frames[SYMBOLS[0]].iloc[:20]})))
    assert not summary.drained and summary.not_idle == ["bus backlog"]
    assert summary.candles == 20 and time.monotonic() - started < 30
