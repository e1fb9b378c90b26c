"""Model rollout for real: promotion guarded by an out-of-sample evaluation, the pipeline on the production
artifact, and a shadow candidate on the same candles that is recorded but never trades (in-process and Redis)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from smartmarket.bus.base import Bus
from smartmarket.bus.inprocess import InProcessBus
from smartmarket.bus.redis_streams import RedisStreamsBus
from smartmarket.core.errors import ValidationError
from smartmarket.core.events import (
    PredictionMade,
    ShadowPredictionMade,
    ShadowSignalGenerated,
    SignalGenerated,
    SubmitOrder,
)
from smartmarket.core.types import Timeframe
from smartmarket.data.synthetic import generate_market
from smartmarket.models.labels import LabelConfig
from smartmarket.models.registry import EVALUATION_FILE, Registry
from smartmarket.ops.abtest import shadow_report
from smartmarket.ops.promotion import evaluate_and_attach
from smartmarket.pipeline.live import LivePipeline, RunOptions
from smartmarket.pipeline.sources import FileSource
from smartmarket.pipeline.stages import ArtifactEngines, PipelineSpec, TradingConfig
from smartmarket.pipeline.stages.chain import signal_matches
from smartmarket.signals.engine import SignalEngine
from smartmarket.signals.fit import default_system_config, fit_artifact, load_artifact, save_artifact
from smartmarket.signals.members import SMCMember, TechnicalMember
from smartmarket.signals.strength import SignalSystemConfig
from smartmarket.store.base import Store
from smartmarket.store.url import open_store

SYMBOL = "BTCUSDT"
FIT, LIVE = 1_500, 600


def _config(**kw: Any) -> SignalSystemConfig:
    return default_system_config(
        strength_targets=(0.0, 0.0, 0.0), regime_target=0.0, z=0.0, min_count=5,
        require_skill=False,  # synthetic rule members have no skill; these tests need signals and orders
        **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, str, str]:
    """A registry with two candidate artifacts fitted on the first FIT candles; all candles."""
    registry = tmp_path_factory.mktemp("registry")
    candles = generate_market(FIT + LIVE, seed=11, start_price=25_000.0)
    fit = candles.iloc[:FIT]
    labels = LabelConfig(horizon=12)
    a = fit_artifact(fit, [TechnicalMember(), SMCMember()], symbol=SYMBOL, timeframe="1m", label_config=labels,
                     config=_config(ensemble="stacking"))  # fmt: skip
    b = fit_artifact(fit, [TechnicalMember()], symbol=SYMBOL, timeframe="1m", label_config=labels,
                     config=_config(ensemble="stacking"))  # fmt: skip
    return registry, candles, save_artifact(a, registry), save_artifact(b, registry)


@pytest.fixture
def store(tmp_path: Path, market: tuple[Path, pd.DataFrame, str, str]) -> Store:
    _, candles, _, _ = market
    s = open_store(f"duckdb:///{tmp_path / 'store.duckdb'}")
    s.write_candles(SYMBOL, Timeframe.parse("1m"), candles)
    return s


def copy_registry(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_promotion_needs_a_current_evaluation(
    market: tuple[Path, pd.DataFrame, str, str], store: Store, tmp_path: Path
) -> None:
    source, _, a, b = market
    registry = Registry(copy_registry(source, tmp_path / "registry"))
    with pytest.raises(ValidationError, match="no evaluation is attached"):
        registry.promote(a)
    assert registry.show(a).stage == "candidate"

    first = evaluate_and_attach(registry.directory, store, a)
    assert first["against"] is None and first["candidate_id"] == a
    assert first["production"]["name"] == "no production: base rates" and first["production"]["signals"] == 0
    assert first["first_ts"] > load_artifact(registry.show(a).path).data["last_ts"]  # out of sample only
    assert first["candles"] > 400
    assert (registry.show(a).path / EVALUATION_FILE).is_file()
    promoted, retired = registry.promote(a)
    assert promoted.stage == "production" and retired is None
    assert registry.resolve(SYMBOL, "1m", "ensemble").model_id == a

    second = evaluate_and_attach(registry.directory, store, b)
    assert second["against"] == a
    assert second["production"]["model_id"] == a and second["candidate"]["model_id"] == b
    assert set(second["test"]) >= {"p_value", "statistic", "mean_difference"}

    # production changed after B was evaluated: the evaluation is stale
    registry.retire(a)
    with pytest.raises(ValidationError, match="evaluate again"):
        registry.promote(b)
    evaluate_and_attach(registry.directory, store, b)
    registry.promote(b)
    assert registry.show(b).stage == "production" and registry.show(a).stage == "retired"

    # an evaluation that found production significantly better refuses unless forced, and the force is recorded
    doc = evaluate_and_attach(registry.directory, store, a)
    doc["verdict"] = "production better"
    (registry.show(a).path / EVALUATION_FILE).write_text(json.dumps(doc))
    with pytest.raises(ValidationError, match="production significantly better"):
        registry.promote(a)
    registry.promote(a, force=True)
    history = registry.show(a).metadata["stage_history"]
    assert history[-1]["stage"] == "production" and "(forced)" in history[-1]["note"]
    assert registry.show(b).stage == "retired"


def test_evaluation_refuses_without_out_of_sample_candles(
    market: tuple[Path, pd.DataFrame, str, str], tmp_path: Path
) -> None:
    source, candles, a, _ = market
    registry = copy_registry(source, tmp_path / "registry")
    only_fit = open_store(f"duckdb:///{tmp_path / 'fit.duckdb'}")
    only_fit.write_candles(SYMBOL, Timeframe.parse("1m"), candles.iloc[:FIT])
    with pytest.raises(ValidationError, match="ingest newer candles"):
        evaluate_and_attach(registry, only_fit, a)
    assert not (Registry(registry).show(a).path / EVALUATION_FILE).exists()


def run_pipeline(spec: PipelineSpec, store: Store, redis_url: str | None, live: pd.DataFrame) -> None:
    """The whole pipeline over ``live`` on the in-process bus, or on real Redis Streams in a private namespace."""

    async def go() -> None:
        if redis_url is None:
            bus: Bus = InProcessBus()
        else:
            bus = RedisStreamsBus(redis_url, namespace=f"t{uuid.uuid4().hex[:10]}")
        try:
            pipeline = LivePipeline(spec, store, bus, options=RunOptions(drain_timeout_s=90))
            summary = await pipeline.run(FileSource({SYMBOL: live}))
            assert summary.drained and not summary.not_idle
        finally:
            if isinstance(bus, RedisStreamsBus):
                await bus.delete_namespace()
                await bus.close()

    asyncio.run(go())


def events_of(store: Store, type_name: str) -> list:
    return [e.message for e in store.read_events(types=[type_name])]


@pytest.mark.parametrize("bus_kind", ["memory", "redis"])
def test_shadow_is_recorded_and_never_trades(
    market: tuple[Path, pd.DataFrame, str, str], tmp_path: Path, bus_kind: str, request: pytest.FixtureRequest
) -> None:
    source, candles, a, b = market
    registry = Registry(copy_registry(source, tmp_path / "registry"))
    registry.set_stage(a, "production", note="test set-up")  # the guarded path is tested above
    live = candles.iloc[FIT:].reset_index(drop=True)
    trading = TradingConfig(limits=None)

    redis_url = request.getfixturevalue("redis_server") if bus_kind == "redis" else None
    production = ArtifactEngines(registry.directory, "1m", "production")
    with_shadow = open_store(f"duckdb:///{tmp_path / 'with.duckdb'}")
    without = open_store(f"duckdb:///{tmp_path / 'without.duckdb'}")
    shadow_spec = PipelineSpec.build([SYMBOL], "1m", production, trading,
                                     shadow=ArtifactEngines(registry.directory, "1m", b))  # fmt: skip
    run_pipeline(shadow_spec, with_shadow, redis_url, live)
    run_pipeline(PipelineSpec.build([SYMBOL], "1m", production, trading), without, redis_url, live)

    # production decided every candle and named itself; orders are exactly those of the run without a shadow
    signals = events_of(with_shadow, "SignalGenerated")
    assert len(signals) == LIVE and {s.model_id for s in signals} == {a}
    predictions = events_of(with_shadow, "PredictionMade")
    assert all(isinstance(p, PredictionMade) and p.model_id == a for p in predictions)
    orders = events_of(with_shadow, "SubmitOrder")
    assert len(orders) > 3
    assert [o.model_dump(exclude={"ts_init"}) for o in orders] == [
        o.model_dump(exclude={"ts_init"}) for o in events_of(without, "SubmitOrder")
    ]
    signal_ids = {s.event_id for s in signals}
    assert all(isinstance(o, SubmitOrder) and o.causation_id in signal_ids for o in orders)

    # the shadow: its own events, one signal per candle, equal to its engine run on the same candles
    shadow = sorted(events_of(with_shadow, "ShadowSignalGenerated"), key=lambda s: s.ts)
    assert len(shadow) == LIVE and all(isinstance(s, ShadowSignalGenerated) and s.model_id == b for s in shadow)
    assert len(events_of(with_shadow, "ShadowPredictionMade")) == LIVE  # B has one member
    assert all(isinstance(p, ShadowPredictionMade) for p in events_of(with_shadow, "ShadowPredictionMade"))
    assert sum(s.direction != "flat" for s in shadow) > 10
    reference = SignalEngine.from_artifact(load_artifact(registry.show(b).path), registry_dir=registry.directory)
    expected = reference.run(live)
    assert all(signal_matches(s, r) for s, r in zip(shadow, expected, strict=True))
    assert not events_of(without, "ShadowSignalGenerated")

    # ab-report pairs them by candle, with outcomes from the candles the pipeline saw
    report = shadow_report(with_shadow, registry_dir=registry.directory)
    (comparison,) = report["comparisons"]
    assert comparison["candidate_id"] == b and comparison["production_ids"] == a
    assert LIVE - 100 < comparison["candles"] < LIVE  # the last horizon's outcomes are not known yet
    assert comparison["verdict"] in ("candidate better", "production better", "no significant difference")
    assert isinstance(comparison["test"]["p_value"], float)
    assert isinstance(signals[0], SignalGenerated)
