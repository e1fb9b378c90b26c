"""A run ends even when a client library turns the cancellation of the pending-backlog sampler into its own
error (redis-py can): the sampler must not swallow it and live on, nor the shutdown wait for it unboundedly.
Before the fix such a run (``run --bus redis://…`` in the CLI tests) hung for ever after draining."""

from __future__ import annotations

import asyncio
from pathlib import Path

from smartmarket.bus.inprocess import InProcessBus
from smartmarket.data.synthetic import generate_market
from smartmarket.pipeline.live import RunOptions, run_file
from smartmarket.pipeline.stages import PipelineSpec, TradingConfig
from smartmarket.pipeline.stages.spec import StrategyChoice
from smartmarket.store.url import open_store


class CancellationEatingBus(InProcessBus):
    """``backlog`` waits, and answers its cancellation with a ConnectionError, as some clients do."""

    def __init__(self) -> None:
        super().__init__()
        self.sampled = 0

    async def backlog(self, topic: str, symbol: str) -> int:
        self.sampled += 1
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            raise ConnectionError("connection closed while reading") from None
        return await super().backlog(topic, symbol)


def test_a_run_ends_when_the_sampler_s_cancellation_becomes_an_error(tmp_path: Path) -> None:
    spec = PipelineSpec.build(
        ["BTCUSDT"],
        "1m",
        None,
        TradingConfig(limits=None),
        strategy=StrategyChoice("sma_cross", {"fast": 5, "slow": 20}),
    )
    frames = {"BTCUSDT": generate_market(300, seed=3)}
    bus = CancellationEatingBus()
    options = RunOptions(sample_every_s=0.0, stop_timeout_s=2.0, drain_timeout_s=30)

    async def go() -> object:
        return await asyncio.wait_for(run_file(spec, store, bus, frames, options=options), 60)

    with open_store(f"duckdb:///{tmp_path / 'events.duckdb'}") as store:
        summary = asyncio.run(go())
    assert getattr(summary, "drained", False) and bus.sampled > 0
