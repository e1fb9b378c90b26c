"""Operations: backup and restore of a whole installation, ``doctor`` checks, storage footprint figures."""

from smartmarket.ops.backup import BackupResult, create_backup
from smartmarket.ops.doctor import Check, run_doctor
from smartmarket.ops.footprint import bytes_on_disk, bytes_per_candle, candle_count, parquet_bytes
from smartmarket.ops.manifest import Manifest, read_manifest
from smartmarket.ops.restore import ItemCheck, RestoreReport, restore_backup

__all__ = [
    "BackupResult",
    "Check",
    "ItemCheck",
    "Manifest",
    "RestoreReport",
    "bytes_on_disk",
    "bytes_per_candle",
    "candle_count",
    "create_backup",
    "parquet_bytes",
    "read_manifest",
    "restore_backup",
    "run_doctor",
]
