"""The run record: what a run runs, recorded once, rebuilt exactly (or refused with the fix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartmarket.core.errors import ConfigError
from smartmarket.core.events import RunStarted, from_json, to_json
from smartmarket.execution.fees import FeeModel
from smartmarket.execution.risk import RiskConfig
from smartmarket.execution.sizing import RiskPerTrade
from smartmarket.execution.slippage import FixedBps, SlippageModel, SlippageTracker, VolatilitySlippage
from smartmarket.pipeline.run_record import (
    find_run,
    record_run_started,
    run_started_event,
    spec_from_run,
    trading_fields,
    trading_from_fields,
)
from smartmarket.pipeline.stages.spec import FactoryEngines, PipelineSpec, StrategyChoice, TradingConfig
from smartmarket.store.url import open_store

UNUSUAL = TradingConfig(
    initial_cash=2_500.0, fees=FeeModel(maker=-0.0001, taker=0.0007), slippage=VolatilitySlippage(1.5, 0.1, 7),
    sizer=RiskPerTrade(0.02, 0.03, 0.8), risk=RiskConfig(stop_loss_pct=0.04, max_gross_exposure=1.5), max_size=0.6,
    limits=None, reconcile="adopt",
)  # fmt: skip


def strategy_spec(trading: TradingConfig = UNUSUAL, **params: object) -> PipelineSpec:
    choice = StrategyChoice("sma_cross", params or {"fast": 4, "slow": 9})
    return PipelineSpec.build(["btc/usdt", "ETHUSDT"], "15m", None, trading, strategy=choice)


def test_a_strategy_run_is_rebuilt_exactly_through_json(tmp_path: Path) -> None:
    spec = strategy_spec()
    event = run_started_event(spec, now_ms=1_700_000_000_000)
    back = from_json(to_json(event))
    assert isinstance(back, RunStarted) and back == event
    assert (back.symbols, str(back.timeframe), back.strategy, back.params) == (
        ["BTCUSDT", "ETHUSDT"], "15m", "sma_cross", {"fast": 4, "slow": 9},
    )  # fmt: skip
    rebuilt = spec_from_run(back, tmp_path)
    assert rebuilt.trading == UNUSUAL and rebuilt.strategy == spec.strategy
    assert [rebuilt.order_version(s) for s in rebuilt.symbols] == [spec.order_version(s) for s in spec.symbols]
    assert spec_from_run(back, tmp_path, symbols=["ETHUSDT"]).symbols == ("ETHUSDT",)
    with pytest.raises(ConfigError, match="did not run SOLUSDT"):
        spec_from_run(back, tmp_path, symbols=["SOLUSDT"])


def test_the_event_depends_on_what_runs_not_on_when() -> None:
    first = run_started_event(strategy_spec(), now_ms=1)
    assert run_started_event(strategy_spec(), now_ms=2).event_id == first.event_id
    assert run_started_event(strategy_spec(fast=5, slow=9)).event_id != first.event_id
    assert run_started_event(strategy_spec(TradingConfig())).event_id != first.event_id
    assert run_started_event(strategy_spec(), broker="ccxt:binance").event_id != first.event_id
    named = run_started_event(strategy_spec(), run_id="night-1")
    assert named.run_id == "night-1" and named.event_id != first.event_id


def test_recording_the_same_run_twice_adds_one_event(tmp_path: Path) -> None:
    with open_store(f"duckdb:///{tmp_path / 'log.duckdb'}") as store:
        assert find_run(store) is None
        assert record_run_started(store, run_started_event(strategy_spec(), now_ms=10)) is True
        assert record_run_started(store, run_started_event(strategy_spec(), now_ms=99)) is False  # a restart
        assert record_run_started(store, run_started_event(strategy_spec(fast=2, slow=3), now_ms=20)) is True
        runs = store.read_events(types=["RunStarted"])
        assert len(runs) == 2
        latest = find_run(store)
        assert latest is not None and latest.seq == runs[1].seq
        first = find_run(store, to_seq=runs[0].seq)
        assert first is not None and first.message == runs[0].message
        assert find_run(store, symbols=["SOLUSDT"]) is None
        assert isinstance(runs[0].message, RunStarted)
        by_id = find_run(store, run_id=runs[0].message.run_id[:6])
        assert by_id is not None and by_id.seq == runs[0].seq
        with pytest.raises(ConfigError, match="--run zz matches no run"):
            find_run(store, run_id="zz")


def test_an_ensemble_run_names_its_artifact_per_symbol() -> None:
    engines = FactoryEngines(lambda symbol: None, "art-7")  # type: ignore[arg-type, return-value]
    spec = PipelineSpec.build(["BTCUSDT"], "1h", engines, TradingConfig())
    event = run_started_event(spec)
    assert event.artifacts == {"BTCUSDT": "art-7"} and event.strategy is None
    assert event.versions["signals"] == {"BTCUSDT": "art-7"}
    assert event.versions["orders"] == {"BTCUSDT": spec.order_version("BTCUSDT")}


def test_a_configuration_that_does_not_rebuild_to_its_fingerprint_is_refused() -> None:
    fields = trading_fields(UNUSUAL)
    assert trading_from_fields(fields, UNUSUAL.fingerprint()) == UNUSUAL
    with pytest.raises(ConfigError, match="fingerprint"):
        trading_from_fields({**fields, "initial_cash": 2_501.0}, UNUSUAL.fingerprint())
    with pytest.raises(ConfigError, match="incomplete or malformed"):
        trading_from_fields({k: v for k, v in fields.items() if k != "fees"})
    with pytest.raises(ConfigError, match="slippage model 'Teleport'"):
        trading_from_fields({**fields, "slippage": {"model": "Teleport", "bps": 1.0}})


class _Custom(SlippageModel):
    def tracker(self) -> SlippageTracker:
        return FixedBps(1.0).tracker()


def test_a_model_replay_cannot_rebuild_is_named() -> None:
    fields = trading_fields(TradingConfig(slippage=_Custom()))
    assert fields["slippage"]["model"] == "_Custom"
    with pytest.raises(ConfigError, match=r"slippage model '_Custom'.*cannot rebuild"):
        trading_from_fields(fields)
