"""Backup and restore between real stores (DuckDB, PostgreSQL): verified round trips, a backup taken while
writers keep going, repair after damage, damaged snapshots, point-in-time restores and refused conflicts."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smartmarket.core.errors import DataFormatError, SmartMarketError, StoreError
from smartmarket.core.events import CandleClosed, Message, SignalGenerated
from smartmarket.core.types import Timeframe
from smartmarket.data.quarantine import write_quarantine
from smartmarket.data.synthetic import generate_market
from smartmarket.ops.backup import PARTIAL_SUFFIX, SNAPSHOT_PREFIX, create_backup
from smartmarket.ops.footprint import bytes_on_disk, candle_count, parquet_bytes
from smartmarket.ops.manifest import read_manifest
from smartmarket.ops.parquet_io import summarize_candle_file
from smartmarket.ops.restore import restore_backup
from smartmarket.store.base import Store
from smartmarket.store.checksum import summarize_candles, summarize_events
from smartmarket.store.url import open_store

CHUNK = 7_000  # candles per exported chunk: several row groups per file


def _events(n: int, start_ts: int, tag: str = "e") -> list[Message]:
    msgs: list[Message] = []
    for i in range(n):
        ts = start_ts + i * 60_000
        candle = CandleClosed(
            ts_event=ts + 60_000,
            symbol="SYNA",
            timeframe="1m",
            ts=ts,
            open=1.0,
            high=2.0,
            low=0.5,
            close=1.5,
            volume=float(i),
            correlation_id=f"{tag}{i}",
        )
        msgs.append(candle)
        if i % 7 == 0:
            msgs.append(
                SignalGenerated(
                    ts_event=ts + 60_000,
                    symbol="SYNA",
                    timeframe="1m",
                    ts=ts,
                    direction="long",
                    confidence=0.6,
                    strength="moderate",
                    regime="ranging",
                    correlation_id=f"{tag}{i}",
                    causation_id=candle.event_id,
                    member_probabilities={"tf": {"up": 0.6, "down": 0.4}},
                )
            )
    return msgs


def _real_btc(shared_data: Path) -> pd.DataFrame:
    with gzip.open(shared_data / "BTCUSDT-1h.csv.gz", "rt") as fh:
        frame = pd.read_csv(fh)
    return frame.astype({"ts": np.int64, **{c: np.float64 for c in ("open", "high", "low", "close", "volume")}})


def _fill(store: Store, shared_data: Path) -> None:
    """Real BTCUSDT 1h (64,524 candles with gaps), a synthetic 1m series and ~570 events."""
    store.write_candles("BTCUSDT", Timeframe.H1, _real_btc(shared_data))
    store.write_candles("SYNA", Timeframe.M1, generate_market(20_000, timeframe=Timeframe.M1, seed=3), synthetic=True)
    store.append_events(_events(500, 1_700_000_000_000))


def _home_files(home: Path) -> tuple[Path, Path]:
    """A quarantine file with two rejected rows and a registry with one model (metadata + weights)."""
    quarantine, registry = home / "quarantine", home / "models"
    rows = pd.DataFrame(
        {
            "ts": [1_700_000_000_000, 1_700_000_060_000],
            "open": [1.0, 2.0],
            "high": [0.5, 2.5],
            "low": [0.9, 1.9],
            "close": [1.0, 2.1],
            "volume": [-1.0, 3.0],
            "line": [3, 9],
            "reason": ["negative_volume", "high_below_max"],
        }
    )
    write_quarantine(quarantine, "BTCUSDT", Timeframe.H1, "file.csv", rows)
    model = registry / "transformer-BTCUSDT-1h-20250101000000-abcdef12"
    model.mkdir(parents=True)
    (model / "metadata.json").write_text('{"kind": "transformer", "stage": "production"}')
    (model / "weights.pt").write_bytes(bytes(range(256)) * 40)
    return quarantine, registry


def _series_rows(store: Store) -> list[tuple[object, ...]]:
    return [(s.symbol, s.timeframe, s.count, s.first_ts, s.last_ts, s.synthetic) for s in store.list_series()]


def _assert_same(source: Store, target: Store) -> None:
    assert _series_rows(source) == _series_rows(target)
    for info in source.list_series():
        a = source.read_candles(info.symbol, info.timeframe)
        b = target.read_candles(info.symbol, info.timeframe)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert source.last_seq() == target.last_seq()
    assert [(e.seq, e.message) for e in source.read_events()] == [(e.seq, e.message) for e in target.read_events()]


def _urls(direction: str, pg_url: str, tmp_path: Path) -> tuple[str, str]:
    duck_src, duck_dst = f"duckdb:///{tmp_path / 'src.duckdb'}", f"duckdb:///{tmp_path / 'dst.duckdb'}"
    return {
        "duckdb_to_duckdb": (duck_src, duck_dst),
        "duckdb_to_pg": (duck_src, pg_url),
        "pg_to_duckdb": (pg_url, duck_dst),
    }[direction]


@pytest.fixture(params=["duckdb_to_duckdb", "duckdb_to_pg", "pg_to_duckdb"])
def direction(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_round_trip_verifies_every_count_and_checksum(
    direction: str, pg_url: str, tmp_path: Path, shared_data: Path
) -> None:
    src_url, dst_url = _urls(direction, pg_url, tmp_path)
    quarantine, registry = _home_files(tmp_path / "home")
    with open_store(src_url) as src, open_store(dst_url) as dst:
        _fill(src, shared_data)
        result = create_backup(src, tmp_path / "bk", quarantine_dir=quarantine, registry_dir=registry, chunk_rows=CHUNK)

        manifest = read_manifest(result.path)
        assert result.path.parent == tmp_path / "bk" and result.path.name.startswith(SNAPSHOT_PREFIX)
        assert [p.name for p in (tmp_path / "bk").iterdir()] == [result.path.name]  # no staging left behind
        assert "password" not in manifest.source_store and manifest.smartmarket_version
        for entry in manifest.series:  # the manifest describes exactly what the source holds
            expected = summarize_candles(src.read_candles(entry.symbol, entry.timeframe))
            assert entry.summary.matches(expected)  # exact, but for the float sum's last bits (summation order)
            assert summarize_candle_file(result.path / entry.file.path).matches(expected)
        assert manifest.events.summary == summarize_events(src.read_events())
        assert manifest.events.last_seq_at_cut == src.last_seq() == manifest.events.summary.max_ts
        assert {f.path for f in manifest.quarantine} == {"quarantine/BTCUSDT-1h.quarantine.csv"}
        assert len(manifest.registry) == 2

        new_home = tmp_path / "restored"
        report = restore_backup(
            result.path, dst, quarantine_dir=new_home / "quarantine", registry_dir=new_home / "models"
        )
        assert report.ok and report.files_checked == 6  # 2 series, events, 1 quarantine, 2 model files
        by_name = {item.name: item for item in report.items}
        assert set(by_name) == {
            "BTCUSDT/1h",
            "SYNA/1m",
            "events",
            "quarantine/BTCUSDT-1h.quarantine.csv",
            "models/transformer-BTCUSDT-1h-20250101000000-abcdef12/metadata.json",
            "models/transformer-BTCUSDT-1h-20250101000000-abcdef12/weights.pt",
        }
        assert by_name["BTCUSDT/1h"].written == 64_524 and by_name["SYNA/1m"].written == 20_000
        for entry in manifest.series:
            assert entry.summary.matches(by_name[entry.key].actual)
        assert by_name["events"].actual == manifest.events.summary
        _assert_same(src, dst)
        originals = sorted(p for p in (tmp_path / "home").rglob("*") if p.is_file())
        assert len(originals) == 3
        for original in originals:
            assert (new_home / original.relative_to(tmp_path / "home")).read_bytes() == original.read_bytes()

        again = restore_backup(
            result.path, dst, quarantine_dir=new_home / "quarantine", registry_dir=new_home / "models"
        )
        assert again.ok and all(item.written == 0 for item in again.items)  # idempotent for identical data
        assert {i.name: i.unchanged for i in again.items}["events"] == src.last_seq()
        _assert_same(src, dst)


class _Writer(threading.Thread):
    """Keeps appending ``step`` candles to LIVE/1m and ``step`` events, through its own store connection."""

    def __init__(self, url: str, future: pd.DataFrame, step: int) -> None:
        super().__init__(daemon=True)
        self.url, self.future, self.step = url, future, step
        self.steps = 0
        self.error: BaseException | None = None
        self._stop_flag = threading.Event()
        self._advanced = threading.Condition()

    def run(self) -> None:
        try:
            with open_store(self.url) as store:
                for i in range(0, len(self.future), self.step):
                    if self._stop_flag.is_set():
                        return
                    chunk = self.future.iloc[i : i + self.step]
                    store.write_candles("LIVE", Timeframe.M1, chunk)
                    store.append_events(_events(self.step, int(chunk["ts"].iloc[0]), tag=f"w{i}-"))
                    with self._advanced:
                        self.steps += 1
                        self._advanced.notify_all()
        except BaseException as exc:  # surfaced by the test
            self.error = exc
            with self._advanced:
                self._advanced.notify_all()

    def wait_for(self, steps: int) -> None:
        """Block until the writer has finished ``steps`` writes (a deadlock guard, not a timing assert)."""
        with self._advanced:
            done = self._advanced.wait_for(lambda: self.steps >= steps or self.error is not None, timeout=60)
        assert done and self.error is None, f"writer stalled or failed: {self.error!r}"

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(timeout=60)


@pytest.mark.parametrize("backend", ["duckdb", "pg"])
def test_backup_while_writers_run_holds_exactly_the_cut(backend: str, pg_url: str, tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'live.duckdb'}" if backend == "duckdb" else pg_url
    step, base_rows, base_events = 25, 5_000, 100
    market = generate_market(base_rows + 60_000, timeframe=Timeframe.M1, seed=11)
    with open_store(url) as store:
        store.write_candles("LIVE", Timeframe.M1, market.iloc[:base_rows])
        store.append_events(_events(base_events, 1_600_000_000_000))
        base_seq = store.last_seq()
        writer = _Writer(url, market.iloc[base_rows:].reset_index(drop=True), step)
        writer.start()
        try:
            writer.wait_for(3)

            def progress(task: str, done: int, total: int) -> None:
                writer.wait_for(writer.steps + 2)  # more writes land while each chunk is being exported

            result = create_backup(store, tmp_path / "bk", chunk_rows=1_000, event_chunk=40, progress=progress)
            writer.wait_for(writer.steps + 2)
        finally:
            writer.stop()
        assert writer.error is None

        manifest = read_manifest(result.path)
        (live,) = manifest.series
        cut_ts, cut_seq = live.cut_ts, manifest.events.last_seq_at_cut
        # Writes landed before the cut, and went on after it: the source now holds more than the snapshot.
        assert live.summary.rows > base_rows and store.series_info("LIVE", Timeframe.M1).count > live.summary.rows
        assert cut_seq > base_seq and store.last_seq() > cut_seq
        # No half write: the cut falls between two complete writes of `step` candles / events.
        assert (live.summary.rows - base_rows) % step == 0
        events_per_write = len(_events(step, 0))
        assert (cut_seq - base_seq) % events_per_write == 0
        writes = {e.message.correlation_id.split("-")[0] for e in store.read_events(base_seq + 1, cut_seq)}
        assert len(writes) == (cut_seq - base_seq) // events_per_write  # each write in the snapshot is whole

        with open_store(f"duckdb:///{tmp_path / 'restored.duckdb'}") as dst:
            report = restore_backup(result.path, dst)
            assert report.ok
            # The restored data equals the source exactly up to the cut.
            expected = store.read_candles("LIVE", Timeframe.M1, end=cut_ts + 1)
            pd.testing.assert_frame_equal(dst.read_candles("LIVE", Timeframe.M1), expected, check_exact=True)
            assert dst.last_seq() == cut_seq
            source_events = store.read_events(to_seq=cut_seq)
            assert [(e.seq, e.message) for e in dst.read_events()] == [(e.seq, e.message) for e in source_events]


def test_damaged_store_is_rebuilt_from_a_backup(tmp_path: Path, shared_data: Path) -> None:
    url = f"duckdb:///{tmp_path / 'store.duckdb'}"
    with open_store(url) as store:
        _fill(store, shared_data)
        snapshot = create_backup(store, tmp_path / "bk", chunk_rows=CHUNK).path
        originals = {(i.symbol, i.timeframe): store.read_candles(i.symbol, i.timeframe) for i in store.list_series()}
        original_events = store.read_events()

        # Partial damage: a range of one series lost. Restoring into the same store fills exactly the hole.
        lost = store.delete_range("BTCUSDT", Timeframe.H1, 1_600_000_000_000, 1_650_000_000_000)
        assert lost > 10_000
        report = restore_backup(snapshot, store)
        assert report.ok
        by_name = {item.name: item for item in report.items}
        assert by_name["BTCUSDT/1h"].written == lost and by_name["SYNA/1m"].written == 0
        pd.testing.assert_frame_equal(store.read_candles("BTCUSDT", Timeframe.H1), originals[("BTCUSDT", Timeframe.H1)])

    # Total loss: the file is overwritten with garbage, cannot be opened, is removed and rebuilt.
    path = tmp_path / "store.duckdb"
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    with pytest.raises(SmartMarketError):
        open_store(url).close()
    path.unlink()
    with open_store(url) as rebuilt:
        assert restore_backup(snapshot, rebuilt).ok
        for (symbol, tf), frame in originals.items():
            pd.testing.assert_frame_equal(rebuilt.read_candles(symbol, tf), frame, check_exact=True)
        assert [(e.seq, e.message) for e in rebuilt.read_events()] == [(e.seq, e.message) for e in original_events]


@pytest.mark.parametrize("victim", ["candles/BTCUSDT-1h.parquet", "events.parquet", "quarantine"])
def test_a_flipped_byte_in_a_backup_file_is_refused(victim: str, tmp_path: Path, shared_data: Path) -> None:
    quarantine, registry = _home_files(tmp_path / "home")
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as src:
        _fill(src, shared_data)
        snapshot = create_backup(src, tmp_path / "bk", quarantine_dir=quarantine, registry_dir=registry).path
    path = snapshot / victim if victim != "quarantine" else snapshot / "quarantine" / "BTCUSDT-1h.quarantine.csv"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with open_store(f"duckdb:///{tmp_path / 't.duckdb'}") as dst:
        with pytest.raises(DataFormatError, match=r"damaged: sha256") as caught:
            restore_backup(snapshot, dst, quarantine_dir=tmp_path / "new" / "q", registry_dir=tmp_path / "new" / "m")
        assert path.relative_to(snapshot).as_posix() in caught.value.one_line()
        assert dst.list_series() == [] and dst.last_seq() == 0  # refused before anything was written
    assert not (tmp_path / "new").exists()


def test_a_missing_backup_file_and_an_interrupted_backup_are_refused(tmp_path: Path) -> None:
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as src:
        src.write_candles("SYNA", Timeframe.M1, generate_market(3_000, timeframe=Timeframe.M1, seed=1))
        src.append_events(_events(20, 1_700_000_000_000))

        def fail_midway(task: str, done: int, total: int) -> None:
            if task == "events":
                raise KeyboardInterrupt  # as if the process were stopped while exporting events

        with pytest.raises(KeyboardInterrupt):
            create_backup(src, tmp_path / "bk", progress=fail_midway)
        assert list((tmp_path / "bk").iterdir()) == []  # nothing that looks like a snapshot

        snapshot = create_backup(src, tmp_path / "bk").path
    (snapshot / "events.parquet").unlink()
    with open_store(f"duckdb:///{tmp_path / 't.duckdb'}") as dst:
        with pytest.raises(DataFormatError, match=r"events\.parquet is missing"):
            restore_backup(snapshot, dst)
        partial = snapshot.parent / f".{snapshot.name}{PARTIAL_SUFFIX}"
        snapshot.rename(partial)
        with pytest.raises(DataFormatError, match="interrupted backup"):
            restore_backup(partial, dst)


def test_point_in_time_restore_stops_the_log_at_a_seq(pg_url: str, tmp_path: Path, shared_data: Path) -> None:
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as src, open_store(pg_url) as dst:
        _fill(src, shared_data)
        snapshot = create_backup(src, tmp_path / "bk").path
        last = src.last_seq()
        with pytest.raises(StoreError, match="outside the snapshot"):
            restore_backup(snapshot, dst, until_seq=last + 1)

        point = 321
        report = restore_backup(snapshot, dst, until_seq=point)
        assert report.ok and report.restore_point == point
        assert dst.last_seq() == point
        assert [(e.seq, e.message) for e in dst.read_events()] == [
            (e.seq, e.message) for e in src.read_events(1, point)
        ]
        assert _series_rows(dst) == _series_rows(src)  # candles are restored whole

        # A later full restore rolls the log forward from the point; the reverse is refused.
        forward = restore_backup(snapshot, dst)
        events_item = next(i for i in forward.items if i.name == "events")
        assert forward.ok and events_item.written == last - point and events_item.unchanged == point
        _assert_same(src, dst)
        with pytest.raises(StoreError, match=f"reaches seq {last}, past the restore point {point}"):
            restore_backup(snapshot, dst, until_seq=point)


def test_a_target_holding_other_data_is_refused_untouched(tmp_path: Path, shared_data: Path) -> None:
    quarantine, registry = _home_files(tmp_path / "home")
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as src:
        _fill(src, shared_data)
        snapshot = create_backup(src, tmp_path / "bk", quarantine_dir=quarantine, registry_dir=registry).path
        changed = src.read_candles("SYNA", Timeframe.M1, limit=10)
    changed.loc[4, "close"] += 1.0

    with open_store(f"duckdb:///{tmp_path / 't.duckdb'}") as dst:
        dst.write_candles("SYNA", Timeframe.M1, changed)
        with pytest.raises(StoreError, match=r"SYNA/1m has 1 candles with other values") as caught:
            restore_backup(snapshot, dst)
        assert "restore never overwrites" in caught.value.one_line()
        assert [s.symbol for s in dst.list_series()] == ["SYNA"] and dst.last_seq() == 0  # nothing written

    with open_store(f"duckdb:///{tmp_path / 'u.duckdb'}") as dst:
        dst.append_events(_events(3, 1_500_000_000_000, tag="other"))  # 3 candles + 1 signal
        with pytest.raises(StoreError, match="event log up to seq 4 differs"):
            restore_backup(snapshot, dst)

    other_models = tmp_path / "other" / "models"
    model = next(registry.iterdir()).name
    (other_models / model).mkdir(parents=True)
    (other_models / model / "metadata.json").write_text('{"kind": "something else"}')
    with open_store(f"duckdb:///{tmp_path / 'v.duckdb'}") as dst:
        with pytest.raises(StoreError, match="exists with other content"):
            restore_backup(snapshot, dst, quarantine_dir=tmp_path / "other" / "q", registry_dir=other_models)
        assert dst.list_series() == []


def test_footprint_figures_per_backend(pg_url: str, tmp_path: Path, shared_data: Path) -> None:
    real = _real_btc(shared_data)
    raw = len(real) * 6 * 8  # six 8-byte columns
    with open_store(f"duckdb:///{tmp_path / 'f.duckdb'}") as duck, open_store(pg_url) as pg:
        for store in (duck, pg):
            store.write_candles("BTCUSDT", Timeframe.H1, real)
            assert candle_count(store) == len(real)
        duck_bytes, pg_bytes, pq_bytes = bytes_on_disk(duck), bytes_on_disk(pg), parquet_bytes(duck)
        assert parquet_bytes(pg) == pq_bytes  # the same rows give the same file, whichever store they come from
    # A row store with a primary key holds more than the raw values; the columnar ones compress real prices.
    assert pg_bytes > raw > duck_bytes > pq_bytes > 0
    assert (tmp_path / "f.duckdb").stat().st_size <= duck_bytes
