"""Exact replay: an untouched log replays identically (signals, orders, fills, positions); a tampered or incomplete
one is reported, field by field; what ran comes from the run's own record (RunStarted)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smartmarket.bus.inprocess import InProcessBus
from smartmarket.cli.app import app
from smartmarket.core.errors import ConfigError
from smartmarket.core.events import CandleClosed, OrderFilled, RunStarted, SubmitOrder, from_dict
from smartmarket.data.synthetic import generate_market
from smartmarket.models.labels import LabelConfig
from smartmarket.pipeline.live import LivePipeline, RunOptions
from smartmarket.pipeline.replay import replay, replay_run
from smartmarket.pipeline.run_record import record_run_started, run_started_event
from smartmarket.pipeline.sources import FileSource
from smartmarket.pipeline.stages import ArtifactEngines, PipelineSpec, TradingConfig
from smartmarket.signals.fit import default_system_config, fit_artifact, save_artifact
from smartmarket.signals.members import SMCMember, TechnicalMember
from smartmarket.store.base import StoredEvent
from smartmarket.store.duckdb_store import DuckDBStore
from smartmarket.store.url import open_store

SYMBOL = "BTCUSDT"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineSpec, Path]:
    """A DuckDB event log of one paper-trading run (300 one-minute candles) and the spec that made it; the registry
    is beside the log (``registry_of``)."""
    base = tmp_path_factory.mktemp("replay")
    candles = generate_market(1_800, seed=5)
    config = default_system_config(
        ensemble="stacking",
        strength_targets=(0.0, 0.0, 0.0),
        regime_target=0.0,
        z=0.0,
        min_count=5,
        require_skill=False,  # synthetic members have no skill; these tests need orders to flow
    )
    artifact = fit_artifact(
        candles.iloc[:1_500], [TechnicalMember(), SMCMember()], symbol=SYMBOL, timeframe="1m",
        label_config=LabelConfig(horizon=12), config=config,
    )  # fmt: skip
    save_artifact(artifact, base / "registry")
    spec = PipelineSpec.build([SYMBOL], "1m", ArtifactEngines(base / "registry", "1m"), TradingConfig())
    path = base / "events.duckdb"
    store = open_store(f"duckdb:///{path}")
    record_run_started(store, run_started_event(spec))  # as a run does, before its first candle
    pipeline = LivePipeline(spec, store, InProcessBus(), options=RunOptions(drain_timeout_s=60))
    summary = asyncio.run(pipeline.run(FileSource({SYMBOL: candles.iloc[1_500:].reset_index(drop=True)})))
    assert summary.drained
    store.close()
    return spec, path


def registry_of(path: Path) -> Path:
    return path.parent / "registry"


def copy_log(
    source: Path, target: Path, change: dict[str, object] | None = None, drop: str | None = None,
    changed_type: str = "SignalGenerated", drop_all: bool = False,
) -> str:  # fmt: skip
    """Copy every event into a fresh log (same seqs), changing the first non-flat signal (or the first event of
    ``changed_type``) or dropping one type's first event (every one with ``drop_all``); returns the id of the event
    changed or dropped."""
    with open_store(f"duckdb:///{source}") as src, open_store(f"duckdb:///{target}") as dst:
        events = src.read_events()
        victim = ""
        out: list[StoredEvent] = []
        for e in events:
            m = e.message
            if not victim and change and m.type_name == changed_type and getattr(m, "direction", "") != "flat":
                victim = m.event_id
                m = from_dict({**m.to_dict(), **change})
            elif (drop_all or not victim) and drop and m.type_name == drop:
                victim = victim or m.event_id
                continue
            out.append(StoredEvent(e.seq, m))
        dst.import_events(out)
    return victim


def cli(path: Path, home: Path, *args: str) -> Any:
    runner = CliRunner(env={"COLUMNS": "250", "SMARTMARKET_STORE": None, "SMARTMARKET_HOME": str(home)})
    return runner.invoke(app, ["--store", f"duckdb:///{path}", "replay", *args])


def test_untouched_log_replays_identically(recorded: tuple[PipelineSpec, Path]) -> None:
    spec, path = recorded
    with open_store(f"duckdb:///{path}") as store:
        report = replay(store, spec)
        assert report.candles == 300
        assert report.compared["SignalGenerated"] == 300
        assert report.compared["SubmitOrder"] > 4
        # the paper broker's answers and the positions are regenerated and compared too
        fills = report.compared["OrderFilled"]
        assert fills > 4 and report.compared["OrderSubmitted"] == fills == report.compared["PositionChanged"]
        assert fills == len(store.read_events(types=["OrderFilled"]))
        assert report.identical, [d.describe() for d in report.differences]
        # a window compares only its candles' events, with the state folded from the log's start
        candles = store.read_events(types=["CandleClosed"])
        by_seq = replay(store, spec, from_seq=candles[200].seq)
        assert by_seq.compared["SignalGenerated"] == 100 and by_seq.identical
        by_time = replay(store, spec, start=candles[100].message.ts_event, end=candles[150].message.ts_event)
        assert by_time.compared["SignalGenerated"] == 50 and by_time.identical


def test_a_tampered_signal_is_reported_field_by_field(recorded: tuple[PipelineSpec, Path], tmp_path: Path) -> None:
    spec, path = recorded
    victim = copy_log(path, tmp_path / "tampered.duckdb", change={"direction": "short", "confidence": 0.99})
    with open_store(f"duckdb:///{tmp_path / 'tampered.duckdb'}") as store:
        report = replay(store, spec)
    assert not report.identical
    assert [(d.kind, d.type, d.event_id) for d in report.differences] == [("changed", "SignalGenerated", victim)]
    diff = report.differences[0]
    assert diff.fields == ("confidence", "direction")
    assert diff.recorded is not None and diff.recorded["direction"] == "short"
    assert "recorded 'short'" in diff.describe()


def test_an_edit_in_the_database_is_reported(recorded: tuple[PipelineSpec, Path], tmp_path: Path) -> None:
    spec, path = recorded
    copy_log(path, tmp_path / "edited.duckdb")
    store = open_store(f"duckdb:///{tmp_path / 'edited.duckdb'}")
    assert isinstance(store, DuckDBStore)
    with store.connection(write=True) as con:
        row = con.execute(
            "SELECT event_id, payload FROM events WHERE type = 'SubmitOrder' ORDER BY seq LIMIT 1"
        ).fetchone()
        assert row is not None
        payload = json.loads(row[1])
        payload["quantity"] = payload["quantity"] * 2
        con.execute("UPDATE events SET payload = ? WHERE event_id = ?", [json.dumps(payload), row[0]])
    report = replay(store, spec)
    store.close()
    assert [(d.kind, d.type, d.fields) for d in report.differences] == [("changed", "SubmitOrder", ("quantity",))]


def test_a_lost_order_and_a_foreign_event_are_reported(recorded: tuple[PipelineSpec, Path], tmp_path: Path) -> None:
    spec, path = recorded
    lost = copy_log(path, tmp_path / "lost.duckdb", drop="SubmitOrder")
    with open_store(f"duckdb:///{tmp_path / 'lost.duckdb'}") as store:
        report = replay(store, spec)
        assert [(d.kind, d.event_id) for d in report.differences] == [("missing", lost)]
        # an order the pipeline would never make (another id) shows up as extra
        original = next(e.message for e in store.read_events(types=["SubmitOrder"]))
        assert isinstance(original, SubmitOrder)
        forged = from_dict({**original.to_dict(), "event_id": "f" * 32})
        store.append_events([forged])
        kinds = sorted(d.kind for d in replay(store, spec).differences)
    assert kinds == ["extra", "missing"]


def test_replay_needs_the_same_versions(recorded: tuple[PipelineSpec, Path]) -> None:
    spec, path = recorded
    other = PipelineSpec.build([SYMBOL], "1m", spec.engines, TradingConfig(initial_cash=5_000.0))
    with open_store(f"duckdb:///{path}") as store:
        report = replay(store, other)
    kinds = {d.kind for d in report.differences if d.type == "SubmitOrder"}
    assert kinds == {"missing", "extra"}  # other trading set-up: other order ids, none matches
    assert not any(d.type == "SignalGenerated" for d in report.differences)


def recorded_run(path: Path) -> RunStarted:
    with open_store(f"duckdb:///{path}") as store:
        [run] = [e.message for e in store.read_events(types=["RunStarted"])]
    assert isinstance(run, RunStarted)
    return run


def test_the_cli_replays_the_recorded_run_without_artifact(recorded: tuple[PipelineSpec, Path], tmp_path: Path) -> None:
    spec, path = recorded
    run = recorded_run(path)
    assert run.artifacts == {SYMBOL: spec.signal_version(SYMBOL)} and run.broker == "paper"
    result = cli(path, tmp_path / "home", "--registry", str(registry_of(path)))
    assert result.exit_code == 0, result.output
    assert f"run {run.run_id}: replayed 300 candles" in result.output and "identical" in result.output
    assert "OrderFilled" in result.output and "PositionChanged" in result.output
    as_json = json.loads(cli(path, tmp_path / "home", "--registry", str(registry_of(path)), "--format", "json").output)
    assert as_json["run_id"] == run.run_id and as_json["identical"] and as_json["compared"]["OrderFilled"] > 4
    # --artifact still replays (with the run's trading options, here the defaults)
    registry = str(registry_of(path))
    by_artifact = cli(path, tmp_path / "home", "--registry", registry, "--artifact", run.artifacts[SYMBOL])
    assert by_artifact.exit_code == 0 and "identical" in by_artifact.output
    # the recorded trading configuration is the one replayed: an option beside it is refused, not half-applied
    refused = cli(path, tmp_path / "home", "--registry", str(registry_of(path)), "--cash", "5000")
    assert isinstance(refused.exception, ConfigError) and "--cash is recorded with the run" in str(refused.exception)
    unknown = cli(path, tmp_path / "home", "--registry", str(registry_of(path)), "--run", "nope")
    assert isinstance(unknown.exception, ConfigError) and run.run_id in str(unknown.exception)


def test_a_tampered_fill_makes_replay_exit_non_zero_naming_it(
    recorded: tuple[PipelineSpec, Path], tmp_path: Path
) -> None:
    _, path = recorded
    with open_store(f"duckdb:///{path}") as store:
        first = next(e.message for e in store.read_events(types=["OrderFilled"]))
    assert isinstance(first, OrderFilled)
    target = tmp_path / "fill.duckdb"
    victim = copy_log(path, target, change={"price": first.price * 1.01}, changed_type="OrderFilled")
    assert victim == first.event_id
    result = cli(target, tmp_path / "home", "--registry", str(registry_of(path)))
    assert result.exit_code == 1, result.output
    assert f"changed OrderFilled {SYMBOL}" in result.output and f"id={victim}" in result.output
    assert f"price: recorded {first.price * 1.01!r} != replayed {first.price!r}" in result.output
    assert "1 difference(s)" in result.output  # the positions are rebuilt from the replayed fills, not the forged one
    # a lost fill is named as missing, a forged broker id as changed
    lost = tmp_path / "lost-fill.duckdb"
    assert copy_log(path, lost, drop="OrderFilled") == victim
    with open_store(f"duckdb:///{lost}") as store:
        report = replay_run(store, registry_of(path))
    assert [(d.kind, d.type, d.event_id) for d in report.differences] == [("missing", "OrderFilled", victim)]
    forged = tmp_path / "broker-id.duckdb"
    copy_log(path, forged, change={"broker_order_id": "paper-1"}, changed_type="OrderFilled")
    with open_store(f"duckdb:///{forged}") as store:
        [diff] = replay_run(store, registry_of(path)).differences
    assert (diff.kind, diff.fields) == ("changed", ("broker_order_id",))


def test_a_run_that_emitted_no_signal_replays_without_artifact(
    recorded: tuple[PipelineSpec, Path], tmp_path: Path
) -> None:
    """The run recorded its start and its candles, then nothing (it stopped before the first signal): the log
    names no artifact anywhere but in the run record."""
    _, path = recorded
    target, legacy = tmp_path / "no-signal.duckdb", tmp_path / "no-signal-no-record.duckdb"
    with open_store(f"duckdb:///{path}") as src:
        kept = [e for e in src.read_events() if isinstance(e.message, RunStarted | CandleClosed)]
    with open_store(f"duckdb:///{target}") as dst:
        dst.import_events(kept)
        report = replay_run(dst, registry_of(path))
    assert report.run_id == recorded_run(path).run_id and report.candles == 300
    assert report.compared["SignalGenerated"] == 300
    assert {d.kind for d in report.differences} == {"missing"}  # what the run owed, named event by event
    result = cli(target, tmp_path / "home", "--registry", str(registry_of(path)))
    assert result.exit_code == 1 and "missing SignalGenerated BTCUSDT" in result.output
    # a log from before runs were recorded: the artifact cannot be guessed, --artifact still works
    with open_store(f"duckdb:///{legacy}") as dst:
        dst.import_events([e for e in kept if isinstance(e.message, CandleClosed)])
    guessed = cli(legacy, tmp_path / "home", "--registry", str(registry_of(path)))
    assert isinstance(guessed.exception, ConfigError) and "name 0 artifacts" in str(guessed.exception)
    given = cli(legacy, tmp_path / "home", "--registry", str(registry_of(path)), "--artifact", "latest")
    assert given.exit_code == 1 and "missing SignalGenerated BTCUSDT" in given.output


def test_the_latest_run_is_replayed_unless_one_is_named(recorded: tuple[PipelineSpec, Path], tmp_path: Path) -> None:
    spec, path = recorded
    target = tmp_path / "two-runs.duckdb"
    copy_log(path, target)
    first = recorded_run(path)
    later = run_started_event(PipelineSpec.build([SYMBOL], "1m", spec.engines, TradingConfig(initial_cash=5_000.0)))
    with open_store(f"duckdb:///{target}") as store:
        assert record_run_started(store, later)
        latest = replay_run(store, registry_of(path))
        assert latest.run_id == later.run_id  # it has no candle yet: nothing of the first run is charged to it
        assert latest.compared == {} and latest.identical
        named = replay_run(store, registry_of(path), run_id=first.run_id[:8])
        assert named.run_id == first.run_id and named.identical and named.compared["OrderFilled"] > 4
        assert named.compared["SignalGenerated"] == 300


def test_a_candle_recorded_after_later_ones_replays_identically(
    recorded: tuple[PipelineSpec, Path], tmp_path: Path
) -> None:
    """After a lost bus, a candle re-published from the outbox is recorded after later candles (seen in CI):
    replay folds each symbol's candles in time order, as the stages do, whatever the log order."""
    spec, path = recorded
    target = tmp_path / "late.duckdb"
    with open_store(f"duckdb:///{path}") as src, open_store(f"duckdb:///{target}") as dst:
        events = src.read_events()
        late = [e for e in events if isinstance(e.message, CandleClosed)][100]
        rest = [e for e in events if e.seq != late.seq]
        last_seq = max(e.seq for e in events)
        dst.import_events([*rest, StoredEvent(last_seq + 1, late.message)])  # recorded after everything else
        candles = dst.read_events(types=["CandleClosed"])
        assert candles[-1].message.ts < candles[-2].message.ts  # the log really holds them out of order
        report = replay(dst, spec)
    assert report.candles == 300 and report.identical, [d.describe() for d in report.differences]
