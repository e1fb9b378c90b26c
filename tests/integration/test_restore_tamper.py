"""Restore verifies an untrusted snapshot in full before anything reaches the target.

Real stores (DuckDB files, the real PostgreSQL) through the real CLI (``main``) and the library: a Parquet
file altered consistently (its sha256 and the manifest checksum rewritten to match), one digit of the
manifest changed, a planted pickle among the model files, unlisted files and links. Each is refused with one
line naming the file, and the target is byte-identical afterwards (DuckDB: the file's sha256, or still absent
with no folder made; PostgreSQL: the same series, candles and events).
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smartmarket.cli.app import main
from smartmarket.core.config import Settings
from smartmarket.core.errors import DataFormatError, SmartMarketError
from smartmarket.core.events import CandleClosed
from smartmarket.core.safe_files import UnsafeFileError
from smartmarket.core.types import MINUTE_MS, Timeframe
from smartmarket.data.quarantine import write_quarantine
from smartmarket.data.synthetic import generate_market
from smartmarket.ops.backup import create_backup
from smartmarket.ops.manifest import CHECKSUM_FIELD, MANIFEST_FILE, manifest_digest, read_manifest
from smartmarket.ops.restore import restore_backup, stage_snapshot
from smartmarket.store.base import Store
from smartmarket.store.url import open_store

START = 1_704_067_200_000  # 2024-01-01T00:00Z


class Planted:
    """A pickle payload: loading it writes ``marker`` (what a planted model.joblib would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (Path.write_text, (self.marker, "code ran"))


def _events(n: int) -> list[CandleClosed]:
    return [
        CandleClosed(
            ts_event=START + (i + 1) * MINUTE_MS,
            symbol="SYNA",
            timeframe=Timeframe.M1,
            ts=START + i * MINUTE_MS,
            open=1.0,
            high=2.0,
            low=0.5,
            close=1.5,
            volume=float(i),
        )
        for i in range(n)
    ]


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    """A snapshot of 3,000 synthetic 1m candles, 40 events, one quarantine file and one model."""
    home = tmp_path / "src-home"
    settings = Settings(home=home)
    rows = generate_market(1, timeframe=Timeframe.M1, seed=2).assign(volume=-1.0, line=5, reason="negative_volume")
    write_quarantine(settings.quarantine_dir, "SYNA", Timeframe.M1, "feed.csv", rows)
    model = settings.registry_dir / "baseline-SYNA-1m-20240101000000-00000000"
    model.mkdir(parents=True)
    (model / "metadata.json").write_text(json.dumps({"kind": "majority", "stage": "candidate"}))
    with open_store(f"duckdb:///{tmp_path / 'src.duckdb'}") as store:
        store.write_candles("SYNA", Timeframe.M1, generate_market(3_000, timeframe=Timeframe.M1, seed=4))
        store.append_events(_events(40))
        return create_backup(
            store,
            tmp_path / "bk",
            quarantine_dir=settings.quarantine_dir,
            registry_dir=settings.registry_dir,
            chunk_rows=1_000,
        ).path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rewrite_manifest(snapshot: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the manifest and recompute its own checksum: a consistent tamper."""
    path = snapshot / MANIFEST_FILE
    data = json.loads(path.read_text())
    change(data)
    data[CHECKSUM_FIELD] = manifest_digest(data)
    path.write_text(json.dumps(data, indent=2))


def _relist(snapshot: Path, relative: str, *, section: str | None = None) -> None:
    """Make the manifest list ``relative`` with its current sha256 and size (adding it to ``section``)."""
    file = snapshot / relative
    entry = {"path": relative, "sha256": _sha256(file), "bytes": file.stat().st_size}

    def change(data: dict[str, Any]) -> None:
        if section is not None:
            data[section].append(entry)
            return
        for item in [*(s["file"] for s in data["series"]), data["events"]["file"]]:
            if item["path"] == relative:
                item.update(entry)

    _rewrite_manifest(snapshot, change)


def _alter_candles(snapshot: Path) -> str:
    """Change one close of the candle file (a valid Parquet file, same columns and metadata)."""
    relative = "candles/SYNA-1m.parquet"
    path = snapshot / relative
    table = pq.read_table(path)
    close = table.column("close").to_pylist()
    close[1_234] += 0.5
    table = table.set_column(table.schema.get_field_index("close"), "close", pa.array(close, pa.float64()))
    pq.write_table(table, path, compression="zstd")
    return relative


def _alter_events(snapshot: Path) -> str:
    """Change the volume inside one event's JSON (still a valid event)."""
    path = snapshot / "events.parquet"
    table = pq.read_table(path)
    texts = table.column("event").to_pylist()
    event = json.loads(texts[7])
    event["volume"] = 1e9
    texts[7] = json.dumps(event)
    table = table.set_column(table.schema.get_field_index("event"), "event", pa.array(texts, pa.string()))
    pq.write_table(table, path, compression="zstd")
    return "events.parquet"


def _pg_state(store: Store) -> tuple[object, ...]:
    series = [(s.symbol, s.timeframe, s.count, s.first_ts, s.last_ts) for s in store.list_series()]
    candles = [store.read_candles(s.symbol, s.timeframe).to_numpy().tobytes() for s in store.list_series()]
    events = [(e.seq, e.message) for e in store.read_events()]
    return series, candles, events


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI (--quiet: no progress lines), expect exit 2 and one error line; return it."""
    capsys.readouterr()
    assert main(["--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------------------- (a) consistent tamper


@pytest.mark.parametrize("alter", [_alter_candles, _alter_events], ids=["candles", "events"])
def test_a_consistently_altered_data_file_is_refused_by_its_rows(
    alter: Callable[[Path], str], snapshot: Path, tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    relative = alter(snapshot)
    _relist(snapshot, relative)  # its sha256 and size rewritten, and the manifest checksum recomputed
    read_manifest(snapshot)  # the manifest itself is consistent: only the rows can tell

    # A DuckDB target that does not exist: not created, nor its folder; the home is not created either.
    new = tmp_path / "new"
    err = _refused(
        ["--home", str(new / "home"), "restore", "--from", str(snapshot), "--to", f"duckdb:///{new / 't.duckdb'}"],
        capsys,
    )
    assert f"{relative} does not hold the rows its manifest lists" in err and "restore another snapshot" in err
    assert not new.exists()

    # An existing DuckDB store with other data: byte-identical afterwards.
    existing = tmp_path / "existing.duckdb"
    with open_store(f"duckdb:///{existing}") as store:
        store.write_candles("OTHER", Timeframe.M1, generate_market(500, timeframe=Timeframe.M1, seed=9))
    before = _sha256(existing)
    _refused(["--home", str(new / "home"), "restore", "--from", str(snapshot), "--to", f"duckdb:///{existing}"], capsys)
    assert _sha256(existing) == before and not existing.with_name(existing.name + ".wal").exists()

    # The real PostgreSQL: the same series, candles and events afterwards.
    with open_store(pg_url) as pg:
        pg.write_candles("OTHER", Timeframe.M1, generate_market(500, timeframe=Timeframe.M1, seed=9))
        pg.append_events(_events(3))
        state = _pg_state(pg)
    err = _refused(["--home", str(new / "home"), "restore", "--from", str(snapshot), "--to", pg_url], capsys)
    assert "does not hold the rows" in err
    with open_store(pg_url) as pg:
        assert _pg_state(pg) == state
    assert not new.exists()


def test_a_malformed_event_in_a_consistent_file_is_one_line_with_its_seq(snapshot: Path, tmp_path: Path) -> None:
    path = snapshot / "events.parquet"
    table = pq.read_table(path)
    texts = table.column("event").to_pylist()
    texts[3] = '{"type": "CandleClosed", "symbol": null}'
    pq.write_table(table.set_column(3, "event", pa.array(texts, pa.string())), path)
    _relist(snapshot, "events.parquet")
    with pytest.raises(DataFormatError, match=r"malformed event at seq 4: ") as caught:
        stage_snapshot(snapshot, staging_dir=tmp_path)
    assert "\n" not in caught.value.one_line()
    assert list(tmp_path.glob("smartmarket-restore-*")) == []  # the staged copy is removed


def test_a_candle_file_listed_under_another_series_is_refused(snapshot: Path, tmp_path: Path) -> None:
    _rewrite_manifest(snapshot, lambda data: data["series"][0].update(symbol="ETHUSDT"))
    with pytest.raises(DataFormatError, match=r"holds SYNA/1m, its manifest says ETHUSDT/1m"):
        stage_snapshot(snapshot, staging_dir=tmp_path)


# ------------------------------------------------------------------------------------- (b) manifest digit


def test_one_changed_digit_of_the_manifest_is_refused_by_its_checksum(
    snapshot: Path, tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = snapshot / MANIFEST_FILE
    text = path.read_text()
    rows = f'"rows": {read_manifest(snapshot).series[0].summary.rows}'
    assert rows in text
    path.write_text(text.replace(rows, rows[:-1] + "1", 1))  # 3000 -> 3001, nothing else touched

    home = tmp_path / "home"
    err = _refused(["--home", str(home), "restore", "--from", str(snapshot)], capsys)
    assert "backup manifest was altered" in err and CHECKSUM_FIELD in err and MANIFEST_FILE in err
    assert not home.exists()

    with open_store(pg_url) as pg:
        state = _pg_state(pg)
    _refused(["--home", str(home), "restore", "--from", str(snapshot), "--to", pg_url], capsys)
    with open_store(pg_url) as pg:
        assert _pg_state(pg) == state
    assert not home.exists()


# ------------------------------------------------------------------------------------- (c) planted pickle


@pytest.mark.parametrize("name", ["model.joblib", "weights.json"], ids=["joblib", "pickle-named-json"])
def test_a_planted_pickle_among_the_model_files_never_runs(
    name: str, snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "marker"
    model_dir = next((snapshot / "models").iterdir())
    planted = model_dir / name
    planted.write_bytes(pickle.dumps(Planted(marker), protocol=4))
    relative = planted.relative_to(snapshot).as_posix()
    _relist(snapshot, relative, section="registry")  # listed, its sha256 right, the manifest consistent

    home = tmp_path / "home"
    home.mkdir()
    settings = Settings(home=home)
    registry_before = sorted(p.relative_to(home) for p in home.rglob("*"))
    err = _refused(["--home", str(home), "restore", "--from", str(snapshot)], capsys)
    assert f"refusing to load {name}" in err and relative in err
    assert not marker.exists()
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == registry_before == []  # no store, no registry
    assert not settings.registry_dir.exists()

    with open_store(f"duckdb:///{tmp_path / 'lib.duckdb'}") as target:
        with pytest.raises(UnsafeFileError, match=f"refusing to load {name}"):
            restore_backup(snapshot, target, registry_dir=tmp_path / "models", staging_dir=tmp_path)
        assert target.list_series() == [] and target.last_seq() == 0
    assert not marker.exists() and not (tmp_path / "models").exists()


def test_unlisted_files_and_links_are_refused(snapshot: Path, tmp_path: Path) -> None:
    model_dir = next((snapshot / "models").iterdir())
    unlisted = model_dir / "extra.json"
    unlisted.write_text("{}")
    with pytest.raises(DataFormatError, match=r"snapshot file models/.+/extra\.json is not listed in its manifest"):
        stage_snapshot(snapshot, staging_dir=tmp_path)
    unlisted.unlink()

    metadata = model_dir / "metadata.json"
    outside = tmp_path / "outside.json"
    outside.write_bytes(metadata.read_bytes())
    metadata.unlink()
    metadata.symlink_to(outside)  # same bytes, but a link out of the snapshot
    with pytest.raises(DataFormatError, match=r"metadata\.json is a symbolic link"):
        stage_snapshot(snapshot, staging_dir=tmp_path)
    assert list(tmp_path.glob("smartmarket-restore-*")) == []


def test_manifest_entries_outside_their_folder_or_twice_are_refused(snapshot: Path, tmp_path: Path) -> None:
    original = (snapshot / MANIFEST_FILE).read_text()

    def elsewhere(data: dict[str, Any]) -> None:
        data["registry"][0]["path"] = "candles/metadata.json"  # a model file that would land outside models/

    _rewrite_manifest(snapshot, elsewhere)
    with pytest.raises(DataFormatError, match=r"candles/metadata\.json is not where such a file belongs \(models/\)"):
        stage_snapshot(snapshot, staging_dir=tmp_path)

    (snapshot / MANIFEST_FILE).write_text(original)

    def twice(data: dict[str, Any]) -> None:
        data["registry"].append(dict(data["registry"][0]))

    _rewrite_manifest(snapshot, twice)
    with pytest.raises(DataFormatError, match=r"metadata\.json is listed twice"):
        stage_snapshot(snapshot, staging_dir=tmp_path)


# ------------------------------------------------------------------------------------- (d) clean snapshots


def test_a_clean_snapshot_restores_and_an_old_manifest_warns_once(
    snapshot: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with open_store(f"duckdb:///{tmp_path / 'a.duckdb'}") as target:
        report = restore_backup(snapshot, target, staging_dir=tmp_path)
        assert report.ok and report.manifest_checked and report.files_checked == 4
        assert target.list_series()[0].count == 3_000 and target.last_seq() == 40
    assert list(tmp_path.glob("smartmarket-restore-*")) == []  # the staged copy is removed after the restore

    # A manifest written before manifest_sha256 existed: accepted with one WARNING line.
    path = snapshot / MANIFEST_FILE
    data = json.loads(path.read_text())
    del data[CHECKSUM_FIELD]
    path.write_text(json.dumps(data, indent=2))
    caplog.set_level(logging.WARNING, logger="smartmarket.ops.restore")
    with open_store(f"duckdb:///{tmp_path / 'b.duckdb'}") as target:
        report = restore_backup(snapshot, target)
        assert report.ok and not report.manifest_checked
        frame = target.read_candles("SYNA", Timeframe.M1)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "smartmarket.ops.restore"]
    assert len(warnings) == 1 and CHECKSUM_FIELD in warnings[0].getMessage()
    pd.testing.assert_frame_equal(frame, generate_market(3_000, timeframe=Timeframe.M1, seed=4)[frame.columns])


def test_a_refused_restore_into_the_default_store_creates_nothing(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (snapshot / "events.parquet").write_bytes(b"PAR1 not really")
    home = tmp_path / "fresh-home"
    err = _refused(["--home", str(home), "restore", "--from", str(snapshot)], capsys)
    assert "events.parquet is damaged" in err
    assert not home.exists()
    with pytest.raises(SmartMarketError):
        open_store(Settings(home=home).store_url, create=False)


def test_a_backup_of_a_registry_holding_a_pickle_warns_and_its_restore_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = tmp_path / "home" / "models"
    model = registry / "lightgbm-SYNA-1m-20240101000000-00000001"
    model.mkdir(parents=True)
    (model / "metadata.json").write_text("{}")
    marker = tmp_path / "marker"
    (model / "model.joblib").write_bytes(pickle.dumps(Planted(marker), protocol=4))  # an old registry's model
    caplog.set_level(logging.WARNING, logger="smartmarket.ops.backup")
    with open_store(f"duckdb:///{tmp_path / 's.duckdb'}") as store:
        store.write_candles("SYNA", Timeframe.M1, generate_market(100, timeframe=Timeframe.M1, seed=1))
        snapshot = create_backup(store, tmp_path / "bk", registry_dir=registry).path
    warnings = [r.getMessage() for r in caplog.records if r.name == "smartmarket.ops.backup"]
    assert len(warnings) == 1 and "model.joblib" in warnings[0] and "smartmarket models upgrade" in warnings[0]
    with open_store(f"duckdb:///{tmp_path / 't.duckdb'}") as target:
        with pytest.raises(UnsafeFileError, match=r"refusing to load model\.joblib"):
            restore_backup(snapshot, target, registry_dir=tmp_path / "restored", staging_dir=tmp_path)
        assert target.list_series() == []
    assert not marker.exists() and not (tmp_path / "restored").exists()
