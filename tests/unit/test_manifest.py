"""The backup manifest: exact JSON round trip, refusal of foreign or newer formats, credential removal, hashing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from smartmarket.core.errors import DataFormatError
from smartmarket.core.types import Timeframe
from smartmarket.ops.manifest import (
    CHECKSUM_FIELD,
    FORMAT_VERSION,
    MANIFEST_FILE,
    EventsEntry,
    FileEntry,
    Manifest,
    SeriesEntry,
    manifest_digest,
    read_manifest,
    redact_url,
    sha256_file,
    summary_from_dict,
    summary_to_dict,
    write_manifest,
)
from smartmarket.store.checksum import EMPTY, Summary


def _manifest() -> Manifest:
    return Manifest(
        snapshot_id="20250101T120000Z-1a2b3c4d",
        created_at="2025-01-01T12:00:00.000Z",
        source_store="postgresql://sm@db:5432/prod",
        series=[
            SeriesEntry(
                symbol="BTCUSDT",
                timeframe=Timeframe.H1,
                synthetic=False,
                cut_ts=1_735_686_000_000,
                summary=Summary(64_524, 1_502_942_400_000, 1_735_686_000_000, 183476288.23297098, (1 << 64) - 3),
                file=FileEntry("candles/BTCUSDT-1h.parquet", "ab" * 32, 1_327_500),
            )
        ],
        events=EventsEntry(last_seq_at_cut=0, summary=EMPTY, file=FileEntry("events.parquet", "cd" * 32, 664)),
        quarantine=[FileEntry("quarantine/BTCUSDT-1h.quarantine.csv", "ef" * 32, 321)],
        registry=[FileEntry("models/m1/metadata.json", "01" * 32, 42)],
        smartmarket_version="0.1.0",
    )


def test_manifest_survives_a_json_round_trip_exactly(tmp_path: Path) -> None:
    manifest = _manifest()
    write_manifest(tmp_path, manifest)
    back = read_manifest(tmp_path)
    assert back == manifest
    # The 64-bit checksum is kept as hex text (JSON readers that use doubles would round a big integer).
    raw = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert raw["series"][0]["summary"]["checksum"] == "fffffffffffffffd"
    assert raw["format"] == "smartmarket-backup" and raw["format_version"] == FORMAT_VERSION
    assert [f.path for f in back.files()] == [
        "candles/BTCUSDT-1h.parquet",
        "events.parquet",
        "quarantine/BTCUSDT-1h.quarantine.csv",
        "models/m1/metadata.json",
    ]


def test_summary_dict_round_trip_keeps_float_bits() -> None:
    summary = Summary(3, -5, 7, 0.1 + 0.2, 12345)
    assert summary_from_dict(json.loads(json.dumps(summary_to_dict(summary)))) == summary
    assert summary_from_dict(summary_to_dict(EMPTY)) == EMPTY


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something-else"}, "not a SmartMarket backup manifest"),
        ({"format_version": FORMAT_VERSION + 1}, "newer than this smartmarket reads"),
        ({"snapshot_id": None, "series": "x"}, "incomplete or malformed"),
    ],
)
def test_foreign_newer_or_malformed_manifests_are_refused(change: dict[str, object], message: str) -> None:
    data = _manifest().to_dict() | change
    with pytest.raises(DataFormatError, match=message):
        Manifest.from_dict(data)


def test_a_file_path_leaving_the_snapshot_is_refused() -> None:
    data = _manifest().to_dict()
    data["registry"] = [{"path": "models/../../etc/passwd", "sha256": "00", "bytes": 1}]
    with pytest.raises(DataFormatError, match="leaves the snapshot directory"):
        Manifest.from_dict(data)


def test_missing_or_broken_manifest_file_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="not a complete SmartMarket snapshot"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text('{"format": "smartmarket-backup", ')
    with pytest.raises(DataFormatError, match="not valid JSON"):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://sm:s3cret@db:5432/prod", "postgresql://sm@db:5432/prod"),
        ("postgresql://sm:p@ss@db/prod?sslmode=require", "postgresql://sm@db/prod?sslmode=require"),
        ("postgresql://db/prod?user=sm&password=s3cret", "postgresql://db/prod?user=sm"),
        ("duckdb:////abs/path/sm.duckdb", "duckdb:////abs/path/sm.duckdb"),
        ("postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dt_1",
         "postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dt_1"),
    ],
)  # fmt: skip
def test_redact_url_removes_credentials_only(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert "s3cret" not in redact_url(url)


def test_sha256_of_a_whole_file_and_of_a_prefix(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 10_000  # larger than one read block
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, limit=1000) == hashlib.sha256(data[:1000]).hexdigest()


# The manifest's checksum of itself: written by backup, independent of JSON layout, any change refused.


def test_the_written_checksum_is_verified_on_read(tmp_path: Path) -> None:
    write_manifest(tmp_path, _manifest())
    raw = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert raw[CHECKSUM_FIELD] == manifest_digest(raw) and len(raw[CHECKSUM_FIELD]) == 64
    back = read_manifest(tmp_path)
    assert back.checksum == raw[CHECKSUM_FIELD] and back == _manifest()


def test_the_checksum_does_not_depend_on_key_order_or_whitespace(tmp_path: Path) -> None:
    write_manifest(tmp_path, _manifest())
    path = tmp_path / MANIFEST_FILE
    raw = json.loads(path.read_text())
    path.write_text(json.dumps(dict(reversed(list(raw.items()))), separators=(", ", " : ")))
    assert read_manifest(tmp_path).checksum == raw[CHECKSUM_FIELD]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"rows": 64524', '"rows": 64525'),  # one digit of a count
        ('"volume_sum": 183476288.23297098', '"volume_sum": 183476288.24297098'),  # a float
        ('"bytes": 42', '"bytes": 43'),  # a file size
        ('"symbol": "BTCUSDT"', '"symbol": "BTCUSDC"'),
    ],
)
def test_any_changed_value_is_refused(old: str, new: str, tmp_path: Path) -> None:
    write_manifest(tmp_path, _manifest())
    path = tmp_path / MANIFEST_FILE
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(
        DataFormatError, match=f"backup manifest was altered: its content does not match its {CHECKSUM_FIELD}"
    ):
        read_manifest(tmp_path)


def test_a_manifest_without_the_field_is_read_with_an_empty_checksum(tmp_path: Path) -> None:
    write_manifest(tmp_path, _manifest())
    path = tmp_path / MANIFEST_FILE
    raw = json.loads(path.read_text())
    del raw[CHECKSUM_FIELD]
    path.write_text(json.dumps(raw))
    back = read_manifest(tmp_path)
    assert back.checksum == "" and back == _manifest()
    raw[CHECKSUM_FIELD] = None  # present but not a digest: refused, not skipped
    path.write_text(json.dumps(raw))
    with pytest.raises(DataFormatError, match="was altered"):
        read_manifest(tmp_path)
