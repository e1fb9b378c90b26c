"""The manifest's checksum of itself: written by backup, independent of JSON layout, any change refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smartmarket.core.errors import DataFormatError
from smartmarket.core.types import Timeframe
from smartmarket.ops.manifest import (
    CHECKSUM_FIELD,
    MANIFEST_FILE,
    EventsEntry,
    FileEntry,
    Manifest,
    SeriesEntry,
    manifest_digest,
    read_manifest,
    write_manifest,
)
from smartmarket.store.checksum import EMPTY, Summary


def _manifest() -> Manifest:
    return Manifest(
        snapshot_id="20250101T120000Z-1a2b3c4d",
        created_at="2025-01-01T12:00:00.000Z",
        source_store="duckdb:////srv/sm/store.duckdb",
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
        registry=[FileEntry("models/m1/metadata.json", "01" * 32, 42)],
        smartmarket_version="0.1.0",
    )


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
