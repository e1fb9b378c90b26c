"""Exact replay: an untouched log replays identically; a tampered or incomplete one is reported, field by field."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from smartmarket.bus.inprocess import InProcessBus
from smartmarket.core.events import SignalGenerated, SubmitOrder, from_dict
from smartmarket.data.synthetic import generate_market
from smartmarket.engine.live import LivePipeline, RunOptions
from smartmarket.engine.replay import replay
from smartmarket.engine.sources import FileSource
from smartmarket.engine.stages import ArtifactEngines, PipelineSpec, TradingConfig
from smartmarket.models.labels import LabelConfig
from smartmarket.signals.fit import default_system_config, fit_artifact, save_artifact
from smartmarket.signals.members import SMCMember, TechnicalMember
from smartmarket.store.base import StoredEvent
from smartmarket.store.duckdb_store import DuckDBStore
from smartmarket.store.url import open_store

SYMBOL = "BTCUSDT"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineSpec, Path]:
    """A DuckDB event log of one paper-trading run (300 one-minute candles) and the spec that made it."""
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
    pipeline = LivePipeline(spec, store, InProcessBus(), options=RunOptions(drain_timeout_s=60))
    summary = asyncio.run(pipeline.run(FileSource({SYMBOL: candles.iloc[1_500:].reset_index(drop=True)})))
    assert summary.drained
    store.close()
    return spec, path


def copy_log(source: Path, target: Path, change: dict[str, object] | None = None, drop: str | None = None) -> str:
    """Copy every event into a fresh log (same seqs), changing the first non-flat signal or dropping one type's
    first event; returns the id of the event changed or dropped."""
    with open_store(f"duckdb:///{source}") as src, open_store(f"duckdb:///{target}") as dst:
        events = src.read_events()
        victim = ""
        out: list[StoredEvent] = []
        for e in events:
            m = e.message
            if not victim and change and isinstance(m, SignalGenerated) and m.direction != "flat":
                victim = m.event_id
                m = from_dict({**m.to_dict(), **change})
            elif not victim and drop and m.type_name == drop:
                victim = m.event_id
                continue
            out.append(StoredEvent(e.seq, m))
        dst.import_events(out)
    return victim


def test_untouched_log_replays_identically(recorded: tuple[PipelineSpec, Path]) -> None:
    spec, path = recorded
    with open_store(f"duckdb:///{path}") as store:
        report = replay(store, spec)
        assert report.candles == 300
        assert report.compared["SignalGenerated"] == 300
        assert report.compared["SubmitOrder"] > 4
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
    row = store.con.execute(
        "SELECT event_id, payload FROM events WHERE type = 'SubmitOrder' ORDER BY seq LIMIT 1"
    ).fetchone()
    assert row is not None
    payload = json.loads(row[1])
    payload["quantity"] = payload["quantity"] * 2
    store.con.execute("UPDATE events SET payload = ? WHERE event_id = ?", [json.dumps(payload), row[0]])
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
