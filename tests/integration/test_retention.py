"""Retention on real stores (DuckDB, PostgreSQL) and the real Redis: archive then trim, exact contents on both
sides, re-import of the full log, dry runs, a crash between archive and delete, damaged archives, dead letters."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartmarket.bus.redis_streams import RedisStreamsBus
from smartmarket.core.errors import ConfigError, DataFormatError, StoreError, ValidationError
from smartmarket.core.events import CandleClosed, Message, SignalGenerated
from smartmarket.core.types import DAY_MS, MINUTE_MS
from smartmarket.ops.manifest import sha256_file
from smartmarket.ops.parquet_io import EVENT_SCHEMA
from smartmarket.ops.retention import (
    EVENTS_DIR,
    RetentionPolicy,
    apply_retention,
    archive_dead_letters,
    archive_events,
    import_archive,
    list_dead_letter_segments,
    list_event_segments,
    parse_age,
    plan_event_trim,
    read_archive,
    read_archived_dead_letters,
)
from smartmarket.store.base import Store
from smartmarket.store.url import open_store

START = 1_704_067_200_000  # 2024-01-01T00:00Z


def make_events(n: int, start: int = START, tag: str = "e") -> list[Message]:
    """Candles every minute (ts_event ascending) with a signal after every 5th: two topics' message types."""
    out: list[Message] = []
    for i in range(n):
        ts = start + i * MINUTE_MS
        candle = CandleClosed(
            ts_event=ts + MINUTE_MS,
            symbol="BTCUSDT",
            timeframe="1m",
            ts=ts,
            open=1.0,
            high=2.0,
            low=0.5,
            close=1.5 + i,
            volume=float(i),
            correlation_id=f"{tag}{i}",
        )
        out.append(candle)
        if i % 5 == 0:
            out.append(
                SignalGenerated(
                    ts_event=ts + MINUTE_MS,
                    symbol="BTCUSDT",
                    timeframe="1m",
                    ts=ts,
                    direction="long",
                    confidence=0.7,
                    strength="strong",
                    regime="trending",
                    correlation_id=f"{tag}{i}",
                    causation_id=candle.event_id,
                )
            )
    return out


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"duckdb:///{tmp_path / 'log.duckdb'}" if request.param == "duckdb" else request.getfixturevalue("pg_url")
    with open_store(url) as opened:
        yield opened


def stored(store: Store) -> list[tuple[int, Message]]:
    return [(e.seq, e.message) for e in store.read_events()]


def archived(archive: Path) -> list[tuple[int, Message]]:
    return [(e.seq, e.message) for e in read_archive(archive)]


def test_archive_then_trim_leaves_exactly_the_rest_and_the_archive_exactly_the_trimmed(
    store: Store, tmp_path: Path
) -> None:
    messages = make_events(300)  # 360 events
    store.append_events(messages)
    original = stored(store)
    archive = tmp_path / "archive"

    report = apply_retention(store, RetentionPolicy(keep_last=100), archive)
    assert report.events is not None and (report.events.from_seq, report.events.through_seq) == (1, 260)
    assert report.events.rows == report.events.deleted == 260 and len(report.events.written) == 1
    assert archived(archive) == original[:260]
    assert stored(store) == original[260:]
    assert [(e.message.event_id, e.message) for e in read_archive(archive)] == [
        (m.event_id, m) for m in messages[:260]
    ]  # ids and payloads as appended

    # An age limit: events whose ts_event is within 50 minutes of "now" stay (a second segment).
    now = START + 300 * MINUTE_MS
    report = apply_retention(store, RetentionPolicy(keep_age_ms=50 * MINUTE_MS), archive, now_ms=now)
    assert report.events is not None and report.events.from_seq == 261
    young = [seq for seq, m in original if m.ts_event >= now - 50 * MINUTE_MS]
    assert stored(store) == [(seq, m) for seq, m in original if seq >= young[0]]
    assert archived(archive) == [(seq, m) for seq, m in original if seq < young[0]]
    assert [s.from_seq for s in list_event_segments(archive)] == [1, 261]

    # Nothing left to trim under the same policy: no new segment, nothing deleted.
    again = apply_retention(store, RetentionPolicy(keep_age_ms=50 * MINUTE_MS), archive, now_ms=now)
    assert again.events is None and len(list_event_segments(archive)) == 2

    # Appending continues the numbering after the newest stored event.
    assert store.append_events(make_events(1, tag="later")) == [361, 362]


def test_both_limits_keep_the_union_and_the_newest_event_always_stays(store: Store, tmp_path: Path) -> None:
    store.append_events(make_events(100))  # 120 events, ts_event up to START + 100 min
    now = START + 100 * MINUTE_MS
    policy = RetentionPolicy(keep_age_ms=20 * MINUTE_MS, keep_last=50)  # age alone would keep far fewer
    plan = plan_event_trim(store, policy, now_ms=now)
    assert plan is not None and plan.through_seq == 70
    age_only = plan_event_trim(store, RetentionPolicy(keep_age_ms=20 * MINUTE_MS), now_ms=now)
    assert age_only is not None and age_only.through_seq == 95  # 79 candles and 16 signals before ts_event 80 min

    far_future = START + 10_000 * DAY_MS
    plan = plan_event_trim(store, RetentionPolicy(keep_age_ms=MINUTE_MS), now_ms=far_future)
    assert plan is not None and plan.through_seq == 119  # everything is old, the newest still stays
    assert plan_event_trim(store, RetentionPolicy(keep_last=500)) is None

    with pytest.raises(StoreError, match="newest event"):
        store.delete_events_through(120)
    with pytest.raises(StoreError, match="10 stored, 9 expected"):
        store.delete_events_through(10, expected=9)
    assert store.read_events(limit=1)[0].seq == 1  # refused deletes deleted nothing
    assert store.delete_events_through(10, expected=10) == 10
    assert store.nth_newest_seq(1) == 120 and store.nth_newest_seq(110) == 11 and store.nth_newest_seq(111) is None


def test_age_limit_trims_only_a_prefix_of_old_events(store: Store, tmp_path: Path) -> None:
    """An old event appended after a young one (a late backfill) is not trimmed: the log loses only a prefix."""
    old = make_events(10, start=START)
    young = make_events(5, start=START + 30 * DAY_MS, tag="y")
    late = make_events(5, start=START, tag="late")
    store.append_events(old + young + late)
    report = apply_retention(
        store, RetentionPolicy(keep_age_ms=20 * DAY_MS), tmp_path / "a", now_ms=START + 40 * DAY_MS
    )
    assert report.events is not None and report.events.through_seq == len(old)
    assert [m for _, m in stored(store)] == young + late


def test_archive_reimports_into_a_new_store_giving_back_the_full_log(store: Store, tmp_path: Path, pg_url: str) -> None:
    store.append_events(make_events(400))
    original = stored(store)
    archive = tmp_path / "archive"
    apply_retention(store, RetentionPolicy(keep_last=150), archive, event_chunk=64)  # several row groups
    apply_retention(store, RetentionPolicy(keep_last=40), archive, event_chunk=64)
    assert len(list_event_segments(archive)) == 2

    with pytest.raises(StoreError, match="already reaches seq"):
        import_archive(archive, store)  # the trimmed log itself ends past the archive

    target_url = f"duckdb:///{tmp_path / 'rebuilt.duckdb'}" if "postgres" in store.url else pg_url
    with open_store(target_url) as target:
        assert import_archive(archive, target, block=100) == len(original) - 40
        assert import_archive(archive, target) == 0  # again: identical events are skipped
        rest = store.read_events(from_seq=target.last_seq() + 1)
        target.import_events(rest)
        assert stored(target) == original


def test_dry_run_changes_nothing(store: Store, tmp_path: Path) -> None:
    store.append_events(make_events(50))
    before = stored(store)
    archive = tmp_path / "archive"
    report = apply_retention(store, RetentionPolicy(keep_last=10), archive, dry_run=True)
    assert report.dry_run and report.events is not None and report.events.rows == 50
    assert report.events.deleted == 0 and not report.events.written
    assert stored(store) == before and not archive.exists()


def test_crash_between_archive_and_delete_is_completed_without_duplicates_or_loss(store: Store, tmp_path: Path) -> None:
    store.append_events(make_events(200))
    original = stored(store)
    archive = tmp_path / "archive"
    policy = RetentionPolicy(keep_last=90)

    # The archive step alone, as a run killed right before its delete would leave it.
    plan = plan_event_trim(store, policy)
    assert plan is not None
    segment = archive_events(store, archive, plan.from_seq, plan.through_seq)
    assert stored(store) == original and archived(archive) == original[: plan.through_seq]
    digest = sha256_file(segment.path)

    report = apply_retention(store, policy, archive)
    assert report.events is not None and report.events.reused == [segment.path] and not report.events.written
    assert report.events.deleted == plan.through_seq
    assert sha256_file(segment.path) == digest  # reused, not rewritten
    assert archived(archive) == original[: plan.through_seq] and stored(store) == original[plan.through_seq :]

    # Crash again, then more events arrive and the policy lets more go: the pending segment is reused and
    # only the rest is archived anew.
    plan2 = plan_event_trim(store, RetentionPolicy(keep_last=60))
    assert plan2 is not None
    pending = archive_events(store, archive, plan2.from_seq, plan2.through_seq)
    store.append_events(make_events(20, start=START + 500 * MINUTE_MS, tag="n"))
    everything = original + stored(store)[len(original) - plan.through_seq :]
    report = apply_retention(store, RetentionPolicy(keep_last=50), archive)
    assert report.events is not None and report.events.reused == [pending.path] and len(report.events.written) == 1
    kept = stored(store)
    assert len(kept) == 50 and archived(archive) + kept == everything


def test_leftovers_that_no_longer_fit_are_replaced_and_half_written_files_removed(store: Store, tmp_path: Path) -> None:
    store.append_events(make_events(100))
    original = stored(store)
    archive = tmp_path / "archive"
    big = plan_event_trim(store, RetentionPolicy(keep_last=20))
    assert big is not None
    leftover = archive_events(store, archive, big.from_seq, big.through_seq)  # crash, then the policy changed
    (archive / EVENTS_DIR / "events-00000000000000000001-00000000000000000003.parquet").write_bytes(b"half")

    report = apply_retention(store, RetentionPolicy(keep_last=70), archive)
    assert leftover.path in report.removed and leftover.sidecar in report.removed
    assert report.events is not None and report.events.through_seq == 50 and len(report.events.written) == 1
    assert sorted(p.name for p in (archive / EVENTS_DIR).iterdir()) == [
        "events-00000000000000000001-00000000000000000050.parquet",
        "events-00000000000000000001-00000000000000000050.parquet.json",
    ]
    assert archived(archive) + stored(store) == original


def test_damaged_or_foreign_archives_are_refused_before_anything_is_deleted(store: Store, tmp_path: Path) -> None:
    store.append_events(make_events(60))  # 72 events
    original = stored(store)
    archive = tmp_path / "archive"
    plan = plan_event_trim(store, RetentionPolicy(keep_last=30))
    assert plan is not None
    segment = archive_events(store, archive, plan.from_seq, plan.through_seq)  # pending: seq 1..42

    # Another log whose events differ from the pending segment's: the segment is neither reused nor removed.
    with open_store(f"duckdb:///{tmp_path / 'other.duckdb'}") as other:
        other.append_events(make_events(80, tag="o"))
        before = stored(other)
        with pytest.raises(StoreError, match="does not match the stored events"):
            apply_retention(other, RetentionPolicy(keep_last=5), archive)
        assert stored(other) == before and segment.sidecar.exists()
    # A log that starts inside the segment's range (its first events were trimmed elsewhere).
    with open_store(f"duckdb:///{tmp_path / 'third.duckdb'}") as third:
        third.import_events(store.read_events(from_seq=10))
        with pytest.raises(StoreError, match="overlaps the stored log"):
            apply_retention(third, RetentionPolicy(keep_last=5), archive)
        assert third.read_events(limit=1)[0].seq == 10

    # A damaged pending segment stops the run too, and reading a damaged archive fails loudly.
    data = bytearray(segment.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged or belongs to another log"):
        apply_retention(store, RetentionPolicy(keep_last=30), archive)
    assert stored(store) == original
    with pytest.raises(DataFormatError, match="damaged"):
        list(read_archive(archive))


def test_policy_and_age_validation() -> None:
    assert parse_age("90d") == 90 * DAY_MS and parse_age("2w") == 14 * DAY_MS and parse_age("30m") == 30 * MINUTE_MS
    for bad in ("", "90", "d", "-3d", "0h", "1y"):
        with pytest.raises(ValidationError, match="invalid age"):
            parse_age(bad)
    with pytest.raises(ValidationError):
        RetentionPolicy(keep_last=0)
    assert RetentionPolicy.from_ages("90d", dead_letters="30d").dead_letter_age_ms == 30 * DAY_MS


def test_the_archive_uses_the_backup_event_columns(store: Store, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    store.append_events(make_events(10))
    apply_retention(store, RetentionPolicy(keep_last=2), tmp_path / "a")
    (segment,) = list_event_segments(tmp_path / "a")
    assert pq.read_schema(segment.path).remove_metadata().equals(EVENT_SCHEMA)


def test_questdb_refuses_event_trimming_up_front() -> None:
    from smartmarket.store.questdb_store import QuestDBStore

    assert QuestDBStore.trims_events is False  # no QuestDB server runs here; apply_retention checks this first


# ---------------------------------------------------------------------------------------------- dead letters


async def _dead_letter(bus: RedisStreamsBus, symbol: str, n: int) -> None:
    """Dead-letter ``n`` real deliveries of ``symbol``'s candles stream through a consumer group."""
    await bus.publish_raw("candles", symbol, [f"bad-{symbol}-{i}".encode() for i in range(n)])
    sub = bus.subscription("candles", symbol, "stage", "c1")
    await sub.ensure_group()
    for delivery in await sub.read_new(n, 0):
        await sub.dead_letter(delivery, "undecodable", f"cannot decode {delivery.entry_id}")


def test_dead_letters_are_archived_verified_then_deleted_on_real_redis(redis_server: str, tmp_path: Path) -> None:
    store = open_store(f"duckdb:///{tmp_path / 'log.duckdb'}")
    namespace = f"t{uuid.uuid4().hex[:12]}"
    url = f"{redis_server}?namespace={namespace}"
    archive = tmp_path / "archive"

    async def scenario() -> None:
        bus = RedisStreamsBus(redis_server, namespace=namespace)
        try:
            await _dead_letter(bus, "BTCUSDT", 5)
            await _dead_letter(bus, "ETHUSDT", 3)
            await asyncio.sleep(0.01)
            boundary = int(time.time() * 1000)
            await asyncio.sleep(0.01)
            await _dead_letter(bus, "BTCUSDT", 2)  # younger than the boundary: kept
            old_btc = await bus.read_dead_letters("BTCUSDT")
            old_eth = await bus.read_dead_letters("ETHUSDT")
            assert len(old_btc) == 7 and len(old_eth) == 3

            policy = RetentionPolicy(dead_letter_age_ms=DAY_MS)
            now = boundary + DAY_MS
            dry = await asyncio.to_thread(apply_retention, store, policy, archive, bus=url, dry_run=True, now_ms=now)
            assert [(d.symbol, d.rows, d.deleted) for d in dry.dead_letters] == [("BTCUSDT", 5, 0), ("ETHUSDT", 3, 0)]
            assert len(await bus.read_dead_letters("BTCUSDT")) == 7 and not archive.exists()

            # The archive step alone (a crash before XDEL), then the full run: nothing is archived twice.
            partial = await archive_dead_letters(bus, archive, boundary, delete=False)
            assert [(d.symbol, d.archived) for d in partial] == [("BTCUSDT", 5), ("ETHUSDT", 3)]
            report = await asyncio.to_thread(apply_retention, store, policy, archive, bus=url, now_ms=now)
            assert [(d.symbol, d.archived, d.already_archived, d.deleted) for d in report.dead_letters] == [
                ("BTCUSDT", 0, 5, 5),
                ("ETHUSDT", 0, 3, 3),
            ]
            assert await bus.read_dead_letters("BTCUSDT") == old_btc[5:]
            assert await bus.read_dead_letters("ETHUSDT") == []
            assert list(read_archived_dead_letters(archive, namespace=namespace, symbol="BTCUSDT")) == old_btc[:5]
            assert list(read_archived_dead_letters(archive, namespace=namespace, symbol="ETHUSDT")) == old_eth
            assert len(list_dead_letter_segments(archive)) == 2

            # Later everything is old: only the two young ones are archived (a second segment).
            later = await asyncio.to_thread(
                apply_retention, store, policy, archive, bus=url, now_ms=int(time.time() * 1000) + DAY_MS + 1
            )
            assert [(d.symbol, d.archived, d.deleted) for d in later.dead_letters] == [("BTCUSDT", 2, 2)]
            assert list(read_archived_dead_letters(archive, namespace=namespace, symbol="BTCUSDT")) == old_btc
            assert await bus.read_dead_letters("BTCUSDT") == []
        finally:
            await bus.delete_namespace()
            await bus.close()

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_dead_letter_retention_needs_a_redis_bus(store: Store, tmp_path: Path) -> None:
    policy = RetentionPolicy(dead_letter_age_ms=DAY_MS, keep_last=1)
    store.append_events(make_events(5))
    with pytest.raises(ConfigError, match="needs the Redis bus"):
        apply_retention(store, policy, tmp_path / "a")
    with pytest.raises(ConfigError, match="needs the Redis bus"):
        apply_retention(store, policy, tmp_path / "a", bus="memory://")
    assert store.read_events(limit=1)[0].seq == 1 and not (tmp_path / "a").exists()


def test_a_backup_taken_after_a_trim_restores_the_remaining_log(store: Store, tmp_path: Path) -> None:
    from smartmarket.ops.backup import create_backup
    from smartmarket.ops.restore import restore_backup

    store.append_events(make_events(40))
    apply_retention(store, RetentionPolicy(keep_last=15), tmp_path / "archive")
    backup = create_backup(store, tmp_path / "bk")
    assert backup.manifest.events.summary.min_ts == store.read_events(limit=1)[0].seq  # seq bounds
    with open_store(f"duckdb:///{tmp_path / 'restored.duckdb'}") as target:
        assert restore_backup(backup.path, target).ok
        assert stored(target) == stored(store)
